"""The benchmark's pure helpers: median, nearest-rank p90, ratios, formatting, the JSON line.
No timings are asserted anywhere (benchmarks report numbers, tests do not judge them)."""

from __future__ import annotations

import json
import math

import pytest

from tools.bench.common import (
    HostTraces,
    fmt_mb,
    fmt_ratio,
    fmt_s,
    format_table,
    json_line,
    median,
    p90,
    percentile,
    ratio,
)


def test_median_odd_even_and_empty() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0
    assert median([]) is None


def test_p90_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 21)]  # 1..20
    assert p90(xs) == 18.0
    assert p90([5.0, 1.0, 4.0, 2.0, 3.0]) == 5.0  # 5 samples: p90 is the largest
    assert p90([2.0]) == 2.0
    assert p90([]) is None
    assert percentile(xs, 50) == 10.0
    assert percentile(xs, 100) == 20.0
    with pytest.raises(ValueError):
        percentile(xs, 0)


def test_ratio_handles_missing_and_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_formatters() -> None:
    assert fmt_s(0.4567) == "457 ms"
    assert fmt_s(12.34) == "12.3 s"
    assert fmt_s(None) == "-"
    assert fmt_mb(2.345) == "2.3 MB"
    assert fmt_mb(None) == "-"
    assert fmt_ratio(1.5) == "1.50x"
    assert fmt_ratio(None) == "-"


def test_format_table_aligns_columns() -> None:
    text = format_table(["engine", "median"], [["shipslog", "646 ms"], ["runc", "42 ms"]])
    lines = text.splitlines()
    assert lines[0] == "engine    median"
    assert lines[1] == "--------  ------"
    assert lines[2] == "shipslog  646 ms"
    assert lines[3] == "runc       42 ms"  # numbers right-aligned, names left-aligned
    with pytest.raises(ValueError):
        format_table(["a", "b"], [["only one"]])


def test_json_line_is_one_line_with_nulls_and_rounding() -> None:
    line = json_line({"a": 0.123456789, "b": None, "c": math.nan, "d": {"e": [1.000001]}})
    assert "\n" not in line
    assert json.loads(line) == {"a": 0.1235, "b": None, "c": None, "d": {"e": [1.0]}}


def test_host_traces_remove_only_what_was_created(tmp_path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    created = tmp_path / "created"
    busy = tmp_path / "busy"
    traces = HostTraces([existing, created, created / "sub", busy])
    created.mkdir()
    (created / "sub").mkdir()
    busy.mkdir()
    (busy / "someone-elses-file").write_text("x")
    removed = traces.restore()
    assert sorted(removed) == sorted([str(created / "sub"), str(created)])
    assert existing.is_dir()
    assert (busy / "someone-elses-file").exists()  # not empty: left alone
