"""Parsers for Docker's flag value syntaxes, turning CLI strings into Engine API values.

I/O: reads env files and label files named on the command line (`read_env_file`,
`read_label_file`); everything else is pure. Every parser raises `ValueError` with a message
worded like Docker's; the CLI turns it into a one-line error with a hint.
"""

from __future__ import annotations

import re

from engine.core.units import parse_go_duration

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

# ------------------------------------------------------------------- sizes and numbers

_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# compiled (and cached by `re`) on first use, not at every CLI start
_SIZE = r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$"


def parse_size(text: str) -> int:
    """`512m` → 536870912, as go-units RAMInBytes (binary multiples, `b`/`ib` optional)."""
    m = re.match(_SIZE, text.strip())
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    unit = (m.group(2) or "").lower()
    from decimal import Decimal  # imported where used: CLI start-up

    return int(Decimal(m.group(1)) * _BINARY[unit])


def parse_cpus(text: str) -> int:
    """`--cpus 1.5` → NanoCpus 1500000000 (exact decimal arithmetic, as Docker's ParseCPUs)."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"invalid argument \"{text}\" for \"--cpus\" flag") from None
    nano = value * Decimal(1_000_000_000)
    if nano != nano.to_integral_value() or nano < 0:
        raise ValueError("value is too precise")
    return int(nano)


# ------------------------------------------------------------------- time

def parse_timestamp(text: str, now: float) -> str:
    """`--since`/`--until` values into the API's `seconds[.nanoseconds]` form.

    Accepts a Go duration relative to now (`10m`), RFC 3339 (with or without zone, date only),
    or a Unix timestamp (`1700000000`, `1700000000.5`), as Docker's GetTimestamp does.
    """
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return s
    try:
        # `--at '2h ago'` as `ps --help` words it: a duration is always "that long ago".
        return _fmt_epoch(now - parse_go_duration(_without_ago(s)))
    except ValueError:
        pass
    iso = s.replace("Z", "+00:00").replace("z", "+00:00")
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"failed to parse value as time or duration: \"{text}\"") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # Docker reads zone-less times as local time
    return _fmt_epoch(dt.timestamp())


def _without_ago(text: str) -> str:
    return text[:-4].rstrip() if text.endswith(" ago") else text


def _fmt_epoch(seconds: float) -> str:
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return f"{whole}.{nanos:09d}"


# ------------------------------------------------------------------- env and labels


def parse_env(value: str, environ: Mapping[str, str]) -> str:
    """`-e K=V` stays; `-e K` takes K from the caller's environment when it is set."""
    key, sep, _ = value.partition("=")
    if not key:
        raise ValueError(f"invalid environment variable: {value}")
    if sep:
        return value
    if key in environ:
        return f"{key}={environ[key]}"
    return value


def parse_env_lines(lines: Iterable[str], environ: Mapping[str, str], source: str) -> list[str]:
    """The lines of an env file: blank lines and `#` comments skipped, `K` read from environ."""
    out: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.lstrip().rstrip("\r\n")
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"{source}:{number}: variable '{key}' contains whitespaces")
        out.append(parse_env(line, environ))
    return out


def read_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return parse_env_lines(fh, environ, path)


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    """`-l k=v` → {"k": "v"}; `-l k` → {"k": ""}."""
    labels: dict[str, str] = {}
    for value in values:
        key, _, val = value.partition("=")
        if not key:
            raise ValueError(f"invalid label: {value}")
        labels[key] = val
    return labels


def read_label_file(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def parse_filters(values: Iterable[str]) -> dict[str, list[str]]:
    """`--filter k=v` (repeatable) → the API's `{"k": ["v", ...]}` filter map."""
    filters: dict[str, list[str]] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"bad format of filter (expected name=value): {value}")
        filters.setdefault(key.strip().lower(), []).append(val)
    return filters


