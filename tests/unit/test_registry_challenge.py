"""Pure rules of the registry conversation: endpoints (which registries speak plain HTTP),
WWW-Authenticate parsing, and where credentials may be sent (RELIABILITY S-09)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.registry.challenge import (
    Endpoint,
    auth_keys,
    endpoint,
    is_downgrade,
    may_send_credentials,
    parse_challenge,
    same_origin,
)
from engine.registry.client import retry_after


def test_endpoints() -> None:
    assert endpoint("docker.io") == Endpoint("docker.io", "https", "registry-1.docker.io")
    assert endpoint("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert endpoint("127.9.9.9:5000").scheme == "http"  # all of 127.0.0.0/8
    assert endpoint("[::1]:5000").scheme == "http"
    assert endpoint("localhost:5000").scheme == "http"
    assert endpoint("quay.io").base == "https://quay.io"
    assert endpoint("reg.lan:5000", insecure=["reg.lan:5000"]).scheme == "http"
    assert endpoint("reg.lan:5000", insecure=["reg.lan"]).scheme == "http"
    assert endpoint("reg.lan:5000", insecure=["other"]).scheme == "https"


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.docker.io/token",'
                         'service="registry.docker.io",scope="repository:library/busybox:pull"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.realm == "https://auth.docker.io/token"
    assert ch.params["service"] == "registry.docker.io"
    assert ch.params["scope"] == "repository:library/busybox:pull"
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic" and basic.realm == "Registry Realm"
    quoted = parse_challenge(r'Bearer realm="https://a/t?x=\"y\"", error="invalid_token"')
    assert quoted is not None and quoted.realm == 'https://a/t?x="y"'
    assert quoted.params["error"] == "invalid_token"
    assert parse_challenge("") is None


HUB = endpoint("docker.io")


@pytest.mark.parametrize(("ep", "url", "allowed"), [
    (HUB, "https://registry-1.docker.io/v2/x", True),
    (HUB, "https://auth.docker.io/token", True),  # the registry's own token service
    (HUB, "http://auth.docker.io/token", False),  # downgrade
    (HUB, "https://docker.io.evil.com/token", False),
    (HUB, "https://evil.com/token", False),
    (Endpoint("reg.example", "https", "reg.example"), "https://reg.example.evil/t", False),
    (Endpoint("reg.example", "https", "reg.example"), "https://reg.example:8443/t", True),
    (Endpoint("reg.example", "https", "reg.example"), "http://reg.example/t", False),
    (Endpoint("r.gitlab.com", "https", "registry.gitlab.com"), "https://gitlab.com/jwt", True),
    (endpoint("127.0.0.1:5000"), "http://127.0.0.1:5001/token", True),
    (endpoint("127.0.0.1:5000"), "http://127.0.0.2:5001/token", False),  # another host
    (endpoint("127.0.0.1:5000"), "https://0.0.1/token", False),  # no parent domain of an IP
    (HUB, "ftp://registry-1.docker.io/", False),
])
def test_may_send_credentials(ep: Endpoint, url: str, allowed: bool) -> None:
    assert may_send_credentials(ep, url) is allowed


def test_origins_and_downgrades() -> None:
    assert same_origin("https://a/x", "https://a/y?z")
    assert not same_origin("https://a/x", "https://a:444/x")
    assert not same_origin("https://a/x", "http://a/x")
    assert is_downgrade("https://a/x", "http://a/x")
    assert not is_downgrade("http://a/x", "https://b/x")


def test_auth_keys_for_docker_hub() -> None:
    assert "https://index.docker.io/v1/" in auth_keys("docker.io")
    assert auth_keys("127.0.0.1:5000")[0] == "127.0.0.1:5000"


def test_retry_after() -> None:
    assert retry_after("3", 0) == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None


def test_pure_modules_do_no_io() -> None:
    here = Path(__file__).resolve().parents[2] / "engine" / "registry"
    for name in ("challenge.py", "manifest.py"):
        tree = ast.parse((here / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom)}
        assert not imported & {"os", "socket", "trio", "httpx", "subprocess"}, name
