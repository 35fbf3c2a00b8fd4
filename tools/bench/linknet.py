"""macvlan and ipvlan benchmark (issue 20): `run --rm --network NET busybox true` on a
macvlan (bridge mode) and an ipvlan (l2) network, shipslog and Docker side by side in one
run, round-robin.

    python3 -m tools.bench.linknet [-n RUNS] [--skip docker] [--image busybox.tar]

Both daemons run inside one network namespace this benchmark makes (`nsenter --net`), whose
parents are veth ends made there: no host interface is a parent, and nothing leaves
the namespace. Docker is a private dockerd (common.Dockerd: its own roots and socket,
`--bridge=none --iptables=false`, the ulimits it can set here).

I/O: runs `ip`, dockerd, docker and our daemon and CLI as subprocesses under a temp dir.
Cleanup removes what this run made: containers and daemons by pid, then the namespace (and
with it every link in it).
"""

from __future__ import annotations

import argparse
import os
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
# (network, driver, parent, subnet, driver options)
Net = tuple[str, str, str, str, tuple[str, ...]]
NETWORKS: tuple[Net, ...] = (
    ("bmv", "macvlan", "bmv0", "10.254.30.0/24", ("-o", "macvlan_mode=bridge")),
    ("biv", "ipvlan", "biv0", "10.254.31.0/24", ("-o", "ipvlan_mode=l2")))


@dataclass
class Engine:
    key: str
    label: str
    prefix: list[str]
    env: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None


def make_namespace() -> tuple[str, list[Net]]:
    """The namespace, with a parent for each network whose driver this kernel has (a veth:
    not every kernel has dummy links)."""
    ns = "slgbench-" + os.urandom(3).hex()
    run(["ip", "netns", "add", ns])
    usable: list[Net] = []
    try:
        in_ns = ["ip", "netns", "exec", ns]
        run([*in_ns, "ip", "link", "set", "lo", "up"])
        for net in NETWORKS:
            _, driver, parent, _, _ = net
            run([*in_ns, "ip", "link", "add", parent, "type", "veth", "peer", "name",
                 parent + "x"])
            for end in (parent, parent + "x"):
                run([*in_ns, "ip", "link", "set", end, "up"])
            probe = subprocess.run([*in_ns, "ip", "link", "add", "link", parent, "name",
                                    "probe0", "type", driver], capture_output=True, check=False)
            if probe.returncode == 0:
                run([*in_ns, "ip", "link", "del", "probe0"])
                usable.append(net)
            else:
                log(f"this kernel has no {driver}: not measured")
    except CommandFailed:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        raise
    return ns, usable


def setup(work: Path, image: Path, ns: str, networks: list[Any], stack: ExitStack,
          skip: list[str]) -> tuple[list[Engine], dict[str, str]]:
    engines: list[Engine] = []
    unavailable: dict[str, str] = {}
    wrap = ["nsenter", f"--net=/run/netns/{ns}"]
    try:
        ours, _ = setup_shipslog(work, image, stack, wrap)
        engines.append(Engine("shipslog", "shipslog (CLI)", ours.prefix, ours.env))
    except (Unavailable, CommandFailed, OSError) as e:
        unavailable["shipslog"] = str(e)
    if "docker" in skip:
        unavailable["docker"] = "skipped (--skip)"
    else:
        try:
            d = Dockerd(work / "docker", wrap=tuple(wrap))
            stack.callback(d.stop)
            d.start()
            run(["docker", "load", "-i", str(image)], env=d.env, timeout=300)
            engines.append(Engine("docker", "docker (private dockerd)", ["docker"], d.env))
        except (Unavailable, CommandFailed, OSError) as e:
            unavailable["docker"] = str(e)
    for engine in engines:
        for name, driver, parent, subnet, opts in networks:
            try:
                run([*engine.prefix, "network", "create", "-d", driver, "--subnet", subnet,
                     "-o", f"parent={parent}", *opts, name], env=engine.env)
            except CommandFailed as exc:
                engine.error = str(exc)
    return engines, unavailable


def measure(engines: list[Engine], networks: list[Any], n: int) -> None:
    for i in range(n + 1):  # round 0: the untimed warm-up
        for e in engines:
            for name, *_ in networks:
                if e.error:
                    continue
                try:
                    t, _ = timed([*e.prefix, "run", "--rm", "--network", name, IMAGE, "true"],
                                 env=e.env)
                except CommandFailed as exc:
                    e.error = str(exc)
                    continue
                if i:
                    e.samples.setdefault(name, []).append(t)
        if i:
            log(f"round {i}/{n}")


def report(engines: list[Engine], networks: list[Any], unavailable: dict[str, str],
           n: int) -> dict[str, Any]:
    by = {e.key: e for e in engines}
    rows = []
    for name, driver, *_ in networks:
        ours = median(by["shipslog"].samples.get(name, [])) if "shipslog" in by else None
        for e in engines:
            med = median(e.samples.get(name, []))
            rows.append([f"{driver}: {e.label}", fmt_s(med), fmt_s(p90(e.samples.get(name,
                                                                                       []))),
                         fmt_ratio(ratio(ours, med)) if e.key != "shipslog" else "1.00",
                         e.error[:60] if e.error else ""])
    for key, why in unavailable.items():
        rows.append([key, "-", "-", "-", why[:60]])
    print(format_table(["run --rm --network NET busybox true", "median", "p90",
                        "shipslog / this", "note"], rows))
    out: dict[str, Any] = {"bench": "linknet", "runs": n, "errors": {
        e.key: e.error for e in engines if e.error}, "unavailable": unavailable}
    for name, driver, *_ in networks:
        out[f"{driver}_run_rm_s"] = {e.key: median(e.samples.get(name, [])) for e in engines}
        if "shipslog" in by and "docker" in by:
            out[f"{driver}_ratio_vs_docker"] = ratio(
                median(by["shipslog"].samples.get(name, [])),
                median(by["docker"].samples.get(name, [])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.linknet",
                                description=__doc__.split("\n")[0])
    p.add_argument("-n", "--runs", type=int, default=10, help="rounds (default 10)")
    p.add_argument("--image", type=Path, default=None, help="a busybox image tar")
    p.add_argument("--skip", action="append", default=[], choices=["docker"])
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, namespaces)", file=sys.stderr)
        return 2
    interrupts_unwind()
    result: dict[str, Any] = {}
    with ExitStack() as stack:
        work = make_workdir("linknet-bench-")
        stack.callback(remove_tree, work)
        traces = HostTraces(Dockerd.host_traces())
        stack.callback(lambda: log("host state put back: " + (", ".join(traces.restore())
                                                               or "nothing to do")))
        ns, networks = make_namespace()
        # last out: the namespace goes after the daemons that live in it
        stack.callback(subprocess.run, ["ip", "netns", "del", ns], check=False)
        try:
            image = args.image or build_busybox_tar(work / "busybox.tar")
            engines, unavailable = setup(work, image, ns, networks, stack, args.skip)
            log(f"{args.runs} rounds over {', '.join(e.key for e in engines)}")
            measure(engines, networks, args.runs)
            result = report(engines, networks, unavailable, args.runs)
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
