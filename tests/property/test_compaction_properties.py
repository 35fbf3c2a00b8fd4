"""Compaction never changes what the log means: folding the compacted live log gives the same
engine state as folding the whole log.

Histories come from the model of tests/property/test_projection_properties.py (create → start
→ exec → rm, renames, volumes, networks with IPAM, operations that finish or need cleanup),
with random events of every type mixed in. For every cut-off time, the streams
`select_archivable` picks are dropped and the rest folded, with the ChainCompacted event the
store would append at the end of both: containers, names and their stream versions, images,
volumes, networks with allocations, execs and operations must be equal, table by table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_projection_properties import (  # type: ignore[import-not-found]
    envelopes,
    flat,
    noisy_histories,
    tables_of,
    valid_histories,
)

from engine.core.compaction import op_streams_of, select_archivable
from events import vocabulary as v
from events.envelope import Actor, Envelope
from projections.fold import fold
from projections.state import EngineState

pytestmark = pytest.mark.slow

_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _summary(after: list[Envelope]) -> Envelope:
    seq = after[-1].seq + 1 if after else 1
    return Envelope(seq=seq, stream="chain", stream_version=1, schema_version=1,
                    recorded_at=10**12, actor=Actor(uid=0, gid=0, pid=1, via="daemon"),
                    op_id="compact", event=v.ChainCompacted(
                        before_ns=0, count=0, first_seq=0, last_seq=0, archive="a",
                        archive_sha256="", tombstones_sha256=""))


def _streams(envs: list[Envelope]) -> dict[str, list[Envelope]]:
    by_stream: dict[str, list[Envelope]] = defaultdict(list)
    for env in envs:
        by_stream[env.stream].append(env)
    return dict(by_stream)


def _same_state(a: EngineState, b: EngineState) -> None:
    assert tables_of(a) == tables_of(b)
    for field in ("names", "name_versions", "tags", "layers", "network_names"):
        assert dict(getattr(a, field)) == dict(getattr(b, field)), field
    assert a == b


@given(items=st.one_of(valid_histories(max_steps=60), valid_histories(), noisy_histories()),
       sizes=st.lists(st.integers(1, 7), max_size=30), cut=st.integers(0, 40))
@_SETTINGS
def test_folding_the_compacted_log_gives_the_same_state(items: list[Any], sizes: list[int],
                                                        cut: int) -> None:
    envs = flat(envelopes(items, sizes))
    full = fold(envs)
    chosen = select_archivable(_streams(envs), full, before_ns=1_000 * cut)
    kept = [e for e in envs if e.stream not in chosen]
    for kind in sorted({stream.partition("-")[0] for stream in chosen}) or ["nothing"]:
        event(f"archived: {kind}")
    summary = _summary(envs)
    _same_state(fold([*kept, summary]), fold([*envs, summary]))
    # Survivors keep their versions: whole streams go, or none of a stream's events.
    assert all(e.stream not in chosen for e in kept)
    for stream in chosen:
        assert stream.startswith(("container-", "network-", "op-"))


@given(items=valid_histories(max_steps=60), sizes=st.lists(st.integers(1, 7), max_size=30),
       cut=st.integers(0, 40), later=st.integers(0, 40))
@_SETTINGS
def test_compacting_twice_is_the_same_as_once_at_the_later_time(
        items: list[Any], sizes: list[int], cut: int, later: int) -> None:
    envs = flat(envelopes(items, sizes))
    full = fold(envs)
    first = select_archivable(_streams(envs), full, before_ns=1_000 * cut)
    kept = [e for e in envs if e.stream not in first]
    second = select_archivable(_streams(kept), fold(kept), before_ns=1_000 * max(cut, later))
    once = select_archivable(_streams(envs), full, before_ns=1_000 * max(cut, later))
    assert first | second == once
    assert first <= once


@given(items=valid_histories(max_steps=60), sizes=st.lists(st.integers(1, 7), max_size=30))
@_SETTINGS
def test_nothing_younger_than_the_cut_and_nothing_alive_is_archived(
        items: list[Any], sizes: list[int]) -> None:
    envs = flat(envelopes(items, sizes))
    full = fold(envs)
    assert select_archivable(_streams(envs), full, before_ns=0) == frozenset()
    chosen = select_archivable(_streams(envs), full, before_ns=10**15)
    for stream in chosen:
        kind, _, ident = stream.partition("-")
        assert ident not in {"container": full.containers, "network": full.networks,
                             "op": full.operations}[kind]
    # The operation streams of archived objects are found from their events' op ids.
    assert op_streams_of(e for e in envs if e.stream in chosen) >= {
        "op-" + e.op_id for e in envs if e.stream in chosen}
