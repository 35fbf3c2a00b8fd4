"""Interactive and streamed exec against shipslogd and dockerd (the `engine` fixture), as
tests/integration/test_exec_streams.py checks it on shipslogd alone (issue 13): `docker exec
-it` through a real pseudo-terminal (prompt, typed input echoed, ctrl-p ctrl-q, exit code),
`docker exec -i` with its stdin half-closed, the framing a start request asks for, and the
Docker SDK's exec_run with demux and tty.

I/O: the docker CLI on a pty we hold, the Docker SDK; one container per test, removed."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from engine.api.docker.stream import FrameDecoder
from engine.testing.dockercli import docker
from tests.compat.conftest import Engine
from tests.integration.test_exec_streams import PATIENCE, Terminal, crlf

pytestmark = pytest.mark.kernel


@pytest.fixture
def box(engine: Engine) -> Iterator[str]:
    docker(engine, "run", "-d", "--name", "box", "--network", "none", "busybox",
           "sleep", "100000")
    try:
        yield "box"
    finally:
        docker(engine, "rm", "-f", "box", check=False)


def _session(engine: Engine) -> Terminal:
    term = Terminal(engine, ["docker", "exec", "-it", "box", "sh"])
    term.expect(b"# ")  # the prompt appears while stdin is still open
    term.send(b"echo typed-$((40+2))\r")
    term.expect(b"echo typed-$((40+2))")  # our keys echoed by the container's terminal
    term.expect(b"typed-42")
    return term


def test_docker_exec_it_prompt_echo_detach_and_exit_code(engine: Engine, box: str) -> None:
    term = _session(engine)
    term.send(b"exec sleep 4242\r")
    # The shell echoes the line once it has read it: detach only then, or the detach
    # can race the shell to the line (seen on dockerd: no `sleep 4242` afterwards).
    term.expect(b"exec sleep 4242\r\n")
    term.send(b"\x10\x11")  # ctrl-p ctrl-q
    code = term.wait()
    # Docker's CLI reports an exec detach as an error ("read escape sequence") on either
    assert code == 0 or b"read escape sequence" in term.seen
    assert "sleep 4242" in docker(engine, "exec", box, "ps").stdout  # the exec runs on

    term = _session(engine)
    term.send(b"exit 3\r")
    assert term.wait() == 3


def test_docker_exec_i_half_close(engine: Engine, box: str) -> None:
    p = subprocess.run(f"echo hi | docker exec -i {box} cat", shell=True, env=engine.cli_env(),
                       capture_output=True, text=True, timeout=PATIENCE)
    assert (p.returncode, p.stdout) == (0, "hi\n")


def _start(engine: Engine, exec_id: str, tty: bool) -> bytes:
    """POST /exec/ID/start on a hijacked connection, as the docker CLI does; all it sends."""
    api = engine.sdk().api
    sock = api.exec_start(exec_id, tty=tty, socket=True)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(PATIENCE)
    out = b""
    while data := raw.recv(65536):
        out += data
    sock.close()
    return out


def test_framing_follows_the_start_request_tty(engine: Engine, box: str) -> None:
    api = engine.sdk().api
    # An exec without a terminal, started with Tty: a raw stream (no 8-byte headers).
    exec_id = api.exec_create(box, ["echo", "plain"])["Id"]
    assert _start(engine, exec_id, tty=True) == b"plain\n"
    # An exec with a terminal, started without Tty: multiplexed.
    exec_id = api.exec_create(box, ["echo", "framed"], tty=True)["Id"]
    [(stream_id, payload)] = FrameDecoder().feed(_start(engine, exec_id, tty=False))
    assert (stream_id, crlf(payload)) == (1, b"framed\r\n")


def test_docker_sdk_exec_run(engine: Engine, box: str) -> None:
    ctr = engine.sdk().containers.get(box)
    script = ["sh", "-c", "echo out; echo err >&2; exit 5"]
    chunks = list(ctr.exec_run(script, stream=True, demux=True).output)
    assert b"".join(o for o, _ in chunks if o) == b"out\n"
    assert b"".join(e for _, e in chunks if e) == b"err\n"
    result = ctr.exec_run(script, tty=True)
    assert (result.exit_code, crlf(result.output)) == (5, b"out\r\nerr\r\n")
    result = ctr.exec_run(script, demux=True)
    assert (result.exit_code, result.output) == (5, (b"out\n", b"err\n"))


def test_exec_streams_before_stdin_ends(engine: Engine, box: str) -> None:
    """Output flows while our stdin is open, input reaches the process at once, and after a
    half-close the output keeps flowing (the SDK's attach socket, as Compose uses it)."""
    api = engine.sdk().api
    exec_id = api.exec_create(box, ["sh", "-c", "echo ready; cat; echo after-eof"],
                              stdin=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw: socket.socket = getattr(sock, "_sock", sock)
    raw.settimeout(PATIENCE)
    decoder = FrameDecoder()
    out = b""

    def until(needle: bytes) -> None:
        nonlocal out
        while needle not in out:
            data = raw.recv(65536)
            assert data, f"stream ended before {needle!r}: {out!r}"
            out += b"".join(p for sid, p in decoder.feed(data) if sid == 1)

    until(b"ready\n")
    raw.sendall(b"ping\n")
    until(b"ping\n")
    raw.shutdown(socket.SHUT_WR)
    until(b"after-eof\n")
    while raw.recv(65536):  # the stream ends with the process
        pass
    sock.close()
    assert api.exec_inspect(exec_id)["ExitCode"] == 0



def _all_capabilities_grantable() -> bool:
    """Whether this host can grant every capability (`--privileged`): runc (under Docker
    too) fails "unable to apply caps" when the daemon's own bounding set lacks one, as in
    a sandbox without CAP_SYS_RESOURCE."""
    for line in open("/proc/self/status"):
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16) == (1 << (int(open(
                "/proc/sys/kernel/cap_last_cap").read()) + 1)) - 1
    return False


def test_exec_runs_with_the_containers_limits(engine: Engine) -> None:
    """An exec and a health probe start from the container's own process (moby copies its
    spec): `--ulimit` applies to them too, as do `--cap-drop`s."""
    docker(engine, "run", "-d", "--name", "limited", "--network", "none", "--ulimit",
           "nofile=512:1024", "--cap-drop", "NET_RAW", "--health-cmd",
           "test $(ulimit -n) = 512", "--health-interval", "1s", "busybox", "sleep", "100000")
    try:
        out = docker(engine, "exec", "limited", "sh", "-c",
                     "ulimit -n; ulimit -Hn; grep CapEff /proc/self/status").stdout.split()
        assert out[:2] == ["512", "1024"], out
        own_caps = int(out[-1], 16)
        assert own_caps and not own_caps & (1 << 13)  # CAP_NET_RAW dropped
        health = ""
        for _ in range(60):
            health = docker(engine, "inspect", "-f", "{{.State.Health.Status}}",
                            "limited").stdout.strip()
            if health != "starting":
                break
            subprocess.run(["sleep", "0.5"], check=True)
        assert health == "healthy"
    finally:
        docker(engine, "rm", "-f", "limited", check=False)


def test_exec_privileged_is_recorded_and_gives_every_capability(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "priv", "--network", "none", "--cap-drop",
           "NET_RAW", "busybox", "sleep", "100000")
    try:
        api = engine.sdk().api
        x = api.exec_create("priv", ["true"], privileged=True)
        assert api.exec_inspect(x["Id"])["ProcessConfig"]["privileged"] is True
        if not _all_capabilities_grantable():
            pytest.skip("this host's capability bounding set is not complete: no engine can "
                        "grant every capability here (Docker fails the same way)")
        priv = docker(engine, "exec", "--privileged", "priv", "grep", "CapEff",
                      "/proc/self/status").stdout.split()
        assert int(priv[-1], 16) & (1 << 13)  # NET_RAW, dropped from the container, is back
    finally:
        docker(engine, "rm", "-f", "priv", check=False)
