"""Secrets stay out of the log: keyed digests of env values, and the 0600 secret store."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from engine.core.errors import InvalidArgument, NotFound
from engine.drivers.secrets.store import KEY_FILE, SecretStore
from events.redact import RedactError, keyed_digest, redact_env
from events.values import EnvEntry

KEY = b"k" * 32


def test_keyed_digest_is_hmac_sha256() -> None:
    expected = hmac.new(KEY, b"hunter2", hashlib.sha256).hexdigest()
    assert keyed_digest(KEY, "hunter2") == expected
    assert keyed_digest(b"other" * 8, "hunter2") != expected


def test_redact_env_keeps_keys_and_order_and_hides_values() -> None:
    entries = redact_env(KEY, ["DB_PASSWORD=canary-XYZ", "EMPTY=", "UNSET", "A=b=c"])
    assert entries == (
        EnvEntry("DB_PASSWORD", keyed_digest(KEY, "canary-XYZ")),
        EnvEntry("EMPTY", keyed_digest(KEY, "")),
        EnvEntry("UNSET", ""),
        EnvEntry("A", keyed_digest(KEY, "b=c")),
    )
    assert "canary" not in repr(entries)


@pytest.mark.parametrize(
    "entry",
    ["HOME=/x\nroot::0:0::/:/bin/sh", "HOME=/x\r", "A=b\x00", "BAD\nKEY=v", "K\x00=v", "=v"],
)
def test_control_bytes_and_empty_keys_are_refused(entry: str) -> None:
    # RELIABILITY I-03: the real bytes, not the two-character escape.
    with pytest.raises(RedactError) as info:
        redact_env(KEY, [entry])
    assert info.value.hint


def test_two_character_backslash_n_is_allowed() -> None:
    assert redact_env(KEY, ["A=x\\ny"])[0].key == "A"


def test_values_may_span_lines_as_docker_allows(tmp_path: Path) -> None:
    # A PEM key passed with -e (Docker accepts it); only HOME's value goes into a file.
    pem = "TLS_KEY=-----BEGIN PRIVATE KEY-----\r\nMIIE\n-----END PRIVATE KEY-----"
    assert redact_env(KEY, [pem]) == (EnvEntry("TLS_KEY", keyed_digest(KEY, pem[8:])),)
    store = SecretStore(tmp_path / "s")
    store.put("c" * 64, [pem])
    assert store.get("c" * 64) == [pem]


def test_secret_store_modes_and_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    store = SecretStore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    key = store.key()
    assert len(key) == 32
    assert stat.S_IMODE((root / KEY_FILE).stat().st_mode) == 0o600
    cid = "a" * 64
    store.put(cid, ["DB_PASSWORD=canary-XYZ", "X"])
    assert stat.S_IMODE((root / cid).stat().st_mode) == 0o600
    assert store.get(cid) == ["DB_PASSWORD=canary-XYZ", "X"]
    assert SecretStore(root).key() == key  # loaded, not regenerated
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_wipe_and_wipe_all(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "s")
    key = store.key()
    store.put("registry-auth", ["TOKEN=abc"])
    store.put("b" * 64, ["P=q"])
    assert store.wipe("registry-auth") is True
    assert store.wipe("registry-auth") is False
    with pytest.raises(NotFound):
        store.get("registry-auth")
    assert store.wipe_all() == 1
    assert store.owners() == []
    assert store.key() == key


@pytest.mark.parametrize("owner", ["../x", ".", "..", "a/", "a.", "-x", "", "a" * 63 + "\n", "x"])
def test_owner_names_are_validated(tmp_path: Path, owner: str) -> None:
    store = SecretStore(tmp_path / "s")
    with pytest.raises(InvalidArgument):
        store.put(owner, ["A=b"])


def test_put_refuses_control_bytes(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "s")
    with pytest.raises(InvalidArgument):
        store.put("c1", ["A=b\x00c"])


def test_truncated_key_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "s")
    store.key()
    (tmp_path / "s" / KEY_FILE).write_bytes(b"")
    with pytest.raises(InvalidArgument):
        SecretStore(tmp_path / "s").key()