def flag_values(kind: str, items: Iterable[str], verb: str) -> Any:
    """`--opt`, `--label` or `--filter` values of a management verb (`volume create`,
    `network ls`, …) parsed, a bad one reported as that verb's usage error."""
    from engine.cli.errors import UsageError

    try:
        if kind == "opt":
            return parse_key_value_opts(items, "--opt")
        if kind == "label":
            return parse_labels(items)
        return parse_filters(items)
    except ValueError as exc:
        raise UsageError(str(exc), verb) from None


# ------------------------------------------------------------------- ports

_PROTOS = ("tcp", "udp", "sctp")


def _port_range(text: str, what: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        lo = int(start)
        hi = int(end) if sep else lo
    except ValueError:
        raise ValueError(f"invalid {what}: {text}") from None
    if not (0 < lo <= 65535 and 0 < hi <= 65535) or hi < lo:
        raise ValueError(f"invalid {what}: {text}")
    return lo, hi


def parse_publish(spec: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """One `-p` value → (ExposedPorts, PortBindings), as nat.ParsePortSpec.

    Forms: `80`, `8080:80`, `127.0.0.1:8080:80/udp`, `127.0.0.1::80`, `[::1]:8080:80`,
    `8000-8001:80-81`, and a host range for one container port (`8000-8010:80`).
    """
    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOS:
        raise ValueError(f"invalid proto: {proto}")
    ip = ""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"invalid IP address: {spec}")
        ip, rest = rest[1:end], rest[end + 2 :]
        host, _, container = rest.rpartition(":")
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            host, container = "", parts[0]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 3:
            ip, host, container = parts
        else:
            # a bare IPv6 address without brackets: everything before the last two colons
            ip = ":".join(parts[:-2])
            host, container = parts[-2], parts[-1]
    if not container:
        raise ValueError(f"no port specified: {spec}<empty>")
    c_lo, c_hi = _port_range(container, "containerPort")
    h_lo = h_hi = 0
    if host:
        h_lo, h_hi = _port_range(host, "hostPort")
    c_count = c_hi - c_lo + 1
    if host and c_count > 1 and h_hi - h_lo + 1 != c_count:
        raise ValueError(f"invalid ranges specified for container and host Ports: {container} "
                         f"and {host}")
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for i in range(c_count):
        key = f"{c_lo + i}/{proto}"
        if not host:
            host_port = ""
        elif c_count == 1 and h_hi != h_lo:
            host_port = f"{h_lo}-{h_hi}"
        else:
            host_port = str(h_lo + i)
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def parse_expose(spec: str) -> list[str]:
    """`--expose 80-81/udp` → ["80/udp", "81/udp"]."""
    ports, _, proto = spec.partition("/")
    lo, hi = _port_range(ports, "port")
    return [f"{p}/{proto or 'tcp'}" for p in range(lo, hi + 1)]


# ------------------------------------------------------------------- volumes and mounts


def parse_volume(spec: str) -> tuple[str | None, str | None]:
    """`-v` → (bind string for HostConfig.Binds, or None; anonymous target for Config.Volumes)."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise ValueError(f"invalid spec: {spec}: empty section between colons"
                         if "::" in spec else f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        if not parts[0].startswith("/"):
            raise ValueError(f"invalid volume specification: '{spec}'")
        return None, parts[0]
    target = parts[1]
    if not target.startswith("/"):
        raise ValueError(f"invalid volume specification: '{spec}': "
                         "destination must be an absolute path")
    if len(parts) == 3:
        for opt in parts[2].split(","):
            if opt not in ("ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared",
                           "rshared", "slave", "rslave", "consistent", "cached", "delegated"):
                raise ValueError(f"invalid mode: {opt}")
    return spec, None


def _csv_fields(text: str) -> list[str]:
    # Docker reads --mount as one CSV record, so a quoted field may contain a comma
    import csv

    return next(csv.reader([text]))


def _bool_opt(key: str, value: str | None) -> bool:
    if value is None:
        return True
    lowered = value.lower()
    if lowered in ("1", "true", "t", "yes"):
        return True
    if lowered in ("0", "false", "f", "no"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_mount(spec: str) -> dict[str, Any]:
    """`--mount type=bind,source=/a,target=/b,readonly` → one HostConfig.Mounts entry."""
    mount: dict[str, Any] = {"Type": "volume"}
    volume_opts: dict[str, Any] = {}
    bind_opts: dict[str, Any] = {}
    tmpfs_opts: dict[str, Any] = {}
    for field in _csv_fields(spec):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        val: str | None = value if sep else None
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _bool_opt(key, val)
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            bind_opts["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind_opts["NonRecursive"] = _bool_opt(key, val)
        elif key == "volume-nocopy":
            volume_opts["NoCopy"] = _bool_opt(key, val)
        elif key == "volume-label":
            lk, _, lv = value.partition("=")
            volume_opts.setdefault("Labels", {})[lk] = lv
        elif key == "volume-driver":
            volume_opts.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            ok, _, ov = value.partition("=")
            volume_opts.setdefault("DriverConfig", {}).setdefault("Options", {})[ok] = ov
        elif key == "tmpfs-size":
            tmpfs_opts["SizeBytes"] = parse_size(value)
        elif key == "tmpfs-mode":
            tmpfs_opts["Mode"] = int(value, 8)
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    kind = mount["Type"]
    if kind not in ("bind", "volume", "tmpfs", "npipe"):
        raise ValueError(f"invalid mount type: {kind}")
    if "Target" not in mount:
        raise ValueError("target is required")
    if kind == "bind" and "Source" not in mount:
        raise ValueError("source is required when specifying bind mounts")
    if kind == "tmpfs" and "Source" in mount:
        raise ValueError("source must not be specified for tmpfs mounts")
    if bind_opts:
        if kind != "bind":
            raise ValueError(f"cannot mix 'bind-*' options with mount type '{kind}'")
        mount["BindOptions"] = bind_opts
    if volume_opts:
        if kind != "volume":
            raise ValueError(f"cannot mix 'volume-*' options with mount type '{kind}'")
        mount["VolumeOptions"] = volume_opts
    if tmpfs_opts:
        if kind != "tmpfs":
            raise ValueError(f"cannot mix 'tmpfs-*' options with mount type '{kind}'")
        mount["TmpfsOptions"] = tmpfs_opts
    return mount


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """`--tmpfs /run:rw,size=64m` → ("/run", "rw,size=64m") for HostConfig.Tmpfs."""
    path, _, opts = spec.partition(":")
    if not path.startswith("/"):
        raise ValueError(f"invalid tmpfs specification: '{spec}'")
    return path, opts


def parse_restart(spec: str) -> dict[str, Any]:
    """`--restart on-failure:3` → {"Name": "on-failure", "MaximumRetryCount": 3}."""
    name, sep, count = spec.partition(":")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise ValueError(f"invalid restart policy '{name}'")
    policy: dict[str, Any] = {"Name": "" if name == "no" else name}
    if sep:
        if name != "on-failure":
            raise ValueError(f"maximum retry count cannot be used with restart policy '{name}'")
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError:
            raise ValueError(f"maximum retry count must be an integer: {count}") from None
    return policy


def parse_key_value_opts(values: Iterable[str], flag: str) -> dict[str, str]:
    """`--log-opt max-size=10m` (repeatable) → {"max-size": "10m"}."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid {flag}: {value} (expected key=value)")
        out[key] = val
    return out


def split_image_ref(ref: str) -> tuple[str, str]:
    """`registry:5000/a/b:tag` → ("registry:5000/a/b", "tag"); no tag → (ref, "");
    a digest reference keeps its digest in the tag slot (`@sha256:…` → tag "sha256:…")."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, ""
