"""Pure rules of the registry conversation: endpoints, auth challenges, scopes, and where
credentials may go.

I/O: none. The client (`client.py`) asks these functions before it sends anything:

- `endpoint(domain, insecure)` — `docker.io` is served at `registry-1.docker.io`; loopback
  (127.0.0.0/8, ::1, localhost) and hosts listed as insecure speak plain HTTP, all others HTTPS
  (Docker's default `InsecureRegistryCIDRs` is 127.0.0.0/8).
- `parse_challenge(header)` — RFC 7235 `WWW-Authenticate: Bearer realm="…",service="…",…`.
- `may_send_credentials(registry, url)` — RELIABILITY S-09: credentials for `reg.example` go
  to `reg.example` (any port), to its own token service (a host that shares its parent domain,
  as `auth.docker.io` for `registry-1.docker.io` or `gitlab.com` for `registry.gitlab.com`),
  and nowhere else: not to `reg.example.evil`, not to a realm on another host, not across a
  cross-origin redirect, never from https to http (requests CVE-2018-18074, urllib3
  CVE-2018-20060 / CVE-2024-37891, go-containerregistry#2193).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                        "registry-1.docker.io")


@dataclass(frozen=True)
class Endpoint:
    """Where a registry is served: `scheme://netloc`, and the name its credentials are filed
    under (`domain` as written in references)."""

    domain: str
    scheme: str
    netloc: str

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def host(self) -> str:
        return split_host(self.netloc)


def split_host(netloc: str) -> str:
    """`[::1]:5000` → `::1`; `reg:5000` → `reg`; lower-cased."""
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")].lower()
    return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(domain: str, insecure: Iterable[str] = ()) -> Endpoint:
    """The endpoint of a reference's registry domain."""
    if domain in (DOCKER_HUB, "index.docker.io"):
        return Endpoint(DOCKER_HUB, "https", DOCKER_HUB_HOST)
    host = split_host(domain)
    plain = is_loopback(host) or domain in set(insecure) or host in set(insecure)
    return Endpoint(domain, "http" if plain else "https", domain)


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower-cased
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` header, or None if there is none."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        pos = m.end()
    return Challenge(scheme.lower(), params)


def pull_scope(path: str) -> str:
    return f"repository:{path}:pull"


def push_scope(path: str) -> str:
    return f"repository:{path}:pull,push"


def _parent(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return ""  # an address has no parent domain
    except ValueError:
        pass
    labels = host.split(".")
    return ".".join(labels[1:]) if len(labels) >= 3 else ""


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, (pa.hostname or ""), pa.port) == (pb.scheme, (pb.hostname or ""), pb.port)


def is_downgrade(src: str, dst: str) -> bool:
    return urlsplit(src).scheme == "https" and urlsplit(dst).scheme != "https"


def may_send_credentials(registry: Endpoint, url: str) -> bool:
    """May the credentials filed for `registry` be sent with a request to `url`? (S-09)"""
    target = urlsplit(url)
    host = (target.hostname or "").lower()
    if target.scheme not in ("http", "https") or not host:
        return False
    if registry.scheme == "https" and target.scheme != "https":
        return False  # never downgrade
    if target.scheme == "http" and not (is_loopback(host) or host == registry.host):
        return False  # plain HTTP only to the (insecure) registry itself or loopback
    if host == registry.host:
        return True
    # The registry's own token service: a sibling or parent under the same parent domain.
    parent = _parent(registry.host)
    if not parent:
        return False
    return host == parent or host.endswith("." + parent)


def auth_keys(domain: str) -> tuple[str, ...]:
    """The names credentials for `domain` may be filed under in `config.json`."""
    if domain in (DOCKER_HUB, "index.docker.io"):
        return DOCKER_HUB_AUTH_KEYS
    return (domain, f"https://{domain}", f"http://{domain}", f"https://{domain}/v1/",
            f"https://{domain}/v2/")
