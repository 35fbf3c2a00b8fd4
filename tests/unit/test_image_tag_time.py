"""Image inspect's `Metadata.LastTagTime` (issue 14): `docker compose images` prints it as the
CREATED column, so a zero made every image "292 years ago". moby's TagImage stamps it (tag,
build -t, commit and import with a repository); pull and load leave it zero."""

from __future__ import annotations

from engine.api.docker.render import ZERO_TIME, image_inspect
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Envelope
from events.values import ImageConfig
from projections.fold import fold

LOADED = "sha256:" + "a" * 64
BUILT = "sha256:" + "b" * 64
CFG = ImageConfig(created="2024-01-01T00:00:00Z")
T1 = 1_796_000_000_000_000_000
T2 = T1 + 5_000_000_000


def _env(seq: int, at: int, event: v.BaseEvent) -> Envelope:
    image_id = getattr(event, "image_id", "")
    return Envelope(seq=seq, stream="image-" + image_id, stream_version=seq, schema_version=1,
                    recorded_at=at, actor=SYSTEM_ACTOR, op_id="op", event=event)


def test_a_loaded_image_has_no_tag_time_until_it_is_tagged() -> None:
    loaded = v.ImageLoaded(image_id=LOADED, repo_tags=("busybox:latest",), layers=(),
                           config=CFG)
    state = fold([_env(1, T1, loaded)])
    assert image_inspect(state.images[LOADED]).Metadata.LastTagTime == ZERO_TIME
    state = fold([_env(2, T2, v.ImageTagged(image_id=LOADED, reference="mine:1"))], state)
    assert image_inspect(state.images[LOADED]).Metadata.LastTagTime == \
        "2026-11-30T00:53:25.000000000Z"


def test_a_tagged_build_stamps_the_tag_time_and_a_step_image_does_not() -> None:
    step = v.ImageBuilt(op_id="op", image_id=LOADED, repo_tags=(), layers=(), config=CFG)
    built = v.ImageBuilt(op_id="op", image_id=BUILT, repo_tags=("proj-web:latest",),
                         layers=(), config=CFG)
    state = fold([_env(1, T1, step), _env(2, T2, built)])
    assert state.images[LOADED].last_tagged_at == 0
    assert state.images[BUILT].last_tagged_at == T2
    # the image's own creation time stays the config's
    assert image_inspect(state.images[BUILT]).Created == "2024-01-01T00:00:00Z"
