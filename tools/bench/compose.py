"""Benchmark: Docker Compose v2 bringing a 10-service project up and down (issue 14, target
≤ 0.5× Docker's time for each), shipslog against a private dockerd in one run.

I/O: starts a shipslogd (`engine.testing.daemon.DaemonProcess`, own root under
/tmp/shipslog-tests/) and a private dockerd (`tools.bench.common.Dockerd`: own data root and
socket, no docker0, no iptables), loads the busybox image into both, writes the project into
a temp dir, runs the pinned Compose v2 binary against each; removes everything at the end.
Prints a table, and as its LAST line one JSON object.

    python3 -m tools.bench.compose               # 10 services, 3 rounds
    python3 -m tools.bench.compose --services 20 --rounds 5
    python3 -m tools.bench.compose --daemon-before DIR   # + shipslogd from an older tree

`--daemon-before DIR` (`git archive OLD engine events projections | tar -x -C DIR`) runs a
second shipslogd from that source beside ours, so a change is measured before and after in
the same run, with Docker, under the same load.

Each round, on each engine: `up -d --wait` (create the project network, create and start every
service, wait until every healthcheck passes), then `down -v`. Compose's own start-up is in
both numbers alike. After each `up` the engine's container events of that window (`docker
events`, the same CLI for both) give its phases (`tools/bench/timeline.py`): when the last
container was created, started and first reported healthy, each one's start → healthy, and
how long Compose took to notice; a second table shows their medians side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from engine.cli.compose_binary import PINNED, compose_binary
from engine.testing.composecli import many_services
from engine.testing.daemon import DaemonProcess
from tools.bench.common import (
    Dockerd,
    Unavailable,
    build_busybox_tar,
    fmt_ratio,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    ratio,
    remove_tree,
    run,
    shield_cleanup,
    timed,
)
from tools.bench.timeline import PHASES, phases

BUSYBOX = Path("/tmp/shipslog-tests/busybox.tar")


def one_round(env: dict[str, str], project: Path, name: str
              ) -> tuple[float, float, dict[str, float]]:
    """(up, down, the up's phases as the engine's event stream tells them)."""
    binary = str(compose_binary())
    base = [binary, "--project-directory", str(project), "-p", name, "--ansi", "never"]
    t0 = time.time_ns()
    up, _ = timed([*base, "up", "-d", "--wait"], env=env, timeout=600)
    t1 = time.time_ns()
    steps = phases(up_events(env, t0, t1), t0, t1)
    down, _ = timed([*base, "down", "-v"], env=env, timeout=600)
    return up, down, steps


def up_events(env: dict[str, str], t0_ns: int, t1_ns: int) -> list[dict[str, object]]:
    """The container and network events between two instants, through the docker CLI (the
    same for both engines)."""
    out = run(["docker", "events", "--since", f"{t0_ns / 1e9:.9f}", "--until",
               f"{t1_ns / 1e9:.9f}", "--filter", "type=container", "--filter",
               "type=network", "--format",
               "{{json .}}"], env=env, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def before_daemon(tree: Path) -> DaemonProcess:
    """A shipslogd from another source tree: `env -C` makes it the daemon's working dir and
    import path (`-m` puts the working dir first on sys.path, ahead of this checkout)."""
    d = DaemonProcess.make()
    d.wrap = ["env", "-C", str(tree.resolve()), f"PYTHONPATH={tree.resolve()}"]
    return d


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.compose")
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--daemon-before", type=Path, default=None, metavar="DIR",
                   help="also run a shipslogd from this older source tree (before/after)")
    p.add_argument("--no-healthcheck", action="store_true",
                   help="services without a healthcheck: `--wait` waits for them to run, so "
                        "`up` is the engines' own work (with a 1 s check, about 1.5 s of every "
                        "`up` is the interval and Compose's 0.5 s poll, alike for both)")
    args = p.parse_args(argv)
    interrupts_unwind()
    if not BUSYBOX.exists():
        BUSYBOX.parent.mkdir(parents=True, exist_ok=True)
        build_busybox_tar(BUSYBOX)
    work = Path(tempfile.mkdtemp(prefix="bench-compose-"))
    project = many_services(work / "proj", args.services,
                            healthcheck=not args.no_healthcheck)
    ours = DaemonProcess.make()
    daemons = {"shipslog": ours}
    if args.daemon_before is not None:
        daemons["shipslog_before"] = before_daemon(args.daemon_before)
    docker = Dockerd(work / "dockerd")
    engines = [*daemons, "docker"]
    times: dict[str, dict[str, list[float]]] = {e: {"up": [], "down": []} for e in engines}
    steps: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    docker_note = ""
    try:
        envs: dict[str, dict[str, str]] = {}
        for name, d in daemons.items():
            d.start()
            with open(BUSYBOX, "rb") as f:
                d.client().upload("POST", "/images/load", f)
            envs[name] = d.cli_env()
        try:
            docker.start()
            run(["docker", "load", "-i", str(BUSYBOX)], env=docker.env, timeout=300)
            envs["docker"] = docker.env
        except Unavailable as exc:
            docker_note = f"docker: not compared ({exc})"
            log(docker_note)
        for r in range(args.rounds):
            for engine, env in envs.items():  # alternate, so load drifts hit both alike
                log(f"round {r + 1}/{args.rounds}: {engine}")
                up, down, got = one_round(env, project, f"bench{r}")
                log(f"  {engine}: up {up * 1000:.0f} ms, down {down * 1000:.0f} ms; up's "
                    + ", ".join(f"{k} {v * 1000:.0f}" for k, v in got.items()))
                for k, val in got.items():
                    steps[engine].setdefault(k, []).append(val)
                times[engine]["up"].append(up)
                times[engine]["down"].append(down)
    finally:
        shield_cleanup()
        for d in daemons.values():
            d.cleanup()
        docker.stop()
        remove_tree(work)
    rows = []
    result: dict[str, object] = {"bench": "compose", "services": args.services,
                                 "rounds": args.rounds}
    med = {e: {step: statistics.median(times[e][step]) if times[e][step] else None
               for step in ("up", "down")} for e in engines}
    for step in ("up", "down"):
        theirs = med["docker"][step]
        for e in daemons:
            mine = med[e][step]
            rows.append([("up -d --wait" if step == "up" else "down -v")
                         + (" (before)" if e != "shipslog" else ""), fmt_s(mine),
                         fmt_s(theirs), fmt_ratio(ratio(mine, theirs))])
            key = step if e == "shipslog" else f"{step}_before"
            result.update({f"{key}_shipslog_s": mine, f"{key}_ratio": ratio(mine, theirs)})
        result[f"{step}_docker_s"] = theirs
    print(format_table(["step", "shipslog", "docker", "ratio"], rows))
    names = [*PHASES, "probe", "poll"]
    print(format_table(["up's phase (s from its start, median)", *engines],
                       [[k, *(fmt_s(statistics.median(steps[e][k])) if steps[e].get(k)
                              else "-" for e in engines)] for k in names]))
    print("network: the project network's create; created/started/healthy: the last "
          "container's event; probe: start → first healthy, per container; poll: last "
          "healthy → Compose's exit")
    result["phases"] = {e: {k: statistics.median(xs) for k, xs in steps[e].items()}
                        for e in engines}
    checked = "no healthcheck" if args.no_healthcheck else "healthcheck each, interval 1 s"
    result["healthcheck"] = not args.no_healthcheck
    print(f"{args.services} services (busybox, {checked}), median of {args.rounds}; "
          f"Compose v{PINNED}; stop_signal SIGKILL (sleep ignores SIGTERM)")
    if docker_note:
        print(docker_note)
    print(json_line(result))


if __name__ == "__main__":
    main()
