"""An async client of the OCI distribution API, on trio (httpx through anyio).

I/O: network. One `Transport` (an httpx connection pool) per daemon; one `RegistryClient` per
registry endpoint and set of credentials. What it does for its callers:

- `/v2/` ping; the bearer-token flow from `WWW-Authenticate` (realm, service, scope) with
  tokens cached per scope until they expire; basic auth; refresh tokens.
- Credentials only where `challenge.may_send_credentials` allows (S-09). Redirects are
  followed by hand (at most `MAX_REDIRECTS`): `Authorization` is dropped on any change of
  origin, and an https→http hop is refused outright.
- Bounded retries with exponential back-off for 5xx, connection resets and early EOF; 401 and
  404 are never retried; 429 waits for `Retry-After` (up to `RetryPolicy.max_wait`).
- `fetch_blob`: a blob streamed to a sink, resumed after a failure with `Range`; the answer
  must carry a `Content-Range` starting where we stopped, and a server that ignores `Range`
  (200 with the whole body) is read and discarded up to the offset, within a cap
  (RELIABILITY F-08, containers/image PR #1114).
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import trio

from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.registry.auth import Credentials
from engine.registry.challenge import (
    Challenge,
    Endpoint,
    is_downgrade,
    may_send_credentials,
    parse_challenge,
    same_origin,
)

USER_AGENT = "shipslog/0.1.0"
MAX_REDIRECTS = 5
CHUNK = 1 << 20
MAX_TOKEN_BYTES = 1 << 20
MAX_ERROR_BYTES = 64 << 10


class RegistryError(ShipslogError):
    """The registry failed us (unreachable, 5xx after retries, a broken answer)."""

    status = 502


class RegistryUnauthorized(RegistryError):
    status = 401


class RegistryNotFound(RegistryError, NotFound):
    status = 404


class BlobSizeMismatch(RegistryError, InvalidArgument):
    """More (or fewer) bytes than the descriptor declared; never retried."""

    status = 400


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.wait = wait


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries of one request (or one blob, counting resumes)
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_wait: float = 60.0  # the longest Retry-After we honour before giving up
    max_discard: int = 1 << 30  # bytes we read and drop when a server ignores Range

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - now)


_tls_lock = threading.Lock()
_tls_default: ssl.SSLContext | None = None


def default_tls_context() -> ssl.SSLContext:
    """The system's CA certificates, parsed once per process. httpx parses them again for
    every client it makes (verify=True): 30-150 ms of CPU here, on the event loop, that the
    first pull of a freshly started daemon waited for (issue 17). The daemon calls this in a
    worker thread as it starts (`warm_tls`); an SSLContext can be shared by clients."""
    global _tls_default
    with _tls_lock:
        if _tls_default is None:
            # trust_env=False: SSL_CERT_FILE/SSL_CERT_DIR are not read, as by the client.
            _tls_default = httpx.create_ssl_context(verify=True, trust_env=False)
        return _tls_default


def warm_tls() -> None:
    """Load the CA certificates ahead of the first pull (run it in a worker thread)."""
    default_tls_context()


class Transport:
    """The daemon's connection pool. Redirects are ours to follow (`follow_redirects=False`)."""

    def __init__(self, *, verify: Any = True, timeout: float = 60.0) -> None:
        # httpx logs every request at INFO; the daemon's log is for what we decide.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        if verify is True:
            verify = default_tls_context()
        self.http = httpx.AsyncClient(
            follow_redirects=False, verify=verify, trust_env=False,
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"User-Agent": USER_AGENT})

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class _Token:
    value: str
    expires: float


@dataclass
class TokenCache:
    """Bearer tokens per (registry, credentials, scope); shared by the daemon's pulls."""

    tokens: dict[tuple[str, str, str], _Token] = field(default_factory=dict)

    def get(self, key: tuple[str, str, str]) -> str | None:
        t = self.tokens.get(key)
        if t is None or t.expires <= time.monotonic():
            return None
        return t.value

    def put(self, key: tuple[str, str, str], value: str, ttl: float) -> None:
        self.tokens[key] = _Token(value, time.monotonic() + max(ttl - 10.0, 5.0))


def _error_text(resp: httpx.Response, body: bytes) -> str:
    """The registry's own words: `{"errors": [{"code", "message"}]}` → `code: message`."""
    try:
        doc = httpx.Response(200, content=body).json()
        errs = doc.get("errors") or []
        if errs:
            e = errs[0]
            return f"{str(e.get('code', '')).lower()}: {e.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        pass
    return f"HTTP {resp.status_code}"


