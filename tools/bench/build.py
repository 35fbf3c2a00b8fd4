"""Benchmark Dockerfile builds against Docker's classic builder and `podman build` (issue 12).

    python3 -m tools.bench.build            # 3 cold + 3 cached builds per engine
    python3 -m tools.bench.build --runs 1   # quicker

The same Dockerfile (FROM busybox, 5 RUN/COPY steps) and the same context (50 MB in ~2,500
small files, fixed content) are built by: shipslog (`shipslog build`), the docker CLI with
DOCKER_BUILDKIT=0 against a private dockerd (the classic builder), and `podman build`
(buildah inside, runc, private storage). Measured per engine: a cold build (`--no-cache`,
so every step runs), a fully cached rebuild, and a rebuild after one small file changed (the
last COPY and RUN run again: what a step that misses the cache costs once the rest hits), N
times each, interleaved; medians and the ratios shipslog/docker and shipslog/podman. Targets
(issue 12): cold ≤ 0.7× Docker, cached ≤ 0.5× Docker.

Prints progress on stderr, a table on stdout and, as the last line, one JSON object.

I/O: a temp work dir under /tmp/engine-bench-*; starts shipslogd, dockerd and podman through
tools/bench/run.py's setup helpers, which stop them and remove their dirs on exit.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from tools.bench.common import (
    Dockerd,
    HostTraces,
    Podman,
    build_busybox_tar,
    cgroup_paths,
    fmt_ratio,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    make_workdir,
    median,
    ratio,
    remove_tree,
    shield_cleanup,
    timed,
)
from tools.bench.run import Engine, setup_docker, setup_podman, setup_shipslog, try_setup

DOCKERFILE = """\
FROM busybox
RUN echo one > /one
COPY files /files
RUN find /files -type f | wc -l > /count
COPY extra.txt /extra.txt
RUN cat /count /extra.txt > /summary
CMD ["cat", "/summary"]
"""


def make_context(ctx: Path, total_mb: int = 50, files: int = 2500) -> None:
    """A fixed context: `files` files of equal size (deterministic bytes) in 50 dirs."""
    size = total_mb * (1 << 20) // files
    block = bytes(range(256)) * (size // 256 + 1)
    for i in range(files):
        d = ctx / "files" / f"d{i % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(block[i % 256: i % 256 + size])
    (ctx / "extra.txt").write_text("extra\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)


def build_argv(e: Engine, ctx: Path, tag: str, *, cold: bool) -> list[str]:
    return [*e.prefix, "build", "-q", *(["--no-cache"] if cold else []), "-t", tag, str(ctx)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip", action="append", default=[], choices=["docker", "podman"])
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, mounts, namespaces)", file=sys.stderr)
        return 2
    interrupts_unwind()
    engines: dict[str, Engine] = {}
    why: dict[str, str] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        work = make_workdir()
        stack.callback(remove_tree, work)
        traces = HostTraces([*Dockerd.host_traces(), *Podman.host_traces(),
                             *cgroup_paths("shipslog")])
        stack.callback(traces.restore)
        try:
            image = build_busybox_tar(work / "busybox.tar")
            ctx = work / "context"
            make_context(ctx)
            pair, err = try_setup("shipslogd", lambda: setup_shipslog(work, image, stack))
            if pair is not None:
                engines["shipslog"] = pair[0]
            else:
                why["shipslog"] = str(err)
            for key, setup in (("docker", setup_docker), ("podman", setup_podman)):
                if key in args.skip:
                    why[key] = "skipped (--skip)"
                    continue
                eng, err = try_setup(key, partial(setup, work, image, stack))
                if eng is not None:
                    engines[key] = eng
                else:
                    why[key] = str(err)
            if "docker" in engines:
                engines["docker"].env["DOCKER_BUILDKIT"] = "0"  # the classic builder
            for e in engines.values():
                samples[e.key] = {"cold": [], "cached": [], "changed": []}
                timed(build_argv(e, ctx, "bench:warm", cold=False), env=e.env, timeout=900)
            for i in range(args.runs):
                for kind in ("cold", "cached", "changed"):
                    if kind == "changed":  # new bytes for every engine's next build
                        (ctx / "extra.txt").write_text(f"extra {i}\n")
                    for e in engines.values():
                        t, _ = timed(build_argv(e, ctx, f"bench:{i}", cold=kind == "cold"),
                                  env=e.env, timeout=900)
                        log(f"{e.key} {kind} build {i + 1}/{args.runs}: {t:.2f}s")
                        samples[e.key][kind].append(t)
        finally:
            shield_cleanup()
    result = report(samples, why)
    print(json_line(result), flush=True)
    return 0


def report(samples: dict[str, dict[str, list[float]]], why: dict[str, str]) -> dict[str, Any]:
    med = {k: {kind: median(v) for kind, v in s.items()} for k, s in samples.items()}

    def m(key: str, kind: str) -> float | None:
        return med.get(key, {}).get(kind)

    kinds = ("cold", "cached", "changed")
    rows = [[k, *(fmt_s(m(k, kind)) for kind in kinds)]
            for k in ("shipslog", "docker", "podman") if k in med]
    print(format_table(["engine", "cold build (median)", "cached rebuild (median)",
                        "one file changed (median)"], rows))
    ratios = [[kind, fmt_ratio(ratio(m("shipslog", kind), m("docker", kind))),
               fmt_ratio(ratio(m("shipslog", kind), m("podman", kind)))]
              for kind in kinds]
    print(format_table(["build", "shipslog/docker", "shipslog/podman"], ratios))
    for k, reason in why.items():
        print(f"{k}: not measured: {reason}")
    return {
        **{f"{k}_{kind}_median_s": m(k, kind) for k in ("shipslog", "docker", "podman")
           for kind in kinds},
        **{f"{kind}_ratio_{other}": ratio(m("shipslog", kind), m(other, kind))
           for kind in kinds for other in ("docker", "podman")},
        "unavailable": why or None,
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
