"""Failures a user can cause reach them as Docker's words (issue 15 item 6), on the real
kernel: a published host port that a test-owned socket already holds, through `docker run -p`
and `shipslog run -p`. Expected, as Docker: "Bind for 127.0.0.1:PORT failed: port is already
allocated" (HTTP 500), exit code 125, the container Created (not running); and, our own: the
start recorded `failed` with that reason at once (`history`, `audit who`), its namespace,
veth, address lease and nft rules released at once (the oracle and the leak fixture).

I/O: a daemon (subprocess), the docker CLI and our CLI against its socket, one listening TCP
socket on 127.0.0.1 owned and closed by the test.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.core.net_plan import netns_name
from engine.testing import oracle
from engine.testing.cli import shipslog
from engine.testing.dockercli import docker, needs_docker

pytestmark = [pytest.mark.kernel]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test's own socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])




def allocated(port: int) -> str:
    return f"Bind for 127.0.0.1:{port} failed: port is already allocated"


def assert_start_failed_and_released(daemon: Any, name: str, reason: str) -> None:
    """Created, not running; the start's outcome `failed` with `reason` in the log; nothing
    of its network left in the log or the kernel."""
    c = daemon.client()
    info = c.get_json(f"/containers/{name}/json")
    assert info["State"]["Status"] == "created" and info["State"]["Running"] is False
    cid = info["Id"]

    code, out, err = shipslog(daemon, "history", name)
    assert code == 0, err
    assert "start" in out and "failed" in out and reason in out, out
    code, out, err = shipslog(daemon, "audit", "who", name)
    assert code == 0, err
    assert "pending" not in out and "failed" in out, out

    state = oracle.check(daemon)  # no open operation; log, projection and kernel agree
    assert not state.containers[cid].networks and not state.containers[cid].ports
    assert all(owner != cid for n in state.networks.values() for owner in n.allocations.values())
    assert not (daemon.exec_root / "netns" / netns_name(cid)).exists()


@needs_docker
def test_docker_run_on_a_port_already_in_use(daemon: Any, held_port: int) -> None:
    p = docker(daemon, "run", "-d", "--name", "held", "-p", f"127.0.0.1:{held_port}:80",
               "busybox", "sleep", "600", check=False)
    assert p.returncode == 125
    assert allocated(held_port) in p.stderr, p.stderr
    assert "ExceptionGroup" not in p.stderr and "internal error" not in p.stderr
    assert_start_failed_and_released(daemon, "held", allocated(held_port))

    # Starting it again says the same, with Docker's status for it.
    with pytest.raises(ApiError) as err:
        daemon.client().post_json("/containers/held/start")
    assert (err.value.status, err.value.message) == (500, allocated(held_port))
    assert_start_failed_and_released(daemon, "held", allocated(held_port))
    docker(daemon, "rm", "held")
    oracle.check(daemon)


def test_shipslog_run_on_a_port_already_in_use(daemon: Any, held_port: int) -> None:
    code, _, err = shipslog(daemon, "run", "-d", "--name", "held", "-p",
                            f"127.0.0.1:{held_port}:80", "busybox", "sleep", "600")
    assert code == 125
    lines = err.splitlines()
    assert lines[0] == f"shipslog: Error response from daemon: {allocated(held_port)}", err
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "journalctl" not in err
    assert_start_failed_and_released(daemon, "held", allocated(held_port))
    assert shipslog(daemon, "rm", "held")[0] == 0
    oracle.check(daemon)


@pytest.mark.parametrize("repo, tag, words", [
    ("a:b:c", "", "invalid reference format"),
    ("a:b", "c:d", "invalid tag format"),
    ("bücher", "", "invalid reference format"),
    ("busybox", "ünï", "invalid tag format"),
    ("busybox", "-dash", "invalid tag format"),
    ("UPPER", "v1", "invalid reference format"),
])
def test_tag_api_refuses_what_docker_refuses(daemon: Any, repo: str, tag: str,
                                             words: str) -> None:
    """moby's postImagesTag: RepoTagReference(repo, tag) → 400 with the reference
    package's words, nothing recorded."""
    c = daemon.client()
    head = c.get_json("/shipslog/audit/head")
    with pytest.raises(ApiError) as err:
        c.post_json("/images/busybox/tag", {"repo": repo, "tag": tag})
    assert err.value.status == 400 and err.value.message.startswith(words), err.value.message
    assert c.get_json("/shipslog/audit/head") == head
    c.post_json("/images/busybox/tag", {"repo": "a", "tag": "b"})  # a good one still works
    c.post_json("/images/busybox/tag", {"repo": "x:old", "tag": "new"})  # the tag replaces
    tags = {t for img in c.get_json("/images/json") for t in img["RepoTags"]}
    assert tags == {"busybox:latest", "a:b", "x:new"}


@needs_docker
def test_attached_run_that_cannot_start_logs_one_line(daemon: Any) -> None:
    """`docker run` attaches before it starts; a start that fails ends the attach with one
    line in the daemon's log, not a traceback (issue 15 item 9)."""
    p = docker(daemon, "run", "--name", "nocmd", "busybox", "/no/such/command", check=False)
    assert p.returncode == 127, p.stderr
    code, _, err = shipslog(daemon, "run", "--name", "nocmd2", "busybox", "/no/such/command")
    assert code == 127, err
    # The daemon logs the line when the attach's task ends, which can be just after the CLI
    # has its exit code: wait for the second line to appear (bounded), then count.
    deadline = time.monotonic() + 20
    while "attach to nocmd2 ended" not in daemon.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = daemon.log_text()
    assert "Traceback" not in log, log
    for name in ("nocmd", "nocmd2"):
        assert len([line for line in log.splitlines()
                    if f"attach to {name} ended" in line]) == 1, log
    oracle.check(daemon)


def test_cp_into_dev_of_a_running_container(daemon: Any, tmp_path: Any) -> None:
    """The runtime mounts a tmpfs on the container's /dev: a copy into /dev must land there,
    where the container sees it (it answered 200 and wrote the overlay beneath: issue 15
    item 9); another mount under it (/dev/shm) is refused, not silently missed."""
    src = tmp_path / "note.txt"
    src.write_text("into dev\n")
    code, cid, err = shipslog(daemon, "run", "-d", "--name", "devcp", "busybox", "sleep", "600")
    assert code == 0, err
    code, _, err = shipslog(daemon, "cp", str(src), "devcp:/dev/")
    assert code == 0, err
    code, out, err = shipslog(daemon, "exec", "devcp", "cat", "/dev/note.txt")
    assert (code, out) == (0, "into dev\n"), err
    code, _, err = shipslog(daemon, "cp", "devcp:/dev/note.txt", str(tmp_path / "back.txt"))
    assert code == 0 and (tmp_path / "back.txt").read_text() == "into dev\n", err
    code, _, err = shipslog(daemon, "cp", str(src), "devcp:/dev/shm/")
    assert code == 125 and "another mount" in err, err
    code, _, err = shipslog(daemon, "cp", "devcp:/proc/version", str(tmp_path / "v"))
    assert code == 125 and "another mount" in err, err
    code, out, _ = shipslog(daemon, "exec", "devcp", "ls", "/dev/shm")
    assert (code, out) == (0, "")
    code, _, err = shipslog(daemon, "cp", str(src), "devcp:/tmp/")  # the rootfs, as before
    assert code == 0, err
    assert shipslog(daemon, "exec", "devcp", "cat", "/tmp/note.txt")[1] == "into dev\n"
    assert shipslog(daemon, "rm", "-f", "devcp")[0] == 0
    oracle.check(daemon)
