"""The layer store against the real filesystem: what a well-formed layer becomes on disk.

Runs as root (owners, overlay whiteout devices, trusted.* xattrs), hence `kernel`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import InvalidLayer, LayerLimits, LayerStore

pytestmark = pytest.mark.kernel

MTIME = 1_600_000_000


class T:
    """A tiny tar builder for layer tests."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, ti: tarfile.TarInfo, data: bytes | None = None) -> T:
        ti.mtime = ti.mtime or MTIME
        self.tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return self

    def file(
        self,
        name: str,
        data: bytes = b"",
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: int = MTIME,
    ) -> T:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, uid, gid, mtime
        return self._add(ti, data)

    def dir(
        self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME
    ) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, mode, uid, gid, mtime
        return self._add(ti)

    def symlink(self, name: str, target: str) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
        return self._add(ti)

    def hardlink(self, name: str, target: str) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.LNKTYPE, target
        return self._add(ti)

    def dev(self, name: str, kind: bytes, major: int, minor: int) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, 0o666
        return self._add(ti)

    def fifo(self, name: str) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode = tarfile.FIFOTYPE, 0o644
        return self._add(ti)

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "state")


def unpack(store: LayerStore, data: bytes, **kw: object) -> Path:
    return store.unpack(io.BytesIO(data), **kw).path  # type: ignore[arg-type]


def leftovers(store: LayerStore) -> list[str]:
    return sorted(os.listdir(store.layers_dir))


def sample() -> bytes:
    return (
        T()
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("tmp", 0o1777)
        .file("usr/bin/su", b"\x7fELF", mode=0o4755)
        .file("home/u/f", b"mine", mode=0o600, uid=1000, gid=1000)
        .symlink("bin", "usr/bin")
        .hardlink("usr/bin/su2", "usr/bin/su")
        .fifo("run/fifo")
        .bytes()
    )


@pytest.mark.parametrize("compress", ["tar", "gzip", "zstd"])
def test_unpack_computes_diff_id_for_every_compression(store: LayerStore, compress: str) -> None:
    raw = sample()
    blob = {
        "tar": raw,
        "gzip": gzip.compress(raw),
        "zstd": zstandard.ZstdCompressor().compress(raw),
    }[compress]
    layer = store.unpack(io.BytesIO(blob), expected_diff_id=sha(raw))
    assert layer.diff_id == sha(raw)
    assert str(layer.path) == store.path(sha(raw))
    assert store.has(sha(raw))
    assert (layer.path / "etc/passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert leftovers(store) == [sha(raw)[7:]]


def test_multi_member_gzip(store: LayerStore) -> None:
    raw = sample()
    blob = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    assert store.unpack(io.BytesIO(blob)).diff_id == sha(raw)


def test_metadata_is_kept(store: LayerStore) -> None:
    root = unpack(store, sample())
    su = os.stat(root / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755  # setuid kept (S-11 is enforced at run time)
    assert su.st_mtime == MTIME
    assert os.stat(root / "usr/bin/su2").st_ino == su.st_ino
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert os.stat(root / "tmp").st_mtime == MTIME
    assert os.stat(root / "etc").st_mtime == MTIME  # set after its children were written
    home = os.stat(root / "home/u/f")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o600)
    assert os.readlink(root / "bin") == "usr/bin"
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    # implied parents are plain 0755 root-owned directories
    assert stat.S_IMODE(os.stat(root / "usr").st_mode) == 0o755


def test_setuid_survives_chown(store: LayerStore) -> None:
    root = unpack(store, T().file("x", b"1", mode=0o6755, uid=5, gid=6).bytes())
    st = os.stat(root / "x")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o6755, 5, 6)


