"""Benchmark: deleting the veths of N containers removed at the same time (issue 14), three
ways, on the real kernel, in a network namespace of its own (never the host's links):

- `one by one` — each endpoint's veth deleted alone, one after another under the driver's
  netlink lock (what the daemon did before the batching);
- `batched` — `BridgeDriver.delete_endpoint` called from N threads at once, as the daemon's
  worker threads call it when Compose's `down` ends N containers: overlapping deletions go
  in one link-group deletion (`Netlink.disconnect`, `linkbatch.LinkBatcher`);
- `netns only` — no veth deletion at all: each container's namespace is unmounted and the
  kernel destroys the pair with it, asynchronously; timed until the host ends are gone.

    python3 -m tools.bench.vethdel [-n CONTAINERS] [--rounds R]

Prints a table (median and min per way, ratio to one by one) and as its LAST line one JSON
object. No Docker: this is our driver against itself (the Compose benchmark has Docker).

I/O: kernel (network namespaces bind-mounted under a temp dir, a bridge and veth pairs inside
the benchmark's own namespace, all removed at the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from engine.core.net_plan import VethPlan, netns_name, plan_bridge, plan_veth
from engine.drivers.network import netns
from engine.drivers.network.bridge import BridgeDriver
from engine.drivers.network.netlink import Netlink
from tools.bench.common import format_table, json_line, log, remove_tree

NID = "be" * 32
BRIDGE = "slg-" + NID[:11]


class Lab:
    """A namespace standing in for the host, with a bridge and N sandboxes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = "slg-" + os.urandom(6).hex()
        self.host = netns.create_netns(root / "labns", self.name)
        self.netlink = Netlink(netns=self.host, owner=str(root))
        self.driver = BridgeDriver(self.netlink)
        self.netlink.ensure_bridge(plan_bridge(BRIDGE, "10.233.0.0/24", "10.233.0.1"))

    def endpoints(self, n: int) -> list[VethPlan]:
        plans = []
        for i in range(n):
            cid = f"{i:02x}" * 32
            path = netns.create_netns(self.root / "netns", netns_name(cid))
            plan = plan_veth(cid, NID, bridge=BRIDGE, subnet="10.233.0.0/24",
                             gateway="10.233.0.1", ip=f"10.233.0.{i + 2}", netns_path=path)
            self.driver.create_endpoint(plan)
            self.driver.join(plan)
            plans.append(plan)
        return plans

    def host_ends(self) -> set[str]:
        import socket

        names = netns.run_in_netns(self.host, socket.if_nameindex)
        return {n for _, n in names if n.startswith("slg") and n != BRIDGE}

    def drop_sandboxes(self) -> None:
        for name in netns.list_netns(self.root / "netns"):
            netns.delete_netns(self.root / "netns", name)

    def close(self) -> None:
        self.drop_sandboxes()
        self.netlink.close()
        netns.delete_netns(self.root / "labns", self.name)


def one_by_one(lab: Lab, plans: list[VethPlan]) -> None:
    errors: dict[str, BaseException] = {}
    for p in plans:
        with lab.netlink._lock:
            lab.netlink._delete_one(p.host_ifname, errors)


def batched(lab: Lab, plans: list[VethPlan]) -> None:
    threads = [threading.Thread(target=lab.driver.delete_endpoint,
                                args=(p.netns_path, p.host_ifname)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def netns_only(lab: Lab, plans: list[VethPlan]) -> None:
    lab.drop_sandboxes()
    while lab.host_ends():  # the kernel frees the namespaces (and their pairs) later
        time.sleep(0.001)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.vethdel")
    p.add_argument("-n", type=int, default=10, help="containers removed together")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    ways = {"one by one": one_by_one, "batched": batched, "netns only": netns_only}
    times: dict[str, list[float]] = {w: [] for w in ways}
    work = Path(tempfile.mkdtemp(prefix="bench-vethdel-"))
    lab = Lab(work)
    try:
        for r in range(args.rounds):
            for way, fn in ways.items():  # interleaved, so load drift hits each alike
                plans = lab.endpoints(args.n)
                t0 = time.perf_counter()
                fn(lab, plans)
                times[way].append(time.perf_counter() - t0)
                assert not lab.host_ends(), f"{way} left links behind"
                lab.drop_sandboxes()
            log(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{w} {times[w][-1] * 1000:.0f} ms" for w in ways))
    finally:
        lab.close()
        remove_tree(work)
    base = statistics.median(times["one by one"])
    rows = [[w, f"{statistics.median(ts) * 1000:.0f} ms", f"{min(ts) * 1000:.0f} ms",
             f"{statistics.median(ts) / base:.2f}x"] for w, ts in times.items()]
    print(format_table(["way", "median", "min", "vs one by one"], rows))
    print(f"{args.n} veths (host end on a bridge, peer in its own namespace), "
          f"{args.rounds} rounds; `netns only` is timed until the kernel has removed them")
    print(json_line({"bench": "vethdel", "n": args.n, "rounds": args.rounds,
                     **{w.replace(" ", "_") + "_s": statistics.median(ts)
                        for w, ts in times.items()}}))


if __name__ == "__main__":
    main()
