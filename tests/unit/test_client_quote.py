"""The API client's quote/urlencode give urllib.parse's output byte for byte (issue 17: the
client no longer imports urllib.parse, ~2.5 ms of every CLI start). Pure."""

from __future__ import annotations

import urllib.parse
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.cli.client import PATH_SAFE, quote, urlencode

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(texts)
def test_path_quote_matches_urllib(path: str) -> None:
    assert quote(path, PATH_SAFE) == urllib.parse.quote(path, safe=PATH_SAFE)


@given(texts, st.sampled_from(["", "/", " ", PATH_SAFE]))
def test_quote_matches_urllib(text: str, safe: str) -> None:
    assert quote(text, safe) == urllib.parse.quote(text, safe=safe)


@given(st.lists(st.tuples(texts, st.one_of(texts, st.integers(), st.booleans())), max_size=5))
def test_urlencode_matches_urllib(pairs: list[tuple[str, Any]]) -> None:
    assert urlencode(pairs) == urllib.parse.urlencode(pairs)


def test_docker_filters_encode_as_before() -> None:
    pairs = [("filters", '{"label":["a=b c"]}'), ("all", "1")]
    assert urlencode(pairs) == "filters=%7B%22label%22%3A%5B%22a%3Db+c%22%5D%7D&all=1"
