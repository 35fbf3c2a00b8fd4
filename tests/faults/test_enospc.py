"""Disk full (RELIABILITY F-07) on a small tmpfs state root: during an image load (blob
ingest and layer unpack) and during an event append. The user gets a clear "no space left
on device", partial files are removed, the daemon keeps serving reads, and once space is
freed everything works again without manual cleanup.

I/O: mounts (and unmounts) its own tmpfs under /tmp/shipslog-tests/shipslog-enospc-*, runs
a real daemon on it, fills it with a filler file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.client import ApiError, Client
from engine.testing.daemon import TEST_BASE, DaemonProcess
from tests.faults.conftest import finish, load_busybox, oracle

pytestmark = pytest.mark.kernel

TMPFS_MB = 24
NO_SPACE = "no space left on device"


@pytest.fixture
def small_daemon(busybox_tar: Path) -> Iterator[DaemonProcess]:
    """A daemon whose state root is a tmpfs of a few MB (no image loaded yet)."""
    TEST_BASE.mkdir(parents=True, exist_ok=True)
    d = DaemonProcess(Path(tempfile.mkdtemp(prefix="shipslog-enospc-", dir=TEST_BASE)))
    d.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700",
                    "shipslog-enospc", str(d.root)], check=True)
    try:
        d.start()
        yield d
    finally:
        finish(d, own_mounts=(str(d.root),))  # cleanup unmounts our tmpfs too
        if os.path.ismount(d.root):
            subprocess.run(["umount", "-l", str(d.root)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(root: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the filesystem (0: every last byte)."""
    filler = root / "filler"
    with open(filler, "wb") as f:
        want = max(free_bytes(root) - leave, 0)
        chunk = b"\0" * (1 << 16)
        try:
            while want > 0:
                want -= f.write(chunk[:min(len(chunk), want)])
            if leave == 0:
                while True:
                    f.write(chunk)
                    f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def partial_files(root: Path) -> list[str]:
    """Staging leftovers: ingests, half-unpacked layers, spooled uploads."""
    left = []
    for sub in ("ingest", "tmp"):
        if (root / sub).is_dir():
            left += [str(p) for p in (root / sub).iterdir()]
    if (root / "layers").is_dir():
        left += [str(p) for p in (root / "layers").iterdir() if p.name.startswith("tmp-")]
    return left


def reads_work(c: Client) -> None:
    assert c.request("GET", "/_ping").status == 200
    c.get_json("/images/json")
    c.get_json("/containers/json", {"all": True})
    c.get_json("/info")


def run_busybox(c: Client, name: str) -> None:
    cid = c.post_json("/containers/create", {"name": name},
                      {"Image": "busybox", "Cmd": ["true"]})["Id"]
    c.post_json(f"/containers/{cid}/start")
    c.post_json(f"/containers/{cid}/wait")
    c.delete(f"/containers/{cid}", {"force": True})


def fails_for_space(message: str) -> bool:
    low = message.lower()
    return NO_SPACE in low or "disk is full" in low


def load_while_full(d: DaemonProcess, busybox_tar: Path, leave_kb: int) -> str:
    """Load the image with `leave_kb` free; check that nothing is left, reads work, and a
    load after freeing space works; return the error the user saw."""
    c = d.client()
    filler = fill(d.root, leave_kb * 1024)
    with pytest.raises(ApiError) as err:
        load_busybox(d, busybox_tar)
    assert err.value.status >= 500
    assert partial_files(d.root) == []
    reads_work(c)
    assert c.get_json("/images/json") == []
    filler.unlink()
    load_busybox(d, busybox_tar)  # no manual cleanup in between
    run_busybox(c, "after-enospc")
    assert oracle(d) == {}
    return err.value.message


def append_while_full(d: DaemonProcess, busybox_tar: Path) -> str:
    """Fill every byte, then create (an event append) until one is refused: SQLite reuses
    the space a checkpointed WAL already holds, so the first appends after the fill may
    land, and which one fails depends on the WAL's state. Each create carries a 256 KiB
    label so the WAL must grow within a few tries. Check that the refused one left no half
    event, reads work, and the same create works after freeing space; return the error."""
    c = d.client()
    load_busybox(d, busybox_tar)
    filler = fill(d.root, 0)
    label = {"pad": "x" * (256 << 10)}
    created: list[str] = []
    refused: tuple[str, ApiError] | None = None
    for i in range(200):  # 200 x 256 KiB is twice the whole tmpfs
        head = c.get_json("/shipslog/audit/head")
        name = f"no-room-{i}"
        try:
            c.post_json("/containers/create", {"name": name},
                        {"Image": "busybox", "Cmd": ["true"], "Labels": label})
        except ApiError as exc:
            refused = (name, exc)
            break
        created.append(name)
    assert refused is not None, "no append was refused on a full disk"
    name, err = refused
    assert "locked" not in err.message
    reads_work(c)
    assert c.get_json("/shipslog/audit/head") == head  # no half event
    listed = c.get_json("/containers/json", {"all": True})
    assert sorted(n.lstrip("/") for x in listed for n in x["Names"]) == sorted(created)
    filler.unlink()
    run_busybox(c, name)  # the name was never taken
    for other in created:
        c.request("DELETE", f"/containers/{other}")
    assert oracle(d) == {}
    return err.message




# 512 KiB: the blob does not fit; 2600: the blob fits, its unpack does not; 3500: the unpack
# fits, the rest does not.
@pytest.mark.parametrize("leave_kb", [
    512,
    2600, 3500])
def test_disk_full_during_image_load(small_daemon: DaemonProcess, busybox_tar: Path,
                                     leave_kb: int) -> None:
    assert fails_for_space(load_while_full(small_daemon, busybox_tar, leave_kb))


def test_disk_full_during_event_append(small_daemon: DaemonProcess, busybox_tar: Path) -> None:
    assert fails_for_space(append_while_full(small_daemon, busybox_tar))




@pytest.mark.parametrize("case", [
    "load-512",
    "load-2600",
    "append",
])
def test_disk_full_error_is_one_clear_line(small_daemon: DaemonProcess, busybox_tar: Path,
                                           case: str) -> None:
    if case == "append":
        message = append_while_full(small_daemon, busybox_tar)
    else:
        message = load_while_full(small_daemon, busybox_tar, int(case.split("-")[1]))
    assert NO_SPACE in message.lower() and "internal error" not in message
