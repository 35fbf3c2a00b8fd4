"""Benchmark: how long shipslogd takes to stop on SIGTERM with sessions open (issue 15,
item 8: 11.6 s with 5 exec sessions, and their events came after `DaemonStopped`).

I/O: starts a shipslogd (`engine.testing.daemon.DaemonProcess`) on its own root under
/tmp/shipslog-tests/ (removed at the end), loads the busybox image, runs one container, and
opens connections to the daemon's unix socket from this process; reads the event log after
each stop. Prints a table, and as its LAST line one JSON object.

    python3 -m tools.bench.shutdown               # 5 rounds of each case
    python3 -m tools.bench.shutdown --rounds 2 --slow 500

Cases, each measured from SIGTERM to the daemon's exit (the daemon is started again for the
next round; the container keeps running in between):
- `idle`: no connection open;
- `sessions`: 5 attached `exec sleep 100` sessions and an `events` follower;
- `sessions+slow`: the same plus `--slow` connections trickling request heads.
Each round also checks that `DaemonStopped` is the last event of the run that stopped.
Docker is not compared: dockerd stops its containers on SIGTERM (no live-restore here),
which is another job than ours (containers keep running under their monitors).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from engine.cli.client import Client
from engine.testing.daemon import DaemonProcess
from events.store import EventStore
from tools.bench.common import (
    build_busybox_tar,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    shield_cleanup,
)

BUSYBOX = Path("/tmp/shipslog-tests/busybox.tar")
SESSIONS = 5


def open_sessions(d: DaemonProcess, cid: str) -> list[socket.socket]:
    c = d.client()
    socks = []
    for _ in range(SESSIONS):
        exec_id = c.post_json(f"/containers/{cid}/exec", body={
            "Cmd": ["sleep", "100"], "AttachStdout": True, "AttachStderr": True})["Id"]
        socks.append(c.hijack("POST", f"/exec/{exec_id}/start", body={"Detach": False}))
    follower = socket.socket(socket.AF_UNIX)
    follower.connect(d.sock)
    follower.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    socks.append(follower)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until runc runs all of them
        execs = c.get_json(f"/containers/{cid}/json").get("ExecIDs") or []
        if sum(c.get_json(f"/exec/{x}/json")["Running"] for x in execs) >= SESSIONS:
            break
        time.sleep(0.05)
    return socks


def open_slow(d: DaemonProcess, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        socks.append(s)
    return socks


def last_event_of_run(root: Path) -> str:
    store: EventStore[Any] = EventStore.open(root / "events.db", readonly=True)
    try:
        types = [env.type for env in store.read()]
    finally:
        store.close()
    return types[-1]


def one_stop(d: DaemonProcess) -> float:
    assert d.proc is not None
    t0 = time.perf_counter()
    d.proc.terminate()  # our own daemon, by its pid
    d.proc.wait(120)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.shutdown")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--slow", type=int, default=500, help="slow connections in the last case")
    args = p.parse_args(argv)
    interrupts_unwind()
    if not BUSYBOX.exists():
        BUSYBOX.parent.mkdir(parents=True, exist_ok=True)
        build_busybox_tar(BUSYBOX)
    d = DaemonProcess.make()
    times: dict[str, list[float]] = {"idle": [], "sessions": [], "sessions+slow": []}
    last_ok: dict[str, int] = dict.fromkeys(times, 0)
    try:
        d.start()
        with open(BUSYBOX, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        c = Client(d.host, timeout=60)
        cid = c.post_json("/containers/create", {"name": "bench-shutdown"},
                          {"Image": "busybox", "Cmd": ["sleep", "3600"]})["Id"]
        c.post_json(f"/containers/{cid}/start")
        for r in range(args.rounds):
            for case in times:
                log(f"round {r + 1}/{args.rounds}: {case}")
                socks = open_sessions(d, cid) if case != "idle" else []
                if case == "sessions+slow":
                    socks += open_slow(d, args.slow)
                try:
                    times[case].append(one_stop(d))
                finally:
                    for s in socks:
                        s.close()
                last_ok[case] += last_event_of_run(d.root) == "DaemonStopped"
                d.start()
    finally:
        shield_cleanup()
        d.cleanup()
    rows = [[case, fmt_s(statistics.median(ts)), fmt_s(max(ts)), str(len(ts)),
             f"{last_ok[case]}/{len(ts)}"] for case, ts in times.items() if ts]
    print(format_table(["case", "median", "max", "rounds", "DaemonStopped last"], rows))
    print(f"sessions: {SESSIONS} attached exec + 1 events follower; slow: {args.slow} "
          "connections trickling heads")
    print(json_line({"bench": "shutdown", "rounds": args.rounds, "slow": args.slow, **{
        f"{case.replace('+', '_')}_{k}": v for case, ts in times.items() if ts
        for k, v in (("median_s", statistics.median(ts)), ("max_s", max(ts)),
                     ("daemon_stopped_last", last_ok[case]))}}))


if __name__ == "__main__":
    main()
