"""Docker's answers to its GETs (ps, inspect, images, image history, volumes, networks,
version, info, system df, logs, the event history), built from the read model
(engine/shell/readmodel.py) as Docker's JSON shapes: no HTTP types, so the daemon's routes and
the CLI's `--root` local mode answer through the same functions.

I/O: none here; what only the disk or the host knows (log records, sizes, host facts, image
configs) comes from the `ReadModel` each function is given.

`GETS` maps each path local mode and time travel serve to its answer: the CLI's
`shipslog --root DIR` and `/shipslog/at/…` dispatch through it.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import msgspec

from engine.api.docker import render
from engine.api.docker.models import (
    ComponentVersion,
    FirewallBackendInfo,
    SystemInfo,
    SystemVersion,
)
from engine.api.docker.render import image_summary, rfc3339, summary
from engine.api.docker.stream import frame
from engine.api.docker.translate import labels_match, parse_filters
from engine.core.build import intermediate_images
from engine.core.errors import InvalidArgument, NotFound
from engine.core.fwd_plan import findings
from engine.core.lookup import find_container, find_image, find_network, find_volume
from engine.core.volumes import volume_users
from projections.state import ContainerView, EngineState, ImageView, NetworkView, VolumeView

if TYPE_CHECKING:
    from engine.shell.readmodel import HostFacts, ReadModel

VERSION = "0.1.0"
STREAM_IDS = {"stdout": 1, "stderr": 2}
DF_KINDS = ("container", "image", "volume", "build-cache")


class Args(Protocol):
    """A GET's query: the server's `Request` and local mode's `QueryArgs` both have these."""

    query: dict[str, list[str]]

    def arg(self, name: str, default: str | None = None) -> str | None: ...

    def bool(self, name: str, default: bool = False) -> bool: ...

    def int(self, name: str, default: int | None = None) -> int | None: ...


# ------------------------------------------------------------------------ containers


def container_matches(c: ContainerView, filters: dict[str, list[str]], state: Any) -> bool:
    for key, values in filters.items():
        if key == "status" and render._docker_status(c) not in values:
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "label" and not labels_match(c.config.labels, values):
            return False
        # shipslog's own: a Compose project by name (issue 14), as `label=` on Compose's label
        if key == "project" and c.config.labels.get("com.docker.compose.project") not in values:
            return False
        if key == "exited" and not (c.status == "exited" and str(c.exit_code) in values):
            return False
        if key == "health" and (c.health or "none") not in values:
            return False  # Docker: starting, healthy, unhealthy or none
        if key == "ancestor":
            ids = set()
            for ref in values:
                try:
                    ids.add(find_image(state, ref).id)
                except Exception:  # noqa: BLE001 - an unknown ancestor matches nothing
                    pass
            if c.config.image_id not in ids:
                return False
    return True


def container_list(model: ReadModel, args: Args, summaries: render.SummaryCache) -> bytes:
    """`GET /containers/json`, encoded (`summaries` keeps `ps` over thousands cheap)."""
    state = model.state
    filters = parse_filters(args.arg("filters"))
    show_all = args.bool("all")
    limit = args.int("limit", -1) or -1
    now = model.now()
    if filters:
        chosen = [
            c for c in summaries.listing(state)
            if (show_all or c.status in ("running", "paused", "restarting")
                or "status" in filters)
            and container_matches(c, filters, state)
        ]
    else:
        chosen = summaries.listing(state, show_all=show_all)  # shared: never changed
    if limit > 0:
        chosen = chosen[:limit]
    if args.bool("size"):  # `ps -s`: walks the writable layers (the route runs it in a thread)
        rw = model.rw_sizes(c.id for c in chosen)
        return msgspec.json.encode([_with_sizes(state, summary(state, c, now_ns=now), c, rw[c.id])
                                    for c in chosen]) + b"\n"
    return summaries.encoded(state, chosen, now_ns=now) + b"\n"


