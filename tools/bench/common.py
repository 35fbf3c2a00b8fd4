"""Shared helpers for the engine benchmarks in `tools/bench/`: statistics (median, p90,
ratios), the readable table and the final JSON line, timed subprocesses (one, repeated, many
in parallel), process memory from /proc, and throwaway setups of what we compare against — a
private `dockerd`, a private podman storage, a prepared `runc` bundle (the floor).

I/O: runs subprocesses (dockerd, docker, podman, runc, tar, umount, unshare), reads /proc and
/proc/self/mountinfo, creates and removes temporary directories. Everything here cleans up
only what it started or created: processes by their pid (and only processes whose command line
names our own temp dir), mounts under our own temp dir, and host paths (such as /run/docker or
a cgroup directory) that did not exist before the benchmark started and are empty again.

The pure helpers (`median`, `percentile`, `p90`, `ratio`, `fmt_*`, `format_table`,
`json_line`) have no I/O and are unit-tested in tests/unit/test_bench_common.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# pure helpers


def median(xs: Sequence[float]) -> float | None:
    """The median (mean of the two middle values for an even count); None for no samples."""
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    if len(s) % 2:
        return float(s[mid])
    return (s[mid - 1] + s[mid]) / 2.0


def percentile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest sample with at least q% of samples <= it."""
    if not xs:
        return None
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {q}")
    s = sorted(xs)
    rank = math.ceil(q / 100.0 * len(s))
    return float(s[max(rank, 1) - 1])


def p90(xs: Sequence[float]) -> float | None:
    return percentile(xs, 90)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is unknown or b is zero (an engine that could not run)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


DASH = "-"


def fmt_s(x: float | None) -> str:
    """Seconds: milliseconds below 10 s, else seconds with one decimal."""
    if x is None:
        return DASH
    if x < 10:
        return f"{x * 1000:.0f} ms"
    return f"{x:.1f} s"


def fmt_mb(x: float | None) -> str:
    return DASH if x is None else f"{x:.1f} MB"


def fmt_ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}x"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a rule
    under the header. Cells are strings (format numbers with the fmt_* helpers first)."""
    rows = [list(r) for r in rows]
    for r in rows:
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells, header has {len(headers)}: {r}")
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _round(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return round(v, 4)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_round(x) for x in v]
    return v


def json_line(data: dict[str, Any]) -> str:
    """One line of JSON (floats rounded to 4 places, NaN/inf as null) for CI to parse."""
    return json.dumps(_round(data), separators=(", ", ": "))


# ---------------------------------------------------------------------------------------------
# subprocesses


class Unavailable(Exception):
    """This engine (or this measurement) cannot run on this machine; the message says why."""


class CommandFailed(Exception):
    def __init__(self, argv: Sequence[str], rc: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.rc = rc
        self.stderr = stderr
        tail = " ".join(stderr.strip().splitlines()[-2:])[-300:]
        what = "timed out" if rc is None else f"exited {rc}"
        super().__init__(f"`{' '.join(self.argv[:6])} ...` {what}: {tail}")


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run to completion; CommandFailed on a non-zero exit or a timeout."""
    try:
        p = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        raise CommandFailed(argv, None, err) from None
    except FileNotFoundError as e:
        raise CommandFailed(argv, 127, str(e)) from None
    if p.returncode != 0:
        raise CommandFailed(argv, p.returncode, p.stderr or p.stdout)
    return p


def timed(argv: Sequence[str], *, env: dict[str, str] | None = None,
          timeout: float = 120) -> tuple[float, str]:
    """Wall time of one command (fork to exit) and its stdout."""
    t0 = time.perf_counter()
    p = run(argv, env=env, timeout=timeout)
    return time.perf_counter() - t0, p.stdout


@dataclass
class ParallelResult:
    wall_s: float
    outputs: list[str] = field(default_factory=list)     # stdout of the ones that worked
    errors: list[str] = field(default_factory=list)      # one message per failure


def run_parallel(argvs: Sequence[Sequence[str]], *, env: dict[str, str] | None = None,
                 timeout: float = 300) -> ParallelResult:
    """Start every command at once (one thread each) and time until the last one exits."""
    def one(argv: Sequence[str]) -> tuple[bool, str]:
        try:
            return True, run(argv, env=env, timeout=timeout).stdout
        except CommandFailed as e:
            return False, str(e)

    with ThreadPoolExecutor(max_workers=max(len(argvs), 1)) as pool:
        t0 = time.perf_counter()
        done = list(pool.map(one, argvs))
        wall = time.perf_counter() - t0
    res = ParallelResult(wall)
    for ok, text in done:
        (res.outputs if ok else res.errors).append(text)
    return res


