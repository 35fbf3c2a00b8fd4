"""Benchmark: how a normal client fares while 1,000 slow clients hold connections to the
daemon (issue 15, item 4): shipslogd against a private dockerd, in one run.

I/O: starts a shipslogd (`engine.testing.daemon.DaemonProcess`) and a private dockerd
(`tools.bench.common.Dockerd`) on their own roots and sockets under /tmp/engine-bench-XXXX/
(removed at the end); opens unix-socket connections to them from this process only. Prints a
table, and as its LAST line one JSON object.

    python3 -m tools.bench.slowclients                 # 1,000 slow clients, 20 s per engine
    python3 -m tools.bench.slowclients --quick         # 10 s per engine
    python3 -m tools.bench.slowclients --clients 600 --every 15 --skip docker

The slow clients, slow-loris style: half send a request head (`GET /_ping … X-Slow: `) and
then one more byte every `--every` seconds; half send a whole head announcing a 100,000-byte
JSON body for `POST /containers/create` and then one byte of it every `--every` seconds. A
slow client the server closes reconnects `--reconnect` seconds later (so the pressure stays
near `--clients`; 0 makes it a reconnect storm).
Meanwhile one normal client, in its own thread, alternates `GET /_ping` and
`GET /containers/json` on a fresh connection each (as the CLI does) for `--duration`
seconds: p50/p99 of each, and how many failed (a 503, another status, or no answer within
5 s). First the same client runs alone for the idle baseline.

The server-side fds: 1,000 client fds here plus as many in each daemon must fit `ulimit -n`
(checked at start; the count is lowered to what fits, and the table says so).
"""

from __future__ import annotations

import argparse
import resource
import socket
import threading
import time
from dataclasses import dataclass, field

import trio

from engine.testing.daemon import DaemonProcess
from tools.bench.common import (
    Dockerd,
    HostTraces,
    Unavailable,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    make_workdir,
    percentile,
    remove_tree,
    shield_cleanup,
)

HEAD = b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
BODY = (b"POST /containers/create HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
REQUEST_TIMEOUT_S = 5.0
PATHS = ("/_ping", "/containers/json")


# ---------------------------------------------------------------------------------------------
# the normal client


@dataclass
class Samples:
    ok: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PATHS})
    failed: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PATHS})


def one_request(sock_path: str, path: str) -> tuple[float, int]:
    """(seconds, status) of one request on a fresh connection, read to the server's close."""
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(REQUEST_TIMEOUT_S)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    took = time.perf_counter() - t0
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    return took, status


def measure(sock_path: str, seconds: float, stop: threading.Event | None = None) -> Samples:
    out = Samples()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        path = PATHS[i % 2]
        i += 1
        try:
            took, status = one_request(sock_path, path)
        except OSError as exc:
            out.failed[path].append(type(exc).__name__)
            continue
        if status == 200:
            out.ok[path].append(took)
        else:
            out.failed[path].append(str(status))
    return out


# ---------------------------------------------------------------------------------------------
# the slow clients


@dataclass
class Pressure:
    connects: int = 0
    closed_by_server: int = 0
    refused: int = 0  # connect() failed (backlog full, or the server refused)


async def slow_client(sock_path: str, prefix: bytes, every: float, reconnect: float,
                      pressure: Pressure) -> None:
    while True:
        with trio.socket.socket(socket.AF_UNIX) as s:
            try:
                await s.connect(sock_path)
            except OSError:
                pressure.refused += 1
                await trio.sleep(0.05)
                continue
            pressure.connects += 1
            await _trickle(s, prefix, every)
            pressure.closed_by_server += 1
        await trio.sleep(reconnect)


async def _trickle(s: trio.socket.SocketType, prefix: bytes, every: float) -> None:
    """Send `prefix`, then a byte every `every` seconds, until the server closes."""
    try:
        await s.send(prefix)
        while True:
            with trio.move_on_after(every):
                if not await s.recv(4096):
                    return  # closed by the server (shed, or its deadline)
                continue  # a 408/503 answer: read on until the close
            await s.send(b"a")
    except OSError:
        return  # reset or broken pipe: closed by the server too


async def under_pressure(sock_path: str, clients: int, every: float, reconnect: float,
                         settle: float, duration: float) -> tuple[Samples, Pressure]:
    pressure = Pressure()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(slow_client, sock_path, HEAD if i % 2 == 0 else BODY, every,
                               reconnect, pressure)
            if i % 50 == 49:
                await trio.sleep(0)
        await trio.sleep(settle)
        samples = await trio.to_thread.run_sync(measure, sock_path, duration)
        nursery.cancel_scope.cancel()
    return samples, pressure


