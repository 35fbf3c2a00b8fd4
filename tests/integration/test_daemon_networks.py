"""Networks and volumes through shipslogd on the real kernel, with real traffic (busybox httpd,
wget, ping): names resolve on a user network, a published port serves the host on 127.0.0.1,
disconnect cuts and connect restores, a network in use is not removed, a volume's data
outlives its container — and afterwards no link, namespace, rule or mount is left."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()
            if line.split(": ")[1].startswith("slg")}


def test_names_resolve_and_disconnect_cuts(daemon) -> None:
    docker(daemon, "network", "create", "appnet")
    docker(daemon, "run", "-d", "--name", "web", "--network", "appnet", "busybox", "sh", "-c",
           "echo hello-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
    # No -T: Debian's static busybox wget segfaults resolving a name with a timeout set.
    fetch = ["run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
             "wget -qO- http://web/index.html"]
    assert docker(daemon, *fetch).stdout == "hello-web\n"
    p = docker(daemon, "network", "rm", "appnet", check=False)
    assert p.returncode != 0 and "active endpoints" in p.stderr
    docker(daemon, "network", "disconnect", "appnet", "web")
    assert docker(daemon, *fetch, check=False).returncode != 0
    docker(daemon, "network", "connect", "appnet", "web")
    assert docker(daemon, *fetch).stdout == "hello-web\n"
    docker(daemon, "rm", "-f", "web")
    docker(daemon, "network", "rm", "appnet")
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    kinds = {e.type for e in store.read(types=[
        "NetworkAddressAllocated", "NetworkConnected", "NetworkDisconnected",
        "NetworkAddressReleased", "NetworkRemoved"])}
    assert kinds == {"NetworkAddressAllocated", "NetworkConnected", "NetworkDisconnected",
                     "NetworkAddressReleased", "NetworkRemoved"}
    made = {e.event.bridge for e in store.read(types=["NetworkCreated"])
            if e.event.name == "appnet"}
    made |= {e.event.endpoint_id for e in store.read(types=["NetworkConnected"])}
    assert made and not made & links()  # the network's bridge and every veth are gone
    # (only the links our log names: other engines on a shared host make theirs meanwhile)


def test_published_port_serves_the_host(daemon) -> None:
    port = 18000 + (int(time.time()) % 1000)
    docker(daemon, "run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80", "busybox",
           "sh", "-c", "echo published > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=3) as r:
                assert r.read() == b"published\n"
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    ports = docker(daemon, "port", "pub").stdout
    assert f"127.0.0.1:{port}" in ports
    docker(daemon, "rm", "-f", "pub")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2)


def test_volume_data_outlives_its_container(daemon) -> None:
    docker(daemon, "run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c",
           "echo kept > /data/file")
    assert docker(daemon, "run", "--rm", "-v", "keep:/data:ro", "busybox", "cat",
                  "/data/file").stdout == "kept\n"
    p = docker(daemon, "run", "--rm", "-v", "keep:/data:ro", "busybox", "touch", "/data/x",
               check=False)
    assert p.returncode != 0
    docker(daemon, "volume", "rm", "keep")
    assert "keep" not in docker(daemon, "volume", "ls", "-q").stdout.split()


def test_static_address_and_aliases(daemon) -> None:
    docker(daemon, "network", "create", "--subnet", "10.231.7.0/24", "fixed")
    docker(daemon, "run", "-d", "--name", "static", "--network", "fixed", "--ip", "10.231.7.50",
           "--network-alias", "db", "--network-alias", "primary", "busybox", "sh", "-c",
           "echo static > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
    ip = docker(daemon, "inspect", "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "static").stdout
    assert ip.strip() == "10.231.7.50"
    for name in ("static", "db", "primary"):
        out = docker(daemon, "run", "--rm", "--network", "fixed", "busybox", "sh", "-c",
                     f"nslookup {name} | sed -n 's/^Address: *//p'").stdout
        assert "10.231.7.50" in out.split(), (name, out)
    # The address is taken: a second container asking for it is refused, and nothing leaks.
    p = docker(daemon, "run", "-d", "--name", "dup", "--network", "fixed", "--ip",
               "10.231.7.50", "busybox", "sleep", "60", check=False)
    assert p.returncode != 0 and "already in use" in p.stderr.lower()
    docker(daemon, "rm", "-f", "dup", check=False)
    # network connect --ip and --alias on a running container
    docker(daemon, "network", "create", "--subnet", "10.231.8.0/24", "second")
    docker(daemon, "run", "-d", "--name", "roamer", "--network", "fixed", "busybox",
           "sleep", "600")
    docker(daemon, "network", "connect", "--ip", "10.231.8.77", "--alias", "wanderer",
           "second", "roamer")
    addrs = docker(daemon, "exec", "roamer", "ip", "-o", "-4", "addr").stdout
    assert "10.231.8.77/24" in addrs
    out = docker(daemon, "run", "--rm", "--network", "second", "busybox", "sh", "-c",
                 "nslookup wanderer | sed -n 's/^Address: *//p'").stdout
    assert "10.231.8.77" in out.split()
    p = docker(daemon, "network", "connect", "--ip", "10.231.8.77", "second", "static",
               check=False)
    assert p.returncode != 0
    docker(daemon, "rm", "-f", "static", "roamer")
    docker(daemon, "network", "rm", "fixed", "second")
    p = docker(daemon, "run", "--rm", "--ip", "172.17.9.9", "busybox", "true", check=False)
    assert p.returncode != 0 and "user defined networks" in p.stderr


def test_network_container_mode_shares_the_namespace(daemon) -> None:
    docker(daemon, "network", "create", "shared")
    docker(daemon, "run", "-d", "--name", "owner", "--hostname", "ownerhost", "--network",
           "shared", "busybox", "sh",
           "-c", "echo from-owner > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp")
    # The joiner reaches the owner's loopback-only server: one network namespace.
    out = docker(daemon, "run", "--rm", "--network", "container:owner", "busybox", "sh", "-c",
                 "wget -qO- http://127.0.0.1:8080/index.html; ip -o -4 addr; "
                 "cat /etc/resolv.conf; hostname; grep -c ownerhost /etc/hosts").stdout
    owner_ip = docker(daemon, "inspect", "-f",
                      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                      "owner").stdout.strip()
    assert out.startswith("from-owner\n")
    assert f"inet {owner_ip}/" in out  # the owner's eth0, no endpoint of its own
    gateway = docker(daemon, "network", "inspect", "-f",
                     "{{range .IPAM.Config}}{{.Gateway}}{{end}}", "shared").stdout.strip()
    assert f"nameserver {gateway}" in out  # the owner's DNS: names on `shared` resolve
    assert out.endswith("ownerhost\n1\n")  # the owner's hostname, in hostname and hosts
    inspect = docker(daemon, "network", "inspect", "-f", "{{len .Containers}}", "shared")
    assert inspect.stdout.strip() == "1"
    p = docker(daemon, "run", "--rm", "--network", "container:nosuch", "busybox", "true",
               check=False)
    assert p.returncode != 0 and "nosuch" in p.stderr
    p = docker(daemon, "run", "--rm", "--network", "container:owner", "-p", "9000:80",
               "busybox", "true", check=False)
    assert p.returncode != 0 and "conflicting options" in p.stderr
    p = docker(daemon, "run", "--rm", "--network", "container:owner", "-h", "mine",
               "busybox", "true", check=False)
    assert p.returncode != 0 and "conflicting options: hostname" in p.stderr
    docker(daemon, "stop", "-t", "0", "owner")
    p = docker(daemon, "run", "--rm", "--network", "container:owner", "busybox", "true",
               check=False)
    assert p.returncode != 0 and "non running container" in p.stderr
    docker(daemon, "rm", "-f", "owner")
    docker(daemon, "network", "rm", "shared")
