"""Credentials: Docker's X-Registry-Auth header, config.json files (ours and Docker's), the
login store's mode, and that a password never shows in a repr."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from engine.core.errors import InvalidArgument
from engine.registry.auth import Credentials, CredentialStore, from_registry_auth


def header(doc: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_x_registry_auth() -> None:
    c = from_registry_auth(header({"username": "u", "password": "p",
                                   "serveraddress": "r:5000"}))
    assert c == Credentials(username="u", password="p")
    assert from_registry_auth("e30=") is None  # "{}": anonymous, as the docker CLI sends
    assert from_registry_auth("") is None and from_registry_auth(None) is None
    assert from_registry_auth(header({"identitytoken": "tok"})) == Credentials(
        identity_token="tok")
    with pytest.raises(InvalidArgument):
        from_registry_auth("!!!not base64!!!")
    with pytest.raises(InvalidArgument):
        from_registry_auth(header({}).replace("e30", "WzFd"))  # "[1]": not an object


def test_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(Credentials(username="u", password="s3cret"))


def test_lookup_order_and_formats(tmp_path: Path) -> None:
    ours = tmp_path / "shipslog" / "config.json"
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "reg:5000": {"username": "plain", "password": "pw2"},
        "tok.example": {"auth": base64.b64encode(b"x:").decode(), "identitytoken": "rt"},
        "broken.example": {"auth": "%%%"},
    }}))
    store = CredentialStore(ours, [docker])
    assert store.lookup("docker.io") == Credentials(username="hub", password="pw")
    assert store.lookup("reg:5000") == Credentials(username="plain", password="pw2")
    assert store.lookup("tok.example") == Credentials(username="x", password="",
                                                      identity_token="rt")
    assert store.lookup("broken.example") is None
    assert store.lookup("nowhere") is None
    store.save("reg:5000", Credentials(username="mine", password="pw3"))
    assert store.lookup("reg:5000") == Credentials(username="mine", password="pw3")  # ours first
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert store.erase("reg:5000") and not store.erase("reg:5000")
    assert store.lookup("reg:5000") == Credentials(username="plain", password="pw2")


def test_unreadable_config_is_ignored(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert CredentialStore(bad, [tmp_path / "missing.json"]).lookup("reg") is None
