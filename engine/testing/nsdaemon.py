"""A whole test daemon inside a network namespace the test made, and the shell helpers such
tests use to build that namespace (a LAN segment, a peer, dockerd's FORWARD conditions).

I/O: runs `ip`, `ip netns exec` and the daemon under `nsenter --net=…`; the caller owns the
namespace and deletes it; `DaemonProcess.cleanup()` removes everything the daemon made.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.testing.daemon import DaemonProcess

__all__ = ["daemon_in_netns", "in_ns", "sh", "start_in_netns"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def start_in_netns(d: DaemonProcess, ns: str, failpoints: str = "") -> None:
    """(Re)start `d` inside the named namespace (/run/netns/NS)."""
    d.wrap = ["nsenter", f"--net=/run/netns/{ns}"]
    d.start(timeout=60, failpoints=failpoints)


@contextmanager
def daemon_in_netns(ns: str, busybox_tar: Path) -> Iterator[DaemonProcess]:
    """A fresh daemon started in `ns` with the busybox test image loaded; cleaned up after."""
    d = DaemonProcess.make()
    try:
        start_in_netns(d, ns)
        with open(busybox_tar, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        yield d
    finally:
        d.cleanup()
