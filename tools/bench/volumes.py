"""Benchmark: the cost of planning and preparing one container's mounts (one named volume, one
read-only bind, one tmpfs), 200 times. Moved here from tests/integration/test_volumes.py
(issue 16), where it was a test that could not fail.

I/O: root only; creates a temp dir under /tmp/shipslog-tests, a volume store and bind staging
mounts in it, and removes all of them (every staging mount is released, the volume unmounted).

    python3 -m tools.bench.volumes [-n 200]

Prints a line, then as its last stdout line one JSON object (tools/bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from engine.core.volume_plan import plan_mounts
from engine.drivers.volumes.bindsafe import BindStager
from engine.drivers.volumes.linux import Mounter, VolumeStore
from events.values import MountSpec

TESTS_DIR = Path("/tmp/shipslog-tests")


def measure(base: Path, n: int) -> list[float]:
    """Seconds per plan + prepare of the three mounts, `n` times (release is not timed)."""
    rootfs = base / "rootfs"
    for d in ("data", "src", "tmp"):
        (rootfs / d).mkdir(parents=True)
    src = base / "bind-src"
    src.mkdir()
    store = VolumeStore(base / "root")
    stager = BindStager(base / "exec" / "mounts")
    mounter = Mounter(store, stager)
    mounts = [MountSpec(type="volume", source="timed", target="/data"),
              MountSpec(type="bind", source=str(src), target="/src", read_only=True),
              MountSpec(type="tmpfs", target="/tmp/scratch", tmpfs_size=1 << 20)]
    store.create("timed")
    samples = []
    try:
        for _ in range(n):
            cid = secrets.token_hex(32)
            t0 = time.perf_counter()
            plan = plan_mounts(mounts, known_volumes={"timed"})
            mounter.prepare(cid, plan, str(rootfs))
            samples.append(time.perf_counter() - t0)
            mounter.release(cid)
    finally:
        for name in store.list():
            store.unmount(name)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="repetitions (default 200)")
    args = parser.parse_args()
    TESTS_DIR.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-vol-", dir=TESTS_DIR))
    try:
        samples = sorted(measure(base, args.n))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    median = statistics.median(samples) * 1e3
    p95 = samples[int(len(samples) * 0.95) - 1] * 1e3
    print(f"plan+prepare (1 volume, 1 bind, 1 tmpfs): median {median:.2f} ms, p95 {p95:.2f} ms")
    print(json.dumps({"plan_prepare_median_ms": round(median, 3),
                      "plan_prepare_p95_ms": round(p95, 3), "n": args.n}))


if __name__ == "__main__":
    main()
