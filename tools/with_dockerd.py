"""Run a command while a private dockerd is alive, then put the host's firewall back.

    python -m tools.with_dockerd -- .venv/bin/python -m pytest -q tests/...

I/O: starts dockerd (and its containerd) on its own --data-root, --exec-root and socket under
a temp dir, on its default bridge docker0 (172.17.0.0/16) with its iptables rules — so the
command runs beside what dockerd does to a host: iptables FORWARD policy DROP, DOCKER-USER and
DOCKER-ISOLATION chains, br_netfilter (issue 15, item 5). The command gets the socket in
SHIPSLOG_TEST_DOCKERD_HOST (tests/compat uses this dockerd). Afterwards it stops dockerd by pid
and undoes what dockerd changed: the iptables filter and nat policies, the DOCKER* chains and
the rules naming them or docker0, ip_forward, docker0 and the (then empty) iptables-nft
tables when they were not there before. Rules
anyone else added meanwhile are left alone (other test runs may share this host).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tools.bench.common import Dockerd, Unavailable

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
TABLES = ("filter", "nat")


class NetworkedDockerd(Dockerd):
    """The benchmarks' private dockerd, but with its default bridge and iptables on."""

    network_flags: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class FirewallSnapshot:
    rules: dict[str, list[str]]  # table -> `iptables -t TABLE -S` lines
    ip_forward: str
    docker0: bool
    nft_tables: frozenset[str]  # "ip filter", … (iptables-nft makes its tables on first use)


def _iptables(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,
                          check=check, timeout=60)


def _has_docker0() -> bool:
    return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True,
                          check=False).returncode == 0


def _nft_tables() -> frozenset[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                         check=False).stdout
    return frozenset(line.removeprefix("table ").strip() for line in out.splitlines())


def _empty(table: str) -> bool:
    """No rule and no chain but base chains with policy accept: nothing anyone relies on."""
    out = subprocess.run(["nft", "-j", "list", "table", *table.split()], capture_output=True,
                         text=True, check=False).stdout
    items = json.loads(out or "{}").get("nftables", [])
    chains = [i["chain"] for i in items if "chain" in i]
    return not any("rule" in i for i in items) and all(
        c.get("hook") and c.get("policy") == "accept" for c in chains)


def snapshot() -> FirewallSnapshot:
    return FirewallSnapshot(
        rules={t: _iptables("-t", t, "-S", check=True).stdout.splitlines() for t in TABLES},
        ip_forward=IP_FORWARD.read_text().strip(), docker0=_has_docker0(),
        nft_tables=_nft_tables())


def _dockers(line: str) -> bool:
    return "DOCKER" in line or "docker0" in line


def restore(before: FirewallSnapshot) -> list[str]:
    """Undo dockerd's changes (see the module docstring); the commands run, for the log."""
    done: list[str] = []
    for table in TABLES:
        now = _iptables("-t", table, "-S").stdout.splitlines()
        old = set(before.rules[table])
        for line in reversed([x for x in now if x.startswith("-A ") and x not in old
                              and _dockers(x)]):
            args = ["-t", table, "-D", *shlex.split(line)[1:]]
            _iptables(*args)
            done.append("iptables " + " ".join(args))
        for line in now:
            parts = line.split()
            if parts[0] == "-N" and line not in old and parts[1].startswith("DOCKER"):
                _iptables("-t", table, "-F", parts[1])
                _iptables("-t", table, "-X", parts[1])
                done.append(f"iptables -t {table} -X {parts[1]}")
        for line in before.rules[table]:
            parts = line.split()
            if parts[0] == "-P" and line not in now:
                _iptables("-t", table, "-P", parts[1], parts[2])
                done.append(f"iptables -t {table} -P {parts[1]} {parts[2]}")
    if IP_FORWARD.read_text().strip() != before.ip_forward:
        IP_FORWARD.write_text(before.ip_forward + "\n")
        done.append(f"ip_forward={before.ip_forward}")
    for table in sorted(_nft_tables() - before.nft_tables):
        if table in ("ip filter", "ip nat") and _empty(table):
            subprocess.run(["nft", "delete", "table", *table.split()], check=False)
            done.append(f"nft delete table {table}")
    if not before.docker0 and _has_docker0():
        subprocess.run(["ip", "link", "del", "docker0"], check=False)
        done.append("ip link del docker0")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.with_dockerd")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give a command to run")
    before = snapshot()
    d = NetworkedDockerd(Path(tempfile.mkdtemp(prefix="shipslog-dockerd-")))
    try:
        try:
            d.start()
        except Unavailable as exc:
            print(f"with_dockerd: cannot start a private dockerd: {exc}", file=sys.stderr)
            return 125
        assert d.proc is not None
        print(f"with_dockerd: dockerd pid {d.proc.pid} on {d.sock}", file=sys.stderr)
        # dockerd sets FORWARD to DROP only when it has to turn ip_forward on (moby
        # setup_ip_forwarding.go), as on a freshly booted host; here forwarding may already
        # be on, so set the policy it would have set.
        if "-P FORWARD DROP" not in _iptables("-S", "FORWARD").stdout.splitlines():
            _iptables("-P", "FORWARD", "DROP", check=True)
            print("with_dockerd: iptables -P FORWARD DROP (as dockerd on a fresh host)",
                  file=sys.stderr)
        # tests that compare with Docker (tests/compat, tests/integration/test_compose.py)
        # drive this dockerd rather than starting a second one
        env = dict(os.environ, SHIPSLOG_TEST_DOCKERD_HOST="unix://" + d.sock)
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        d.stop()
        for line in restore(before):
            print(f"with_dockerd: restored: {line}", file=sys.stderr)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d.base)], check=False)


if __name__ == "__main__":
    sys.exit(main())
