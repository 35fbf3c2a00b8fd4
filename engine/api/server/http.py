"""The HTTP/1.1 server under the Docker-compatible API: h11 over trio on a unix socket.

I/O: binds and serves a unix socket (filesystem: unlink a stale socket, chmod, chgrp, rename);
reads SO_PEERCRED and /proc for the caller's identity (`engine/api/server/peercred.py`).

One connection is one trio task running request/response cycles with keep-alive. Handlers see a
`Request` and return a `Response` (`engine/api/server/router.py`); nothing a handler or a malformed
request does can reach the nursery: every failure becomes a Docker error body
`{"message": ...}` with a status, and the server keeps serving (RELIABILITY I-04, I-05).

Caps (`Limits`, RELIABILITY I-05; CVE-2022-23471 is a leak of exactly this kind):
- request line + headers ≤ 64 KiB and ≤ 256 header fields, else 431;
- a JSON body ≤ 16 MiB, else 413 (routes registered with `stream_body=True`, such as image load
  and import, read their body as it arrives, uncapped);
- a request head must arrive within `header_timeout` (10 s) of its first byte (slow-loris), an
  idle keep-alive connection is closed after `idle_timeout`, a body must keep an average of
  `min_body_rate` bytes/s after `body_grace` seconds and never stall for `body_timeout`, else
  408; a plain response the client does not read within `send_timeout` drops the connection;
- at most `max_connections` connections: past that the idlest or slowest connection still
  sending its request is closed to make room; requests being served and hijacked or
  streaming connections (attach, exec, `logs -f`, `events`) are never shed; the local admin
  (uid 0 or the daemon's uid: the CLI, health checks) has `admin_reserve` more slots; only
  when nothing can be shed does a client get 503 (`engine/api/server/admission.py`, issue 15 item
  4).

The socket is created under a temporary name, given its mode and group, and renamed into
place, so it is never reachable with the default umask's permissions (RELIABILITY S-01). It is
always a filesystem path, never the abstract namespace (S-02, CVE-2020-15257).
"""

from __future__ import annotations

import errno
import grp
import itertools
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import h11
import trio

from engine.api.server import admission, peercred
from engine.api.server.admission import Phase
from engine.api.server.hijack import HijackedStream
from engine.api.server.router import (  # App and Limits are re-exported: serve_unix(path, App(...))
    API_VERSION,
    MULTIPLEXED_STREAM,
    SERVER_NAME,
    App,
    BodySource,
    Limits,
    PayloadTooLarge,
    Request,
    Response,
    error_response,
    parse_query,
    split_version,
)
from engine.core.errors import InvalidArgument, ShipslogError, Unavailable
from events.redact import redact_target

__all__ = [
    "App",
    "Limits",
    "RequestTimeout",
    "SERVER_NAME",
    "bind_unix",
    "serve_listener",
    "serve_unix",
]

log = logging.getLogger("shipslog.api")

RECEIVE_SIZE = 64 * 1024
MAX_SOCKET_PATH = 107  # sizeof(sun_path) - 1 for the terminating NUL
_staging_ids = itertools.count()
_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class RequestTimeout(ShipslogError):
    status = 408


class _ClientGone(Exception):
    """The peer closed the connection; nothing more to send."""


# ---------------------------------------------------------------------------------------------
# One connection


def _status_line_reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


SHED_NOTICE_S = 0.5  # at most this long to tell a shed connection why (it may not read)


class _Shed(RequestTimeout):
    """The connection was closed to make room for another (`engine/api/server/admission.py`)."""


class _Tracked:
    """One connection's phase and progress, as the admission policy needs them."""

    __slots__ = ("admin", "phase", "received", "scope", "shed", "since")

    def __init__(self, admin: bool) -> None:
        self.admin = admin
        self.phase = Phase.READING  # a new connection owes us a request
        self.since = trio.current_time()
        self.received = 0  # bytes of the current request
        self.scope: trio.CancelScope | None = None  # around a wait for the client's bytes
        self.shed = False

    def enter(self, phase: Phase) -> None:
        if phase is not self.phase:
            self.phase, self.since, self.received = phase, trio.current_time(), 0

    def slot(self, key: int) -> admission.Slot:
        return admission.Slot(key, self.phase, self.since, self.received, self.admin)


