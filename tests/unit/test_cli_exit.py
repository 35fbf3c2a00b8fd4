"""How the `shipslog` command ends (issue 17): a verb that only talks to the daemon and
writes to stdout/stderr flushes both and leaves with os._exit and its own exit code (the
interpreter's teardown cost `ps` a few ms and frees nothing the kernel does not); every other
verb, and any caller that passes argv itself, leaves through SystemExit as before."""

from __future__ import annotations

import io
import sys

import pytest

from engine.cli import main as cli_main

NO_DAEMON = "unix:///nonexistent/shipslog.sock"


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Stream(io.StringIO):
    """stdout/stderr that remember whether they were flushed after the last write."""

    flushed = True

    def write(self, text: str) -> int:
        self.flushed = False
        return super().write(text)

    def flush(self) -> None:
        self.flushed = True


def _streams(monkeypatch: pytest.MonkeyPatch) -> tuple[_Stream, _Stream]:
    # in the test's body: pytest's capture sets sys.stdout again between setup and call
    out, err = _Stream(), _Stream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)

    def quick_exit(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(cli_main.os, "_exit", quick_exit)
    return out, err


@pytest.mark.parametrize("verb", [["ps", "-a"], ["images"], ["inspect", "x"], ["logs", "x"],
                                  ["run", "--rm", "busybox"], ["rm", "-f", "x"]])
def test_read_verbs_flush_and_exit_with_their_code(
        verb: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _streams(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["shipslog", "-H", NO_DAEMON, *verb])
    with pytest.raises(_Exited) as exited:
        cli_main.main()
    assert exited.value.code == 125  # no daemon: the error's own exit code (Docker's 125)
    assert "cannot connect to the daemon" in err.getvalue()
    assert out.flushed and err.flushed


def test_version_prints_everything_before_the_quick_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _streams(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["shipslog", "-H", NO_DAEMON, "version"])
    with pytest.raises(_Exited):
        cli_main.main()
    assert out.getvalue().startswith("Client:\n Version:")
    assert out.flushed


@pytest.mark.parametrize("argv", [["save", "-o", "f", "x"], ["export", "-o", "f", "x"],
                                  ["container", "ls"], ["events", "--until", "0"]])
def test_other_verbs_exit_through_systemexit(
        argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _streams(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["shipslog", "-H", NO_DAEMON, *argv])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code != 0


def test_a_caller_passing_argv_gets_systemexit(monkeypatch: pytest.MonkeyPatch) -> None:
    _streams(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["-H", NO_DAEMON, "ps"])
    assert exited.value.code == 125
