"""A real `shipslogd` in a subprocess, on its own state root, for integration tests and
benchmarks — and the kernel inventory that proves a test left nothing behind.

I/O: starts and signals the daemon process (by its pid only), reads /proc/self/mountinfo,
`ip`, `nft`, `iptables`, cgroupfs and runc state, and cleans up what the daemon's containers
left when a test killed the daemon on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cli.client import Client

REPO = Path(__file__).resolve().parents[2]
TEST_BASE = Path("/tmp/shipslog-tests")


@dataclass
class DaemonProcess:
    """One daemon: `start()`, `kill9()`, `stop()`, and `cleanup()` of everything it made."""

    base: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    flags: list[str] = field(default_factory=list)  # extra shipslogd flags
    # a command prefix, e.g. `nsenter --net=PATH` to run the daemon in a test's own network
    # namespace (where a test may set a FORWARD DROP without touching the host's)
    wrap: list[str] = field(default_factory=list)

    @classmethod
    def make(cls) -> DaemonProcess:
        TEST_BASE.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="shipslog-", dir=TEST_BASE)))

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def exec_root(self) -> Path:
        return self.base / "run"

    @property
    def sock(self) -> str:
        return str(self.exec_root / "shipslog.sock")

    @property
    def host(self) -> str:
        return "unix://" + self.sock

    def client(self) -> Client:
        return Client(self.host)

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DOCKER_HOST=self.host, SHIPSLOG_HOST=self.host)
        return env

    def start(self, *, failpoints: str = "", timeout: float = 20.0) -> None:
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = str(REPO)
        if failpoints:
            env["SHIPSLOG_FAILPOINTS"] = failpoints
        else:
            env.pop("SHIPSLOG_FAILPOINTS", None)
        log = open(self.base / "daemon.log", "ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "engine.daemon.main", "--root", str(self.root),
             "--exec-root", str(self.exec_root), *self.flags],
            stdout=log, stderr=log, env=env, cwd=REPO)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shipslogd exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            try:
                self.client().get_json("/_ping")
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.02)
        raise RuntimeError("shipslogd did not come up:\n" + self.log_text())

    def log_text(self) -> str:
        try:
            return (self.base / "daemon.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def remove_all_containers(self) -> None:
        c = self.client()
        for ctr in c.get_json("/containers/json", {"all": True}):
            try:
                c.delete(f"/containers/{ctr['Id']}", {"force": True})
            except Exception:  # noqa: BLE001 - best effort; cleanup() sweeps the rest
                pass

    def cleanup(self) -> None:
        """Stop the daemon and remove every kernel object its containers had."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.remove_all_containers()
            except Exception:  # noqa: BLE001
                pass
        self.stop()
        runc_root = self.exec_root / "runc"
        if runc_root.exists():
            out = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                                 capture_output=True, text=True, check=False).stdout.split()
            for cid in out:
                subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                               capture_output=True, check=False)
        for conmon_pid in _monitor_pids(self.exec_root):
            try:
                os.kill(conmon_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._remove_networks()
        for target in reversed(mounts_under(self.base)):
            subprocess.run(["umount", "-l", target], check=False)
        for cg in cgroups_of(self.root):
            shutil.rmtree(cg, ignore_errors=True)
            try:
                os.rmdir(cg)
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


    def _remove_networks(self) -> None:
        """Bridges and nft rules outlive a daemon on purpose (as docker0 does); a test's
        daemon takes its own away, found through its log."""
        db: Path | str = self.root / "events.db"
        host_name = None
        if "--store" in self.flags:  # a daemon whose log is in PostgreSQL
            db = self.flags[self.flags.index("--store") + 1]
            if "--host-name" in self.flags:
                host_name = self.flags[self.flags.index("--host-name") + 1]
        elif not Path(db).exists():
            return
        from engine.drivers.network.hostfw import HostForward
        from engine.drivers.network.netlink import Netlink
        from engine.drivers.network.nft import Nft
        from events.store import EventStore
        from projections.fold import fold

        try:
            store: EventStore[Any] = EventStore.open(db, readonly=True, host_name=host_name)
            try:
                nets = list(fold(store.read()).networks.values())
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - a test damaged the log on purpose; it cleans up
            return

        netlink, nft, hostfw, hostfw6 = Netlink(), Nft(), HostForward(), HostForward(6)
        try:
            for net in nets:
                nft.delete_rules_of(net.id)
                hostfw.delete_rules_of(net.id)
                if net.subnet6:
                    hostfw6.delete_rules_of(net.id)
                if net.driver == "bridge":  # a macvlan/ipvlan `bridge` is its parent link
                    netlink.delete_bridge(net.bridge)
            nft.remove_if_unused()
            hostfw.remove_if_unused()
            if any(net.subnet6 for net in nets):
                hostfw6.remove_if_unused()
        finally:
            netlink.close()


def _monitor_pids(exec_root: Path) -> list[int]:
    pids = []
    for f in exec_root.glob("containers/*/conmon.pid"):
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            if b"conmon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def mounts_under(base: Path) -> list[str]:
    prefix = str(base) + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(prefix):
            out.append(target)
    return out


def cgroups_of(root: Path) -> list[Path]:
    del root
    found: list[Path] = []
    for ctl in Path("/sys/fs/cgroup").iterdir():
        d = ctl / "shipslog"
        if d.is_dir():
            found.extend(p for p in d.iterdir() if p.is_dir())
    return found


def kernel_inventory() -> dict[str, list[str]]:
    """Everything shipslog-named in the kernel: mounts, netns, links, nft tables, iptables
    rules, cgroups, monitor and runtime processes. A test's before and after must be equal."""
    inv: dict[str, list[str]] = {}
    inv["mounts"] = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if "shipslog" in line.split()[4] or "slg-" in line.split()[4])
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    inv["netns"] = sorted(x.split()[0] for x in ns.stdout.splitlines()
                          if "shipslog" in x or "slg" in x)
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                           check=False)
    try:
        inv["links"] = sorted(link["ifname"] for link in json.loads(links.stdout or "[]")
                              if link["ifname"].startswith(("slg", "shipslog")))
    except ValueError:
        inv["links"] = []
    if shutil.which("nft"):
        t = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                           check=False)
        inv["nft"] = sorted(x for x in t.stdout.splitlines() if "shipslog" in x or "slg" in x)
        # The rules networks and containers own inside the shared table: a table that stays
        # (another daemon's) would otherwise hide a leaked DNAT or masquerade rule.
        r = subprocess.run(["nft", "list", "table", "inet", "shipslog"], capture_output=True,
                           text=True, check=False)
        inv["nft rules"] = sorted({m.group(1) for m in re.finditer(
            r'comment "(slg:(?:net|ctr):[0-9a-f]+)"', r.stdout)})
    if shutil.which("iptables"):
        # our accept rules in the host's FORWARD chain (engine/core/fwd_plan.py)
        f = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True,
                           check=False)
        inv["iptables"] = sorted(x for x in f.stdout.splitlines() if "SHIPSLOG" in x)
    if shutil.which("ip6tables"):  # the same for networks with IPv6 (issue 13)
        f = subprocess.run(["ip6tables", "-w", "-S"], capture_output=True, text=True,
                           check=False)
        inv["ip6tables"] = sorted(x for x in f.stdout.splitlines() if "SHIPSLOG" in x)
    inv["cgroups"] = sorted(str(p) for p in cgroups_of(Path("/")))
    procs = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/tmp/shipslog-tests/" in cmd and ("conmon" in cmd or "runc" in cmd
                                               or "engine.daemon" in cmd):
            procs.append(f"{pid_dir.name} {cmd[:120]}")
    inv["processes"] = sorted(procs)
    return inv
