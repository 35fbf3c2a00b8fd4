"""The build record and SLSA provenance are pure folds of a build's events (issue 12)."""

from __future__ import annotations

from events import vocabulary as v
from events.envelope import Actor, Envelope
from events.values import ImageConfig
from projections.build_record import CacheIndex, build_op_of, fold_build, fold_cache, provenance

ACTOR = Actor(uid=1000, gid=1000, pid=7, command=("shipslog", "build", "."))
IMG = "sha256:" + "b" * 64
BASE = "sha256:" + "a" * 64


def _env(seq: int, ev: v.BaseEvent, stream: str = "op-o1") -> Envelope:
    return Envelope(seq=seq, stream=stream, stream_version=seq, schema_version=1,
                    recorded_at=seq * 10**9,
                    actor=ACTOR, op_id="o1", event=ev)


def test_fold_and_provenance() -> None:
    events = [
        _env(1, v.OperationRequested(op_id="o1", kind="image.build", target="images")),
        _env(2, v.BuildRequested(op_id="o1", context_digest="sha256:" + "c" * 64,
                                 dockerfile_digest="sha256:" + "d" * 64, tags=("x:1",),
                                 build_args={"K": "hmac:1"})),
        _env(3, v.BuildStepCompleted(op_id="o1", step=1, total=2, stage=0,
                                     instruction="FROM busybox", cache_key="", cached=False,
                                     image_id=BASE, base_digest=BASE)),
        _env(4, v.BuildStepCompleted(op_id="o1", step=2, total=2, stage=0,
                                     instruction="RUN true", cache_key="k", cached=True,
                                     image_id=IMG, duration_ms=5), "buildcache-k"),
        _env(5, v.ImageBuilt(op_id="o1", image_id=IMG, repo_tags=("x:1",), layers=(),
                             config=ImageConfig()), "image-" + IMG),
        _env(6, v.OperationCompleted(op_id="o1")),
    ]
    assert build_op_of(events) == "o1"
    rec = fold_build("o1", events)
    assert (rec.image_id, rec.uid, rec.outcome) == (IMG, 1000, "completed")
    assert [(s.instruction, s.cached) for s in rec.steps] == [("FROM busybox", False),
                                                              ("RUN true", True)]
    doc = provenance(rec, subject_id=IMG, names=["x:1"], builder_id="shipslogd/e")
    assert doc["subject"] == [{"name": "x:1", "digest": {"sha256": "b" * 64}}]
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps == [{"uri": "context", "digest": {"sha256": "c" * 64}},
                    {"uri": "docker-image://busybox", "digest": {"sha256": "a" * 64}}]
    assert doc["predicate"]["runDetails"]["metadata"]["finishedOn"].startswith("1970-01-01T")


def test_cache_index_is_an_incremental_fold() -> None:
    def step(seq: int, key: str, image: str, code: int = 0) -> Envelope:
        return _env(seq, v.BuildStepCompleted(op_id="o1", step=1, total=1, stage=0,
                                              instruction="RUN x", cache_key=key, cached=False,
                                              image_id=image, exit_code=code))
    events = [step(1, "k1", "i1"), step(2, "k2", "i2"), step(3, "k1", "i3"),
              step(4, "k3", "i4", code=1), step(5, "", "i5")]
    whole = fold_cache(CacheIndex(), events)
    parts = fold_cache(fold_cache(CacheIndex(), events[:2]), events[2:])
    assert whole.entries == parts.entries == {"k1": "i3", "k2": "i2"}
    assert whole.seq == parts.seq == 5
