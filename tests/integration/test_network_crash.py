"""kill -9 of the daemon at every boundary of a container's network attach, live connect,
port publishing and detach (RELIABILITY F-02, F-12), then a restart: exactly the veths,
addresses, namespaces and nft rules that the log says should exist are there, every repair
is a `ReconcileDifferenceFound` event, and the container, its port and its network work
again without manual cleanup.

The oracle compares the folded log (endpoints, allocations, published ports of running
containers) with the kernel: `ip -j link` (veths on our bridges), the daemon's netns
directory, `nft -j list table inet shipslog` (rule owner comments) and the address on each
endpoint inside its container's namespace (`nsenter`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from engine.cli.client import ApiError, DaemonUnreachable
from engine.core.net_plan import netns_name
from engine.testing.daemon import DaemonProcess
from engine.testing.oracle import kernel_links, kernel_rules
from events.store import EventStore
from projections.engine import EngineProjection, decode_row
from projections.fold import fold
from projections.state import EngineState

pytestmark = pytest.mark.kernel

RUNNING = ("running", "paused")

# (failpoint, what the daemon was doing when it died)
POINTS = [
    ("net.after_netns", "start"),
    ("net.after_allocate", "start"),
    ("net.after_veth", "start"),
    ("net.after_connected_event", "start"),
    ("net.after_nft", "start"),
    ("net.after_published_event", "start"),
    ("net.after_allocate", "connect"),
    ("net.after_veth", "connect"),
    ("net.after_connected_event", "connect"),
    ("net.after_detach_kernel", "remove"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_log(d: DaemonProcess) -> tuple[EngineState, set[str], list[str]]:
    """The folded log (checked equal to the live projection and hash-chained), every id the
    log ever named, and the subjects of its reconcile differences."""
    store = EventStore.open(d.root / "events.db", readonly=True, projection=EngineProjection())
    try:
        envs = list(store.read())
        state = fold(envs)
        live = {k: decode_row("containers", doc) for k, doc in store.read_rows("containers")}
        assert dict(state.containers) == live
        assert store.verify().ok
    finally:
        store.close()
    ids = {e.stream.split("-", 1)[1] for e in envs
           if e.stream.startswith(("container-", "network-"))}
    diffs = [e.event.subject for e in envs if e.type == "ReconcileDifferenceFound"]
    return state, ids, diffs


def addresses_in(path: str) -> set[str]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "-4", "addr"],
                         capture_output=True, text=True, check=True).stdout
    return {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])
            if a.get("local") != "127.0.0.1"}


def network_oracle(d: DaemonProcess) -> tuple[EngineState, list[str]]:
    """The log's network facts == what the kernel holds."""
    state, ours, diffs = read_log(d)
    assert not state.operations, dict(state.operations)
    running = {cid for cid, c in state.containers.items() if c.status in RUNNING}
    bridges = {n.bridge for n in state.networks.values()}
    endpoints = {(nid, cid): ep for nid, n in state.networks.items()
                 for cid, ep in n.endpoints.items()}
    # Only running containers hold endpoints, addresses and ports; every address has its
    # endpoint (same ip) and every endpoint its address.
    assert {cid for _, cid in endpoints} <= running
    allocations = {(nid, cid, a) for nid, n in state.networks.items()
                   for a, cid in n.allocations.items()}
    assert allocations == {(nid, cid, ep.ip) for (nid, cid), ep in endpoints.items()}
    assert {cid for cid, c in state.containers.items() if c.ports} <= running
    # veths on our bridges == recorded endpoints; every bridge is there.
    links = kernel_links(bridges)
    assert bridges <= set(links)
    assert {name for name, master in links.items() if master} == \
        {ep.endpoint_id for ep in endpoints.values()}
    # namespaces == running containers with a network of their own
    have_ns = {cid for (_, cid) in endpoints}
    assert sorted(p.name for p in (d.exec_root / "netns").glob("slg-*")) == \
        sorted(netns_name(cid) for cid in have_ns)
    for (_, cid), ep in endpoints.items():
        assert ep.ip in addresses_in(str(d.exec_root / "netns" / netns_name(cid)))
    # nft: one set of rules per network, DNAT rules exactly for containers with ports
    want = {("net", nid) for nid in state.networks}
    want |= {("ctr", cid) for cid, c in state.containers.items() if c.ports}
    assert kernel_rules(ours) == want
    return state, diffs


def wait_page(port: int, body: bytes) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=3) as r:
                assert r.read() == body
            return
        except OSError:
            assert time.monotonic() < deadline, f"port {port} never served"
            time.sleep(0.1)


def web(d: DaemonProcess, name: str, port: int, network: str) -> str:
    c = d.client()
    cid = c.post_json("/containers/create", {"name": name}, {
        "Image": "busybox", "Cmd": ["sh", "-c", f"echo {name} > /tmp/index.html; "
                                               "exec httpd -f -p 80 -h /tmp"],
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {"NetworkMode": network,
                       "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                    "HostPort": str(port)}]}}})["Id"]
    c.post_json(f"/containers/{cid}/start")
    return str(cid)


@pytest.mark.parametrize(("point", "during"), POINTS, ids=[f"{p}-{d}" for p, d in POINTS])
def test_kill9_during_network_step_then_restart(daemon, point, during) -> None:
    c = daemon.client()
    c.post_json("/networks/create", None, {"Name": "crashnet"})
    c.post_json("/networks/create", None, {"Name": "othernet"})
    port = free_port()
    if during != "start":
        web(daemon, "victim", port, "crashnet")
        wait_page(port, b"victim\n")
    daemon.stop()
    daemon.start(failpoints=f"{point}=panic")  # the daemon restarted: the first hit dies
    c = daemon.client()
    with pytest.raises((DaemonUnreachable, ApiError, OSError, ConnectionError)):
        if during == "start":
            web(daemon, "victim", port, "crashnet")
        elif during == "connect":
            c.post_json("/networks/othernet/connect", None, {"Container": "victim"})
        else:
            c.delete("/containers/victim", {"force": True})
    assert daemon.wait_exit() == -9
    daemon.start()
    state, diffs = network_oracle(daemon)
    if point == "net.after_veth":
        assert any(s.startswith("link:") for s in diffs), diffs  # the stray veth, reported
    c = daemon.client()
    names = {ctr["Names"][0].lstrip("/") for ctr in c.get_json("/containers/json", {"all": 1})}
    if during == "remove":
        assert "victim" not in names
    else:
        # The container works again: started if it is not running, connected if it is not.
        info = c.get_json("/containers/victim/json")
        if not info["State"]["Running"]:
            c.post_json("/containers/victim/start")
        wait_page(port, b"victim\n")
        vid = c.get_json("/containers/victim/json")["Id"]
        if vid not in c.get_json("/networks/othernet")["Containers"]:
            # a connect the log had finished stays connected; any other is done again
            c.post_json("/networks/othernet/connect", None, {"Container": "victim"})
        network_oracle(daemon)
        c.delete("/containers/victim", {"force": True})
    for net in ("crashnet", "othernet"):
        c.delete(f"/networks/{net}")
    state, _ = network_oracle(daemon)
    assert set(state.networks) and not any(n.allocations for n in state.networks.values())
