"""Streaming through the daemon: 1 GiB through `exec` and through `attach`, with the daemon's
peak RSS over idle and the throughput (issue 13: 100 MB of exec output used to take the daemon
from 82 to 273 MB; the target is a peak within 30 MB of idle whatever the volume).

I/O: starts a private shipslogd (engine.testing.daemon, its own state under /tmp), loads the
busybox test image, runs containers in it, reads the hijacked streams over the daemon's unix
socket, reads and resets /proc/PID/status peaks (clear_refs); removes all it made.

    python3 -m tools.bench.streams [--mib N]

Prints a table and, as its last stdout line, one JSON object. Not a test: no assertion.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from engine.api.docker.stream import FrameDecoder
from tools.bench.common import build_busybox_tar, fmt_mb, format_table, json_line, log

BUSYBOX_TAR = Path("/tmp/shipslog-tests/busybox.tar")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class Peak:
    """The daemon's peak RSS during a block: the kernel's high-water mark, reset first (writing
    5 to clear_refs), and sampled as well in case the reset is not supported."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0
        self._stop = threading.Event()

    def __enter__(self) -> Peak:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass
        self.idle = status_kib(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.sampled = max(self.sampled, status_kib(self.pid, "VmRSS"))

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.sampled, status_kib(self.pid, "VmHWM"))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.idle) / 1024


def read_stdout(sock: Any) -> int:
    decoder = FrameDecoder()
    got = 0
    while data := sock.recv(1 << 20):
        got += sum(len(p) for sid, p in decoder.feed(data) if sid == 1)
    sock.close()
    return got


def through_exec(daemon: Any, mib: int) -> tuple[int, float, Peak]:
    c = daemon.client()
    c.post_json("/containers/create", {"name": "bench-exec"},
                {"Image": "busybox", "Cmd": ["sleep", "100000"]})
    c.post_json("/containers/bench-exec/start")
    x = c.post_json("/containers/bench-exec/exec", None, {
        "AttachStdout": True, "AttachStderr": True,
        "Cmd": ["dd", "if=/dev/zero", "bs=1048576", f"count={mib}"]})
    with Peak(daemon.proc.pid) as peak:
        t0 = time.monotonic()
        sock = c.hijack("POST", f"/exec/{x['Id']}/start", None, {"Detach": False, "Tty": False})
        got = read_stdout(sock)
        elapsed = time.monotonic() - t0
    return got, elapsed, peak


def through_attach(daemon: Any, mib: int) -> tuple[int, float, Peak]:
    c = daemon.client()
    # Small log files: the monitor also writes the whole stream to the container's log.
    c.post_json("/containers/create", {"name": "bench-attach"}, {
        "Image": "busybox", "Cmd": ["dd", "if=/dev/zero", "bs=1048576", f"count={mib}"],
        "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}}}})
    with Peak(daemon.proc.pid) as peak:
        sock = c.hijack("POST", "/containers/bench-attach/attach", {"stream": True,
                                                                     "stdout": True})
        t0 = time.monotonic()
        c.post_json("/containers/bench-attach/start")
        got = read_stdout(sock)
        elapsed = time.monotonic() - t0
    return got, elapsed, peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="MiB per stream (default 1024)")
    args = ap.parse_args(argv)
    from engine.testing.daemon import DaemonProcess

    tar = BUSYBOX_TAR if BUSYBOX_TAR.exists() else build_busybox_tar(BUSYBOX_TAR)
    d = DaemonProcess.make()
    results: dict[str, Any] = {"mib": args.mib}
    rows = []
    try:
        d.start()
        with open(tar, "rb") as f:
            d.client().upload("POST", "/images/load", f)
        for name, fn in (("exec", through_exec), ("attach", through_attach)):
            log(f"streaming {args.mib} MiB through {name}")
            got, elapsed, peak = fn(d, args.mib)
            mbps = got / elapsed / (1 << 20) if elapsed else None
            results[name] = {"bytes": got, "complete": got == args.mib << 20,
                             "seconds": elapsed, "mib_per_s": mbps,
                             "idle_rss_mb": peak.idle / 1024, "peak_rss_mb": peak.peak / 1024,
                             "peak_over_idle_mb": peak.growth_mb}
            rows.append([name, f"{got >> 20} MiB", f"{elapsed:.1f} s",
                         f"{mbps:.0f} MiB/s" if mbps else "-", fmt_mb(peak.idle / 1024),
                         fmt_mb(peak.peak / 1024), fmt_mb(peak.growth_mb)])
    finally:
        d.cleanup()
    print(format_table(["stream", "received", "time", "throughput", "idle RSS", "peak RSS",
                        "peak over idle"], rows))
    print(json_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
