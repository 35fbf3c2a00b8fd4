"""Recording fakes of every driver Protocol, with fault injection.

I/O: none — these stand where the kernel would, for fast deterministic tests of the
supervisor, the exit watcher and recovery. Each fake records the calls it got (`calls`), keeps
the state a kernel would keep (it survives a simulated daemon crash, as the real kernel
does), and raises a queued fault when a test asks for one (`fail("runtime.create", exc)`).
"""

from __future__ import annotations

import re
import signal as signals
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine.core.errors import Conflict, InvalidArgument, KernelError, NotFound
from engine.core.fwd_plan import FirewallFacts
from engine.core.hostfiles import ResolvConf
from engine.core.net_plan import VethPlan
from engine.core.nft_plan import NetworkRules, OwnedRule, Publish
from engine.drivers.network.seam import OWNED_ALIAS, LinkInfo, NetworkKernel
from engine.drivers.runtime.execio import ExecResult
from engine.drivers.runtime.seam import ExitRecord, Rows, RuntimeState, Titles
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

    def container_dir(self, container_id: str) -> Path:
        return Path("/fake/containers") / validate_container_id(container_id)

    def rootfs(self, container_id: str) -> Path:
        return self.container_dir(container_id) / "rootfs"


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
        # Execs: (output, exit code) to answer in turn per container; (b"", 0) once run out.
        self.exec_script: dict[str, list[tuple[bytes, int]]] = {}
        self.execs: dict[str, list[FakeExec]] = {}

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

    @asynccontextmanager
    async def open_exec(self, container_id: str, process: dict[str, Any], *,
                        tty: bool = False, size: tuple[int, int] | None = None,
                        stdin: bool = True) -> AsyncIterator[FakeExec]:
        self.f.record("runtime.exec", container_id, tuple(process["args"]))
        p = self.procs.get(container_id)
        running = p is not None and p.status == "running"
        script = self.exec_script.get(container_id)
        output, code = script.pop(0) if script else (b"", 0)
        self._next_pid += 1
        # As runc: a container that is not running starts no exec (no pid, code 126).
        ep = (FakeExec(self._next_pid, output, code, tty=tty, size=size) if running
              else FakeExec(0, b"", 126, tty=tty, size=size,
                            error=f"container {container_id} is not running\n".encode()))
        self.execs.setdefault(container_id, []).append(ep)
        yield ep

    async def top(self, container_id: str,
                  ps_args: str = "-ef") -> tuple[Titles, Rows]:
        self.f.record("runtime.top", container_id, ps_args)
        p = self.procs.get(container_id)
        if p is None or p.status not in ("running", "paused"):
            raise KernelError(f"container {container_id} is not running")
        return (["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                [["root", str(p.pid), "0", "0", "00:00", "?", "00:00:00", "sh"]])

    async def resize(self, container_id: str, height: int, width: int) -> None:
        self.f.record("runtime.resize", container_id, height, width)
        if container_id not in self.procs:
            raise NotFound(f"container {container_id} is not running")

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


class _Output(trio.abc.ReceiveStream):
    """A stream that gives its bytes once, then the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        size = len(self.data) if max_bytes is None else max_bytes
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    async def aclose(self) -> None:
        self.data = b""


class _Input(trio.abc.SendStream):
    """A stream that keeps what is written to it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True


class FakeExec:
    """An exec whose output and exit code the test scripted (`FakeRuntime.exec_script`)."""

    def __init__(self, pid: int, output: bytes, code: int, *, tty: bool,
                 size: tuple[int, int] | None, error: bytes = b"") -> None:
        self.pid = pid
        self.code = code
        self.stdin = _Input()
        self.stdout = _Output(output if not tty else output + error)
        self.stderr: _Output | None = None if tty else _Output(error)
        self._tty = tty
        self.sizes: list[tuple[int, int]] = [size] if size else []
        self.returncode: int | None = None

    @property
    def tty(self) -> bool:
        return self._tty

    async def started(self) -> int:
        await trio.lowlevel.checkpoint()
        return self.pid

    async def close_stdin(self) -> None:
        await self.stdin.aclose()

    async def wait(self) -> int:
        await trio.lowlevel.checkpoint()
        self.returncode = self.code
        return self.code

    def resize(self, height: int, width: int) -> None:
        if not self._tty:
            raise Conflict("this exec has no terminal", "resize needs an exec with tty")
        self.sizes.append((height, width))


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
    def __init__(self) -> None:
        # The thread each spec was made on: the real one writes files, which must not
        # hold the event loop while a project's containers start at once (issue 14).
        self.threads: list[str] = []

    def make(self, container: Any, image: Any, env: list[str], rootfs: str,
             mounts: list[dict[str, Any]] | None = None, rootfs_propagation: str = "",
             netns_path: str | None = None, addresses: Any = (),
             embedded_dns: str = "", hostname: str = "") -> dict[str, Any]:
        self.threads.append(threading.current_thread().name)
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

    def path(self, name: str) -> str:
        """Where the volume's files are (the local driver's `_data`)."""
        return f"/fake/volumes/{name}/_data"

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


# -- the network seam (issue 16, 20) ---------------------------------------------------------


class FakeLink(msgspec.Struct, kw_only=True):
    """A link as the fake kernel holds it, in the host namespace or in a sandbox."""

    name: str
    kind: str
    master: str = ""  # bridge a veth's host end is enslaved to; a sub-interface's parent
    alias: str = ""
    peer: str = ""  # a veth's other end: "<sandbox>/<ifname>"
    mode: str = ""
    addresses: tuple[str, ...] = ()
    up: bool = False


class FakeNetKernel:
    """The kernel's side of networking, as the fake drivers change it: links in the host
    namespace, sandboxes with their interfaces, nft rules and FORWARD accept rules by
    owner. It survives a simulated crash, as the kernel does."""

    def __init__(self, faults: Faults) -> None:
        self.f = faults
        self.links: dict[str, FakeLink] = {}
        self.sandboxes: dict[str, dict[str, FakeLink]] = {}  # path -> ifname -> link
        self.nft: dict[str, str] = {}  # owner -> "net" | "ctr"
        self.forward: dict[int, set[str]] = {4: set(), 6: set()}
        self.base = False

    def sandbox(self, path: str) -> dict[str, FakeLink]:
        found = self.sandboxes.get(path)
        if found is None:
            raise KernelError(f"cannot open network namespace {path}: no such file")
        return found


class FakeBridgeDriver:
    """Bridges and veth pairs, as `engine/drivers/network/bridge.py` makes them."""

    def __init__(self, k: FakeNetKernel) -> None:
        self.k = k

    def create_network(self, plan: Any) -> None:
        self.k.f.record("net.create_network", plan.name)
        addresses = (plan.gateway_cidr, plan.gateway6_cidr) if plan.gateway6_cidr else (
            plan.gateway_cidr,)
        self.k.links.setdefault(plan.name, FakeLink(name=plan.name, kind="bridge",
                                                    addresses=addresses, up=True))

    def delete_network(self, plan: Any) -> None:
        self.k.f.record("net.delete_network", plan.name)
        self.k.links.pop(plan.name, None)
        for link in list(self.k.links.values()):
            if link.kind == "veth" and link.master == plan.name:
                link.master = ""

    def create_endpoint(self, plan: VethPlan) -> str:
        self.k.f.record("net.create_endpoint", plan.host_ifname)
        box = self.k.sandbox(plan.netns_path)
        if plan.bridge not in self.k.links:
            raise KernelError(f"bridge {plan.bridge} does not exist",
                              hint="the network must be created first")
        peer = f"{plan.netns_path}/{plan.peer_ifname}"
        mine = self.k.links.get(plan.host_ifname)
        if mine is not None and (mine.peer != peer or mine.master != plan.bridge):
            self._drop(plan.host_ifname)
        other = box.get(plan.peer_ifname)
        if other is not None and other.alias != plan.host_ifname:
            raise KernelError(f"cannot create {plan.host_ifname}/{plan.peer_ifname}: "
                              f"{plan.peer_ifname} is already used in the container",
                              hint="give each network its own ethN")
        self.k.links[plan.host_ifname] = FakeLink(name=plan.host_ifname, kind="veth",
                                                  master=plan.bridge, peer=peer, up=True)
        box.setdefault(plan.peer_ifname, FakeLink(name=plan.peer_ifname, kind="veth",
                                                  alias=plan.host_ifname))
        return plan.host_ifname

    def join(self, plan: VethPlan) -> None:
        self.k.f.record("net.join", plan.host_ifname)
        link = self.k.sandbox(plan.netns_path).get(plan.peer_ifname)
        if link is None:
            raise KernelError(f"cannot configure {plan.peer_ifname} in {plan.netns_path}: "
                              "no such device")
        link.addresses = tuple(a for a in (plan.ip_cidr, plan.ip6_cidr) if a)
        link.up = True

    def leave(self, sandbox: str, endpoint_id: str) -> None:
        self.k.f.record("net.leave", endpoint_id)

    def delete_endpoint(self, sandbox: str, endpoint_id: str) -> None:
        self.k.f.record("net.delete_endpoint", endpoint_id)
        self._drop(endpoint_id)

    def _drop(self, host_ifname: str) -> None:
        link = self.k.links.pop(host_ifname, None)
        if link is not None and link.peer:
            path, _, ifname = link.peer.rpartition("/")
            self.k.sandboxes.get(path, {}).pop(ifname, None)

    def list_links(self) -> list[LinkInfo]:
        return [LinkInfo(name=li.name, kind=li.kind, master=li.master, up=li.up,
                         alias=li.alias) for li in self.k.links.values()
                if li.kind in ("bridge", "veth")]


class FakeSubLinkDriver:
    """macvlan/ipvlan endpoints on a parent, as `engine/drivers/network/sublink.py`."""

    def __init__(self, k: FakeNetKernel, kind: str) -> None:
        self.k = k
        self.kind = kind

    def create_network(self, plan: Any) -> None:
        self.k.f.record("net.create_network", plan.parent)
        if plan.parent in self.k.links:
            self.k.links[plan.parent].up = True
            return
        if not plan.make or (plan.make == "vlan" and plan.base not in self.k.links):
            raise KernelError("-o parent interface was not found on the host: "
                              f"{plan.base or plan.parent}",
                              hint="name an existing interface")
        self.k.links[plan.parent] = FakeLink(name=plan.parent, kind=plan.make,
                                             master=plan.base, up=True,
                                             alias=OWNED_ALIAS + plan.network_id)

    def delete_network(self, plan: Any) -> None:
        self.k.f.record("net.delete_network", plan.parent)
        link = self.k.links.get(plan.parent)
        if plan.make and link is not None and link.alias.startswith(OWNED_ALIAS):
            del self.k.links[plan.parent]

    def create_endpoint(self, plan: VethPlan) -> str:
        self.k.f.record("net.create_endpoint", plan.host_ifname)
        box = self.k.sandbox(plan.netns_path)
        if any(li.alias == plan.host_ifname for li in box.values()):
            return plan.host_ifname
        if plan.bridge not in self.k.links:
            raise KernelError(f"-o parent interface was not found on the host: {plan.bridge}",
                              hint="name an existing interface")
        if plan.peer_ifname in box:
            raise KernelError(f"cannot move {plan.host_ifname} into the container: "
                              f"{plan.peer_ifname} is already used in the container")
        box[plan.peer_ifname] = FakeLink(name=plan.peer_ifname, kind=plan.kind,
                                         master=plan.bridge, alias=plan.host_ifname,
                                         mode=plan.mode)
        return plan.host_ifname

    def join(self, plan: VethPlan) -> None:
        self.k.f.record("net.join", plan.host_ifname)
        box = self.k.sandbox(plan.netns_path)
        link = box.get(plan.peer_ifname)
        if link is None or link.alias != plan.host_ifname:
            raise KernelError(f"cannot configure {plan.peer_ifname} in {plan.netns_path}")
        link.addresses = tuple(a for a in (plan.ip_cidr, plan.ip6_cidr) if a)
        link.up = True

    def leave(self, sandbox: str, endpoint_id: str) -> None:
        self.k.f.record("net.leave", endpoint_id)

    def delete_endpoint(self, sandbox: str, endpoint_id: str) -> None:
        self.k.f.record("net.delete_endpoint", endpoint_id)
        box = self.k.sandboxes.get(sandbox, {})
        for ifname, link in list(box.items()):
            if link.alias == endpoint_id:
                del box[ifname]
        self.k.links.pop(endpoint_id, None)

    def list_links(self) -> list[LinkInfo]:
        return [LinkInfo(name=li.name, kind=li.kind, master="", up=li.up, alias=li.alias)
                for li in self.k.links.values()
                if li.kind == self.kind or li.alias.startswith(OWNED_ALIAS)]


class FakeSandboxes:
    def __init__(self, k: FakeNetKernel) -> None:
        self.k = k

    def path(self, name: str) -> str:
        # as engine/drivers/network/netns.py: a sandbox name is slg-<12 hex>, never a path
        if not re.fullmatch(r"slg-[0-9a-f]{12}", name):
            raise InvalidArgument(f"invalid netns name {name!r}", hint="slg-<12 hex>")
        return f"/fake/netns/{name}"

    def create(self, name: str) -> str:
        self.k.f.record("net.sandbox_create", name)
        self.k.sandboxes.setdefault(self.path(name), {
            "lo": FakeLink(name="lo", kind="loopback", up=True)})
        return self.path(name)

    def delete(self, name: str) -> None:
        self.k.f.record("net.sandbox_delete", name)
        path = self.path(name)
        self.k.sandboxes.pop(path, None)
        # as the kernel: a veth whose peer dies with its namespace goes too
        for link in list(self.k.links.values()):
            if link.peer.startswith(path + "/"):
                del self.k.links[link.name]

    def list(self) -> list[str]:
        return sorted(p.rsplit("/", 1)[1] for p in self.k.sandboxes)

    def exists(self, name: str) -> bool:
        return self.path(name) in self.k.sandboxes


class FakeFirewall:
    def __init__(self, k: FakeNetKernel) -> None:
        self.k = k

    def ensure_base(self) -> None:
        self.k.f.record("nft.ensure_base")
        self.k.base = True

    def apply(self, text: str) -> None:
        self.k.f.record("nft.apply")
        for kind, owner in re.findall(r'comment "slg:(net|ctr):([0-9a-f]+)"', text):
            self.k.nft[owner] = kind

    def apply_network(self, net: NetworkRules) -> None:
        self.k.f.record("nft.apply_network", net.network_id)
        self.k.nft[net.network_id] = "net"

    def publish(self, container_id: str, publishes: list[Publish]) -> None:
        self.k.f.record("nft.publish", container_id)
        self.k.nft[container_id] = "ctr"

    def delete_rules_of(self, owner: str) -> None:
        self.k.f.record("nft.delete_rules_of", owner)
        self.k.nft.pop(owner, None)

    def list_rules(self) -> list[OwnedRule]:
        return [OwnedRule(kind=kind, owner=owner, chain="fake", handle=i)
                for i, (owner, kind) in enumerate(sorted(self.k.nft.items()))]


class FakeForward:
    def __init__(self, k: FakeNetKernel, family: int = 4) -> None:
        self.k = k
        self.family = family
        self.available = True

    def owners(self) -> set[str]:
        return set(self.k.forward[self.family])

    def jump_present(self) -> bool:
        return True

    def apply_network(self, network_id: str, bridge: str, internal: bool) -> bool:
        self.k.f.record(f"hostfw{self.family}.apply_network", network_id)
        self.k.forward[self.family].add(network_id)
        return True

    def delete_rules_of(self, owner: str) -> None:
        self.k.forward[self.family].discard(owner)

    def remove_if_unused(self) -> bool:
        return not self.k.forward[self.family]


class FakeHost:
    def __init__(self, k: FakeNetKernel) -> None:
        self.k = k
        self.routes: list[str] = []
        self.devices: dict[str, str] = {"lo": "", "eth0": ""}  # the host's own links
        self._port = 32768

    def host_routes(self) -> list[str]:
        return list(self.routes)

    def links(self) -> dict[str, str]:
        return {**self.devices, **{li.name: li.kind for li in self.k.links.values()}}

    def free_port(self, host_ip: str, proto: str) -> int:
        self._port += 1
        return self._port

    def firewall_facts(self) -> FirewallFacts:
        return FirewallFacts()

    def enable_ip_forward(self, family: int) -> None:
        self.k.f.record("host.enable_ip_forward", family)

    def resolv_conf(self) -> ResolvConf:
        return ResolvConf(nameservers=("192.0.2.53",))


async def _serve_nothing(*args: Any,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The DNS server and port proxies of the fake kernel: started, serving nothing."""
    task_status.started()
    await trio.sleep_forever()


def fake_network(faults: Faults, k: FakeNetKernel | None = None) -> NetworkKernel:
    """The network seam on a fake kernel (`k`, kept across a simulated crash). DNS servers
    are recorded as `net.dns` (listen address, namespace) and serve nothing."""
    k = k or FakeNetKernel(faults)

    async def dns(network_id: str, listen_ip: str, *args: Any, netns_path: str = "",
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        faults.record("net.dns", listen_ip, netns_path)
        await _serve_nothing(task_status=task_status)

    host = FakeHost(k)
    for name in host.devices:
        k.links.setdefault(name, FakeLink(name=name, kind="", up=True))
    return NetworkKernel(
        drivers={"bridge": FakeBridgeDriver(k), "macvlan": FakeSubLinkDriver(k, "macvlan"),
                 "ipvlan": FakeSubLinkDriver(k, "ipvlan")},
        sandboxes=FakeSandboxes(k), nft=FakeFirewall(k), hostfw=FakeForward(k),
        hostfw6=FakeForward(k, 6), host=host, run_dns=dns,
        run_proxy=_serve_nothing)
