"""`GET /system/df` (`docker system df`): what images, containers and volumes use on disk.

I/O: walks containers' overlay upper dirs and volumes' `_data` (in a worker thread, only for
the kinds asked for with `type=`); everything else comes from the projection. `disk_usage`
is the pure part: state + measured sizes -> Docker's response shape. Beyond Docker's shape,
`Unattributed` (`{"Size", "Items": [{"Path", "Size"}]}`) counts what no image, container or
volume owns: writes in flight or left by a crash, and quarantined objects (issue 15 item 7);
it is left out when `type=` narrows the answer to some of Docker's kinds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine.api.docker.render import image_summary, summary
from engine.api.routes.volumes import render_volume
from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import InvalidArgument
from engine.shell.files import rw_size, volume_size
from engine.shell.leftovers import unattributed
from projections.state import EngineState, ImageView

KINDS = ("container", "image", "volume", "build-cache")


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
            rw = container_rw.get(c.id, 0)
            base = state.images.get(c.config.image_id)
            containers.append(msgspec.structs.replace(
                summary(state, c, now_ns=now_ns), SizeRw=rw,
                SizeRootFs=rw + (_disk_size(state, base) if base is not None else 0)))
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
        from engine.api.docker.render import rfc3339
        from engine.core.build import cache_records
        used = {c.config.image_id for c in state.containers.values()}
        out["BuildCache"] = cache_records(list(state.images.values()), used,
                                          dict(state.layers.items()), rfc3339)
    return out


def _disk_size(state: EngineState, img: ImageView) -> int:
    """The image's layers on disk; what the image was recorded with when one is unknown."""
    sizes = [state.layers.get(d) for d in dict.fromkeys(img.layers)]
    return img.size if None in sizes else sum(s for s in sizes if s is not None)


def _kinds(req: Request) -> frozenset[str]:
    asked = [k for value in req.query.get("type", []) for k in value.split(",") if k]
    for kind in asked:
        if kind not in KINDS:
            raise InvalidArgument(f"unknown disk usage type {kind!r}",
                                  hint="use " + ", ".join(KINDS))
    return frozenset(asked or KINDS)


def measure(state: EngineState, root: Path, kinds: frozenset[str]
            ) -> tuple[dict[str, int], dict[str, int]]:
    """The sizes only the disk knows: containers' writable layers and volumes' contents."""
    rw = ({cid: rw_size(root, cid) for cid in state.containers}
          if "container" in kinds else {})
    volumes = ({name: volume_size(root, name) for name in state.volumes}
               if "volume" in kinds else {})
    return rw, volumes


def df_routes(ctx: Any) -> Router:
    r = Router()

    @r.route("GET", "/system/df")
    async def system_df(req: Request) -> Response:
        kinds = _kinds(req)
        state = ctx.engine.state
        root = Path(ctx.paths.root)
        rw, volumes = await trio.to_thread.run_sync(measure, state, root, kinds)
        usage = disk_usage(state, root, now_ns=ctx.clock(), kinds=kinds, container_rw=rw,
                           volume_sizes=volumes)
        if kinds == frozenset(KINDS):  # `type=` asks for Docker's kinds, and only those
            loose = await trio.to_thread.run_sync(unattributed, root)
            usage["Unattributed"] = {"Size": sum(x.bytes for x in loose), "Items": [
                {"Path": x.path, "Size": x.bytes} for x in loose]}
        return json_response(usage)

    return r
