"""Hostile layers against the real unpacker: RELIABILITY I-07, I-08, I-09, I-10, I-12.

Every attack aims at sentinel files in a directory beside the layer store (never at the real
/etc). After each attempt the sentinels keep content, mode, owner and mtime (all four:
CPython #127987 changed only mode and mtime), nothing new appears outside the store, and a
refused layer leaves no directory behind.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drivers.host import mountsys
from engine.drivers.layers.tarsafe import split_name
from engine.drivers.layers.unpack import InvalidLayer, LayerLimits, LayerStore, LayerTooLarge
from engine.drivers.snapshots.overlay import Snapshotter

pytestmark = pytest.mark.kernel


@dataclass
class Env:
    store: LayerStore
    outside: Path  # the sentinel directory an attack tries to reach
    rel_up: str  # "../" * n: from a layer's diff dir up to tmp_path


def snapshot(d: Path) -> dict[str, tuple[object, ...]]:
    out = {}
    for p in sorted(d.rglob("*")):
        st = os.lstat(p)
        content = (
            p.read_bytes()
            if stat.S_ISREG(st.st_mode)
            else os.readlink(p)
            if p.is_symlink()
            else b""
        )
        out[str(p)] = (content, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    for name in ("sentinel", "dir/passwd"):
        p = outside / name
        p.write_bytes(b"precious\n")
        os.chmod(p, 0o640)
        os.chown(p, 4242, 4343)
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(outside)
    top_before = sorted(os.listdir(tmp_path))
    store = LayerStore(tmp_path / "state")
    # layers/<tmp-…>/diff → up 3 to state, 4 to tmp_path
    yield Env(store, outside, "../" * 4)
    assert snapshot(outside) == before, "a sentinel outside the layer store changed"
    assert sorted(os.listdir(tmp_path)) == sorted(top_before + ["state"])
    assert all(not n.startswith("tmp-") for n in os.listdir(store.layers_dir))


class T:
    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=fmt)

    def add(
        self,
        name: str,
        kind: bytes = tarfile.REGTYPE,
        data: bytes = b"",
        link: str = "",
        mode: int = 0o644,
        **kw: int,
    ) -> T:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.mode, ti.mtime = kind, link, mode, 1_500_000_000
        for k, v in kw.items():
            setattr(ti, k, v)
        if kind == tarfile.REGTYPE:
            ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        return self

    def file(self, name: str, data: bytes = b"pwned\n", **kw: int) -> T:
        return self.add(name, data=data, **kw)

    def dir(self, name: str, mode: int = 0o777) -> T:
        return self.add(name, tarfile.DIRTYPE, mode=mode)

    def sym(self, name: str, target: str) -> T:
        return self.add(name, tarfile.SYMTYPE, link=target, mode=0o777)

    def link(self, name: str, target: str) -> T:
        return self.add(name, tarfile.LNKTYPE, link=target)

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


def attempt(env: Env, data: bytes) -> Path | None:
    """Unpack; return the layer dir, or None if it was refused as invalid."""
    try:
        return env.store.unpack(io.BytesIO(data)).path
    except InvalidLayer:
        assert os.listdir(env.store.layers_dir) == [] or all(
            not n.startswith("tmp-") for n in os.listdir(env.store.layers_dir)
        )
        return None


def contained(root: Path | None) -> None:
    """If the layer was accepted, nothing in it may be a hard link to an outside inode."""
    if root is None:
        return
    for p in root.rglob("*"):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            assert st.st_nlink == 1 or all(q.is_relative_to(root) for q in [p])


# --- I-07: containerd TestBreakouts / go-archive TestUntar* vectors -----------------------------

Attack = Callable[[Env], bytes]

ATTACKS: dict[str, Attack] = {
    "dotdot-file": lambda e: T().file("../../../../outside/sentinel").bytes(),
    "dotdot-inner": lambda e: T().file("a/../../../../../outside/sentinel").bytes(),
    "absolute-path": lambda e: T().file(str(e.outside / "sentinel")).bytes(),
    "abs-symlink-then-file": lambda e: T().sym("x", str(e.outside)).file("x/sentinel").bytes(),
    "rel-symlink-then-file": lambda e: (
        T().sym("x", e.rel_up + "outside").file("x/sentinel").bytes()
    ),
    "symlink-then-dir-then-file": lambda e: (
        T().sym("x", str(e.outside)).dir("x/dir").file("x/dir/passwd").bytes()
    ),
    "symlink-chain": lambda e: (
        T().sym("a", "b").sym("b", str(e.outside)).file("a/sentinel").bytes()
    ),
    "symlink-to-file-then-overwrite": lambda e: (
        T().sym("x", str(e.outside / "sentinel")).file("x", b"overwritten").bytes()
    ),
    "symlink-to-file-then-chmod-dir": lambda e: (
        T().sym("x", str(e.outside / "sentinel")).dir("x", mode=0o777).bytes()
    ),
    "symlink-then-symlink-over": lambda e: T().sym("x", str(e.outside)).sym("x/y", "z").bytes(),
    "hardlink-dotdot": lambda e: T().link("h", e.rel_up + "outside/sentinel").bytes(),
    "hardlink-absolute": lambda e: T().link("h", str(e.outside / "sentinel")).bytes(),
    "hardlink-through-symlink": lambda e: (
        T().sym("s", str(e.outside)).link("h", "s/sentinel").file("h", b"pwned").bytes()
    ),
    "hardlink-to-symlink-then-write": lambda e: (
        T().sym("s", str(e.outside / "sentinel")).link("h", "s").file("h", b"pwned").bytes()
    ),
    "hardlink-to-missing": lambda e: T().link("h", "nope").bytes(),
    "hardlink-to-dir": lambda e: T().dir("d").link("h", "d").bytes(),
    "dot-named-symlink": lambda e: T().sym(".", str(e.outside)).file("sentinel").bytes(),
    "slash-named-symlink": lambda e: T().sym("/", str(e.outside)).file("sentinel").bytes(),
    "dot-slash-symlink": lambda e: T().sym("./", str(e.outside)).file("./sentinel").bytes(),
    "type-flip-file-dir-symlink": lambda e: (
        T().file("f").dir("f").sym("f", str(e.outside)).file("f/sentinel").bytes()
    ),
    "utime-through-symlink": lambda e: T().sym("d", str(e.outside / "dir")).dir("d/.").bytes(),
    "nul-in-name": lambda e: T(tarfile.GNU_FORMAT).file("a\x00/../../outside/sentinel").bytes(),
    "device-nodes": lambda e: (
        T()
        .add("null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        .add("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
        .bytes()
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_breakout_attempts_stay_contained(env: Env, name: str) -> None:
    root = attempt(env, ATTACKS[name](env))
    contained(root)
    if root is not None:
        # Whatever was accepted lives inside the layer: no device nodes besides whiteouts.
        for p in root.rglob("*"):
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                assert st.st_rdev == 0


def test_writes_through_symlinks_are_refused_not_redirected(env: Env) -> None:
    with pytest.raises(InvalidLayer, match="symlink"):
        env.store.unpack(io.BytesIO(ATTACKS["abs-symlink-then-file"](env)))
    with pytest.raises(InvalidLayer, match=r"'\.\.'"):
        env.store.unpack(io.BytesIO(ATTACKS["dotdot-file"](env)))


def test_absolute_names_land_inside(env: Env) -> None:
    root = env.store.unpack(io.BytesIO(ATTACKS["absolute-path"](env))).path
    inner = root / str(env.outside / "sentinel").lstrip("/")
    assert inner.read_bytes() == b"pwned\n"


def test_security_capability_xattr_dropped_and_setuid_kept(env: Env) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("bin/ping")
        ti.size, ti.mode = 4, 0o4755
        ti.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\x00" * 16}
        tf.addfile(ti, io.BytesIO(b"\x7fELF"))
    root = env.store.unpack(io.BytesIO(buf.getvalue())).path
    assert os.listxattr(root / "bin/ping") == []
    assert stat.S_IMODE(os.stat(root / "bin/ping").st_mode) == 0o4755


# --- I-09: whiteouts ----------------------------------------------------------------------------

BAD_WHITEOUTS = {
    "wh-empty": lambda e: T().file(".wh.").bytes(),
    "wh-dot": lambda e: T().file(".wh..").bytes(),
    "wh-dotdot": lambda e: T().file(".wh...").bytes(),
    "etc-wh-dot": lambda e: T().dir("etc").file("etc/.wh..").bytes(),
    "wh-symlinked-parent": lambda e: T().sym("p", str(e.outside)).file("p/.wh.sentinel").bytes(),
    "opq-symlinked-parent": lambda e: T().sym("p", str(e.outside)).file("p/.wh..wh..opq").bytes(),
    "dne-dotdot-wh": lambda e: T().file("dne/../.wh.etc").bytes(),
    "wh-root-opaque": lambda e: T().file(".wh..wh..opq").bytes(),
    "wh-dotdot-escape": lambda e: T().file("../.wh.outside").bytes(),
}


@pytest.mark.parametrize("name", sorted(BAD_WHITEOUTS))
def test_invalid_whiteouts_are_errors(env: Env, name: str) -> None:
    with pytest.raises(InvalidLayer):
        env.store.unpack(io.BytesIO(BAD_WHITEOUTS[name](env)))


def test_whiteout_replaces_in_layer_entry_only(env: Env) -> None:
    root = env.store.unpack(io.BytesIO(T().file("etc/x", b"1").file("etc/.wh.x").bytes())).path
    st = os.lstat(root / "etc/x")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# --- I-08: cross-layer link traversal, through a real overlay mount ----------------------------


def test_cross_layer_symlink_write_lands_in_image(env: Env, tmp_path: Path) -> None:
    lower = env.store.unpack(
        io.BytesIO(T().sym("x", str(env.outside / "dir")).sym("y", env.rel_up + "outside").bytes())
    ).path
    upper = env.store.unpack(
        io.BytesIO(T().file("x/passwd", b"layer2\n").file("y/sentinel", b"layer2\n").bytes())
    ).path
    snaps = Snapshotter(tmp_path / "state")
    rootfs = Path(snaps.prepare("c1", [lower, upper]))
    try:
        assert (rootfs / "x").is_dir() and not (rootfs / "x").is_symlink()
        assert (rootfs / "x/passwd").read_bytes() == b"layer2\n"
        assert (rootfs / "y/sentinel").read_bytes() == b"layer2\n"
    finally:
        snaps.remove("c1")
    assert not any(m.target.startswith(str(tmp_path)) for m in mountsys.read_mountinfo())


# --- I-10: CPython tarfile filter-bypass corpus -------------------------------------------------


def cve_2025_4517(e: Env) -> bytes:
    """CPython #135034: nested symlinks whose realpath() passes PATH_MAX, so a check based on
    os.path.realpath stops resolving and an escaping link slips through."""
    t = T()
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    for s in steps:
        t.dir(os.path.join(path, comp))
        t.sym(os.path.join(path, s), comp)
        path = os.path.join(path, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    t.sym(linkpath, "../" * len(steps))
    t.sym("escape", os.path.join(linkpath, e.rel_up + "outside"))
    t.link("sentinel_link", "escape/sentinel")
    t.file("escape/sentinel", b"pwned")
    return t.bytes()


def cve_2024_12718(e: Env) -> bytes:
    """CPython #127987: a link entry whose metadata (mode, mtime) was applied to the outside
    file it points at."""
    return (
        T()
        .sym("l", str(e.outside / "sentinel"))
        .add("l", tarfile.LNKTYPE, link="l", mode=0o777)
        .add("l2", tarfile.REGTYPE, data=b"", mode=0o777)
        .bytes()
    )


def hardlink_to_symlinked_dir(e: Env) -> bytes:
    """CPython #135034 variant: hard link through a symlinked directory, then write to it."""
    return T().sym("d", str(e.outside)).link("h", "d/sentinel").file("h", b"pwned").bytes()


