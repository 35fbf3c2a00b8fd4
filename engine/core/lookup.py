"""Finding objects the way Docker does: by full id, unique id prefix, or name.

I/O: none. Used by every `decide_*` and by the API's read handlers.
"""

from __future__ import annotations

from engine.core.errors import InvalidArgument, NotFound
from engine.core.validate import ID_RE
from projections.state import ContainerView, EngineState, ImageView, NetworkView, VolumeView


def _by_prefix(ids, prefix: str, kind: str, what: str):  # type: ignore[no-untyped-def]
    if len(prefix) < 1:
        return None
    matches = [i for i in ids if i.startswith(prefix)]
    if len(matches) > 1:
        raise InvalidArgument(
            f"multiple {kind}s found with provided prefix: {what}",
            hint="give more characters of the id, or the name",
        )
    return matches[0] if matches else None


def find_container(state: EngineState, ref: str) -> ContainerView:
    ref = ref.lstrip("/")
    c = state.containers.get(ref)
    if c is not None:
        return c
    cid = state.names.get(ref)
    if cid is not None and cid in state.containers:
        return state.containers[cid]
    if 0 < len(ref) < 64 and all(ch in "0123456789abcdef" for ch in ref):
        cid = _by_prefix(state.containers.keys(), ref, "container", ref)
        if cid is not None:
            return state.containers[cid]
    raise NotFound(f"No such container: {ref}", hint="list containers with: shipslog ps -a")


def normalize_ref(ref: str) -> str:
    """`busybox` → `busybox:latest`; `docker.io/library/busybox` → `busybox:latest`."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else ref + ":latest"


def find_image(state: EngineState, ref: str) -> ImageView:
    image_id = state.tags.get(normalize_ref(ref))
    if image_id is None:
        key = ref[7:] if ref.startswith("sha256:") else ref
        if state.images.get("sha256:" + key) is not None:
            image_id = "sha256:" + key
        elif 0 < len(key) < 64 and all(ch in "0123456789abcdef" for ch in key):
            ids = [i[7:] for i in state.images.keys()]
            hit = _by_prefix(ids, key, "image", ref)
            image_id = "sha256:" + hit if hit else None
        elif "@" in ref:
            for img in state.images.values():
                if ref in img.repo_digests or normalize_ref(ref) in img.repo_digests:
                    image_id = img.id
                    break
    if image_id is None or image_id not in state.images:
        # Docker names the reference as it parsed it (`nosuch` → `nosuch:latest`), an id as given
        shown = ref if ref.startswith("sha256:") or ID_RE.fullmatch(ref) else normalize_ref(ref)
        raise NotFound(
            f"No such image: {shown}",
            hint="load it with: shipslog load -i IMAGE.tar (or pull it from a registry)",
        )
    return state.images[image_id]


def find_volume(state: EngineState, name: str) -> VolumeView:
    vol = state.volumes.get(name)
    if vol is None:
        raise NotFound(f"get {name}: no such volume", hint="list volumes with: shipslog volume ls")
    return vol


def find_network(state: EngineState, ref: str) -> NetworkView:
    net = state.networks.get(ref)
    if net is None:
        nid = state.network_names.get(ref)
        if nid is None:
            nid = _by_prefix(state.networks.keys(), ref, "network", ref)
        net = state.networks.get(nid) if nid else None
    if net is None:
        raise NotFound(f"network {ref} not found", hint="list networks with: shipslog network ls")
    return net
