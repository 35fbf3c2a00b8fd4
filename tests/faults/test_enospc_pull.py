"""Disk full during a pull (RELIABILITY F-07, issue 15 item 6): a real registry (Debian's
`docker-registry`) on 127.0.0.1 and a daemon whose state root is a small tmpfs, filled so that
the layer's blob does not fit. Expected: one clear line ("... no space left on device") through
the API and `shipslog pull` (no "ExceptionGroup", no hint about the registry or logging in),
the pull's operation recorded `failed` with that reason, no partial blob or staged layer left,
and a pull after freeing space works with no manual cleanup.

I/O: a registry and a daemon (subprocesses, stopped by pid), skopeo to fill the registry, a
tmpfs mounted and unmounted by the `small_daemon` fixture, API calls and CLI runs. Loopback
only.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.testing.cli import shipslog
from engine.testing.daemon import DaemonProcess
from engine.testing.localreg import LocalRegistry
from events.store import EventStore
from tests.faults.conftest import oracle
from tests.faults.test_enospc import NO_SPACE, fill, partial_files, small_daemon
from tests.faults.test_load_pull import SKOPEO, publish

pytestmark = [pytest.mark.kernel, SKOPEO]

__all__ = ["small_daemon"]  # the fixture, used by name

LEAVE_KB = 256  # the events of a pull fit; busybox's layer (about 1 MB) does not


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry.running() as reg:
        yield reg


def layer_digest(registry: LocalRegistry, repo: str, tag: str) -> str:
    req = urllib.request.Request(
        f"http://{registry.domain}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                           "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
        return str(json.load(resp)["layers"][0]["digest"])


def pull_messages(d: DaemonProcess, image: str) -> list[dict[str, object]]:
    repo, _, tag = image.rpartition(":")
    with d.client().stream("POST", "/images/create", {"fromImage": repo, "tag": tag}) as chunks:
        body = b"".join(chunks)
    return [json.loads(line) for line in body.splitlines() if line.strip()]




def failed_pulls(d: DaemonProcess) -> list[str]:
    with EventStore.open(d.root / "events.db", readonly=True) as store:
        return [e.event.error for e in store.read()  # type: ignore[attr-defined]
                if e.type == "OperationFailed"]


def assert_nothing_half_done(d: DaemonProcess, layer_digest: str) -> None:
    assert partial_files(d.root) == []
    assert not (d.root / "blobs" / "sha256" / layer_digest[7:]).exists()
    assert d.client().get_json("/images/json") == []
    assert oracle(d) == {}  # no operation left open; log, projection and kernel agree


def test_pull_that_runs_out_of_disk(small_daemon: DaemonProcess, registry: LocalRegistry,
                                    busybox_tar: Path) -> None:
    d = small_daemon
    publish(busybox_tar, registry, "full/busybox:v1")
    image = f"{registry.domain}/full/busybox:v1"
    layer = layer_digest(registry, "full/busybox", "v1")
    filler = fill(d.root, LEAVE_KB * 1024)

    errors = [m["error"] for m in pull_messages(d, image) if "error" in m]
    assert len(errors) == 1, errors
    message = str(errors[0])
    assert NO_SPACE in message and "ExceptionGroup" not in message, message
    assert "internal error" not in message
    assert [e for e in failed_pulls(d) if NO_SPACE in e], failed_pulls(d)
    assert_nothing_half_done(d, layer)

    code, _, err = shipslog(d, "pull", image)
    lines = err.splitlines()
    assert code == 125 and lines[0].startswith("shipslog: ") and NO_SPACE in lines[0], err
    assert len(lines) == 2 and "login" not in err and "registry" not in lines[1], err
    assert_nothing_half_done(d, layer)

    filler.unlink()
    assert shipslog(d, "pull", image)[0] == 0  # no manual cleanup in between
    tags = [t for img in d.client().get_json("/images/json") for t in img["RepoTags"]]
    assert tags == [image]
    assert oracle(d) == {}
