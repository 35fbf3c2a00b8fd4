"""Disk full during a build (RELIABILITY F-07, issue 12 item 5): a daemon whose state root is a
small tmpfs, filled so that the context still arrives but the COPY step's layer does not fit.
Expected: one clear line ("… no space left on device") through the API and `shipslog build`
(no "OSError", no "Errno", no traceback), the build's operation recorded failed with that
reason, no partial layer, blob, image or work dir left, and the same build working once space
is freed, with no manual cleanup.

I/O: mounts (and unmounts) its own tmpfs through the `small_daemon` fixture, runs a real daemon
on it, API calls and CLI runs.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from engine.cli.main import run
from engine.testing.daemon import DaemonProcess
from events.store import EventStore
from tests.faults.conftest import load_busybox, oracle
from tests.faults.test_enospc import NO_SPACE, fill, partial_files, small_daemon

pytestmark = pytest.mark.kernel

__all__ = ["small_daemon"]  # the fixture, used by name

BIG = 3 << 20  # incompressible: its layer (tar, gzip, blob, unpacked) needs ~4 times this


def _context(tmp: Path) -> bytes:
    (tmp / "big").write_bytes(os.urandom(BIG))
    (tmp / "Dockerfile").write_text("FROM busybox\nCOPY big /big\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("Dockerfile", "big"):
            tf.add(tmp / name, arcname=name)
    return buf.getvalue()


def _state(d: DaemonProcess) -> tuple[set[str], set[str], list[str]]:
    blobs = set(os.listdir(d.root / "blobs" / "sha256"))
    layers = set(os.listdir(d.root / "layers"))
    images = [i["Id"] for i in d.client().get_json("/images/json", {"all": True})]
    return blobs, layers, images


def _failures(d: DaemonProcess) -> list[str]:
    with EventStore.open(d.root / "events.db", readonly=True) as store:
        return [e.event.error for e in store.read()  # type: ignore[attr-defined]
                if e.type == "OperationFailed"]


# How many context-sized files fit besides the spooled context: 1, the COPY's sources do not
# fit; 2, they do and the layer's tar does not; 3, the layer's tar does and its gzip or blob
# does not (each with 768 KiB for the events).
@pytest.mark.parametrize("fits", [1, 2, 3])
def test_a_build_that_runs_out_of_disk(small_daemon: DaemonProcess, busybox_tar: Path,
                                       tmp_path: Path, fits: int) -> None:
    d = small_daemon
    load_busybox(d, busybox_tar)
    body = _context(tmp_path)
    before = _state(d)
    filler = fill(d.root, fits * len(body) + (768 << 10))

    r = d.client().request("POST", "/build", {"t": "full:1"}, body=body,
                           headers={"Content-Type": "application/x-tar"})
    messages = [json.loads(x) for x in r.body.splitlines() if x.strip()]
    errors = [m["error"] for m in messages if "error" in m]
    assert len(errors) == 1, messages
    assert NO_SPACE in errors[0] and "Errno" not in errors[0] and "OSError" not in errors[0]
    assert [e for e in _failures(d) if NO_SPACE in e], _failures(d)
    assert partial_files(d.root) == []
    assert _state(d) == before  # no layer, blob or image of the failed step
    assert oracle(d) == {}

    out, err = io.StringIO(), io.StringIO()
    code = run(["build", "-t", "full:1", str(tmp_path)],
               environ={"SHIPSLOG_HOST": d.host, "HOME": str(d.base)}, stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    assert code != 0 and lines[0].startswith("shipslog: ") and NO_SPACE in lines[0], lines
    assert len(lines) == 2 and "Traceback" not in err.getvalue()
    assert partial_files(d.root) == [] and _state(d) == before

    filler.unlink()
    code = run(["build", "-q", "-t", "full:1", str(tmp_path)],
               environ={"SHIPSLOG_HOST": d.host, "HOME": str(d.base)}, stdout=io.StringIO(),
               stderr=err)
    assert code == 0, err.getvalue()
    assert oracle(d) == {}
