"""How an image was built, folded from the log: the build's request, who asked, every step
with its cache status and duration, the base images, the outcome; and the SLSA v1 provenance
statement (in-toto) derived from it (issue 12).

I/O: none. The caller reads the build's events (`EventStore.read(op_id=...)`: the op stream,
the step events on their cache streams, the images) and hands them here in seq order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from events import vocabulary as v
from events.envelope import Envelope


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    total: int
    instruction: str
    cached: bool
    duration_ms: int
    image_id: str
    layer: str = ""
    exit_code: int = 0
    base: str = ""


class BuildRecord(msgspec.Struct, kw_only=True):
    op_id: str
    image_id: str = ""
    requested_ns: int = 0
    finished_ns: int = 0
    uid: int = -1
    command: tuple[str, ...] = ()
    context_digest: str = ""
    dockerfile: str = ""
    dockerfile_digest: str = ""
    build_args: dict[str, str] = {}
    target: str = ""
    tags: tuple[str, ...] = ()
    no_cache: bool = False
    network_mode: str = ""
    steps: list[StepRecord] = []
    outcome: str = "running"
    error: str = ""


class CacheIndex(msgspec.Struct, kw_only=True):
    """The build cache: cache key -> the image its step made, as of `seq`."""

    seq: int = 0
    entries: dict[str, str] = {}


def fold_cache(index: CacheIndex, envelopes: Iterable[Envelope]) -> CacheIndex:
    """Fold step events into the index; a failed step caches nothing; the newest wins."""
    for env in envelopes:
        ev = env.event
        if isinstance(ev, v.BuildStepCompleted) and ev.cache_key and not ev.exit_code:
            index.entries[ev.cache_key] = ev.image_id
        index.seq = max(index.seq, env.seq)
    return index


def build_op_of(image_events: Iterable[Envelope]) -> str | None:
    """The build that last produced or tagged the image (its newest ImageBuilt)."""
    op = None
    for env in image_events:
        if isinstance(env.event, v.ImageBuilt):
            op = env.event.op_id
    return op


def fold_build(op_id: str, envelopes: Iterable[Envelope]) -> BuildRecord:
    rec = BuildRecord(op_id=op_id)
    for env in envelopes:
        ev = env.event
        if isinstance(ev, v.BuildRequested):
            rec.requested_ns = env.recorded_at
            rec.uid = env.actor.uid
            rec.command = tuple(env.actor.command or ())
            rec.context_digest, rec.dockerfile = ev.context_digest, ev.dockerfile
            rec.dockerfile_digest, rec.build_args = ev.dockerfile_digest, dict(ev.build_args)
            rec.target, rec.tags, rec.no_cache = ev.target, ev.tags, ev.no_cache
            rec.network_mode = ev.network_mode
        elif isinstance(ev, v.BuildStepCompleted):
            rec.steps.append(StepRecord(
                step=ev.step, total=ev.total, instruction=ev.instruction, cached=ev.cached,
                duration_ms=ev.duration_ms, image_id=ev.image_id, layer=ev.layer,
                exit_code=ev.exit_code, base=ev.base_digest))
        elif isinstance(ev, v.ImageBuilt) and ev.repo_tags == rec.tags and not ev.parent:
            rec.image_id = ev.image_id
        elif isinstance(ev, v.OperationCompleted):
            rec.outcome, rec.finished_ns = "completed", env.recorded_at
        elif isinstance(ev, v.OperationFailed):
            rec.outcome, rec.error, rec.finished_ns = "failed", ev.error, env.recorded_at
        elif isinstance(ev, v.OperationCompensated):
            rec.outcome, rec.error, rec.finished_ns = "abandoned", ev.action, env.recorded_at
    if not rec.image_id and rec.steps and rec.outcome == "completed":
        rec.image_id = rec.steps[-1].image_id
    return rec


def _digest(d: str) -> dict[str, str]:
    algo, _, hexpart = d.partition(":")
    return {algo: hexpart}


def _rfc3339(ns: int) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def provenance(rec: BuildRecord, *, subject_id: str, names: Iterable[str],
               builder_id: str) -> dict[str, Any]:
    """A SLSA v1 provenance statement (https://slsa.dev/spec/v1.0/provenance) for the image."""
    subjects = [{"name": n, "digest": _digest(subject_id)} for n in names] or [
        {"name": subject_id, "digest": _digest(subject_id)}]
    deps = [{"uri": "context", "digest": _digest(rec.context_digest)}] if rec.context_digest \
        else []
    deps += [{"uri": f"docker-image://{s.instruction.split(None, 1)[-1]}",
              "digest": _digest(s.base)} for s in rec.steps if s.base]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://shipslog.dev/build/dockerfile/v1",
                "externalParameters": {
                    "dockerfile": rec.dockerfile,
                    "dockerfileDigest": _digest(rec.dockerfile_digest),
                    "target": rec.target, "tags": list(rec.tags),
                    "buildArgs": rec.build_args,  # keyed digests: values never enter the log
                },
                "internalParameters": {"noCache": rec.no_cache, "network": rec.network_mode,
                                       "requestedByUid": rec.uid},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": rec.op_id,
                             "startedOn": _rfc3339(rec.requested_ns),
                             "finishedOn": _rfc3339(rec.finished_ns)},
                "byproducts": [
                    {"name": f"step {s.step}/{s.total}", "annotations": {
                        "instruction": s.instruction, "cached": s.cached,
                        "durationMs": s.duration_ms, "image": s.image_id,
                        **({"layer": s.layer} if s.layer else {})}}
                    for s in rec.steps],
            },
        },
    }
