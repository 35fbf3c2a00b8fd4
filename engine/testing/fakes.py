"""Recording fakes of every driver Protocol, with fault injection.

I/O: none — these stand where the kernel would, for fast deterministic tests of the
supervisor, the exit watcher and recovery. Each fake records the calls it got (`calls`), keeps
the state a kernel would keep (it survives a simulated daemon crash, as the real kernel
does), and raises a queued fault when a test asks for one (`fail("runtime.create", exc)`).
"""

from __future__ import annotations

import signal as signals
from collections.abc import Callable
from typing import Any

import trio

from engine.core.errors import InvalidArgument, KernelError, NotFound
from engine.drivers.protocols import ExitRecord, RuntimeState
from engine.drivers.runtime.execio import ExecResult
from engine.drivers.snapshots.overlay import validate_container_id
from events.redact import RedactError, check_env


class Faults:
    """One-shot faults keyed by operation name, shared by all fakes of one 'machine'."""

    def __init__(self) -> None:
        self.queued: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def fail(self, name: str, exc: Exception | None = None) -> None:
        self.queued.setdefault(name, []).append(exc or KernelError(f"injected fault in {name}"))

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        pending = self.queued.get(name)
        if pending:
            raise pending.pop(0)


class FakeSnapshots:
    """Rootfs mounts by container id. `layer_exists` says whether a layer directory is there
    (the real snapshotter refuses a missing one); without it every layer is."""

    def __init__(self, faults: Faults,
                 layer_exists: Callable[[str], bool] | None = None) -> None:
        self.f = faults
        self.mounts: dict[str, list[str]] = {}
        self.dirs: set[str] = set()
        self._layer_exists = layer_exists

    def prepare(self, container_id: str, layer_paths: list[str]) -> str:
        self.f.record("snapshots.prepare", container_id)
        validate_container_id(container_id)  # the real one's rule (RELIABILITY I-02)
        if container_id in self.mounts:
            return f"/fake/containers/{container_id}/rootfs"
        for path in layer_paths:
            if self._layer_exists is not None and not self._layer_exists(path):
                raise KernelError(f"layer directory {path} is missing",
                                  "the image is damaged; pull it again")
        self.dirs.add(container_id)
        self.mounts[container_id] = list(layer_paths)
        return f"/fake/containers/{container_id}/rootfs"

    def unmount(self, container_id: str) -> None:
        self.f.record("snapshots.unmount", container_id)
        self.mounts.pop(container_id, None)

    def remove(self, container_id: str) -> None:
        self.f.record("snapshots.remove", container_id)
        self.mounts.pop(container_id, None)
        self.dirs.discard(container_id)

    def mounted(self) -> set[str]:
        return set(self.mounts)


class _Proc:
    def __init__(self) -> None:
        self.status = "created"
        self.pid = 0
        self.exited = trio.Event()
        self.record: ExitRecord | None = None