def symlink_to_parent_then_dir(e: Env) -> bytes:
    """Symlink pointing above the root under a name that a later directory entry reuses."""
    return T().sym("a", "..").sym("a/b", "..").dir("a/b/outside").bytes()


@pytest.mark.parametrize(
    "make", [cve_2025_4517, cve_2024_12718, hardlink_to_symlinked_dir, symlink_to_parent_then_dir]
)
def test_cpython_filter_bypass_corpus(env: Env, make: Attack) -> None:
    contained(attempt(env, make(env)))


# --- I-12: bombs ---------------------------------------------------------------------------------


def zeros_tar(size: int) -> Iterator[bytes]:
    """A tar holding one file of `size` zero bytes, produced lazily."""
    ti = tarfile.TarInfo("zero")
    ti.size = size
    yield ti.tobuf(tarfile.USTAR_FORMAT)
    chunk = b"\0" * (1 << 20)
    left = size
    while left:
        n = min(left, len(chunk))
        yield chunk[:n]
        left -= n
    yield b"\0" * (1024 + (-size % 512))


def gzip_stream(parts: Iterator[bytes]) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(c.compress(p) for p in parts) + c.flush()


def test_gzip_bomb_hits_size_cap(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "s", LayerLimits(max_bytes=32 << 20, max_ratio=10**9))
    bomb = gzip_stream(zeros_tar(256 << 20))  # ~250 KiB → 256 MiB
    with pytest.raises(LayerTooLarge, match="larger than"):
        store.unpack(io.BytesIO(bomb))
    assert os.listdir(store.layers_dir) == []


