"""`check_window`: the links of a window of seqs where tombstones stand in for archived events
(events/hashing.py). Every link holds on an intact chain; otherwise the first bad seq is named:
an altered event, an altered tombstone (at the next live event: its link breaks), a gap."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from events.hashing import GENESIS_HASH, chain_hash, check_window


def _chain(n: int) -> list[tuple[int, bytes, bytes]]:
    prev, rows = GENESIS_HASH, []
    for seq in range(1, n + 1):
        canonical = b"%d\x1fevent %d" % (seq, seq)
        prev = chain_hash(prev, canonical)
        rows.append((seq, prev.encode(), canonical))
    return rows


def _split(rows: list[tuple[int, bytes, bytes]], archived: set[int]) -> tuple[list[Any], list[Any]]:
    live = [r for r in rows if r[0] not in archived]
    dead = [(r[0], r[1]) for r in rows if r[0] in archived]
    return live, dead


_CASES = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.integers(1, n)), st.integers(1, n)))


@given(case=_CASES)
def test_an_intact_window_holds_and_any_altered_live_event_is_named(
        case: tuple[int, set[int], int]) -> None:
    n, archived, bad = case
    rows = _chain(n)
    live, dead = _split(rows, archived)
    ok = check_window(live, dead, 0, n, GENESIS_HASH.encode())
    assert ok.bad_seq is None and (ok.live, ok.archived) == (n - len(archived), len(archived))
    altered = [(s, h, c + b"!" if s == bad else c) for s, h, c in live]
    result = check_window(altered, dead, 0, n, GENESIS_HASH.encode())
    assert result.bad_seq == (bad if bad not in archived else None)


@given(case=_CASES)
def test_an_altered_tombstone_breaks_the_next_live_link(case: tuple[int, set[int], int]) -> None:
    n, archived, bad = case
    archived.add(bad)
    live, dead = _split(_chain(n), archived)
    dead = [(s, b"f" * 64 if s == bad else h) for s, h in dead]
    following = [s for s, _, _ in live if s > bad]
    nxt = following[0] if following and following[0] == bad + 1 else None
    result = check_window(live, dead, 0, n, GENESIS_HASH.encode())
    assert result.bad_seq == nxt  # a tombstone's own link is the archive's to check


@given(case=_CASES)
def test_a_gap_is_named(case: tuple[int, set[int], int]) -> None:
    n, archived, gone = case
    live, dead = _split(_chain(n), archived)
    live = [r for r in live if r[0] != gone]
    dead = [d for d in dead if d[0] != gone]
    result = check_window(live, dead, 0, n, GENESIS_HASH.encode())
    assert result.bad_seq == gone and "missing" in result.reason
