"""The three-way consistency oracle of RELIABILITY (harness note 6), for fault tests:

    rebuild(events) == live projection == observe(kernel),  PRAGMA integrity_check == ok

`check(d)` reads the daemon's log (its SQLite file, read-only) and asks the daemon's own
replay API (`GET /shipslog/replay`, what `shipslog replay` prints) when it is up; then it
compares the folded state with what the kernel shows for this daemon: runc state of each
container, overlay and staging mounts under the state root, veths on the daemon's bridges,
network namespaces, nft rule owners, cgroups, and volume directories. It raises
AssertionError naming the first difference, and returns the folded state for more checks.

I/O: reads the state root, /proc/self/mountinfo, cgroupfs; runs `runc list`, `ip -j link`,
`nft -j list table`; one HTTP request to the daemon. Changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from engine.core.image_reference import digest_hex
from engine.core.net_plan import netns_name
from engine.testing.daemon import DaemonProcess, cgroups_of, mounts_under
from events.store import EventStore
from projections.engine import EngineProjection, decode_row
from projections.fold import TABLES, fold
from projections.state import EngineState

RUNNING = ("running", "paused")


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` and `foreign_key_check` of the log, read-only."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            fks = conn.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"cannot run: {exc}"
    result = "; ".join(rows)
    return result if not fks else f"{result}; foreign keys: {fks}"


def read_log(d: DaemonProcess) -> tuple[EngineState, set[str]]:
    """The folded log, checked equal to every live projection table and hash-chained; and
    every container id the log ever named. Retried while the daemon is still appending."""
    for _ in range(20):
        store = EventStore.open(d.root / "events.db", readonly=True,
                                projection=EngineProjection())
        try:
            head = store.head()
            envs = list(store.read())
            state = fold(envs)
            live = {t: {k: decode_row(t, doc) for k, doc in store.read_rows(t)} for t in TABLES}
            if store.head() != head:
                continue  # an exit or a restart landed meanwhile: read again
            for table in TABLES:
                assert dict(getattr(state, table)) == live[table], \
                    f"projection {table}: rebuilt from the log != live"
            assert store.verify().ok, "the hash chain does not verify"
        finally:
            store.close()
        ids = {e.stream.split("-", 1)[1] for e in envs if e.stream.startswith("container-")}
        return state, ids
    raise AssertionError("the log kept changing while the oracle read it")


def _runc(d: DaemonProcess) -> dict[str, str]:
    root = d.exec_root / "runc"
    if not root.exists():
        return {}
    out = subprocess.run(["runc", "--root", str(root), "list", "-f", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {c["id"]: c["status"] for c in json.loads(out or "[]") or []}


def kernel_links(bridges: set[str]) -> dict[str, str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {link["ifname"]: link.get("master", "") for link in json.loads(out or "[]")
            if link.get("master") in bridges or link["ifname"] in bridges}


def kernel_rules(ours: set[str]) -> set[tuple[str, str]]:
    p = subprocess.run(["nft", "-j", "list", "table", "inet", "shipslog"],
                       capture_output=True, text=True, check=False)
    owners = set()
    for item in json.loads(p.stdout or "{}").get("nftables", []):
        parts = (item.get("rule") or {}).get("comment", "").split(":")
        if len(parts) == 3 and parts[0] == "slg" and parts[2] in ours:
            owners.add((parts[1], parts[2]))
    return owners


def check(d: DaemonProcess, *, open_ops: bool = False) -> EngineState:
    """Assert the three-way agreement. `open_ops`: operations may still be open (only those
    whose rollback failed and that wait for recovery, `needs_cleanup`); otherwise none."""
    db = d.root / "events.db"
    assert integrity(db) == "ok", f"integrity_check of {db}: {integrity(db)}"
    state, ever = read_log(d)
    if d.proc is not None and d.proc.poll() is None:
        report = d.client().get_json("/shipslog/replay")
        assert report["ok"], f"shipslog replay: {report['mismatches']}"
    ops = {k: (o.kind, o.needs_cleanup) for k, o in state.operations.items()}
    if open_ops:
        assert all(nc for _, nc in ops.values()), f"operations left open: {ops}"
    else:
        assert not ops, f"operations left open: {ops}"
    # A container whose rollback failed waits, visibly, for the cleanup retried at the next
    # start (F-11): until then its kernel objects are not held to the log.
    pending = {o.target.removeprefix("container-") for o in state.operations.values()
               if o.target.startswith("container-")}
    owned = set(state.containers)  # what may own a kernel object
    pending_veths = {ep.endpoint_id for n in state.networks.values()
                     for cid, ep in n.endpoints.items() if cid in pending}
    state = _without(state, pending)
    containers = state.containers
    running = {cid for cid, c in containers.items() if c.status in RUNNING}

    # runtime: exactly the running and paused containers run; no runtime object is unowned
    runc = _runc(d)
    assert set(runc) <= owned, f"runtime containers no event owns: {runc}"
    assert {cid for cid, s in runc.items() if s in RUNNING and cid not in pending} == running, \
        f"runc {runc} != log {sorted(running)}"
    for cid in running:
        assert runc[cid] == containers[cid].status, (cid, runc[cid], containers[cid].status)

    # mounts: every mount under the daemon's base belongs to a container the log knows; a
    # running container's rootfs is mounted
    netns_dir = str(d.exec_root / "netns") + "/"
    for m in mounts_under(d.base):  # (namespaces are checked with the networks below)
        assert m.startswith(netns_dir) or any(cid in m for cid in owned), \
            f"a mount no event owns: {m}"
    rootfs = {m.split("/")[-2] for m in mounts_under(d.root / "containers")}
    assert running <= rootfs, f"running containers without a rootfs: {running - rootfs}"

    # cgroups of this daemon's containers: each running one has one, and each one belongs to
    # a container the runtime still holds (an exited one keeps its cgroup until deleted)
    cgroups = {p.name for p in cgroups_of(d.root) if p.name in ever and p.name not in pending}
    assert cgroups <= set(runc), f"cgroups the runtime does not hold: {cgroups - set(runc)}"
    assert running <= cgroups, f"running containers without a cgroup: {running - cgroups}"

    # networks: endpoints only for running containers, each with its address, its veth on
    # its bridge and its namespace; nft rules exactly for networks and published ports
    endpoints = {(nid, cid): ep for nid, n in state.networks.items()
                 for cid, ep in n.endpoints.items()}
    assert {cid for _, cid in endpoints} <= running, "endpoints of stopped containers"
    allocations = {(nid, cid, a) for nid, n in state.networks.items()
                   for a, cid in n.allocations.items()}
    assert allocations == {(nid, cid, a) for (nid, cid), ep in endpoints.items()
                           for a in (ep.ip, ep.ip6) if a}, \
        "addresses allocated without an endpoint (or the reverse)"
    assert {cid for cid, c in containers.items() if c.ports} <= running
    # macvlan/ipvlan networks (issue 20) have no bridge, veth or nft rule: their endpoints
    # live inside the containers' namespaces, which the check below counts
    bridged = {nid for nid, n in state.networks.items() if n.driver == "bridge"}
    bridges = {state.networks[nid].bridge for nid in bridged}
    links = kernel_links(bridges)
    assert bridges <= set(links), f"bridges missing: {bridges - set(links)}"
    veths = {name for name, master in links.items() if master} - pending_veths
    on_bridges = {ep.endpoint_id for (nid, _), ep in endpoints.items() if nid in bridged}
    assert veths == on_bridges, f"veths {sorted(veths)} != endpoints {sorted(on_bridges)}"
    namespaces = sorted(({m[len(netns_dir):] for m in mounts_under(d.base)
                          if m.startswith(netns_dir)}
                         | {p.name for p in (d.exec_root / "netns").glob("slg-*")})
                        - {netns_name(cid) for cid in pending})
    assert namespaces == sorted({netns_name(cid) for _, cid in endpoints}), \
        f"namespaces {namespaces}"
    ours = set(state.networks) | set(ever)
    want = {("net", nid) for nid in bridged}
    want |= {("ctr", cid) for cid, c in containers.items() if c.ports}
    if bridges:
        have = {(kind, o) for kind, o in kernel_rules(ours) if o not in pending}
        assert have == want, f"nft rules {have} != {want}"

    # storage: volumes on disk == volumes in the log; every recorded layer is on disk
    vdir = d.root / "volumes"
    on_disk = {p.name for p in vdir.iterdir() if not p.name.startswith(".")} \
        if vdir.exists() else set()
    assert on_disk == set(state.volumes), f"volumes on disk {on_disk} != log {set(state.volumes)}"
    for img in state.images.values():
        for diff_id in img.layers:
            assert diff_id in state.layers, f"image {img.id[:19]} names unrecorded {diff_id}"
    for diff_id in state.layers:
        assert (d.root / "layers" / digest_hex(diff_id) / "diff").is_dir(), \
            f"layer {diff_id} is recorded but not on disk"
    return state


def _without(state: EngineState, ids: set[str]) -> EngineState:
    if not ids:
        return state
    from dataclasses import replace

    import msgspec

    nets = state.networks
    for nid, n in state.networks.items():
        nets = nets.set(nid, msgspec.structs.replace(
            n, endpoints={k: e for k, e in n.endpoints.items() if k not in ids},
            allocations={a: o for a, o in n.allocations.items() if o not in ids}))
    containers = state.containers
    for cid in ids & set(state.containers):
        containers = containers.delete(cid)
    return replace(state, containers=containers, networks=nets)


def summary(state: EngineState) -> dict[str, Any]:
    """What a test usually wants to look at next: container statuses by name."""
    return {c.name: c.status for c in state.containers.values()}
