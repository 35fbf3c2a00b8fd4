"""Output formatting for list and inspect verbs: tables, `--format json`, Go templates, and the
human renderings of durations, sizes, ports and names that Docker's CLI prints.

I/O: none; functions return strings for the caller to write.
"""

from __future__ import annotations

import json
import time

from engine.core.units import human_duration

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

# ------------------------------------------------------------------- human units

_DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _go_g(value: float, precision: int) -> str:
    """Go's %.Ng, which for these magnitudes matches Python's."""
    return f"{value:.{precision}g}"


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `precision` significant digits."""
    i = 0
    while size >= 1000.0 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{_go_g(size, precision)}{_DECIMAL_UNITS[i]}"


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units (`1.5GiB`), as `info` prints memory."""
    i = 0
    while size >= 1024.0 and i < len(_BINARY_UNITS) - 1:
        size /= 1024.0
        i += 1
    return f"{_go_g(size, 4)}{_BINARY_UNITS[i]}"


def ago(then: float, now: float) -> str:
    return f"{human_duration(now - then)} ago"


def go_time(epoch: float) -> str:
    """Go's time.Time.String() in local time: `2024-01-02 03:04:05 +0000 UTC`. (With `time`,
    not `datetime`: every `ps` and `images` row has one, and datetime costs ~1 ms to import.)"""
    local = time.localtime(epoch)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S %z', local)} {local.tm_zone}"


def ellipsis(text: str, width: int) -> str:
    """Docker's formatter.Ellipsis: cut to `width` characters, the last one an ellipsis."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def truncate_id(value: str) -> str:
    """`sha256:abcdef…` or `abcdef…` → the first 12 hex digits."""
    _, _, digits = value.rpartition(":")
    return digits[:12]


def go_quote(text: str) -> str:
    """strconv.Quote for printable text: double quotes with backslash escapes."""
    return json.dumps(text, ensure_ascii=False)


# ------------------------------------------------------------------- ports

def display_ports(ports: Iterable[Mapping[str, Any]]) -> str:
    """Docker's DisplayablePorts: `0.0.0.0:8080->80/tcp, 443/tcp`, runs of ports grouped."""
    def key(p: Mapping[str, Any]) -> tuple[int, str, int, str]:
        return (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                p.get("Type", "tcp"))

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for port in sorted(ports, key=key):
        private, ip = port.get("PrivatePort", 0), port.get("IP", "")
        public, kind = port.get("PublicPort", 0), port.get("Type", "tcp")
        group_key = kind
        if ip:
            if public != private:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{public}->{private}/{kind}")
                continue
            group_key = f"{ip}/{kind}"
        group = groups.get(group_key)
        if group is None:
            groups[group_key] = [private, private]
            order.append(group_key)
        elif private == group[1] + 1:
            group[1] = private
        else:
            result.append(_form_group(group_key, group[0], group[1]))
            groups[group_key] = [private, private]
    result.extend(_form_group(k, *groups[k]) for k in order)
    return ", ".join(result + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, kind = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{kind}"


# ------------------------------------------------------------------- tables

def tabulate(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter as Docker configures it (minwidth 10, padding 3): tab-separated cells
    aligned in columns; the last cell of each line is never padded."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), max(len(cell) + padding, minwidth))
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        out.append("".join(cells).rstrip() if len(row) > 1 else "".join(cells))
    return "\n".join(out) + ("\n" if out else "")


class _Headers(dict):  # not dict[str, Any]: typing is not imported at run time
    """The context a table's header line is rendered against: each field's column title."""

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        title = key.upper()
        return _Title(title)


class _Title(str):
    def __call__(self, *args: Any) -> str:
        return str(self)


def render_list(fmt: str | None, rows: Sequence[Mapping[str, Any]], default_table: str,
                titles: Mapping[str, str], *, quiet_field: str | None = None,
                quiet: bool = False) -> str:
    """Rows through Docker's format rules: "" or "table" → the default table; "json" → one
    JSON object per row; "table …" → header plus tab-aligned rows; anything else → the
    template once per row. `quiet` prints only `quiet_field` per row."""
    if quiet and quiet_field and not fmt:
        return "".join(f"{row[quiet_field]}\n" for row in rows)
    fmt = fmt or ""
    if fmt in ("", "table"):
        fmt = default_table
    if fmt.startswith("table"):
        body = _unescape(fmt[len("table"):].lstrip(" "))
        plain = plain_table(body, rows, titles)
        return plain if plain is not None else template_table(body, rows, titles)
    if fmt == "json":
        # Go marshals the formatter's map, so the keys come out sorted
        from engine.cli.gotemplate import go_json  # only when asked: a costly import

        return "".join(go_json(_json_row(row), sort_keys=True) + "\n" for row in rows)
    from engine.cli.gotemplate import Template, TemplateError

    try:
        template = Template(_unescape(fmt))
        return "".join(template.render(row) + "\n" for row in rows)
    except TemplateError as exc:
        raise ValueError(f"template: {exc}") from None


def template_table(body: str, rows: Sequence[Mapping[str, Any]],
                   titles: Mapping[str, str]) -> str:
    """`table BODY`: the header (each field's title) and each row through the template."""
    from engine.cli.gotemplate import Template, TemplateError

    try:
        template = Template(body)
        header = template.render(_Headers({k: _Title(v) for k, v in titles.items()}))
        return tabulate([header] + [template.render(row) for row in rows])
    except TemplateError as exc:
        raise ValueError(f"template: {exc}") from None


def plain_table(body: str, rows: Sequence[Mapping[str, Any]],
                titles: Mapping[str, str]) -> str | None:
    """What template_table gives for a body made only of `{{.Field}}` cells between tabs
    (every default table) whose fields are strings in every row, without the template
    engine: its import and parse cost `ps` and `images` ~2 ms (issue 17). None otherwise."""
    fields = []
    for cell in body.split("\t"):
        name = cell[3:-2] if cell.startswith("{{.") and cell.endswith("}}") else ""
        if not name.isidentifier():
            return None
        fields.append(name)
    if not all(isinstance(row.get(f), str) for row in rows for f in fields):
        return None
    return tabulate(["\t".join(titles.get(f, f.upper()) for f in fields)]
                    + ["\t".join(row[f] for f in fields) for row in rows])


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not callable(v)}


def render_each(fmt: str, items: Iterable[Any]) -> str:
    """`inspect -f`: the template once per object, each followed by a newline."""
    from engine.cli.gotemplate import Template, TemplateError

    template_src = "{{json .}}" if fmt == "json" else _unescape(fmt)
    try:
        template = Template(template_src)
        return "".join(template.render(item) + "\n" for item in items)
    except TemplateError as exc:
        raise ValueError(f"template: {exc}") from None


def _unescape(fmt: str) -> str:
    # Docker lets users type `\t` and `\n` in a shell string; it means tab and newline
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def json_array(items: Sequence[Any]) -> str:
    """`inspect` without a format: an indented JSON array, like Docker."""
    return json.dumps(list(items), indent=4, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------- row contexts

def container_row(c: Mapping[str, Any], *, now: float, trunc: bool = True) -> dict[str, Any]:
    """One /containers/json entry as the fields `ps --format` can name."""
    command = c.get("Command", "")
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n]  # links show up as other/alias
    labels = c.get("Labels") or {}
    mounts = []
    for m in c.get("Mounts") or []:
        name = m.get("Name") or m.get("Source", "")
        mounts.append(ellipsis(name, 15) if trunc else name)
    networks = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    image = c.get("Image", "")
    if trunc and image.startswith("sha256:"):
        image = truncate_id(image)
    size = human_size(c.get("SizeRw") or 0, 3)
    if c.get("SizeRootFs"):
        size += f" (virtual {human_size(c['SizeRootFs'], 3)})"
    created = c.get("Created") or 0
    row: dict[str, Any] = {
        "ID": truncate_id(c.get("Id", "")) if trunc else c.get("Id", ""),
        "Image": image,
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": go_time(created),
        "RunningFor": ago(created, now),
        "Ports": display_ports(c.get("Ports") or []),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }
    row["Label"] = _label_getter(labels)
    return dict(sorted(row.items()))  # `{{json .}}` marshals Docker's map: sorted keys


def _label_getter(labels: Mapping[str, str]) -> Callable[[str], str]:
    def label(name: str) -> str:
        return labels.get(name, "")

    return label


CONTAINER_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
                   "{{.Ports}}\t{{.Names}}")
