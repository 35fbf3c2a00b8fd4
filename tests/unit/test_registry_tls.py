"""The registry client parses the CA certificates once per process, not once per connection
pool: the parse cost the first pull of every fresh daemon 30-150 ms on the event loop (issue
17), and the daemon now does it in a worker thread as it starts (`warm_tls`). Pure: no
connection is made."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from engine.registry import client
from engine.registry.client import Transport, default_tls_context, warm_tls


def _count_ca_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    monkeypatch.setattr(client, "_tls_default", None)
    return calls


def test_pools_share_one_parse_of_the_ca_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ca_loads(monkeypatch)
    pools = [Transport(), Transport(), Transport()]
    assert calls[0] == 1
    assert len(pools) == 3


def test_warm_tls_leaves_nothing_for_the_first_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ca_loads(monkeypatch)
    warm_tls()
    assert calls[0] == 1
    Transport()
    assert calls[0] == 1
    assert default_tls_context().verify_mode == ssl.CERT_REQUIRED


def test_a_pool_given_its_own_verify_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ca_loads(monkeypatch)
    Transport(verify=False)
    assert calls[0] == 0
