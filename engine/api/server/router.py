"""The application side of the API: `App` (routes plus the handler error boundary), `Router`,
`Request`, `Response`, the response helpers, and the server's `Limits`.

I/O: none of its own (logs handler crashes). A `Request` reads its body through a source the server
(`engine/api/server/http.py`) hands it; a `Response` is data the server writes.

Handlers are `async def handler(req: Request) -> Response`, registered with
`@router.route("POST", "/containers/{id}/start")`. A `{name:path}` parameter may hold slashes
(image names such as `registry:5000/team/app:1`). Paths match with or without a `/v1.NN`
prefix; the version is negotiated here (Docker accepts 1.24–1.43 for this API level).

Docker's conventions kept here:
- query booleans follow moby `httputils.BoolValue`: anything but "", "0", "no", "false",
  "none" is true;
- an unknown route is 404 `{"message": "page not found"}`;
- a body that is not JSON is 400 "invalid JSON: …" (RELIABILITY I-04), an empty one where
  one is required is 400 "body required" (I-06).
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote

import msgspec

from engine.core.errors import InvalidArgument, NotFound, ShipslogError, from_os_error, leaf_of
from engine.core.queryargs import QueryArgs
from events.envelope import Actor

if TYPE_CHECKING:
    from engine.api.server.hijack import HijackedStream

log = logging.getLogger("shipslog.api")

SERVER_NAME = "shipslog/0.1.0 (linux)"
API_VERSION = "1.43"
MIN_API_VERSION = "1.24"

T = TypeVar("T")

Handler = Callable[["Request"], Awaitable["Response"]]
HijackCallback = Callable[["HijackedStream"], Awaitable[None]]

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

_VERSION_PREFIX = re.compile(r"^/v([0-9]+(?:\.[0-9]+)?)(/.*)$")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")


class PayloadTooLarge(ShipslogError):
    """The request body passed the cap for a JSON endpoint (RELIABILITY I-05)."""

    status = 413


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def split_version(path: str) -> tuple[str, str]:
    """`/v1.41/containers/json` -> ("1.41", "/containers/json"); unprefixed paths get 1.43.

    Raises InvalidArgument for a version outside 1.24–1.43, with Docker's own wording.
    """
    match = _VERSION_PREFIX.match(path)
    if match is None:
        return API_VERSION, path
    version, rest = match.group(1), match.group(2)
    if version_tuple(version) < version_tuple(MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if version_tuple(version) > version_tuple(API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )
    return version, rest


# ---------------------------------------------------------------------------------------------
# Requests


class BodySource:
    """How a request reads its body; the server implements it over the h11 connection."""

    def chunks(self) -> AsyncIterator[bytes]:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Request(QueryArgs):
    """One request: its route's parameters, its query (read through `QueryArgs`), headers,
    the caller, and its body."""

    method: str
    path: str  # without the version prefix, still percent-encoded
    params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    api_version: str
    actor: Actor
    streaming: bool = False  # the route takes an unbounded body through stream_body()
    _body: bytes | None = None
    _source: BodySource | None = field(default=None, repr=False)

    # -- body ---------------------------------------------------------------------------------

    async def body(self) -> bytes:
        """The whole body (the server read it, capped, before the handler ran)."""
        if self._body is not None:
            return self._body
        if self.streaming:
            raise RuntimeError("a streaming route reads its body with stream_body()")
        return b""

    async def json(
        self,
        type: type[T] = Any,  # type: ignore[assignment]
        *,
        required: builtins.bool = True,
    ) -> T:
        """Decode the body into `type` with msgspec; 400 on anything malformed (I-04, I-06).

        `required=False` turns an empty body into `None` instead of 400 "body required".
        """
        raw = await self.body()
        if not raw.strip():
            if required:
                raise InvalidArgument("body required")
            return None  # type: ignore[return-value]
        content_type = self.headers.get("content-type", "")
        # moby httputils.CheckForJSON: a body must be declared as JSON.
        if content_type and content_type.split(";")[0].strip().lower() != "application/json":
            raise InvalidArgument(
                f"unsupported Content-Type header ({content_type}): must be 'application/json'"
            )
        return decode_json(raw, type)

    def stream_body(self) -> AsyncIterator[bytes]:
        """The body as it arrives, uncapped (image load/import). Only on streaming routes."""
        if not self.streaming or self._source is None:
            raise RuntimeError("stream_body() is only for routes registered with stream_body=True")
        return self._source.chunks()


def decode_json(raw: bytes, type: Any = Any) -> Any:
    """msgspec decode with Docker-style 400s; never lets a parser error escape (I-04)."""
    try:
        return msgspec.json.decode(raw, type=type)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        text = str(exc)
        if "trailing characters" in text:
            raise InvalidArgument("invalid JSON: unexpected content after JSON") from None
        raise InvalidArgument(f"invalid JSON: {text}") from None
    except RecursionError:
        raise InvalidArgument("invalid JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidArgument("invalid JSON: body is not valid UTF-8") from None


# ---------------------------------------------------------------------------------------------
# Responses


@dataclass
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterable[bytes] | None = None  # sent chunked, one chunk per item
    hijack: HijackCallback | None = None  # attach / exec start: the raw connection


def json_response(
    obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = msgspec.json.encode(obj) + b"\n"  # Docker's encoder ends every body with a newline
    return Response(status, [("Content-Type", "application/json"), *(headers or [])], body)


def empty(status: int = 204) -> Response:
    return Response(status)


def text(body: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, [("Content-Type", content_type)], body.encode())


def streaming(
    chunks: AsyncIterable[bytes], content_type: str = "application/json", status: int = 200
) -> Response:
    return Response(status, [("Content-Type", content_type)], stream=chunks)


def hijack(callback: HijackCallback, *, tty: bool) -> Response:
    """Take over the connection: 101 UPGRADED (or 200 for clients that did not ask to upgrade)."""
    content_type = RAW_STREAM if tty else MULTIPLEXED_STREAM
    return Response(101, [("Content-Type", content_type)], hijack=callback)


def error_response(status: int, message: str) -> Response:
    """Docker's error body: `{"message": "..."}`."""
    return json_response({"message": message}, status)


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    stream_body: bool
    literal: bool
    # Long polls (`/containers/{id}/wait`): cancel the handler when the client hangs up, as
    # Docker's request context does. Off by default: most handlers should finish what they
    # started even if nobody waits for the answer.
    cancel_on_disconnect: bool = False