def test_gzip_bomb_hits_ratio_cap(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "s", LayerLimits(ratio_floor=8 << 20, max_ratio=100))
    with pytest.raises(LayerTooLarge, match="ratio"):
        store.unpack(io.BytesIO(gzip_stream(zeros_tar(256 << 20))))
    assert os.listdir(store.layers_dir) == []


def test_zstd_frame_with_huge_window_refused(tmp_path: Path) -> None:
    # A hand-made frame (RFC 8878 §3.1.1.1.2): no single-segment flag, window descriptor
    # exponent 21 → 2^31 bytes, then one raw last block holding a small tar.
    store = LayerStore(tmp_path / "s")
    payload = T().file("f", b"x").bytes()
    block = ((len(payload) << 3) | 1).to_bytes(3, "little")
    bomb = (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, 21 << 3]) + block + payload
    with pytest.raises(InvalidLayer, match="zstd"):
        store.unpack(io.BytesIO(bomb))
    assert os.listdir(store.layers_dir) == []
    # The same frame with a 1 MiB window is fine: the refusal is about the window.
    ok = (0xFD2FB528).to_bytes(4, "little") + bytes([0x00, 10 << 3]) + block + payload
    assert store.unpack(io.BytesIO(ok)).diff_id.startswith("sha256:")


