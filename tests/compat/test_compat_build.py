"""`docker build` (the classic builder, DOCKER_BUILDKIT=0) against both engines (issue 12):
`COPY --chown` with names resolved in the step image's /etc/passwd and /etc/group, Docker's
error for a name the image does not know, and `.dockerignore` with a fully cached rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel

USERS = ("RUN echo 'app:x:1234:5678::/home/app:/bin/sh' >> /etc/passwd && "
         "echo 'staff:x:4321:app' >> /etc/group && echo 'app:x:5678:' >> /etc/group\n")


def _build(engine: Engine, ctx: Path, *args: str, check: bool = True):
    return docker(engine, "build", *args, str(ctx), check=check, timeout=300)


@pytest.fixture(autouse=True)
def classic_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")


def test_copy_chown_by_name(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "f").write_text("f\n")
    (ctx / "d" / "g").write_text("g\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n" + USERS + "COPY --chown=app:staff f /f\nCOPY --chown=app d /d\n"
        "COPY --chown=1000 f /n\n")
    try:
        _build(engine, ctx, "-t", "chown-names:1")
        out = docker(engine, "run", "--rm", "--network", "none", "chown-names:1", "stat", "-c",
                     "%n %u:%g", "/f", "/d", "/d/g", "/n").stdout
        assert out.splitlines() == ["/f 1234:4321", "/d 1234:5678", "/d/g 1234:5678",
                                    "/n 1000:1000"]
        (ctx / "Dockerfile").write_text("FROM busybox\n" + USERS + "COPY --chown=ghost f /f\n")
        p = _build(engine, ctx, check=False)
        assert p.returncode != 0
        assert "can't find uid for user ghost: no such user: ghost" in p.stdout + p.stderr
    finally:
        docker(engine, "rmi", "chown-names:1", check=False)


def test_dockerignore_and_a_fully_cached_rebuild(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    for i in range(40):
        (ctx / "files" / "sub" / f"f{i}.txt").write_text(f"{i}\n")
    (ctx / "files" / "debug.log").write_text("secret\n")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY files /files\n"
                                    "RUN ls -R /files | wc -l > /n\nCOPY files/sub/f7.txt /7\n")
    try:
        _build(engine, ctx, "-t", "ctx-cache:1")
        again = _build(engine, ctx, "-t", "ctx-cache:2")
        assert again.stdout.count("Using cache") == 3
        ids = {docker(engine, "images", "-q", "--no-trunc", t).stdout.strip()
               for t in ("ctx-cache:1", "ctx-cache:2")}
        assert len(ids) == 1
        out = docker(engine, "run", "--rm", "--network", "none", "ctx-cache:2", "sh", "-c",
                     "test -e /files/debug.log && echo leaked; cat /7; ls /files/sub | wc -l")
        assert out.stdout.split() == ["7", "40"]
        (ctx / "files" / "sub" / "f7.txt").write_text("seven\n")  # one file changes
        third = _build(engine, ctx, "-t", "ctx-cache:3")
        assert third.stdout.count("Using cache") == 0
        out = docker(engine, "run", "--rm", "--network", "none", "ctx-cache:3", "cat", "/7")
        assert out.stdout == "seven\n"
    finally:
        for t in ("ctx-cache:1", "ctx-cache:2", "ctx-cache:3"):
            docker(engine, "rmi", t, check=False)