# ---------------------------------------------------------------------------------------------
# the run


def fitting_clients(wanted: int) -> tuple[int, str]:
    """1,000 client fds here + as many in the daemon must fit the fd limit; raise the soft
    limit to the hard one, and lower the count if even that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    room = hard - 200  # the daemons' own files, this process's, the normal client's
    if wanted <= room:
        return wanted, f"ulimit -n {hard}: {wanted} clients fit"
    return room, f"ulimit -n {hard}: only {room} of {wanted} clients fit"


def run_engine(name: str, sock_path: str, args: argparse.Namespace) -> dict[str, object]:
    log(f"{name}: idle baseline for {args.idle:.0f} s")
    idle = measure(sock_path, args.idle)
    log(f"{name}: {args.clients} slow clients, then {args.duration:.0f} s of measurement")
    loaded, pressure = trio.run(under_pressure, sock_path, args.clients, args.every,
                                args.reconnect, args.settle, args.duration)
    result: dict[str, object] = {"connects": pressure.connects,
                                 "closed_by_server": pressure.closed_by_server,
                                 "connect_errors": pressure.refused}
    for phase, samples in (("idle", idle), ("slow", loaded)):
        for path in PATHS:
            key = f"{phase}_{path.strip('/').replace('/', '_')}"
            ok = samples.ok[path]
            result[key + "_p50"] = percentile(ok, 50)
            result[key + "_p99"] = percentile(ok, 99)
            result[key + "_n"] = len(ok)
            result[key + "_failed"] = len(samples.failed[path])
            if samples.failed[path]:
                result[key + "_failures"] = sorted(set(samples.failed[path]))
    return result


def table(results: dict[str, dict[str, object]]) -> str:
    rows = []
    for engine, r in results.items():
        if "error" in r:
            rows.append([engine, *(["-"] * 6), str(r["error"])[:60]])
            continue
        for phase in ("idle", "slow"):
            for path in PATHS:
                key = f"{phase}_{path.strip('/').replace('/', '_')}"
                rows.append([engine, phase, path, fmt_s(r[key + "_p50"]),  # type: ignore[arg-type]
                             fmt_s(r[key + "_p99"]), str(r[key + "_n"]),  # type: ignore[arg-type]
                             str(r[key + "_failed"]),
                             f"{r['connects']} connects, {r['closed_by_server']} closed"
                             if phase == "slow" else ""])
    return format_table(["engine", "phase", "request", "p50", "p99", "ok", "failed",
                         "slow clients"], rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.slowclients")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--every", type=float, default=5.0,
                   help="seconds between a slow client's bytes (default 5)")
    p.add_argument("--reconnect", type=float, default=1.0,
                   help="seconds before a closed slow client reconnects (default 1)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured under load")
    p.add_argument("--idle", type=float, default=3.0, help="seconds of idle baseline")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between starting the slow clients and measuring")
    p.add_argument("--quick", action="store_true", help="10 s under load")
    p.add_argument("--skip", action="append", default=[], choices=["docker", "shipslog"])
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 10.0
    args.clients, fd_note = fitting_clients(args.clients)
    log(fd_note)
    interrupts_unwind()
    work = make_workdir()
    traces = HostTraces(Dockerd.host_traces())
    results: dict[str, dict[str, object]] = {}
    shipslogd = DaemonProcess(work / "shipslog")
    shipslogd.base.mkdir()
    dockerd = Dockerd(work / "docker")
    try:
        if "shipslog" not in args.skip:
            shipslogd.start()
            results["shipslog"] = run_engine("shipslog", shipslogd.sock, args)
            shipslogd.stop()
        if "docker" not in args.skip:
            try:
                dockerd.start()
                results["docker"] = run_engine("docker", dockerd.sock, args)
            except Unavailable as exc:
                results["docker"] = {"error": str(exc)}
    finally:
        shield_cleanup()
        shipslogd.cleanup()
        dockerd.stop()
        traces.restore()
        remove_tree(work)
    print(table(results))
    print(f"{args.clients} slow clients (half heads, half bodies, a byte every "
          f"{args.every:g} s, reconnecting {args.reconnect:g} s after a close); {fd_note}")
    print(json_line({"bench": "slowclients", "clients": args.clients, "every_s": args.every,
                     "reconnect_s": args.reconnect,
                     "duration_s": args.duration, **{
                         f"{engine}_{k}": v for engine, r in results.items()
                         for k, v in r.items()}}))


if __name__ == "__main__":
    main()