CONTAINER_TITLES = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
    "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
    "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL",
}


def image_rows(img: Mapping[str, Any], *, now: float, trunc: bool = True,
               show_all_digests: bool = False) -> list[dict[str, Any]]:
    """One /images/json entry as `images` rows: one per repository:tag, or one `<none>` row."""
    image_id = img.get("Id", "")
    created = img.get("Created") or 0
    size = img.get("Size") or 0
    shared = img.get("SharedSize")
    shared = -1 if shared is None else shared
    containers = img.get("Containers")
    containers = -1 if containers is None else containers
    base = {
        "ID": truncate_id(image_id) if trunc else image_id,
        "CreatedSince": ago(created, now),
        "CreatedAt": go_time(created),
        "Size": human_size(size, 3),
        "VirtualSize": human_size(img.get("VirtualSize") or size, 3),
        "SharedSize": _na_size(shared),
        "UniqueSize": "N/A" if shared < 0 else _na_size(size - shared),
        "Containers": "N/A" if containers < 0 else str(containers),
        "Digest": "<none>",
    }
    digests = {r.rpartition("@")[0]: r.rpartition("@")[2] for r in img.get("RepoDigests") or []}
    rows = []
    for ref in img.get("RepoTags") or []:
        if ref == "<none>:<none>":
            continue
        colon = ref.rfind(":")
        repo, tag = (ref[:colon], ref[colon + 1 :]) if colon > ref.rfind("/") else (ref, "<none>")
        rows.append({**base, "Repository": repo, "Tag": tag, "Digest": digests.get(repo, "<none>")})
    if not rows:
        for repo, digest in digests.items():
            rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": digest})
    if not rows:
        rows.append({**base, "Repository": "<none>", "Tag": "<none>"})
    return [dict(sorted(row.items())) for row in rows]  # sorted keys, as Go marshals a map


def _na_size(size: int) -> str:
    return "N/A" if size < 0 else human_size(size, 3)


IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_TITLES = {
    "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
    "Containers": "CONTAINERS",
}
