"""The `docker` CLI against shipslogd's socket, on the real kernel: the core flow of issue 3
(version, info, ps, run --rm, run -d, logs, exec, stop, rm, images, inspect), exit codes,
limits that take effect, and the log recording who did what."""

from __future__ import annotations

import json
import time

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def test_version_info_images(daemon) -> None:
    v = json.loads(docker(daemon, "version", "--format", "{{json .Server}}").stdout)
    assert v["ApiVersion"] == "1.43"
    info = docker(daemon, "info", "--format", "{{.Images}} {{.Driver}}").stdout.split()
    assert info == ["1", "overlay2"]
    images = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert images == ["busybox:latest"]


def test_run_rm_foreground_output_and_exit_codes(daemon) -> None:
    p = docker(daemon, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert p.stdout == "out\n" and p.stderr == "err\n"
    assert docker(daemon, "run", "--rm", "busybox", "sh", "-c", "exit 7",
                  check=False).returncode == 7
    assert docker(daemon, "run", "--rm", "busybox", "no-such-cmd", check=False).returncode == 127
    assert docker(daemon, "ps", "-aq").stdout == ""  # --rm left nothing


def test_detached_logs_exec_stop_rm(daemon) -> None:
    cid = docker(daemon, "run", "-d", "--name", "web", "busybox", "sh", "-c",
                 "echo ready; trap 'exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "ready" not in docker(daemon, "logs", "web").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert docker(daemon, "exec", "web", "echo", "inside").stdout == "inside\n"
    assert docker(daemon, "exec", "web", "sh", "-c", "exit 4", check=False).returncode == 4
    assert docker(daemon, "exec", "-i", "web", "cat", input=b"piped\n").stdout == "piped\n"
    state = docker(daemon, "inspect", "-f", "{{.State.Status}} {{.Name}}", "web").stdout.split()
    assert state == ["running", "/web"]
    ps = docker(daemon, "ps", "--format", "{{.Names}} {{.Status}}").stdout
    assert ps.startswith("web Up")
    docker(daemon, "stop", "-t", "5", "web")
    code = docker(daemon, "inspect", "-f", "{{.State.ExitCode}}", "web").stdout.strip()
    assert code == "0"  # the trap ran: SIGTERM was delivered, not SIGKILL
    docker(daemon, "rm", "web")
    assert docker(daemon, "ps", "-aq").stdout == ""


def test_errors_are_clear_and_nothing_is_recorded(daemon) -> None:
    head = EventStore.open(daemon.root / "events.db", readonly=True).head()
    for bad in ("../x", "a\nb", "x" * 300):
        p = docker(daemon, "create", "--name", bad, "busybox", check=False)
        assert p.returncode != 0 and "name" in p.stderr.lower()
    p = docker(daemon, "rm", "nosuchcontainer", check=False)
    assert "No such container" in p.stderr
    assert EventStore.open(daemon.root / "events.db", readonly=True).head() == head
    # A missing image makes the CLI try a pull: that attempt is recorded, and it failed;
    # no container comes of it.
    p = docker(daemon, "run", "nosuchimage:1", check=False)
    assert p.returncode == 125
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    later = [e.type for e in store.read(after_seq=head)]
    assert not any(t.startswith("Container") for t in later), later
    docker(daemon, "version")  # still up


def test_oom_kill_is_recorded(daemon) -> None:
    p = docker(daemon, "run", "--name", "hog", "-m", "8m", "busybox", "sh", "-c",
               "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived", check=False)
    assert p.returncode == 137
    assert docker(daemon, "inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout.strip() == "true"
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    exits = [e.event for e in store.read(types=["ContainerExited"])]
    assert exits and exits[-1].oom_killed and exits[-1].exit_code == 137
    docker(daemon, "rm", "hog")


def test_the_log_says_who_did_what(daemon) -> None:
    docker(daemon, "run", "--name", "audited", "busybox", "true")
    docker(daemon, "rm", "audited")
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    creates = [e for e in store.read(types=["ContainerCreateRequested"])
               if e.event.name == "audited"]
    assert creates and creates[0].actor.uid == 0 and creates[0].actor.pid > 0
    assert creates[0].actor.command and "docker" in creates[0].actor.command[0]
    assert store.verify().ok
    types = [e.type for e in store.read(stream="container-" + creates[0].event.container_id)]
    assert types[:2] == ["ContainerCreateRequested", "ContainerCreated"]
    assert types[-1] == "ContainerRemoved" and "ContainerExited" in types


def _raw(daemon, request: bytes) -> bytes:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(daemon.sock)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


@pytest.mark.parametrize("body, status", [
    (b'{"Image": "busybox", "Cmd": ["tr', b"400"),          # truncated
    (b'{"Image": "busybox"} trailing', b"400"),             # garbage after the object
    (b"", b"400"),                                          # body required
    (b'{"Image": 5}', b"400"),                              # wrong type
    (b"[" * 10_000 + b"]" * 10_000, b"400"),                # deep nesting
    (b"\xff\xfe{}", b"400"),                                # not UTF-8
])
def test_bad_bodies_get_4xx_and_append_nothing(daemon, body, status) -> None:
    head = EventStore.open(daemon.root / "events.db", readonly=True).head()
    answer = _raw(daemon, b"POST /v1.43/containers/create HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
    assert answer.split(b" ")[1] == status, answer[:200]
    big = _raw(daemon, b"POST /v1.43/containers/create HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: 104857600\r\n\r\n")
    assert big.split(b" ")[1] == b"413"
    assert EventStore.open(daemon.root / "events.db", readonly=True).head() == head
    assert docker(daemon, "version", "--format", "{{.Server.Version}}").stdout.strip()


def test_events_with_an_until_ahead_end_then_even_when_nothing_happens(daemon) -> None:
    """`docker events --until <soon>` closes at that time, not at the next event."""
    now = int(time.time())
    p = docker(daemon, "events", "--since", str(now), "--until", str(now + 1), timeout=30)
    assert " container " not in p.stdout  # only the fixture's start: bridge, image load