class _Slots:
    """The open connections; admission and shedding follow `engine/api/server/admission.py`."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.open: dict[int, _Tracked] = {}
        self._keys = itertools.count()

    def admit(self, admin: bool) -> int | None:
        """A key for a new connection's slot (shedding others if need be), or None: 503."""
        limits = self.limits
        decision = admission.admit(
            len(self.open), (t.slot(k) for k, t in self.open.items()), admin=admin,
            now=trio.current_time(), max_connections=limits.max_connections,
            admin_reserve=limits.admin_reserve, batch=max(limits.max_connections // 16, 1))
        if not decision.admit:
            return None
        for victim in decision.shed:
            self.shed(victim)  # type: ignore[arg-type]
        key = next(self._keys)
        self.open[key] = _Tracked(admin)
        return key

    def shed(self, key: int) -> None:
        tracked = self.open.pop(key)
        tracked.shed = True
        if tracked.scope is not None:
            tracked.scope.cancel()

    def release(self, key: int) -> None:
        self.open.pop(key, None)


class _Connection(BodySource):
    def __init__(
        self, app: App, stream: trio.SocketStream, actor: Any, tracked: _Tracked | None = None
    ) -> None:
        self.tracked = tracked or _Tracked(admin=False)
        self.app = app
        self.limits = app.limits
        self.stream = stream
        self.actor = actor
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self.client_gone = False
        self.target = ""  # the current request's target, for the debug access log

    # -- low level ----------------------------------------------------------------------------

    async def _receive(self, deadline: float) -> bytes:
        """The client's next bytes; RequestTimeout at `deadline`, _Shed when made room of."""
        tracked = self.tracked
        with trio.move_on_at(deadline):
            with trio.CancelScope() as tracked.scope:
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                finally:
                    tracked.scope = None
                if tracked.shed:  # shed after the bytes came, before this task ran again
                    raise _Shed("closed to make room for other clients")
                tracked.received += len(data)
                return bytes(data)
            raise _Shed("closed to make room for other clients")
        raise RequestTimeout("timed out reading the request")

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.client_gone = True
                raise _ClientGone() from exc

    async def _read_head(self) -> Any:
        """Wait `idle_timeout` for a request to begin, then `header_timeout` for all of it."""
        # A new connection owes us a request (READING since its accept); a kept-alive one
        # waits IDLE for its next, unless that has arrived already (pipelined).
        if self.tracked.phase is not Phase.READING:
            self.tracked.enter(Phase.READING if self.conn.trailing_data[0] else Phase.IDLE)
        event = self.conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        first = await self._receive(trio.current_time() + self.limits.idle_timeout)
        self.conn.receive_data(first)
        if not first:
            return self.conn.next_event()
        self.tracked.enter(Phase.READING)
        self.tracked.received = len(first)
        deadline = trio.current_time() + self.limits.header_timeout
        while True:
            self._check_head_size()
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self._receive(deadline))

    def _check_head_size(self) -> None:
        # h11 only enforces its cap on an *incomplete* head; a 100 KB head that arrives whole
        # would pass. The head must end within the first max_header_bytes.
        cap = self.limits.max_header_bytes
        buffered = self.conn.trailing_data[0]
        if len(buffered) > cap and buffered.find(b"\r\n\r\n", 0, cap) < 0:
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)

    # -- BodySource ---------------------------------------------------------------------------

    async def chunks(self) -> AsyncIterator[bytes]:
        limits = self.limits
        started, received = trio.current_time(), 0
        while self.conn.their_state is h11.SEND_BODY:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise InvalidArgument(f"malformed request body: {exc}") from None
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._send(h11.InformationalResponse(status_code=100, headers=[]))
                # A stall of body_timeout, or a trickle below min_body_rate (issue 15, item 4:
                # one byte every 15 s held a slot forever).
                deadline = min(trio.current_time() + limits.body_timeout, admission.body_deadline(
                    started, received, grace=limits.body_grace, min_rate=limits.min_body_rate))
                self.conn.receive_data(await self._receive(deadline))
            elif isinstance(event, h11.Data):
                received += len(event.data)
                yield bytes(event.data)
        self.tracked.enter(Phase.BUSY)

    async def read_body(self) -> bytes:
        cap = self.limits.max_body_bytes
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"request body is larger than the {cap >> 20} MiB limit")
            parts.append(chunk)
        return b"".join(parts)

    # -- request/response cycles --------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                event = await self._read_head()
            except _Shed:
                if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
                    # A request was on its way: say why rather than hang up (a kept-alive
                    # idle connection is just closed, as HTTP allows).
                    with trio.move_on_after(SHED_NOTICE_S):
                        await self._send_error(503, "too many connections to the daemon; "
                                               "this one was closed to make room")
                return
            except RequestTimeout:
                if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
                    return  # an idle keep-alive connection: just close it
                await self._send_error(408, "timed out reading the request head")
                return
            except h11.RemoteProtocolError as exc:
                await self._send_error(exc.error_status_hint, f"bad request: {exc}")
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or the peer gave up mid-cycle
            keep_going = await self._cycle(event)
            if not keep_going or self.conn.our_state is not h11.DONE:
                return
            if self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def _send_error(self, status: int, message: str) -> None:
        """An error before or outside a handler; the connection closes afterwards."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = error_response(status, message)
        response.headers.append(("Connection", "close"))
        try:
            await self._send_plain("GET", response)
        except (_ClientGone, h11.LocalProtocolError):
            pass

    async def _cycle(self, request: h11.Request) -> bool:
        """Serve one request. Returns False when the connection must close afterwards."""
        method = request.method.decode("ascii", "replace").upper()
        if len(request.headers) > self.limits.max_header_count:
            await self._send_error(431, "too many header fields")
            return False
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            val = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
        target = self.target = request.target.decode("latin-1")
        raw_path, _, raw_query = target.partition("?")
        upgrade = "upgrade" in headers.get("connection", "").lower() and "upgrade" in headers

        try:
            version, path = split_version(raw_path)
            route, params = self.app.router.match(method, path)
        except ShipslogError as exc:
            return await self._respond(method, error_response(exc.status, exc.message), upgrade)

        body: bytes | None = None
        if not route.stream_body:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.limits.max_body_bytes:
                # Refuse before reading a byte of it (I-05): 100 MB bodies never reach memory.
                cap = self.limits.max_body_bytes >> 20
                message = f"request body is larger than the {cap} MiB limit"
                return await self._respond(method, error_response(413, message), upgrade)
            try:
                body = await self.read_body()
            except _Shed:
                return False
            except ShipslogError as exc:
                return await self._respond(method, error_response(exc.status, exc.message), upgrade)

        req = Request(
            method=method,
            path=path,
            params=params,
            query=parse_query(raw_query),
            headers=headers,
            api_version=version,
            actor=self.actor,
            streaming=route.stream_body,
            _body=body,
            _source=self if route.stream_body else None,
        )
        if route.cancel_on_disconnect and self.conn.their_state is h11.DONE:
            result: Response | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_for_close, nursery.cancel_scope)
                result = await self.app.call(route, req)
                nursery.cancel_scope.cancel()
            if result is None or self.client_gone:
                return False  # the client hung up; the handler was cancelled
            return await self._respond(method, result, upgrade)
        response = await self.app.call(route, req)
        return await self._respond(method, response, upgrade)

    async def _respond(self, method: str, response: Response, upgrade: bool) -> bool:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %d (uid=%s pid=%s)",
                method,
                redact_target(self.target),  # no request data in the log (issue 15)
                response.status,
                getattr(self.actor, "uid", "?"),
                getattr(self.actor, "pid", "?"),
            )
        # A body the handler did not read stays on the wire: close rather than read it (I-05).
        must_close = self.conn.their_state is h11.SEND_BODY
        # The request is complete: never shed as "slow"; a hijacked or streamed one is
        # long-lived by design (issue 15, item 4).
        long_lived = response.hijack is not None or response.stream is not None
        self.tracked.enter(Phase.STREAMING if long_lived else Phase.BUSY)
        if must_close and response.hijack is None:
            response.headers.append(("Connection", "close"))
        try:
            if response.hijack is not None:
                await self._hijack(response, upgrade)
                return False
            if response.stream is not None:
                await self._send_stream(method, response)
            else:
                await self._send_plain(method, response)
        except _ClientGone:
            return False
        return not must_close and not self.client_gone

    def _head(self, response: Response, extra: list[tuple[str, str]]) -> h11.Response:
        return h11.Response(
            status_code=response.status,
            headers=self.app.common_headers() + response.headers + extra,
            reason=_status_line_reason(response.status),
        )

    async def _send_plain(self, method: str, response: Response) -> None:
        body = response.body
        no_body = response.status in (204, 304) or response.status < 200
        extra = [] if no_body else [("Content-Length", str(len(body)))]
        with trio.move_on_after(self.limits.send_timeout):
            await self._send(self._head(response, extra))
            if body and not no_body and method != "HEAD":
                await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
            return
        # A client that does not read its answer must not hold a connection slot forever.
        self.client_gone = True
        raise _ClientGone()

    async def _send_stream(self, method: str, response: Response) -> None:
        assert response.stream is not None
        chunks = response.stream.__aiter__()
        try:
            await self._send(self._head(response, []))
            if method == "HEAD":
                await self._send(h11.EndOfMessage())
                return
            # Watch for the client going away only when its request is complete: an upload
            # route may still be reading its body from the same connection.
            watch = self.conn.their_state is h11.DONE
            async with trio.open_nursery() as nursery:
                if watch:
                    nursery.start_soon(self._watch_for_close, nursery.cancel_scope)
                try:
                    async for chunk in chunks:
                        if chunk:
                            await self._send(h11.Data(data=chunk))
                    await self._send(h11.EndOfMessage())
                except _ClientGone:
                    pass
                except Exception:  # noqa: BLE001 - headers are out: truncate, do not crash
                    log.exception("streaming response failed")
                    self.client_gone = True  # unterminated chunked body tells the client
                nursery.cancel_scope.cancel()
        finally:
            await _aclose(chunks)
        if self.client_gone:
            raise _ClientGone()

    async def _watch_for_close(self, scope: trio.CancelScope) -> None:
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.client_gone = True
                scope.cancel()
                return
            self.conn.receive_data(data)  # a pipelined next request; h11 keeps it
            if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
                return

    async def _hijack(self, response: Response, upgrade: bool) -> None:
        """Docker's attach/exec hijack: 101 UPGRADED (or 200 for a client that did not ask),
        then the raw connection, with bytes h11 already buffered put back in front."""
        assert response.hijack is not None
        if self.conn.their_state is h11.SEND_BODY:
            await self._send_error(400, "a hijacked request must not stream a body")
            return
        lines = [b"HTTP/1.1 101 UPGRADED" if upgrade else b"HTTP/1.1 200 OK"]
        if upgrade:
            lines += [b"Connection: Upgrade", b"Upgrade: tcp"]
        headers = self.app.common_headers() + response.headers
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", MULTIPLEXED_STREAM))
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
        prefix = self.conn.trailing_data[0]
        try:
            await self.stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        try:
            await response.hijack(HijackedStream(self.stream, prefix))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # noqa: BLE001 - the stream is raw now: log and close
            log.exception("hijacked connection handler failed")


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    # Shielded so a cancelled stream still runs its cleanup (unsubscribe, close files).
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            await aclose()
        except Exception:  # noqa: BLE001
            log.exception("closing a response stream failed")


# ---------------------------------------------------------------------------------------------
# Serving


async def _serve_connection(app: App, stream: trio.SocketStream, tracked: _Tracked) -> None:
    try:
        async with stream:
            try:
                actor = peercred.actor_from_socket(stream.socket, key=app.secret_key)
            except OSError:
                log.warning("no peer credentials on a connection; closing it")
                return
            await _Connection(app, stream, actor, tracked).run()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:  # noqa: BLE001 - never let one connection take the server down (I-05)
        log.exception("connection failed")


async def _refuse_connection(app: App, stream: trio.SocketStream) -> None:
    body = b'{"message":"too many connections to the daemon; try again later"}\n'
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Api-Version: {API_VERSION}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with trio.move_on_after(1):
        try:
            async with stream:
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def serve_listener(
    listener: trio.SocketListener,
    app: App,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on `listener` and serve `app` until cancelled."""
    slots = _Slots(app.limits)

    async def serve_one(stream: trio.SocketStream, key: int, tracked: _Tracked) -> None:
        try:
            await _serve_connection(app, stream, tracked)
        finally:
            slots.release(key)

    async with listener, trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_ERRORS:
                    raise
                log.error("accept failed (%s); pausing", os.strerror(exc.errno or 0))
                await trio.sleep(0.1)
                continue
            key = slots.admit(_is_local_admin(stream))
            if key is None:
                nursery.start_soon(_refuse_connection, app, stream)
                continue
            nursery.start_soon(serve_one, stream, key, slots.open[key])


