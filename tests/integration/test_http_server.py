"""The API server framework end to end: a real server on a temporary unix socket, driven by the
real client (in a worker thread), raw sockets, and the real `docker` CLI.

I/O: unix sockets under pytest's tmp_path; runs /usr/local/bin/docker when present.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from engine.api.docker.stream import STDOUT, FrameDecoder
from engine.api.server import http
from engine.api.server.hijack import HijackedStream
from engine.api.server.router import (
    Request,
    Response,
    Router,
    empty,
    hijack,
    json_response,
    streaming,
)
from engine.cli.client import ApiError, Client, DaemonUnreachable
from engine.core.errors import Conflict, InvalidArgument, Unavailable

SAFETY = 20  # seconds: a hung test fails instead of hanging CI; never a timing assertion


class Greeting(msgspec.Struct):
    Name: str
    Count: int = 1


def make_router(state: dict) -> Router:
    router = Router()

    @router.route("POST", "/echo")
    async def echo(req: Request) -> Response:
        body = await req.json(Greeting)
        return json_response(
            {"Name": body.Name, "Count": body.Count, "Version": req.api_version}, status=201
        )

    @router.route("GET", "/query")
    async def query(req: Request) -> Response:
        return json_response(
            {"force": req.bool("force"), "t": req.int("t", 10), "all": req.query.get("x", [])}
        )

    @router.route("POST", "/nothing")
    async def nothing(req: Request) -> Response:
        return empty(204)

    @router.route("GET", "/boom")
    async def boom(req: Request) -> Response:
        raise RuntimeError("kaboom\nsecond line")

    @router.route("GET", "/conflict")
    async def conflict(req: Request) -> Response:
        raise Conflict("name in use")

    @router.route("GET", "/whoami")
    async def whoami(req: Request) -> Response:
        return json_response(req.actor)

    @router.route("GET", "/images/{name:path}/json")
    async def image(req: Request) -> Response:
        return json_response({"name": req.params["name"]})

    @router.route("GET", "/images/json")
    async def images(req: Request) -> Response:
        return json_response([])

    @router.route("GET", "/containers/{id}/json")
    async def container(req: Request) -> Response:
        return json_response({"id": req.params["id"]})

    @router.route("POST", "/upload", stream_body=True)
    async def upload(req: Request) -> Response:
        size = 0
        async for chunk in req.stream_body():
            size += len(chunk)
        return json_response({"size": size})

    @router.route("GET", "/stream")
    async def stream(req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b'{"n":1}\n'
                # The test sets this only after it has read the first line: delivery is
                # incremental, or the test never gets here.
                await state["first_read"].wait()
                yield b'{"n":2}\n'
                await state["forever"].wait()
            finally:
                state["stream_closed"].set()

        return streaming(chunks())

    @router.route("GET", "/short-stream")
    async def short_stream(req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(3):
                yield b'{"n":%d}\n' % n

        return streaming(chunks())

    @router.route("GET", "/group")
    async def group(req: Request) -> Response:
        raise ExceptionGroup("from a nursery", [Conflict("container is paused")])

    @router.route("GET", "/not-a-response")
    async def not_a_response(req: Request) -> Response:
        return {"oops": True}  # type: ignore[return-value]

    @router.route("POST", "/ignores-body", stream_body=True)
    async def ignores_body(req: Request) -> Response:
        return json_response({"ignored": True})

    @router.route("GET", "/broken-stream")
    async def broken_stream(req: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"n":1}\n'
            raise RuntimeError("the log file vanished")

        return streaming(chunks())

    @router.route("POST", "/wait", cancel_on_disconnect=True)
    async def wait(req: Request) -> Response:
        try:
            state["waiting"].set()
            await state["forever"].wait()
        finally:
            state["wait_cancelled"].set()
        return empty()

    @router.route("POST", "/attach")
    async def attach(req: Request) -> Response:
        async def echo(conn: HijackedStream) -> None:
            while data := await conn.receive_some():
                await conn.send_frame(STDOUT, data.upper())
            await conn.send_eof()

        return hijack(echo, tty=False)

    return router


@pytest.fixture
def state() -> dict:
    names = ("first_read", "forever", "stream_closed", "waiting", "wait_cancelled")
    return {name: trio.Event() for name in names}


async def start_server(nursery: trio.Nursery, path: str, state: dict, **limits: object) -> str:
    app = http.App(make_router(state), limits=http.Limits(**limits))  # type: ignore[arg-type]
    return await nursery.start(http.serve_unix, path, app)


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path, state: dict) -> str:
    return await start_server(nursery, str(tmp_path / "api.sock"), state)


def client(path: str) -> Client:
    return Client(f"unix://{path}", timeout=SAFETY)


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    with trio.fail_after(SAFETY):
        return await trio.to_thread.run_sync(fn, *args)


def raw_exchange(path: str, data: bytes, half_close: bool = False) -> bytes:
    """Send raw bytes (then EOF if `half_close`), read until the server closes."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(SAFETY)
        sock.connect(path)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        parts = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)


