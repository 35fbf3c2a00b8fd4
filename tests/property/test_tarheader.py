"""FastTarInfo decodes every header block exactly as tarfile.TarInfo does (issue 17).

Pure: headers are built in memory. Blocks come from tarfile's own writer (every format, odd
fields) and are then damaged byte by byte, with the checksum recomputed or not, so both the
fast path and the hand-over to tarfile for everything else are compared.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drivers.tarheader import FastTarInfo

ENC, ERR = "utf-8", "surrogateescape"
TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
         tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE,
         tarfile.GNUTYPE_SPARSE, tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, b"Z"]
FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT]

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=180)


def _decode(cls: type[tarfile.TarInfo], buf: bytes) -> tuple[str, Any]:
    try:
        ti = cls.frombuf(buf, ENC, ERR)
    except tarfile.HeaderError as e:
        return ("error", (type(e), str(e)))
    fields = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
              "uname", "gname", "devmajor", "devminor")
    return ("ok", ({f: getattr(ti, f) for f in fields},
                   getattr(ti, "_sparse_structs", None)))


def _checksum(buf: bytearray) -> None:
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    ti = tarfile.TarInfo(draw(names))
    ti.type = draw(st.sampled_from(TYPES))
    ti.mode = draw(st.integers(0, 0o7777))
    ti.uid = draw(st.one_of(st.integers(0, 2**21 - 1), st.integers(0, 2**40)))
    ti.gid = draw(st.integers(0, 2**21 - 1))
    ti.size = draw(st.integers(0, 2**36)) if ti.type in (tarfile.REGTYPE,) else 0
    ti.mtime = draw(st.integers(0, 2**33 - 1))
    ti.linkname = draw(names) if ti.type in (tarfile.LNKTYPE, tarfile.SYMTYPE) else ""
    ti.devmajor = draw(st.integers(0, 4095))
    ti.devminor = draw(st.integers(0, 4095))
    try:
        buf = ti.tobuf(draw(st.sampled_from(FORMATS)), ENC, ERR)
    except ValueError:
        buf = tarfile.TarInfo("x").tobuf(tarfile.USTAR_FORMAT, ENC, ERR)
    block = bytearray(buf[-tarfile.BLOCKSIZE:])  # the member's own header, after any long-name
    for pos, val in draw(st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)),
                                  max_size=4)):
        block[pos] = val
    if draw(st.booleans()):
        _checksum(block)
    return bytes(block)


@settings(max_examples=600, deadline=None)
@given(header_blocks())
def test_fast_decoder_agrees_with_tarfile(block: bytes) -> None:
    assert _decode(FastTarInfo, block) == _decode(tarfile.TarInfo, block)


@given(st.binary(max_size=600))
def test_fast_decoder_agrees_on_any_bytes(block: bytes) -> None:
    assert _decode(FastTarInfo, block) == _decode(tarfile.TarInfo, block)


def test_fast_decoder_agrees_on_edge_blocks() -> None:
    ustar = bytearray(tarfile.TarInfo("d/").tobuf(tarfile.USTAR_FORMAT, ENC, ERR))
    ustar[156:157] = tarfile.AREGTYPE  # v7 directory: a file with a trailing slash
    _checksum(ustar)
    signed = bytearray(tarfile.TarInfo("é").tobuf(tarfile.USTAR_FORMAT, ENC, ERR))
    signed[148:156] = b"%06o\0 " % (sum(x - 256 if x > 127 else x for x in signed[:148])
                                     + 256 + sum(x - 256 if x > 127 else x for x in signed[156:]))
    for block in (b"", b"\0" * 100, b"\0" * 512, bytes(ustar), bytes(signed)):
        assert _decode(FastTarInfo, block) == _decode(tarfile.TarInfo, block)


def test_whole_archive_reads_the_same() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i, name in enumerate(["a", "b/" * 60 + "long", "c\u00e9", "d/"]):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.uid = i, 1.5 + i, 70000 + i
            ti.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            tf.addfile(ti, io.BytesIO(b"x" * i) if ti.isreg() else None)
    data = out.getvalue()

    def members(cls: type[tarfile.TarInfo]) -> list[dict[str, Any]]:
        with tarfile.open(fileobj=io.BytesIO(data), tarinfo=cls) as tf:
            return [m.get_info() | {"offset": m.offset} for m in tf]

    assert members(FastTarInfo) == members(tarfile.TarInfo)


NUMBER_FIELDS = [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (329, 8), (337, 8)]


@st.composite
def odd_number_fields(draw: st.DrawFn) -> bytes:
    """A valid header whose number fields are rewritten with what writers and attackers put
    there: digits with or without an end byte, spaces, NULs mid-field, signs, underscores,
    non-octal digits, whitespace int() strips and tarfile's str.strip also strips."""
    block = bytearray(draw(header_blocks())[:tarfile.BLOCKSIZE].ljust(tarfile.BLOCKSIZE, b"\0"))
    for off, size in draw(st.lists(st.sampled_from(NUMBER_FIELDS), min_size=1, max_size=4)):
        field = draw(st.one_of(
            st.binary(min_size=size, max_size=size),
            st.lists(st.sampled_from(list(b"01234567 \0_+-89\t\x1c")), min_size=size,
                     max_size=size).map(bytes),
            st.integers(0, 8 ** (size - 1) - 1).map(lambda n, s=size: b"%0*o\0" % (s - 1, n)),
            st.integers(0, 8 ** size - 1).map(lambda n, s=size: b"%0*o" % (s, n)),
        ))
        block[off:off + size] = field
    _checksum(block)
    return bytes(block)


@settings(max_examples=600, deadline=None)
@given(odd_number_fields())
def test_fast_decoder_agrees_on_odd_number_fields(block: bytes) -> None:
    assert _decode(FastTarInfo, block) == _decode(tarfile.TarInfo, block)