def _is_local_admin(stream: trio.SocketStream) -> bool:
    """uid 0 or the daemon's own uid (the CLI, health checks): they get the reserved slots."""
    try:
        _, uid, _ = peercred.peer_credentials(stream.socket)
    except OSError:
        return False
    return uid in (0, os.geteuid())


async def _is_live(path: str) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        # A connect that hangs means a full backlog: a live server, too busy to answer.
        with trio.move_on_after(1):
            try:
                await probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                return False
        return True


async def bind_unix(
    path: str, *, mode: int = 0o660, group: str | None = "shipslog", backlog: int = 128
) -> trio.socket.SocketType:
    """A listening unix socket at `path` with `mode` and `group`, renamed into place."""
    if not path or path.startswith(("\0", "@")):
        raise InvalidArgument(f"refusing abstract unix socket {path!r}; use a filesystem path")
    path = os.path.abspath(path)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise Unavailable(f"{path} exists and is not a socket; refusing to replace it")
        if await _is_live(path):
            raise Unavailable(
                f"another server is already listening on {path}",
                hint="is shipslogd already running? stop it first",
            )
        os.unlink(path)  # stale: left by a daemon that died
    directory = os.path.dirname(path)
    staging = os.path.join(directory, f".s{os.getpid()}-{next(_staging_ids)}")
    if len(os.fsencode(max(path, staging, key=len))) > MAX_SOCKET_PATH:
        raise InvalidArgument(
            f"socket path {path!r} is too long: unix sockets allow {MAX_SOCKET_PATH} bytes "
            "(sun_path, unix(7))"
        )
    os.makedirs(directory, mode=0o755, exist_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.lexists(staging):
            os.unlink(staging)
        await sock.bind(staging)
        os.chmod(staging, mode)
        gid = _group_id(group)
        if gid is not None:
            try:
                os.chown(staging, -1, gid)
            except PermissionError:
                log.warning("cannot give %s to group %s; it stays owner-only", path, group)
        os.rename(staging, path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        if os.path.lexists(staging):
            os.unlink(staging)
        raise
    return sock


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


async def serve_unix(
    path: str,
    app: App,
    *,
    mode: int = 0o660,
    group: str | None = "shipslog",
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on the unix socket `path` until cancelled; the socket file is removed after.

    `task_status.started(path)` fires once the socket accepts connections.
    """
    sock = await bind_unix(path, mode=mode, group=group, backlog=app.limits.backlog)
    path = os.path.abspath(path)
    inode = os.stat(path).st_ino
    try:
        listener = trio.SocketListener(sock)

        async with trio.open_nursery() as nursery:
            await nursery.start(serve_listener, listener, app)
            task_status.started(path)
    finally:
        try:
            if os.stat(path).st_ino == inode:  # do not remove a successor's socket
                os.unlink(path)
        except OSError:
            pass
