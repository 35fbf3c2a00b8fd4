"""`ExecProcess.started()`: the pid of an attached exec, or 0 when runc gave up before
starting it. runc writes its pid file, runs the command and exits; for a command as short as
`true` all three can happen between two of our looks (the CI soak saw `true` end with 126).

I/O: a pid file under tmp_path; runc is stood in for by an object whose exit status is read
exactly when the race would strike."""

from __future__ import annotations

from pathlib import Path

from engine.drivers.runtime.execio import ExecProcess


class RuncThatFinishesWhenAsked:
    """runc as seen at the worst moment: the first look at its exit status finds it has
    written the pid file, run the process and exited meanwhile."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    @property
    def returncode(self) -> int:
        self.pid_file.write_text("4242")
        return 0


def exec_process(proc: object, pid_file: Path) -> ExecProcess:
    return ExecProcess(proc, stdin=None, stdout=None, stderr=None,  # type: ignore[arg-type]
                       pid_file=pid_file)


async def test_a_command_that_ended_before_we_looked_still_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "exec.pid"
    ep = exec_process(RuncThatFinishesWhenAsked(pid_file), pid_file)
    assert await ep.started() == 4242


class RuncThatGaveUp:
    returncode = 1  # exited without writing a pid file: the process never ran


async def test_runc_that_gave_up_started_nothing(tmp_path: Path) -> None:
    ep = exec_process(RuncThatGaveUp(), tmp_path / "exec.pid")
    assert await ep.started() == 0
