"""The compatibility suite's fixtures: every test runs once against shipslogd and once against
a private dockerd, with the same assertions, so that a difference from Docker fails a test
(issue 13, "Docker's clients unchanged").

I/O: starts a shipslogd per test (engine/testing/daemon.py) and, once per session, a private
dockerd (tools/bench/common.py: its own data root, exec root and socket, no docker0, no
iptables) unless tools/with_dockerd.py already runs one and exports its socket in
SHIPSLOG_TEST_DOCKERD_HOST — two dockerds on one host fight over docker0 and iptables chains.
Loads the busybox test image into both. Removes, on the dockerd side, every container, network
and volume a test made (by comparing with what was there before it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.testing.daemon import DaemonProcess, kernel_inventory

BUSYBOX_TAR = Path("/tmp/shipslog-tests/busybox.tar")
DOCKERD_HOST_ENV = "SHIPSLOG_TEST_DOCKERD_HOST"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("docker"):
        skip = pytest.mark.skip(reason="needs root, runc and the docker CLI")
        for item in items:
            if "kernel" in item.keywords:
                item.add_marker(skip)


@dataclass
class Engine:
    """One engine under test, as the `docker` CLI and the Docker SDK see it."""

    name: str  # "shipslog" or "docker"
    host: str  # unix://…
    daemon: DaemonProcess | None = None  # the shipslogd, on the shipslog side
    _clients: list[object] = field(default_factory=list)

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_HOST=self.host, SHIPSLOG_HOST=self.host)
        env.pop("DOCKER_CONTEXT", None)
        return env

    def sdk(self):  # noqa: ANN201 - docker.DockerClient; the package is a test extra
        docker = pytest.importorskip("docker", reason="the Docker SDK (pip install -e "
                                     "'.[test]') is not installed")
        client = docker.DockerClient(base_url=self.host, version="auto", timeout=60)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for c in self._clients:
            c.close()  # type: ignore[attr-defined]


def _cli(host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=host)
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def _ids(host: str, *what: str) -> set[str]:
    p = _cli(host, *what, "-q")
    return set(p.stdout.split()) if p.returncode == 0 else set()


@pytest.fixture(scope="session")
def dockerd_host() -> Iterator[str]:
    """The socket of a dockerd with busybox:latest loaded, or a skip saying why there is none."""
    if shutil.which("docker") is None or os.geteuid() != 0:
        pytest.skip("no dockerd: needs root and the docker CLI")
    host = os.environ.get(DOCKERD_HOST_ENV)
    started = None
    if not host:
        from tools.bench.common import Dockerd, Unavailable

        # not under /tmp/shipslog-tests: the leak check would count dockerd's own mounts
        started = Dockerd(Path(tempfile.mkdtemp(prefix="compat-dockerd-", dir="/tmp")))
        try:
            started.start()
        except Unavailable as exc:
            started.stop()
            shutil.rmtree(started.base, ignore_errors=True)
            pytest.skip(f"no dockerd: {exc}")
        host = "unix://" + started.sock
    try:
        if _cli(host, "image", "inspect", "busybox:latest").returncode != 0:
            p = _cli(host, "load", "-i", str(BUSYBOX_TAR))
            if p.returncode != 0:
                pytest.skip(f"no dockerd: docker load failed: {p.stderr.strip()}")
        yield host
    finally:
        if started is not None:
            started.stop()
            subprocess.run(["rm", "-rf", "--one-file-system", str(started.base)], check=False)


@pytest.fixture(autouse=True)
def kernel_left_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """As in tests/integration: the test leaves no shipslog kernel object behind."""
    if "kernel" not in request.keywords or os.environ.get("SHIPSLOG_SHARED_HOST") == "1":
        yield
        return
    before = kernel_inventory()
    yield
    after = kernel_inventory()
    leaked = {k: sorted(set(after[k]) - set(before.get(k, []))) for k in after}
    leaked = {k: v for k, v in leaked.items() if v}
    assert not leaked, f"the test left kernel objects behind: {leaked}"


def _shipslog_engine() -> Iterator[Engine]:
    d = DaemonProcess.make()
    try:
        d.start()
        with open(BUSYBOX_TAR, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        e = Engine("shipslog", d.host, daemon=d)
        try:
            yield e
        finally:
            e.close()
    finally:
        d.cleanup()


def _docker_engine(host: str) -> Iterator[Engine]:
    kinds = (("container", "ls", "-a"), ("network", "ls"), ("volume", "ls"))
    before = {k[0]: _ids(host, *k) for k in kinds}
    e = Engine("docker", host)
    try:
        yield e
    finally:
        e.close()
        made = {k[0]: _ids(host, *k) - before[k[0]] for k in kinds}
        if made["container"]:
            _cli(host, "rm", "-f", "-v", *sorted(made["container"]))
        if made["network"]:
            _cli(host, "network", "rm", *sorted(made["network"]))
        if made["volume"]:
            _cli(host, "volume", "rm", "-f", *sorted(made["volume"]))


@pytest.fixture(params=["shipslog", "docker"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """shipslogd (fresh, per test) or the session's dockerd, each with busybox:latest."""
    if request.param == "docker":
        yield from _docker_engine(request.getfixturevalue("dockerd_host"))
    else:
        yield from _shipslog_engine()
