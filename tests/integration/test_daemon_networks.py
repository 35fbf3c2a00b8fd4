"""Networks and volumes through shipslogd on the real kernel, with real traffic (busybox httpd,
wget, ping): names resolve on a user network, a published port serves the host on 127.0.0.1,
disconnect cuts and connect restores, a network in use is not removed, a volume's data
outlives its container — and afterwards no link, namespace, rule or mount is left."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pytest

from engine.testing.daemon import DaemonProcess
from events.store import EventStore

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]


def docker(daemon: DaemonProcess, *args: str, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["docker", *args], capture_output=True, env=daemon.cli_env(),
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()
            if line.split(": ")[1].startswith("slg")}


def test_names_resolve_and_disconnect_cuts(daemon) -> None:
    before = links()
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
    assert links() - before == set()  # the network's bridge and every veth are gone


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