def _with_sizes(state: EngineState, doc: Any, c: ContainerView, rw: int) -> Any:
    """A summary with Docker's SizeRw (the writable layer) and SizeRootFs (it and the
    image's layers)."""
    base = state.images.get(c.config.image_id)
    return msgspec.structs.replace(
        doc, SizeRw=rw, SizeRootFs=rw + (_disk_size(state, base) if base is not None else 0))


def container_inspect(model: ReadModel, ref: str) -> Any:
    state = model.state
    c = find_container(state, ref)
    return render.inspect_container(
        state, c, log_path=str(model.paths.log_path(c.id)), now_ns=model.now(),
        health=model.health_of(c), volumes_root=str(model.paths.root / "volumes"),
        state_root=str(model.paths.root),
    )


def log_tail(arg: str) -> int | None:
    """moby daemon/logs.go: `strconv.Atoi(tail)`, and anything it cannot parse ("all",
    "abc") means every line."""
    return int(arg) if re.fullmatch(r"[+-]?[0-9]+", arg) else None


def log_payload(stream: str, ts: int, data: bytes, *, tty: bool, timestamps: bool) -> bytes:
    if timestamps:
        data = rfc3339(ts).encode() + b" " + data
    return data if tty else frame(STREAM_IDS.get(stream, 1), data)


def logs_content_type(c: ContainerView) -> str:
    return ("application/vnd.docker.raw-stream" if c.config.tty
            else "application/vnd.docker.multiplexed-stream")


# ------------------------------------------------------------------------ images


