"""`shipslog --root DIR VERB` from cold: the wall time of each read-only verb as a fresh
process (what a user pays with the daemon down), this tree against another one
(`--before DIR`: `git archive OLD engine events projections | tar -x -C DIR`), interleaved
round by round so load drift hits both alike; medians and ratios. Docker has no counterpart
(it cannot answer without dockerd): `null`.

I/O: runs the CLI in subprocesses over an existing state root (read-only); no kernel work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VERBS = [["ps", "-a"], ["images"], ["events", "--all"], ["audit", "verify"], ["audit", "who"],
         ["replay"]]


def cold_ms(tree: Path, root: str, argv: list[str]) -> float:
    env = {"PYTHONPATH": str(tree), "HOME": root, "PATH": os.environ.get("PATH", "/usr/bin")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine.cli", "--root", root, *argv], cwd=tree,
                   env=env, capture_output=True, check=True)
    return (time.perf_counter() - t) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a state root (holds events.db)")
    parser.add_argument("--before", help="another tree to compare with")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--verb", action="append", help="a verb to time, e.g. 'ps -a'")
    args = parser.parse_args(argv)
    verbs = [v.split() for v in args.verb] if args.verb else VERBS
    trees = {"after": REPO, **({"before": Path(args.before)} if args.before else {})}
    times: dict[tuple[str, str], list[float]] = {}
    for n in range(args.rounds):
        for verb in verbs:
            for name, tree in trees.items():
                times.setdefault((name, " ".join(verb)), []).append(
                    cold_ms(tree, args.root, verb))
        print(f"round {n + 1}/{args.rounds}", file=sys.stderr)
    out: dict[str, object] = {"load": os.getloadavg()[0], "docker": None}
    print(f"{'verb':16} {'this tree':>10} {'before':>10} {'ratio':>6}")
    for verb in verbs:
        key = " ".join(verb)
        now = statistics.median(times[("after", key)])
        row: dict[str, float | None] = {"ms": now, "before_ms": None, "ratio": None}
        if args.before:
            before = statistics.median(times[("before", key)])
            row.update(before_ms=before, ratio=now / before)
        out[key] = row
        print(f"{key:16} {now:8.1f}ms "
              + (f"{row['before_ms']:8.1f}ms {row['ratio']:6.2f}" if args.before else ""))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