class FakeRuntime:
    """Containers as a kernel would hold them: created → running → stopped, with exits."""

    def __init__(self, faults: Faults, clock: Any = None) -> None:
        self.f = faults
        self.procs: dict[str, _Proc] = {}
        self.exit_files: dict[str, ExitRecord] = {}
        self._next_pid = 1000
        self.attached: dict[str, list[FakeAttach]] = {}
        self._clock = clock or (lambda: 0)
        # Health probes: exit codes to answer in turn per container (None: a timeout);
        # 0 once a container's script has run out.
        self.probe_script: dict[str, list[int | None]] = {}

    async def create(self, container_id: str, spec: dict[str, Any], *, tty: bool,
                     open_stdin: bool, stdin_once: bool, log_path: str,
                     log_opts: dict[str, str]) -> int:
        self.f.record("runtime.create", container_id)
        if container_id not in self.procs:
            self.procs[container_id] = _Proc()
            self.exit_files.pop(container_id, None)
        self._next_pid += 1
        return self._next_pid

    async def start(self, container_id: str) -> int:
        self.f.record("runtime.start", container_id)
        p = self.procs.get(container_id)
        if p is None:
            raise NotFound(f"container {container_id} does not exist")
        if p.status == "created":
            self._next_pid += 1
            p.status, p.pid = "running", self._next_pid
        return p.pid

    def exit(self, container_id: str, code: int, *, signal: str = "",
             oom: bool = False) -> None:
        """The container's process ends by itself (a test's doing)."""
        p = self.procs.get(container_id)
        if p is None or p.status not in ("running", "paused"):
            return
        p.status = "stopped"
        p.record = ExitRecord(exit_code=code, signal=signal, oom_killed=oom,
                              finished_at_ns=self._clock())
        self.exit_files[container_id] = p.record
        p.exited.set()

    async def kill(self, container_id: str, signal: str) -> None:
        self.f.record("runtime.kill", container_id, signal)
        p = self.procs.get(container_id)
        if p is None or p.status not in ("running", "paused", "created"):
            raise NotFound(f"container {container_id} is not running")
        if p.status == "created":
            p.status = "stopped"
            p.exited.set()
            return
        signum = int(getattr(signals.Signals, signal if signal.startswith("SIG")
                             else "SIG" + signal, signals.SIGTERM))
        self.exit(container_id, 128 + signum, signal=signal)

    async def wait_exit(self, container_id: str) -> ExitRecord:
        p = self.procs.get(container_id)
        if p is None:
            record = self.exit_files.get(container_id)
            if record is None:
                raise NotFound(f"container {container_id} has no monitor")
            return record
        await p.exited.wait()
        assert p.record is not None or p.status == "stopped"
        return p.record or ExitRecord(exit_code=137, signal="SIGKILL")

    def exit_record(self, container_id: str) -> ExitRecord | None:
        return self.exit_files.get(container_id)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        self.f.record("runtime.delete", container_id)
        p = self.procs.pop(container_id, None)
        if p is not None and p.status in ("running", "paused"):
            p.status = "stopped"
            p.record = ExitRecord(exit_code=137, signal="SIGKILL")
            self.exit_files[container_id] = p.record
            p.exited.set()

    async def pause(self, container_id: str) -> None:
        self.f.record("runtime.pause", container_id)
        p = self.procs.get(container_id)
        if p is None or p.status != "running":
            raise NotFound(f"container {container_id} is not running")
        p.status = "paused"

    async def resume(self, container_id: str) -> None:
        self.f.record("runtime.resume", container_id)
        p = self.procs.get(container_id)
        if p is None or p.status != "paused":
            raise NotFound(f"container {container_id} is not paused")
        p.status = "running"

    async def state(self, container_id: str) -> RuntimeState | None:
        p = self.procs.get(container_id)
        return None if p is None else RuntimeState(id=container_id, status=p.status, pid=p.pid)

    async def list(self) -> list[RuntimeState]:
        return [RuntimeState(id=k, status=p.status, pid=p.pid) for k, p in self.procs.items()]

    async def attach(self, container_id: str) -> FakeAttach:
        self.f.record("runtime.attach", container_id)
        p = self.procs.get(container_id)
        if p is None:
            raise NotFound(f"container {container_id} is not running")
        session = FakeAttach()
        self.attached.setdefault(container_id, []).append(session)
        return session

    async def rotate_logs(self, container_id: str, log_path: str,
                          log_opts: dict[str, str]) -> None:
        self.f.record("runtime.rotate_logs", container_id)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self.f.record("runtime.update", container_id, resources)
        if container_id not in self.procs:
            raise NotFound(f"container {container_id} is not running")

    async def probe(self, container_id: str, process: dict[str, Any], *, timeout_s: float,
                    max_output: int) -> ExecResult | None:
        self.f.record("runtime.probe", container_id, tuple(process["args"]))
        if container_id not in self.procs or self.procs[container_id].status != "running":
            raise KernelError(f"container {container_id} is not running")
        script = self.probe_script.get(container_id)
        code = script.pop(0) if script else 0
        return None if code is None else ExecResult(code, b"probe output", b"")

    def rebind(self) -> None:
        """A new daemon (new trio run) watches the same processes: fresh events."""
        for p in self.procs.values():
            done = p.exited.is_set()
            p.exited = trio.Event()
            if done:
                p.exited.set()