# ---------------------------------------------------------------------------------------------


async def test_json_round_trip_and_headers(server: str) -> None:
    c = client(server)
    assert await in_thread(c.post_json, "/echo", None, {"Name": "web"}) == {
        "Name": "web",
        "Count": 1,
        "Version": "1.43",
    }
    resp = await in_thread(c.request, "GET", "/_ping")
    assert resp.status == 200 and resp.body == b"OK"
    assert resp.headers["api-version"] == "1.43"
    assert resp.headers["ostype"] == "linux"
    assert resp.headers["docker-experimental"] == "false"
    assert resp.headers["cache-control"].startswith("no-cache")
    assert "builder-version" in resp.headers and "server" in resp.headers


async def test_head_ping_has_headers_and_no_body(server: str) -> None:
    resp = await in_thread(client(server).request, "HEAD", "/_ping")
    assert resp.status == 200 and resp.body == b""
    assert resp.headers["api-version"] == "1.43"


async def test_query_helpers(server: str) -> None:
    c = client(server)
    got = await in_thread(c.get_json, "/query", {"force": True, "t": 3, "x": "a"})
    assert got == {"force": True, "t": 3, "all": ["a"]}
    got = await in_thread(c.get_json, "/query", {"force": "false"})
    assert got == {"force": False, "t": 10, "all": []}
    with pytest.raises(ApiError) as err:
        await in_thread(c.get_json, "/query", {"t": "ten"})
    assert err.value.status == 400 and "'t'" in err.value.message


async def test_204_gives_none(server: str) -> None:
    assert await in_thread(client(server).post_json, "/nothing") is None


async def test_unknown_route_is_404(server: str) -> None:
    with pytest.raises(ApiError) as err:
        await in_thread(client(server).get_json, "/no/such/thing")
    assert err.value.status == 404 and err.value.message == "page not found"


