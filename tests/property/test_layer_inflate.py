"""The layer inflater (ISA-L since issue 17, zlib before) gives back exactly what was gzipped,
across members and chunk boundaries, and refuses a truncated or damaged stream. Pure (bytes
in memory); a guard for the swap of decompressors, not a timing. Both inflaters run: ISA-L's
IgzipDecompressor (the one used) and the decompressobj loop (the fallback without isal)."""

from __future__ import annotations

import gzip
import io
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drivers.layers import unpack
from engine.drivers.layers.unpack import CHUNK, InvalidLayer, decompressed_chunks

members = st.lists(st.one_of(st.binary(max_size=3000),
                             st.integers(0, 3 * CHUNK).map(lambda n: b"a" * n)),
                   min_size=1, max_size=3)


INFLATERS = ["default", "zlib-api"]


def inflate(blob: bytes, how: str = "default") -> bytes:
    if how == "default":
        chunks, _, kind = decompressed_chunks(io.BytesIO(blob))
        assert kind == "gzip"
        return b"".join(chunks)
    src = unpack._Counting(io.BytesIO(blob))
    return b"".join(unpack._gunzip_zlib(src, src.read(6)))


def test_isal_streaming_inflater_is_the_one_used() -> None:
    assert unpack._igzip is not None  # isal is a dependency (pyproject.toml)


@settings(max_examples=60, deadline=None)
@given(members, st.integers(1, 9), st.sampled_from(INFLATERS))
def test_inflate_round_trip(parts: list[bytes], level: int, how: str) -> None:
    blob = b"".join(gzip.compress(p, compresslevel=level, mtime=0) for p in parts)
    assert inflate(blob, how) == b"".join(parts)


@settings(max_examples=60, deadline=None)
@given(members, st.data(), st.sampled_from(INFLATERS))
def test_truncated_or_damaged_stream_refused(parts: list[bytes], data: st.DataObject,
                                             how: str) -> None:
    gz = [gzip.compress(p, mtime=0) for p in parts]
    blob = b"".join(gz)
    cut = data.draw(st.integers(6, len(blob) - 1))
    ends = list(itertools.accumulate(len(m) for m in gz))
    if cut in ends:
        # Cut between two members: what is left is a valid gzip stream of fewer members (gzip
        # itself cannot tell; the layer's digest does, a level up).
        assert inflate(blob[:cut], how) == b"".join(parts[:ends.index(cut) + 1])
    else:
        with pytest.raises(InvalidLayer):
            inflate(blob[:cut], how)
    pos = data.draw(st.integers(10, len(blob) - 9))
    damaged = blob[:pos] + bytes([blob[pos] ^ 0xFF]) + blob[pos + 1:]
    try:
        out = inflate(damaged, how)
    except InvalidLayer:
        return
    # a flipped bit inside stored/literal data can still inflate; the CRC then must catch it
    assert out == b"".join(parts)
