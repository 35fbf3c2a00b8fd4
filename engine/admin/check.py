"""`system check [--repair]`: find on-disk damage the log cannot see (RELIABILITY F-05, F-15;
podman `331-system-check.bats`), and with `--repair` move damaged objects aside.

What is checked, against the projection of the log:

- every blob an image refers to: present, and re-hashing to its digest;
- every layer an image refers to: its directory present, and its files equal to what
  unpacking its blob again gives (names, types, modes, owners, sizes, contents, link targets);
- every container: its rootfs directory present once prepared, and, while the runtime holds
  it, its bundle's `config.json` present and readable JSON;
- the log itself: `PRAGMA integrity_check`;
- operations whose rollback failed (`needs cleanup`, F-11), listed so that the user sees them;
- with the daemon up: the runtime's view (runc's state, the monitors' exit files) against the
  projection's, each disagreement reported (issue 15: a dead container the log still shows
  `Up` was "no damage found"), and the outcomes the log has refused so far and the supervisor
  is still retrying.

Repair never deletes: a damaged blob, layer directory or bundle config is renamed into
`<root>/quarantine/`, which makes the object "missing" to the engine (so `rmi -f` and
`rm -f` work on it, and a re-pull or re-load brings it back). The caller records each repair
as a `ReconcileDifferenceFound` event (nothing is ever fixed silently).

Only positive evidence is damage: a path that is not there (ENOENT), bytes that hash to
another digest, a tree that differs from a fresh unpack, a config that does not decode. A
check that cannot read or verify (ENOSPC while unpacking to compare, EIO, EMFILE, EACCES…)
says "could not check <object>: <reason>" and is never quarantined (issue 15 item 3: on a
full disk a healthy layer was quarantined and `run` then failed). Each move writes a
`<dest>.origin` note first, so `restore_quarantined` (`system check --restore`) can put
everything back.

I/O: reads blobs, layer directories, bundles and the SQLite file; unpacks layers into a
staging directory under `<root>/tmp/` (removed afterwards); renames into `quarantine/`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from engine.core.errors import ShipslogError
from engine.core.image_reference import digest_hex
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.shell.paths import Paths
from projections.state import EngineState

RUNTIME_STATUSES = ("running", "paused", "restarting")


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # "blob", "layer", "container", "database"
    subject: str  # digest, container id, or the database path
    problem: str
    action: str = ""  # "quarantined: <path>", or "" when only reported
    path: str = ""  # the damaged file or directory
    uncertain: bool = False  # the check could not conclude: never repaired


class Uncheckable(Exception):
    """Reading or verifying an object failed for a reason that says nothing about it."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.errno is not None else exc.strerror
    return str(getattr(exc, "message", "") or exc)


def _uncertain(kind: str, subject: str, exc: BaseException, path: str = "") -> Finding:
    return Finding(kind=kind, subject=subject, uncertain=True, path=path,
                   problem=f"could not check {kind} {subject}: {_reason(exc)}")


