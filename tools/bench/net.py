"""Networking benchmark: `run --rm -p 127.0.0.1:PORT:80 busybox true` on a bridge network,
side by side in one run for shipslog, Docker (dockerd with its default bridge, docker0 on
172.17.0.0/16, iptables and docker-proxy) and Podman (runc, its default netavark network),
plus the per-container network setup time measured inside our daemon from its own log.

    python3 -m tools.bench.net [-n RUNS] [--skip docker|podman] [--image busybox.tar]

Each round runs the engines in turn, each on a fresh free host port. The setup time is read
from the event log of our daemon's `run`s: the start request, `NetworkAddressAllocated` (the
namespace already made), and `NetworkPortPublished` (veth, address, route, DNS record — a
name is resolvable once `NetworkConnected` is in the log — nft DNAT and the proxy done). The
table reports both spans: `address -> published` (network work proper, minus the namespace)
and `start request -> published` (an upper bound: it also holds the rootfs mount).

I/O: runs dockerd, docker, podman and our daemon and CLI as subprocesses under a temp dir;
reads our event log (sqlite, read-only). Cleanup removes only what this run made: containers
and daemons by pid (common.py), docker0/podman0 if they were not there before, and the
iptables rules and chains dockerd and netavark added (diffed against `iptables -S` before);
the FORWARD policy is put back.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.common import (
    CommandFailed,
    Dockerd,
    HostTraces,
    Podman,
    Unavailable,
    build_busybox_tar,
    fmt_ratio,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    make_workdir,
    median,
    p90,
    ratio,
    remove_tree,
    run,
    shield_cleanup,
    timed,
)
from tools.bench.run import setup_shipslog

IMAGE = "busybox"
TABLES = ("filter", "nat")


@dataclass
class Engine:
    key: str
    label: str
    prefix: list[str]
    env: dict[str, str]
    run_opts: list[str] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    def run_rm(self, port: int) -> list[str]:
        return [*self.prefix, "run", "--rm", "-p", f"127.0.0.1:{port}:80", *self.run_opts,
                IMAGE, "true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# host state dockerd and netavark change


class HostNet:
    """Links and iptables rules before the run, so cleanup removes exactly what was added."""

    def __init__(self) -> None:
        self.links = self._links()
        self.rules = {t: self._rules(t) for t in TABLES}
        self.forward_policy = next((r.split()[2] for r in self.rules["filter"]
                                    if r.startswith("-P FORWARD ")), "ACCEPT")

    @staticmethod
    def _links() -> set[str]:
        out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                             check=False).stdout
        return {link["ifname"] for link in json.loads(out or "[]")}

    @staticmethod
    def _rules(table: str) -> list[str]:
        p = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True,
                           check=False)
        return p.stdout.splitlines() if p.returncode == 0 else []

    def restore(self) -> list[str]:
        done = []
        for link in ("docker0", "podman0"):
            if link not in self.links and link in self._links():
                subprocess.run(["ip", "link", "del", link], check=False)
                done.append(f"link {link}")
        for table in TABLES:
            before = set(self.rules[table])
            now = self._rules(table)
            for rule in reversed(now):
                if rule.startswith("-A ") and rule not in before:
                    subprocess.run(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]],
                                   check=False, capture_output=True)
                    done.append(f"{table}: {rule[:60]}")
            for rule in now:
                if rule.startswith("-N ") and rule not in before:
                    subprocess.run(["iptables", "-t", table, "-X", rule.split()[1]],
                                   check=False, capture_output=True)
        subprocess.run(["iptables", "-P", "FORWARD", self.forward_policy], check=False)
        return done


# ---------------------------------------------------------------------------------------------
# engines


class BridgedDockerd(Dockerd):
    """common.Dockerd's private roots and ulimits, but Docker's default networking: docker0,
    iptables and the userland proxy (as a user's dockerd runs)."""

    network_flags = ("--ip6tables=false",)  # docker0, iptables and the proxy, as usual


def setup(work: Path, image: Path, stack: ExitStack, skip: list[str]
          ) -> tuple[list[Engine], dict[str, str], Any]:
    engines: list[Engine] = []
    unavailable: dict[str, str] = {}
    daemon = None
    try:
        ours, _ = setup_shipslog(work, image, stack)
        engines.append(Engine("shipslog", "shipslog (CLI)", ours.prefix, ours.env))
        daemon = ours
    except (Unavailable, CommandFailed, OSError) as e:
        unavailable["shipslog"] = str(e)
    if "docker" in skip:
        unavailable["docker"] = "skipped (--skip)"
    else:
        try:
            if Path("/sys/class/net/docker0").exists():
                raise Unavailable("docker0 exists already (another dockerd runs here)")
            d = BridgedDockerd(work / "docker")
            stack.callback(d.stop)
            d.start()
            run(["docker", "load", "-i", str(image)], env=d.env, timeout=300)
            engines.append(Engine("docker", "docker (dockerd, docker0)", ["docker"], d.env))
        except (Unavailable, CommandFailed, OSError) as e:
            unavailable["docker"] = str(e)
    if "podman" in skip:
        unavailable["podman"] = "skipped (--skip)"
    else:
        try:
            p = Podman(work / "podman")
            stack.callback(p.cleanup)
            p.setup()
            p.load(image)
            engines.append(Engine("podman", "podman (runc, netavark)", p.prefix, p.env,
                                  run_opts=list(p.run_opts)))
        except (Unavailable, CommandFailed, OSError) as e:
            unavailable["podman"] = str(e)
    return engines, unavailable, daemon


# ---------------------------------------------------------------------------------------------
# measurements


def measure(engines: list[Engine], n: int) -> None:
    for e in engines:  # one warm-up each: first-use costs (page cache, bridge creation)
        try:
            timed(e.run_rm(free_port()), env=e.env)
        except CommandFailed as exc:
            e.error = str(exc)
    for i in range(n):
        for e in engines:
            if e.error:
                continue
            try:
                t, _ = timed(e.run_rm(free_port()), env=e.env)
                e.samples.append(t)
            except CommandFailed as exc:
                e.error = str(exc)
        log(f"round {i + 1}/{n}")


def setup_spans(db: Path) -> tuple[list[float], list[float]]:
    """Per `run` of ours, from the log: allocation -> published, and start request ->
    published (seconds)."""
    from events.store import EventStore

    store: Any = EventStore.open(db, readonly=True)
    try:
        by_op: dict[str, dict[str, int]] = {}
        for env in store.read(types=["ContainerStartRequested", "NetworkAddressAllocated",
                                     "NetworkPortPublished"]):
            by_op.setdefault(env.op_id, {}).setdefault(env.type, env.recorded_at)
    finally:
        store.close()
    net, whole = [], []
    for t in by_op.values():
        end = t.get("NetworkPortPublished")
        if end is None:
            continue
        if "NetworkAddressAllocated" in t:
            net.append((end - t["NetworkAddressAllocated"]) / 1e9)
        if "ContainerStartRequested" in t:
            whole.append((end - t["ContainerStartRequested"]) / 1e9)
    return net, whole


def report(engines: list[Engine], unavailable: dict[str, str], spans: tuple[list[float],
           list[float]], n: int) -> dict[str, Any]:
    by = {e.key: e for e in engines}
    ours = median(by["shipslog"].samples) if "shipslog" in by else None
    rows = []
    for e in engines:
        med = median(e.samples)
        rows.append([e.label, fmt_s(med), fmt_s(p90(e.samples)),
                     fmt_ratio(ratio(ours, med)) if e.key != "shipslog" else "1.00",
                     e.error[:60] if e.error else ""])
    for key, why in unavailable.items():
        rows.append([key, "-", "-", "-", why[:60]])
    print(format_table(["run --rm -p 127.0.0.1:P:80 busybox true", "median", "p90",
                        "shipslog / this", "note"], rows))
    net, whole = spans
    print()
    print(format_table(["per-container network setup (shipslogd log)", "median", "p90", "n"], [
        ["address allocated -> port published", fmt_s(median(net)), fmt_s(p90(net)),
         str(len(net))],
        ["start requested -> port published (upper bound)", fmt_s(median(whole)),
         fmt_s(p90(whole)), str(len(whole))]]))
    return {
        "bench": "net", "runs": n,
        "run_rm_publish_s": {e.key: median(e.samples) for e in engines},
        "run_rm_publish_p90_s": {e.key: p90(e.samples) for e in engines},
        "ratio_vs_docker": ratio(ours, median(by["docker"].samples)) if "docker" in by
        else None,
        "ratio_vs_podman": ratio(ours, median(by["podman"].samples)) if "podman" in by
        else None,
        "net_setup_s": median(net), "net_setup_p90_s": p90(net),
        "start_to_published_s": median(whole),
        "errors": {e.key: e.error for e in engines if e.error},
        "unavailable": unavailable,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.net",
                                description=__doc__.split("\n")[0])
    p.add_argument("-n", "--runs", type=int, default=10, help="rounds (default 10)")
    p.add_argument("--image", type=Path, default=None, help="a busybox image tar")
    p.add_argument("--skip", action="append", default=[], choices=["docker", "podman"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, bridges, namespaces)", file=sys.stderr)
        return 2
    interrupts_unwind()
    result: dict[str, Any] = {}
    host = HostNet()
    with ExitStack() as stack:
        work = make_workdir("net-bench-")
        stack.callback(remove_tree, work)
        traces = HostTraces([*Dockerd.host_traces(), *Podman.host_traces()])
        stack.callback(lambda: log("host state put back: " + (", ".join(
            traces.restore() + host.restore()) or "nothing to do")))
        try:
            image = args.image or build_busybox_tar(work / "busybox.tar")
            engines, unavailable, daemon = setup(work, image, stack, args.skip)
            log(f"{args.runs} rounds over {', '.join(e.key for e in engines)}")
            measure(engines, args.runs)
            spans: tuple[list[float], list[float]] = ([], [])
            if daemon is not None:  # setup_shipslog's DaemonProcess lives in work/shipslog
                spans = setup_spans(work / "shipslog" / "root" / "events.db")
            result = report(engines, unavailable, spans, args.runs)
        finally:
            shield_cleanup()
            log("cleaning up")
    print(json_line(result), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
