"""Leftovers: bytes under the state root that no object in the log owns (issue 15 item 7).

A write is staged before it commits: a blob streams into `ingest/`, a layer unpacks into
`layers/tmp-*`, uploads and checks spool into `tmp/`. A daemon killed mid-write (`kill -9`
during a 205 MB `load`) leaves the staged bytes behind, and nothing else would ever look at
them: at daemon start, before anything runs, `discard_uncommitted` finds and removes every
such entry and says what it removed, so the daemon can record an `IngestDiscarded` event for
each (nothing is fixed silently). `unattributed` is what `system df` cannot attribute to an
image, container or volume: those staging entries (while the daemon runs, writes in flight)
plus what `system check --repair` moved into `quarantine/`.

I/O: lists, lstat()s and removes entries under the state root's staging directories.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec

from engine.drivers.host.diskusage import tree_size


class Leftover(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    bytes: int


def _entries(directory: Path, prefix: str = "") -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
    except (FileNotFoundError, NotADirectoryError):
        return []


def staged(root: Path) -> list[Path]:
    """Every staged, not yet committed write under `root`."""
    return [*_entries(root / "ingest"), *_entries(root / "tmp"),
            *_entries(root / "layers", "tmp-")]


def unattributed(root: Path) -> list[Leftover]:
    """What no image, container or volume owns: staged writes and quarantined objects."""
    quarantined = [q for kind in _entries(root / "quarantine") for q in _entries(kind)]
    return [Leftover(path=str(p), bytes=tree_size(p)) for p in [*staged(root), *quarantined]]


def discard_uncommitted(root: Path) -> list[Leftover]:
    """Remove every staged write (call only when no write runs: at daemon start); return
    what was removed, with its size, for the log."""
    gone = []
    for path in staged(root):
        size = tree_size(path)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            continue
        gone.append(Leftover(path=str(path), bytes=size))
    return gone
