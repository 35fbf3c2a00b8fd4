"""Async wrapper of the `runc` command line.

I/O: runs `runc --root <exec-root>/runc …` as subprocesses through `trio.run_process`.
Nothing else: bundles, monitors and logs are `engine/drivers/runtime/monitor.py`'s job.

Every failing command raises `RuncError` (a `KernelError`) whose message carries runc's own
stderr line, so that "exec: no such file" reaches the user intact (RELIABILITY F-09).
"does not exist" becomes `NotFound`, "not running"/"is paused" become `Conflict`.

The version floor: runc before 1.1.12 leaks a host directory fd into the container
(CVE-2024-21626). Debian backports the fix without bumping the upstream version (bookworm's
`1.1.5+ds1-1+deb12u1`), so the check knows those package revisions too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from engine.core.errors import Conflict, KernelError, NotFound, Unavailable

VERSION_FLOOR = (1, 1, 12)
# Longest a single runc command may take (`create` is bounded by the monitor's own sync
# timeout): past it the process is killed and the caller gets a clear error.
RUNC_TIMEOUT_S = float(os.environ.get("SHIPSLOG_RUNC_TIMEOUT", "30"))
# Distribution builds that carry the CVE-2024-21626 fix below the upstream floor:
# upstream version string → (revision marker in the `commit:` line, minimum revision).
PATCHED_BACKPORTS: dict[str, tuple[str, int]] = {"1.1.5+ds1": ("+deb12u", 1)}


class RuncError(KernelError):
    """runc exited non-zero; `stderr` holds what it said."""

    def __init__(self, message: str, hint: str = "", *, stderr: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr


@dataclass(frozen=True)
class RuncVersion:
    version: str
    commit: str
    numbers: tuple[int, int, int]


@dataclass(frozen=True)
class RuncState:
    id: str
    pid: int
    status: str  # "created", "running", "paused", "stopped"
    bundle: str
    created: str


def parse_version(text: str) -> RuncVersion:
    """Parse `runc --version` output and refuse runtimes without the CVE-2024-21626 fix."""
    m = re.search(r"runc version (\S+)", text)
    if not m:
        raise Unavailable("cannot read the runc version", "is runc installed and on PATH?")
    version = m.group(1)
    commit_m = re.search(r"commit: (\S+)", text)
    commit = commit_m.group(1) if commit_m else ""
    nums = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not nums:
        raise Unavailable(f"cannot parse runc version {version!r}", "install runc >= 1.1.12")
    numbers = (int(nums.group(1)), int(nums.group(2)), int(nums.group(3)))
    ok = numbers >= VERSION_FLOOR
    backport = PATCHED_BACKPORTS.get(version)
    if not ok and backport is not None:
        marker, minimum = backport
        rev = re.search(re.escape(marker) + r"(\d+)", commit)
        ok = rev is not None and int(rev.group(1)) >= minimum
    if not ok:
        raise Unavailable(
            f"runc {version} is too old: it lacks the fix for CVE-2024-21626 (leaked fds)",
            "install runc 1.1.12 or newer (or a distribution build with the fix)",
        )
    return RuncVersion(version=version, commit=commit, numbers=numbers)


def classify_error(cmd: str, container_id: str, stderr: str) -> Exception:
    line = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    low = stderr.lower()
    msg = f"runc {cmd} {container_id}: {line}"
    if "does not exist" in low or "not found" in low and "container" in low:
        return NotFound(msg, "the container is not known to the runtime")
    if any(
        k in low
        for k in ("not running", "is paused", "not paused", "not stopped", "already running")
    ):
        return Conflict(msg, "the container is not in a state that allows this")
    # "cannot start a container that has stopped" after our own `runc create`: its init died
    # under us (RELIABILITY F-09), nothing the caller did: a runtime error (500), not a 409.
    if "already exists" in low:
        return Conflict(msg, "")
    return RuncError(msg, "see the runtime's message above", stderr=stderr)


class Runc:
    """One runc state root. All methods are async and raise on runc errors."""

    def __init__(self, root: str, binary: str = "runc") -> None:
        self.root = root
        self.binary = binary

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    async def _run(
        self, cmd: str, container_id: str, args: Sequence[str], *, stdin: bytes = b""
    ) -> bytes:
        try:
            with trio.fail_after(RUNC_TIMEOUT_S):  # a hung runc must not hang the API (F-09)
                proc = await trio.run_process(
                    self.argv(*args),
                    stdin=stdin,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except FileNotFoundError:
            raise Unavailable(f"{self.binary} not found", "install runc >= 1.1.12") from None
        except trio.TooSlowError:
            raise RuncError(
                f"runc {cmd} {container_id} timed out after {RUNC_TIMEOUT_S:.0f} s (killed)",
                "the runtime is stuck; check the host (runc, cgroups, disk)") from None
        if proc.returncode != 0:
            raise classify_error(cmd, container_id, proc.stderr.decode("utf-8", "replace"))
        out: bytes = proc.stdout
        return out

    async def version(self) -> RuncVersion:
        try:
            proc = await trio.run_process(
                [self.binary, "--version"], capture_stdout=True, capture_stderr=True, check=False
            )
        except FileNotFoundError:
            raise Unavailable(f"{self.binary} not found", "install runc >= 1.1.12") from None
        return parse_version(proc.stdout.decode("utf-8", "replace"))

    async def create(
        self, container_id: str, bundle: str, *, pid_file: str, console_socket: str = ""
    ) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self._run("create", container_id, [*args, container_id])

    async def start(self, container_id: str) -> None:
        await self._run("start", container_id, ["start", container_id])

    async def state(self, container_id: str) -> RuncState | None:
        try:
            out = await self._run("state", container_id, ["state", container_id])
        except NotFound:
            return None
        return _state_of(json.loads(out))

    async def kill(self, container_id: str, signal: int | str, *, all: bool = False) -> None:
        args = ["kill", *(["--all"] if all else []), container_id, str(signal)]
        await self._run("kill", container_id, args)

    async def delete(self, container_id: str, *, force: bool = False) -> bool:
        """Delete; returns False if runc did not know the container (idempotent)."""
        try:
            await self._run(
                "delete", container_id, ["delete", *(["--force"] if force else []), container_id]
            )
        except NotFound:
            return False
        return True

    async def pause(self, container_id: str) -> None:
        await self._run("pause", container_id, ["pause", container_id])

    async def update(self, container_id: str, resources_file: str) -> None:
        """`runc update -r FILE`: new cgroup limits for a running container."""
        await self._run("update", container_id, ["update", "-r", resources_file, container_id])

    async def resume(self, container_id: str) -> None:
        await self._run("resume", container_id, ["resume", container_id])

    async def ps(self, container_id: str) -> list[int]:
        out = await self._run("ps", container_id, ["ps", "--format", "json", container_id])
        pids = json.loads(out or b"[]") or []
        return [int(p) for p in pids]

    async def list(self) -> list[RuncState]:
        out = await self._run("list", "", ["list", "--format", "json"])
        items = json.loads(out or b"null") or []
        return [_state_of(item) for item in items]

    async def exec(
        self,
        container_id: str,
        process_file: str,
        *,
        detach: bool = False,
        pid_file: str = "",
        console_socket: str = "",
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = None,
        stderr: Any = None,
    ) -> int:
        """`runc exec --process FILE`. Detached: returns 0 once the process runs (its pid is
        in `pid_file`). Attached: returns the process's exit status; stdio are passed to runc
        as given (fds, or None to capture nothing)."""
        args = ["exec", "--process", process_file]
        if detach:
            args.append("--detach")
        if pid_file:
            args += ["--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        args.append(container_id)
        capture = stderr is None
        kwargs: dict[str, Any] = {"capture_stderr": True} if capture else {"stderr": stderr}
        proc = await trio.run_process(
            self.argv(*args), stdin=stdin, stdout=stdout, check=False, **kwargs
        )
        err = (proc.stderr or b"").decode("utf-8", "replace") if capture else ""
        # runc reports its own failures ("exec failed: …") on stderr with status 255 or 1;
        # a process exit code is passed through untouched.
        if proc.returncode != 0 and "exec failed" in err:
            raise classify_error("exec", container_id, err)
        if proc.returncode != 0 and detach and capture:
            raise classify_error("exec", container_id, err)
        code: int = proc.returncode
        return code


def _state_of(item: dict[str, Any]) -> RuncState:
    return RuncState(
        id=str(item.get("id", "")),
        pid=int(item.get("pid") or 0),
        status=str(item.get("status", "")),
        bundle=str(item.get("bundle", "")),
        created=str(item.get("created", "")),
    )
