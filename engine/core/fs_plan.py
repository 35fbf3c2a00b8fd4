"""Pure planning for copying files in and out of a container and for `diff`.

I/O: none. The kernel side (`engine/drivers/snapshots/rootfs_access.py`) resolves what this module
plans, always inside the container's root.

- `plan_copy_path`: Docker's `container.ResolvePath` split of a requested path — the parent is
  resolved in-root with every symlink followed, the last component is *not* followed unless
  the path ends in "/" or "/." — plus the names the stat header and the tar entries get.
- `go_file_mode`: a `st_mode` as Go's `os.FileMode` bits (the `mode` of
  `X-Docker-Container-Path-Stat`, which the docker CLI decodes with `IsDir()`).
- `classify_changes`: the overlay upper dir's entries as Docker's `FilesystemChange` list
  (Kind 0 modified "C", 1 added "A", 2 deleted "D").
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace

from engine.core.errors import InvalidArgument

CHANGE_MODIFIED = 0
CHANGE_ADDED = 1
CHANGE_DELETED = 2
CHANGE_LETTERS = {CHANGE_MODIFIED: "C", CHANGE_ADDED: "A", CHANGE_DELETED: "D"}

# Mount points runc makes in the upper dir at every start (Docker keeps them in its "-init"
# layer, so they never show in `docker diff`).
INIT_PATHS = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc",
                        "/sys", "/dev/console", "/dev/pts", "/dev/shm", "/dev/mqueue"})

# Go's os.FileMode type bits (io/fs).
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MAX_PATH = 4096


@dataclass(frozen=True)
class CopyPath:
    """Where a requested container path lives, before any I/O.

    `parent` is resolved in-root following every symlink; `entry` is the last component,
    looked up without following it (None: the parent itself is the resource, as for
    "/dir/" or "/dir/."). `name` goes in the stat header, `rebase` names the tar's top entry.
    """

    requested: str
    parent: str
    entry: str | None
    name: str
    rebase: str


def plan_copy_path(path: str) -> CopyPath:
    """Split a container path the way Docker's ResolvePath does. Raises InvalidArgument."""
    if not path:
        raise InvalidArgument("path is required", hint="name a path inside the container")
    if "\x00" in path or len(path.encode(errors="surrogateescape")) > MAX_PATH:
        raise InvalidArgument(f"invalid path {path[:80]!r}",
                              hint="use a path without NUL bytes, at most 4096 bytes long")
    cleaned = posixpath.normpath(posixpath.join("/", path))
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    # archive.PreserveTrailingDotOrSeparator
    if path.endswith("/.") and not cleaned.endswith("/."):
        cleaned = cleaned.rstrip("/") + "/."
    elif path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    parent, base = cleaned.rsplit("/", 1)
    parent = parent or "/"
    name = _go_base(cleaned)
    rebase = "." if name == "/" else name
    if base in ("", "."):
        return CopyPath(path, parent if base == "." else cleaned.rstrip("/") or "/", None,
                        name, rebase)
    return CopyPath(path, parent, base, name, rebase)


def mount_covering(path: str, targets: Iterable[str]) -> str | None:
    """The mount destination (volume, bind, tmpfs) that `path` is at or below, if any; the
    deepest one wins. Both sides are container paths; they are compared lexically, cleaned."""
    clean = posixpath.normpath(posixpath.join("/", path))
    best: str | None = None
    for target in targets:
        t = posixpath.normpath(posixpath.join("/", target))
        if t == "/":
            continue
        if (clean == t or clean.startswith(t + "/")) and (best is None or len(t) > len(best)):
            best = t
    return best


def plan_in_mount(plan: CopyPath, target: str) -> CopyPath:
    """`plan`, a container path at or below the mount at `target`, as a path inside the
    mount's own tree (whose root is the mount point). The names shown stay as asked."""
    full = plan.parent if plan.entry is None else posixpath.join(plan.parent, plan.entry)
    rel = posixpath.relpath(posixpath.normpath(full), posixpath.normpath(target))
    if rel == ".":
        return replace(plan, parent="/", entry=None)
    inner = "/" + rel
    if plan.entry is None:
        return replace(plan, parent=inner)
    return replace(plan, parent=posixpath.dirname(inner))


def plan_resolved(plan: CopyPath, resolved: str) -> CopyPath:
    """`plan` with its parent replaced by where it resolved to (`resolved`: the container
    path of the resource, its parent's symlinks followed, its entry not)."""
    if plan.entry is None:
        return replace(plan, parent=resolved)
    return replace(plan, parent=posixpath.dirname(resolved))


def _go_base(path: str) -> str:
    """filepath.Base: trailing slashes removed, "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def go_file_mode(st_mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode (permission bits plus Go's type bits)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {stat.S_IFDIR: MODE_DIR, stat.S_IFLNK: MODE_SYMLINK, stat.S_IFIFO: MODE_NAMED_PIPE,
             stat.S_IFSOCK: MODE_SOCKET, stat.S_IFBLK: MODE_DEVICE,
             stat.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE}.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def tar_member_name(rebase: str, relative: str) -> str:
    """The name of an exported entry: the tar's top entry is `rebase`, the rest below it."""
    if not relative:
        return rebase
    return f"{rebase}/{relative}"


# -- diff ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpperEntry:
    """One entry of the overlay upper dir, as the driver saw it.

    `kind`: "whiteout" (char device 0:0), "opaque" (a directory with
    trusted.overlay.opaque=y), "dir" or "file" (anything else). `in_lower`: the path exists in
    the image's layers. `meta_changed`: a directory whose mode or owner differs from the
    image's (for a directory that is only there because something below it changed, False).
    """

    path: str
    kind: str
    in_lower: bool
    meta_changed: bool = False


def classify_changes(entries: Iterable[UpperEntry],
                     ignored: frozenset[str] = INIT_PATHS) -> list[tuple[str, int]]:
    """Docker's change list for a container, sorted by path.

    A whiteout is a deletion; an entry absent from the image is an addition, one present is a
    modification. A directory of the image copied up only because something below it
    changed is a modification only when something below it is reported (or its mode or
    owner changed), so runc's own mount points (`ignored`) leave no trace. An opaque directory
    replaced a directory of the image: a modification (Docker's overlay walker calls it a
    deletion, although the directory is still there).
    """
    kept = [e for e in entries if e.path not in ignored and e.path != "/"]
    changes: dict[str, int] = {}
    for e in kept:
        if e.kind == "whiteout":
            changes[e.path] = CHANGE_DELETED
        elif not e.in_lower:
            changes[e.path] = CHANGE_ADDED
        elif e.kind == "dir" and not e.meta_changed:
            continue  # decided below, once we know whether anything under it changed
        else:
            changes[e.path] = CHANGE_MODIFIED
    for path in list(changes):
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in changes:
            changes[parent] = CHANGE_MODIFIED
            parent = posixpath.dirname(parent)
    return sorted(changes.items())
