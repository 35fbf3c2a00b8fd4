"""The synchronous API client the `shipslog` CLI uses: HTTP/1.1 over the daemon's unix socket.

I/O: connects to a unix socket (one connection per call; streams and hijacks keep theirs).
Standard library only (`socket`, `http.client`), so the CLI starts fast and needs no trio.

Paths are given without the version prefix; the client adds `/v1.43`. A 4xx/5xx answer raises
`ApiError(status, message)` with Docker's `{"message": ...}`; a missing or refusing socket raises
`DaemonUnreachable` naming the socket and what to do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, urlencode

from engine.api.stream import JsonLineDecoder

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


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)  # h11 requires a Host header
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


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
    return text or http.client.responses.get(status, f"HTTP {status}")


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
        url = f"/v{self.version}{quote(path, safe='/:@!$&()*+,;=-._~')}"
        if params:
            pairs = [(k, _encode_param(v)) for k, v in params.items() if v is not None]
            if pairs:
                url += "?" + urlencode(pairs)
        return url

    def _connect(self) -> _UnixConnection:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.connect()
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
        return conn

    def _send(
        self, conn: _UnixConnection, method: str, url: str, body: Any, headers: Mapping[str, str]
    ) -> http.client.HTTPResponse:
        try:
            conn.request(method, url, body=body, headers=dict(headers))
        except (BrokenPipeError, ConnectionResetError):
            # The daemon refused the body early (413) and closed; its answer is still readable.
            pass
        try:
            return conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError) as exc:
            raise DaemonUnreachable(
                f"the daemon at {self.host} closed the connection: {exc}",
                hint="check the daemon's log",
            ) from exc

    @staticmethod
    def _raise_for(resp: http.client.HTTPResponse, body: bytes | None = None) -> None:
        if resp.status >= 400:
            raise ApiError(
                resp.status, _error_message(resp.status, resp.read() if body is None else body)
            )

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
        conn = self._connect()
        try:
            resp = self._send(conn, method, self._url(path, params), body, headers or {})
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
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
        conn = self._connect()
        try:
            resp = self._send(
                conn, method, self._url(path, params), raw, {**extra, **(headers or {})}
            )
            self._raise_for(resp)

            def chunks() -> Iterator[bytes]:
                while True:
                    try:
                        data = resp.read1(READ_SIZE)
                    except (http.client.IncompleteRead, ConnectionResetError) as exc:
                        # An unterminated chunked body: the daemon stopped or the handler died.
                        raise DaemonUnreachable(
                            f"the connection to the daemon at {self.host} was cut mid-stream",
                            hint="the daemon may have stopped; check its log",
                        ) from exc
                    if not data:
                        return
                    yield data

            yield chunks()
        finally:
            conn.close()

    @contextlib.contextmanager
    def stream_json(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Iterator[Iterator[Any]]:
        """One decoded JSON object per line."""
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
        conn = self._connect()
        try:
            all_headers = {
                "Content-Type": "application/x-tar",
                "Transfer-Encoding": "chunked",
                **(headers or {}),
            }
            try:
                conn.request(
                    method,
                    self._url(path, params),
                    body=_chunks_of(fileobj),
                    headers=all_headers,
                    encode_chunked=True,
                )
            except (BrokenPipeError, ConnectionResetError):
                pass
            resp = conn.getresponse()
            data = resp.read()
            self._raise_for(resp, data)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def hijack(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> socket.socket:
        """Ask for `Upgrade: tcp`; after the 101 return the raw socket (attach, exec start).

        The head is read byte by byte so the stream after it is left entirely in the socket.
        """
        raw, headers = self._json_body(body)
        conn = self._connect()
        sock = conn.sock
        assert sock is not None
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
            conn.sock = None  # the socket is the caller's now
            return sock
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
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


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