async def test_path_params_with_slashes_and_literal_priority(server: str) -> None:
    c = client(server)
    name = "localhost:5000/team/app:1.0"
    assert await in_thread(c.get_json, f"/images/{name}/json") == {"name": name}
    assert await in_thread(c.get_json, "/images/json") == []
    assert await in_thread(c.get_json, "/containers/abc/json") == {"id": "abc"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"Name": "a"', "invalid JSON"),
        (b'{"Name": "a"} trailing', "invalid JSON: unexpected content after JSON"),
        (b"[" * 10000 + b"]" * 10000, "invalid JSON"),
        (b'{"Name": 5}', "invalid JSON"),
        (b'{"Name": "\xff"}', "invalid JSON"),
        (b'{"Name": "a", "Count": 1e400}', "invalid JSON"),
        (b"", "body required"),
    ],
)
async def test_malformed_json_is_400_and_server_lives(
    server: str, body: bytes, message: str
) -> None:
    c = client(server)
    resp = await in_thread(
        c.request, "POST", "/echo", None, body, {"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert resp.json()["message"].startswith(message)
    assert (await in_thread(c.request, "GET", "/_ping")).status == 200


async def test_wrong_content_type_is_400(server: str) -> None:
    resp = await in_thread(
        client(server).request, "POST", "/echo", None, b'{"Name":"a"}', {"Content-Type": "text/x"}
    )
    assert resp.status == 400 and "Content-Type" in resp.json()["message"]


async def test_handler_exception_is_500_and_server_keeps_serving(server: str) -> None:
    c = client(server)
    resp = await in_thread(c.request, "GET", "/boom")
    assert resp.status == 500
    assert resp.json() == {"message": "internal error: RuntimeError: kaboom"}
    with pytest.raises(ApiError) as err:
        await in_thread(c.get_json, "/conflict")
    assert (err.value.status, err.value.message) == (409, "name in use")
    assert await in_thread(c.post_json, "/echo", None, {"Name": "x"}) is not None


async def test_handler_errors_in_groups_and_wrong_return_types(server: str) -> None:
    c = client(server)
    resp = await in_thread(c.request, "GET", "/group")
    assert (resp.status, resp.json()) == (409, {"message": "container is paused"})
    resp = await in_thread(c.request, "GET", "/not-a-response")
    assert resp.status == 500 and "not a Response" in resp.json()["message"]


async def test_stream_failing_midway_is_cut_not_completed(server: str) -> None:
    c = client(server)

    def read_all() -> list[bytes]:
        got = []
        with c.stream("GET", "/broken-stream") as chunks:
            for chunk in chunks:
                got.append(chunk)
        return got

    with pytest.raises(DaemonUnreachable, match="cut mid-stream"):
        await in_thread(read_all)
    assert (await in_thread(c.request, "GET", "/_ping")).status == 200


async def test_unread_body_closes_the_connection_never_parsed_as_a_request(server: str) -> None:
    # The body looks like a second request; reading it as one would be request smuggling.
    smuggled = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"POST /ignores-body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
    reply = await in_thread(raw_exchange, server, head + smuggled)
    assert reply.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in reply.lower() and b'{"ignored":true}' in reply


async def test_expect_100_continue(server: str) -> None:
    body = b'{"Name":"slow"}'

    def exchange() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(SAFETY)
            sock.connect(server)
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            interim = sock.recv(12)
            assert interim == b"HTTP/1.1 100", interim
            sock.sendall(body)
            out = b""
            while data := sock.recv(4096):
                out += data
            return out

    reply = await in_thread(exchange)
    assert b"HTTP/1.1 201 " in reply and b'"Name":"slow"' in reply


async def test_oversized_body_is_413(nursery: trio.Nursery, tmp_path: Path, state: dict) -> None:
    path = await start_server(nursery, str(tmp_path / "s"), state, max_body_bytes=1024)
    c = client(path)
    big = b'{"Name": "' + b"a" * 4096 + b'"}'
    resp = await in_thread(
        c.request, "POST", "/echo", None, big, {"Content-Type": "application/json"}
    )
    assert resp.status == 413
    # Chunked bodies have no Content-Length: the cap applies while reading.
    resp = await in_thread(c.upload, "POST", "/upload", io.BytesIO(big * 10))
    assert resp.json() == {"size": len(big) * 10}  # streaming routes are uncapped
    head = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunked = head + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n"
    assert b" 413 " in (await in_thread(raw_exchange, path, chunked)).split(b"\r\n")[0] + b" "


async def test_default_body_cap_refuses_100_mb_without_reading_it(server: str) -> None:
    head = (
        b"POST /v1.43/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n{"
    )
    reply = await in_thread(raw_exchange, server, head)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"16 MiB" in reply


async def test_client_gets_the_413_even_while_still_sending(server: str) -> None:
    # 20 MB cannot fit the socket buffer: the daemon answers and closes mid-upload, and the
    # client must still read that answer instead of failing with EPIPE.
    c = client(server)
    body = b"x" * (20 * 1024 * 1024)
    resp = await in_thread(
        c.request, "POST", "/echo", None, body, {"Content-Type": "application/json"}
    )
    assert resp.status == 413 and "16 MiB" in resp.json()["message"]


async def test_slow_client_does_not_block_others(server: str) -> None:
    with socket.socket(socket.AF_UNIX) as slow:
        slow.connect(server)
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le")  # and then nothing
        assert (await in_thread(client(server).request, "GET", "/_ping")).status == 200


async def test_oversized_headers_are_431(server: str) -> None:
    c = client(server)
    resp = await in_thread(c.request, "GET", "/_ping", None, None, {"X-Big": "a" * 100_000})
    assert resp.status == 431
    many = {f"X-H{i}": "v" for i in range(300)}
    resp = await in_thread(c.request, "GET", "/_ping", None, None, many)
    assert resp.status == 431
    assert (await in_thread(c.request, "GET", "/_ping")).status == 200


async def test_garbage_request_line_is_400(server: str) -> None:
    reply = await in_thread(raw_exchange, server, b"\x00\x01 nonsense\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_keep_alive_serves_several_requests_on_one_connection(server: str) -> None:
    req = b"GET /v1.43/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = await in_thread(raw_exchange, server, req + req + last)
    assert reply.count(b"HTTP/1.1 200 ") == 3


async def test_streaming_is_incremental_and_closed_when_client_leaves(
    server: str, state: dict
) -> None:
    c = client(server)

    def read_two_then_leave() -> list[bytes]:
        got = []
        with c.stream("GET", "/stream") as chunks:
            for chunk in chunks:
                got.append(chunk)
                if len(got) == 1:
                    trio.from_thread.run_sync(state["first_read"].set)
                if len(got) == 2:
                    break
        return got

    assert await in_thread(read_two_then_leave) == [b'{"n":1}\n', b'{"n":2}\n']
    with trio.fail_after(SAFETY):
        await state["stream_closed"].wait()  # the generator's finally ran: it was closed


async def test_long_poll_is_cancelled_when_the_client_hangs_up(server: str, state: dict) -> None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(server)
        sock.sendall(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        with trio.fail_after(SAFETY):
            await state["waiting"].wait()
    finally:
        sock.close()
    with trio.fail_after(SAFETY):
        await state["wait_cancelled"].wait()
    assert not state["forever"].is_set()


async def test_stream_json_decodes_lines(server: str) -> None:
    c = client(server)

    def read_all() -> list:
        with c.stream_json("GET", "/short-stream") as objects:
            return list(objects)

    assert await in_thread(read_all) == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_hijack_round_trip(server: str) -> None:
    c = client(server)

    def attach() -> list[tuple[int, bytes]]:
        sock = c.hijack("POST", "/attach")
        with sock:
            sock.sendall(b"hello ")
            sock.sendall(b"world")
            sock.shutdown(socket.SHUT_WR)
            decoder = FrameDecoder()
            frames = []
            while data := sock.recv(4096):
                frames += decoder.feed(data)
            assert decoder.pending == 0
            return frames

    frames = await in_thread(attach)
    assert all(stream == STDOUT for stream, _ in frames)
    assert b"".join(data for _, data in frames) == b"HELLO WORLD"


async def test_hijack_without_upgrade_gets_200_then_raw_stream(server: str) -> None:
    req = b"POST /v1.43/attach HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nabc"

    def exchange() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(SAFETY)
            sock.connect(server)
            sock.sendall(req)  # "abc" arrives in the same packet: h11 buffered it
            sock.shutdown(socket.SHUT_WR)
            out = b""
            while data := sock.recv(4096):
                out += data
            return out

    reply = await in_thread(exchange)
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"application/vnd.docker.multiplexed-stream" in head
    assert FrameDecoder().feed(rest) == [(STDOUT, b"ABC")]


async def test_hijack_upgrade_reply_is_docker_shaped(server: str) -> None:
    req = (
        b"POST /v1.43/attach HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    # Stdin typed ahead arrives in the same packet as the request: h11 buffers it, and the
    # handler must still see it first.
    reply = await in_thread(raw_exchange, server, req + b"typed ahead", True)
    head, _, rest = reply.partition(b"\r\n\r\n")
    head = head.lower()
    assert head.startswith(b"http/1.1 101 upgraded")
    assert b"upgrade: tcp" in head and b"connection: upgrade" in head
    assert b"application/vnd.docker.multiplexed-stream" in head
    assert b"".join(data for _, data in FrameDecoder().feed(rest)) == b"TYPED AHEAD"


async def test_version_negotiation(server: str) -> None:
    for version, ok in [
        ("1.24", True),
        ("1.41", True),
        ("1.43", True),
        ("1.12", False),
        ("1.44", False),
    ]:
        c = Client(f"unix://{server}", version=version, timeout=SAFETY)
        if ok:
            got = await in_thread(c.post_json, "/echo", None, {"Name": "v"})
            assert got["Version"] == version
        else:
            with pytest.raises(ApiError) as err:
                await in_thread(c.get_json, "/_ping")
            assert err.value.status == 400
            word = "old" if version == "1.12" else "new"
            assert f"client version {version} is too {word}" in err.value.message
    reply = await in_thread(raw_exchange, server, b"GET /images/json HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"[]\n")


async def test_actor_is_the_calling_process(server: str) -> None:
    actor = await in_thread(client(server).get_json, "/whoami")
    assert actor["uid"] == os.getuid()
    assert actor["gid"] == os.getgid()
    assert actor["pid"] == os.getpid()
    assert actor["via"] == "api"
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
        argv = f.read().rstrip(b"\0").split(b"\0")
    assert actor["command"] == [a.decode() for a in argv]
    with open(f"/proc/{os.getpid()}/loginuid") as f:
        loginuid = int(f.read())
    assert actor["loginuid"] == (None if loginuid == 0xFFFFFFFF else loginuid)


async def test_socket_group(nursery: trio.Nursery, tmp_path: Path) -> None:
    import grp

    others = [g for g in grp.getgrall() if g.gr_gid != os.getgid()]
    if os.getuid() != 0 or not others:
        pytest.skip("needs root and a second group to prove the chgrp")
    group = others[0]
    path = str(tmp_path / "g.sock")
    serve = functools.partial(http.serve_unix, path, http.App(), group=group.gr_name)
    await nursery.start(serve)
    assert os.stat(path).st_gid == group.gr_gid
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".s")]  # staging name gone


async def test_delete_and_get_json(server: str) -> None:
    c = client(server)
    with pytest.raises(ApiError) as err:
        await in_thread(c.delete, "/containers/abc")
    assert err.value.status == 404


async def test_idle_connection_is_closed(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    # Each server has one short timeout and one long one, so the outcome does not depend on
    # how fast this test's thread runs.
    idle = await start_server(
        nursery, str(tmp_path / "idle"), state, idle_timeout=0.2, header_timeout=SAFETY
    )
    # Silent client: closed with no answer.
    assert await in_thread(raw_exchange, idle, b"") == b""
    loris = await start_server(
        nursery, str(tmp_path / "loris"), state, idle_timeout=SAFETY, header_timeout=0.2
    )
    # Slow-loris: half a head, then nothing: 408, then closed.
    reply = await in_thread(raw_exchange, loris, b"GET /_ping HTTP/1.1\r\nHost")
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_connection_cap_evicts_idle_connections_first(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    path = await start_server(nursery, str(tmp_path / "s"), state, max_connections=2)
    idle = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    try:
        for sock in idle:
            sock.connect(path)
        # Every server task is now parked waiting for a first byte: both connections are idle.
        await trio.testing.wait_all_tasks_blocked()
        request = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await in_thread(raw_exchange, path, request)
        assert reply.startswith(b"HTTP/1.1 200 ")
        idle[0].settimeout(SAFETY)
        assert await in_thread(idle[0].recv, 1) == b""  # the longest-idle one made room
    finally:
        for sock in idle:
            sock.close()


async def test_connection_cap_sheds_the_slowest_request_rather_than_refusing(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    """Issue 15, item 4: connections trickling their requests no longer lock others out."""
    path = await start_server(nursery, str(tmp_path / "s"), state, max_connections=2)
    slow = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    try:
        for sock in slow:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.1\r\n")  # a head in progress, then nothing
        await trio.testing.wait_all_tasks_blocked()
        request = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await in_thread(raw_exchange, path, request)
        assert reply.startswith(b"HTTP/1.1 200 ")
        slow[0].settimeout(SAFETY)
        told = b""
        while chunk := await in_thread(slow[0].recv, 4096):  # the oldest trickler made room,
            told += chunk  # and was told why before the close
        assert told.startswith(b"HTTP/1.1 503 ")
        assert b"closed to make room" in told
    finally:
        for sock in slow:
            sock.close()


async def test_connection_cap_refuses_with_503_only_when_nothing_can_be_shed(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    """Requests being served are never shed; past them and the admin reserve: 503."""
    full = await start_server(nursery, str(tmp_path / "full"), state, max_connections=2,
                              admin_reserve=0)
    spare = await start_server(nursery, str(tmp_path / "spare"), state, max_connections=2,
                               admin_reserve=1)
    busy = [socket.socket(socket.AF_UNIX) for _ in range(4)]
    try:
        for sock, path in zip(busy, [full, full, spare, spare], strict=True):
            sock.connect(path)
            sock.sendall(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        request = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await in_thread(raw_exchange, full, request)
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"too many connections" in reply
        # The client is this process, the server's own uid: a local admin, like the CLI, it
        # gets a reserved slot.
        reply = await in_thread(raw_exchange, spare, request)
        assert reply.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in busy:
            sock.close()


async def test_socket_mode_stale_socket_and_live_server(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    path = str(tmp_path / "api.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on, as a crashed daemon leaves it
    await start_server(nursery, path, state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert (await in_thread(client(path).request, "GET", "/_ping")).status == 200
    with pytest.raises(Unavailable, match="already listening"):
        await http.serve_unix(path, http.App())
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(Unavailable, match="not a socket"):
        await http.serve_unix(str(regular), http.App())


async def test_socket_path_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / ("x" * 120))
    with pytest.raises(InvalidArgument, match="too long"):
        await http.serve_unix(path, http.App())


async def test_client_names_the_missing_socket(tmp_path: Path) -> None:
    c = Client(f"unix://{tmp_path}/nope.sock")
    with pytest.raises(DaemonUnreachable) as err:
        await in_thread(c.get_json, "/_ping")
    assert str(tmp_path / "nope.sock") in str(err.value)
    assert "shipslogd" in err.value.hint


# ---------------------------------------------------------------------------------------------
# The real docker CLI against our framing and negotiation

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")
async def test_docker_cli_version(nursery: trio.Nursery, tmp_path: Path, state: dict) -> None:
    from engine.api.docker.models import ComponentVersion, SystemVersion

    router = make_router(state)

    @router.route("GET", "/version")
    async def version(req: Request) -> Response:
        return json_response(
            SystemVersion(
                Version="0.1.0",
                ApiVersion="1.43",
                MinAPIVersion="1.24",
                Os="linux",
                Arch="amd64",
                KernelVersion=os.uname().release,
                Components=[ComponentVersion(Name="Engine", Version="0.1.0")],
            )
        )

    path = str(tmp_path / "d.sock")
    await nursery.start(http.serve_unix, path, http.App(router))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
    }
    with trio.fail_after(60):
        result = await trio.run_process(
            [DOCKER, "-H", f"unix://{path}", "version", "--format", "{{json .Server}}"],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    server = msgspec.json.decode(result.stdout)
    assert server["ApiVersion"] == "1.43"
    assert server["Version"] == "0.1.0"
    assert server["Os"] == "linux"


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")
async def test_docker_cli_exec_hijack_and_events_stream(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    """`docker exec -i` drives create → hijacked start (stdin, CloseWrite, multiplexed stdout
    and stderr) → inspect for the exit code; `docker events` reads a chunked JSON stream."""
    from engine.api.docker.models import (
        ContainerInspect,
        ContainerState,
        EventActor,
        EventMessage,
        ExecConfig,
        ExecInspect,
    )

    router = Router()
    seen: list[str] = []

    @router.route("GET", "/containers/{id}/json")
    async def inspect(req: Request) -> Response:
        seen.append(f"inspect {req.params['id']}")
        running = ContainerState(Status="running", Running=True, Pid=42)
        return json_response(
            ContainerInspect(
                Id="c" * 64, Created="2026-01-01T00:00:00Z", Name="/web", State=running
            )
        )

    @router.route("POST", "/containers/{id}/exec")
    async def exec_create(req: Request) -> Response:
        config = await req.json(ExecConfig)
        seen.append(f"create {req.params['id']} {config.Cmd}")
        return json_response({"Id": "e" * 64}, status=201)

    @router.route("POST", "/exec/{id}/start")
    async def exec_start(req: Request) -> Response:
        await req.json(dict)

        async def shout(conn: HijackedStream) -> None:
            while data := await conn.receive_some():
                await conn.send_frame(STDOUT, data.upper())
            await conn.send_frame(2, b"done\n")

        return hijack(shout, tty=False)

    @router.route("GET", "/exec/{id}/json")
    async def exec_inspect(req: Request) -> Response:
        return json_response(ExecInspect(ID=req.params["id"], ContainerID="c" * 64, ExitCode=3))

    @router.route("GET", "/events")
    async def events(req: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            for n, action in enumerate(["create", "start"]):
                message = EventMessage(
                    Type="container",
                    Action=action,
                    scope="local",
                    time=n,
                    timeNano=n * 10**9,
                    Actor=EventActor(ID="c" * 64, Attributes={"name": "web"}),
                )
                yield msgspec.json.encode(message) + b"\n"

        return streaming(stream())

    path = str(tmp_path / "d.sock")
    await nursery.start(http.serve_unix, path, http.App(router))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
    }
    with trio.fail_after(60):
        result = await trio.run_process(
            [DOCKER, "-H", f"unix://{path}", "exec", "-i", "web", "cat"],
            stdin=b"hello\nworld\n",
            capture_stdout=True,
            capture_stderr=True,
            env=env,
            check=False,
        )
    assert seen == ["inspect web", "create web ['cat']"], result.stderr.decode()
    assert result.stdout == b"HELLO\nWORLD\n"
    assert result.stderr == b"done\n"
    assert result.returncode == 3  # the exit code from exec inspect
    with trio.fail_after(60):
        result = await trio.run_process(
            [DOCKER, "-H", f"unix://{path}", "events", "--format", "{{.Action}} {{.Actor.ID}}"],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [f"create {'c' * 64}", f"start {'c' * 64}"]


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")
async def test_docker_cli_reads_our_list_inspect_and_info_models(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    from engine.api.docker import models as m

    router = Router()
    cid, iid = "c" * 64, "sha256:" + "1" * 64

    @router.route("GET", "/containers/json")
    async def ps(req: Request) -> Response:
        port = m.Port(PrivatePort=80, PublicPort=8080, IP="0.0.0.0", Type="tcp")
        summary = m.ContainerSummary(
            Id=cid,
            Names=["/web"],
            Image="busybox",
            ImageID=iid,
            Command="sleep 1",
            Created=1_700_000_000,
            State="running",
            Status="Up 2 minutes",
            Ports=[port],
        )
        return json_response([summary])

    @router.route("GET", "/images/json")
    async def images(req: Request) -> Response:
        image = m.ImageSummary(Id=iid, RepoTags=["busybox:latest"], Size=1_234_567)
        return json_response([image])

    @router.route("GET", "/containers/{id}/json")
    async def inspect(req: Request) -> Response:
        state = m.ContainerState(Status="exited", ExitCode=3)
        return json_response(
            m.ContainerInspect(Id=cid, Created="2026-01-01T00:00:00Z", Name="/web", State=state)
        )

    @router.route("GET", "/info")
    async def info(req: Request) -> Response:
        return json_response(m.SystemInfo(ID="x", Name="host", NCPU=4, ServerVersion="0.1.0"))

    path = str(tmp_path / "d.sock")
    await nursery.start(http.serve_unix, path, http.App(router))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env["DOCKER_CONFIG"] = str(tmp_path)

    async def docker(*args: str) -> str:
        with trio.fail_after(60):
            result = await trio.run_process(
                [DOCKER, "-H", f"unix://{path}", *args],
                capture_stdout=True,
                capture_stderr=True,
                env=env,
                check=False,
            )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode().strip()

    ps_format = "{{.ID}} {{.Names}} {{.Status}} {{.Ports}}"
    assert await docker("ps", "--format", ps_format) == (
        "cccccccccccc web Up 2 minutes 0.0.0.0:8080->80/tcp"
    )
    assert await docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}") == (
        "busybox:latest 111111111111"
    )
    state_format = "{{.State.Status}} {{.State.ExitCode}} {{.Name}}"
    assert await docker("inspect", "--format", state_format, "web") == "exited 3 /web"
    info_format = "{{.Swarm.LocalNodeState}} {{.NCPU}} {{.ServerVersion}}"
    assert await docker("info", "--format", info_format) == "inactive 4 0.1.0"


async def test_docker_sdk_for_python(nursery: trio.Nursery, tmp_path: Path, state: dict) -> None:
    """The Docker SDK for Python (docker-py) speaks to us: version negotiation, JSON, a hijacked
    exec with demultiplexed output, and a JSON event stream."""
    docker_sdk = pytest.importorskip("docker")
    from engine.api.docker import models as m

    router = make_router(state)

    @router.route("GET", "/version")
    async def version(req: Request) -> Response:
        return json_response(m.SystemVersion(Version="0.1.0", ApiVersion="1.43"))

    @router.route("POST", "/containers/{id}/exec")
    async def exec_create(req: Request) -> Response:
        await req.json(m.ExecConfig)
        return json_response({"Id": "e" * 64}, status=201)

    @router.route("POST", "/exec/{id}/start")
    async def exec_start(req: Request) -> Response:
        await req.json(m.ExecStartConfig)

        async def run(conn: HijackedStream) -> None:
            # docker-py reads the 101 head through a buffered file and then reads the raw
            # socket under it, so output sent with the head is lost (the real daemon has the
            # same race; its exec output comes later). Wait for the client's "go".
            assert await conn.receive_some() == b"go"
            await conn.send_frame(STDOUT, b"out\n")
            await conn.send_frame(2, b"err\n")

        return hijack(run, tty=False)

    @router.route("GET", "/events")
    async def events(req: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            actor = m.EventActor(ID="v1", Attributes={"driver": "local"})
            message = m.EventMessage(
                Type="volume", Action="create", Actor=actor, scope="local", time=1, timeNano=1
            )
            yield msgspec.json.encode(message) + b"\n"

        return streaming(stream())

    path = str(tmp_path / "sdk.sock")
    await nursery.start(http.serve_unix, path, http.App(router))

    def use_sdk() -> tuple:
        client = docker_sdk.DockerClient(base_url=f"unix://{path}", version="auto", timeout=SAFETY)
        try:
            from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

            eid = client.api.exec_create("web", ["true"])["Id"]
            sock = client.api.exec_start(eid, socket=True)
            os.write(sock.fileno(), b"go")  # SocketIO is read-only; stdin goes to the fd
            frames = (demux_adaptor(*f) for f in frames_iter(sock, tty=False))
            output = consume_socket_output(frames, demux=True)  # as exec_start(demux=True)
            sock.close()
            seen = list(client.api.events(decode=True))
            return client.api.api_version, client.version()["Version"], output, seen
        finally:
            client.close()

    api_version, server_version, output, seen = await in_thread(use_sdk)
    assert api_version == "1.43" and server_version == "0.1.0"
    assert output == (b"out\n", b"err\n")
    assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in seen] == [
        ("volume", "create", "v1")
    ]


async def test_shutdown_is_prompt_despite_open_streams_and_hijacks(
    tmp_path: Path, state: dict
) -> None:
    """RELIABILITY L-05 (moby TestDaemonShutsDownQuicklyDespiteEventsConnection): cancelling
    the server ends a follower stream and a hijacked session, runs the stream's cleanup and
    removes the socket."""
    path = str(tmp_path / "s.sock")
    c = client(path)
    outcome: dict[str, object] = {}

    def follow() -> None:
        try:
            with c.stream("GET", "/stream") as chunks:
                for chunk in chunks:
                    outcome.setdefault("first", chunk)
                    trio.from_thread.run_sync(state["first_read"].set)
        except DaemonUnreachable as exc:
            outcome["follow_error"] = exc.message

    server_done = trio.Event()
    scopes: list[trio.CancelScope] = []

    async def serve(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await http.serve_unix(path, http.App(make_router(state)), task_status=task_status)
        server_done.set()

    async with trio.open_nursery() as outer:
        await outer.start(serve)
        attached = await in_thread(c.hijack, "POST", "/attach")
        outer.start_soon(trio.to_thread.run_sync, follow)
        with trio.fail_after(SAFETY):
            await state["first_read"].wait()
        scopes[0].cancel()
        with trio.fail_after(SAFETY):
            await server_done.wait()
            await state["stream_closed"].wait()
        attached.settimeout(SAFETY)
        assert await in_thread(attached.recv, 100) == b""  # the hijacked session ended
        attached.close()
    assert not os.path.exists(path)
    assert outcome["first"] == b'{"n":1}\n'
    assert "cut mid-stream" in str(outcome.get("follow_error"))


async def test_policy_hook_sees_the_same_bytes_and_fails_closed(
    nursery: trio.Nursery, tmp_path: Path, state: dict
) -> None:
    """RELIABILITY S-10: the hook and the handler decode the same bytes once; a chunked body
    is no way around it; a hook that crashes denies."""
    from engine.api.server.router import PolicyDenied

    seen: list[bytes] = []

    async def policy(req: Request) -> None:
        if req.path == "/boom" and req.bool("crash-policy"):
            raise KeyError("policy bug")
        if req.method == "POST" and req.path == "/echo":
            seen.append(await req.body())
            body = await req.json(Greeting)
            if body.Name == "root":
                raise PolicyDenied("Name root is not allowed by policy")

    app = http.App(make_router(state), policy=policy)
    path = await nursery.start(http.serve_unix, str(tmp_path / "p.sock"), app)
    c = client(path)
    json_type = {"Content-Type": "application/json"}
    # Duplicate keys: last wins for the policy exactly as for the handler.
    resp = await in_thread(
        c.request, "POST", "/echo", None, b'{"Name":"x","Name":"root"}', json_type
    )
    assert (resp.status, resp.json()["message"]) == (403, "Name root is not allowed by policy")
    # A chunked body reaches the policy whole.
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    chunked = head + b'5\r\n{"Nam\r\n10\r\ne":"root"}      \r\n0\r\n\r\n'
    reply = await in_thread(raw_exchange, path, chunked)
    assert reply.startswith(b"HTTP/1.1 403 ")
    assert seen[-1] == b'{"Name":"root"}      '
    # Undecodable for the policy means refused, with the same 400 the handler would give.
    resp = await in_thread(c.request, "POST", "/echo", None, b'{"Name":', json_type)
    assert resp.status == 400
    # A crashing policy denies.
    resp = await in_thread(c.request, "GET", "/boom", {"crash-policy": True})
    assert resp.status == 403 and "policy hook failed" in resp.json()["message"]
    # And allows what it allows.
    assert await in_thread(c.post_json, "/echo", None, {"Name": "web"}) is not None
