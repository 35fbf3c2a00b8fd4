"""The build context read once, as it arrives, into an index: every entry's type, mode, owner,
link target and content digest, without writing a file (issue 12: a fully cached rebuild of a
50 MB context spent ~2 s unpacking it before any step could be looked up).

The index answers what the cache needs: the Dockerfile and `.dockerignore`, COPY/ADD sources
resolved as they would be on disk (globs, symlinked directories followed but never out of the
context, the last component never followed) and their checksum (names, modes, uid/gid, link
targets and bytes, never mtimes: Docker's classic rule, moby builder/remotecontext/tarsum.go).
Only a step that misses the cache has its sources unpacked (`materialize`), and only those, by
the layer driver's confined applier, so confinement rests where it always did.

The index follows the applier's rules entry by entry (engine/drivers/layers/tarsafe.py): the
same name checks (`split_name`: `..` is "invalid archive"), the same refusal to write through a
symlink or a file, the same replacement of one entry by a later one, hard links sharing their
target's inode, whiteouts, devices skipped. tests/property/test_build_context_index.py checks
it against a context unpacked by the applier.

I/O: reads the context (a file or stream); a compressed context's uncompressed bytes are
spooled to a temp file; `materialize` writes through the confined applier into a directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from engine.core.build import BuildError
from engine.drivers.layers.tarsafe import (
    Applier,
    InvalidLayer,
    LayerLimits,
    LayerTooLarge,
    current_umask,
    split_name,
)
from engine.drivers.layers.unpack import apply_tar
from engine.shell.build.context import MAX_CONTEXT_BYTES, checksum_line, ignored

Parts = tuple[str, ...]
_WH = ".wh."
_LOOPS = 40  # symlinks followed in one lookup, as Linux's MAXSYMLINKS


@dataclass
class Entry:
    """One context entry as the applier would leave it on disk."""

    kind: int  # stat.S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR (a whiteout)
    mode: int  # permission bits as they would be on disk
    uid: int
    gid: int
    link: str = ""  # a symlink's target
    size: int = 0
    digest: str = ""  # sha256 hex of a regular file's bytes
    offset: int = -1  # where those bytes are in the data file

    @property
    def st_mode(self) -> int:
        return self.kind | self.mode


class ContextIndex:
    """The entries of one build context, keyed by their path components."""

    def __init__(self, data: IO[bytes], start: int) -> None:
        self.entries: dict[Parts, Entry] = {}
        self.children: dict[Parts, dict[str, None]] = {(): {}}
        self.digest = ""
        self._data = data
        self._start = start
        self._root_owner = (os.geteuid(), os.getegid())
        self._root_owner = (0, 0) if os.geteuid() == 0 else self._root_owner
        # the directory the context was unpacked into was made by mkdir(0777) less the umask
        self.entries[()] = Entry(stat.S_IFDIR, 0o777 & ~current_umask(), *self._root_owner)

    def close(self) -> None:
        self._data.close()

    # -- building (called by _Indexer, in tar order) -----------------------------------------

    def _remove(self, parts: Parts) -> None:
        if parts not in self.entries:
            return
        for name in list(self.children.get(parts, {})):
            self._remove(parts + (name,))
        self.children.pop(parts, None)
        del self.entries[parts]
        del self.children[parts[:-1]][parts[-1]]

    def _put(self, parts: Parts, entry: Entry) -> None:
        self.entries[parts] = entry
        self.children[parts[:-1]][parts[-1]] = None
        if entry.kind == stat.S_IFDIR:
            self.children.setdefault(parts, {})

    def _parent(self, parts: Parts, implied: Entry) -> None:
        """The applier's `_dir(create=True)`: walk down without following, create what is
        missing (0755 less the umask), refuse to write through a symlink or a file."""
        for j in range(1, len(parts) + 1):
            e = self.entries.get(parts[:j])
            if e is None:
                self._put(parts[:j], Entry(stat.S_IFDIR, implied.mode, implied.uid, implied.gid))
            elif e.kind != stat.S_IFDIR:
                raise InvalidLayer(f"invalid archive: {'/'.join(parts[:j])} is a symlink or not "
                                   "a directory, refusing to write through it")

    # -- lookups as the disk would answer them ---------------------------------------------

    def resolve(self, parts: Parts) -> tuple[Parts | None, bool]:
        """Follow `parts` like realpath below the context root: (resolved parts, found).
        None: it leaves the context (an absolute link, or `..` above the root)."""
        todo = list(parts)
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if not done:
                    return None, False
                done.pop()
                continue
            e = self.entries.get((*done, name))
            if e is not None and e.kind == stat.S_IFLNK:
                hops += 1
                if hops > _LOOPS:
                    return (*done, name, *todo), False
                if e.link.startswith("/"):
                    return None, False
                todo = [p for p in e.link.split("/") if p not in ("", ".")] + todo
                continue
            done.append(name)
            if todo and (e is None or e.kind != stat.S_IFDIR):
                return (*done, *todo), False
        return tuple(done), tuple(done) in self.entries

    def lookup(self, parts: Parts, line: int, rel: str) -> tuple[Parts, Entry | None]:
        """The entry named `parts`, its directories followed and kept inside the context
        (context.py `inside`), the last component not followed (COPY of a link copies it)."""
        if not parts:
            return (), self.entries[()]
        parent, found = self.resolve(parts[:-1])
        if parent is None:
            raise BuildError(f"line {line}: forbidden path outside the build context: {rel}",
                             hint="COPY sources must be inside the context")
        if parts[:-1] and not found:
            return parent + parts[-1:], None
        if parts[:-1] and self.entries[parent].kind != stat.S_IFDIR:
            return parent + parts[-1:], None
        where = parent + parts[-1:]
        return where, self.entries.get(where)

    def read_file(self, rel: str) -> bytes | None:
        """A regular file's bytes (the Dockerfile, .dockerignore), or None."""
        norm = posixpath.normpath("/" + rel).lstrip("/")
        where, e = self.lookup(tuple(p for p in norm.split("/") if p), 0, rel)
        if e is None or e.kind != stat.S_IFREG:
            return None
        self._data.seek(self._start + e.offset)
        return self._data.read(e.size)

    # -- .dockerignore ---------------------------------------------------------------------

    def apply_dockerignore(self, rules: list[tuple[bool, re.Pattern[str]]]) -> None:
        """What context.py `apply_dockerignore` deletes from an unpacked context, deleted from
        the index: children first; an ignored directory goes only once empty."""
        if not rules:
            return
        for parts in sorted(self.entries, key=len, reverse=True):
            if not parts or parts not in self.entries:
                continue
            rel = "/".join(parts)
            if rel in (".dockerignore", "Dockerfile") or not ignored(rel, rules):
                continue
            if self.entries[parts].kind == stat.S_IFDIR and self.children.get(parts):
                continue
            self._remove(parts)

    # -- COPY/ADD sources ------------------------------------------------------------------

    def sources(self, patterns: list[str], line: int) -> list[Parts]:
        """context.py `resolve_sources` on the index: the sources as named (not resolved)."""
        out: list[Parts] = []
        for pat in patterns:
            norm = posixpath.normpath("/" + pat).lstrip("/")
            parts = tuple(p for p in norm.split("/") if p)
            if any(ch in norm for ch in "*?["):
                matches = sorted(self._glob(parts, line)) if parts else [()]
                for m in matches:
                    self.lookup(m, line, "/".join(m))
            else:
                _, e = self.lookup(parts, line, pat)
                matches = [parts] if e is not None else []
            if not matches:
                raise BuildError(f'COPY failed: file not found in build context or excluded by '
                                 f'.dockerignore: stat {pat}: file does not exist',
                                 hint=f"line {line}: the source must be in the context directory")
            out.extend(matches)
        return out

    def _is_dir(self, parts: Parts) -> bool:
        where, found = self.resolve(parts)
        return where is not None and found and self.entries[where].kind == stat.S_IFDIR

    def _listdir(self, parts: Parts) -> list[str]:
        where, found = self.resolve(parts)
        if where is None or not found or self.entries[where].kind != stat.S_IFDIR:
            return []
        return list(self.children.get(where, {}))

    def _glob(self, pattern: Parts, line: int) -> Iterator[Parts]:
        """pathlib's `Path.glob` (3.11) over the index: a wildcard component matches names in
        a directory (dot files too), a plain one must exist, `**` recurses without following
        symlinked directories; directories are followed when more components remain. Where
        the disk would look outside the context (a link out of it), this refuses instead."""
        def outside(p: Parts) -> bool:
            if self.resolve(p)[0] is None:
                raise BuildError(f"line {line}: forbidden path outside the build context: "
                                 f"{'/'.join(p)}", hint="COPY sources must be inside the context")
            return False

        def select(base: Parts, rest: Parts) -> Iterator[Parts]:
            head, tail = rest[0], rest[1:]
            if head == "**":
                for d in self._walk_dirs(base):
                    yield from (select(d, tail) if tail else iter([d]))
                return
            if any(ch in head for ch in "*?["):
                rx = re.compile(fnmatch.translate(head))
                outside(base)
                for n in self._listdir(base):
                    if rx.match(n) and (not tail or self._is_dir(base + (n,))):
                        yield from (select(base + (n,), tail) if tail else iter([base + (n,)]))
                return
            p = base + (head,)
            if tail and (outside(p) or self._is_dir(p)):
                yield from select(p, tail)
            elif not tail and (outside(p) or self.resolve(p)[1]):
                yield p

        seen: dict[Parts, None] = {}
        for p in select((), pattern):
            seen.setdefault(p)
        return iter(seen)

    def _walk_dirs(self, base: Parts) -> Iterator[Parts]:
        yield base
        where, found = self.resolve(base)
        if where is None or not found:
            return
        for n in self.children.get(where, {}):
            e = self.entries[where + (n,)]
            if e.kind == stat.S_IFDIR:
                yield from self._walk_dirs(base + (n,))

    def walk(self, named: Parts) -> Iterator[tuple[Parts, Parts, Entry]]:
        """context.py `walk` on the index: (name, where it is, entry), the top first, then a
        real directory's children by name; a symlinked directory is not entered."""
        where, e = self.lookup(named, 0, "/".join(named))
        if e is None:
            return
        yield named, where, e
        if e.kind == stat.S_IFDIR:
            for n in sorted(self.children.get(where, {})):
                yield from self.walk(named + (n,))

    def checksum(self, sources: list[Parts]) -> str:
        h = hashlib.sha256()
        for top in sources:
            for named, _, e in self.walk(top):
                payload = e.link if e.kind == stat.S_IFLNK else e.digest
                h.update(checksum_line("/".join(named) or ".", e.st_mode, e.uid, e.gid, payload))
        return "sha256:" + h.hexdigest()

    # -- unpacking what a step needs -------------------------------------------------------

    def needed(self, sources: list[Parts]) -> set[Parts]:
        """Every entry the sources reach on disk: their trees, the directories above them,
        the symlinks their directories go through, and what a source that is a link points
        at (a glob's last plain component must exist, links followed, as pathlib checks)."""
        out: set[Parts] = set()
        for top in sources:
            for i in range(len(top) + 1):
                self._trail(top[:i], out)
            self._trail(top, out, follow_last=True)
            for _, where, _ in self.walk(top):
                out.add(where)
        return out

    def _trail(self, parts: Parts, out: set[Parts], *, follow_last: bool = False) -> None:
        todo, hops = list(parts), 0
        done: list[str] = []
        while todo and hops <= _LOOPS:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            here = (*done, name)
            e = self.entries.get(here)
            if e is None:
                return
            out.add(here)
            if e.kind == stat.S_IFLNK and (todo or follow_last):
                hops += 1
                if e.link.startswith("/"):
                    return
                todo = [p for p in e.link.split("/") if p not in ("", ".")] + todo
                continue
            done.append(name)

    def materialize(self, sources: list[Parts], target: Path) -> None:
        """Unpack the entries `sources` need into `target`, through the confined applier."""
        keep = self.needed(sources)
        for p in list(keep):
            keep.update(p[:i] for i in range(1, len(p)))
        order = sorted(keep)
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            apply_tar(cast(BinaryIO, _SubsetTar(self, order)), fd,
                      LayerLimits(max_bytes=MAX_CONTEXT_BYTES))
        finally:
            os.close(fd)

    def _member(self, parts: Parts) -> tuple[tarfile.TarInfo, Entry]:
        e = self.entries[parts]
        ti = tarfile.TarInfo("/".join(parts))
        ti.mode, ti.uid, ti.gid = e.mode, e.uid, e.gid
        ti.type = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
                   stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFIFO: tarfile.FIFOTYPE,
                   stat.S_IFCHR: tarfile.CHRTYPE}[e.kind]
        ti.linkname = e.link
        ti.size = e.size if e.kind == stat.S_IFREG else 0
        return ti, e

    def _read_at(self, offset: int, size: int) -> Iterator[bytes]:
        pos = self._start + offset
        while size > 0:
            self._data.seek(pos)
            chunk = self._data.read(min(size, 1 << 20))
            if not chunk:
                raise InvalidLayer("invalid archive: the context ended early")
            pos += len(chunk)
            size -= len(chunk)
            yield chunk


