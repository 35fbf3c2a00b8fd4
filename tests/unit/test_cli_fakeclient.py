"""A recording fake of `engine.cli.client.Client` for CLI tests, and the tests of the fake.

I/O: `hijack` hands out one end of a real `socket.socketpair()`, with the scripted container
output already written and the write side shut, so the CLI's real stdio pump runs against it.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.api.docker.stream import frame
from engine.cli.client import ApiError, Response
from engine.cli.main import run


@dataclass
class Call:
    method: str
    path: str
    params: Any = None  # a dict, or the (key, value) pairs of repeated parameters
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass
class FakeClient:
    """Answers by (METHOD, path): a value, an exception to raise, or a list of values used
    one per call. Records every call in order."""

    answers: dict[tuple[str, str], Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    hijacked: list[socket.socket] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def _answer(self, method: str, path: str, params: Any = None, body: Any = None,
                headers: Any = None) -> Any:
        recorded = (dict(params) if isinstance(params, dict) else list(params.items())
                    if params else None)
        self.calls.append(Call(method, path, recorded, body,
                               dict(headers) if headers else None))
        key = (method, path)
        if key not in self.answers:
            raise ApiError(404, f"fake: no answer for {method} {path}")
        answer = self.answers[key]
        if isinstance(answer, list) and answer and isinstance(answer[0], _Seq):
            answer = answer.pop(0).value if len(answer) > 1 else answer[0].value
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def get_json(self, path: str, params: Any = None) -> Any:
        return self._answer("GET", path, params)

    def post_json(self, path: str, params: Any = None, body: Any = None) -> Any:
        return self._answer("POST", path, params, body)

    def delete(self, path: str, params: Any = None) -> Any:
        return self._answer("DELETE", path, params)

    def request(self, method: str, path: str, params: Any = None, body: Any = None,
                headers: Any = None) -> Response:
        return Response(200, {}, self._answer(method, path, params, body, headers))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, params: Any = None, body: Any = None,
               headers: Any = None) -> Iterator[Iterator[bytes]]:
        yield iter(self._answer(method, path, params, body, headers))

    @contextlib.contextmanager
    def stream_json(self, method: str, path: str, params: Any = None,
                    body: Any = None) -> Iterator[Iterator[Any]]:
        yield iter(self._answer(method, path, params, body))

    def upload(self, method: str, path: str, fileobj: Any, params: Any = None,
               headers: Any = None) -> Response:
        data = fileobj.read()
        return Response(200, {}, self._answer(method, path, params, data, headers))

    def hijack(self, method: str, path: str, params: Any = None, body: Any = None
               ) -> socket.socket:
        output = self._answer(method, path, params, body)
        ours, theirs = socket.socketpair()
        self.hijacked.append(theirs)
        if callable(output):  # a scripted container that talks back, on its own thread
            thread = threading.Thread(target=output, args=(theirs,), daemon=True)
            thread.start()
            self.threads.append(thread)
            return ours
        theirs.sendall(output)
        theirs.shutdown(socket.SHUT_WR)
        return ours

    def paths(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls]

    def call(self, method: str, path: str) -> Call:
        return next(c for c in self.calls if c.method == method and c.path == path)


@dataclass
class _Seq:
    value: Any


def seq(*values: Any) -> list[_Seq]:
    """Answers used in order, one per call; the last one repeats."""
    return [_Seq(v) for v in values]


@dataclass
class Result:
    code: int
    out: str
    err: str


class _Out(io.StringIO):
    """A text stream with a binary side, as sys.stdout has, for container output."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.buffer = io.BytesIO()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def text(self) -> str:
        return self.getvalue() + self.buffer.getvalue().decode()


def cli(client: FakeClient, *argv: str, env: dict[str, str] | None = None,
        now: float = 1_700_000_000.0, stdin: Any = None, tty: bool = False) -> Result:
    out, err = _Out(tty), _Out()
    code = run(list(argv), environ=env or {}, stdout=out, stderr=err,
               make_client=lambda: client, clock=lambda: now,
               stdin=stdin if stdin is not None else io.BytesIO())
    return Result(code, out.text(), err.text())


# ------------------------------------------------------------------- the fake's own tests


def test_fake_records_calls_and_raises_unanswered() -> None:
    fake = FakeClient({("GET", "/a"): {"x": 1}})
    assert fake.get_json("/a", {"p": 1}) == {"x": 1}
    with pytest.raises(ApiError):
        fake.post_json("/b")
    assert fake.calls == [Call("GET", "/a", {"p": 1}), Call("POST", "/b")]


def test_fake_hijack_delivers_output_then_eof() -> None:
    fake = FakeClient({("POST", "/x"): frame(1, b"hi")})
    sock = fake.hijack("POST", "/x")
    data = b""
    while chunk := sock.recv(100):
        data += chunk
    assert data == frame(1, b"hi")


def cat_container(peer: socket.socket) -> None:
    """Echo stdin back as stdout frames until stdin's EOF, then close: `cat` in a container."""
    received = b""
    while chunk := peer.recv(65536):
        received += chunk
    peer.sendall(frame(1, received))
    peer.shutdown(socket.SHUT_WR)


def test_fake_sequence_answers_in_order() -> None:
    fake = FakeClient({("GET", "/s"): seq(1, 2)})
    assert [fake.get_json("/s") for _ in range(3)] == [1, 2, 2]
