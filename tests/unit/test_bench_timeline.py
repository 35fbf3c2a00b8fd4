"""The Compose benchmark's phases, read from a container event stream (tools/bench/timeline.py).
Pure: the events are written here as `docker events --format '{{json .}}'` prints them."""

from __future__ import annotations

import pytest

from tools.bench.timeline import phases

S = 1_000_000_000


def ev(action: str, cid: str, t_ns: int) -> dict[str, object]:
    return {"Type": "container", "Action": action, "id": cid, "timeNano": t_ns}


def test_phases_of_two_containers() -> None:
    t0 = 100 * S
    events = [
        {"Type": "network", "Action": "create", "id": "n", "timeNano": t0 + S // 20},
        {"Type": "network", "Action": "connect", "id": "n", "timeNano": t0 + S // 2},
        ev("create", "a", t0 + S // 10), ev("create", "b", t0 + S // 5),
        ev("start", "a", t0 + 3 * S // 10), ev("start", "b", t0 + 4 * S // 10),
        ev("health_status: healthy", "a", t0 + 13 * S // 10),
        ev("health_status: healthy", "b", t0 + 16 * S // 10),
        ev("health_status: healthy", "b", t0 + 19 * S // 10),  # a later verdict: ignored
    ]
    got = phases(events, t0, t0 + 2 * S)
    assert got == pytest.approx({"network": 0.05, "created": 0.2, "started": 0.4, "healthy": 1.6,
                                 "exit": 2.0, "probe": 1.1, "poll": 0.4})


def test_events_outside_the_window_and_missing_phases() -> None:
    t0 = 100 * S
    events = [ev("create", "old", t0 - 1), ev("start", "a", t0 + S),
              ev("die", "a", t0 + S), ev("start", "late", t0 + 5 * S)]
    got = phases(events, t0, t0 + 2 * S)
    assert got == pytest.approx({"started": 1.0, "exit": 2.0})