# ---------------------------------------------------------------------------------------------
# /proc


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def find_pids(pred: Callable[[str, str], bool]) -> list[int]:
    """Pids whose (comm, cmdline) satisfy pred; zombies and vanished processes skipped."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        pid = int(d.name)
        c, line = comm(pid), cmdline(pid)
        if line and pred(c, line):
            out.append(pid)
    return sorted(out)


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # the ppid is the 2nd field after the parenthesised comm
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def rss_kb(pid: int) -> int | None:
    """VmRSS from /proc/PID/status, in kB; None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def pss_kb(pid: int) -> int | None:
    """Pss from /proc/PID/smaps_rollup (shared pages divided among their users), in kB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def sum_mb(pids: Iterable[int], reader: Callable[[int], int | None] = rss_kb) -> float | None:
    vals = [v for v in (reader(p) for p in pids) if v is not None]
    return sum(vals) / 1024.0 if vals else None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_and_wait(pids: Iterable[int], *, grace: float = 10.0) -> None:
    """SIGTERM these pids, wait up to `grace` seconds, then SIGKILL the ones still alive."""
    pids = [p for p in pids if alive(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if alive(p)]
        if not pids:
            return


# ---------------------------------------------------------------------------------------------
# mounts, temp dirs and host paths


def mounts_under(base: Path) -> list[str]:
    """Mount targets at or under base, in mount order (unmount in reverse)."""
    b = str(base)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == b or target.startswith(b + "/"):
            out.append(target)
    return out


def unmount_under(base: Path) -> None:
    for _ in range(3):
        targets = mounts_under(base)
        if not targets:
            return
        for t in reversed(targets):
            if subprocess.run(["umount", t], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", t], capture_output=True, check=False)


def remove_tree(base: Path) -> None:
    """Unmount whatever is mounted under base, then delete it."""
    if base.exists():
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


class HostTraces:
    """Host paths an engine creates outside its own dirs (/run/docker, /run/containerd, its
    cgroup parents). `snapshot()` notes which exist; `restore()` removes the ones that did not
    exist before and are empty now (directories by rmdir, deepest first). Never recursive."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = sorted(set(paths), key=lambda p: len(p.parts), reverse=True)
        self.existed = {p for p in self.paths if p.exists()}

    def restore(self) -> list[str]:
        removed = []
        for p in self.paths:
            if p in self.existed or not p.exists():
                continue
            try:
                if p.is_dir():
                    os.rmdir(p)
                else:
                    p.unlink()
                removed.append(str(p))
            except OSError:
                pass  # not empty (someone else uses it now) or busy: leave it
        return removed


