"""The content store: immutable blobs named by their sha256 digest.

I/O: filesystem. Layout under `root`:

    blobs/sha256/<hex>    verified blobs, read-only (0444), never rewritten
    ingest/<random>       blobs being written; swept at startup (RELIABILITY F-01)

A blob is streamed into `ingest/`, hashed as it is written, fsynced, checked against the
expected digest and size, and only then renamed under `blobs/`, so nothing unverified is ever
visible under a digest name (containerd `plugins/content/local/writer.go`; RELIABILITY I-11:
"no content visible under the final name; ingest cleaned").
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.core.image_reference import InvalidReference, digest_hex, validate_digest
from engine.drivers.host import failpoints

CHUNK = 1 << 20


class ContentError(ShipslogError):
    """Base for content-store errors; `.hint` says what the user can do."""


class DigestMismatch(ContentError, InvalidArgument):
    """The bytes did not match the expected digest or size (I-11). HTTP 400."""


class BlobTooLarge(ContentError, InvalidArgument):
    """More bytes than the caller's cap (I-12). HTTP 400."""


class BlobNotFound(ContentError, NotFound):
    """No blob with that digest. HTTP 404."""


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _chunks(stream: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(stream, "read", None)
    if read is None:
        yield from stream  # type: ignore[misc]
        return
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return
        yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Blobs by digest under `root/blobs/sha256/`. Safe for concurrent ingest of one digest."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        for d in (self.root, self.root / "blobs", self.blobs_dir, self.ingest_dir):
            d.mkdir(mode=0o700, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob lives (whether or not it exists). Validates the digest first."""
        return self.blobs_dir / digest_hex(digest)

    def has(self, digest: str) -> bool:
        try:
            return self.path(digest).is_file()
        except InvalidReference:
            return False

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading. Raises BlobNotFound."""
        try:
            return open(self.path(digest), "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found", "pull or load the image again") from None

    def read_bytes(self, digest: str, *, max_size: int) -> bytes:
        """Read a small blob (a JSON document) whole, refusing anything over `max_size`."""
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise BlobTooLarge(f"blob {digest} is larger than {max_size} bytes")
        return data

    def ingest(
        self,
        stream: BinaryIO | Iterable[bytes],
        expected_digest: str | None = None,
        expected_size: int | None = None,
        *,
        max_size: int | None = None,
    ) -> tuple[str, int]:
        """Stream `stream` into the store; return `(digest, size)`.

        Raises DigestMismatch / BlobTooLarge and leaves nothing behind when the bytes are not
        what the caller expected. Reading stops as soon as the stream passes the expected size
        or `max_size`, so an endless stream cannot fill the disk.
        """
        if expected_digest is not None:
            validate_digest(expected_digest)
        limit = expected_size if expected_size is not None else max_size
        h = hashlib.sha256()
        size = 0
        tmp = self.ingest_dir / secrets.token_hex(16)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                for chunk in _chunks(stream):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        if expected_size is not None:
                            raise DigestMismatch(
                                f"unexpected commit size: more than {expected_size} bytes",
                                "the source sent more data than its descriptor declared",
                            )
                        raise BlobTooLarge(f"blob is larger than the {max_size}-byte limit")
                    h.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    # a fixed moment mid-ingest for the kill -9 tests (issue 15 item 7)
                    failpoints.hit("ingest.after_chunk")
                os.fsync(fd)
            finally:
                os.close(fd)
            digest = "sha256:" + h.hexdigest()
            if expected_size is not None and size != expected_size:
                raise DigestMismatch(
                    f"unexpected commit size {size}, expected {expected_size}",
                    "the blob is truncated; try again",
                )
            if expected_digest is not None and digest != expected_digest:
                raise DigestMismatch(
                    f"unexpected commit digest {digest}, expected {expected_digest}",
                    "the blob is corrupt or was tampered with",
                )
            os.chmod(tmp, 0o444)
            final = self.path(digest)
            # rename() atomically replaces: a concurrent ingest of the same digest wrote the
            # same verified bytes, so either copy is correct.
            os.rename(tmp, final)
            _fsync_dir(self.blobs_dir)
            return digest, size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.filename is None:  # os.write names no file: say which (Go's "write PATH")
                exc.filename = str(tmp)
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def ingest_bytes(self, data: bytes, expected_digest: str | None = None) -> tuple[str, int]:
        return self.ingest([data], expected_digest, len(data))

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob (RELIABILITY F-05 integrity check)."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            for chunk in _chunks(f):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self) -> list[str]:
        """Every stored digest (names that are not 64-hex are ignored)."""
        out = []
        for entry in os.scandir(self.blobs_dir):
            d = "sha256:" + entry.name
            try:
                validate_digest(d)
            except InvalidReference:
                continue
            out.append(d)
        return sorted(out)

    def sweep_ingest(self) -> int:
        """Delete orphaned partial ingests (left by a crash). Call only when no ingest runs."""
        n = 0
        for entry in os.scandir(self.ingest_dir):
            try:
                os.unlink(entry.path)
                n += 1
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                pass
        return n
