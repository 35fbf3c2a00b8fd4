"""API answers Docker's clients and Compose depend on (issues 13 and 14), checked with Docker's
own CLI against shipslogd on the real kernel: connect/disconnect of a created container,
network options, image inspect fields, and the routes of features that are off.

I/O: runs shipslogd and the `docker` binary; makes bridges, namespaces and containers, and
removes every one it makes.
"""

from __future__ import annotations

import json

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def _event_types(daemon) -> list[str]:  # type: ignore[no-untyped-def]
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    return [e.type for e in store.read(after_seq=0)]


def _lookup(daemon, net: str, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    out = docker(daemon, "run", "--rm", "--network", net, "busybox", "sh", "-c",
                 f"nslookup {name} | sed -n 's/^Address: *//p'").stdout
    return out.split()


def test_connect_and_disconnect_a_created_container(daemon) -> None:
    # Compose v2 creates a service's container on its first network and connects the others
    # before the start; Docker records them and the container joins them all at start.
    for i, name in enumerate(("front", "back", "spare")):
        docker(daemon, "network", "create", "--subnet", f"10.231.{40 + i}.0/24", name)
    try:
        cid = docker(daemon, "create", "--name", "svc", "--network", "front", "busybox",
                     "sleep", "600").stdout.strip()
        docker(daemon, "network", "connect", "--alias", "db", "back", "svc")
        docker(daemon, "network", "connect", "--ip", "10.231.42.9", "spare", "svc")
        docker(daemon, "network", "connect", "back", "svc")  # again: left as it is
        nets = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                 "svc").stdout)
        assert sorted(nets) == ["back", "front", "spare"]
        assert nets["back"]["Aliases"] == ["db", cid[:12]]
        assert nets["front"]["Aliases"] == [cid[:12]]
        assert nets["spare"]["IPAMConfig"] == {"IPv4Address": "10.231.42.9"}
        docker(daemon, "network", "disconnect", "spare", "svc")
        p = docker(daemon, "network", "disconnect", "spare", "svc", check=False)
        assert p.returncode != 0 and "is not connected to network spare" in p.stderr
        docker(daemon, "start", "svc")
        addrs = docker(daemon, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        assert "10.231.40." in addrs and "10.231.41." in addrs and "10.231.42." not in addrs
        ip = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                               "svc").stdout)["back"]["IPAddress"]
        assert ip in _lookup(daemon, "back", "db")
        # The recorded connect is the container's own: a stop and a start join it again.
        docker(daemon, "stop", "-t", "0", "svc")
        docker(daemon, "start", "svc")
        assert "10.231.41." in docker(daemon, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        types = _event_types(daemon)
        assert types.count("NetworkConnectRecorded") == 2
        assert types.count("NetworkConnectWithdrawn") == 1
    finally:
        docker(daemon, "rm", "-f", "svc", check=False)
        docker(daemon, "network", "rm", "front", "back", "spare", check=False)


def test_disconnect_a_created_container_from_its_own_network(daemon) -> None:
    docker(daemon, "network", "create", "--subnet", "10.231.43.0/24", "first")
    docker(daemon, "network", "create", "--subnet", "10.231.44.0/24", "other")
    try:
        docker(daemon, "create", "--name", "mover", "--network", "first", "busybox",
               "sleep", "600")
        docker(daemon, "network", "connect", "other", "mover")
        docker(daemon, "network", "disconnect", "first", "mover")
        nets = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                 "mover").stdout)
        assert sorted(nets) == ["other"]
        docker(daemon, "start", "mover")
        addrs = docker(daemon, "exec", "mover", "ip", "-o", "-4", "addr").stdout
        assert "10.231.44." in addrs and "10.231.43." not in addrs
        docker(daemon, "network", "rm", "first")  # nothing holds it
    finally:
        docker(daemon, "rm", "-f", "mover", check=False)
        docker(daemon, "network", "rm", "first", "other", check=False)


def test_user_network_reports_only_the_options_given(daemon) -> None:
    # Compose recreates a network whose options differ from its file's (issue 14).
    docker(daemon, "network", "create", "plain")
    docker(daemon, "network", "create", "-o", "com.docker.network.driver.mtu=1400", "tuned")
    try:
        opts = docker(daemon, "network", "inspect", "-f", "{{json .Options}}", "plain", "tuned")
        assert opts.stdout.split() == ["{}", '{"com.docker.network.driver.mtu":"1400"}']
    finally:
        docker(daemon, "network", "rm", "plain", "tuned")