def cgroup_paths(*relative: str) -> list[Path]:
    """/sys/fs/cgroup/<controller>/<rel> for every v1 controller, and /sys/fs/cgroup/<rel>."""
    root = Path("/sys/fs/cgroup")
    bases = [root]
    try:
        bases += [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    except OSError:
        pass
    return [b / r for b in bases for r in relative]


def make_workdir(prefix: str = "engine-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ---------------------------------------------------------------------------------------------
# the image


def build_busybox_tar(dest: Path) -> Path:
    """The shared busybox image (tools/build_busybox_image.py) as a docker/OCI archive."""
    run([sys.executable, "-m", "tools.build_busybox_image", "-o", str(dest)], timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    return dest


def image_layers(image_tar: Path) -> list[str]:
    with tarfile.open(image_tar) as t:
        f = t.extractfile("manifest.json")
        assert f is not None
        return list(json.load(f)[0]["Layers"])


# ---------------------------------------------------------------------------------------------
# dockerd


@dataclass
class Dockerd:
    """A private dockerd (and the containerd it starts) on a temp data root and socket, with no
    bridge and no iptables (containers use --network none), and ulimits it can set here."""

    # no docker0, no iptables: `--network none` runs touch nothing of the host's networking
    network_flags: ClassVar[tuple[str, ...]] = (
        "--bridge=none", "--iptables=false", "--ip6tables=false")

    base: Path
    proc: subprocess.Popen[bytes] | None = None
    containerd_pid: int | None = None
    wrap: tuple[str, ...] = ()  # e.g. nsenter --net=…: run dockerd in a namespace of ours

    @property
    def sock(self) -> str:
        return str(self.base / "docker.sock")

    @property
    def exec_root(self) -> Path:
        return self.base / "exec"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_HOST="unix://" + self.sock)
        env.pop("DOCKER_CONTEXT", None)
        return env

    @staticmethod
    def host_traces() -> list[Path]:
        return [Path("/run/docker"), Path("/run/docker/plugins"), Path("/run/containerd"),
                Path("/run/containerd/s"), *cgroup_paths("docker")]

    def start(self, timeout: float = 60.0) -> None:
        for tool in ("dockerd", "docker", "containerd"):
            if shutil.which(tool) is None:
                raise Unavailable(f"`{tool}` is not installed")
        self.base.mkdir(parents=True, exist_ok=True)
        # a config file of our own: never /etc/docker/daemon.json, and the trust key (20.10
        # writes /etc/docker/key.json otherwise) stays in our dir
        conf = self.base / "daemon.json"
        conf.write_text(json.dumps({"deprecated-key-path": str(self.base / "key.json")}))
        log = open(self.base / "dockerd.log", "ab")
        argv = [*self.wrap, "dockerd", "--config-file", str(conf),
                "--data-root", str(self.base / "data"), "--exec-root", str(self.exec_root),
                "-H", "unix://" + self.sock, "--pidfile", str(self.base / "docker.pid"),
                *self.network_flags,
                "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=1024:1024"]
        # its own session: a Ctrl-C reaches us, and we stop it after removing its containers
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"dockerd exited {self.proc.returncode}: {self.log_tail()}")
            r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                               env=self.env, capture_output=True, text=True, check=False)
            if r.returncode == 0:
                kids = [p for p in children(self.proc.pid) if comm(p) == "containerd"]
                self.containerd_pid = kids[0] if kids else None
                return
            time.sleep(0.2)
        raise Unavailable(f"dockerd did not answer within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = (self.base / "dockerd.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(x[-200:] for x in lines[-3:])

    def daemon_pids(self) -> list[int]:
        pids = [self.proc.pid] if self.proc is not None and alive(self.proc.pid) else []
        if self.containerd_pid is not None and alive(self.containerd_pid):
            pids.append(self.containerd_pid)
        return pids

    def monitor_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes of this dockerd (one per running container)."""
        marker = str(self.exec_root) + "/"
        return find_pids(lambda c, line: c.startswith("containerd-shim") and marker in line)

    def stop(self) -> None:
        """Remove every container, stop dockerd (and its containerd), kill leftover shims,
        unmount what it left under our dir. Safe to call twice or after a failed start."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                ids = run(["docker", "ps", "-aq"], env=self.env, timeout=60).stdout.split()
                if ids:
                    run(["docker", "rm", "-f", *ids], env=self.env, timeout=300)
            except CommandFailed:
                pass
            kill_and_wait([self.proc.pid], grace=30.0)
            self.proc.wait(10)
        leftovers = self.monitor_pids()
        if self.containerd_pid is not None and alive(self.containerd_pid) and \
                str(self.base) in cmdline(self.containerd_pid):
            leftovers.append(self.containerd_pid)
        kill_and_wait(leftovers, grace=5.0)
        unmount_under(self.base)


# ---------------------------------------------------------------------------------------------
# podman


@dataclass
class Podman:
    """podman on private --root/--runroot/--tmpdir/network/volume dirs and its own
    containers.conf (file locks rather than the machine-wide /dev/shm/libpod_lock), cgroupfs
    and a file events log (no systemd here), runc, and the ulimits it can set here."""

    base: Path

    @property
    def prefix(self) -> list[str]:
        b = self.base
        return ["podman", "--root", str(b / "root"), "--runroot", str(b / "runroot"),
                "--tmpdir", str(b / "tmp"), "--network-config-dir", str(b / "networks"),
                "--volumepath", str(b / "volumes"), "--storage-driver", "overlay",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", "runc"]

    run_opts = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, CONTAINERS_CONF=str(self.base / "containers.conf"),
                   TMPDIR=str(self.base / "vartmp"))
        for k in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_STORAGE_CONF",
                  "CONTAINERS_REGISTRIES_CONF"):
            env.pop(k, None)
        return env

    @staticmethod
    def host_traces() -> list[Path]:
        return cgroup_paths("libpod_parent", "libpod_parent/conmon")

    def setup(self) -> None:
        if shutil.which("podman") is None:
            raise Unavailable("`podman` is not installed")
        for d in ("root", "runroot", "tmp", "networks", "volumes", "vartmp", "blobcache"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "containers.conf").write_text(
            '[engine]\nlock_type = "file"\ncgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\nruntime = "runc"\n')
        try:
            run([*self.prefix, "info", "--format", "{{.Host.OCIRuntime.Name}}"], env=self.env,
                timeout=60)
        except CommandFailed as e:
            raise Unavailable(f"podman info failed: {e}") from None

    def load(self, image_tar: Path) -> None:
        """`podman load`, inside a private mount namespace where our own dir stands in for
        /var/lib/containers/cache (its blob-info cache ignores --root when run as root)."""
        argv = [*self.prefix, "load", "-i", str(image_tar)]
        target = next((p for p in ("/var/lib/containers/cache", "/var/lib/containers",
                                   "/var/lib") if Path(p).is_dir()), None)
        if shutil.which("unshare") and target is not None:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
                    str(self.base / "blobcache"), target, *argv]
        run(argv, env=self.env, timeout=300)

    def own(self, line: str) -> bool:
        return str(self.base) + "/" in line

    def monitor_pids(self) -> list[int]:
        """conmon processes of this podman storage (one per running container)."""
        return find_pids(lambda c, line: c == "conmon" and self.own(line))

    def cleanup(self) -> None:
        try:
            run([*self.prefix, "rm", "-af", "-t", "0"], env=self.env, timeout=300)
        except CommandFailed:
            pass
        # conmon runs `podman container cleanup` when a container exits; let those finish
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and find_pids(lambda c, line: self.own(line)):
            time.sleep(0.1)
        kill_and_wait(find_pids(lambda c, line: self.own(line)), grace=5.0)
        unmount_under(self.base)