def layer_history(img: Any, config_blob: bytes, layer_sizes: dict[str, int]
                  ) -> list[dict[str, Any]]:
    """Docker's `image history`: one row per history entry, newest first; entries that made a
    layer carry its size, the newest carries the image id and tags."""
    doc = msgspec.json.decode(config_blob)
    entries = doc.get("history") or [{} for _ in img.layers]
    layers = list(img.layers)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        size = 0
        if not entry.get("empty_layer") and layers:
            size = layer_sizes.get(layers.pop(0), 0)
        created = entry.get("created", "")
        try:
            when = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            when = 0
        rows.append({"Id": "<missing>", "Created": when, "CreatedBy": entry.get("created_by", ""),
                     "Tags": None, "Size": size, "Comment": entry.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["Id"] = img.id
        rows[0]["Tags"] = list(img.repo_tags) or None
    return rows


def image_list(model: ReadModel, args: Args) -> list[Any]:
    state = model.state
    filters = parse_filters(args.arg("filters"))
    out = []
    # build step images are hidden as Docker hides images with children (issue 12)
    hidden = set() if args.bool("all") else intermediate_images(list(state.images.values()))
    for img in sorted(state.images.values(), key=lambda i: i.created_at, reverse=True):
        if img.id in hidden:
            continue
        if "dangling" in filters:
            dangling = not img.repo_tags
            if (filters["dangling"][0] in ("true", "1")) != dangling:
                continue
        if "reference" in filters and not any(
            t.split(":")[0] == ref.split(":")[0] and (":" not in ref or t == ref)
            for t in img.repo_tags
            for ref in filters["reference"]
        ):
            continue
        if "label" in filters and not labels_match(img.config.labels, filters["label"]):
            continue
        out.append(render.image_summary(state, img))
    return out


def image_inspect(model: ReadModel, ref: str) -> Any:
    img = find_image(model.state, ref)
    # without the config blob, answered from the log (render._config_from_view)
    return render.image_inspect(img, model.image_config(img.id, strict=False),
                                state_root=str(model.paths.root))


def image_history(model: ReadModel, ref: str) -> list[dict[str, Any]]:
    state = model.state
    img = find_image(state, ref)
    raw = model.image_config(img.id, strict=True)
    assert raw is not None
    return layer_history(img, raw, dict(state.layers.items()))


# ------------------------------------------------------------------------ volumes, networks


def render_volume(state: EngineState, vol: VolumeView, root: Any) -> dict[str, Any]:
    return {
        "Name": vol.name,
        "Driver": vol.driver,
        "Mountpoint": str(root / "volumes" / vol.name / "_data"),
        "CreatedAt": rfc3339(vol.created_at),
        "Labels": dict(vol.labels) or None,
        "Scope": "local",
        "Options": dict(vol.options) or None,
        "UsageData": {"Size": -1, "RefCount": len(volume_users(state, vol.name))},
    }


def volume_matches(state: EngineState, vol: VolumeView, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in vol.name for v in values):
            return False
        if key == "driver" and vol.driver not in values:
            return False
        if key == "dangling":
            dangling = not volume_users(state, vol.name)
            if (values[0] in ("true", "1")) != dangling:
                return False
        if key == "label" and not labels_match(vol.labels, values):
            return False
    return True


def volume_list(model: ReadModel, args: Args) -> dict[str, Any]:
    state = model.state
    filters = parse_filters(args.arg("filters"))
    vols = [render_volume(state, vol, model.paths.root)
            for vol in sorted(state.volumes.values(), key=lambda x: x.name)
            if volume_matches(state, vol, filters)]
    return {"Volumes": vols, "Warnings": []}


def volume_inspect(model: ReadModel, name: str) -> dict[str, Any]:
    state = model.state
    return render_volume(state, find_volume(state, name), model.paths.root)


def render_network(state: EngineState, net: NetworkView) -> dict[str, Any]:
    containers = {}
    for cid, ep in net.endpoints.items():
        c = state.containers.get(cid)
        prefix = net.subnet.split("/")[-1]
        prefix6 = net.subnet6.split("/")[-1]
        containers[cid] = {"Name": c.name if c else "", "EndpointID": ep.endpoint_id,
                           "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{prefix}",
                           "IPv6Address": f"{ep.ip6}/{prefix6}" if ep.ip6 else ""}
    configs = []
    for subnet, gateway, ip_range, aux in (
            (net.subnet, net.gateway, net.ip_range, net.aux_addresses),
            (net.subnet6, net.gateway6, net.ip_range6, net.aux_addresses6)):
        if subnet:  # Docker lists one entry per pool, v4 first
            config: dict[str, Any] = {"Subnet": subnet, "Gateway": gateway}
            if ip_range:
                config["IPRange"] = ip_range
            if aux:  # omitempty, as Docker's IPAMConfig
                config["AuxiliaryAddresses"] = dict(aux)
            configs.append(config)
    return {
        "Name": net.name, "Id": net.id, "Created": rfc3339(net.created_at), "Scope": "local",
        "Driver": net.driver, "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": _ipam_options(net), "Config": configs},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
        "Options": _options(net),
        "Labels": dict(net.labels),
    }


def _options(net: NetworkView) -> dict[str, str]:
    """Exactly the options the user passed, as Docker reports them: Compose compares them
    with its file and recreates a network whose options differ (issue 14). Only the default
    bridge names its link, as Docker's does (`docker0`)."""
    if net.name == "bridge":
        return {"com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.name": net.bridge, **net.options}
    return dict(net.options)


def _ipam_options(net: NetworkView) -> dict[str, str] | None:
    """As given (issue 13); a network created without them shows null, as Docker's do —
    the docker CLI always sends them, so its networks show {}."""
    return None if net.ipam_options is None else dict(net.ipam_options)


def network_matches(net: NetworkView, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "type":
            kind = "builtin" if net.name == "bridge" else "custom"
            if kind not in values:
                return False
        if key == "label" and not labels_match(net.labels, values):
            return False
    return True


def network_list(model: ReadModel, args: Args) -> list[dict[str, Any]]:
    state = model.state
    filters = parse_filters(args.arg("filters"))
    nets = sorted(state.networks.values(), key=lambda n: n.name)
    return [render_network(state, n) for n in nets if network_matches(n, filters)]


def network_inspect(model: ReadModel, ref: str) -> dict[str, Any]:
    state = model.state
    return render_network(state, find_network(state, ref))


# ------------------------------------------------------------------------ the engine


def version(model: ReadModel) -> SystemVersion:
    python_version, arch, kernel = model.release()
    return SystemVersion(
        Components=[
            ComponentVersion(Name="Engine", Version=VERSION,
                             Details={"ApiVersion": "1.43", "Os": "linux"}),
            ComponentVersion(Name="runc", Version=model.runc_version),
        ],
        Version=VERSION,
        GoVersion="python" + python_version,
        Arch=arch,
        KernelVersion=kernel,
        BuildTime="",
    )


def info(model: ReadModel, host: HostFacts) -> SystemInfo:
    """`GET /info`, with `host` from `model.host(firewall=True)` (blocking: the daemon asks
    in a worker thread)."""
    state = model.state
    statuses = [c.status for c in state.containers.values()]
    assert host.firewall is not None
    firewall = FirewallBackendInfo(
        Driver="nftables+iptables" if host.firewall.iptables else "nftables",
        Info=[["Detected", line] for line in findings(host.firewall)])
    return SystemInfo(
        ID=model.engine_id,
        Containers=len(statuses),
        ContainersRunning=statuses.count("running"),
        ContainersPaused=statuses.count("paused"),
        ContainersStopped=len(statuses) - statuses.count("running") - statuses.count("paused"),
        Images=len(state.images),
        DockerRootDir=str(model.paths.root),
        NFd=host.open_fds,
        NGoroutines=model.tasks(),
        SystemTime=rfc3339(model.now()),
        KernelVersion=host.kernel,
        OperatingSystem=host.os_name,
        OSType="linux",
        Architecture=host.machine,
        NCPU=host.cpus,
        MemTotal=host.memory,
        Name=host.node,
        ServerVersion=VERSION,
        CgroupVersion=host.cgroup_version,
        Runtimes={"runc": {"path": "runc"}},
        SecurityOptions=["name=seccomp,profile=builtin"],
        DriverStatus=[
            ["Backing Filesystem", "overlay"],
            ["Event log", model.store.describe()],
            # The folded head, not a query: `info` answers while the store is down.
            ["Events", str(model.store.applied_seq)],
        ],
        FirewallBackend=firewall,
        Warnings=model.warnings(),
        Replication=model.replication(),
    )


# ------------------------------------------------------------------------ system df


def df_kinds(args: Args) -> frozenset[str]:
    asked = [k for value in args.query.get("type", []) for k in value.split(",") if k]
    for kind in asked:
        if kind not in DF_KINDS:
            raise InvalidArgument(f"unknown disk usage type {kind!r}",
                                  hint="use " + ", ".join(DF_KINDS))
    return frozenset(asked or DF_KINDS)


def disk_usage(state: EngineState, root: Path, *, now_ns: int, kinds: frozenset[str],
               container_rw: Mapping[str, int], volume_sizes: Mapping[str, int]
               ) -> dict[str, Any]:
    """Docker's `DiskUsage` for the `kinds` asked for. Sizes are the layers' sizes on disk
    (as unpacked), so they add up: an image's Size is the sum of its layers, its SharedSize
    the part it shares with another image, LayersSize every layer once."""
    out: dict[str, Any] = {}
    if "image" in kinds:
        layer_users: Counter[str] = Counter()
        for img in state.images.values():
            layer_users.update(set(img.layers))
        images = []
        for img in state.images.values():
            shared = sum(state.layers.get(d, 0) for d in set(img.layers) if layer_users[d] > 1)
            size = _disk_size(state, img)
            images.append(msgspec.structs.replace(image_summary(state, img), SharedSize=shared,
                                                  Size=size, VirtualSize=size))
        out["LayersSize"] = sum(state.layers.get(d, 0) for d in layer_users)
        out["Images"] = images
    if "container" in kinds:
        containers = []
        for c in state.containers.values():
            containers.append(_with_sizes(state, summary(state, c, now_ns=now_ns), c,
                                          container_rw.get(c.id, 0)))
        out["Containers"] = containers
    if "volume" in kinds:
        volumes = []
        for vol in state.volumes.values():
            doc = render_volume(state, vol, root)
            doc["UsageData"]["Size"] = volume_sizes.get(vol.name, -1)
            volumes.append(doc)
        out["Volumes"] = volumes
    if "build-cache" in kinds:
        # issue 12: the classic builder's cache is its untagged step images
        from engine.core.build import cache_records

        used = {c.config.image_id for c in state.containers.values()}
        out["BuildCache"] = cache_records(list(state.images.values()), used,
                                          dict(state.layers.items()), rfc3339)
    return out


def _disk_size(state: EngineState, img: ImageView) -> int:
    """The image's layers on disk; what the image was recorded with when one is unknown."""
    sizes = [state.layers.get(d) for d in dict.fromkeys(img.layers)]
    return img.size if None in sizes else sum(s for s in sizes if s is not None)


def system_df(model: ReadModel, kinds: frozenset[str]) -> dict[str, Any]:
    """`GET /system/df` (blocking: it walks writable layers and volumes)."""
    state = model.state
    root = Path(model.paths.root)
    rw, volumes = model.sizes(state, kinds)
    usage = disk_usage(state, root, now_ns=model.now(), kinds=kinds, container_rw=rw,
                       volume_sizes=volumes)
    if kinds == frozenset(DF_KINDS):  # `type=` asks for Docker's kinds, and only those
        loose = model.unattributed()
        usage["Unattributed"] = {"Size": sum(x.bytes for x in loose), "Items": [
            {"Path": x.path, "Size": x.bytes} for x in loose]}
    return usage


# ------------------------------------------------------------------------ local mode's table


def container_logs(model: ReadModel, ref: str, args: Args, *, since: int, until: int
                   ) -> tuple[ContainerView, Iterator[bytes]]:
    """The log of a stopped or running container as Docker's stream (no following)."""
    c = find_container(model.state, ref)
    stdout, stderr = args.bool("stdout"), args.bool("stderr")
    if not stdout and not stderr:
        raise InvalidArgument("you must choose at least one stream",
                              hint="ask for stdout=1 and/or stderr=1")
    tail = log_tail(args.arg("tail") or "all")
    timestamps, tty = args.bool("timestamps"), c.config.tty
    records = model.log_records(c.id, stdout=stdout, stderr=stderr, since_ns=since,
                                until_ns=until, tail=tail)
    return c, (log_payload(stream, ts, data, tty=tty, timestamps=timestamps)
               for stream, ts, data in records)


Answer = Callable[["ReadModel", dict[str, str], Args], Any]
_PARAM = re.compile(r"{(\w+)(?::(path))?}")


@functools.cache
def _compile(pattern: str) -> re.Pattern[str]:
    parts, pos = [], 0
    for m in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[pos:m.start()]))
        parts.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$")