def test_whiteouts_become_overlay_form(store: LayerStore) -> None:
    raw = (
        T()
        .dir("etc")
        .file("etc/.wh.motd")
        .dir("var/cache")
        .file("var/cache/.wh..wh..opq")
        .file("var/cache/kept", b"k")
        .file(".wh..wh.plnk")  # aufs bookkeeping: ignored
        .dev("dev0", tarfile.CHRTYPE, 0, 0)  # an overlay-form whiteout passes through
        .bytes()
    )
    root = unpack(store, raw)
    wh = os.lstat(root / "etc/motd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (root / "var/cache/kept").read_bytes() == b"k"
    assert not (root / ".wh..wh.plnk").exists()
    assert stat.S_ISCHR(os.lstat(root / "dev0").st_mode)
    assert not any(p.name.startswith(".wh.") for p in root.rglob("*"))


def test_opaque_marker_order_does_not_matter(store: LayerStore) -> None:
    a = T().file("d/x", b"1").file("d/.wh..wh..opq").bytes()
    b = T().file("d/.wh..wh..opq").file("d/x", b"1").bytes()
    for raw in (a, b):
        root = unpack(store, raw)
        assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
        assert (root / "d/x").read_bytes() == b"1"


def test_type_flips_and_duplicates_last_entry_wins(store: LayerStore) -> None:
    raw = (
        T()
        .file("a", b"file")
        .dir("a")
        .file("a/inner", b"i")
        .file("a", b"file again")  # a directory replaced by a file
        .file("b", b"one")
        .file("b", b"two")
        .symlink("c", "nowhere")
        .dir("c")
        .bytes()
    )
    root = unpack(store, raw)
    assert (root / "a").read_bytes() == b"file again"
    assert (root / "b").read_bytes() == b"two"
    assert (root / "c").is_dir() and not (root / "c").is_symlink()


def test_device_nodes_are_skipped(store: LayerStore) -> None:
    raw = T().dev("null", tarfile.CHRTYPE, 1, 3).dev("sda", tarfile.BLKTYPE, 8, 0).bytes()
    layer = store.unpack(io.BytesIO(raw))
    assert layer.skipped_devices == 2
    assert os.listdir(layer.path) == []


def test_tar_xattrs_are_dropped(store: LayerStore) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("ping")
        ti.size = 1
        ti.pax_headers = {
            "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00",
            "SCHILY.xattr.user.x": "y",
        }
        tf.addfile(ti, io.BytesIO(b"p"))
    root = unpack(store, buf.getvalue())
    assert os.listxattr(root / "ping") == []


def test_wrong_diff_id_leaves_nothing(store: LayerStore) -> None:
    with pytest.raises(InvalidLayer, match="unexpected diff_id"):
        store.unpack(io.BytesIO(sample()), expected_diff_id=sha(b"other"))
    assert leftovers(store) == []


def test_unpack_twice_keeps_one_copy(store: LayerStore) -> None:
    raw = sample()
    first = store.unpack(io.BytesIO(raw))
    marker = first.path / "etc/passwd"
    ino = os.stat(marker).st_ino
    second = store.unpack(io.BytesIO(raw))
    assert second.path == first.path and os.stat(marker).st_ino == ino
    assert leftovers(store) == [sha(raw)[7:]]
    assert store.list() == [sha(raw)]


def test_delete_and_sweep(store: LayerStore) -> None:
    raw = sample()
    store.unpack(io.BytesIO(raw))
    (store.layers_dir / "tmp-crashed" / "diff").mkdir(parents=True)
    assert store.sweep() == 1
    store.delete(sha(raw))
    assert not store.has(sha(raw))
    store.delete(sha(raw))  # idempotent
    assert leftovers(store) == []


def test_unpack_from_a_path(store: LayerStore, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(sample()))
    layer = store.unpack(blob, media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    assert layer.diff_id == sha(sample()) and layer.size == 26 + 4 + 4


def test_empty_layer(store: LayerStore) -> None:
    raw = T().bytes()
    layer = store.unpack(io.BytesIO(raw))
    assert layer.diff_id == sha(raw) and os.listdir(layer.path) == []


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "not a tar"),
        (b"\xfd7zXZ\x00" + b"\x00" * 100, "xz"),
        (b"BZh91AY&SY", "bzip2"),
        (gzip.compress(sample())[:-20], "gzip"),
        (zstandard.ZstdCompressor().compress(sample())[:150], "zstd|unexpected end"),
        (sample()[:700], "unexpected end"),
        (sample()[:512] + b"\x01" * 512, "invalid tar header"),
    ],
    ids=["empty", "xz", "bzip2", "gzip-truncated", "zstd-truncated", "tar-truncated", "garbage"],
)
def test_malformed_blobs_rejected(store: LayerStore, blob: bytes, match: str) -> None:
    with pytest.raises(InvalidLayer, match=match):
        store.unpack(io.BytesIO(blob))
    assert leftovers(store) == []


