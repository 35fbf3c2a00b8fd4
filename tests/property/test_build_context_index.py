"""The build context's index (engine/shell/build/ctxindex.py) answers as the unpacked context
would (issue 12): for any tar of files, directories, symlinks (relative, absolute, escaping,
looping), hard links, whiteouts and repeated names, the index and the same tar unpacked by the
confined applier agree on every entry (type, mode, owner, bytes), on hostile archives (the same
error), on `.dockerignore`, on COPY sources (globs, symlinked directories, escapes: the same
sources or the same error) and on their checksums; and a context materialized for a step's
sources holds them exactly.

I/O: temp directories (the applier unpacks into them); no root needed, no kernel objects.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.core.build import BuildError
from engine.drivers.layers.tarsafe import InvalidLayer
from engine.shell.build import context as bctx
from engine.shell.build.ctxindex import index_context

NAMES = ["a", "b", "c.txt", "d.log", ".hid"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
GLOBS = ["*", "*/*", "a*", "**/c.txt", "a/*.txt", ".", "?", "[ab]/c.txt"]
link_targets = st.one_of(paths, paths.map(lambda p: "../" + p), paths.map(lambda p: "/" + p),
                         st.sampled_from([".", "..", "a/..", "../..", "/etc", "/"]))


@st.composite
def members(draw: st.DrawFn) -> tuple[str, str, str, int, int, bytes | None]:
    """(kind, name, link, mode, uid, data): plain values, so a failing example reads well."""
    kind = draw(st.sampled_from(["file"] * 4 + ["dir"] * 2 + ["sym"] * 2
                                + ["hard", "fifo", "wh", "dev"]))
    name = draw(paths)
    link = draw(link_targets) if kind == "sym" else draw(paths) if kind == "hard" else ""
    mode = draw(st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o1777, 0o000]))
    uid = draw(st.sampled_from([0, 1000, 7]))
    data = draw(st.sampled_from([b"", b"x", b"hello\n", b"\0" * 700])) if kind == "file" else None
    return kind, name, link, mode, uid, data


def _tar(entries: list[tuple[str, str, str, int, int, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
             "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "wh": tarfile.REGTYPE,
             "dev": tarfile.CHRTYPE}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, link, mode, uid, data in entries:
            if kind == "wh":
                name = os.path.join(os.path.dirname(name), ".wh." + os.path.basename(name))
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.uid, ti.gid = types[kind], link, mode, uid, uid
            if kind == "dev":
                ti.devmajor, ti.devminor = 1, 3
            ti.size = len(data) if data is not None else 0
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _disk(root: Path) -> dict[str, tuple[int, int, int, str]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            body = ""
            if stat.S_ISREG(st_.st_mode):
                body = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st_.st_mode):
                body = os.readlink(p)
            out[os.path.relpath(p, root)] = (st_.st_mode, st_.st_uid, st_.st_gid, body)
    return out


def _index_view(index) -> dict[str, tuple[int, int, int, str]]:
    return {"/".join(p): (e.st_mode, e.uid, e.gid, e.link if e.kind == stat.S_IFLNK
                          else e.digest) for p, e in index.entries.items() if p}


def _outcome(fn):
    try:
        return "ok", fn()
    except (BuildError, InvalidLayer) as exc:
        return "error", type(exc).__name__


def _unpack(raw: bytes, where: Path):
    where.mkdir()
    return _outcome(lambda: bctx.unpack_context(io.BytesIO(raw), where))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(members(), max_size=12),
       patterns=st.lists(st.one_of(st.sampled_from(NAMES), paths, st.sampled_from(GLOBS)),
                         min_size=1, max_size=3),
       ignore=st.sampled_from(["", "*.log\n", "a\n!a/c.txt\n", "**/b\n", "a/*\n"]))
def test_the_index_agrees_with_the_unpacked_context(tmp_path_factory, entries, patterns,
                                                    ignore) -> None:
    tmp = tmp_path_factory.mktemp("ctx")
    if ignore:
        entries = [*entries, ("file", ".dockerignore", "", 0o644, 0, ignore.encode())]
    raw = _tar(entries)
    disk = tmp / "disk"
    unpacked = _unpack(raw, disk)
    indexed = _outcome(lambda: index_context(io.BytesIO(raw), tmp))
    assert unpacked[0] == indexed[0], (unpacked, indexed)
    event(f"archive {unpacked[0]}")
    if unpacked[0] == "error":
        assert unpacked[1] == indexed[1]
        return
    index = indexed[1]
    assert index.digest == unpacked[1]
    assert _index_view(index) == _disk(disk)

    bctx.apply_dockerignore(disk)
    index.apply_dockerignore(bctx.read_dockerignore(disk))
    assert _index_view(index) == _disk(disk)

    on_disk = _outcome(lambda: bctx.resolve_sources(disk, patterns, 3))
    base = os.path.realpath(disk)
    if on_disk[0] == "ok" and any(not (os.path.realpath(s.parent) + "/").startswith(base + "/")
                                  for s in on_disk[1] if s != disk):
        # A link climbing out of the context and back into it by name (`a -> ..`, then
        # `a/disk`): the disk rule let that through as "the context itself"; the index
        # never leaves the context, so it does not find it, or calls it forbidden.
        event("a source reached from outside the context (the index is stricter)")
        return
    in_index = _outcome(lambda: index.sources(patterns, 3))
    leaves = any(e.kind == stat.S_IFLNK and index.resolve(p)[0] is None
                 for p, e in index.entries.items())
    if in_index == ("error", "BuildError") and on_disk[0] == "ok" and leaves and \
            any(ch in "".join(patterns) for ch in "*?["):
        # A glob through a link out of the context: the disk looked outside (and what it
        # found there decided); the index refuses, naming the path.
        event("a glob through a link out of the context (the index refuses)")
        return
    assert on_disk[0] == in_index[0], (patterns, on_disk, in_index)
    event(f"sources {on_disk[0]}")
    if on_disk[0] == "error":
        return
    names = [tuple(p for p in os.path.relpath(s, disk).split("/") if p != ".")
             for s in on_disk[1]]
    assert names == in_index[1]
    assert bctx.checksum(on_disk[1], disk) == index.checksum(in_index[1])

    # a step that misses the cache: only what its sources need, and they resolve the same
    part = tmp / "part"
    part.mkdir()
    index.materialize(in_index[1], part)
    again = bctx.resolve_sources(part, patterns, 3)
    assert [os.path.relpath(s, part) for s in again] == [os.path.relpath(s, disk)
                                                         for s in on_disk[1]]
    assert bctx.checksum(again, part) == bctx.checksum(on_disk[1], disk)
    index.close()


def test_a_compressed_context_is_indexed_from_a_spool(tmp_path: Path) -> None:
    import gzip
    raw = _tar([("file", "Dockerfile", "", 0o644, 0, b"FROM busybox\n"),
                ("file", "d/f", "", 0o644, 0, b"data")])
    index = index_context(io.BytesIO(gzip.compress(raw)), tmp_path)
    assert index.read_file("Dockerfile") == b"FROM busybox\n"
    assert index.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    part = tmp_path / "p"
    part.mkdir()
    index.materialize(index.sources(["d"], 1), part)
    assert (part / "d" / "f").read_bytes() == b"data"
    index.close()


def test_a_parent_symlink_out_of_the_context_is_forbidden(tmp_path: Path) -> None:
    index = index_context(io.BytesIO(_tar([("sym", "link", "/etc", 0o777, 0, None)])), tmp_path)
    with pytest.raises(BuildError, match="forbidden path outside the build context"):
        index.sources(["link/passwd"], 2)
    assert index.sources(["link"], 2) == [("link",)]  # the link itself is copied as a link


def test_a_glob_matching_a_link_unpacks_what_the_link_points_at(tmp_path: Path) -> None:
    # found by the property test above: `**/c.txt` where c.txt -> a; on disk the glob's last
    # plain component must exist with the link followed, so `a` must be unpacked too
    raw = _tar([("file", "a", "", 0o644, 0, b""), ("sym", "c.txt", "a", 0o777, 0, None)])
    index = index_context(io.BytesIO(raw), tmp_path)
    named = index.sources(["**/c.txt"], 1)
    part = tmp_path / "part"
    part.mkdir()
    index.materialize(named, part)
    assert [p.name for p in bctx.resolve_sources(part, ["**/c.txt"], 1)] == ["c.txt"]
    index.close()
