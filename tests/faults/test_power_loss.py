"""Power loss during SQLite commits (RELIABILITY F-06), with an LD_PRELOAD write-dropping
shim (tests/faults/powercut/shim.c): a writer appends batches through `EventStore` and
prints each acknowledged event; at the N-th write to the log's files the shim puts every
file back as it was at its last fsync and kills the writer — the harshest loss of a
volatile write cache. For N across the whole burst (commits, WAL growth, checkpoints):

- `PRAGMA integrity_check` is ok and the hash chain verifies;
- every acknowledged event is there, unchanged (synchronous=FULL: no acknowledged loss),
  and the log holds nothing that is not a prefix of what the writer was making;
- the projection rebuilt from the log equals the live projection tables;
- the log takes appends again.

What the model leaves out (the shim's docstring): torn sectors, reordering inside a synced
range, directory-entry durability. No device-mapper is available on this kernel, so
dm-log-writes / dm-flakey, which would cover those, cannot be used here.

I/O: gcc builds the shim into the test's temp dir; subprocesses of this interpreter.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.testing.daemon import REPO
from engine.testing.oracle import integrity
from events.store import EventStore
from projections.engine import EngineProjection, decode_row
from projections.fold import TABLES, fold

SHIM = Path(__file__).parent / "powercut" / "shim.c"
BATCHES = 60
CUTS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shipslog-powercut") / "shim.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(SHIM), "-ldl"],
                   check=True, capture_output=True)
    return out


def run_writer(shim: Path, db: Path, cut: int | None) -> tuple[int, list[tuple[int, str]]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), LD_PRELOAD=str(shim),
               POWERCUT_PREFIX=str(db))
    if cut is not None:
        env["POWERCUT_AT"] = str(cut)
    p = subprocess.run([sys.executable, "-m", "tests.faults.powercut.writer", str(db),
                        str(BATCHES)], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=120)
    acked = [(int(s), h) for s, h in (line.split() for line in p.stdout.splitlines())]
    return p.returncode, acked


def read_back(db: Path) -> list[tuple[int, str]]:
    store = EventStore.open(db, readonly=True, projection=EngineProjection())
    try:
        assert store.verify().ok
        envs = list(store.read())
        rebuilt = fold(envs)
        for table in TABLES:
            live = {k: decode_row(table, doc) for k, doc in store.read_rows(table)}
            assert dict(getattr(rebuilt, table)) == live, table
    finally:
        store.close()
    return [(e.seq, e.hash) for e in envs]


@pytest.mark.slow
def test_power_cut_at_every_stage_of_a_burst(shim: Path, tmp_path: Path) -> None:
    # Without a cut the shim changes nothing: the full burst, acknowledged.
    whole = tmp_path / "whole" / "events.db"
    whole.parent.mkdir()
    code, acked = run_writer(shim, whole, None)
    assert code == 0 and read_back(whole) == acked
    cut_short = 0
    for cut in CUTS:
        db = tmp_path / f"cut{cut}" / "events.db"
        db.parent.mkdir()
        code, acked = run_writer(shim, db, cut)
        if code == 0:
            continue  # the burst needed fewer writes than `cut`
        assert code == -9, code
        cut_short += 1
        assert integrity(db) == "ok", (cut, integrity(db))
        # Nothing acknowledged may mean not even the schema was durable: an empty file.
        survived = read_back(db) if acked else []
        assert survived[:len(acked)] == acked, f"cut at write {cut}: acknowledged events lost"
        assert len(survived) <= len(acked) + 3  # at most the batch being acknowledged
        # The log takes writes again, chained on what survived.
        code, more = run_writer(shim, db, None)
        assert code == 0 and read_back(db) == survived + more
    assert cut_short >= len(CUTS) // 2, "most cuts must land inside the burst"


def test_shim_builds_and_tracks_only_its_prefix(shim: Path, tmp_path: Path) -> None:
    """A cut counted on the log's files never fires on writes elsewhere."""
    other = tmp_path / "other.db"
    env = dict(os.environ, LD_PRELOAD=str(shim), POWERCUT_PREFIX=str(tmp_path / "none-"),
               POWERCUT_AT="1")
    code = subprocess.run([sys.executable, "-c",
                           f"import sqlite3; c = sqlite3.connect({str(other)!r}); "
                           "c.execute('create table t(x)'); c.commit()"],
                          env=env, capture_output=True, timeout=60).returncode
    assert code == 0
    assert sqlite3.connect(other).execute("select count(*) from t").fetchone() == (0,)