def _exists(path: Path) -> bool:
    """Whether `path` is there; only ENOENT/ENOTDIR count as "not there" (an EACCES or EIO
    from `is_dir()` would otherwise read as "missing")."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise Uncheckable(_reason(exc)) from exc
    return True


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    needs_cleanup: list[dict[str, str]] = field(default_factory=list)
    integrity: str = "ok"


def run_check(paths: Paths, state: EngineState, *, repair: bool) -> Report:
    """Check everything, and quarantine what is damaged when `repair`."""
    content, layers = ContentStore(paths.root), LayerStore(paths.root)
    report = Report()
    report.findings += check_images(paths, state, content, layers)
    report.findings += check_containers(paths, state)
    report.integrity = integrity_check(paths.db)
    if report.integrity != "ok":
        report.findings.append(Finding(kind="database", subject=str(paths.db),
                                       problem=f"integrity_check: {report.integrity}"))
    report.needs_cleanup = [
        {"OpId": op.op_id, "Kind": op.kind, "Target": op.target, "Error": op.error}
        for op in state.operations.values() if op.needs_cleanup]
    if repair:
        report.findings = [quarantine(paths, f) for f in report.findings]
    return report


def fold_log(db: Path) -> EngineState:
    """The state folded from a log file, read-only (the daemon stopped). Raises what SQLite
    or the store raise on a damaged file."""
    from events.store import EventStore
    from projections.fold import fold

    store: EventStore[Any] = EventStore.open(db, readonly=True)
    try:
        return fold(store.read())
    finally:
        store.close()


def check_offline(paths: Paths) -> Report:
    """The check with the daemon stopped (`shipslog --root DIR system check`), and the only
    one possible when the log is too damaged for the daemon to start: SQLite's integrity
    check first; the objects are checked only when the log can still be folded. Repairs
    need the daemon (they are recorded in the log), so this only reports."""
    from events.store import StoreError

    if not paths.db.exists():
        return Report(findings=[Finding(kind="database", subject=str(paths.db),
                                        problem="missing", path=str(paths.db))],
                      integrity="missing")
    report = Report(integrity=integrity_check(paths.db))
    if report.integrity != "ok":
        report.findings.append(Finding(kind="database", subject=str(paths.db),
                                       problem=f"integrity_check: {report.integrity}",
                                       path=str(paths.db)))
    try:
        state = fold_log(paths.db)
    except (sqlite3.Error, ShipslogError, StoreError, ValueError) as exc:
        report.findings.append(Finding(kind="database", subject=str(paths.db),
                                       problem=f"the log cannot be read: {exc}",
                                       path=str(paths.db)))
        return report
    online = run_check(paths, state, repair=False)
    report.findings = online.findings if report.integrity == "ok" else \
        report.findings + [f for f in online.findings if f.kind != "database"]
    report.needs_cleanup = online.needs_cleanup
    return report


# -- images ---------------------------------------------------------------------------------


def check_images(paths: Paths, state: EngineState, content: ContentStore,
                 layers: LayerStore) -> list[Finding]:
    found: list[Finding] = []
    good_blobs: dict[str, bool] = {}
    seen_layers: set[str] = set()
    for image in sorted(state.images.values(), key=lambda i: i.id):
        for digest in image.layer_digests:
            if digest not in good_blobs:
                try:
                    problem = blob_problem(content, digest)
                except Uncheckable as exc:
                    found.append(_uncertain("blob", digest, exc, str(content.path(digest))))
                    good_blobs[digest] = False
                    continue
                good_blobs[digest] = problem == ""
                if problem:
                    found.append(Finding(kind="blob", subject=digest, problem=problem,
                                         path=str(content.path(digest))))
        pairs = zip(image.layers, image.layer_digests or [""] * len(image.layers), strict=False)
        for diff_id, blob in pairs:
            if diff_id in seen_layers:
                continue
            seen_layers.add(diff_id)
            try:
                problem = layer_problem(paths, layers, content, diff_id,
                                        blob if good_blobs.get(blob) else "")
            except Uncheckable as exc:
                found.append(_uncertain("layer", diff_id, exc,
                                        str(Path(layers.path(diff_id)).parent)))
                continue
            if problem:
                found.append(Finding(kind="layer", subject=diff_id, problem=problem,
                                     path=str(Path(layers.path(diff_id)).parent)))
    return found


def blob_problem(content: ContentStore, digest: str) -> str:
    """"" when the blob is there and hashes to its digest; raises `Uncheckable` when it
    cannot be read to the end."""
    if not _exists(content.path(digest)):
        return "blob missing"
    try:
        return "" if content.verify(digest) else "blob content does not match its digest"
    except (OSError, ShipslogError) as exc:
        raise Uncheckable(_reason(exc)) from exc


def layer_problem(paths: Paths, layers: LayerStore, content: ContentStore, diff_id: str,
                  blob: str) -> str:
    """"" when the layer directory is there and (if its blob is good) equals a fresh unpack;
    raises `Uncheckable` when the comparison cannot be made (the unpack into scratch space
    fails on a full disk, a file cannot be read)."""
    diff = Path(layers.path(diff_id))
    if not _exists(diff):
        return "layer directory missing"
    if not diff.is_dir():
        return "layer directory is not a directory"
    if not blob:
        return ""  # nothing trustworthy to compare with: the blob finding says why
    scratch = paths.root / "tmp" / f"check-{secrets.token_hex(8)}"
    try:
        scratch.mkdir(parents=True, mode=0o700)
        fresh = LayerStore(scratch).unpack(content.path(blob), expected_diff_id=diff_id)
        return tree_difference(Path(fresh.path), diff)
    except (ShipslogError, OSError) as exc:
        raise Uncheckable(_reason(exc)) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _entries(root: Path) -> Iterator[tuple[str, tuple[object, ...]]]:
    """(relative path, what matters about it) for every entry under `root`, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = ""
            if stat.S_ISREG(st.st_mode):
                extra = _sha256_file(full)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            yield rel, (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, extra)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_difference(expected: Path, actual: Path) -> str:
    """"" if the trees are equal, else the first difference in words."""
    want, have = dict(_entries(expected)), dict(_entries(actual))
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            return f"layer file missing: /{rel}"
        if rel not in want:
            return f"layer file not in its blob: /{rel}"
        if want[rel] != have[rel]:
            return f"layer file differs from its blob: /{rel}"
    return ""