def _compile(pattern: str) -> tuple[re.Pattern[str], bool]:
    parts: list[str] = []
    pos = 0
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[pos : match.start()]))
        name, kind = match.group(1), match.group(2)
        parts.append(f"(?P<{name}>.+)" if kind == "path" else f"(?P<{name}>[^/]+)")
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$"), pos == 0


class Router:
    """A table of routes. Literal paths win over parameterised ones (`/images/json` is not an
    image called "json"); otherwise the first route registered wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        pattern: str,
        *,
        stream_body: bool = False,
        cancel_on_disconnect: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(
                method,
                pattern,
                handler,
                stream_body=stream_body,
                cancel_on_disconnect=cancel_on_disconnect,
            )
            return handler

        return register

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        stream_body: bool = False,
        cancel_on_disconnect: bool = False,
    ) -> None:
        regex, literal = _compile(pattern)
        self.routes.append(
            Route(
                method.upper(),
                pattern,
                regex,
                handler,
                stream_body,
                literal,
                cancel_on_disconnect,
            )
        )

    def include(self, other: Router) -> None:
        self.routes.extend(other.routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Find the route for `path` (version prefix already removed). HEAD falls back to GET."""
        methods = (method, "GET") if method == "HEAD" else (method,)
        for want in methods:
            for literal in (True, False):
                for route in self.routes:
                    if route.literal != literal or route.method != want:
                        continue
                    found = route.regex.match(path)
                    if found is not None:
                        params = {k: unquote(v) for k, v in found.groupdict().items()}
                        return route, params
        raise NotFound("page not found")


def parse_query(raw: str) -> dict[str, list[str]]:
    return parse_qs(raw, keep_blank_values=True)


# ---------------------------------------------------------------------------------------------
# Server caps


