"""The secret store: environment values that must never enter the event log.

I/O: files under `<root>/secrets/` (the caller passes that directory): a 0700 directory of
0600 files, one JSON list per owner (a container id, or a name such as `registry-auth`), plus
`hmac.key`, the random key that `events/redact.py` digests values with. The key lives outside
the database so the log alone reveals nothing (RELIABILITY S-08). Writes go to a temp file,
fsync, rename, fsync the directory: a crash leaves the old or the new file, never half of one.
`wipe` overwrites a file before unlinking it, a best effort on filesystems that rewrite in place.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import msgspec

from engine.core.errors import InvalidArgument, NotFound
from events.redact import RedactError, check_env

__all__ = ["SecretStore"]

KEY_FILE = "hmac.key"
KEY_BYTES = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")
# moby daemon/names/names.go; RELIABILITY I-02. Owner names become file names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def _check_owner(owner: str) -> str:
    if not (_HEX64.fullmatch(owner) or _NAME.fullmatch(owner)) or owner.endswith("."):
        raise InvalidArgument(
            f"invalid secret owner {owner[:80]!r}",
            "use a 64-hex id or a name matching [a-zA-Z0-9][a-zA-Z0-9_.-]+",
        )
    if owner == KEY_FILE or owner.endswith(".tmp"):
        raise InvalidArgument(f"secret owner {owner!r} is reserved", "choose another name")
    return owner


class SecretStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir honours umask and leaves an existing dir alone: force the mode either way.
        os.chmod(self.root, 0o700)
        self._key: bytes | None = None

    def key(self) -> bytes:
        """The HMAC key, created on first use (32 random bytes, 0600)."""
        if self._key is None:
            path = self.root / KEY_FILE
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._write(KEY_FILE, secrets.token_bytes(KEY_BYTES), exclusive=True)
                data = path.read_bytes()
            if len(data) != KEY_BYTES:
                # An empty or truncated key after a crash must not silently become a new key:
                # digests already in the log would stop matching (cf. balena meta-balena#121).
                raise InvalidArgument(
                    f"secret key {path} is {len(data)} bytes, expected {KEY_BYTES}",
                    "restore it from backup, or remove it to start a new key (old digests "
                    "will no longer match)",
                )
            self._key = data
        return self._key

    def put(self, owner: str, env: list[str]) -> None:
        for entry in env:
            try:
                check_env(entry)
            except RedactError as exc:
                raise InvalidArgument(exc.message, exc.hint) from None
        self._write(_check_owner(owner), msgspec.json.encode(list(env)))

    def get(self, owner: str) -> list[str]:
        path = self.root / _check_owner(owner)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no secrets stored for {owner}", "") from None
        return msgspec.json.decode(data, type=list[str])

    def owners(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.name != KEY_FILE and not p.name.endswith(".tmp")
        )

    def wipe(self, owner: str) -> bool:
        """Remove an owner's secrets; True if there were any."""
        path = self.root / _check_owner(owner)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        self._fsync_dir()
        return True

    def wipe_all(self) -> int:
        """Remove every owner's secrets (not the key). Returns how many were removed."""
        return sum(self.wipe(owner) for owner in self.owners())

    def _write(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        final = self.root / name
        tmp = self.root / f"{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if exclusive:
                # Two processes creating the key at once: the first link wins, both read it.
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    pass
                tmp.unlink()
            else:
                os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