def test_unknown_media_type_rejected(store: LayerStore) -> None:
    with pytest.raises(InvalidLayer, match="media type"):
        store.unpack(io.BytesIO(sample()), media_type="application/x-evil")


def test_many_directories_exercise_the_fd_cache(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "s", LayerLimits(max_entries=10_000))
    t = T()
    for i in range(300):
        t.file(f"d{i % 150}/sub{i}/f", str(i).encode())
    t.file("d0/.wh..wh..opq")
    root = store.unpack(io.BytesIO(t.bytes())).path
    assert sum(1 for p in root.rglob("f")) == 300
    assert (root / "d149/sub299/f").read_bytes() == b"299"


# --- RELIABILITY F-01: kill -9 in the middle of an unpack or an ingest ---------------------------

CHILD = """
import sys
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
if sys.argv[1] == "unpack":
    LayerStore(sys.argv[2]).unpack(sys.stdin.buffer)
else:
    ContentStore(sys.argv[2]).ingest(sys.stdin.buffer)
"""


def _killed_midway(kind: str, state: Path, data: bytes, ready: Callable[[], bool]) -> None:
    """Feed half of `data` to a child doing `kind`, wait until `ready()`, then SIGKILL it."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(state)], stdin=subprocess.PIPE, cwd=repo
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(data[: len(data) // 2])
        proc.stdin.flush()
        while not ready():
            assert proc.poll() is None, "the child ended before it was killed"
            time.sleep(0.01)
    finally:
        proc.kill()  # our own child, by pid
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


def test_unpack_killed_midway_leaves_nothing_visible(tmp_path: Path) -> None:
    t = T()
    for i in range(2000):
        t.file(f"d{i % 20}/f{i}", b"x" * 1000)
    raw = t.bytes()
    state = tmp_path / "state"
    store = LayerStore(state)

    def some_files_written() -> bool:
        return any(
            n.startswith("tmp-") and any((store.layers_dir / n / "diff").rglob("f*"))
            for n in os.listdir(store.layers_dir)
        )

    _killed_midway("unpack", state, raw, some_files_written)
    assert not store.has(sha(raw)) and store.list() == []
    assert store.sweep() == 1
    assert os.listdir(store.layers_dir) == []
    assert store.unpack(io.BytesIO(raw)).diff_id == sha(raw)  # a retry needs no manual cleanup


def test_ingest_killed_midway_leaves_nothing_visible(tmp_path: Path) -> None:
    data = os.urandom(4 << 20)
    content = ContentStore(tmp_path / "state")

    def partially_written() -> bool:
        return any(p.stat().st_size > 0 for p in content.ingest_dir.iterdir())

    _killed_midway("ingest", tmp_path / "state", data, partially_written)
    assert content.list() == []
    assert content.sweep_ingest() == 1
    assert content.ingest([data]) == (sha(data), len(data))


def test_modes_survive_a_strict_umask(store: LayerStore) -> None:
    old = os.umask(0o077)
    try:
        root = unpack(store, T().file("pub", b"x", mode=0o755).dir("d", 0o775).bytes())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root / "pub").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o775


def test_concurrent_unpacks_of_one_layer(store: LayerStore) -> None:
    raw = sample()
    paths: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            paths.append(store.unpack(io.BytesIO(raw)).path)
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(paths)) == 1 and leftovers(store) == [sha(raw)[7:]]
