"""Issue 13 on the real kernel: every create option Docker's CLI sends is applied, read back
from inside the container, and shown by `inspect` where Docker shows it — or refused with a
400 that names it. Each option is proven by what the container itself sees (`ulimit -n`,
/etc/resolv.conf, /proc/sys, `id -G`, /sys/class/net/eth0/address, `df /dev/shm`, …)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from engine.testing.cli import shipslog
from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def _run(daemon: Any, *args: str) -> str:
    """`docker run --rm ARGS…` and its output."""
    return docker(daemon, "run", "--rm", *args).stdout




def test_limits_and_kernel_settings_reach_the_container(daemon: Any) -> None:
    out = _run(daemon, "--ulimit", "nofile=1000:2000", "--ulimit", "nproc=300",
               "--shm-size", "8m", "--sysctl", "net.ipv4.ip_forward=1",
               "--sysctl", "kernel.shmmni=1234", "--group-add", "nobody", "--group-add", "4321",
               "--oom-score-adj", "300",
               "busybox", "sh", "-c",
               "ulimit -n; ulimit -Hn; ulimit -u; df -k /dev/shm | tail -1;"
               " cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; id -G;"
               " cat /proc/self/oom_score_adj").split("\n")
    assert out[0:3] == ["1000", "2000", "300"]
    assert out[3].split()[1] == str(8 * 1024)  # 1K-blocks of the /dev/shm tmpfs
    assert out[4:6] == ["1", "1234"]
    gids = out[6].split()
    assert "65534" in gids and "4321" in gids  # the image's /etc/group: nobody
    assert out[7] == "300"


def test_resolv_conf_and_hosts_entries(daemon: Any) -> None:
    out = _run(daemon, "--dns", "10.9.8.7", "--dns-search", "corp.example",
               "--dns-option", "ndots:3", "--add-host", "db.local:10.1.2.3",
               "--add-host", "gw:host-gateway", "busybox", "sh", "-c",
               "cat /etc/resolv.conf; echo ---; cat /etc/hosts")
    resolv, hosts = out.split("---\n")
    assert resolv.splitlines() == ["nameserver 10.9.8.7", "search corp.example",
                                   "options ndots:3"]
    assert "10.1.2.3\tdb.local" in hosts.splitlines()
    bridge = json.loads(docker(daemon, "network", "inspect", "bridge").stdout)[0]
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert f"{gateway}\tgw" in hosts.splitlines()


def test_namespace_modes_share_the_hosts(daemon: Any) -> None:
    def ns(kind: str) -> str:
        return os.readlink(f"/proc/self/ns/{kind}")

    out = _run(daemon, "--pid", "host", "--ipc", "host", "--uts", "host", "busybox", "sh",
               "-c", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc;"
               " readlink /proc/self/ns/uts; hostname").split()
    assert out[0:3] == [ns("pid"), ns("ipc"), ns("uts")]
    assert out[3] == os.uname().nodename
    out = _run(daemon, "--cgroupns", "private", "busybox", "readlink", "/proc/self/ns/cgroup")
    assert out.strip() != ns("cgroup")
    out = _run(daemon, "--ipc", "none", "busybox", "sh", "-c",
               "grep -c ' /dev/shm ' /proc/mounts || true")
    assert out.strip() == "0"


def test_pid_container_mode_sees_the_other_containers_processes(daemon: Any) -> None:
    docker(daemon, "run", "-d", "--name", "donor", "busybox", "sleep", "61")
    try:
        out = _run(daemon, "--pid", "container:donor", "busybox", "ps", "-o", "args")
        assert "sleep 61" in out
        mode = docker(daemon, "inspect", "-f", "{{.HostConfig.PidMode}}", "donor").stdout
        assert mode.strip() == ""
    finally:
        docker(daemon, "rm", "-f", "donor")


def test_devices_mac_address_and_cgroup_settings(daemon: Any) -> None:
    code, out, err = shipslog(
               daemon, "run", "--rm", "--device", "/dev/full:/dev/myfull:rw",
               "--device-cgroup-rule", "c 1:11 r", "--mac-address", "02:42:ac:11:00:99",
               "--cpu-shares", "512", "--cpuset-cpus", "0", "--memory", "64m",
               "--memory-swappiness", "10", "--memory-reservation", "32m",
               "--oom-kill-disable", "busybox", "sh", "-c",
               "ls -l /dev/myfull | cut -c1; { echo x > /dev/myfull; } 2>&1 | grep -c 'No space';"
               " cat /sys/class/net/eth0/address;"
               " cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus"
               " /sys/fs/cgroup/memory/memory.swappiness; grep -c 'c 1:11 r'"
               " /sys/fs/cgroup/devices/devices.list;"
               " cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes;"
               " grep oom_kill_disable /sys/fs/cgroup/memory/memory.oom_control")
    assert code == 0, err
    assert out.split() == ["c", "1", "02:42:ac:11:00:99", "512", "0", "10", "1",
                           str(32 << 20), "oom_kill_disable", "1"]


def test_cgroup_parent_places_the_container(daemon: Any) -> None:
    parent = f"shipslog-test-{os.getpid()}"
    try:
        out = _run(daemon, "--cgroup-parent", f"/{parent}", "busybox", "cat",
                   "/proc/self/cgroup")
        assert f"/{parent}/" in out
    finally:
        for d in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            d.rmdir()  # runc removed the container's own cgroup; the parent is ours


def test_volumes_from_copies_mounts_read_only(daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("from the host\n")
    docker(daemon, "create", "--name", "src", "-v", f"{tmp_path}:/shared", "-v", "data:/data",
           "busybox", "true")
    try:
        out = _run(daemon, "--volumes-from", "src:ro", "busybox", "sh", "-c",
                   "cat /shared/f; touch /data/x 2>/dev/null || echo read-only")
        assert out.splitlines() == ["from the host", "read-only"]
    finally:
        docker(daemon, "rm", "-v", "src")
        docker(daemon, "volume", "rm", "data")


def test_inspect_shows_what_was_applied(daemon: Any, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port free now, rather than one another test may hold
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = shipslog(daemon, "run", "-d", "--name", "shown", "-p", f"127.0.0.1:{port}:80",
           "-v", f"{tmp_path}:/host:ro", "-v", "named:/data", "--dns", "10.9.8.7",
           "--add-host", "a:10.0.0.1", "--ulimit", "nofile=100:200", "--shm-size", "8m",
           "--sysctl", "net.ipv4.ip_forward=1", "--group-add", "nobody", "--cpu-shares", "512",
           "--ipc", "host", "--mac-address", "02:42:ac:11:00:98",
           "busybox", "sleep", "60")
    assert code == 0, err
    try:
        got = json.loads(docker(daemon, "inspect", "shown").stdout)[0]
        host = got["HostConfig"]
        assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                    "HostPort": str(port)}]}
        assert host["Binds"] == [f"{tmp_path}:/host:ro", "named:/data"]
        assert host["Dns"] == ["10.9.8.7"] and host["ExtraHosts"] == ["a:10.0.0.1"]
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
        assert host["ShmSize"] == 8 * 1024 * 1024 and host["CpuShares"] == 512
        assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
        assert host["GroupAdd"] == ["nobody"] and host["IpcMode"] == "host"
        assert host["Runtime"] == "runc"
        mounts = {m["Destination"]: m for m in got["Mounts"]}
        assert mounts["/host"]["Type"] == "bind" and mounts["/host"]["RW"] is False
        assert mounts["/host"]["Source"] == str(tmp_path)
        assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == "named"
        assert mounts["/data"]["Source"].endswith("/volumes/named/_data")
        ns = got["NetworkSettings"]
        bridge = ns["Networks"]["bridge"]
        assert ns["IPAddress"] == bridge["IPAddress"] != ""
        assert ns["Gateway"] == bridge["Gateway"] != ""
        assert ns["MacAddress"] == bridge["MacAddress"] == "02:42:ac:11:00:98"
        assert ns["IPPrefixLen"] == bridge["IPPrefixLen"] > 0
    finally:
        docker(daemon, "rm", "-f", "-v", "shown")
        docker(daemon, "volume", "rm", "named")
    with EventStore.open(daemon.root / "events.db", readonly=True) as store:
        created = [e for e in store.read() if e.type == "ContainerCreateRequested"]
    recorded = created[-1].event.config  # the create event carries what was applied
    assert recorded.dns == ("10.9.8.7",) and recorded.shm_size == 8 * 1024 * 1024
    assert recorded.mac_address == "02:42:ac:11:00:98"


def test_legacy_links_give_hosts_entries_and_env_and_can_be_removed(daemon: Any) -> None:
    docker(daemon, "run", "-d", "--name", "db", "--expose", "5432", "busybox", "sleep", "60")
    try:
        ip = docker(daemon, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db").stdout
        ip = ip.strip()
        assert ip
        docker(daemon, "create", "--name", "web", "--link", "db:pg", "busybox", "sh", "-c",
               "grep -w pg /etc/hosts; env | grep ^PG_ | sort")
        docker(daemon, "start", "-a", "web")  # the first run's output is in the log
        lines = docker(daemon, "logs", "web").stdout.splitlines()
        assert lines[0].split() == [ip, "pg"]
        assert lines[1:] == ["PG_NAME=/web/pg", f"PG_PORT=tcp://{ip}:5432",
                             f"PG_PORT_5432_TCP=tcp://{ip}:5432", f"PG_PORT_5432_TCP_ADDR={ip}",
                             "PG_PORT_5432_TCP_PORT=5432", "PG_PORT_5432_TCP_PROTO=tcp"]
        links = docker(daemon, "inspect", "-f", "{{json .HostConfig.Links}}", "web").stdout
        assert json.loads(links) == ["/db:/web/pg"]
        p = docker(daemon, "rm", "web", "--link", check=False)  # a name is not a link
        assert p.returncode != 0 and "cannot remove the default link name" in p.stderr
        docker(daemon, "rm", "--link", "/web/pg")
        assert docker(daemon, "inspect", "-f", "{{json .HostConfig.Links}}",
                      "web").stdout.strip() == "null"
        docker(daemon, "stop", "-t", "0", "db")
        docker(daemon, "start", "web")  # no link any more: a stopped db does not matter
        docker(daemon, "create", "--name", "web2", "--link", "db", "busybox", "true")
        p = docker(daemon, "start", "web2", check=False)
        assert p.returncode != 0
        assert "Cannot link to a non running container: /db AS /web2/db" in p.stderr
    finally:
        for name in ("web", "web2", "db"):
            docker(daemon, "rm", "-f", name, check=False)


@pytest.mark.parametrize(("flags", "message"), [
    (["--runtime", "kata"], "unknown or invalid runtime name: kata"),
    (["--isolation", "hyperv"], "invalid isolation 'hyperv' on linux"),
    (["--link", "nosuch:alias"], "could not get container for nosuch"),
    (["--volumes-from", "nosuch"], "could not get container for nosuch"),
    (["--blkio-weight", "300"], "--blkio-weight is not supported by shipslog"),
    (["--ipc", "container:x"], "--ipc=container:x is not supported by shipslog yet"),
    (["--pid", "container:nosuch"], "could not get container for nosuch"),
])
def test_options_that_cannot_be_applied_are_refused(daemon: Any, flags: list[str],
                                                     message: str) -> None:
    p = docker(daemon, "create", *flags, "busybox", "true", check=False)
    assert p.returncode != 0 and message in p.stderr
    assert "Traceback" not in p.stderr
    assert docker(daemon, "ps", "-aq").stdout.strip() == ""  # nothing half-created


@pytest.mark.parametrize(("flags", "message"), [
    (["--sysctl", "kernel.panic=1"], "sysctl 'kernel.panic=1' is not whitelisted"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
     "not allowed in host network namespace"),
    (["--mac-address", "01:00:5e:00:00:01"], "a multicast address"),
    (["--uts", "host", "--hostname", "x"], "conflicting options: hostname and the UTS mode"),
])
def test_refusals_reach_our_cli_as_one_line(daemon: Any, flags: list[str],
                                            message: str) -> None:
    code, _, err = shipslog(daemon, "create", *flags, "busybox", "true")
    assert code != 0 and message in err and "Traceback" not in err
    assert docker(daemon, "ps", "-aq").stdout.strip() == ""
