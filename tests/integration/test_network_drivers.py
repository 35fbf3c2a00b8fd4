"""macvlan and ipvlan networks on the real kernel (issue 20), through the shipslog CLI.

The whole daemon runs in a network namespace this test makes (`nsenter --net`, as
test_forward_drop.py does), whose one link besides `lo` is the parent: a veth whose other end
sits in a peer namespace — the "LAN" segment, with a host on it at PEER. No host interface
is ever a parent. Both namespaces, and with them every link the daemon made, go at the end.

Shown: two containers on one macvlan (bridge mode) network reach each other by name and the
peer on the parent's segment; ipvlan l2 and l3 the same; a VLAN parent (`parent=IFACE.10`) is
made, carries traffic to the peer's VLAN, and is removed with its network; a daemon killed
(-9) in the middle of a connect leaves nothing after its restart; `network rm` leaves no
link but the parent.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.testing import cli
from engine.testing.daemon import DaemonProcess
from engine.testing.nsdaemon import daemon_in_netns, in_ns, sh, start_in_netns
from events.store import EventStore

pytestmark = [pytest.mark.kernel]

SUBNET, PEER = "10.254.9.0/24", "10.254.9.250"  # the LAN; the peer host on it
VLAN_SUBNET, VLAN_PEER = "10.254.10.0/24", "10.254.10.250"  # VLAN 10 of the same wire
L3_SUBNET = "10.254.11.0/24"  # ipvlan l3: a routed subnet behind the daemon's namespace
L3_VIA = "10.254.9.1"  # the daemon namespace's own address on the segment (l3 routes via it)


class Lan:
    def __init__(self, ns: str, peer: str, parent: str) -> None:
        self.ns, self.peer, self.parent = ns, peer, parent

    def can_make(self, kind: str) -> bool:
        """Whether this kernel makes `kind` links (CONFIG_IPVLAN, CONFIG_VLAN_8021Q may be
        unset: the CI VM has neither)."""
        extra = ["id", "7"] if kind == "vlan" else []
        p = in_ns(self.ns, "ip", "link", "add", "link", self.parent, "name", "slgprobe",
                  "type", kind, *extra, check=False)
        if p.returncode == 0:
            in_ns(self.ns, "ip", "link", "del", "slgprobe")
        return p.returncode == 0

    def links(self) -> dict[str, str]:
        """name -> `ip -d` kind line of every link in the daemon's namespace."""
        out = in_ns(self.ns, "ip", "-o", "-d", "link", "show").stdout.splitlines()
        return {line.split(":")[1].strip().split("@")[0]: line for line in out}


@pytest.fixture
def lan() -> Iterator[Lan]:
    tag = os.urandom(3).hex()
    ns, peer = f"slgmv-{tag}", f"slgmvp-{tag}"
    parent, far = f"mvp{tag}", f"mvf{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "add", peer)
        for n in (ns, peer):
            in_ns(n, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "add", parent, "type", "veth", "peer", "name", far,
              "netns", peer)
        in_ns(ns, "ip", "link", "set", parent, "up")
        in_ns(peer, "ip", "addr", "add", f"{PEER}/24", "dev", far)
        in_ns(peer, "ip", "link", "set", far, "up")
        # VLAN 10 on the peer's side of the wire (where the kernel has VLANs), and a way
        # back to the l3 subnet
        if in_ns(peer, "ip", "link", "add", "link", far, "name", f"{far}.10", "type", "vlan",
                 "id", "10", check=False).returncode == 0:
            in_ns(peer, "ip", "addr", "add", f"{VLAN_PEER}/24", "dev", f"{far}.10")
            in_ns(peer, "ip", "link", "set", f"{far}.10", "up")
        in_ns(peer, "ip", "route", "add", L3_SUBNET, "via", L3_VIA)
        yield Lan(ns, peer, parent)
    finally:
        sh("ip", "netns", "del", peer, check=False)
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def lan_daemon(lan: Lan, busybox_tar: Path) -> Iterator[DaemonProcess]:
    with daemon_in_netns(lan.ns, busybox_tar) as d:
        yield d


def shipslog(d: DaemonProcess, *argv: str, ok: bool = True) -> tuple[int, str, str]:
    return cli.shipslog(d, *argv, ok=ok)


