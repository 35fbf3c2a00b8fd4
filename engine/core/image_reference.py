"""Image references: Docker's grammar (distribution/reference), parsed strictly before any I/O.

I/O: none (pure). `parse_reference("busybox")` gives
`Reference(domain="docker.io", path="library/busybox", tag="latest", digest="")`, whose
`.familiar` is `busybox:latest` and `.canonical` is `docker.io/library/busybox:latest`.

Grammar (distribution/reference `reference.go`):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]            host := domain-name | IPv4 | "[" IPv6 "]"
    path-component := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex           (sha256: exactly 64 lowercase hex)

Every pattern is ASCII-only and matched in full, so a Cyrillic homoglyph, a NUL or a trailing
newline never slips through (RELIABILITY I-01; CVE-2024-3727, CVE-2019-13139).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.core.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255  # distribution/reference NameTotalLengthMax

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}", re.ASCII)
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}", re.ASCII)
_HEX64_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+", re.ASCII)


class InvalidReference(InvalidArgument, ValueError):
    """A reference, digest or ID that does not match the grammar. HTTP 400 / exit 125."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint or "use NAME[:TAG][@sha256:DIGEST], e.g. busybox:latest")


def _shown(s: str) -> str:
    """Quote user input for an error message without echoing control bytes."""
    return repr(s[:80] + ("…" if len(s) > 80 else ""))


def validate_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:<64 lowercase hex>`, else raise InvalidReference.

    Only sha256 is accepted: it is the only algorithm the content store names blobs by, and a
    digest becomes a path component there (`sha256:../../x` must never reach the filesystem).
    """
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        if isinstance(digest, str) and _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(
                f"unsupported digest {_shown(digest)}", "only sha256 digests are supported"
            )
        raise InvalidReference(
            f"invalid digest {_shown(str(digest))}",
            "a digest is sha256: followed by 64 lowercase hex characters",
        )
    return digest


def digest_hex(digest: str) -> str:
    """The hex part of a validated sha256 digest (safe to use as a path component)."""
    return validate_digest(digest)[len("sha256:") :]


def is_full_id(s: str) -> bool:
    """True for a bare 64-hex image/container id."""
    return bool(_HEX64_RE.fullmatch(s))


@dataclass(frozen=True)
class Reference:
    """A normalised image reference. `tag` is "" only when a digest pins the image."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """`docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """`busybox`, `user/app`, `quay.io/x/y`: the name as Docker shows it."""
        # Keep the domain when dropping it would make the first component read as a domain
        # (docker.io/a.b/c must not become a.b/c, which names registry a.b).
        if self.domain == DEFAULT_DOMAIN and is_short_name(self.path):
            if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_REPO_PREFIX) :]
            return self.path
        return self.repository

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar(self) -> str:
        """`busybox:latest` (what `docker images` shows)."""
        return self.familiar_name + self._suffix()

    @property
    def canonical(self) -> str:
        """`docker.io/library/busybox:latest`."""
        return self.repository + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid tag {_shown(tag)}")
        return Reference(self.domain, self.path, tag, self.digest)

    def __str__(self) -> str:
        return self.canonical


def _split_domain(name: str) -> tuple[str, str]:
    # distribution/reference normalize.go splitDockerDomain: the first component is a domain
    # only if it contains "." or ":" or is "localhost", or has an uppercase letter.
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(s: str, *, default_tag: bool = True) -> Reference:
    """Parse a user-supplied reference the way `docker pull` does (ParseNormalizedNamed).

    With `default_tag` (the default) a reference without tag or digest gets `latest`.
    Raises InvalidReference for anything outside the grammar, before any I/O.
    """
    if not isinstance(s, str) or not s:
        raise InvalidReference("invalid reference format: empty reference")
    if not _PRINTABLE_ASCII.fullmatch(s):
        raise InvalidReference(
            f"invalid reference format: {_shown(s)} contains spaces, control or non-ASCII "
            "characters",
            "references are ASCII only; look-alike Unicode letters are refused",
        )
    if is_full_id(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings",
            "refer to an image by id with sha256:<id>, not as a repository name",
        )
    remainder, at, digest = s.partition("@")
    if at:
        validate_digest(digest)
    name, tag = remainder, ""
    # A ":" after the last "/" separates the tag; one before it belongs to a domain's port.
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(
                f"invalid reference format: invalid tag {_shown(tag)}",
                "a tag is 1-128 of [A-Za-z0-9_.-] and cannot start with '.' or '-'",
            )
    if not name:
        raise InvalidReference(f"invalid reference format: {_shown(s)} has no repository name")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidReference(f"invalid reference format: invalid domain {_shown(domain)}")
    if not _PATH_RE.fullmatch(path):
        if _PATH_RE.fullmatch(path.lower()):
            raise InvalidReference(
                f"invalid reference format: repository name ({path}) must be lowercase"
            )
        raise InvalidReference(
            f"invalid reference format: invalid repository name {_shown(path)}",
            "path components are lowercase [a-z0-9] joined by '.', '_', '__' or '-'",
        )
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    if default_tag and not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def is_short_name(s: str) -> bool:
    """True when `s` names no registry (e.g. `busybox`), so docker.io was assumed.

    Callers log this (RELIABILITY I-01, registries.conf short-name policy): a short name is
    resolved against Docker Hub, never against a search list that an attacker could squat.
    """
    first, sep, _ = s.partition("/")
    return not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    )
