"""Health checks on the real kernel through Docker's own CLI: `--health-*` flags, the verdict
in `ps` and `inspect` (with the last probes), `docker events` showing `health_status`, a
probe that outlives its timeout killed inside the container, and `--no-healthcheck`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from engine.testing.dockercli import docker, needs_docker

pytestmark = [pytest.mark.kernel, needs_docker]


def health(daemon: Any, name: str) -> dict[str, Any]:
    out = docker(daemon, "inspect", "-f", "{{json .State.Health}}", name).stdout
    return json.loads(out) or {}


def wait_for(daemon: Any, name: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        h = health(daemon, name)
        if h.get("Status") == status:
            return h
        assert time.monotonic() < deadline, f"{name} never became {status}: {h}"
        time.sleep(0.1)


def test_health_turns_healthy_then_unhealthy_and_back(daemon: Any) -> None:
    since = str(int(time.time()) - 1)
    docker(daemon, "run", "-d", "--name", "svc", "--health-cmd", "test -f /tmp/ok && echo fine",
           "--health-interval", "200ms", "--health-retries", "2", "busybox", "sh", "-c",
           "touch /tmp/ok; trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert health(daemon, "svc")["Status"] in ("starting", "healthy")
    h = wait_for(daemon, "svc", "healthy")
    assert h["FailingStreak"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    assert h["Log"][-1]["ExitCode"] == 0
    assert "(healthy)" in docker(daemon, "ps", "--format", "{{.Status}}").stdout
    assert docker(daemon, "ps", "-q", "--filter", "health=healthy").stdout.strip()
    assert not docker(daemon, "ps", "-q", "--filter", "health=unhealthy").stdout.strip()
    docker(daemon, "exec", "svc", "rm", "/tmp/ok")
    h = wait_for(daemon, "svc", "unhealthy")
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
    assert "(unhealthy)" in docker(daemon, "ps", "--format", "{{.Status}}").stdout
    docker(daemon, "exec", "svc", "touch", "/tmp/ok")
    wait_for(daemon, "svc", "healthy")
    config = json.loads(docker(daemon, "inspect", "-f", "{{json .Config.Healthcheck}}",
                               "svc").stdout)
    assert config["Test"] == ["CMD-SHELL", "test -f /tmp/ok && echo fine"]
    assert config["Interval"] == 200_000_000 and config["Retries"] == 2
    actions = docker(daemon, "events", "--since", since, "--until", str(int(time.time()) + 1),
                     "--filter", "container=svc", "--format", "{{.Action}}").stdout.split("\n")
    health_actions = [a for a in actions if a.startswith("health_status")]
    assert health_actions == ["health_status: healthy", "health_status: unhealthy",
                              "health_status: healthy"]
    docker(daemon, "stop", "-t", "2", "svc")
    docker(daemon, "rm", "svc")


def test_a_probe_past_its_timeout_is_killed_and_counts_as_a_failure(daemon: Any) -> None:
    docker(daemon, "run", "-d", "--name", "slow", "--health-cmd", "sleep 30",
           "--health-interval", "200ms", "--health-timeout", "300ms", "--health-retries", "1",
           "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    h = wait_for(daemon, "slow", "unhealthy")
    assert h["Log"][-1]["ExitCode"] == -1 and "timeout" in h["Log"][-1]["Output"]
    time.sleep(0.5)
    # Killed inside the container: at most the probe in flight is left, never a pile of them.
    top = docker(daemon, "top", "slow").stdout
    assert top.count("sleep 30") <= 1
    docker(daemon, "rm", "-f", "slow")


def test_no_healthcheck_and_bad_flags(daemon: Any) -> None:
    docker(daemon, "create", "--name", "quiet", "--no-healthcheck", "busybox", "true")
    assert json.loads(docker(daemon, "inspect", "-f", "{{json .Config.Healthcheck}}",
                             "quiet").stdout)["Test"] == ["NONE"]
    assert health(daemon, "quiet") == {}
    docker(daemon, "rm", "quiet")
    p = docker(daemon, "create", "--health-cmd", "true", "--health-interval", "1ns", "busybox",
               check=False)
    assert p.returncode != 0 and "interval" in p.stderr.lower()
