"""200 containers on one user network (issue 5, RELIABILITY L-02): each is started with
`busybox sleep`, each resolves by name through the network's DNS from one client container
(and a sample answers ping), and after they are all removed no endpoint, address, veth,
namespace or nft rule of theirs is left.

Slow (about a minute): run with `-m slow`.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.testing.daemon import DaemonProcess
from events.store import EventStore
from projections.fold import fold

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

COUNT = 200
WORKERS = 16


def start(d: DaemonProcess, i: int) -> str:
    c = d.client()
    cid = c.post_json("/containers/create", {"name": f"n{i}"}, {
        "Image": "busybox", "Cmd": ["sleep", "600"],
        "HostConfig": {"NetworkMode": "scalenet"}})["Id"]
    c.post_json(f"/containers/{cid}/start")
    return str(cid)


def remove(d: DaemonProcess, cid: str) -> None:
    d.client().delete(f"/containers/{cid}", {"force": True})


def run_client(d: DaemonProcess, script: str) -> str:
    p = subprocess.run(["docker", "run", "--rm", "--network", "scalenet", "busybox", "sh", "-c",
                        script], capture_output=True, text=True, env=d.cli_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def our_links(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


def test_200_containers_resolve_by_name_and_leave_nothing(daemon) -> None:
    c = daemon.client()
    # A subnet of its own: on a shared host another engine's networks may hold the picks.
    net_id = c.post_json("/networks/create", None, {
        "Name": "scalenet", "IPAM": {"Config": [{"Subnet": "10.237.0.0/24"}]}})["Id"]
    bridge = "slg-" + net_id[:11]  # the link decide_network_create names (Options do not)
    with ThreadPoolExecutor(WORKERS) as pool:
        ids = list(pool.map(lambda i: start(daemon, i), range(COUNT)))
    info = c.get_json(f"/networks/{net_id}")
    want = {v["Name"]: v["IPv4Address"].split("/")[0] for v in info["Containers"].values()}
    assert len(want) == COUNT and len(set(want.values())) == COUNT  # one address each
    assert len(our_links(bridge)) == COUNT

    # Every name through the network's DNS, from one client container (busybox nslookup
    # prints the server's address first, then the answer).
    out = run_client(daemon, f"for i in $(seq 0 {COUNT - 1}); do "
                             "echo \"n$i $(nslookup n$i | sed -n 's/^Address: *//p' | "
                             "tail -1)\"; done")
    got = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert got == want
    sample = " ".join(f"n{i}" for i in range(0, COUNT, 20))
    out = run_client(daemon, f"for n in {sample}; do ping -c 1 -W 2 $n >/dev/null && "
                             "echo ok $n; done")
    assert len(out.splitlines()) == len(range(0, COUNT, 20)), out

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda cid: remove(daemon, cid), ids))
    info = c.get_json(f"/networks/{net_id}")
    assert info["Containers"] == {}
    assert our_links(bridge) == set()
    assert list((daemon.exec_root / "netns").glob("slg-*")) == []
    rules = subprocess.run(["nft", "-j", "list", "table", "inet", "shipslog"],
                           capture_output=True, text=True, check=False).stdout
    assert not any(cid in rules for cid in ids)
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    try:
        state = fold(store.read())
    finally:
        store.close()
    assert state.networks[net_id].allocations == {}
    assert state.networks[net_id].endpoints == {}
    c.delete(f"/networks/{net_id}")