# ---------------------------------------------------------------------------------------------
# runc alone


@dataclass
class RuncBundle:
    """The floor: the busybox rootfs unpacked into an OCI bundle from `runc spec`, run with
    `runc run` (new pid/net/ipc/uts/mount namespaces, read-only root, no monitor, no engine)."""

    base: Path
    args: tuple[str, ...] = ("true",)

    @property
    def bundle(self) -> Path:
        return self.base / "bundle"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def prepare(self, image_tar: Path) -> None:
        if shutil.which("runc") is None:
            raise Unavailable("`runc` is not installed")
        rootfs = self.bundle / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        with tarfile.open(image_tar) as t:
            for name in image_layers(image_tar):
                member = t.extractfile(name)
                if member is None:
                    raise Unavailable(f"layer {name} missing from {image_tar}")
                blob = self.base / "layer.tar"
                with open(blob, "wb") as f:
                    shutil.copyfileobj(member, f)
                # GNU tar detects gzip/zstd from a file; the image is our own busybox
                run(["tar", "-xf", str(blob), "-C", str(rootfs), "--no-same-owner"],
                    timeout=120)
                blob.unlink()
        run(["runc", "spec"], cwd=self.bundle, timeout=30)
        spec_path = self.bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["process"]["args"] = list(self.args)
        spec["process"]["terminal"] = False
        spec_path.write_text(json.dumps(spec))

    def argv(self, i: int) -> list[str]:
        return ["runc", "--root", str(self.state), "run", "--bundle", str(self.bundle),
                f"engine-bench-floor-{os.getpid()}-{i}"]

    def cleanup(self) -> None:
        if not self.state.exists():
            return
        out = subprocess.run(["runc", "--root", str(self.state), "list", "-q"],
                             capture_output=True, text=True, check=False).stdout.split()
        for cid in out:
            subprocess.run(["runc", "--root", str(self.state), "delete", "--force", cid],
                           capture_output=True, check=False)


# ---------------------------------------------------------------------------------------------
# signals


def interrupts_unwind() -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt, so every `finally` cleanup runs — also
    when started from a script, where SIGINT arrives ignored for background jobs."""
    def handler(signum: int, frame: object) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def shield_cleanup() -> None:
    """Ignore further Ctrl-C / SIGTERM while cleaning up (a second Ctrl-C must not leave a
    half-removed dockerd behind). Commands started from here on inherit the ignore."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def log(msg: str) -> None:
    """Progress on stderr (stdout carries the table and the JSON line)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
