"""Detach keys: Docker's notation, and a scanner that never loses a keystroke."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.docker.escape import EscapeScanner, parse_detach_keys
from engine.core.errors import InvalidArgument


def test_parse_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-@,a,ctrl-[") == b"\x00a\x1b"
    for bad in ("", "ctrl-", "ctrl-1", "shift-a", "ab"):
        with pytest.raises(InvalidArgument):
            parse_detach_keys(bad)


def test_an_overlapping_partial_match_is_found() -> None:
    scanner = EscapeScanner(b"\x10\x10\x11")
    assert scanner.feed(b"x\x10\x10\x10\x11y") == (b"x\x10", True)
    scanner = EscapeScanner(b"abac")
    assert scanner.feed(b"ababac") == (b"ab", True)


@given(st.lists(st.sampled_from(b"\x10\x11abcx"), max_size=64).map(bytes),
       st.lists(st.integers(1, 8), max_size=10),
       st.sampled_from([b"\x10\x11", b"\x10", b"\x10\x10\x11", b"ab", b"abac"]))
def test_scanner_passes_everything_before_the_keys(data: bytes, cuts: list[int],
                                                   keys: bytes) -> None:
    scanner = EscapeScanner(keys)
    passed, detached, pos = b"", False, 0
    chunks = []
    for n in cuts:
        chunks.append(data[pos:pos + n])
        pos += n
    chunks.append(data[pos:])
    for chunk in chunks:
        out, hit = scanner.feed(chunk)
        passed += out
        if hit:
            detached = True
            break
    at = data.find(keys)
    if at >= 0:
        assert detached and passed == data[:at]
    else:
        assert not detached
        held = data[len(data) - scanner.matched:] if scanner.matched else b""
        assert passed + held == data
