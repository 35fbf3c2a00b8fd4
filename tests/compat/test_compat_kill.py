"""`docker kill` against both engines: a kill by the user is not a failure to restart from
(moby `ExitOnNext` cancels the restart manager), and a SIGKILL answers only once the container
is no longer running (moby `daemon.Kill` waits for `WaitConditionNotRunning`), so an `inspect`
right after it already shows the exit."""

from __future__ import annotations

import json
import time

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel

# Long enough for a policy restart to show (the back-off starts at 100 ms on both engines).
SETTLE_S = 1.5


def state(engine: Engine, ref: str) -> tuple[str, bool, int, int]:
    info = json.loads(docker(engine, "inspect", ref).stdout)[0]
    s = info["State"]
    return s["Status"], s["Running"], s["ExitCode"], info["RestartCount"]


def test_sigkill_answers_after_the_exit_is_recorded(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "kd", "--network", "none", "busybox", "sleep", "1000")
    docker(engine, "kill", "kd")
    assert state(engine, "kd") == ("exited", False, 137, 0)
    # through the SDK, with no CLI start-up between the kill and the inspect
    c = engine.sdk().containers.run("busybox", ["sleep", "1000"], detach=True,
                                    network_mode="none")
    c.kill()
    c.reload()
    assert (c.status, c.attrs["State"]["Running"], c.attrs["State"]["ExitCode"]) == (
        "exited", False, 137)


def test_kill_of_on_failure_container_does_not_restart_it(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "kd", "--network", "none", "--restart", "on-failure",
           "busybox", "sleep", "1000")
    docker(engine, "kill", "kd")
    time.sleep(SETTLE_S)
    assert state(engine, "kd") == ("exited", False, 137, 0)


def test_kill_with_another_signal_does_not_restart_either(engine: Engine) -> None:
    # No stop signal configured: moby cancels the restart whatever the signal was.
    docker(engine, "run", "-d", "--name", "kd", "--network", "none", "--restart", "on-failure",
           "busybox", "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done")
    docker(engine, "kill", "-s", "TERM", "kd")
    assert docker(engine, "wait", "kd").stdout.strip() == "3"
    time.sleep(SETTLE_S)
    assert state(engine, "kd") == ("exited", False, 3, 0)


def test_a_failure_after_a_kill_and_start_is_restarted(engine: Engine) -> None:
    # The kill cancels one restart, not the policy: `start` arms it again (moby resets the
    # restart manager on start), so the container's own failure is restarted.
    docker(engine, "run", "-d", "--name", "kd", "--network", "none", "--restart",
           "on-failure:1", "busybox", "sh", "-c",
           "while [ ! -f /tmp/fail ]; do sleep 0.1; done; exit 1")
    docker(engine, "kill", "kd")
    docker(engine, "start", "kd")
    # The container exits as soon as it sees the file, which can kill the exec's own
    # process before it is reaped (137): either way the file is there.
    touched = docker(engine, "exec", "kd", "touch", "/tmp/fail", check=False)
    assert touched.returncode in (0, 137), touched.stderr
    deadline = time.monotonic() + 20
    while state(engine, "kd")[3] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state(engine, "kd")[3] == 1


def test_kill_of_an_auto_remove_container_removes_it(engine: Engine) -> None:
    cid = docker(engine, "run", "-d", "--rm", "--network", "none", "busybox",
                 "sleep", "1000").stdout.strip()
    docker(engine, "kill", cid)
    deadline = time.monotonic() + 20
    while docker(engine, "ps", "-aq", "--filter", f"id={cid}").stdout.strip():
        assert time.monotonic() < deadline, "the --rm container was not removed"
        time.sleep(0.1)
