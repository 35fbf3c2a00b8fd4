"""Pull and push against the real registry server (Debian's `docker-registry`, distribution
2.8) on 127.0.0.1, through a real shipslogd: round trips by tag and by digest, a manifest
list with two platforms, htpasswd basic auth, token auth through a token issuer the test
runs, the events a pull records, and `docker pull` from the docker CLI against our daemon.

Only loopback traffic. Every registry, issuer and daemon is stopped by its pid and its temp
dir (path contains `shipslog`) removed."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.testing.daemon import DaemonProcess
from engine.testing.localreg import LocalRegistry, free_port
from events.store import EventStore

pytestmark = pytest.mark.kernel


# ------------------------------------------------------------------------------- helpers


def auth_header(user: str = "", password: str = "") -> dict[str, str]:
    doc = {"username": user, "password": password} if user else {}
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()}


def stream(d: DaemonProcess, method: str, path: str, params: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    buf = b""
    with d.client().stream(method, path, params, None, headers or auth_header()) as chunks:
        for chunk in chunks:
            buf += chunk
    for line in buf.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def errors_of(messages: list[dict[str, Any]]) -> list[str]:
    return [m["error"] for m in messages if "error" in m]


def push(d: DaemonProcess, source: str, target: str, headers: dict[str, str] | None = None
         ) -> list[dict[str, Any]]:
    repo, _, tag = target.rpartition(":")
    d.client().post_json(f"/images/{source}/tag", {"repo": repo, "tag": tag})
    return stream(d, "POST", f"/images/{repo}/push", {"tag": tag}, headers)


def pull(d: DaemonProcess, name: str, tag: str, headers: dict[str, str] | None = None,
         platform: str = "") -> list[dict[str, Any]]:
    params = {"fromImage": name, "tag": tag}
    if platform:
        params["platform"] = platform
    return stream(d, "POST", "/images/create", params, headers)


def events(d: DaemonProcess) -> list[Any]:
    with EventStore.open(d.root / "events.db", readonly=True) as store:
        return list(store.read())


def event_names(d: DaemonProcess, op_kind: str = "image.pull") -> list[list[str]]:
    """The event types of each operation of `op_kind`, in order."""
    envs = events(d)
    ops = [e.event.op_id for e in envs if type(e.event).__name__ == "OperationRequested"
           and e.event.kind == op_kind]
    return [[type(e.event).__name__ for e in envs if e.op_id == op] for op in ops]


def image_ids(d: DaemonProcess) -> dict[str, str]:
    return {t: img["Id"] for img in d.client().get_json("/images/json")
            for t in img["RepoTags"] or []}


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry.running() as reg:
        yield reg


@pytest.fixture
def fresh_daemon() -> Iterator[DaemonProcess]:
    d = DaemonProcess.make()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


# ------------------------------------------------------------------------------- round trips


def test_push_then_pull_by_tag_and_by_digest(daemon: DaemonProcess, fresh_daemon: DaemonProcess,
                                             registry: LocalRegistry) -> None:
    target = f"{registry.domain}/team/busybox:v1"
    msgs = push(daemon, "busybox:latest", target)
    assert not errors_of(msgs), msgs
    aux = [m["aux"] for m in msgs if "aux" in m]
    assert aux and aux[0]["Tag"] == "v1"
    digest = aux[0]["Digest"]
    assert any(m.get("status") == "Pushed" for m in msgs)
    assert event_names(daemon, "image.push") == [
        ["OperationRequested", "ImagePushed", "OperationCompleted"]]
    # A second push finds every blob there.
    again = push(daemon, "busybox:latest", target)
    assert any(m.get("status") == "Layer already exists" for m in again)

    busybox_id = image_ids(daemon)["busybox:latest"]
    msgs = pull(fresh_daemon, f"{registry.domain}/team/busybox", "v1")
    assert not errors_of(msgs), msgs
    statuses = [m.get("status", "") for m in msgs]
    assert "Pull complete" in statuses and f"Digest: {digest}" in statuses
    assert statuses[-1] == f"Status: Downloaded newer image for {target}"
    assert any(m.get("status") == "Downloading" and m["progressDetail"]["total"] > 0
               for m in msgs)
    assert image_ids(fresh_daemon)[target] == busybox_id
    inspect = fresh_daemon.client().get_json(f"/images/{target}/json")
    assert inspect["RepoDigests"] == [f"{registry.domain}/team/busybox@{digest}"]
    names = event_names(fresh_daemon)
    assert names == [["OperationRequested", "ImagePullRequested", "ImageManifestResolved",
                      "LayerDownloaded", "LayerUnpacked", "ImagePulled", "OperationCompleted"]]

    # By digest: nothing new to fetch, the digest is recorded, no tag is made.
    msgs = pull(fresh_daemon, f"{registry.domain}/team/busybox", digest)
    assert not errors_of(msgs), msgs
    assert "Already exists" in [m.get("status") for m in msgs]
    assert msgs[-1]["status"].startswith("Status: Image is up to date for")
    resolved = [e.event for e in events(fresh_daemon)
                if type(e.event).__name__ == "ImageManifestResolved"]
    assert [r.digest for r in resolved] == [digest, digest]

    # The pulled image runs.
    out = subprocess.run([shutil.which("python3") or "python3", "-m", "engine.cli.main", "run",
                          "--rm", target, "echo", "pulled-ok"], capture_output=True, text=True,
                         env=fresh_daemon.cli_env(), cwd=Path(__file__).parents[2], timeout=60)
    assert out.stdout == "pulled-ok\n", out.stderr


def test_pull_errors_are_http_errors_and_recorded(fresh_daemon: DaemonProcess,
                                                  registry: LocalRegistry) -> None:
    c = fresh_daemon.client()
    with pytest.raises(ApiError) as info:
        pull(fresh_daemon, f"{registry.domain}/no/such", "v1")
    assert "not found" in str(info.value)
    # A bad reference is refused before anything is recorded (I-01).
    head = EventStore.open(fresh_daemon.root / "events.db", readonly=True).head()
    for bad in ("lower/UPPER", "a/../b", "-bad", "x@sha256:abc", "na\nme"):
        with pytest.raises(ApiError) as info:
            pull(fresh_daemon, bad, "latest")
        assert "invalid reference" in str(info.value) or "invalid" in str(info.value)
    assert EventStore.open(fresh_daemon.root / "events.db", readonly=True).head() == head
    failed = [e.event for e in events(fresh_daemon) if type(e.event).__name__ ==
              "OperationFailed"]
    assert len(failed) == 1 and "not found" in failed[0].error
    assert c.get_json("/images/json") == []


# ------------------------------------------------------------------------------- manifest list


def _blob_put(base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as resp:
        loc = resp.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def _manifest_put(base: str, repo: str, ref: str, doc: dict[str, Any]) -> tuple[str, int]:
    data = json.dumps(doc).encode()
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{ref}", data=data, method="PUT",
                                 headers={"Content-Type": doc["mediaType"]})
    urllib.request.urlopen(req).close()
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def _tiny_layer(name: str, content: bytes) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = len(content)
        tf.addfile(ti, io.BytesIO(content))
    tar = raw.getvalue()
    import gzip

    return gzip.compress(tar, mtime=0), "sha256:" + hashlib.sha256(tar).hexdigest()


def _image(base: str, repo: str, arch: str, marker: bytes) -> tuple[str, int]:
    layer, diff_id = _tiny_layer("marker", marker)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Cmd": ["/marker"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    ld = _blob_put(base, repo, layer)
    cd = _blob_put(base, repo, config)
    return _manifest_put(base, repo, f"{arch}-only", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": ld, "size": len(layer)}]})


def test_manifest_list_with_two_platforms(fresh_daemon: DaemonProcess,
                                          registry: LocalRegistry) -> None:
    base = f"http://{registry.domain}"
    repo = "multi/app"
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(
        __import__("platform").machine(), "amd64")
    other = "arm64" if host_arch != "arm64" else "amd64"
    entries = []
    for arch in (other, host_arch):
        digest, size = _image(base, repo, arch, arch.encode())
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest, "size": size,
                        "platform": {"architecture": arch, "os": "linux"}})
    index_digest, _ = _manifest_put(base, repo, "latest", {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries})

    msgs = pull(fresh_daemon, f"{registry.domain}/{repo}", "latest")
    assert not errors_of(msgs), msgs
    img = fresh_daemon.client().get_json(f"/images/{registry.domain}/{repo}:latest/json")
    assert img["Architecture"] == host_arch
    assert img["RepoDigests"] == [f"{registry.domain}/{repo}@{index_digest}"]

    msgs = pull(fresh_daemon, f"{registry.domain}/{repo}", "latest", platform=f"linux/{other}")
    assert not errors_of(msgs), msgs
    img = fresh_daemon.client().get_json(f"/images/{registry.domain}/{repo}:latest/json")
    assert img["Architecture"] == other

    with pytest.raises(ApiError) as info:
        pull(fresh_daemon, f"{registry.domain}/{repo}", "latest", platform="linux/s390x")
    assert "no matching manifest for linux/s390x" in str(info.value)


# ------------------------------------------------------------------------------- basic auth


def test_htpasswd_basic_auth(daemon: DaemonProcess, fresh_daemon: DaemonProcess) -> None:
    reg = LocalRegistry.make(users={"alice": "s3cret"})
    try:
        reg.start()
        target = f"{reg.domain}/private/busybox:v1"
        # As Docker: the push stream starts, then says why it stopped.
        assert "no basic auth credentials" in " ".join(errors_of(push(daemon, "busybox:latest",
                                                                      target)))
        c = daemon.client()
        with pytest.raises(ApiError) as info:
            c.post_json("/auth", None, {"username": "alice", "password": "wrong",
                                        "serveraddress": reg.domain})
        assert "unauthorized" in str(info.value).lower()
        answer = c.post_json("/auth", None, {"username": "alice", "password": "s3cret",
                                             "serveraddress": reg.domain})
        assert answer["Status"] == "Login Succeeded"
        good = auth_header("alice", "s3cret")
        msgs = push(daemon, "busybox:latest", target, good)
        assert not errors_of(msgs), msgs
        with pytest.raises(ApiError) as info:
            pull(fresh_daemon, f"{reg.domain}/private/busybox", "v1")
        # Docker's answer: 500, not 401 (on a 401 the docker CLI asks for a login on the
        # terminal, and a CI job waits there).
        assert info.value.status == 500
        assert info.value.message == (f'Get "http://{reg.domain}/v2/private/busybox/manifests/'
                                      'v1": no basic auth credentials')
        if shutil.which("docker"):
            p = subprocess.run(["docker", "pull", f"{reg.domain}/private/busybox:v1"],
                               capture_output=True, text=True, env=fresh_daemon.cli_env(),
                               stdin=subprocess.DEVNULL, timeout=60)
            assert p.returncode != 0 and "no basic auth credentials" in p.stderr, p.stderr
        msgs = pull(fresh_daemon, f"{reg.domain}/private/busybox", "v1", good)
        assert not errors_of(msgs), msgs
        # The password is nowhere in the log.
        with open(fresh_daemon.root / "events.db", "rb") as f:
            assert b"s3cret" not in f.read()
    finally:
        reg.cleanup()


# ------------------------------------------------------------------------------- token auth


class TokenIssuer:
    """A small token service (distribution's token spec): checks basic credentials, grants
    the asked scope as a JWT signed with RS256, with the certificate in `x5c`."""

    def __init__(self, base: Path, users: dict[str, str], host: str = "127.0.0.1") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.requests: list[dict[str, Any]] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipslog-test-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.certfile = base / "issuer.pem"
        self.certfile.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.der = self.cert.public_bytes(serialization.Encoding.DER)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                issuer.handle(self)

        self.server = ThreadingHTTPServer((host, free_port(host)), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/token"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(h.path).query)
        auth = h.headers.get("Authorization", "")
        self.requests.append({"path": h.path, "authorization": auth})
        user = ""
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                h.send_response(401)
                h.end_headers()
                return
            user = u
        access = []
        for scope in q.get("scope", []):
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": typ, "name": name,
                           "actions": actions.split(",") if user else []})
        body = json.dumps({"token": self.token(user, access, q.get("service", [""])[0]),
                           "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def token(self, sub: str, access: list[dict[str, Any]], service: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(datetime.datetime.now(datetime.UTC).timestamp())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.der).decode()]}
        claims = {"iss": "shipslog-test", "sub": sub, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": hashlib.sha256(
                      str((now, sub, access)).encode()).hexdigest()[:16], "access": access}
        signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + b64(sig)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_token_auth_through_a_token_issuer(daemon: DaemonProcess,
                                           fresh_daemon: DaemonProcess) -> None:
    reg = LocalRegistry.make()
    issuer = TokenIssuer(reg.base, {"bob": "hunter2"})
    try:
        reg.token = {"realm": issuer.realm, "service": "shipslog-registry",
                     "issuer": "shipslog-test", "rootcert": str(issuer.certfile)}
        reg.start()
        target = f"{reg.domain}/tok/busybox:v1"
        # An anonymous token grants nothing.
        denied = " ".join(errors_of(push(daemon, "busybox:latest", target))).lower()
        assert "unauthorized" in denied or "denied" in denied
        good = auth_header("bob", "hunter2")
        msgs = push(daemon, "busybox:latest", target, good)
        assert not errors_of(msgs), msgs
        answer = daemon.client().post_json("/auth", None, {
            "username": "bob", "password": "hunter2", "serveraddress": reg.domain})
        assert answer["Status"] == "Login Succeeded"
        with pytest.raises(ApiError):
            daemon.client().post_json("/auth", None, {
                "username": "bob", "password": "nope", "serveraddress": reg.domain})
        msgs = pull(fresh_daemon, f"{reg.domain}/tok/busybox", "v1", good)
        assert not errors_of(msgs), msgs
        scopes = [r["path"] for r in issuer.requests if r["authorization"]]
        assert any("repository%3Atok%2Fbusybox%3Apull%2Cpush" in p for p in scopes)
        assert any("repository%3Atok%2Fbusybox%3Apull" in p for p in scopes)
    finally:
        issuer.stop()
        reg.cleanup()


# ------------------------------------------------------------------------------- docker CLI


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_docker_cli_pull_against_our_daemon(daemon: DaemonProcess,
                                            fresh_daemon: DaemonProcess,
                                            registry: LocalRegistry) -> None:
    target = f"{registry.domain}/cli/busybox:latest"
    assert not errors_of(push(daemon, "busybox:latest", target))
    p = subprocess.run(["docker", "pull", target], capture_output=True, text=True,
                       env=fresh_daemon.cli_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Pull complete" in p.stdout and "Digest: sha256:" in p.stdout
    assert f"Status: Downloaded newer image for {target}" in p.stdout
    images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, env=fresh_daemon.cli_env(),
                            timeout=30).stdout.split()
    assert images == [target]
    p = subprocess.run(["docker", "pull", f"{registry.domain}/cli/nothing:here"],
                       capture_output=True, text=True, env=fresh_daemon.cli_env(), timeout=60)
    assert p.returncode != 0 and "not found" in p.stderr
