"""The synchronous API client the `shipslog` CLI uses: HTTP/1.1 over the daemon's unix socket.

I/O: connects to a unix socket (one connection per call; streams and hijacks keep theirs).
Plain sockets and a small HTTP/1.1 reader of our own: `http.client` (with the `email` package
it pulls in) would cost the CLI ~40 ms of imports on every command, and no trio either.

Paths are given without the version prefix; the client adds `/v1.43`. A 4xx/5xx answer raises
`ApiError(status, message)` with Docker's `{"message": ...}`; a missing or refusing socket raises
`DaemonUnreachable` naming the socket and what to do.
"""

from __future__ import annotations

import _socket
import contextlib
import json
import os
import time

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator, Mapping
    from typing import IO, Any

    from engine.api.docker.stream import JsonLineDecoder as JsonLineDecoder  # re-exported
else:
    def __getattr__(name: str) -> object:
        # `from engine.cli.client import JsonLineDecoder` (build) still works, but only the
        # verbs that stream JSON lines import its module (~0.7 ms with struct; issue 17)
        if name == "JsonLineDecoder":
            from engine.api.docker.stream import JsonLineDecoder

            return JsonLineDecoder
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_HOST = "unix:///run/shipslog/shipslog.sock"
READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024


class ApiError(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class DaemonUnreachable(Exception):
    """No daemon answers on the socket."""

    def __init__(self, message: str, hint: str = "is shipslogd running? start it with: shipslogd"):
        super().__init__(message)
        self.message = message
        self.hint = hint


class Response:
    """A whole answer. (A plain class: `dataclasses` costs the CLI ~10 ms to import.)"""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> None:
        self.status = status
        self.headers = headers if headers is not None else {}  # lower-cased names
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status}, headers={self.headers}, body={self.body!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and (self.status, self.headers, self.body) == (
            other.status, other.headers, other.body)

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


class _Conn:
    """One HTTP/1.1 exchange over a connected unix socket, with a read buffer."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
             *, chunks: Iterator[bytes] | None = None) -> None:
        lines = [f"{method} {url} HTTP/1.1", "Host: localhost"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if chunks is not None:
            lines.append("Transfer-Encoding: chunked")
        elif body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if chunks is None:
            self.sock.sendall(head + (body or b""))
            return
        self.sock.sendall(head)
        for chunk in chunks:
            if chunk:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.sock.sendall(b"0\r\n\r\n")

    def _fill(self) -> bool:
        data = self.sock.recv(READ_SIZE)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD or not self._fill():
                raise _Cut()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_head(self) -> tuple[int, dict[str, str]]:
        while True:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > MAX_HEAD:
                    raise ApiError(502, "response head too large")
                if not self._fill():
                    raise _Cut()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            status, headers = _parse_head(head)
            if status != 100:  # skip "100 Continue"
                return status, headers

    def body(self, headers: Mapping[str, str]) -> Iterator[bytes]:
        """The body as it arrives: by Content-Length, chunked, or until the close."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0] or b"0", 16)
                if size == 0:
                    self._line()
                    return
                while len(self.buf) < size + 2:
                    if not self._fill():
                        raise _Cut()
                chunk, self.buf = self.buf[:size], self.buf[size + 2:]
                yield chunk
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            left = int(length)
            while left:
                if not self.buf and not self._fill():
                    raise _Cut()
                chunk, self.buf = self.buf[:left], self.buf[left:]
                left -= len(chunk)
                yield chunk
            return
        while True:
            if self.buf:
                chunk, self.buf = self.buf, b""
                yield chunk
            if not self._fill():
                return


class _Cut(Exception):
    """The connection ended in the middle of an answer."""


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ApiError(502, f"malformed response from the daemon: {status_line[:80]!r}") \
            from None
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _socket_path(host: str) -> str:
    if host.startswith("unix://"):
        return host[len("unix://") :]
    if host.startswith("/"):
        return host
    raise ValueError(f"unsupported host {host!r}: only unix:///path is supported")


def _encode_param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _error_message(status: int, body: bytes) -> str:
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            return decoded["message"]
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return text or f"HTTP {status}"



# urllib.parse's quote and urlencode, without importing urllib.parse (and the ipaddress it
# imports): ~2.5 ms of every CLI command's start-up (issue 17). Same output, byte for byte
# (tests/unit/test_client_quote.py compares them).
_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
PATH_SAFE = "/:@!$&()*+,;=-._~"


def quote(text: str, safe: str = "/") -> str:
    """urllib.parse.quote(text, safe) for str."""
    ok = _ALWAYS_SAFE.union(safe.encode("ascii", "ignore"))
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in text.encode("utf-8"))


