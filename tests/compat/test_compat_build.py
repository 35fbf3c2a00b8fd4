"""`docker build` (the classic builder, DOCKER_BUILDKIT=0) against both engines (issue 12):
`COPY --chown` with names resolved in the step image's /etc/passwd and /etc/group, Docker's
error for a name the image does not know, `.dockerignore` with a fully cached rebuild, and
`ADD http://…` from a server the test runs on 127.0.0.1."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel

USERS = ("RUN echo 'app:x:1234:5678::/home/app:/bin/sh' >> /etc/passwd && "
         "echo 'staff:x:4321:app' >> /etc/group && echo 'app:x:5678:' >> /etc/group\n")


def _build(engine: Engine, ctx: Path, *args: str, check: bool = True):
    return docker(engine, "build", *args, str(ctx), check=check, timeout=300)


@pytest.fixture(autouse=True)
def classic_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")


def test_copy_chown_by_name(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "f").write_text("f\n")
    (ctx / "d" / "g").write_text("g\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n" + USERS + "COPY --chown=app:staff f /f\nCOPY --chown=app d /d\n"
        "COPY --chown=1000 f /n\n")
    try:
        _build(engine, ctx, "-t", "chown-names:1")
        out = docker(engine, "run", "--rm", "--network", "none", "chown-names:1", "stat", "-c",
                     "%n %u:%g", "/f", "/d", "/d/g", "/n").stdout
        assert out.splitlines() == ["/f 1234:4321", "/d 1234:5678", "/d/g 1234:5678",
                                    "/n 1000:1000"]
        (ctx / "Dockerfile").write_text("FROM busybox\n" + USERS + "COPY --chown=ghost f /f\n")
        p = _build(engine, ctx, check=False)
        assert p.returncode != 0
        assert "can't find uid for user ghost: no such user: ghost" in p.stdout + p.stderr
    finally:
        docker(engine, "rmi", "chown-names:1", check=False)


def test_dockerignore_and_a_fully_cached_rebuild(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    for i in range(40):
        (ctx / "files" / "sub" / f"f{i}.txt").write_text(f"{i}\n")
    (ctx / "files" / "debug.log").write_text("secret\n")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY files /files\n"
                                    "RUN ls -R /files | wc -l > /n\nCOPY files/sub/f7.txt /7\n")
    try:
        _build(engine, ctx, "-t", "ctx-cache:1")
        again = _build(engine, ctx, "-t", "ctx-cache:2")
        assert again.stdout.count("Using cache") == 3
        ids = {docker(engine, "images", "-q", "--no-trunc", t).stdout.strip()
               for t in ("ctx-cache:1", "ctx-cache:2")}
        assert len(ids) == 1
        out = docker(engine, "run", "--rm", "--network", "none", "ctx-cache:2", "sh", "-c",
                     "test -e /files/debug.log && echo leaked; cat /7; ls /files/sub | wc -l")
        assert out.stdout.split() == ["7", "40"]
        (ctx / "files" / "sub" / "f7.txt").write_text("seven\n")  # one file changes
        third = _build(engine, ctx, "-t", "ctx-cache:3")
        assert third.stdout.count("Using cache") == 0
        out = docker(engine, "run", "--rm", "--network", "none", "ctx-cache:3", "cat", "/7")
        assert out.stdout == "seven\n"
    finally:
        for t in ("ctx-cache:1", "ctx-cache:2", "ctx-cache:3"):
            docker(engine, "rmi", t, check=False)


LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"  # 1445412480


@contextlib.contextmanager
def http_files(files: dict[str, bytes]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving `files` (a dict the test may change), others 404."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("inside.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"in\n"))
    return gzip.compress(buf.getvalue())


def test_add_of_a_url(engine: Engine, tmp_path: Path) -> None:
    files = {"/data.txt": b"hello\n", "/a.tar.gz": _tgz()}
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with http_files(files) as base:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {base}/data.txt /d/\n"
                                        f"ADD {base}/a.tar.gz /x/\n")
        try:
            _build(engine, ctx, "-t", "add-url:1")
            out = docker(engine, "run", "--rm", "--network", "none", "add-url:1", "sh", "-c",
                         "stat -c '%a %Y %u:%g' /d/data.txt; cat /d/data.txt; ls /x").stdout
            # 0600, Last-Modified as mtime, root's; an archive from a URL is not unpacked
            assert out.splitlines() == ["600 1445412480 0:0", "hello", "a.tar.gz"]
            assert _build(engine, ctx, "-t", "add-url:2").stdout.count("Using cache") == 2
            files["/data.txt"] = b"changed\n"  # the bytes decide, not Last-Modified
            again = _build(engine, ctx, "-t", "add-url:3")
            assert again.stdout.count("Using cache") == 0
            out = docker(engine, "run", "--rm", "--network", "none", "add-url:3", "cat",
                         "/d/data.txt").stdout
            assert out == "changed\n"
            (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {base}/missing /m\n")
            p = _build(engine, ctx, check=False)
            assert p.returncode != 0
            assert f"failed to GET {base}/missing with status 404 Not Found" in \
                p.stdout + p.stderr
        finally:
            for t in ("add-url:1", "add-url:2", "add-url:3"):
                docker(engine, "rmi", t, check=False)
