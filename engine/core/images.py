"""Deciding image commands: tag, remove (rmi), prune, and recording a load, import or pull;
and what the image garbage collector may delete.

I/O: none. Unpacking and downloads happen in drivers before these facts are recorded; the
decisions here check references and usage and say which events record the outcome.

Races (RELIABILITY L-07): a container that is being created or removed uses its image as
much as a running one does, so neither `rmi -f` nor prune takes that image. A pull, load or
import in progress records each layer as it is unpacked and the image only at the end, so
until it has finished its layers look unused; while any such operation is pending the
collector deletes no layer and no blob (the next collection takes what is left).
"""

from __future__ import annotations

from engine.core.decision import Decision, Step
from engine.core.errors import Conflict, InvalidArgument
from engine.core.lookup import find_image, normalize_ref
from events import vocabulary as v
from events.envelope import Pending, stream_of
from events.values import ImageConfig
from projections.state import EngineState, ImageView


def _istream(image_id: str) -> str:
    return stream_of("image", image_id)


def _check_ref(ref: str) -> str:
    if any(ch in ref for ch in "\x00\r\n") or not ref or len(ref) > 255:
        raise InvalidArgument(f"invalid reference format: {ref[:80]!r}",
                              hint="use NAME[:TAG], for example busybox:latest")
    name = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    if name != name.lower() or ".." in name or name.startswith(("-", "/", ".")):
        raise InvalidArgument(
            f"invalid reference format: repository name ({name}) must be lowercase",
            hint="use lowercase letters, digits and separators . _ - /")
    return normalize_ref(ref)


def decide_tag(state: EngineState, source: str, target: str, *, op_id: str) -> Decision:
    img = find_image(state, source)
    ref = _check_ref(target)
    if "@" in ref:
        raise InvalidArgument("refusing to create a tag with a digest reference",
                              hint="tag with NAME[:TAG]")
    return Decision(op_id=op_id, target=img.id, pending=(
        Pending(stream=_istream(img.id), event=v.ImageTagged(image_id=img.id, reference=ref)),))


# Container states in which the image is in use even for `rmi -f`: the process runs, or its
# root filesystem is being made or taken apart (so are containers with a pending operation).
RUNNING = ("running", "paused", "restarting")
BUSY = (*RUNNING, "creating", "removing")
# Operations that record layers before the image that holds them.
IMAGE_WRITERS = ("image.pull", "image.load", "image.import", "image.build")


def _containers_with_pending_ops(state: EngineState) -> set[str]:
    """Containers an operation is working on (a start mounting and running the root
    filesystem, a create preparing it): their image is in use whatever their status says."""
    return {op.target.removeprefix("container-") for op in state.operations.values()
            if op.target.startswith("container-")}


def _users(state: EngineState, image_id: str) -> list[tuple[str, str]]:
    return [(c.id, c.status) for c in state.containers.values() if c.config.image_id == image_id]


def references_being_pulled(state: EngineState) -> set[str]:
    """The references (normalised as repo tags are) of the pulls in progress."""
    return {normalize_ref(op.args["reference"]) for op in state.operations.values()
            if op.kind == "image.pull" and op.args.get("reference")}


def images_being_written(state: EngineState) -> bool:
    """A pull, load or import has started and not finished."""
    return any(op.kind in IMAGE_WRITERS and not op.needs_cleanup
               for op in state.operations.values())


def decide_remove_image(state: EngineState, ref: str, *, op_id: str, force: bool) -> Decision:
    """Docker's rmi: a tag that is one of several is only untagged; the last reference
    removes the image, unless a container uses it (stopped ones only with `-f`)."""
    img = find_image(state, ref)
    by_tag = normalize_ref(ref) in img.repo_tags
    pulled = sorted(references_being_pulled(state) & set(img.repo_tags))
    if pulled:
        raise Conflict(f"conflict: unable to remove {ref}: {pulled[0]} is being pulled",
                       hint="wait for the pull to finish, then try again")
    users = _users(state, img.id)
    if by_tag and len(img.repo_tags) > 1:
        return _untag(img, normalize_ref(ref), op_id)
    acting = _containers_with_pending_ops(state)
    running = [(cid, status) for cid, status in users if status in BUSY or cid in acting]
    if running:
        cid, status = running[0]
        doing = "using" if status in RUNNING else "being started or changed with"
        raise Conflict(
            f"conflict: unable to remove repository reference \"{ref}\" (must force) - "
            f"container {cid[:12]} is {doing} its referenced image {img.id[7:19]}",
            hint="stop and remove the container first")
    if users and not force:
        raise Conflict(
            f"conflict: unable to delete {img.id[7:19]} (must be forced) - image is being "
            f"used by stopped container {users[0][0][:12]}",
            hint="remove the container first, or use: shipslog rmi -f")
    if not by_tag and len(img.repo_tags) > 1 and not force:
        raise Conflict(
            f"conflict: unable to delete {img.id[7:19]} (must be forced) - image is "
            "referenced in multiple repositories", hint="use: shipslog rmi -f")
    pending = [Pending(stream=stream_of("op", op_id), event=v.OperationRequested(
        op_id=op_id, kind="image.remove", target=_istream(img.id)), expected_version=0)]
    pending += [Pending(stream=_istream(img.id), event=v.ImageUntagged(
        image_id=img.id, reference=t)) for t in img.repo_tags]
    pending.append(Pending(stream=_istream(img.id), event=v.ImageRemoved(image_id=img.id)))
    blobs = ",".join((img.id, *(img.layer_digests or img.layers)))
    plan = (Step(name="image.gc", args={"image_id": img.id, "blobs": blobs}),)
    return Decision(op_id=op_id, target=img.id, pending=tuple(pending), plan=plan)


