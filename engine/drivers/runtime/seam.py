"""The runtime seam: what the supervisor, the exit watcher and the reconciler ask of the OCI
runtime, as Protocols, and the records it answers with.

I/O: none here. The Linux implementation is `linux.LinuxRuntime` (runc + conmon, bundles
under the exec root) with `specs.SpecMaker` (the OCI spec, read from the rootfs and the host);
the recording fakes are `FakeRuntime` and `FakeSpecs` in `engine/testing/fakes.py`; the
contract is `tests/contracts/test_seam_contracts.py`, and `engine/testing/seams.py` has mypy
check that both satisfy these Protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from projections.state import ContainerView, ImageView

if TYPE_CHECKING:
    from trio.abc import ReceiveStream, SendStream


# `top`'s answer: `ps` titles and rows (aliases: `Runtime.list` shadows `list` in the class).
Titles = list[str]
Rows = list[list[str]]


class ExitRecord(msgspec.Struct, frozen=True, kw_only=True):
    """How a container's process ended, as its monitor recorded it."""

    exit_code: int
    signal: str = ""
    oom_killed: bool = False
    finished_at_ns: int = 0
    lost: bool = False  # the monitor died without recording the exit (RELIABILITY F-10)
    reason: str = ""


class RuntimeState(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str  # "created", "running", "paused", "stopped"
    pid: int = 0


class AttachSession(Protocol):
    """The container's stdio through its monitor: output as (stream, bytes), input bytes."""

    async def receive(self) -> tuple[str, bytes] | None: ...

    async def send(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def close(self) -> None: ...


class ExecProcess(Protocol):
    """A process running in a container beside its own (`docker exec`), with live streams:
    with a terminal, `stdout` is the terminal (stderr merged) and `stdin` writes to it."""

    @property
    def stdin(self) -> SendStream | None: ...

    @property
    def stdout(self) -> ReceiveStream: ...

    @property
    def stderr(self) -> ReceiveStream | None: ...

    @property
    def tty(self) -> bool: ...

    @property
    def returncode(self) -> int | None:
        """The exit status once known (negative: the signal that ended the runtime)."""

    async def started(self) -> int:
        """The process's pid once it runs, or 0 when the runtime could not start it."""

    async def close_stdin(self) -> None: ...

    async def wait(self) -> int: ...

    def resize(self, height: int, width: int) -> None:
        """A new terminal size (Conflict without a terminal)."""


class Runtime(Protocol):
    async def create(
        self,
        container_id: str,
        spec: dict[str, Any],
        *,
        tty: bool,
        open_stdin: bool,
        stdin_once: bool,
        log_path: str,
        log_opts: dict[str, str],
    ) -> int:
        """Start the monitor and `runc create`; return the monitor's pid. Idempotent.
        `stdin_once`: close the container's stdin when the first attach detaches."""

    async def start(self, container_id: str) -> int:
        """Start the created container; return its pid."""

    async def kill(self, container_id: str, signal: str) -> None: ...

    async def wait_exit(self, container_id: str) -> ExitRecord:
        """Wait until the container's process has exited; works for adopted containers too."""

    def exit_record(self, container_id: str) -> ExitRecord | None:
        """The recorded exit, if the monitor wrote one (read after a daemon restart)."""

    async def delete(self, container_id: str, *, force: bool = False) -> None: ...

    async def pause(self, container_id: str) -> None: ...

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """New cgroup limits (OCI `linux.resources` parts) for a running container."""

    async def resume(self, container_id: str) -> None: ...

    async def state(self, container_id: str) -> RuntimeState | None: ...

    async def list(self) -> list[RuntimeState]: ...

    async def attach(self, container_id: str) -> AttachSession: ...

    async def probe(self, container_id: str, process: dict[str, Any], *, timeout_s: float,
                    max_output: int) -> Any:
        """Run a health probe; its result (exit code, output), or None when it timed out."""

    async def rotate_logs(self, container_id: str, log_path: str,
                          log_opts: dict[str, str]) -> None:
        """Keep `max-size`/`max-file` while the container runs; returns when it exits."""

    def open_exec(self, container_id: str, process: dict[str, Any], *, tty: bool = False,
                  size: tuple[int, int] | None = None,
                  stdin: bool = True) -> AbstractAsyncContextManager[ExecProcess]:
        """Run `process` (an OCI process object) in the container while the block runs;
        `size` is its terminal's first (rows, columns); `stdin=False` gives it /dev/null.
        Leaving the block stops a process still running."""

    async def top(self, container_id: str,
                  ps_args: str = "-ef") -> tuple[Titles, Rows]:
        """Docker's `top`: the titles and rows of `ps ps_args` for the container's
        processes."""

    async def resize(self, container_id: str, height: int, width: int) -> None:
        """A new size for the container's terminal."""


class SpecMaker(Protocol):
    """The OCI spec of one start (the runtime's input), built from the container, its image
    and what the start prepared (rootfs, staged mounts, network namespace)."""

    def make(self, container: ContainerView, image: ImageView, env: list[str],
             rootfs: str, mounts: list[dict[str, Any]] | None = None,
             rootfs_propagation: str = "", netns_path: str | None = None,
             addresses: Sequence[str] = (), embedded_dns: str = "",
             hostname: str = "") -> dict[str, Any]: ...
