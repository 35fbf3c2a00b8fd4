"""Reading conmon's k8s-file logs as Docker's log stream (files in tmp_path, no kernel)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drivers.runtime.logs import follow_logs, parse_line, parse_timestamp, read_logs

T0 = "2026-11-28T00:14:31.000000001+00:00"


def line(ts: str, stream: str, tag: str, text: str) -> bytes:
    return f"{ts} {stream} {tag} {text}\n".encode()


def test_timestamps_with_offsets_and_nanoseconds() -> None:
    base = parse_timestamp(b"2026-11-28T00:14:31.000000001+00:00")
    assert base % 1_000_000_000 == 1
    assert parse_timestamp(b"2026-11-28T01:14:31.000000001+01:00") == base
    assert parse_timestamp(b"2026-11-27T23:44:31.000000001-00:30") == base
    assert parse_timestamp(b"2026-11-28T00:14:31Z") == base - 1
    assert parse_timestamp(b"2026-11-28T00:14:31.5Z") == base - 1 + 500_000_000
    with pytest.raises(ValueError):
        parse_timestamp(b"yesterday")


def test_parse_line_restores_newlines_and_partials() -> None:
    assert parse_line(line(T0, "stdout", "F", "hi")[:-1]) == (
        "stdout",
        parse_timestamp(T0.encode()),
        b"hi\n",
    )
    assert parse_line(line(T0, "stderr", "P", "part")[:-1])[2] == b"part"  # type: ignore[index]
    assert parse_line(f"{T0} stdout F ".encode())[2] == b"\n"  # type: ignore[index]
    assert parse_line(f"{T0} stdout F a b  c".encode())[2] == b"a b  c\n"  # type: ignore[index]
    for bad in (b"", b"garbage", f"{T0} stdin F x".encode(), f"{T0} stdout X x".encode()):
        assert parse_line(bad) is None


def write(path: Path, *lines: bytes) -> None:
    path.write_bytes(b"".join(lines))


def ts(sec: int) -> str:
    return f"2026-11-28T00:00:{sec:02d}.000000000+00:00"


def test_filters_since_until_tail_and_streams(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(
        log,
        line(ts(1), "stdout", "F", "a"),
        line(ts(2), "stderr", "F", "b"),
        line(ts(3), "stdout", "P", "c1"),
        line(ts(3), "stdout", "F", "c2"),
        line(ts(4), "stdout", "F", "d"),
        b"2026-11-28T00:00:05.000000000+00:00 stdout F incomplete",  # being written
    )
    assert b"".join(b for _, _, b in read_logs(log)) == b"a\nb\nc1c2\nd\n"
    assert [b for _, _, b in read_logs(log, stderr=False)] == [b"a\n", b"c1", b"c2\n", b"d\n"]
    assert [b for _, _, b in read_logs(log, stdout=False)] == [b"b\n"]
    t2, t3 = parse_timestamp(ts(2).encode()), parse_timestamp(ts(3).encode())
    assert [b for _, _, b in read_logs(log, since_ns=t2, until_ns=t3)] == [b"b\n", b"c1", b"c2\n"]
    assert [b for _, _, b in read_logs(log, tail=2)] == [b"c2\n", b"d\n"]
    assert list(read_logs(log, tail=0)) == []
    assert list(read_logs(tmp_path / "missing.log")) == []


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log.with_name("c.log.2"), line(ts(1), "stdout", "F", "oldest"))
    write(log.with_name("c.log.1"), line(ts(2), "stdout", "F", "older"))
    write(log, line(ts(3), "stdout", "F", "current"))
    assert [b for _, _, b in read_logs(log)] == [b"oldest\n", b"older\n", b"current\n"]
    assert [b for _, _, b in read_logs(log, tail=2)] == [b"older\n", b"current\n"]


async def test_follow_sees_appends_and_replacement_then_stops(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log, line(ts(1), "stdout", "F", "first"))
    stop = trio.Event()
    seen: list[bytes] = []

    async def writer() -> None:
        with open(log, "ab") as fh:
            fh.write(line(ts(2), "stdout", "F", "second"))
            fh.write(b"2026-11-28T00:00:03.000000000+00:00 stderr F thi")
            fh.flush()
            await trio.testing.wait_all_tasks_blocked()
            fh.write(b"rd\n")
        # conmon's size cap replaces the file by rename: the follower must start over.
        tmp = tmp_path / "c.log.tmp"
        write(tmp, line(ts(4), "stdout", "F", "after-rotate"))
        os.replace(tmp, log)

    async with trio.open_nursery() as nursery:
        async for _, _, data in follow_logs(log, stop=stop):
            seen.append(data)
            if data == b"first\n":
                nursery.start_soon(writer)
            if data == b"after-rotate\n":
                stop.set()
    assert seen == [b"first\n", b"second\n", b"third\n", b"after-rotate\n"]


async def test_follow_stops_when_told_and_drains(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "c.log"
    stop = trio.Event()
    seen: list[bytes] = []

    async def late() -> None:
        await trio.testing.wait_all_tasks_blocked()
        write(log, line(ts(1), "stdout", "F", "last words"))
        stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late)
        async for _, _, data in follow_logs(log, stop=stop, tail=10):
            seen.append(data)
    assert seen == [b"last words\n"]


async def test_follow_picks_up_a_record_that_was_half_written_at_start(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    write(log, line(ts(1), "stdout", "F", "whole"), f"{ts(2)} stdout F ha".encode())
    stop = trio.Event()
    seen: list[bytes] = []
    async for _, _, data in follow_logs(log, stop=stop):
        seen.append(data)
        if data == b"whole\n":
            with open(log, "ab") as fh:
                fh.write(b"lf\n")
            stop.set()
    assert seen == [b"whole\n", b"half\n"]


def conmon_encode(stream: str, ts_text: str, buf: bytes) -> bytes:
    """What conmon's write_k8s_log does with one read() of container output."""
    out = b""
    while buf:
        nl = buf.find(b"\n")
        chunk, buf = (buf, b"") if nl < 0 else (buf[: nl + 1], buf[nl + 1 :])
        tag = b"F" if chunk.endswith(b"\n") else b"P"
        body = chunk[:-1] if tag == b"F" else chunk
        out += ts_text.encode() + b" " + stream.encode() + b" " + tag + b" " + body + b"\n"
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=64))))
def test_conmon_records_round_trip_to_the_written_bytes(writes: list[tuple[str, bytes]]) -> None:
    data = b"".join(conmon_encode(s, ts(1), b) for s, b in writes)
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "c.log"
        log.write_bytes(data)
        for stream in ("stdout", "stderr"):
            got = b"".join(b for s, _, b in read_logs(log) if s == stream)
            assert got == b"".join(b for s, b in writes if s == stream)
