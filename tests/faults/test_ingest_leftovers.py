"""Leftovers after a crash (issue 15 item 7): `kill -9` of the daemon in the middle of a large
`load` leaves a half-written blob in the ingest area. The next daemon start finds it, removes
it and records an `IngestDiscarded(path, bytes)` event (nothing fixed silently); and while a
write is staged, `system df` counts it as unattributed.

The moment is arranged with the `ingest.after_chunk` failpoint (`N*panic`: the daemon SIGKILLs
itself right after the N-th 1 MiB chunk reached the ingest file), not with a sleep.

I/O: a real daemon on a per-test root; a generated image archive under the test's tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from engine.cli.client import DaemonUnreachable
from engine.testing.daemon import DaemonProcess
from events.store import EventStore
from tests.faults.conftest import finish

pytestmark = pytest.mark.kernel

LAYER_MIB = 48
# A small blob or two (config, manifest) may be ingested first, one chunk each: the 6th
# chunk is always inside the large layer, at least 3 MiB into it.
KILL_AT = "ingest.after_chunk=6*panic"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def big_image(path: Path) -> int:
    """A docker-archive image with one layer of LAYER_MIB MiB; returns the layer's size."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        _add(layer, "big.bin", bytes(range(256)) * (LAYER_MIB * 4096))
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["big:latest"],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        _add(tar, "config.json", config)
        _add(tar, "layer.tar", layer_bytes)
        _add(tar, "manifest.json", manifest)
    return len(layer_bytes)


def discarded(d: DaemonProcess) -> list[tuple[str, int]]:
    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        return [(e.event.path, e.event.bytes)  # type: ignore[attr-defined]
                for e in store.read(types=["IngestDiscarded"])]
    finally:
        store.close()


@pytest.fixture
def bare_daemon() -> DaemonProcess:  # type: ignore[misc]
    d = DaemonProcess.make()
    try:
        yield d
    finally:
        finish(d)


@pytest.mark.slow
def test_kill9_during_load_leaves_nothing_after_restart(bare_daemon: DaemonProcess,
                                                        tmp_path: Path) -> None:
    d = bare_daemon
    archive = tmp_path / "big.tar"
    big_image(archive)
    d.start(failpoints=KILL_AT)
    with pytest.raises((DaemonUnreachable, ConnectionError, OSError)), open(archive, "rb") as f:
        d.client().upload("POST", "/images/load", f)
    d.wait_exit()  # it killed itself mid-ingest
    left = {str(p): p.stat().st_size for p in (d.root / "ingest").iterdir()}
    assert sum(left.values()) >= 3 << 20  # the crash did leave it behind
    d.start()
    assert list((d.root / "ingest").iterdir()) == []
    assert list((d.root / "tmp").iterdir()) == []
    assert not [p for p in (d.root / "layers").iterdir() if p.name.startswith("tmp-")]
    assert sorted(discarded(d)) == sorted(left.items())
    df = d.client().get_json("/system/df")
    assert df["Unattributed"] == {"Size": 0, "Items": []}
    with open(archive, "rb") as f:  # and the load works after it, no manual cleanup
        d.client().upload("POST", "/images/load", f)


def test_df_counts_what_no_object_owns(bare_daemon: DaemonProcess) -> None:
    d = bare_daemon
    d.start()
    staged = d.root / "ingest" / "in-flight"
    staged.write_bytes(b"x" * 12345)  # a write in flight, as an ingest would stage it
    try:
        df = d.client().get_json("/system/df")
    finally:
        staged.unlink()
    assert df["Unattributed"] == {"Size": 12345, "Items": [{"Path": str(staged),
                                                            "Size": 12345}]}