@dataclass(frozen=True)
class Limits:
    """Per-server caps; the defaults are the documented ones (`engine/api/server/http.py`)."""

    max_header_bytes: int = 64 * 1024
    max_header_count: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    header_timeout: float = 10.0  # the whole head, from its first byte (issue 15, item 4)
    idle_timeout: float = 120.0
    body_timeout: float = 60.0  # the longest stall inside a body
    body_grace: float = 10.0  # then the body must average min_body_rate (mod_reqtimeout)
    min_body_rate: float = 500.0  # bytes/s
    send_timeout: float = 60.0  # a whole non-streaming response; a client that never reads
    max_connections: int = 512
    admin_reserve: int = 64  # extra slots for uid 0 and the daemon's uid (the CLI)

    @classmethod
    def parse(cls, text: str) -> Limits:
        """`name=value,…` overrides of the defaults (shipslogd reads SHIPSLOG_API_LIMITS, so
        that tests and benchmarks can shorten the deadlines)."""
        values: dict[str, Any] = {}
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, raw = item.partition("=")
            name = name.strip()
            try:
                kind = float if known[name] == "float" else int
                values[name] = kind(raw)
            except (KeyError, ValueError):
                raise InvalidArgument(
                    f"invalid API limit {item!r}",
                    hint="use name=number,… with names from: " + ", ".join(known)) from None
        return cls(**values)
    # Go's net.Listen (dockerd) asks for somaxconn; 128 overflowed under 1,000 reconnecting
    # slow clients, and a unix connect() then fails at once with EAGAIN (issue 15, item 4).
    backlog: int = 4096


# ---------------------------------------------------------------------------------------------
# The application: routes plus the error boundary


Policy = Callable[["Request"], Awaitable[None]]


class PolicyDenied(ShipslogError):
    """A policy hook refused the request (or failed, which also refuses it)."""

    status = 403


class App:
    """Routes and the handler error boundary. `/_ping` is built in (HEAD and GET).

    `policy`, when given, runs before every handler with the same `Request` object, so it
    sees exactly the bytes the handler will decode — read once, capped, never re-read
    (RELIABILITY S-10; CVE-2024-41110 was a hook that saw an empty body the handler did not).
    It denies by raising; an unexpected exception denies too (fail closed).
    """

    def __init__(
        self,
        *routers: Router,
        limits: Limits | None = None,
        server_name: str = SERVER_NAME,
        policy: Policy | None = None,
        secret_key: bytes | None = None,
    ) -> None:
        self.router = Router()
        for router in routers:
            self.router.include(router)
        self.router.add("GET", "/_ping", _ping)
        self.limits = limits or Limits()
        self.server_name = server_name
        self.policy = policy
        # Digests the secret values of callers' command lines (engine/api/server/peercred.py);
        # without
        # it they are still hidden, as `<redacted>`.
        self.secret_key = secret_key

    def common_headers(self) -> list[tuple[str, str]]:
        return [
            ("Api-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Ostype", "linux"),
            ("Server", self.server_name),
        ]

    async def call(self, route: Route, req: Request) -> Response:
        """Run a handler; any exception becomes an error response here (RELIABILITY I-05)."""
        try:
            if self.policy is not None:
                await self._check_policy(req)
            response = await route.handler(req)
            if not isinstance(response, Response):
                raise TypeError(f"handler returned {type(response).__name__}, not a Response")
            return response
        except ShipslogError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing may reach the nursery
            leaf = _single_shipslog_error(exc)
            if leaf is not None:
                return error_response(leaf.status, leaf.message)
            status, message = getattr(exc, "status", None), getattr(exc, "message", None)
            if isinstance(status, int) and isinstance(message, str):
                # A lower layer's own error (the event store's): its words, its status.
                return error_response(status, message)
            cause = leaf_of(exc)
            if isinstance(cause, OSError) and cause.errno in _USER_ERRNOS:
                # A full disk anywhere under the state root (RELIABILITY F-07), too many open
                # files, also inside a nursery's group (issue 15 item 6): the user's words
                # for them, not a traceback's.
                err = from_os_error(cause)
                return error_response(err.status, err.message)
            log.exception("handler %s %s failed", req.method, route.pattern)
            return error_response(500, _one_line(exc))

    async def _check_policy(self, req: Request) -> None:
        assert self.policy is not None
        try:
            await self.policy(req)
        except ShipslogError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken policy must deny, not allow
            log.exception("policy hook failed on %s %s", req.method, req.path)
            message = f"request denied: the policy hook failed ({_one_line(exc)})"
            raise PolicyDenied(message) from None


_USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE)


def _single_shipslog_error(exc: BaseException) -> ShipslogError | None:
    # Handlers that open nurseries raise ExceptionGroups; one ShipslogError inside keeps its status.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, ShipslogError) else None


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    first = message[0] if message else ""
    return f"internal error: {type(exc).__name__}" + (f": {first}" if first else "")


async def _ping(req: Request) -> Response:
    response = text("OK")
    response.headers += [
        ("Builder-Version", "1"),  # the classic builder; "2" would make the CLI try BuildKit
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
        ("Swarm", "inactive"),
    ]
    return response
