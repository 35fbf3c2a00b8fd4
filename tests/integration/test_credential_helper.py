"""Docker credential helpers (`credHelpers`, `credsStore`), run through
engine/drivers/host/credhelper.py: a helper program on PATH answers, a failing one is
nothing found. A shell-script helper stands in for docker-credential-pass and friends.

I/O: writes a config and a helper script under tmp_path and runs the helper (no kernel).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.registry.auth import CredentialStore


def _helper(bindir: Path, name: str, body: str) -> None:
    bindir.mkdir(exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)


def _store(tmp_path: Path, doc: dict[str, object]) -> CredentialStore:
    docker = tmp_path / "docker-config.json"
    docker.write_text(json.dumps(doc))
    return CredentialStore(tmp_path / "ours.json", [docker])


def test_a_credential_helper_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path / "bin", "fake", 'read server\n'
            'printf \'{"ServerURL":"%s","Username":"ann","Secret":"s3cret"}\' "$server"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    creds = _store(tmp_path, {"credHelpers": {"registry.example": "fake"}}).lookup(
        "registry.example")
    assert creds is not None and (creds.username, creds.password) == ("ann", "s3cret")


def test_an_identity_token_from_the_store(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path / "bin", "tok", 'echo \'{"Username":"<token>","Secret":"tk"}\'\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    creds = _store(tmp_path, {"credsStore": "tok"}).lookup("registry.example")
    assert creds is not None and creds.identity_token == "tk" and not creds.username


def test_a_failing_or_missing_helper_finds_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path / "bin", "broken", "echo 'credentials not found' >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert _store(tmp_path, {"credsStore": "broken"}).lookup("registry.example") is None
    assert _store(tmp_path, {"credsStore": "absent"}).lookup("registry.example") is None
    assert _store(tmp_path, {"credsStore": "../evil"}).lookup("registry.example") is None
