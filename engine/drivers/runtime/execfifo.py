"""`runc start` without a runc process: the created container's init is released through its
exec fifo, as runc itself does it.

I/O: reads `<runc root>/<id>/state.json`, opens, reads and removes `<runc root>/<id>/exec.fifo`,
reads `/proc/<pid>/stat`.

Why (issue 14): Compose starts a project's containers at once, and each `runc start` is a Go
process of its own (~10 ms of CPU on a two-core host that ten `runc create`s already fill),
on the path of every start. `kill` skips runc the same way (`linux.signal_init`).

How runc 1.1 starts a created container (libcontainer `linuxContainer.exec`,
`handleFifoResult`): `runc init` blocks opening `exec.fifo` for writing; `runc start` opens it
for reading, reads the byte init writes, and removes the fifo, after which runc reports the
container `running` (it is `created` while the fifo exists). While it waits for the byte it
checks every 100 ms that init is still alive, since a dead init never writes. The same here.
Whenever something is not as expected, nothing is changed and the caller runs `runc start`,
which gives runc's own answer ("already running", "already dead").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio

from engine.core.errors import KernelError

FIFO = "exec.fifo"
ALIVE_CHECK_S = 0.1  # runc's own interval


def _init_alive(pid: int, start: int) -> bool:
    """Is `pid` still the container's init (same start time, not a zombie)?"""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == start and fields[0] not in (b"Z", b"X")


async def release_init(state_dir: Path) -> bool:
    """Start the created container whose runc state is `state_dir`. False (nothing done)
    when runc should answer instead: no fifo (not created, or running), or init died."""
    try:
        st = json.loads((state_dir / "state.json").read_bytes())
        pid, start = int(st["init_process_pid"]), int(st["init_process_start"])
        # O_NONBLOCK: the open itself never waits (runc's blocking open needs a thread)
        fd = os.open(state_dir / FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        while True:
            with trio.move_on_after(ALIVE_CHECK_S):
                await trio.lowlevel.wait_readable(fd)
                break
            if not _init_alive(pid, start):
                return False
        data = os.read(fd, 1)
    except OSError:
        return False
    finally:
        os.close(fd)
    if not data:
        return False  # init closed the fifo without writing: it died
    # init runs the container's process now; runc's status stays `created` until the fifo is
    # gone, and a `runc start` after this would wait for a byte that never comes.
    try:
        (state_dir / FIFO).unlink(missing_ok=True)
    except OSError as exc:
        raise KernelError(f"started, but could not remove {state_dir / FIFO}: {exc}",
                          "check the exec root's filesystem") from exc
    return True
