"""Signed checkpoints: an anchor of the chain head that lives outside the database.

I/O: none (the key and checkpoint files are read and written by the CLI, `engine/cli/audit.py`).
Signing uses Ed25519 from the `cryptography` package.

The hash chain (`events/hashing.py`) shows that no event was altered *relative to the ones
around it*; someone who can write the database can still rewrite the whole chain from the
altered event on, recomputing every hash. A checkpoint closes that gap: it records
`(seq, hash)` of the head at some moment, signed with a key the operator keeps away from the
database. `check_against` then says whether the log still holds exactly that event at that
seq — a rewritten chain produces a different hash there, and a forged checkpoint does not
verify under the operator's key.
"""

from __future__ import annotations

import base64
import hashlib

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "check_against",
    "decode",
    "encode",
    "key_id",
    "new_private_key",
    "public_key_of",
    "sign",
    "verify_signature",
]

FORMAT = "shipslog-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is malformed, forged, or does not match the log."""


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    seq: int
    hash: str  # the chain hash of event `seq`
    first_hash: str  # the hash of event 1: names the log the checkpoint belongs to
    created_ns: int
    key_id: str  # sha256 of the raw public key, first 16 hex digits
    public_key: str  # base64 of the raw 32-byte Ed25519 public key
    signature: str = ""  # base64 Ed25519 signature over `signed_bytes()`

    def signed_bytes(self) -> bytes:
        return (f"{self.format}\n{self.seq}\n{self.hash}\n{self.first_hash}\n"
                f"{self.created_ns}\n{self.key_id}\n").encode("ascii")


def new_private_key() -> bytes:
    """A fresh key as PEM (PKCS#8, unencrypted): the bytes the CLI writes to a 0600 file."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_private(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"not a usable private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError("the checkpoint key is not an Ed25519 key")
    return key


def public_key_of(pem: bytes) -> bytes:
    """The raw 32-byte public key of a PEM private key."""
    return _load_private(pem).public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def sign(pem: bytes, *, seq: int, hash: str, first_hash: str, created_ns: int) -> Checkpoint:
    key = _load_private(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    unsigned = Checkpoint(seq=seq, hash=hash, first_hash=first_hash, created_ns=created_ns,
                          key_id=key_id(raw), public_key=base64.b64encode(raw).decode())
    signature = key.sign(unsigned.signed_bytes())
    return msgspec.structs.replace(unsigned, signature=base64.b64encode(signature).decode())


def verify_signature(cp: Checkpoint, trusted_public: bytes | None = None) -> None:
    """Raise CheckpointError unless `cp` is signed by `trusted_public` (or, when none is given,
    by the key it names itself — which only shows the file is intact, not who made it)."""
    if cp.format != FORMAT:
        raise CheckpointError(f"unknown checkpoint format {cp.format!r}")
    try:
        embedded = base64.b64decode(cp.public_key, validate=True)
        signature = base64.b64decode(cp.signature, validate=True)
    except ValueError:
        raise CheckpointError("the checkpoint's key or signature is not base64") from None
    raw = embedded if trusted_public is None else trusted_public
    if trusted_public is not None and embedded != trusted_public:
        raise CheckpointError(
            f"the checkpoint was signed by key {cp.key_id}, not by the trusted key "
            f"{key_id(trusted_public)}")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, cp.signed_bytes())
    except (InvalidSignature, ValueError):
        raise CheckpointError("the checkpoint's signature does not verify: the file was "
                              "altered or forged") from None


def check_against(cp: Checkpoint, *, hash_at_seq: str | None, first_hash: str) -> None:
    """Does the log still hold the checkpointed event? `hash_at_seq` is the log's stored hash of
    event `cp.seq` (None when the log is shorter). Raises CheckpointError naming the problem."""
    if first_hash != cp.first_hash:
        raise CheckpointError(
            f"the log's first event has hash {first_hash[:16]}…, the checkpoint says "
            f"{cp.first_hash[:16]}…: the chain was rewritten from the start (or this is "
            "another engine's log)")
    if hash_at_seq is None:
        raise CheckpointError(f"event {cp.seq} named by the checkpoint is missing: the log "
                              "was truncated")
    if hash_at_seq != cp.hash:
        raise CheckpointError(
            f"event {cp.seq} has hash {hash_at_seq[:16]}…, the checkpoint says "
            f"{cp.hash[:16]}…: the chain was rewritten at or before event {cp.seq}")


def encode(cp: Checkpoint) -> bytes:
    return msgspec.json.format(msgspec.json.encode(cp), indent=2) + b"\n"


def decode(data: bytes) -> Checkpoint:
    try:
        return msgspec.json.decode(data, type=Checkpoint)
    except msgspec.MsgspecError as exc:
        raise CheckpointError(f"not a shipslog checkpoint: {exc}") from None
