"""The daemon's side of replication: its flags, what `info` prints, and that automatic
compaction never archives past the last event the center acknowledged (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from engine.cli.system import replication_line
from engine.daemon.main import parse_args
from engine.shell import compaction
from engine.shell.replication import ReplicationStatus
from events.central import display_url
from events.envelope import SYSTEM_ACTOR

HOUR = 3600 * 10**9


def test_replicate_to_takes_a_host_name_or_the_hostname() -> None:
    args = parse_args(["--replicate-to", "postgresql://r@c/db", "--host-name", "node-7"])
    assert (args.replicate_to, args.host_name) == ("postgresql://r@c/db", "node-7")
    assert parse_args(["--replicate-to", "postgresql://r@c/db"]).host_name
    assert parse_args([]).replicate_to is None


def test_a_bad_host_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--replicate-to", "postgresql://r@c/db", "--host-name", "a b/../c"])
    assert "invalid host name" in capsys.readouterr().err


def test_the_url_shown_has_no_password_and_no_tls_paths() -> None:
    url = "postgresql://rep:s3cret@center.example:5433/fleet?sslmode=verify-full&sslkey=/k"
    assert display_url(url) == "postgresql://rep@center.example:5433/fleet"


def test_info_line() -> None:
    status = ReplicationStatus("postgresql://rep:pw@c:5432/db", "alpha")
    status.acknowledged, status.head = 90, 100
    assert replication_line(status.document()) == (
        " Replication: postgresql://rep@c:5432/db, host alpha, acknowledged 90 of 100 (lag 10)")
    status.state, status.error = "stopped", "fork: the chains differ"
    assert replication_line(status.document()).endswith(", stopped: fork: the chains differ")


def test_automatic_compaction_stops_at_the_acknowledged_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    async def compact_in_writer(writer: Any, root: Any, *, before_ns: int, **_: Any) -> Any:
        asked.append(before_ns)
        return type("Report", (), {"count": 0})()

    monkeypatch.setattr(compaction, "compact_in_writer", compact_in_writer)
    monkeypatch.setattr(compaction, "live_events", lambda store: 10**6)
    now = 1000 * HOUR
    acked_at = now - 800 * HOUR  # the center holds events up to this time

    async def main() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(stop_after_first_round, n.cancel_scope)
            await compaction.run_auto_compaction(
                type("W", (), {"store": None})(), "/nonexistent", lambda: now, after_ns=HOUR,
                max_events=None, interval_s=60, actor=SYSTEM_ACTOR, hold=lambda: acked_at)

    async def stop_after_first_round(scope: trio.CancelScope) -> None:
        while not asked:
            await trio.sleep(0.01)
        scope.cancel()

    trio.run(main)
    assert asked and set(asked) == {acked_at}  # not now - 1h: those were never shipped


def test_a_manual_compaction_also_stops_at_the_acknowledged_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`shipslog system compact` while replicating: archiving past what the center holds
    would leave a gap the replicator must stop at; the route holds back as the timer does."""
    from engine.api.routes import compact as route
    from engine.api.server.router import Request
    from events.envelope import Actor

    asked: list[int] = []

    async def compact_in_writer(writer: Any, root: Any, *, before_ns: int, **_: Any) -> Any:
        asked.append(before_ns)
        return object()

    now = 1000 * HOUR
    acked_at = now - 800 * HOUR
    monkeypatch.setattr(route, "compact_in_writer", compact_in_writer)
    monkeypatch.setattr(route, "before_ns_of", lambda store, text, now_ns: now_ns - HOUR)
    monkeypatch.setattr(route, "live_events", lambda store: 0)
    monkeypatch.setattr(route, "report_json", lambda report, live: {})
    ctx = type("Ctx", (), {"writer": type("W", (), {"store": None})(), "store": None,
                           "paths": type("P", (), {"root": "/nonexistent"})(),
                           "clock": staticmethod(lambda: now),
                           "compaction_hold": staticmethod(lambda: acked_at)})()
    handler, _ = route.compact_routes(ctx).match("POST", "/shipslog/system/compact")
    req = Request(method="POST", path="/shipslog/system/compact", params={},
                  query={"before": ["1h"]}, headers={}, api_version="1.43",
                  actor=Actor(uid=0, gid=0, pid=1))
    trio.run(handler.handler, req)
    assert asked == [acked_at]