def reaches(d: DaemonProcess, network: str, target: str) -> tuple[bool, str]:
    code, out, err = shipslog(d, "run", "--rm", "--network", network, "busybox", "ping",
                              "-c1", "-W3", target, ok=False)
    return code == 0, out + err


def two_containers_and_the_peer(d: DaemonProcess, network: str, peer: str) -> None:
    shipslog(d, "run", "-d", "--name", f"{network}-a", "--network", network, "busybox",
             "sleep", "300")
    shipslog(d, "run", "-d", "--name", f"{network}-b", "--network", network, "busybox",
             "sleep", "300")
    ok, why = reaches(d, network, f"{network}-a")  # by name: the container's own DNS
    assert ok, f"{network}: ping {network}-a by name failed: {why}"
    code, out, err = shipslog(d, "exec", f"{network}-b", "ping", "-c1", "-W3", f"{network}-a",
                              ok=False)
    assert code == 0, f"{network}: b -> a failed: {out} {err}"
    ok, why = reaches(d, network, peer)
    assert ok, f"{network}: ping to the peer {peer} on the parent's segment failed: {why}"
    shipslog(d, "rm", "-f", f"{network}-a", f"{network}-b")


def test_macvlan_reaches_each_other_and_the_segment(lan: Lan,
                                                    lan_daemon: DaemonProcess) -> None:
    d = lan_daemon
    before = set(lan.links())
    shipslog(d, "network", "create", "-d", "macvlan", "--subnet", SUBNET, "--gateway",
             "10.254.9.254", "--ip-range", "10.254.9.128/26", "--aux-address",
             "printer=10.254.9.130", "-o", f"parent={lan.parent}", "mv")
    info: dict[str, Any] = d.client().get_json("/networks/mv")
    assert (info["Driver"], info["Options"], info["Internal"]) == (
        "macvlan", {"parent": lan.parent}, False)
    assert info["IPAM"]["Config"] == [{"Subnet": SUBNET, "Gateway": "10.254.9.254",
                                       "IPRange": "10.254.9.128/26",
                                       "AuxiliaryAddresses": {"printer": "10.254.9.130"}}]
    _, listing, _ = shipslog(d, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert "mv macvlan" in listing.splitlines(), listing
    # Docker's refusal of a second bridge-mode network on the parent with an overlapping pool
    code, _, err = shipslog(d, "network", "create", "-d", "macvlan", "--subnet",
                            "10.254.9.0/25", "-o", f"parent={lan.parent}", "mv2", ok=False)
    assert code != 0 and "Pool overlaps with other one on this address space" in err, err
    code, _, err = shipslog(d, "network", "create", "-d", "macvlan", "-o", "parent=nosuch0",
                            "mv3", ok=False)
    assert code != 0 and "invalid subinterface vlan name nosuch0" in err, err
    code, _, err = shipslog(d, "network", "create", "-d", "macvlan", "-o",
                            "parent=nosuch0.10", "mv3", ok=False)
    assert code != 0 and "-o parent interface was not found on the host: nosuch0" in err, err
    # a static address, as with --ip on a bridge
    shipslog(d, "run", "-d", "--name", "fixed", "--network", "mv", "--ip", "10.254.9.140",
             "busybox", "sleep", "300")
    ip = d.client().get_json("/containers/fixed/json")["NetworkSettings"]["Networks"]["mv"]
    assert ip["IPAddress"] == "10.254.9.140"
    shipslog(d, "rm", "-f", "fixed")
    two_containers_and_the_peer(d, "mv", PEER)
    shipslog(d, "network", "rm", "mv")
    assert set(lan.links()) == before


def test_ipvlan_l2_and_l3_reach_each_other_and_the_segment(lan: Lan,
                                                           lan_daemon: DaemonProcess) -> None:
    if not lan.can_make("ipvlan"):
        pytest.skip("this kernel has no ipvlan (CONFIG_IPVLAN is not set)")
    d = lan_daemon
    before = set(lan.links())
    for mode in ("l2", "l3"):
        subnet = SUBNET if mode == "l2" else L3_SUBNET
        if mode == "l3":  # the daemon's namespace routes the l3 subnet's traffic
            in_ns(lan.ns, "ip", "addr", "add", f"{L3_VIA}/24", "dev", lan.parent)
        shipslog(d, "network", "create", "-d", "ipvlan", "--subnet", subnet, "-o",
                 f"parent={lan.parent}", "-o", f"ipvlan_mode={mode}", f"ip{mode}")
        two_containers_and_the_peer(d, f"ip{mode}", PEER)
        shipslog(d, "network", "rm", f"ip{mode}")
        assert set(lan.links()) == before


def test_vlan_parent_is_made_and_removed(lan: Lan, lan_daemon: DaemonProcess) -> None:
    if not lan.can_make("vlan"):
        pytest.skip("this kernel has no 802.1Q VLANs (CONFIG_VLAN_8021Q is not set)")
    d = lan_daemon
    vlan = f"{lan.parent}.10"
    assert vlan not in lan.links()
    shipslog(d, "network", "create", "-d", "macvlan", "--subnet", VLAN_SUBNET, "-o",
             f"parent={vlan}", "-o", "macvlan_mode=bridge", "v10")
    made = lan.links()[vlan]
    assert "vlan protocol 802.1Q id 10" in made and "alias shipslog:" in made, made
    ok, why = reaches(d, "v10", VLAN_PEER)
    assert ok, f"ping to the peer's VLAN 10 address failed: {why}"
    shipslog(d, "network", "rm", "v10")
    assert vlan not in lan.links() and lan.parent in lan.links()


def test_kill9_mid_connect_leaves_nothing_after_recovery(lan: Lan, busybox_tar: Path) -> None:
    d = DaemonProcess.make()
    try:
        start_in_netns(d, lan.ns)
        with open(busybox_tar, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        parent = f"{lan.parent}.20" if lan.can_make("vlan") else lan.parent
        shipslog(d, "network", "create", "-d", "macvlan", "--subnet", SUBNET, "-o",
                 f"parent={parent}", "crashy")
        shipslog(d, "create", "--name", "victim", "--network", "crashy", "busybox", "sleep",
                 "300")
        d.stop()
        start_in_netns(d, lan.ns, failpoints="net.after_veth=panic")
        shipslog(d, "start", "victim", ok=False)  # the daemon dies under the request
        assert d.wait_exit(30) != 0
        start_in_netns(d, lan.ns)
        net = d.client().get_json("/networks/crashy")
        assert net["Containers"] == {}, net
        state = d.client().get_json("/containers/victim/json")["State"]
        assert not state["Running"], state
        assert not list((d.exec_root / "netns").glob("slg-*")), "a namespace survived"
        strays = [name for name, line in lan.links().items()
                  if name.startswith("slg") and "bridge forward_delay" not in line]
        assert strays == [], "a sub-interface survived the crash"  # the default bridge stays
        store = EventStore.open(d.root / "events.db", readonly=True)
        try:
            events = [e.event for e in store.read()
                      if type(e.event).__name__ in ("NetworkAddressAllocated",
                                                    "NetworkAddressReleased")]
        finally:
            store.close()
        assert [type(e).__name__ for e in events] == ["NetworkAddressAllocated",
                                                      "NetworkAddressReleased"]
        shipslog(d, "rm", "-f", "victim")
        shipslog(d, "network", "rm", "crashy")
        assert f"{lan.parent}.20" not in lan.links() and lan.parent in lan.links()
    finally:
        d.cleanup()


# --- the same assertions against a private dockerd, through the docker CLI -----------------


@pytest.fixture(params=["shipslog", "docker"])
def lan_engine(request: pytest.FixtureRequest, lan: Lan, busybox_tar: Path
               ) -> Iterator[dict[str, str]]:
    """The environment for the `docker` CLI against shipslogd or a private dockerd (20.10,
    tools/bench/common.py: its own roots and socket, no docker0, no iptables), each started
    inside the test's namespace."""
    if subprocess.run(["which", "docker", "dockerd"], capture_output=True).returncode:
        pytest.skip("the docker CLI and dockerd are needed")
    if request.param == "shipslog":
        with daemon_in_netns(lan.ns, busybox_tar) as d:
            yield dict(d.cli_env())
        return
    from tools.bench.common import Dockerd, HostTraces, Unavailable, remove_tree

    base = Path(f"/tmp/shipslog-tests/dockerd-{os.urandom(4).hex()}")
    traces = HostTraces(Dockerd.host_traces())
    docker = Dockerd(base, wrap=("nsenter", f"--net=/run/netns/{lan.ns}"))
    try:
        try:
            docker.start()
        except Unavailable as exc:
            pytest.skip(f"a private dockerd did not start: {exc}")
        sh("docker", "-H", "unix://" + docker.sock, "load", "-i", str(busybox_tar))
        yield dict(docker.env)
    finally:
        docker.stop()
        remove_tree(base)
        traces.restore()


def docker_cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_macvlan_answers_as_docker_does(lan: Lan, lan_engine: dict[str, str]) -> None:
    env = lan_engine
    before = set(lan.links())

    def ok(*argv: str) -> str:
        p = docker_cli(env, *argv)
        assert p.returncode == 0, f"docker {' '.join(argv)}: {p.stderr}"
        return p.stdout

    ok("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--gateway", "10.254.9.254",
       "--ip-range", "10.254.9.128/26", "--aux-address", "printer=10.254.9.130", "-o",
       f"parent={lan.parent}", "dmv")
    import json

    info = json.loads(ok("network", "inspect", "dmv"))[0]
    assert (info["Driver"], info["Options"], info["Internal"], info["Scope"]) == (
        "macvlan", {"parent": lan.parent}, False, "local")
    assert info["IPAM"]["Config"] == [{"Subnet": SUBNET, "Gateway": "10.254.9.254",
                                       "IPRange": "10.254.9.128/26",
                                       "AuxiliaryAddresses": {"printer": "10.254.9.130"}}]
    assert "dmv macvlan local" in ok("network", "ls", "--format",
                                     "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
    refused = docker_cli(env, "network", "create", "-d", "macvlan", "--subnet",
                         "10.254.9.0/25", "-o", f"parent={lan.parent}", "dmv2")
    assert refused.returncode != 0
    assert "Pool overlaps with other one on this address space" in refused.stderr
    refused = docker_cli(env, "network", "create", "-d", "macvlan", "-o", "parent=nosuch0",
                         "dmv3")
    assert refused.returncode != 0
    assert "invalid subinterface vlan name nosuch0, example formatting is eth0.10" in \
        refused.stderr, refused.stderr
    ok("run", "-d", "--name", "da", "--network", "dmv", "--ip", "10.254.9.140", "busybox",
       "sleep", "300")
    ok("run", "-d", "--name", "db", "--network", "dmv", "busybox", "sleep", "300")
    got = json.loads(ok("inspect", "da"))[0]["NetworkSettings"]["Networks"]["dmv"]
    assert got["IPAddress"] == "10.254.9.140"
    ok("exec", "db", "ping", "-c1", "-W3", "da")  # by name
    ok("exec", "db", "ping", "-c1", "-W3", PEER)  # the segment
    members = json.loads(ok("network", "inspect", "dmv"))[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["da", "db"]
    assert all(m["MacAddress"] for m in members.values())
    ok("rm", "-f", "da", "db")
    ok("network", "rm", "dmv")
    assert set(lan.links()) == before


def test_live_connect_disconnect_and_names_after_a_daemon_restart(
        lan: Lan, lan_daemon: DaemonProcess) -> None:
    d = lan_daemon
    shipslog(d, "network", "create", "-d", "macvlan", "--subnet", SUBNET, "-o",
             f"parent={lan.parent}", "mv")
    shipslog(d, "network", "create", "app")
    shipslog(d, "run", "-d", "--name", "web", "--network", "mv", "busybox", "sleep", "300")
    shipslog(d, "run", "-d", "--name", "side", "--network", "app", "busybox", "sleep", "300")
    # a running container joins the segment: a second interface, and it reaches the peer
    shipslog(d, "network", "connect", "mv", "side")
    code, out, err = shipslog(d, "exec", "side", "ip", "-o", "addr", "show", "eth1", ok=False)
    assert code == 0 and "10.254.9." in out, out + err
    code, out, err = shipslog(d, "exec", "side", "ping", "-c1", "-W3", PEER, ok=False)
    assert code == 0, out + err
    shipslog(d, "network", "disconnect", "mv", "side")
    code, out, _ = shipslog(d, "exec", "side", "ip", "-o", "link", "show", "eth1", ok=False)
    assert code != 0, f"eth1 is still in the container: {out}"
    # the daemon restarts; the containers run on, and their names are served again in them
    d.stop()
    start_in_netns(d, lan.ns)
    code, out, err = shipslog(d, "exec", "web", "nslookup", "web", "127.0.0.11", ok=False)
    assert code == 0 and "10.254.9." in out, out + err
    shipslog(d, "rm", "-f", "web", "side")
    shipslog(d, "network", "rm", "mv", "app")