GETS: dict[str, Answer] = {
    "/containers/json": lambda m, p, a: container_list(m, a, render.SummaryCache()),
    "/containers/{id}/json": lambda m, p, a: container_inspect(m, p["id"]),
    "/images/json": lambda m, p, a: image_list(m, a),
    "/images/{name:path}/json": lambda m, p, a: image_inspect(m, p["name"]),
    "/images/{name:path}/history": lambda m, p, a: image_history(m, p["name"]),
    "/volumes": lambda m, p, a: volume_list(m, a),
    "/volumes/{name}": lambda m, p, a: volume_inspect(m, p["name"]),
    "/networks": lambda m, p, a: network_list(m, a),
    "/networks/{id}": lambda m, p, a: network_inspect(m, p["id"]),
    "/version": lambda m, p, a: version(m),
    "/info": lambda m, p, a: info(m, m.host(firewall=True)),
    "/system/df": lambda m, p, a: system_df(m, df_kinds(a)),
}
# What time travel (`/shipslog/at/…`, `--at`) serves: the state at a point of the log.
AT_PATHS = ("/containers/json", "/containers/{id}/json", "/images/json",
            "/images/{name:path}/json", "/volumes", "/volumes/{name}", "/networks",
            "/networks/{id}", "/info")


def match(path: str, patterns: Iterable[str]) -> tuple[str, dict[str, str]]:
    """The pattern that serves `path` and its parameters (literal paths win, as in the
    server's router: `/images/json` is not an image called "json")."""
    ordered = sorted(patterns, key=lambda p: "{" in p)  # stable: literal ones first
    for pattern in ordered:
        found = _compile(pattern).match(path)
        if found is not None:
            return pattern, {k: unquote(v) for k, v in found.groupdict().items()}
    raise NotFound("page not found")
