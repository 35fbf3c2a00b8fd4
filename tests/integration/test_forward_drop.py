"""shipslog beside dockerd's firewall (issue 15, item 5): with the iptables FORWARD policy DROP,
a DOCKER-USER chain and br_netfilter's bridge-nf-call-iptables=1 — what dockerd leaves on a
host — containers on a user network and on the default bridge still reach each other and the
outside (masqueraded), `network rm` leaves no rule behind, `info` names what it found, and a
daemon that finds its accept rules flushed at start rewrites them (and removes one no event
owns), recording each.

The whole daemon runs in a network namespace this test makes (`nsenter --net`), where the
FORWARD DROP is set: iptables tables and the bridge sysctls are per namespace, so the host's
FORWARD policy is never changed (other test runs share this machine). The namespace, and with
it every bridge, veth and rule the daemon made there, goes at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.testing import cli
from engine.testing.daemon import DaemonProcess
from engine.testing.nsdaemon import daemon_in_netns, in_ns, sh
from events.store import EventStore

pytestmark = [pytest.mark.kernel]

PEER_DAEMON_SIDE = "10.253.7.1"
PEER = "10.253.7.2"  # the "outside": a namespace reached only through the daemon's namespace


@pytest.fixture
def docker_like_netns() -> Iterator[str]:
    """A namespace with dockerd's forward conditions, and a peer namespace behind a veth."""
    tag = os.urandom(3).hex()
    ns, peer = f"slgfw-{tag}", f"slgfwp-{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "add", peer)
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(peer, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "link", "add", f"fwo{tag}", "type", "veth", "peer", "name",
              f"fwp{tag}", "netns", peer)
        in_ns(ns, "ip", "addr", "add", f"{PEER_DAEMON_SIDE}/30", "dev", f"fwo{tag}")
        in_ns(ns, "ip", "link", "set", f"fwo{tag}", "up")
        in_ns(peer, "ip", "addr", "add", f"{PEER}/30", "dev", f"fwp{tag}")
        in_ns(peer, "ip", "link", "set", f"fwp{tag}", "up")
        # What dockerd 20.10 does to FORWARD (moby libnetwork/iptables): policy DROP and a
        # DOCKER-USER chain jumped to first.
        in_ns(ns, "iptables", "-w", "-N", "DOCKER-USER")
        in_ns(ns, "iptables", "-w", "-A", "DOCKER-USER", "-j", "RETURN")
        in_ns(ns, "iptables", "-w", "-I", "FORWARD", "-j", "DOCKER-USER")
        in_ns(ns, "iptables", "-w", "-P", "FORWARD", "DROP")
        # br_netfilter's per-namespace default: frames within a bridge traverse FORWARD
        nf = in_ns(ns, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables", check=False)
        if nf.stdout.strip() != "1":
            in_ns(ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        yield ns
    finally:
        sh("ip", "netns", "del", peer, check=False)
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def ns_daemon(docker_like_netns: str, busybox_tar: Path) -> Iterator[DaemonProcess]:
    with daemon_in_netns(docker_like_netns, busybox_tar) as d:
        yield d


def shipslog(d: DaemonProcess, *argv: str, ok: bool = True) -> tuple[int, str, str]:
    return cli.shipslog(d, *argv, ok=ok)


def forward_rules(ns: str) -> list[str]:
    return in_ns(ns, "iptables", "-w", "-S").stdout.splitlines()


def ip_of(d: DaemonProcess, name: str, network: str) -> str:
    info = d.client().get_json(f"/containers/{name}/json")
    return str(info["NetworkSettings"]["Networks"][network]["IPAddress"])


def test_containers_talk_through_a_forward_drop(ns_daemon: DaemonProcess,
                                                docker_like_netns: str) -> None:
    d, ns = ns_daemon, docker_like_netns
    assert in_ns(ns, "iptables", "-w", "-S", "FORWARD").stdout.startswith("-P FORWARD DROP")

    # the default bridge: container to container, and out to the peer (masqueraded: the peer
    # has no route back to the container's subnet)
    shipslog(d, "run", "-d", "--name", "first", "busybox", "sleep", "300")
    a_ip = ip_of(d, "first", "bridge")
    code, out, err = shipslog(d, "run", "--rm", "busybox", "ping", "-c1", "-W3", a_ip, ok=False)
    assert code == 0, f"default bridge: ping {a_ip} failed: {out} {err}"
    code, out, err = shipslog(d, "run", "--rm", "busybox", "ping", "-c1", "-W3", PEER, ok=False)
    assert code == 0, f"default bridge: ping to the peer {PEER} failed: {out} {err}"

    # a user network: by name, TCP, and out
    shipslog(d, "network", "create", "appnet")
    shipslog(d, "run", "-d", "--name", "web", "--network", "appnet", "busybox", "sh", "-c",
             "echo hello-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
    code, out, err = shipslog(d, "run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
                              "wget -qO- http://web/index.html", ok=False)
    assert (code, out) == (0, "hello-web\n"), f"user network: wget web failed: {err}"
    code, out, err = shipslog(d, "run", "--rm", "--network", "appnet", "busybox", "ping",
                              "-c1", "-W3", PEER, ok=False)
    assert code == 0, f"user network: ping to the peer {PEER} failed: {out} {err}"

    # our jump sits right after DOCKER-USER, so a user's rules there still come first
    fwd = [r for r in forward_rules(ns) if r.startswith("-A FORWARD")]
    assert fwd[:2] == ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j SHIPSLOG-FORWARD"], fwd

    # `info` says what it found, in the API and in the CLI
    found = [p[1] for p in d.client().get_json("/info")["FirewallBackend"]["Info"]]
    assert any("FORWARD policy DROP (set by dockerd)" in f for f in found), found
    assert any("bridge-nf-call-iptables=1" in f for f in found), found
    _, text, _ = shipslog(d, "info")
    assert " Firewall: iptables filter FORWARD policy DROP" in text, text

    # `network rm` takes its rules away, and the default bridge keeps its own
    net_id = d.client().get_json("/networks/appnet")["Id"]
    shipslog(d, "rm", "-f", "web")
    shipslog(d, "network", "rm", "appnet")
    rules = forward_rules(ns)
    assert not [r for r in rules if net_id in r], rules
    bridge_id = d.client().get_json("/networks/bridge")["Id"]
    assert [r for r in rules if bridge_id in r], rules
    shipslog(d, "rm", "-f", "first")


def test_flushed_rules_are_repaired_and_orphans_removed_at_start(
        ns_daemon: DaemonProcess, docker_like_netns: str) -> None:
    d, ns = ns_daemon, docker_like_netns
    bridge_id = d.client().get_json("/networks/bridge")["Id"]
    shipslog(d, "network", "create", "gone")
    gone_id = d.client().get_json("/networks/gone")["Id"]
    shipslog(d, "network", "rm", "gone")
    d.stop()
    # a firewall reload (firewalld, `iptables -F`) flushes everything but the policy
    in_ns(ns, "iptables", "-w", "-F", "FORWARD")
    in_ns(ns, "iptables", "-w", "-F", "SHIPSLOG-FORWARD")
    # and a rule of a removed network, as a crash between kernel step and event would leave
    in_ns(ns, "iptables", "-w", "-A", "SHIPSLOG-FORWARD", "-i", "slg-orphan", "-m", "comment",
          "--comment", f"slg:net:{gone_id}", "-j", "ACCEPT")
    d.start(timeout=60)
    rules = forward_rules(ns)
    assert "-A FORWARD -j SHIPSLOG-FORWARD" in rules, rules
    assert [r for r in rules if bridge_id in r], rules
    assert not [r for r in rules if gone_id in r], rules
    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        found: list[Any] = list(store.read(types=["ReconcileDifferenceFound"]))
    finally:
        store.close()
    repairs = {e.event.subject for e in found if e.event.action == "repaired"}
    removed = {e.event.subject for e in found if e.event.action == "removed"}
    assert {"iptables:FORWARD", f"network-{bridge_id}"} <= repairs, repairs
    assert f"iptables:SHIPSLOG-FORWARD:{gone_id}" in removed, removed
    code, out, err = shipslog(d, "run", "--rm", "busybox", "ping", "-c1", "-W3", PEER, ok=False)
    assert code == 0, f"after the repair: ping to the peer failed: {out} {err}"
