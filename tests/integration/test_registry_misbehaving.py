"""Pulls from a registry that misbehaves on purpose (RELIABILITY F-08, I-11, I-12, S-09).

A small HTTP server on loopback (a thread) serves one image and, per request, does what the
test scripted: reset the connection in the middle of a blob, answer 500 or 429, send the wrong
bytes or too many, ignore Range, redirect to another origin, name a token realm on another
host, or serve a decompression bomb. The pull runs in this process through the real
`RegistryService` (real content store, layer store, event store and journal in a temp dir).
Each case asserts the outcome, the request log (attempts, Range, absence of Authorization on
foreign hosts), the events, and that no ingest file or staged layer is left behind.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import socket
import struct
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio
import zstandard

from engine.core.errors import ShipslogError
from engine.core.image_reference import parse_reference
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.registry.auth import Credentials, CredentialStore
from engine.registry.client import RetryPolicy
from engine.registry.service import RegistryService
from engine.shell.journal import Journal
from engine.testing.localreg import free_port
from events.envelope import Actor
from events.store import EventStore
from events.writer import open_store_writer
from projections.engine import EngineProjection

ACTOR = Actor(uid=0, gid=0, pid=os.getpid(), via="api")
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_wait=5.0,
                   max_discard=64 << 20)


def _tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    return gzip.compress(tar, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tar).hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    layer: bytes
    diff_id: str
    config: bytes
    manifest: bytes
    layer_type: str = "application/vnd.oci.image.layer.v1.tar+gzip"

    @classmethod
    def make(cls, layer: bytes, diff_id: str,
             layer_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
             extra: dict[str, Any] | None = None) -> Image:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": _digest(config), "size": len(config)},
               "layers": [{"mediaType": layer_type, "digest": _digest(layer),
                           "size": len(layer)}]}
        doc.update(extra or {})
        return cls(layer, diff_id, config, json.dumps(doc).encode(), layer_type)

    @property
    def layer_digest(self) -> str:
        return _digest(self.layer)


@dataclass
class Fake:
    """The misbehaving registry. `script[kind]` is a list of actions used one per request
    ("manifest", "blob", "token"); when it runs out, requests are answered normally."""

    host: str = "127.0.0.1"
    image: Image | None = None
    script: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # basic auth when set
    bearer_realm: str = ""  # answer 401 Bearer with this realm when set
    redirect_blobs_to: str = ""  # another origin serving the blobs
    wrong_blob: bytes | None = None
    log: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Fake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                fake.handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # resets on purpose

        self.server = Server((self.host, free_port(self.host)), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_address[1]}"

    @property
    def domain(self) -> str:
        assert self.server is not None
        return f"{self.host}:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def requests(self, kind: str) -> list[dict[str, str]]:
        return [r for r in self.log if r["kind"] == kind]

    # -- answers ------------------------------------------------------------------------

    def _next(self, kind: str) -> str:
        actions = self.script.get(kind) or []
        return actions.pop(0) if actions else "ok"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        kind = ("ping" if path == "/v2/" else "manifest" if "/manifests/" in path else
                "blob" if "/blobs/" in path else "other")
        self.log.append({"kind": kind, "path": h.path, "method": h.command,
                         "authorization": h.headers.get("Authorization", ""),
                         "range": h.headers.get("Range", ""), "host": self.domain})
        if not self._authorized(h):
            return
        if kind == "ping":
            return _send(h, 200, b"{}", "application/json")
        assert self.image is not None
        img = self.image
        if kind == "manifest":
            action = self._next("manifest")
            if action == "500":
                return _send(h, 500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
            if action == "429":
                return _send(h, 429, b"", extra={"Retry-After": "1"})
            if action == "404":
                return _send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN",'
                             b'"message":"manifest unknown"}]}')
            return _send(h, 200, img.manifest, "application/vnd.oci.image.manifest.v1+json",
                         {"Docker-Content-Digest": _digest(img.manifest)})
        digest = path.rsplit("/", 1)[-1]
        if digest == _digest(img.config):
            return _send(h, 200, img.config, "application/octet-stream")
        if digest != img.layer_digest:
            return _send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
        if self.redirect_blobs_to:
            return _send(h, 307, b"", extra={
                "Location": f"{self.redirect_blobs_to}/cdn/{digest}?sig=abc"})
        self.serve_blob(h, self.wrong_blob if self.wrong_blob is not None else img.layer)

    def serve_blob(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        action = self._next("blob")
        rng = h.headers.get("Range", "")
        start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
        if action == "500":
            return _send(h, 500, b"")
        if action == "404":
            return _send(h, 404, b"")
        if action == "wrong_range" and start:
            return _send(h, 206, data[start - 1:], extra={
                "Content-Range": f"bytes {start - 1}-{len(data) - 1}/{len(data)}"})
        if start and action != "ignore_range":
            return _send(h, 206, data[start:], "application/octet-stream",
                         {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        if action in ("reset_half", "slow"):
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            if action == "slow":
                self.release.wait(60)
            else:
                # Let the client take what was sent: an RST discards data not yet read.
                time.sleep(0.3)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        _send(h, 200, data, "application/octet-stream")

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        auth = h.headers.get("Authorization", "")
        if self.users:
            user, _, pw = base64.b64decode(auth[6:] or b"").decode().partition(":") \
                if auth.startswith("Basic ") else ("", "", "")
            if self.users.get(user) != pw:
                _send(h, 401, b"", extra={"WWW-Authenticate": 'Basic realm="fake"'})
                return False
        if self.bearer_realm and auth != "Bearer good-token":
            _send(h, 401, b"", extra={"WWW-Authenticate":
                                      f'Bearer realm="{self.bearer_realm}",service="fake",'
                                      'scope="repository:x:pull"'})
            return False
        return True


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "application/json",
          extra: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, val in (extra or {}).items():
        h.send_header(k, val)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class CDN(Fake):
    """Another origin serving blobs under /cdn/<digest> (and a token realm at /token)."""

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.log.append({"kind": "cdn" if h.path.startswith("/cdn/") else "token",
                         "path": h.path, "method": h.command,
                         "authorization": h.headers.get("Authorization", ""),
                         "range": h.headers.get("Range", ""), "host": self.domain})
        if h.path.startswith("/token"):
            return _send(h, 200, json.dumps({"token": "good-token", "expires_in": 300}).encode())
        assert self.image is not None
        self.serve_blob(h, self.image.layer)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def image() -> Image:
    rnd = os.urandom(3 << 20)  # incompressible: the blob is ~3 MiB, worth resuming
    layer, diff_id = _tar_gz({"data.bin": rnd, "hello.txt": b"hello\n"})
    return Image.make(layer, diff_id)


@pytest.fixture
def fake(image: Image) -> Iterator[Fake]:
    f = Fake(image=image).start()
    try:
        yield f
    finally:
        f.stop()


@dataclass
class Env:
    root: Path
    svc: RegistryService
    journal: Journal
    store: EventStore[Any]
    content: ContentStore
    layers: LayerStore

    async def pull(self, domain: str, creds: Credentials | None = None,
                   ref: str = "app/x:v1") -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def emit(m: dict[str, Any]) -> None:
            messages.append(m)

        await self.svc.pull(parse_reference(f"{domain}/{ref}"), None, creds, ACTOR, emit)
        return messages

    def event_names(self) -> list[str]:
        return [type(e.event).__name__ for e in self.store.read()]

    def failures(self) -> list[str]:
        return [e.event.error for e in self.store.read()
                if type(e.event).__name__ == "OperationFailed"]

    def leftovers(self) -> list[str]:
        """Ingest files and staged layer dirs: must be none after any pull, good or bad."""
        return (os.listdir(self.content.ingest_dir)
                + [n for n in os.listdir(self.layers.layers_dir) if n.startswith("tmp-")])


@pytest.fixture
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("shipslog-misbehaving")
    store: EventStore[Any] = EventStore.open(root / "events.db", projection=EngineProjection())
    try:
        async with open_store_writer(store) as writer:
            journal = Journal(store, writer)
            content, layers = ContentStore(root), LayerStore(root)
            svc = RegistryService(journal, content, layers, policy=FAST, total_timeout=60,
                                  credentials=CredentialStore(root / "none.json"))
            yield Env(root, svc, journal, store, content, layers)
            await svc.transport.aclose()
    finally:
        store.close()


async def _fails(env: Env, fake: Fake, text: str, creds: Credentials | None = None) -> str:
    with pytest.raises(ShipslogError) as info:
        await env.pull(fake.domain, creds)
    assert text in info.value.message, info.value.message
    assert env.leftovers() == []
    assert env.failures() and text in env.failures()[-1]
    assert env.store.state.images == {} or not env.store.state.images
    return info.value.message


def _ok(env: Env, image: Image) -> None:
    assert env.leftovers() == []
    assert env.content.has(image.layer_digest)
    assert env.layers.has(image.diff_id)
    assert Path(env.layers.path(image.diff_id), "hello.txt").read_bytes() == b"hello\n"
    assert env.event_names()[-1] == "OperationCompleted"


# ----------------------------------------------------------------------------- F-08


async def test_reset_in_the_middle_of_a_blob_resumes_with_range(env: Env, fake: Fake,
                                                                image: Image) -> None:
    fake.script = {"blob": ["reset_half"]}
    await env.pull(fake.domain)
    _ok(env, image)
    gets = [r for r in fake.requests("blob") if image.layer_digest in r["path"]]
    assert [bool(r["range"]) for r in gets] == [False, True]
    offset = int(gets[1]["range"][len("bytes="):-1])
    assert 0 < offset <= len(image.layer) // 2  # from what had arrived, not from zero


async def test_server_that_ignores_range_is_read_and_discarded_to_the_offset(
        env: Env, fake: Fake, image: Image) -> None:
    fake.script = {"blob": ["reset_half", "ignore_range"]}
    await env.pull(fake.domain)
    _ok(env, image)


async def test_wrong_content_range_is_refused(env: Env, fake: Fake) -> None:
    fake.script = {"blob": ["reset_half", "wrong_range"]}
    await _fails(env, fake, "wrong Content-Range")


async def test_500_then_success(env: Env, fake: Fake, image: Image) -> None:
    fake.script = {"manifest": ["500"], "blob": ["500"]}
    await env.pull(fake.domain)
    _ok(env, image)
    assert len(fake.requests("manifest")) == 2


async def test_500_forever_gives_up_after_bounded_attempts(env: Env, fake: Fake) -> None:
    fake.script = {"manifest": ["500"] * 10}
    await _fails(env, fake, "after 4 attempts")
    assert len(fake.requests("manifest")) == FAST.attempts


async def test_429_honours_retry_after(env: Env, fake: Fake, image: Image) -> None:
    fake.script = {"manifest": ["429"]}
    await env.pull(fake.domain)
    _ok(env, image)
    assert len(fake.requests("manifest")) == 2


async def test_404_is_not_retried(env: Env, fake: Fake) -> None:
    fake.script = {"manifest": ["404"]}
    await _fails(env, fake, "manifest unknown")
    assert len(fake.requests("manifest")) == 1


async def test_401_is_not_retried(env: Env, fake: Fake) -> None:
    fake.users = {"u": "right"}
    await _fails(env, fake, "unauthorized", Credentials(username="u", password="wrong"))
    # one try without credentials, one with; then we stop
    assert len(fake.requests("manifest")) == 2


# ----------------------------------------------------------------------------- I-11


async def test_wrong_digest_commits_nothing(env: Env, fake: Fake, image: Image) -> None:
    bad = bytearray(image.layer)
    bad[len(bad) // 2] ^= 0xFF
    fake.wrong_blob = bytes(bad)
    await _fails(env, fake, "unexpected commit digest")
    assert not env.content.has(image.layer_digest)
    assert not env.layers.has(image.diff_id)
    assert "LayerUnpacked" not in env.event_names()


async def test_longer_blob_than_declared_is_refused(env: Env, fake: Fake, image: Image) -> None:
    fake.wrong_blob = image.layer + b"trailing"
    await _fails(env, fake, "longer than")
    assert not env.layers.has(image.diff_id)


async def test_shorter_blob_is_retried_then_refused(env: Env, fake: Fake, image: Image) -> None:
    fake.wrong_blob = image.layer[:-10]
    await _fails(env, fake, "downloading")
    assert not env.layers.has(image.diff_id)


async def test_document_with_manifests_and_layers_is_refused(env: Env, fake: Fake,
                                                             image: Image) -> None:
    fake.image = Image.make(image.layer, image.diff_id, extra={"manifests": []})
    await _fails(env, fake, "both manifests and layers")
    assert fake.requests("blob") == []


async def test_foreign_layer_urls_are_never_fetched(env: Env, fake: Fake, image: Image) -> None:
    doc = json.loads(image.manifest)
    doc["layers"][0]["urls"] = ["http://127.0.0.2:1/evil"]
    fake.image = Image(image.layer, image.diff_id, image.config, json.dumps(doc).encode())
    await _fails(env, fake, "foreign layer")


# ----------------------------------------------------------------------------- I-12


async def test_decompression_bomb_is_stopped_and_leaves_nothing(env: Env, fake: Fake) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        ti = tarfile.TarInfo("zeros")
        ti.size = 256 << 20
        tf.addfile(ti, io.BytesIO(b"\0" * ti.size))
    tar = raw.getvalue()
    bomb = zstandard.ZstdCompressor(level=3).compress(tar)
    assert len(bomb) < (256 << 20) // 2000  # a ratio no real layer has
    fake.image = Image.make(bomb, _digest(tar), "application/vnd.oci.image.layer.v1.tar+zstd")
    await _fails(env, fake, "compression ratio")
    assert env.content.list() == [_digest(fake.image.config)]  # the bomb was not kept
    assert env.layers.list() == []


# ----------------------------------------------------------------------------- S-09


async def test_cross_origin_redirect_gets_no_credentials(env: Env, fake: Fake,
                                                          image: Image) -> None:
    cdn = CDN(image=image).start()
    try:
        fake.users = {"alice": "pw"}
        fake.redirect_blobs_to = cdn.base
        await env.pull(fake.domain, Credentials(username="alice", password="pw"))
        _ok(env, image)
        assert cdn.requests("cdn") and all(not r["authorization"] for r in cdn.requests("cdn"))
        assert any(r["authorization"].startswith("Basic ") for r in fake.requests("blob"))
    finally:
        cdn.stop()


async def test_redirect_that_resets_resumes_at_the_cdn(env: Env, fake: Fake,
                                                        image: Image) -> None:
    cdn = CDN(image=image, script={"blob": ["reset_half"]}).start()
    try:
        fake.redirect_blobs_to = cdn.base
        await env.pull(fake.domain)
        _ok(env, image)
        assert [bool(r["range"]) for r in cdn.requests("cdn")] == [False, True]
    finally:
        cdn.stop()


async def test_realm_on_another_host_gets_no_credentials(env: Env, image: Image) -> None:
    realm_host = CDN(host="127.0.0.2", image=image).start()
    fake = Fake(image=image, bearer_realm="").start()
    try:
        fake.bearer_realm = f"{realm_host.base}/token"
        await env.pull(fake.domain, Credentials(username="alice", password="pw"))
        _ok(env, image)
        tokens = realm_host.requests("token")
        assert tokens and all(not r["authorization"] for r in tokens)
        assert all(r["authorization"] == "Bearer good-token" for r in fake.requests("blob"))
    finally:
        fake.stop()
        realm_host.stop()


async def test_realm_on_the_registry_host_gets_the_credentials(env: Env, image: Image) -> None:
    realm_host = CDN(image=image).start()  # same host (127.0.0.1), its own port
    fake = Fake(image=image).start()
    try:
        fake.bearer_realm = f"{realm_host.base}/token"
        await env.pull(fake.domain, Credentials(username="alice", password="pw"))
        tokens = realm_host.requests("token")
        expected = "Basic " + base64.b64encode(b"alice:pw").decode()
        assert tokens and tokens[0]["authorization"] == expected
    finally:
        fake.stop()
        realm_host.stop()


# ----------------------------------------------------------------------------- timeouts


async def test_total_timeout_ends_a_stalled_pull_cleanly(env: Env, fake: Fake) -> None:
    fake.script = {"blob": ["slow"]}
    env.svc.puller.total_timeout = 1.0
    try:
        await _fails(env, fake, "timed out")
    finally:
        fake.release.set()


async def test_single_flight_fetches_a_shared_layer_once(env: Env, fake: Fake,
                                                          image: Image) -> None:
    fake.script = {"blob": ["slow"]}
    results: list[Any] = []

    async def one() -> None:
        results.append(await env.pull(fake.domain))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
        while len([r for r in fake.requests("blob") if image.layer_digest in r["path"]]) < 1:
            await trio.sleep(0.01)
        await trio.sleep(0.2)
        fake.release.set()
    _ok(env, image)
    gets = [r for r in fake.requests("blob") if image.layer_digest in r["path"]]
    # One download (plus its resume after the scripted reset); the other pull waited.
    assert [bool(r["range"]) for r in gets] == [False, True]
    statuses = [m.get("status") for msgs in results for m in msgs]
    assert "Waiting" in statuses and "Already exists" in statuses


# ----------------------------------------------------------------------------- F-01


@pytest.mark.kernel
def test_kill_9_in_the_middle_of_a_pull_then_restart_and_pull_again(fake: Fake,
                                                                   image: Image) -> None:
    from engine.testing.daemon import DaemonProcess

    d = DaemonProcess.make()
    fake.script = {"blob": ["slow"]}
    try:
        d.start()

        def pull() -> None:
            try:
                with d.client().stream("POST", "/images/create",
                                       {"fromImage": f"{fake.domain}/app/x", "tag": "v1"},
                                       None, {}) as chunks:
                    for _ in chunks:
                        pass
            except Exception:  # noqa: BLE001 - the daemon dies under it
                pass

        t = threading.Thread(target=pull, daemon=True)
        t.start()
        ingest = d.root / "ingest"

        def mid_blob_and_mid_unpack() -> bool:
            # The registry holds the blob's second half until `release`, so this moment
            # lasts: wait for both to be true rather than sample once. The unpack's thread
            # may start after the blob's first bytes land (issue 15 item 9: it did, on a
            # faster machine).
            return any(f.stat().st_size > 0 for f in ingest.glob("*")) and \
                any((d.root / "layers").glob("tmp-*"))

        deadline = time.monotonic() + 30
        while not mid_blob_and_mid_unpack():
            assert time.monotonic() < deadline, d.log_text()
            time.sleep(0.02)
        d.kill9()
        t.join(10)
        fake.release.set()
        fake.script = {}

        d.start()
        assert list(ingest.iterdir()) == []
        assert list((d.root / "layers").iterdir()) == []
        assert d.client().get_json("/images/json") == []
        with EventStore.open(d.root / "events.db", readonly=True) as store:
            names = [type(e.event).__name__ for e in store.read()]
        assert "OperationCompensated" in names and "ImagePulled" not in names

        with d.client().stream("POST", "/images/create",
                               {"fromImage": f"{fake.domain}/app/x", "tag": "v1"},
                               None, {}) as chunks:
            out = b"".join(chunks)
        assert b"Downloaded newer image" in out, out
        tags = [t for img in d.client().get_json("/images/json") for t in img["RepoTags"]]
        assert tags == [f"{fake.domain}/app/x:v1"]
        assert (d.root / "layers" / image.diff_id[7:] / "diff" / "hello.txt").read_bytes() \
            == b"hello\n"
    finally:
        fake.release.set()
        d.cleanup()