def urlencode(pairs: list[tuple[Any, Any]]) -> str:
    """urllib.parse.urlencode(pairs) (quote_plus, doseq off)."""
    def plus(x: Any) -> str:
        return quote(str(x), " ").replace(" ", "+")

    return "&".join(f"{plus(k)}={plus(v)}" for k, v in pairs)


class Client:
    def __init__(
        self, host: str | None = None, *, version: str = "1.43", timeout: float | None = None
    ) -> None:
        self.host = host or os.environ.get("SHIPSLOG_HOST") or DEFAULT_HOST
        self.socket_path = _socket_path(self.host)
        self.version = version
        self.timeout = timeout

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        url = f"/v{self.version}{quote(path, PATH_SAFE)}"
        if params:
            pairs = [(k, _encode_param(v)) for k, v in params.items() if v is not None]
            if pairs:
                url += "?" + urlencode(pairs)
        return url

    def _connect(self) -> _Conn:
        # _socket, the C module under `socket`: socket.py turns its constants into enums on
        # import, ~2.5 ms of every command's start-up for nothing a request needs (issue 17).
        # Hijacked connections get a full socket.socket (see hijack).
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        deadline = time.monotonic() + (self.timeout or 0)
        try:
            while True:
                try:
                    sock.connect(self.socket_path)
                    break
                except BlockingIOError:
                    # EAGAIN: the daemon's listen backlog is full (a storm of connections,
                    # issue 15 item 4). A unix connect() with a timeout does not wait for
                    # room; the CLI must still get through, so wait here.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.005)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)

    def _open(self) -> _Conn:
        try:
            return self._connect()
        except FileNotFoundError:
            raise DaemonUnreachable(
                f"cannot connect to the daemon at {self.host}: no such socket"
            ) from None
        except ConnectionRefusedError:
            raise DaemonUnreachable(
                f"cannot connect to the daemon at {self.host}: refused"
            ) from None
        except PermissionError:
            raise DaemonUnreachable(
                f"permission denied connecting to {self.host}",
                hint="run as root or as a member of the shipslog group",
            ) from None

    def _exchange(self, conn: _Conn, method: str, url: str, body: bytes | None,
                  headers: Mapping[str, str], chunks: Iterator[bytes] | None = None
                  ) -> tuple[int, dict[str, str]]:
        try:
            conn.send(method, url, body, headers, chunks=chunks)
        except (BrokenPipeError, ConnectionResetError):
            # The daemon refused the body early (413) and closed; its answer is still readable.
            pass
        try:
            return conn.read_head()
        except (_Cut, ConnectionResetError) as exc:
            raise DaemonUnreachable(
                f"the daemon at {self.host} closed the connection before answering",
                hint="check the daemon's log",
            ) from exc

    def _read_all(self, conn: _Conn, headers: Mapping[str, str]) -> bytes:
        try:
            return b"".join(conn.body(headers))
        except (_Cut, ConnectionResetError) as exc:
            raise DaemonUnreachable(
                f"the connection to the daemon at {self.host} was cut mid-answer",
                hint="the daemon may have stopped; check its log",
            ) from exc

    @staticmethod
    def _json_body(body: Any) -> tuple[bytes | None, dict[str, str]]:
        if body is None:
            return None, {}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}

    # -- public API ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request; returns the response whatever its status (no ApiError)."""
        conn = self._open()
        try:
            status, head = self._exchange(conn, method, self._url(path, params), body,
                                          headers or {})
            if method == "HEAD" or status in (204, 304):  # no body, whatever the headers say
                return Response(status, head, b"")
            return Response(status, head, self._read_all(conn, head))
        finally:
            conn.close()

    def _call_json(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> Any:
        raw, headers = self._json_body(body)
        resp = self.request(method, path, params, raw, headers)
        if resp.status >= 400:
            raise ApiError(resp.status, _error_message(resp.status, resp.body))
        if resp.status == 204 or not resp.body.strip():
            return None
        try:
            return json.loads(resp.body)
        except ValueError:
            return resp.body.decode("utf-8", "replace")

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._call_json("GET", path, params, None)

    def post_json(
        self, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        return self._call_json("POST", path, params, body)

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._call_json("DELETE", path, params, None)

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[Iterator[bytes]]:
        """Raw body chunks as they arrive (logs -f, events, pull progress)."""
        raw, extra = self._json_body(body) if not isinstance(body, bytes) else (body, {})
        conn = self._open()
        try:
            status, head = self._exchange(
                conn, method, self._url(path, params), raw, {**extra, **(headers or {})}
            )
            if status >= 400:
                raise ApiError(status, _error_message(status, self._read_all(conn, head)))

            def chunks() -> Iterator[bytes]:
                try:
                    yield from conn.body(head)
                except (_Cut, ConnectionResetError) as exc:
                    # An unterminated chunked body: the daemon stopped or the handler died.
                    raise DaemonUnreachable(
                        f"the connection to the daemon at {self.host} was cut mid-stream",
                        hint="the daemon may have stopped; check its log",
                    ) from exc

            yield chunks()
        finally:
            conn.close()

    @contextlib.contextmanager
    def stream_json(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Iterator[Iterator[Any]]:
        """One decoded JSON object per line."""
        from engine.api.docker.stream import JsonLineDecoder

        with self.stream(method, path, params, body) as chunks:

            def objects() -> Iterator[Any]:
                decoder = JsonLineDecoder()
                for chunk in chunks:
                    yield from decoder.feed(chunk)
                yield from decoder.close()

            yield objects()

    def upload(
        self,
        method: str,
        path: str,
        fileobj: IO[bytes],
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send `fileobj` as a chunked request body (image load/import); raises ApiError."""
        conn = self._open()
        try:
            all_headers = {"Content-Type": "application/x-tar", **(headers or {})}
            status, head = self._exchange(conn, method, self._url(path, params), None,
                                          all_headers, chunks=_chunks_of(fileobj))
            data = self._read_all(conn, head)
            if status >= 400:
                raise ApiError(status, _error_message(status, data))
            return Response(status, head, data)
        finally:
            conn.close()

    def hijack(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> socket.socket:
        """Ask for `Upgrade: tcp`; after the 101 return the raw socket (attach, exec start).

        The head is read byte by byte so the stream after it is left entirely in the socket.
        """
        import socket  # attach and exec only: the caller gets the full socket API

        raw, headers = self._json_body(body)
        sock = socket.socket(fileno=self._open().sock.detach())
        # the fd keeps the O_NONBLOCK a timeout set; the new object must know its timeout
        sock.settimeout(self.timeout)
        lines = [
            f"{method} {self._url(path, params)} HTTP/1.1",
            "Host: localhost",
            "Connection: Upgrade",
            "Upgrade: tcp",
            f"Content-Length: {len(raw or b'')}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (raw or b""))
            status, head_headers = _read_head(sock)
        except BaseException:
            sock.close()
            raise
        if status in (101, 200):
            return sock  # the caller's now
        try:
            body_bytes = _read_rest(sock, head_headers)
        finally:
            sock.close()
        raise ApiError(status, _error_message(status, body_bytes))


def _chunks_of(fileobj: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = fileobj.read(READ_SIZE)
        if not data:
            return
        yield data


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str]]:
    # One byte at a time: a head is a few hundred bytes, and not one byte of the raw stream
    # after it may end up in a buffer the caller cannot see.
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ApiError(502, "the daemon closed the connection before answering")
        head += byte
        if len(head) > MAX_HEAD:
            raise ApiError(502, "response head too large")
    return _parse_head(bytes(head[:-4]))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        data = sock.recv(size)
        if not data:
            raise ApiError(502, "the daemon closed the connection mid-answer")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def _read_rest(sock: socket.socket, headers: Mapping[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return _recv_exactly(sock, int(length))
    parts: list[bytes] = []
    while True:
        data = sock.recv(READ_SIZE)
        if not data:
            return b"".join(parts)
        parts.append(data)