def prunable_images(state: EngineState, *, dangling_only: bool) -> list[ImageView]:
    """Docker's image prune: images no container uses, in any state (a stopped container
    keeps its image); by default only dangling ones (no tag left), with `-a` every unused
    one. An image a pull in progress is recording again is not unused."""
    used = {c.config.image_id for c in state.containers.values()}
    pulled = references_being_pulled(state)
    return [img for img in state.images.values()
            if img.id not in used and (not dangling_only or not img.repo_tags)
            and not pulled & set(img.repo_tags)]


def decide_prune_images(state: EngineState, *, op_id: str, dangling_only: bool) -> Decision:
    """Remove every prunable image in one operation, then collect their layers and blobs.
    Nothing to prune is no operation at all."""
    images = prunable_images(state, dangling_only=dangling_only)
    if not images:
        return Decision(op_id=op_id, target="images", not_modified=True)
    pending = [Pending(stream=stream_of("op", op_id), event=v.OperationRequested(
        op_id=op_id, kind="image.prune", target="images"), expected_version=0)]
    blobs: list[str] = []
    for img in images:
        pending += [Pending(stream=_istream(img.id), event=v.ImageUntagged(
            image_id=img.id, reference=t)) for t in img.repo_tags]
        pending.append(Pending(stream=_istream(img.id), event=v.ImageRemoved(image_id=img.id)))
        blobs += (img.id, *(img.layer_digests or img.layers))
    plan = (Step(name="image.gc", args={"blobs": ",".join(blobs)}),)
    return Decision(op_id=op_id, target="images", pending=tuple(pending), plan=plan)


def _untag(img: ImageView, ref: str, op_id: str) -> Decision:
    return Decision(op_id=op_id, target=img.id, pending=(Pending(
        stream=_istream(img.id), event=v.ImageUntagged(image_id=img.id, reference=ref)),))


def decide_record_image(state: EngineState, *, op_id: str, image_id: str, how: str,
                        repo_tags: tuple[str, ...], layers: tuple[str, ...],
                        config: ImageConfig, size: int, source: str = "",
                        layer_digests: tuple[str, ...] = ()) -> Decision:
    """After a load or import has stored and unpacked every layer, record the image."""
    tags = tuple(_check_ref(t) for t in repo_tags)
    event: v.BaseEvent
    if how == "import":
        event = v.ImageImported(image_id=image_id, repo_tags=tags, layers=layers, config=config,
                                size=size, source=source, layer_digests=layer_digests)
    else:
        event = v.ImageLoaded(image_id=image_id, repo_tags=tags, layers=layers, config=config,
                              size=size, layer_digests=layer_digests)
    return Decision(op_id=op_id, target=image_id,
                    pending=(Pending(stream=_istream(image_id), event=event),))


def unused_layers(state: EngineState) -> list[str]:
    """Layers no image refers to any more (candidates for garbage collection); none while a
    pull, load or import may still be about to record an image made of them."""
    if images_being_written(state):
        return []
    used = {d for img in state.images.values() for d in img.layers}
    return [d for d in state.layers.keys() if d not in used]


def unused_blobs(state: EngineState, candidates: list[str]) -> list[str]:
    """Of `candidates`, the blobs no image (config or layer) refers to any more; none while
    a pull, load or import is in progress (it may have found one stored and reuse it)."""
    if images_being_written(state):
        return []
    used = {img.id for img in state.images.values()}
    used |= {d for img in state.images.values() for d in (img.layer_digests or img.layers)}
    return [d for d in candidates if d and d not in used]