class FakeAttach:
    """An attach session whose output the test writes and whose input it reads."""

    def __init__(self) -> None:
        self.output: list[tuple[str, bytes] | None] = []
        self.input: list[bytes] = []
        self.closed = False

    async def receive(self) -> tuple[str, bytes] | None:
        while not self.output:
            await trio.sleep(0.001)
        return self.output.pop(0)

    async def send(self, data: bytes) -> None:
        self.input.append(data)

    def close_stdin(self) -> None:
        self.input.append(b"")

    def close(self) -> None:
        self.closed = True


class FakeSecrets:
    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}

    def key(self) -> bytes:
        return b"k" * 32

    def put(self, owner: str, env: list[str]) -> None:
        for entry in env:  # what the real store refuses, refused here too
            try:
                check_env(entry)
            except RedactError as exc:
                raise InvalidArgument(exc.message, exc.hint) from None
        self.values[owner] = list(env)

    def get(self, owner: str) -> list[str]:
        if owner not in self.values:
            raise NotFound(f"no secrets stored for {owner}", "")
        return list(self.values[owner])

    def wipe(self, owner: str) -> bool:
        return self.values.pop(owner, None) is not None


class FakeLayers:
    def __init__(self, faults: Faults) -> None:
        self.f = faults
        self.present: set[str] = set()

    def path(self, diff_id: str) -> str:
        return f"/fake/layers/{diff_id}"

    def delete(self, diff_id: str) -> None:
        self.f.record("layers.delete", diff_id)
        self.present.discard(diff_id)

    def delete_blob(self, digest: str) -> None:
        self.f.record("content.delete", digest)


class FakeSpecs:
    def make(self, container: Any, image: Any, env: list[str], rootfs: str,
             mounts: list[dict[str, Any]] | None = None, rootfs_propagation: str = "",
             netns_path: str | None = None, addresses: Any = (),
             embedded_dns: str = "", hostname: str = "") -> dict[str, Any]:
        return {"root": {"path": rootfs}, "process": {"env": env}, "mounts": mounts or []}


class FakeVolumes:
    """Volumes as directories that exist or not, and per-container staging that is held
    between `prepare` and `release`."""

    def __init__(self, faults: Faults) -> None:
        self.f = faults
        self.present: set[str] = set()
        self.seeded: set[str] = set()
        self.staged: dict[str, list[str]] = {}

    def create(self, name: str, options: dict[str, str]) -> None:
        self.f.record("volumes.create", name)
        self.present.add(name)

    def remove(self, name: str) -> None:
        self.f.record("volumes.remove", name)
        self.present.discard(name)
        self.seeded.discard(name)

    def seed(self, name: str, rootfs: str, target: str, options: dict[str, str]) -> None:
        self.f.record("volumes.seed", name, target)
        self.seeded.add(name)

    def prepare(self, container_id: str, plan: Any, rootfs: str,
                volume_options: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        self.f.record("volumes.prepare", container_id)
        out = []
        for m in plan.mounts:
            if m.kind == "volume" and m.source not in self.present:
                raise NotFound(f"volume {m.source} has no directory")
            source = {"volume": f"/fake/volumes/{m.source}/_data",
                      "bind": m.source}.get(m.kind, "")
            out.append(m.oci(source=source))  # the entries the real mounter gives
        self.staged[container_id] = [m.target for m in plan.mounts]
        return out

    def release(self, container_id: str) -> None:
        self.staged.pop(container_id, None)


class FakeFiles:
    def __init__(self, faults: Faults) -> None:
        self.f = faults
        self.dirs: set[str] = set()

    def log_path(self, container_id: str) -> str:
        self.dirs.add(container_id)
        return f"/fake/containers/{container_id}/log"

    def remove_container_files(self, container_id: str) -> None:
        self.f.record("files.remove", container_id)
        self.dirs.discard(container_id)
