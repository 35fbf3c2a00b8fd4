"""Fixtures for tests on the real kernel: a daemon on its own state root, and the check that
every test leaves the kernel as it found it (mounts, netns, links, nft tables, cgroups,
monitor and runtime processes — RELIABILITY.md, "a fixture checks")."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from engine.testing.daemon import DaemonProcess, kernel_inventory

BUSYBOX_TAR = Path("/tmp/shipslog-tests/busybox.tar")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 or not shutil.which("runc"):
        skip = pytest.mark.skip(reason="needs root and runc")
        for item in items:
            if "kernel" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def kernel_left_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    # SHIPSLOG_SHARED_HOST=1: another test run shares this machine (a developer's parallel
    # sessions), so host-wide counts would blame us for its objects. CI never sets it.
    if "kernel" not in request.keywords or os.environ.get("SHIPSLOG_SHARED_HOST") == "1":
        yield
        return
    before = kernel_inventory()
    yield
    after = kernel_inventory()
    leaked = {k: sorted(set(after[k]) - set(before.get(k, []))) for k in after}
    leaked = {k: v for k, v in leaked.items() if v}
    assert not leaked, f"the test left kernel objects behind: {leaked}"


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    """The demo image, built once per session from Debian's busybox-static."""
    if not BUSYBOX_TAR.exists():
        from tools.build_busybox_image import main as build

        BUSYBOX_TAR.parent.mkdir(parents=True, exist_ok=True)
        build(["-o", str(BUSYBOX_TAR)])
    return BUSYBOX_TAR


@contextlib.contextmanager
def loaded_daemon(busybox_tar: Path, flags: Sequence[str] = ()) -> Iterator[DaemonProcess]:
    """A running shipslogd (with extra `flags`) and busybox:latest loaded; cleaned up after."""
    d = DaemonProcess.make()
    d.flags = list(flags)
    try:
        d.start()
        with open(busybox_tar, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[DaemonProcess]:
    """A running shipslogd with busybox:latest loaded."""
    with loaded_daemon(busybox_tar) as d:
        yield d