def test_entry_count_cap(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "s", LayerLimits(max_entries=1000))
    t = T(tarfile.USTAR_FORMAT)
    for i in range(1001):
        t.file(f"f{i}", b"")
    with pytest.raises(LayerTooLarge, match="entries"):
        store.unpack(io.BytesIO(gzip.compress(t.bytes())))
    assert os.listdir(store.layers_dir) == []


def test_deep_path_cap(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "s")
    deep = "/".join(["a"] * 4096)
    with pytest.raises(LayerTooLarge):
        store.unpack(io.BytesIO(T().file(deep + "/f").bytes()))
    with pytest.raises(LayerTooLarge, match="deeper"):
        store.unpack(io.BytesIO(T().file("/".join(["a"] * 300) + "/f").bytes()))
    assert os.listdir(store.layers_dir) == []


# --- the path splitter never yields an escaping component (property) ----------------------------

_segments = st.sampled_from(["a", "..", ".", "", "b c", ".wh.x", "\x00", "/", "é", "~"])


@given(st.lists(_segments, max_size=12).map("/".join))
def test_split_name_never_escapes(name: str) -> None:
    limits = LayerLimits()
    try:
        parts = split_name(name, limits)
    except InvalidLayer:
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\x00" not in p for p in parts)


# --- fuzz: random hostile entry sequences never touch the outside (property) --------------------

_names = st.lists(
    st.sampled_from(["a", "b", "x", "..", ".", ".wh.a", ".wh..wh..opq", "outside"]),
    min_size=1,
    max_size=3,
).map("/".join)


@st.composite
def _entries(draw: st.DrawFn, outside: str) -> list[tuple[str, str, str]]:
    kinds = st.sampled_from(["file", "dir", "sym", "link"])
    targets = st.sampled_from(
        [outside, outside + "/sentinel", "../../../../outside", "a", "/", ".."]
    )
    out = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(kinds)
        target = draw(targets) if kind == "sym" else draw(_names) if kind == "link" else ""
        out.append((kind, draw(_names), target))
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fuzzed_layers_stay_contained(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="slg-fuzz-") as tmp:
        base = Path(tmp)
        outside = base / "outside"
        outside.mkdir()
        (outside / "sentinel").write_bytes(b"precious")
        before = snapshot(outside)
        entries = data.draw(_entries(str(outside)))
        t = T()
        for kind, name, target in entries:
            if kind == "file":
                t.file(name)
            elif kind == "dir":
                t.dir(name)
            elif kind == "sym":
                t.sym(name, target)
            else:
                t.link(name, target)
        store = LayerStore(base / "state")
        try:
            layer = store.unpack(io.BytesIO(t.bytes()))
        except InvalidLayer:
            layer = None
        assert snapshot(outside) == before
        assert sorted(os.listdir(base)) == ["outside", "state"]
        assert all(not n.startswith("tmp-") for n in os.listdir(store.layers_dir))
        if layer is not None:
            for p in layer.path.rglob("*"):
                st_ = os.lstat(p)
                assert (
                    not stat.S_ISREG(st_.st_mode)
                    or st_.st_ino != os.stat(outside / "sentinel").st_ino
                )
