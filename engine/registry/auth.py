"""Registry credentials: where they come from and where our own login store keeps them.

I/O: reads `config.json` files (Docker's `~/.docker/config.json` and our
`~/.shipslog/config.json`, same format), runs `docker-credential-<helper> get` for
`credHelpers` / `credsStore`, and writes our login store (0600, replaced atomically).

Order of lookup (the daemon side; the CLI sends what it has as `X-Registry-Auth`, which wins):
our login store, then Docker's `auths` (base64 `user:password` in `auth`, or `username` and
`password`, or `identitytoken`), then a credential helper. Passwords never enter the event log
(DESIGN.md, "Secrets"); only the username may be logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import InvalidArgument
from engine.drivers.host.credhelper import helper_get
from engine.registry.challenge import auth_keys


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token (Docker's `identitytoken`)
    registry_token: str = ""  # a bearer token to use as is (Docker's `registrytoken`)

    def __repr__(self) -> str:  # never print a secret into a log or a traceback
        return f"Credentials(username={self.username!r})"

    @property
    def empty(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)


def from_registry_auth(header: str | None) -> Credentials | None:
    """Decode Docker's `X-Registry-Auth` (base64url JSON); None when absent or empty."""
    if not header:
        return None
    raw = header.strip()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        doc = json.loads(data or b"{}")
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Auth header",
                              "log in again: shipslog login REGISTRY") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header", "log in again")
    creds = Credentials(username=str(doc.get("username") or ""),
                        password=str(doc.get("password") or ""),
                        identity_token=str(doc.get("identitytoken") or ""),
                        registry_token=str(doc.get("registrytoken") or ""))
    return None if creds.empty else creds


def from_registry_config(header: str | None, domain: str) -> Credentials | None:
    """Docker's `X-Registry-Config` (a build's: base64url JSON mapping each registry to an
    auth config, as the CLI's config file holds them): the entry for `domain`, or None."""
    if not header:
        return None
    raw = header.strip()
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Config header",
                              "log in again: docker login REGISTRY") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Config header", "log in again")
    for key in auth_keys(domain):
        entry = doc.get(key)
        if isinstance(entry, dict):
            creds = _decode_entry(entry)
            if creds is not None:
                return creds
    return None


def _decode_entry(entry: Mapping[str, Any]) -> Credentials | None:
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=True)
            user, _, password = raw.decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        creds = Credentials(username=user, password=password,
                            identity_token=str(entry.get("identitytoken") or ""))
        return None if creds.empty else creds
    creds = Credentials(username=str(entry.get("username") or ""),
                        password=str(entry.get("password") or ""),
                        identity_token=str(entry.get("identitytoken") or ""))
    return None if creds.empty else creds


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def run_helper(helper: str, server: str) -> Credentials | None:
    """`docker-credential-<helper> get`: server URL on stdin, JSON on stdout (run by
    engine/drivers/host/credhelper.py)."""
    answer = helper_get(helper, server)
    if answer is None:
        return None
    try:
        doc = json.loads(answer)
    except ValueError:
        return None
    user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=user, password=secret) if user else None


class CredentialStore:
    """Credential lookup over config files; `login_file` is ours and is the one written."""

    def __init__(self, login_file: Path, docker_configs: Iterable[Path] = ()) -> None:
        self.login_file = login_file
        self.docker_configs = list(docker_configs)

    @classmethod
    def default(cls) -> CredentialStore:
        home = Path(os.path.expanduser("~"))
        ours = Path(os.environ.get("SHIPSLOG_CONFIG") or home / ".shipslog") / "config.json"
        docker = Path(os.environ.get("DOCKER_CONFIG") or home / ".docker") / "config.json"
        return cls(ours, [docker])

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def lookup(self, domain: str) -> Credentials | None:
        keys = auth_keys(domain)
        for path in (self.login_file, *self.docker_configs):
            doc = self._read(path)
            auths = _section(doc, "auths")
            for key in keys:
                entry = auths.get(key)
                if isinstance(entry, dict):
                    creds = _decode_entry(entry)
                    if creds is not None:
                        return creds
            helpers = _section(doc, "credHelpers")
            for key in keys:
                if key in helpers:
                    return run_helper(str(helpers[key]), key)
            if doc.get("credsStore"):
                for key in keys[:1]:
                    creds = run_helper(str(doc["credsStore"]), key)
                    if creds is not None:
                        return creds
        return None

    def save(self, domain: str, creds: Credentials) -> None:
        doc = self._read(self.login_file)
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        doc.setdefault("auths", {})[auth_keys(domain)[0]] = {"auth": token}
        self._write(doc)

    def erase(self, domain: str) -> bool:
        doc = self._read(self.login_file)
        auths = doc.get("auths") or {}
        found = [k for k in auth_keys(domain) if k in auths]
        for k in found:
            del auths[k]
        if found:
            self._write(doc)
        return bool(found)

    def _write(self, doc: dict[str, Any]) -> None:
        self.login_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.login_file.with_name(self.login_file.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent="\t")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, self.login_file)
