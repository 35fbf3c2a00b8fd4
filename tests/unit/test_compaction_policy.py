"""When the daemon compacts on its own (`engine.shell.compaction.auto_before`, pure) and how its
flags
read (`--compact-after`, `--compact-max-events`, `--compact-interval`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.daemon.main import parse_args
from engine.shell.compaction import auto_before

NOW = 10**18
HOUR = 3600 * 10**9


def test_off_by_default() -> None:
    args = parse_args(["--root", "/tmp/x"])
    assert (args.compact_after, args.compact_max_events, args.compact_interval) == (
        None, None, 600.0)
    assert auto_before(NOW, after_ns=None, max_events=None, live=10**9) is None


def test_flags_read_durations_and_counts() -> None:
    args = parse_args(["--compact-after", "720h", "--compact-max-events", "5000",
                       "--compact-interval", "30s"])
    assert (args.compact_after, args.compact_max_events, args.compact_interval) == (
        720 * HOUR, 5000, 30.0)


@pytest.mark.parametrize("argv", [["--compact-after", "soon"], ["--compact-after", "0s"],
                                  ["--compact-max-events", "0"], ["--compact-max-events", "-3"],
                                  ["--compact-interval", "x"]])
def test_bad_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "invalid" in capsys.readouterr().err


@given(after=st.one_of(st.none(), st.integers(1, 10**15)),
       max_events=st.one_of(st.none(), st.integers(1, 10**6)), live=st.integers(0, 2 * 10**6))
def test_auto_before(after: int | None, max_events: int | None, live: int) -> None:
    before = auto_before(NOW, after_ns=after, max_events=max_events, live=live)
    over = max_events is not None and live > max_events
    if after is None and not over:
        assert before is None  # nothing asks for a compaction
    elif over:
        assert before == NOW - (after or 0)  # too big: every removed object (old enough)
    else:
        assert before == NOW - after