class _SubsetTar:
    """A tar of some index entries, made as it is read (no temp file)."""

    def __init__(self, index: ContextIndex, order: list[Parts]) -> None:
        self._chunks = self._gen(index, order)
        self._buf = b""

    @staticmethod
    def _gen(index: ContextIndex, order: list[Parts]) -> Iterator[bytes]:
        for parts in order:
            ti, e = index._member(parts)
            yield ti.tobuf(format=tarfile.PAX_FORMAT)
            if ti.size:
                yield from index._read_at(e.offset, e.size)
                pad = -ti.size % tarfile.BLOCKSIZE
                if pad:
                    yield b"\0" * pad
        yield b"\0" * (tarfile.BLOCKSIZE * 2)

    def read(self, n: int = -1) -> bytes:
        parts, have = [self._buf], len(self._buf)
        while n < 0 or have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)  # one copy per read, not one per piece
        if n < 0 or n >= len(data):
            self._buf = b""
            return data
        self._buf = data[n:]
        return data[:n]


class _Indexer(Applier):
    """An Applier that records what it would create instead of creating it (tarsafe.py's
    `apply`/`_create`/`_whiteout`/`_hardlink`, rule for rule), hashing file bytes as they pass."""

    def __init__(self, root_fd: int, limits: LayerLimits, *, index: ContextIndex,
                 tee: IO[bytes] | None) -> None:
        super().__init__(root_fd, limits)
        self.index = index
        self.tee = tee
        self.umask = current_umask()
        uid, gid = index._root_owner
        self.implied = Entry(stat.S_IFDIR, 0o755 & ~self.umask, uid, gid)

    def _owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return (m.uid, m.gid) if self._is_root else self.index._root_owner

    def apply(self, m: tarfile.TarInfo, data: Any) -> None:
        self.stats.entries += 1
        if self.stats.entries > self.limits.max_entries:
            raise LayerTooLarge(f"invalid archive: more than {self.limits.max_entries} entries")
        parts = split_name(m.name, self.limits)
        idx = self.index
        if not parts:
            if not m.isdir():
                raise InvalidLayer("invalid archive: the layer root is not a directory")
            uid, gid = self._owner(m)
            idx.entries[()] = Entry(stat.S_IFDIR, m.mode & 0o7777, uid, gid)
            return
        parent, base = parts[:-1], parts[-1]
        if base.startswith(_WH):
            if base == _WH + _WH + ".opq":
                if not parent:
                    raise InvalidLayer("invalid archive: opaque whiteout of the layer root")
                idx._parent(parent, self.implied)
                return
            if base.startswith(_WH + _WH):
                return
            name = base[len(_WH):]
            if name in ("", ".", ".."):
                raise InvalidLayer(f"invalid archive: invalid whiteout name {base!r}")
            idx._parent(parent, self.implied)
            idx._remove(parent + (name,))
            idx._put(parent + (name,), self._whiteout_entry())
            return
        idx._parent(parent, self.implied)
        self._create(m, parts, data)

    def _whiteout_entry(self) -> Entry:
        uid, gid = self.index._root_owner
        return Entry(stat.S_IFCHR, 0o600 & ~self.umask, uid, gid)

    def _create(self, m: tarfile.TarInfo, parts: Parts, data: Any) -> None:  # type: ignore[override]
        idx = self.index
        mode = m.mode & 0o7777
        uid, gid = self._owner(m)
        if m.isreg():
            if m.sparse is not None:
                raise InvalidLayer(f"invalid archive: sparse file {m.name[:200]!r} unsupported")
            digest, offset = self._hash(m, data)
            idx._remove(parts)
            idx._put(parts, Entry(stat.S_IFREG, mode, uid, gid, size=m.size, digest=digest,
                                  offset=offset))
        elif m.isdir():
            old = idx.entries.get(parts)
            if old is not None and old.kind == stat.S_IFDIR:
                old.mode = mode
                old.uid, old.gid = uid, gid  # the applier sets an existing directory's owner
            else:
                idx._remove(parts)
                idx._put(parts, Entry(stat.S_IFDIR, mode, uid, gid))
        elif m.issym():
            idx._remove(parts)
            idx._put(parts, Entry(stat.S_IFLNK, 0o777, uid, gid, link=m.linkname))
        elif m.islnk():
            self._link(m, parts)
        elif m.ischr() and m.devmajor == 0 and m.devminor == 0:
            idx._remove(parts)
            idx._put(parts, self._whiteout_entry())
        elif m.isfifo():
            idx._remove(parts)
            idx._put(parts, Entry(stat.S_IFIFO, mode, uid, gid))
        elif m.ischr() or m.isblk():
            self.stats.skipped_devices += 1

    def _link(self, m: tarfile.TarInfo, parts: Parts) -> None:
        idx = self.index
        target = split_name(m.linkname, self.limits)
        if not target:
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} to the layer root")
        for j in range(1, len(target)):
            e = idx.entries.get(target[:j])
            if e is None:
                raise InvalidLayer(f"invalid archive: {'/'.join(target[:-1])} does not exist in "
                                   "this layer")
            if e.kind != stat.S_IFDIR:
                raise InvalidLayer(f"invalid archive: {'/'.join(target[:j])} is a symlink or "
                                   "not a directory, refusing to write through it")
        e = idx.entries.get(target)
        if e is None:
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} to "
                               f"{m.linkname[:200]!r}, which is not in this layer")
        if e.kind == stat.S_IFDIR:
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} to a directory")
        if target[: len(parts)] == parts:
            if target == parts:
                return
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} into itself")
        idx._remove(parts)
        idx._put(parts, e)  # one inode, two names

    def _hash(self, m: tarfile.TarInfo, data: Any) -> tuple[str, int]:
        h = hashlib.sha256()
        left = m.size
        offset = m.offset_data
        if self.tee is not None:
            offset = self.tee.tell()
        while left > 0:
            chunk = data.read(min(left, 1 << 20))
            if not chunk:
                raise InvalidLayer("invalid archive: unexpected end of data")
            h.update(chunk)
            if self.tee is not None:
                self.tee.write(chunk)
            left -= len(chunk)
        return h.hexdigest(), offset

    def finish(self) -> None:
        return None  # nothing was created, no mtimes to set


def index_context(f: BinaryIO, spool_dir: Path) -> ContextIndex:
    """Read the context tar `f` (plain, gzip or zstd, as the applier accepts) into an index.
    A plain seekable file is kept (its own fd) for the bytes; anything else is spooled."""
    start = 0
    tee: IO[bytes] | None = None
    try:
        start = f.tell()
        head = f.read(4)
        f.seek(start)
        plain = not head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")) and f.seekable()
        data: IO[bytes] = os.fdopen(os.dup(f.fileno()), "rb") if plain else \
            tempfile.TemporaryFile(dir=spool_dir)
    except (OSError, AttributeError, ValueError):
        plain, data = False, tempfile.TemporaryFile(dir=spool_dir)
    if not plain:
        tee, start = data, 0
    index = ContextIndex(data, start)
    try:
        digest, _ = apply_tar(f, -1, LayerLimits(max_bytes=MAX_CONTEXT_BYTES),
                              applier_class=lambda fd, lim: _Indexer(fd, lim, index=index,
                                                                     tee=tee))
    except BaseException:
        index.close()
        raise
    index.digest = digest
    if tee is not None:
        tee.flush()
    return index
