"""The seams between the supervisor and the kernel: one Protocol per subsystem.

I/O: none here. Each Protocol has a real implementation in `engine/drivers/` and a recording
fake in `engine/testing/fakes.py`; the supervisor, the exit watcher and the reconciler only
ever see these shapes, so their logic is tested fast and deterministically on the fakes and
the same contract is checked against the real drivers on the real kernel. The network seam keeps
its Protocols beside its drivers, as the house style asks of every seam in time:
`engine/drivers/network/seam.py` (its fake: `engine/testing/fakes.py`, its contract:
`tests/contracts/test_network_driver.py`).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec


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


class Snapshots(Protocol):
    def prepare(self, container_id: str, layer_paths: list[str]) -> str:
        """Mount the container's rootfs (idempotent); return its path."""

    def unmount(self, container_id: str) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def mounted(self) -> set[str]:
        """Ids of containers whose rootfs is mounted now (for reconciliation)."""


class Layers(Protocol):
    def path(self, diff_id: str) -> str: ...

    def has(self, diff_id: str) -> bool: ...

    def delete(self, diff_id: str) -> None: ...


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


class AttachSession(Protocol):
    """The container's stdio through its monitor: output as (stream, bytes), input bytes."""

    async def receive(self) -> tuple[str, bytes] | None: ...

    async def send(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def close(self) -> None: ...


class Volumes(Protocol):
    """Named and anonymous volumes (the local driver) and a container's mounts."""

    def create(self, name: str, options: dict[str, str]) -> None: ...

    def remove(self, name: str) -> None: ...

    def seed(self, name: str, rootfs: str, target: str, options: dict[str, str]) -> None:
        """Copy the image's content at `target` into the volume if it is empty (Docker)."""

    def prepare(self, container_id: str, plan: Any, rootfs: str,
                volume_options: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        """Mount volumes, stage binds by fd; return the OCI mount entries."""

    def release(self, container_id: str) -> None:
        """Drop the staging mounts once the runtime holds its own copies."""


class Secrets(Protocol):
    def key(self) -> bytes: ...

    def put(self, owner: str, env: list[str]) -> None: ...

    def get(self, owner: str) -> list[str]: ...

    def wipe(self, owner: str) -> bool: ...