# -- containers -----------------------------------------------------------------------------


def check_containers(paths: Paths, state: EngineState) -> list[Finding]:
    found = []
    for c in sorted(state.containers.values(), key=lambda c: c.id):
        try:
            found += _container_findings(paths, c)
        except Uncheckable as exc:
            found.append(_uncertain("container", c.id, exc))
    return found


def _container_findings(paths: Paths, c: Any) -> list[Finding]:
    found = []
    upper = Path(c.rootfs).parent / "upper" if c.rootfs else None
    if upper is not None and c.status not in ("creating", "removing") and not _exists(upper):
        found.append(Finding(kind="container", subject=c.id,
                             problem="rootfs directory missing", path=str(upper)))
    if not _exists(paths.exec_root / "runc" / c.id / "state.json"):
        return found  # no runtime state: the next start writes a fresh bundle
    config = paths.bundle_dir(c.id) / "config.json"
    problem = ""
    try:
        msgspec.json.decode(config.read_bytes())
    except FileNotFoundError:
        problem = "bundle config.json missing"
    except msgspec.DecodeError as exc:
        problem = f"bundle config.json unreadable: {exc}"
    except OSError as exc:
        raise Uncheckable(_reason(exc)) from exc
    if problem:
        found.append(Finding(kind="container", subject=c.id, problem=problem,
                             path=str(config)))
    return found


# -- the runtime against the projection -----------------------------------------------------


def runtime_disagreements(state: EngineState, runtime_status: dict[str, str],
                          exit_codes: dict[str, int], waiting: set[str]) -> list[Finding]:
    """Where the runtime and the log disagree about a container's process. `runtime_status`:
    runc's status by container id (absent: runc knows no such container); `exit_codes`: what
    the monitors recorded for containers that ended; `waiting`: containers with an outcome
    the supervisor is still trying to record."""
    found = []
    for c in sorted(state.containers.values(), key=lambda c: c.id):
        logged = c.status in ("running", "paused")
        seen = runtime_status.get(c.id, "")
        alive = seen in ("running", "paused")
        if logged == alive or c.status in ("creating", "removing", "restarting"):
            continue
        problem = f"the log says {c.status}, the runtime says {seen or 'no such container'}"
        if not alive and c.id in exit_codes:
            problem += f" (its monitor recorded exit code {exit_codes[c.id]})"
        if c.id in waiting:
            problem += "; its outcome is waiting to be recorded"
        found.append(Finding(kind="runtime", subject=c.id, problem=problem))
    return found


