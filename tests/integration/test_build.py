"""Dockerfile builds on the real kernel (issue 12): `docker build` (classic builder protocol)
against shipslogd, the image run to check each instruction took effect, the cache, the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE} AS first
RUN echo built > /made && echo output-line
COPY a.txt /opt/
FROM busybox
ARG WHO=nobody
ENV GREETING=hi WHO_AT_BUILD=$WHO
WORKDIR /app
COPY --from=first /made /app/made
COPY d ./dd/
COPY --chmod=0700 a.txt /app/secret.txt
RUN ["sh", "-c", "echo $GREETING > /app/env.txt && mkdir -p /gone && rm /bin/ls"]
LABEL k=v
EXPOSE 8080
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
USER 1000
ONBUILD RUN echo child
CMD ["sh", "-c", "cat /app/made"]
"""


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "d" / "x").write_text("inner\n")
    (ctx / "ignored.log").write_text("no\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def _build(daemon, ctx: Path, *args: str, check: bool = True):
    return docker(daemon, "build", *args, str(ctx), check=check, timeout=180)


def _env(daemon):
    env = daemon.cli_env()
    env["DOCKER_BUILDKIT"] = "0"
    return env


def test_docker_build_multistage_runs_with_every_setting(daemon, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    ctx = _context(tmp_path)
    p = _build(daemon, ctx, "-t", "built:1", "--build-arg", "WHO=alice")
    assert "Step 1/" in p.stdout and "output-line" in p.stdout
    assert "Successfully tagged built:1" in p.stdout
    out = docker(daemon, "run", "--rm", "built:1").stdout
    assert out == "built\n"
    shown = docker(daemon, "run", "--rm", "built:1", "sh", "-c",
                   "id -u; pwd; echo $GREETING $WHO_AT_BUILD; cat dd/x env.txt; "
                   "stat -c %a secret.txt; test -e /bin/ls || echo ls-gone").stdout
    assert shown.split("\n")[:7] == ["1000", "/app", "hi alice", "inner", "hi", "700",
                                     "ls-gone"]
    cfg = json.loads(docker(daemon, "inspect", "built:1").stdout)[0]["Config"]
    assert cfg["Labels"] == {"k": "v"}
    assert "8080/tcp" in cfg["ExposedPorts"] and "/data" in cfg["Volumes"]
    assert cfg["StopSignal"] == "SIGINT" and cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    hist = docker(daemon, "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                  "built:1").stdout
    assert "COPY" in hist and "rm /bin/ls" in hist
    assert docker(daemon, "ps", "-aq").stdout == ""  # every step container is gone

    again = _build(daemon, ctx, "-t", "built:2", "--build-arg", "WHO=alice")
    assert again.stdout.count("Using cache") == DOCKERFILE.count("\n") - 3  # all but ARG/FROMs
    ids = {docker(daemon, "images", "-q", "--no-trunc", t).stdout.strip()
           for t in ("built:1", "built:2")}
    assert len(ids) == 1


def test_a_changed_file_invalidates_exactly_the_steps_after_it(daemon, tmp_path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    ctx = tmp_path / "c"
    ctx.mkdir()
    (ctx / "one").write_text("1")
    (ctx / "two").write_text("2")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY one /one\nRUN echo a > /a\n"
                                    "COPY two /two\nRUN cat /two > /b\nCMD cat /b\n")
    _build(daemon, ctx)
    (ctx / "two").write_text("22")
    p = _build(daemon, ctx, "-t", "changed")
    assert p.stdout.count("Using cache") == 2
    assert docker(daemon, "run", "--rm", "changed").stdout == "22"
    (ctx / "two").touch()  # mtimes are not content: still all cached
    assert _build(daemon, ctx).stdout.count("Using cache") == 5


def test_build_errors_are_one_line_and_leave_nothing(daemon, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nFOO bar\n")
    p = _build(daemon, ctx, check=False)
    assert p.returncode != 0 and "unknown instruction: FOO" in p.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY missing /x\n")
    p = _build(daemon, ctx, check=False)
    assert p.returncode != 0 and "missing" in p.stderr + p.stdout
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo before; exit 3\n")
    p = _build(daemon, ctx, check=False)
    assert p.returncode != 0
    assert "returned a non-zero code: 3" in p.stderr + p.stdout
    p = _build(daemon, ctx, "--target", "nope", check=False)
    assert p.returncode != 0 and "target nope" in p.stderr
    assert docker(daemon, "ps", "-aq").stdout == ""
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    failed = [e for e in store.read(types=["OperationFailed"])]
    assert any("non-zero code: 3" in e.event.error for e in failed)


def test_docker_sdk_builds_and_the_image_saves_as_a_valid_archive(daemon, tmp_path) -> None:
    import shutil
    import subprocess

    import docker as docker_sdk
    ctx = tmp_path / "sdk"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo sdk > /sdk\nCMD [\"cat\", \"/sdk\"]\n")
    client = docker_sdk.DockerClient(base_url=daemon.host)
    image, logs = client.images.build(path=str(ctx), tag="sdk:1")
    assert any("Successfully built" in m.get("stream", "") for m in logs)
    assert image.id.startswith("sha256:")
    archive = tmp_path / "sdk.tar"
    docker(daemon, "save", "-o", str(archive), "sdk:1")
    if shutil.which("skopeo"):  # digests, config and layers checked by another tool
        out = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"],
                             capture_output=True, text=True, check=True).stdout
        assert len(json.loads(out)["Layers"]) == 2
    client.close()
