"""The pure guards of RELIABILITY L-07 (engine/core/images.py): for any mix of containers
(every status, with or without a pending operation) and pulls in progress, `rmi -f` and
`image prune -a` never take an image that a running, creating, removing or operated-on
container uses, nor one a pull in progress is recording; and the collector deletes no layer
or blob while a pull, load or import is pending.

I/O: none.
"""

from __future__ import annotations

import immutables
from hypothesis import given
from hypothesis import strategies as st

from engine.core import images as ci
from engine.core.errors import Conflict
from events.values import ContainerConfig, ImageConfig
from projections.state import ContainerView, EngineState, ImageView, OperationView

IMAGES = [f"sha256:{i:064x}" for i in range(3)]
STATUSES = ["creating", "created", "running", "paused", "restarting", "exited", "dead",
            "removing"]
OP_KINDS = ["container.start", "container.create", "container.restart", "container.remove"]


def image(i: int) -> ImageView:
    return ImageView(id=IMAGES[i], config=ImageConfig(), layers=(f"sha256:{i:063x}f",),
                     layer_digests=(f"sha256:{i:063x}e",), repo_tags=(f"img{i}:latest",))


containers = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(STATUSES),
                                st.sampled_from([None, *OP_KINDS])), max_size=6)
pulls = st.lists(st.sampled_from(["img0:latest", "img1:latest", "other:v1"]), max_size=2)


def state_of(ctrs: list[tuple[int, str, str | None]], pulled: list[str]) -> EngineState:
    cviews, ops = {}, {}
    for n, (i, status, op) in enumerate(ctrs):
        cid = f"{n:064x}"
        cviews[cid] = ContainerView(id=cid, name=f"c{n}", status=status,
                                    config=ContainerConfig(image=f"img{i}", image_id=IMAGES[i]))
        if op is not None:
            ops[f"op{n}"] = OperationView(op_id=f"op{n}", kind=op, target=f"container-{cid}")
    for n, ref in enumerate(pulled):
        ops[f"pull{n}"] = OperationView(op_id=f"pull{n}", kind="image.pull", target="images",
                                        args={"reference": ref})
    imgs = {img.id: img for img in map(image, range(3))}
    layers = {d: 1 for img in imgs.values() for d in img.layers}
    layers["sha256:orphan"] = 1
    return EngineState(images=immutables.Map(imgs), containers=immutables.Map(cviews),
                       operations=immutables.Map(ops), layers=immutables.Map(layers))


def protected(state: EngineState) -> set[str]:
    """Images that must survive: used by a busy or operated-on container, or being pulled."""
    acting = {op.target.removeprefix("container-") for op in state.operations.values()}
    pulled = {op.args.get("reference") for op in state.operations.values()
              if op.kind == "image.pull"}
    keep = {c.config.image_id for c in state.containers.values()
            if c.status in ci.BUSY or c.id in acting}
    keep |= {img.id for img in state.images.values() if set(img.repo_tags) & pulled}
    return keep


@given(containers, pulls)
def test_rmi_force_never_takes_a_protected_image(ctrs: list, pulled: list[str]) -> None:
    state = state_of(ctrs, pulled)
    for img in state.images.values():
        try:
            ci.decide_remove_image(state, img.id, op_id="rmi", force=True)
        except Conflict:
            continue
        assert img.id not in protected(state)


@given(containers, pulls, st.booleans())
def test_prune_never_takes_a_protected_or_used_image(ctrs: list, pulled: list[str],
                                                     dangling_only: bool) -> None:
    state = state_of(ctrs, pulled)
    taken = {img.id for img in ci.prunable_images(state, dangling_only=dangling_only)}
    used = {c.config.image_id for c in state.containers.values()}
    assert not taken & (protected(state) | used)
    if dangling_only:
        assert not taken  # every image here is tagged


@given(containers, pulls)
def test_the_collector_waits_for_pulls(ctrs: list, pulled: list[str]) -> None:
    state = state_of(ctrs, pulled)
    layers = ci.unused_layers(state)
    blobs = ci.unused_blobs(state, ["sha256:gone", IMAGES[0]])
    if pulled:
        assert layers == [] and blobs == []
    else:
        assert layers == ["sha256:orphan"] and blobs == ["sha256:gone"]