# -- the log --------------------------------------------------------------------------------


def integrity_check(db: Path) -> str:
    """SQLite's own check, on a separate read-only connection (the writer is not paused)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"cannot run: {exc}"
    text = "; ".join(str(r[0]) for r in rows)
    return text or "no answer"


# -- repair ---------------------------------------------------------------------------------


def quarantine(paths: Paths, f: Finding) -> Finding:
    """Rename the damaged object into `<root>/quarantine/<kind>/`; missing ones stay missing,
    and nothing moves on uncertain evidence. The `.origin` note is written (and fsynced)
    before the move: a move that could not be undone is not made."""
    src = Path(f.path) if f.path else None
    if f.uncertain or f.kind == "database" or src is None or not os.path.lexists(src):
        return f
    if f.kind == "layer":
        name = digest_hex(f.subject)
    elif f.kind == "blob":
        name = digest_hex(f.subject)
    else:
        name = f"{f.subject}-{src.name}"
    qdir = paths.root / "quarantine" / f.kind
    qdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = qdir / f"{name}.{secrets.token_hex(4)}"
    note = Origin(kind=f.kind, subject=f.subject, path=str(src))
    try:
        _write_note(dest.with_name(dest.name + ORIGIN_SUFFIX), note)
    except OSError as exc:
        return msgspec.structs.replace(
            f, problem=f"{f.problem}; not quarantined: could not write {ORIGIN_SUFFIX} "
                       f"note: {_reason(exc)}")
    os.rename(src, dest)
    return msgspec.structs.replace(f, action=f"quarantined: {dest}")


# -- restore --------------------------------------------------------------------------------

ORIGIN_SUFFIX = ".origin"


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """Where a quarantined object came from (the note beside it)."""

    kind: str
    subject: str
    path: str


class Restored(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    subject: str
    path: str  # where it is back
    quarantined: str  # where it was
    problem: str = ""  # why it stayed in quarantine ("" when restored)


def _write_note(path: Path, note: Origin) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(note))
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def unquarantine(f: Finding) -> None:
    """Undo one `quarantine` whose record the log refused."""
    dest = Path(f.action.split(": ", 1)[1])
    os.rename(dest, f.path)
    dest.with_name(dest.name + ORIGIN_SUFFIX).unlink(missing_ok=True)


def restore_quarantined(paths: Paths) -> list[Restored]:
    """Move every quarantined object back where it came from (`system check --restore`).
    One whose place is taken again (a re-pull brought the object back) stays, and says so."""
    out = []
    for note_path in sorted((paths.root / "quarantine").glob(f"*/*{ORIGIN_SUFFIX}")):
        dest = note_path.with_name(note_path.name[:-len(ORIGIN_SUFFIX)])
        try:
            note = msgspec.json.decode(note_path.read_bytes(), type=Origin)
        except (OSError, msgspec.DecodeError) as exc:
            out.append(Restored(kind="unknown", subject=dest.name, path="",
                                quarantined=str(dest), problem=f"note unreadable: {exc}"))
            continue
        item = Restored(kind=note.kind, subject=note.subject, path=note.path,
                        quarantined=str(dest))
        if not os.path.lexists(dest):
            note_path.unlink(missing_ok=True)  # moved back by hand: nothing to do
            continue
        if os.path.lexists(note.path):
            out.append(msgspec.structs.replace(item, problem=f"{note.path} exists again"))
            continue
        try:
            os.rename(dest, note.path)
        except OSError as exc:
            out.append(msgspec.structs.replace(item, problem=_reason(exc)))
            continue
        note_path.unlink(missing_ok=True)
        out.append(item)
    return out


def finding_json(f: Finding) -> dict[str, str]:
    """A finding in the API's (and the CLI's `--root`) JSON shape."""
    return {"Kind": f.kind, "Subject": f.subject, "Problem": f.problem, "Action": f.action,
            "Path": f.path, "Uncertain": f.uncertain}  # type: ignore[dict-item]