class RegistryClient:
    """Requests to one registry with one set of credentials."""

    def __init__(self, ep: Endpoint, creds: Credentials | None, transport: Transport,
                 tokens: TokenCache | None = None, policy: RetryPolicy | None = None) -> None:
        self.ep = ep
        self.creds = creds if creds is not None and not creds.empty else None
        self.transport = transport
        self.tokens = tokens if tokens is not None else TokenCache()
        self.policy = policy or RetryPolicy()
        self._basic = False
        # Tokens are cached per credentials, not per user name: a wrong password must not
        # be served a token that the right one earned.
        self._who = hashlib.sha256(repr((self.creds.username, self.creds.password,
                                         self.creds.identity_token)).encode()).hexdigest()[:32] \
            if self.creds else ""

    # -- authorization -------------------------------------------------------------------

    def _auth_for(self, scope: str) -> str | None:
        if self.creds is not None and self.creds.registry_token:
            return f"Bearer {self.creds.registry_token}"
        token = self.tokens.get((self.ep.base, self._who, scope))
        if token is not None:
            return f"Bearer {token}"
        if self._basic and self.creds is not None:
            return httpx.BasicAuth(self.creds.username, self.creds.password)._auth_header
        return None

    async def _authorize(self, ch: Challenge, scope: str, where: str = "") -> None:
        """`where`: the request that was challenged, Go-style (`Get "URL"`), named in the
        error as Docker's registry transport names it (moby: `Head "…": no basic auth
        credentials`)."""
        if ch.scheme == "basic":
            if self.creds is None or not self.creds.username:
                raise RegistryUnauthorized(f"{where}: no basic auth credentials" if where
                                           else "no basic auth credentials",
                                           f"log in first: shipslog login {self.ep.domain}")
            if self._basic:
                raise RegistryUnauthorized("unauthorized: incorrect username or password",
                                           f"log in again: shipslog login {self.ep.domain}")
            self._basic = True
            return
        if ch.scheme != "bearer" or not ch.realm:
            raise RegistryUnauthorized(f"unauthorized: unsupported challenge {ch.scheme!r}")
        token, ttl = await self._fetch_token(ch, scope)
        self.tokens.put((self.ep.base, self._who, scope), token, ttl)

    async def _fetch_token(self, ch: Challenge, scope: str) -> tuple[str, float]:
        realm = ch.realm
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"invalid token realm {realm[:100]!r}")
        if is_downgrade(self.ep.base, realm):
            raise RegistryError(f"refusing the token realm {realm}: https→http downgrade",
                                "the registry sent a plain-HTTP token service")
        params = [("service", ch.params["service"])] if ch.params.get("service") else []
        params += [("scope", s) for s in scope.split()]
        send_creds = self.creds is not None and may_send_credentials(self.ep, realm)
        headers: dict[str, str] = {}
        if send_creds and self.creds is not None and self.creds.identity_token:
            form = [*params, ("grant_type", "refresh_token"), ("client_id", "shipslog"),
                    ("refresh_token", self.creds.identity_token)]
            resp = await self._plain("POST", realm, headers, urlencode(form).encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        else:
            if send_creds and self.creds is not None and self.creds.username:
                headers["Authorization"] = httpx.BasicAuth(
                    self.creds.username, self.creds.password)._auth_header
            url = realm + ("&" if "?" in realm else "?") + urlencode(params)
            resp = await self._plain("GET", url, headers)
        body = await _read_capped(resp, MAX_TOKEN_BYTES)
        if resp.status_code in (401, 403):
            raise RegistryUnauthorized(f"unauthorized: the token service refused: "
                                       f"{_error_text(resp, body)}",
                                       f"log in again: shipslog login {self.ep.domain}")
        if resp.status_code != 200:
            raise RegistryError(f"token service answered {_error_text(resp, body)}")
        try:
            doc = httpx.Response(200, content=body).json()
            token = str(doc.get("token") or doc.get("access_token") or "")
            ttl = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, ttl = "", 0.0
        if not token:
            raise RegistryError("the token service answered without a token")
        return token, ttl

    async def _plain(self, method: str, url: str, headers: dict[str, str],
                     content: bytes | None = None, extra: dict[str, str] | None = None
                     ) -> httpx.Response:
        """One request to a token service, retried on 5xx/reset; redirects not followed."""
        hdrs = dict(headers, **(extra or {}))
        for attempt in range(1, self.policy.attempts + 1):
            try:
                resp = await self.transport.http.send(
                    self.transport.http.build_request(method, url, headers=hdrs,
                                                      content=content), stream=True)
            except httpx.TransportError as e:
                if attempt == self.policy.attempts:
                    raise RegistryError(f"token service {url.split('?')[0]}: {_why(e)}") from None
                await trio.sleep(self.policy.delay(attempt))
                continue
            if resp.status_code >= 500 and attempt < self.policy.attempts:
                await resp.aclose()
                await trio.sleep(self.policy.delay(attempt))
                continue
            return resp
        raise AssertionError("unreachable")

    # -- requests ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.ep.base + path

    async def request(self, method: str, path: str, *, scope: str,
                      headers: dict[str, str] | None = None, content: Any = None,
                      ok: tuple[int, ...] = (200,), retry: bool = True,
                      redirects: bool = True) -> httpx.Response:
        """Send with auth, redirects and retries; return a streaming response whose status
        is in `ok` (the caller closes it). Other statuses become errors here."""
        attempts = self.policy.attempts if retry else 1
        attempt = 0
        authed = False
        while True:
            attempt += 1
            try:
                resp = await self._send_following(method, self.url(path), scope,
                                                  headers or {}, content, redirects)
                if resp.status_code == 401 and not authed:
                    ch = parse_challenge(resp.headers.get("www-authenticate", ""))
                    await resp.aclose()
                    if ch is None:
                        raise RegistryUnauthorized("unauthorized: the registry sent no "
                                                   "authentication challenge")
                    await self._authorize(ch, scope, f'{method.title()} "{self.url(path)}"')
                    authed = True
                    attempt -= 1
                    continue
                if resp.status_code in ok:
                    return resp
                body = await _read_capped(resp, MAX_ERROR_BYTES)
                text = _error_text(resp, body)
                if resp.status_code == 429:
                    wait = retry_after(resp.headers.get("retry-after"), time.time())
                    raise _Retry(f"too many requests ({text})",
                                 self.policy.delay(attempt) if wait is None else wait)
                if resp.status_code >= 500:
                    raise _Retry(text)
                raise _status_error(resp.status_code, text, self.ep.domain)
            except httpx.TransportError as e:
                why = _why(e)
                if attempt >= attempts:
                    raise RegistryError(f"{method} {self.url(path)}: {why}",
                                        "is the registry running and reachable?") from None
                await trio.sleep(self.policy.delay(attempt))
            except _Retry as r:
                if attempt >= attempts:
                    raise RegistryError(f"{method} {self.url(path)}: {r.why} after "
                                        f"{attempt} attempts", "try again later") from None
                wait = r.wait if r.wait is not None else self.policy.delay(attempt)
                if wait > self.policy.max_wait:
                    raise RegistryError(f"{method} {self.url(path)}: {r.why}; the registry "
                                        f"asks to wait {wait:.0f} s", "try again later") from None
                await trio.sleep(wait)

    async def _send_following(self, method: str, url: str, scope: str,
                              headers: dict[str, str], content: Any,
                              redirects: bool) -> httpx.Response:
        origin = url
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            auth = self._auth_for(scope)
            # Credentials (and tokens made from them) stay with the registry's own origin.
            if auth and same_origin(origin, url) and may_send_credentials(self.ep, url):
                hdrs["Authorization"] = auth
            req = self.transport.http.build_request(method, url, headers=hdrs, content=content)
            resp = await self.transport.http.send(req, stream=True)
            if not (redirects and resp.status_code in (301, 302, 303, 307, 308)):
                return resp
            location = resp.headers.get("location", "")
            await resp.aclose()
            if not location:
                raise RegistryError(f"redirect without a Location from {url}")
            target = urljoin(url, location)
            if is_downgrade(url, target):
                raise RegistryError(f"refusing the redirect from {url.split('?')[0]} to "
                                    f"{target.split('?')[0]}: https→http downgrade",
                                    "the registry or its CDN is misconfigured or hostile")
            if resp.status_code == 303:
                method, content = "GET", None
            url = target
        raise RegistryError(f"too many redirects from {origin}", "the registry loops")

    # -- operations ----------------------------------------------------------------------

    async def ping(self) -> None:
        """`GET /v2/`: reachable, speaks the API; a 401 is fine (auth comes per scope)."""
        resp = await self.request("GET", "/v2/", scope="", ok=(200, 401))
        await resp.aclose()

    async def fetch_blob(self, path: str, digest: str, size: int,
                         sink: Callable[[bytes], Awaitable[None]], *, scope: str) -> None:
        """Stream a blob of `size` bytes to `sink`, resuming after failures; never more."""
        offset = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                resp = await self.request("GET", f"/v2/{path}/blobs/{digest}", scope=scope,
                                          headers=headers, ok=(200, 206))
                try:
                    discard = self._resume_point(resp, offset, size, digest)
                    # The pieces as httpcore reads them (64 KiB), joined here once per CHUNK:
                    # httpx's own re-chunking (aiter_raw(CHUNK)) copied every byte three
                    # times more, a third of the daemon's CPU in a pull (issue 17).
                    held: list[bytes] = []
                    n_held = 0
                    async for piece in resp.aiter_raw():
                        held.append(piece)
                        n_held += len(piece)
                        if n_held >= CHUNK:
                            offset, discard = await self._deliver(held, offset, discard, size,
                                                                  digest, sink)
                            n_held = 0
                    offset, discard = await self._deliver(held, offset, discard, size, digest,
                                                          sink)
                finally:
                    await resp.aclose()
                if offset == size:
                    return
                raise _Retry(f"connection closed after {offset} of {size} bytes")
            except (httpx.TransportError, _Retry) as e:
                failures += 1
                why = e.why if isinstance(e, _Retry) else _why(e)
                if failures >= self.policy.attempts:
                    raise RegistryError(f"downloading {digest[:19]} failed after {failures} "
                                        f"attempts: {why}", "try the pull again") from None
                await trio.sleep(self.policy.delay(failures))

    @staticmethod
    async def _deliver(held: list[bytes], offset: int, discard: int, size: int, digest: str,
                       sink: Callable[[bytes], Awaitable[None]]) -> tuple[int, int]:
        """Hand the bytes in `held` (emptied) to `sink` as one chunk, less the first `discard`
        bytes of the answer (a resume the registry answered from the start); returns the new
        (offset, discard). Nothing past `size` ever reaches the sink."""
        if not held:
            return offset, discard
        chunk = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        if discard:
            take = min(discard, len(chunk))
            discard -= take
            chunk = chunk[take:]
            if not chunk:
                return offset, discard
        if offset + len(chunk) > size:
            raise BlobSizeMismatch(
                f"unexpected commit size: blob {digest} is longer than the "
                f"{size} bytes its descriptor declares",
                "the registry sent different content than the manifest names")
        await sink(chunk)
        return offset + len(chunk), discard

    def _resume_point(self, resp: httpx.Response, offset: int, size: int, digest: str) -> int:
        """How many bytes of this answer to drop before the ones we still need."""
        if offset == 0:
            return 0
        if resp.status_code == 206:
            cr = resp.headers.get("content-range", "")
            start = _range_start(cr)
            if start != offset:
                raise RegistryError(f"wrong Content-Range {cr[:60]!r} resuming {digest[:19]} "
                                    f"at {offset}", "the registry does not resume correctly")
            return 0
        if offset > self.policy.max_discard:
            raise RegistryError(f"the registry ignores Range and {offset} bytes are more than "
                                f"we discard to resume {digest[:19]}", "try the pull again")
        return offset  # 200: the whole blob again; drop what we have (PR #1114)


def _range_start(cr: str) -> int | None:
    # "bytes 100-199/200" or "bytes 100-199/*"
    unit, _, rest = cr.strip().partition(" ")
    first, _, _ = rest.partition("-")
    if unit.lower() != "bytes" or not first.isdigit():
        return None
    return int(first)


async def _read_capped(resp: httpx.Response, cap: int) -> bytes:
    parts: list[bytes] = []
    n = 0
    try:
        async for chunk in resp.aiter_raw():
            parts.append(chunk)
            n += len(chunk)
            if n > cap:
                break
    except httpx.TransportError:
        pass
    finally:
        await resp.aclose()
    return b"".join(parts)[:cap]


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}" + (f": {text[0]}" if text else "")


def _status_error(status: int, text: str, domain: str) -> ShipslogError:
    if status in (401, 403):
        if text.startswith("HTTP "):  # a HEAD, or a registry that gave no reason
            text = ("unauthorized: authentication required" if status == 401 else
                    "denied: requested access to the resource is denied")
        return RegistryUnauthorized(text, f"log in with: shipslog login {domain}")
    if status == 404:
        return RegistryNotFound(text or "not found")
    return RegistryError(f"registry answered HTTP {status}: {text}")
