"""The layer applier makes the same tree as `tarfile`'s own extraction of a well-formed layer
(issue 17: the unpacker's fast paths -- no chmod of a directory that mkdir already made right,
files written from the decompressor's buffer, several layers at once -- must not change what
lands on disk).

I/O: files under pytest's tmp_path only (no mount, no device node, no daemon). Archives are
built in memory by tarfile's writer: regular files (some large enough to span the unpacker's
chunks), directories given explicitly, implied by a child or repeated, symlinks (never
followed), FIFOs and hard links to earlier files, with random modes (setuid, setgid, sticky
included), owners and mtimes, in random order. Both trees are compared entry by entry: kind,
mode, size and bytes, link target, which names share an inode, mtime (not of symlinks, which
tarfile leaves), and owner when running as root. Hostile archives are the business of
tests/integration/test_hostile_layers.py; overlay whiteouts and devices, which tarfile does not
know, of tests/integration/test_layers.py.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.drivers.layers import tarsafe
from engine.drivers.layers.unpack import CHUNK, LayerLimits, apply_tar

ROOT = os.geteuid() == 0
Entry = dict[str, Any]

components = st.sampled_from(["a", "b", "c", "d"])
paths = st.lists(components, min_size=1, max_size=3).map(tuple)
modes = st.one_of(st.sampled_from([0o755, 0o644, 0o700, 0o600, 0o777, 0o1777, 0o4755, 0o2755]),
                  st.integers(0o400, 0o7777).map(lambda m: m | 0o700))
owners = st.sampled_from([(0, 0), (1000, 1000), (0, 5), (7, 0)])
mtimes = st.integers(0, 2**32 - 1)
contents = st.one_of(st.binary(max_size=600), st.integers(1, 2 * CHUNK + 7).map(
    lambda n: bytes(range(256)) * (n // 256) + b"z" * (n % 256)))


@st.composite
def layers(draw: st.DrawFn) -> list[Entry]:
    chosen = draw(st.lists(paths, min_size=1, max_size=14, unique=True))
    parents = {p[:i] for p in chosen for i in range(1, len(p))}
    entries: list[Entry] = []
    files: list[Entry] = []
    for p in chosen:
        uid, gid = draw(owners)
        e: Entry = {"path": p, "mode": draw(modes), "uid": uid, "gid": gid,
                    "mtime": draw(mtimes)}
        if p in parents:
            e["kind"] = "dir"
        else:
            e["kind"] = draw(st.sampled_from(["file", "file", "dir", "symlink", "fifo", "link"]))
        if e["kind"] == "link" and not files:
            e["kind"] = "file"
        if e["kind"] == "file":
            e["data"] = draw(contents)
            files.append(e)
        elif e["kind"] == "symlink":
            e["target"] = draw(st.sampled_from(["a", "../b", "/etc/passwd", "c/d", "."]))
        elif e["kind"] == "link":
            # A hard link is the same inode: tar writers give it the target's metadata.
            target = draw(st.sampled_from(files))
            e.update(target=target["path"], mode=target["mode"], uid=target["uid"],
                     gid=target["gid"], mtime=target["mtime"])
        entries.append(e)
    order = draw(st.permutations(range(len(entries))))
    ordered = [entries[i] for i in order]
    # A hard link comes after its target, as in any tar a writer makes.
    ordered.sort(key=lambda e: e["kind"] == "link")
    # Some directories are given twice (the later entry's mode wins), some only implied.
    again = [e for e in ordered if e["kind"] == "dir" and draw(st.booleans())]
    implied_only = {e["path"] for e in ordered if e["kind"] == "dir" and e["path"] in parents
                    and draw(st.integers(0, 3)) == 0}
    out = [e for e in ordered if e["path"] not in implied_only]
    for e in again:
        if e["path"] not in implied_only:
            uid, gid = draw(owners)
            out.append({**e, "mode": draw(modes), "mtime": draw(mtimes), "uid": uid, "gid": gid})
    return out


def build(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo("/".join(e["path"]))
            ti.mode, ti.uid, ti.gid, ti.mtime = e["mode"], e["uid"], e["gid"], e["mtime"]
            data = None
            if e["kind"] == "file":
                ti.size = len(e["data"])
                data = io.BytesIO(e["data"])
            elif e["kind"] == "dir":
                ti.type = tarfile.DIRTYPE
            elif e["kind"] == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e["target"]
            elif e["kind"] == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif e["kind"] == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, "/".join(e["target"])
            tf.addfile(ti, data)
    return buf.getvalue()


def snapshot(root: Path, implied: set[str]) -> dict[str, Any]:
    """Every entry below root, as comparable values; inodes as groups of names."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st_ = os.lstat(full)
            kind = stat.S_IFMT(st_.st_mode)
            item: dict[str, Any] = {"kind": kind}
            if rel not in implied:  # an implied directory's mode and time are the tool's own
                item["mode"] = stat.S_IMODE(st_.st_mode) if kind != stat.S_IFLNK else None
                if kind != stat.S_IFLNK:  # tarfile leaves a symlink's mtime as it was made
                    item["mtime"] = st_.st_mtime_ns
                if ROOT:
                    item["owner"] = (st_.st_uid, st_.st_gid)
            if kind == stat.S_IFREG:
                item["data"] = Path(full).read_bytes()
                inodes.setdefault(st_.st_ino, []).append(rel)
            elif kind == stat.S_IFLNK:
                item["target"] = os.readlink(full)
            out[rel] = item
    out["<hard links>"] = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return out


def extract_ours(blob: bytes, dest: Path) -> None:
    dest.mkdir()
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        apply_tar(io.BytesIO(blob), fd, LayerLimits())
    finally:
        os.close(fd)


def extract_tarfile(blob: bytes, dest: Path) -> None:
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        tf.extractall(dest, numeric_owner=True, filter="fully_trusted")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(layers(), st.sampled_from([tarsafe._DIR_CACHE_MAX, 1, 2]))
def test_applier_makes_the_tree_tarfile_makes(tmp_path: Path, entries: list[Entry],
                                              dir_cache: int) -> None:
    blob = build(entries)
    case = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    # A tiny directory-fd cache makes every entry evict and reopen parents.
    with mock.patch.object(tarsafe, "_DIR_CACHE_MAX", dir_cache):
        extract_ours(blob, case / "ours")
    extract_tarfile(blob, case / "tarfile")
    named = {"/".join(e["path"]) for e in entries}
    implied = {"/".join(e["path"][:i]) for e in entries for i in range(1, len(e["path"]))}
    implied -= named
    assert snapshot(case / "ours", implied) == snapshot(case / "tarfile", implied)
