"""Layer tars a build makes: the diff of a RUN container's overlay upper dir (whiteouts turned
back into `.wh.` entries), and the files a COPY/ADD places.

I/O: reads the upper dir and the context; writes temp files the caller hands to the content
store. Entries are sorted and owned by their numeric ids with empty names, so the same inputs
give the same bytes; with SOURCE_DATE_EPOCH every mtime is clamped to it (reproducible builds,
https://reproducible-builds.org/specs/source-date-epoch/).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from engine.core.build import BuildError
from engine.shell.build.context import walk

# runc creates these as mount points in the rootfs when the image lacks them; Docker's diff
# never holds them (moby daemon/initlayer), so neither does ours.
_MOUNT_POINTS = {"etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev",
                 "dev/shm", "dev/pts", "dev/mqueue", ".dockerenv"}


class _Tar:
    def __init__(self, out: BinaryIO, epoch: int | None) -> None:
        self.tf = tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
        self.epoch = epoch

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mode = stat.S_IMODE(st.st_mode)
        mtime = int(st.st_mtime)
        ti.mtime = min(mtime, self.epoch) if self.epoch is not None else mtime
        return ti

    def add(self, path: Path, name: str, *, uid: int | None = None, gid: int | None = None,
            mode: int | None = None) -> None:
        st = os.lstat(path)
        ti = self._info(name, st)
        if uid is not None:
            ti.uid, ti.gid = uid, gid if gid is not None else uid
        if mode is not None:
            ti.mode = mode
        if stat.S_ISDIR(st.st_mode):
            ti.type = tarfile.DIRTYPE
            self.tf.addfile(ti)
        elif stat.S_ISLNK(st.st_mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
            self.tf.addfile(ti)
        elif stat.S_ISREG(st.st_mode):
            ti.size = st.st_size
            with open(path, "rb") as f:
                self.tf.addfile(ti, f)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            self.tf.addfile(ti)
        # sockets and device nodes never go into a layer (RELIABILITY S-11)

    def whiteout(self, name: str, st: os.stat_result) -> None:
        ti = self._info(name, st)
        ti.mode = 0o644
        self.tf.addfile(ti)

    def close(self) -> None:
        self.tf.close()


def diff_upper(upper: Path, out: BinaryIO, epoch: int | None) -> None:
    """The overlay upper dir as an OCI layer tar: a 0:0 char device is a whiteout, a dir with
    `trusted.overlay.opaque=y` an opaque dir (OCI image-spec layer.md "Whiteouts")."""
    t = _Tar(out, epoch)
    for dirpath, dirs, files in os.walk(upper):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            full = Path(dirpath) / name
            rel = os.path.relpath(full, upper)
            st = os.lstat(full)
            if rel in _MOUNT_POINTS and (stat.S_ISDIR(st.st_mode) and not os.listdir(full)
                                         or stat.S_ISREG(st.st_mode) and st.st_size == 0):
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                t.whiteout(os.path.join(os.path.dirname(rel), ".wh." + name), st)
                continue
            t.add(full, rel)
            if stat.S_ISDIR(st.st_mode) and _opaque(full):
                t.whiteout(os.path.join(rel, ".wh..wh..opq"), st)
    t.close()


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def parse_chmod(raw: str | None, line: int) -> int | None:
    if not raw:
        return None
    try:
        return int(raw, 8) & 0o7777
    except ValueError:
        raise BuildError(f"line {line}: invalid --chmod={raw}: only octal modes are supported",
                         hint="use --chmod=0755") from None


def _is_tar(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and tarfile.is_tarfile(path)
    except OSError:
        return False


def copy_layer(sources: list[Path], root: Path, dest: str, out: BinaryIO, *, epoch: int | None,
               chown: tuple[int | None, int | None], chmod: int | None, add: bool,
               line: int, raw: set[Path] | None = None) -> None:
    """COPY/ADD `sources` (inside `root`) to `dest` (absolute, "/" at the end = a directory),
    with Docker's rules: several sources need a directory; a directory's contents are copied,
    not the directory; ADD unpacks a local tar into the destination directory, never one of
    `raw` (a URL's download: Docker does not unpack those)."""
    is_dir = dest.endswith("/") or len(sources) > 1
    if len(sources) > 1 and not dest.endswith("/"):
        raise BuildError(f"line {line}: When using COPY with more than one source file, the "
                         "destination must be a directory and end with a /")
    base = dest.strip("/")
    uid, gid = chown
    t = _Tar(out, epoch)
    for src in sources:
        if add and src not in (raw or ()) and _is_tar(src):
            _add_tar(t, src, base, line)
            continue
        if src.is_dir() and not src.is_symlink():
            for p in walk(src):
                rel = os.path.relpath(p, src)
                name = base if rel == "." else os.path.join(base, rel)
                if name:
                    t.add(p, name, uid=uid, gid=gid, mode=chmod)
            continue
        name = os.path.join(base, src.name) if is_dir else base
        t.add(src, name, uid=uid, gid=gid, mode=chmod)
    t.close()


def _add_tar(t: _Tar, src: Path, base: str, line: int) -> None:
    """ADD of a local archive: its entries under `base`; `..` and absolute names refused, as
    the layer driver will refuse them again when it unpacks the result."""
    with tarfile.open(src) as tf:
        for m in tf:
            parts = [p for p in m.name.split("/") if p not in ("", ".")]
            if ".." in parts:
                raise BuildError(f"line {line}: ADD {src.name}: archive entry {m.name!r} leaves "
                                 "the destination", hint="the archive is not safe to unpack")
            m.name = "/".join([base, *parts]) if base else "/".join(parts)
            if not m.name or m.islnk() or m.isdev():
                continue
            if t.epoch is not None:
                m.mtime = min(int(m.mtime), t.epoch)
            m.uname = m.gname = ""
            t.tf.addfile(m, tf.extractfile(m) if m.isreg() else None)


def gzip_file(src: BinaryIO, dst: BinaryIO) -> str:
    """gzip `src` into `dst` (mtime 0: same bytes for same input); return the sha256 of the
    uncompressed stream, the layer's diff_id."""
    h = hashlib.sha256()
    src.seek(0)
    with gzip.GzipFile(fileobj=dst, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            gz.write(chunk)
    dst.seek(0)
    return "sha256:" + h.hexdigest()
