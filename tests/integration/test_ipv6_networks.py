"""IPv6 and dual-stack user networks through shipslogd on the real kernel (issue 13), driven by
the docker CLI: two containers on a dual-stack network ping each other over v6 by address and
by name (AAAA from our DNS), inspect shows Docker's fields, `network rm` leaves no address,
route or rule behind, and a refused create leaves nothing recorded.

Traffic stays between the namespaces these tests' containers own (documentation prefix
2001:db8::/32 and ULA fd00::/8, never routed off the host).
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess

import pytest

from engine.cli.main import run
from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]

SUBNET6 = "fd5c:1e0f:6a3b:1::/64"


def _events(daemon, kind: str) -> list:
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    return [e.event for e in store.read(types=[kind])]


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True).stdout


def _ruleset() -> str:
    return subprocess.run(["nft", "list", "table", "inet", "shipslog"], capture_output=True,
                          text=True).stdout


def _ip6tables() -> str:
    return subprocess.run(["ip6tables", "-w", "-S"], capture_output=True, text=True).stdout


def test_dual_stack_containers_ping_over_v6_and_rm_leaves_nothing(daemon) -> None:
    docker(daemon, "network", "create", "--ipv6", "--subnet", "10.231.0.0/24",
           "--subnet", SUBNET6, "dual")
    net = json.loads(docker(daemon, "network", "inspect", "dual").stdout)[0]
    assert net["EnableIPv6"] is True
    assert net["IPAM"]["Config"] == [
        {"Subnet": "10.231.0.0/24", "Gateway": "10.231.0.1"},
        {"Subnet": SUBNET6, "Gateway": "fd5c:1e0f:6a3b:1::1"}]
    bridge = "slg-" + net["Id"][:11]  # the link decide_network_create names (Options do not)
    assert "fd5c:1e0f:6a3b:1::1/64" in _ip("-6", "addr", "show", "dev", bridge)

    docker(daemon, "run", "-d", "--name", "v6a", "--network", "dual",
           "--ip6", "fd5c:1e0f:6a3b:1::a", "busybox", "sleep", "300")
    docker(daemon, "run", "-d", "--name", "v6b", "--network", "dual", "busybox", "sleep", "300")
    ep = json.loads(docker(daemon, "inspect", "v6a").stdout)[0]["NetworkSettings"][
        "Networks"]["dual"]
    assert (ep["GlobalIPv6Address"], ep["GlobalIPv6PrefixLen"], ep["IPv6Gateway"]) == (
        "fd5c:1e0f:6a3b:1::a", 64, "fd5c:1e0f:6a3b:1::1")
    assert ep["IPAddress"].startswith("10.231.0.")
    b6 = json.loads(docker(daemon, "inspect", "v6b").stdout)[0]["NetworkSettings"][
        "Networks"]["dual"]["GlobalIPv6Address"]
    assert b6 == "fd5c:1e0f:6a3b:1::2"  # ::1 is the gateway

    # by address (nodad: usable at once), by name (AAAA), and the gateway
    docker(daemon, "exec", "v6a", "ping", "-6", "-c", "1", "-W", "5", b6)
    docker(daemon, "exec", "v6b", "ping", "-6", "-c", "1", "-W", "5", "v6a")
    docker(daemon, "exec", "v6b", "ping", "-6", "-c", "1", "-W", "5", "fd5c:1e0f:6a3b:1::1")
    hosts = docker(daemon, "exec", "v6a", "cat", "/etc/hosts").stdout
    assert "fd5c:1e0f:6a3b:1::a" in hosts
    routes = docker(daemon, "exec", "v6a", "ip", "-6", "route").stdout
    assert "default via fd5c:1e0f:6a3b:1::1" in routes

    nets = {e.network_id for e in _events(daemon, "NetworkCreated") if e.name == "dual"}
    (nid,) = nets
    assert nid in _ruleset() and "ip6 daddr " + SUBNET6 in _ruleset()
    assert nid in _ip6tables()

    docker(daemon, "rm", "-f", "v6a", "v6b")
    docker(daemon, "network", "rm", "dual")
    released = {e.address for e in _events(daemon, "NetworkAddressReleased")}
    assert {"fd5c:1e0f:6a3b:1::a", "fd5c:1e0f:6a3b:1::2"} <= released
    assert bridge not in _ip("link")
    assert "fd5c:1e0f:6a3b:1:" not in _ip("-6", "addr") + _ip("-6", "route")
    assert nid not in _ruleset() and nid not in _ip6tables()


@pytest.mark.parametrize("args, message", [
    (["--ipv6"], "non-overlapping IPv6 address pool"),
    (["--subnet", "fd5c:1e0f:6a3b:2::/64"], "IPv6 is not enabled"),
    (["--ipv6", "--subnet", "fd5c:1e0f:6a3b:2::/129"], "invalid CIDR"),
])
def test_refused_create_records_nothing(daemon, args: list[str], message: str) -> None:
    before = len(_events(daemon, "NetworkCreated"))
    p = docker(daemon, "network", "create", *args, "refused6", check=False)
    assert p.returncode != 0 and message in p.stderr
    assert "500" not in p.stderr and "Traceback" not in p.stderr
    assert len(_events(daemon, "NetworkCreated")) == before
    assert docker(daemon, "network", "inspect", "refused6", check=False).returncode != 0


def test_overlapping_v6_subnet_is_refused(daemon) -> None:
    docker(daemon, "network", "create", "--ipv6", "--subnet", "fd5c:1e0f:6a3b:3::/64", "o1")
    try:
        p = docker(daemon, "network", "create", "--ipv6", "--subnet",
                   "fd5c:1e0f:6a3b:3::/80", "o2", check=False)
        assert p.returncode != 0 and "overlaps" in p.stderr
        assert "o2" not in {e.name for e in _events(daemon, "NetworkCreated")}
    finally:
        docker(daemon, "network", "rm", "o1")


def test_connect_with_ip6_gives_a_running_container_a_static_v6_address(daemon) -> None:
    docker(daemon, "network", "create", "--ipv6", "--subnet", "fd5c:1e0f:6a3b:4::/64", "late6")
    try:
        docker(daemon, "run", "-d", "--name", "late", "busybox", "sleep", "300")
        p = docker(daemon, "network", "connect", "--ip6", "fd5c:1e0f:6a3b:5::9", "late6",
                   "late", check=False)
        assert p.returncode != 0 and "not in subnet" in p.stderr  # refused, nothing kept
        docker(daemon, "network", "connect", "--ip6", "fd5c:1e0f:6a3b:4::9", "late6", "late")
        ep = json.loads(docker(daemon, "inspect", "late").stdout)[0]["NetworkSettings"][
            "Networks"]["late6"]
        assert ep["GlobalIPv6Address"] == "fd5c:1e0f:6a3b:4::9"
        docker(daemon, "exec", "late", "ping", "-6", "-c", "1", "-W", "5",
               "fd5c:1e0f:6a3b:4::1")
        docker(daemon, "network", "disconnect", "late6", "late")
        allocated = [e.address for e in _events(daemon, "NetworkAddressAllocated")]
        released = [e.address for e in _events(daemon, "NetworkAddressReleased")]
        assert allocated.count("fd5c:1e0f:6a3b:4::9") == released.count("fd5c:1e0f:6a3b:4::9")
    finally:
        docker(daemon, "rm", "-f", "late", check=False)
        docker(daemon, "network", "rm", "late6")


def test_daemon_restart_keeps_a_dual_stack_network_without_repairs(daemon) -> None:
    docker(daemon, "network", "create", "--ipv6", "--subnet", "fd5c:1e0f:6a3b:6::/64", "keep6")
    try:
        docker(daemon, "run", "-d", "--name", "k6", "--network", "keep6", "busybox", "sleep",
               "300")
        before = len(_events(daemon, "ReconcileDifferenceFound"))
        daemon.stop()
        daemon.start()
        # setting the network up again found its v6 address, rules and ip6tables rules in
        # place: nothing to repair, nothing recorded
        assert len(_events(daemon, "ReconcileDifferenceFound")) == before
        docker(daemon, "exec", "k6", "ping", "-6", "-c", "1", "-W", "5", "fd5c:1e0f:6a3b:6::1")
    finally:
        docker(daemon, "rm", "-f", "k6", check=False)
        docker(daemon, "network", "rm", "keep6")


def test_flushed_ip6tables_rules_are_rewritten_at_start_and_recorded(daemon) -> None:
    docker(daemon, "network", "create", "--ipv6", "--subnet", "fd5c:1e0f:6a3b:7::/64", "fl6")
    (nid,) = {e.network_id for e in _events(daemon, "NetworkCreated") if e.name == "fl6"}
    try:
        daemon.stop()
        for line in _ip6tables().splitlines():  # only this network's rules (a shared host)
            if nid in line and line.startswith("-A "):
                subprocess.run(["ip6tables", "-w", "-D", *shlex.split(line)[1:]], check=True)
        assert nid not in _ip6tables()
        daemon.start()
        assert nid in _ip6tables()
        repaired = [e for e in _events(daemon, "ReconcileDifferenceFound")
                    if e.subject == f"network-{nid}" and "ip6tables" in e.expected]
        assert len(repaired) == 1 and repaired[0].action == "repaired"
    finally:
        docker(daemon, "network", "rm", "fl6")


def _shipslog(daemon, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
               stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_shipslog_cli_creates_a_v6_network_and_refuses_bad_input_in_one_line(daemon) -> None:
    """The issue's own command: `shipslog network create --ipv6 --subnet 2001:db8::/64 n`
    gave a 500 and left the network recorded."""
    code, out, err = _shipslog(daemon, "network", "create", "--ipv6", "--subnet",
                               "2001:db8:13::/64", "n13")
    assert code == 0, err
    try:
        code, out, _ = _shipslog(daemon, "network", "inspect", "-f",
                                 "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{end}}",
                                 "n13")
        enabled, v4, v6 = out.split()
        assert (enabled, v6) == ("true", "2001:db8:13::/64") and "." in v4
        code, _, err = _shipslog(daemon, "network", "create", "--ipv6", "--subnet",
                                 "2001:db8:13::/80", "n13b")
        assert code != 0 and "overlaps" in err and len(err.strip().splitlines()) <= 2
    finally:
        _shipslog(daemon, "network", "rm", "n13")
