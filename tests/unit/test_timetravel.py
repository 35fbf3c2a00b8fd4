"""Time travel (projections/timetravel.py and the store reads behind `--at`): points in time as
users type them, the state at a seq or a time equal to what the live projection held then,
and `diff` between two points."""

from __future__ import annotations

import pytest

from engine.shell.logread import seq_of, state_at
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.store import EventStore
from events.values import ContainerConfig, ImageConfig
from projections.engine import EngineProjection
from projections.timetravel import Point, PointError, diff, parse_point
from projections.timetravel import state_at as fold_at

NOW = 1_700_000_000_000_000_000
SEC = 1_000_000_000
ACTOR = Actor(uid=0, gid=0, pid=1)
IMAGE = "sha256:" + "ab" * 32


def test_points_as_users_type_them() -> None:
    assert parse_point("seq:42", NOW) == Point(seq=42)
    assert parse_point("1700000000", NOW) == Point(time_ns=NOW)
    assert parse_point("1700000000.5", NOW) == Point(time_ns=NOW + SEC // 2)
    assert parse_point("2h", NOW) == Point(time_ns=NOW - 7200 * SEC)
    assert parse_point("1h30m", NOW) == Point(time_ns=NOW - 5400 * SEC)
    assert parse_point("1d", NOW) == Point(time_ns=NOW - 86400 * SEC)
    assert parse_point("2023-11-14T22:13:20Z", NOW) == Point(time_ns=NOW)
    assert parse_point("2023-11-14T23:13:20+01:00", NOW) == Point(time_ns=NOW)
    for bad in ("", "seq:", "seq:-1", "yesterday", "2h bananas"):
        with pytest.raises(PointError):
            parse_point(bad, NOW)


def _store() -> tuple[EventStore, list[tuple[int, int, object]]]:
    """A log of a few batches; returns the live state after every batch with its seq and time."""
    store: EventStore = EventStore.open(":memory:", projection=EngineProjection())
    snapshots = []
    batches = [
        [Pending(stream=stream_of("image", IMAGE), event=v.ImageLoaded(
            image_id=IMAGE, repo_tags=("busybox:latest",), layers=(), config=ImageConfig()))],
    ]
    for i, name in enumerate(("web", "db")):
        cid = f"{i + 1:02x}" * 32
        config = ContainerConfig(image="busybox", image_id=IMAGE, cmd=("sh",))
        batches.append([
            Pending(stream=stream_of("container", cid), event=v.ContainerCreateRequested(
                container_id=cid, name=name, config=config)),
            Pending(stream=stream_of("name", name), event=v.NameClaimed(name=name,
                                                                        container_id=cid))])
        batches.append([Pending(stream=stream_of("container", cid),
                                event=v.ContainerCreated(container_id=cid))])
        batches.append([Pending(stream=stream_of("container", cid),
                                event=v.ContainerStarted(container_id=cid, pid=10 + i))])
    batches.append([Pending(stream=stream_of("container", "01" * 32),
                            event=v.ContainerExited(container_id="01" * 32, exit_code=3))])
    for n, batch in enumerate(batches):
        when = NOW + n * SEC
        store.append(batch, actor=ACTOR, op_id=f"op{n}", now_ns=when)
        snapshots.append((store.head(), when, store.state))
    return store, snapshots


def test_state_at_a_seq_or_a_time_is_what_the_live_projection_held() -> None:
    store, snapshots = _store()
    for seq, when, live in snapshots:
        assert state_at(store, seq) == live
        assert seq_of(store, Point(seq=seq)) == seq
        # any moment between this batch and the next answers with this batch's state
        assert seq_of(store, Point(time_ns=when)) == seq
        assert seq_of(store, Point(time_ns=when + SEC - 1)) == seq
        assert fold_at(store.read(0), Point(time_ns=when + SEC // 2)) == live
    assert seq_of(store, Point(time_ns=NOW - 1)) == 0
    assert seq_of(store, Point(seq=10_000)) == store.head()


def test_diff_lists_added_removed_and_changed_objects() -> None:
    store, snapshots = _store()
    (_, _, first), (s_last, _, last) = snapshots[0], snapshots[-1]
    assert diff(last, last) == []
    changes = diff(first, last)
    assert [(c.kind, c.name, c.change) for c in changes] == [
        ("container", "web", "added"), ("container", "db", "added")]
    before_exit = state_at(store, s_last - 1)
    (change,) = diff(before_exit, last)
    assert (change.kind, change.name, change.change) == ("container", "web", "changed")
    assert change.fields["status"] == ("running", "exited")
    assert change.fields["exit_code"] == (0, 3)
    assert "stream_version" not in change.fields and "last_seq" not in change.fields
    (gone,) = [c for c in diff(last, first) if c.name == "db"]
    assert gone.change == "removed"


def test_states_asked_in_any_order_reuse_earlier_answers_and_stay_exact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mem, snapshots = _store()
    with EventStore.open(tmp_path / "events.db") as store:
        for env in mem.read(0):
            store.append([Pending(stream=env.stream, event=env.event)], actor=env.actor,
                         op_id=env.op_id, now_ns=env.recorded_at)
        order = [3, 7, 5, 8, 1, 8, 2, 6, 4]
        for seq in order:
            assert state_at(store, seq) == state_at(mem, seq), seq
