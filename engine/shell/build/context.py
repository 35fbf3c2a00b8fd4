"""The build context on disk: `.dockerignore` rules, COPY sources resolved and checksummed
without leaving the context. A context arrives as a tar and is first only indexed
(ctxindex.py, which answers the same questions without unpacking); what a step that misses the
cache needs is unpacked into a private directory and answered here.

I/O: filesystem (a temp dir under the state root). Extraction goes through the layer driver's
confined applier (engine/drivers/layers/tarsafe.py), so `..`, absolute names and symlinks cannot
place
anything outside the directory (RELIABILITY I-07/I-08); symlinks inside are kept as links and
never followed out of it when sources are resolved.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from engine.core.build import BuildError, dockerignore_rules, ignored
from engine.drivers.layers.tarsafe import LayerLimits
from engine.drivers.layers.unpack import apply_tar

MAX_CONTEXT_BYTES = 2 << 30  # stated in the README: a bigger context is refused (400)


def unpack_context(f: BinaryIO, target: Path) -> str:
    """Unpack the context tar into `target` (confined); return the tar's sha256 digest."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        digest, _ = apply_tar(f, fd, LayerLimits(max_bytes=MAX_CONTEXT_BYTES))
    finally:
        os.close(fd)
    return digest


def read_dockerignore(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """`.dockerignore` rules of a context on disk (none if it is missing or a symlink)."""
    path = root / ".dockerignore"
    if path.is_symlink() or not path.is_file():
        return []
    return dockerignore_rules(path.read_text(errors="replace"))


def apply_dockerignore(root: Path) -> None:
    """Delete what `.dockerignore` excludes, as the docker CLI never sends it."""
    rules = read_dockerignore(root)
    if not rules:
        return
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in (".dockerignore", "Dockerfile"):
                continue
            if ignored(rel, rules):
                if os.path.isdir(full) and not os.path.islink(full):
                    if not os.listdir(full):
                        os.rmdir(full)
                else:
                    os.unlink(full)


def inside(root: Path, rel: str, line: int) -> Path:
    """`rel` resolved in the context; refuse what would leave it (moby "forbidden path")."""
    norm = os.path.normpath("/" + rel).lstrip("/")
    cand = root / norm
    # The last component is not followed: COPY of a symlink copies the link (as Docker); the
    # directories above it are, and must stay inside.
    real = os.path.join(os.path.realpath(cand.parent), cand.name) if norm else str(root)
    real = os.path.realpath(root) if not norm else real
    base = os.path.realpath(root)
    if real != base and not real.startswith(base + "/"):
        raise BuildError(f"line {line}: forbidden path outside the build context: {rel}",
                         hint="COPY sources must be inside the context")
    return cand


def resolve_sources(root: Path, patterns: list[str], line: int) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        norm = os.path.normpath("/" + pat).lstrip("/")
        if any(ch in norm for ch in "*?["):
            matches = sorted(root.glob(norm)) if norm else [root]
            matches = [m for m in matches if inside(root, os.path.relpath(m, root), line)]
        else:
            p = inside(root, norm, line) if norm else root
            matches = [p] if os.path.lexists(p) else []
        if not matches:
            raise BuildError(f'COPY failed: file not found in build context or excluded by '
                             f'.dockerignore: stat {pat}: file does not exist',
                             hint=f"line {line}: the source must be in the context directory")
        out.extend(matches)
    return out


def walk(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            yield from walk(child)


def checksum_line(rel: str, st_mode: int, uid: int, gid: int, payload: str) -> bytes:
    """One entry's share of a COPY/ADD checksum (`payload`: a file's sha256, a link's target)."""
    return f"{rel}\0{st_mode:o}\0{uid}:{gid}\0{payload}\n".encode(errors="surrogateescape")


def checksum(paths: list[Path], root: Path) -> str:
    """Content checksum of COPY/ADD sources: names, modes, uid/gid, link targets and bytes,
    never mtimes (Docker's cache rule). The same lines as ctxindex.py's, so an image's sources
    (COPY --from) and the context's index are checksummed alike."""
    h = hashlib.sha256()
    for top in paths:
        for p in walk(top):
            st = os.lstat(p)
            payload = ""
            if stat.S_ISLNK(st.st_mode):
                payload = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                fh = hashlib.sha256()
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        fh.update(chunk)
                payload = fh.hexdigest()
            h.update(checksum_line(os.path.relpath(p, root), st.st_mode, st.st_uid, st.st_gid,
                                   payload))
    return "sha256:" + h.hexdigest()
