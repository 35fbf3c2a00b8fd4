"""Benchmark: Docker Compose v2 bringing a 10-service project up and down (issue 14, target
≤ 0.5× Docker's time for each), shipslog against a private dockerd in one run.

I/O: starts a shipslogd (`engine.testing.daemon.DaemonProcess`, own root under
/tmp/shipslog-tests/) and a private dockerd (`tools.bench.common.Dockerd`: own data root and
socket, no docker0, no iptables), loads the busybox image into both, writes the project into
a temp dir, runs the pinned Compose v2 binary against each; removes everything at the end.
Prints a table, and as its LAST line one JSON object.

    python3 -m tools.bench.compose               # 10 services, 3 rounds
    python3 -m tools.bench.compose --services 20 --rounds 5

Each round, on each engine: `up -d --wait` (create the project network, create and start every
service, wait until every healthcheck passes), then `down -v`. Compose's own start-up is in
both numbers alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
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

BUSYBOX = Path("/tmp/shipslog-tests/busybox.tar")


def one_round(env: dict[str, str], project: Path, name: str) -> tuple[float, float]:
    binary = str(compose_binary())
    base = [binary, "--project-directory", str(project), "-p", name, "--ansi", "never"]
    up, _ = timed([*base, "up", "-d", "--wait"], env=env, timeout=600)
    down, _ = timed([*base, "down", "-v"], env=env, timeout=600)
    return up, down


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.compose")
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    interrupts_unwind()
    if not BUSYBOX.exists():
        BUSYBOX.parent.mkdir(parents=True, exist_ok=True)
        build_busybox_tar(BUSYBOX)
    work = Path(tempfile.mkdtemp(prefix="bench-compose-"))
    project = many_services(work / "proj", args.services)
    ours = DaemonProcess.make()
    docker = Dockerd(work / "dockerd")
    times: dict[str, dict[str, list[float]]] = {
        e: {"up": [], "down": []} for e in ("shipslog", "docker")}
    docker_note = ""
    try:
        ours.start()
        with open(BUSYBOX, "rb") as f:
            ours.client().upload("POST", "/images/load", f)
        envs = {"shipslog": ours.cli_env()}
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
                up, down = one_round(env, project, f"bench{r}")
                times[engine]["up"].append(up)
                times[engine]["down"].append(down)
    finally:
        shield_cleanup()
        ours.cleanup()
        docker.stop()
        remove_tree(work)
    rows = []
    result: dict[str, object] = {"bench": "compose", "services": args.services,
                                 "rounds": args.rounds}
    for step in ("up", "down"):
        s = statistics.median(times["shipslog"][step]) if times["shipslog"][step] else None
        d = statistics.median(times["docker"][step]) if times["docker"][step] else None
        rows.append(["up -d --wait" if step == "up" else "down -v", fmt_s(s), fmt_s(d),
                     fmt_ratio(ratio(s, d))])
        result.update({f"{step}_shipslog_s": s, f"{step}_docker_s": d,
                       f"{step}_ratio": ratio(s, d)})
    print(format_table(["step", "shipslog", "docker", "ratio"], rows))
    print(f"{args.services} services (busybox, healthcheck each), median of {args.rounds}; "
          f"Compose v{PINNED}; stop_signal SIGKILL (sleep ignores SIGTERM)")
    if docker_note:
        print(docker_note)
    print(json_line(result))


if __name__ == "__main__":
    main()
