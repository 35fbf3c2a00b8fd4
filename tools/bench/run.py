"""Benchmark container start-up against Docker and Podman, side by side in one run (issue 3).

    python3 -m tools.bench.run            # 20 `run --rm` per engine, 50 parallel containers
    python3 -m tools.bench.run --quick    # 5 `run --rm` per engine; whole run < ~3 minutes

All engines use the same busybox image (tools/build_busybox_image.py, loaded into each) and
`--network none`. Measured:

1. `run --rm busybox true`, N times each, interleaved round-robin after one untimed warm-up,
   median and p90 wall time of the client command: (a) our CLI (`.venv/bin/shipslog` if it
   exists, else `python3 -m engine.cli`) against shipslogd; (b) the `docker` CLI against
   shipslogd's socket; (c) `docker` against a private dockerd; (d) `podman --runtime runc`;
   (e) `runc run` of a prepared bundle, alone: the floor.
2. 50 `run -d busybox sleep 600` started in parallel (one client process each): wall time
   until the last client returned (each returns once its container runs; `ps -q` then checks
   all 50 run), and one `rm -f` of all 50, timed.
3. Memory with /proc/PID/status VmRSS (and Pss from smaps_rollup, which splits shared pages):
   the daemon idle and with the 50 running (dockerd+containerd for Docker; Podman has none),
   and the per-container monitor (conmon for shipslog and Podman, containerd-shim for Docker),
   summed over the running containers and divided by their count.
4. CLI start-up (issue 17): `version` and `ps -a`, N interleaved rounds per client after one
   warm-up; the target compares our CLI with the docker CLI against the same shipslogd.
   `--cli-before DIR` adds another copy of the CLI's source (`git archive OLD engine events
   projections | tar -x -C DIR`) against the same daemon, in 1 and 4: before and after a
   change, in one run. `--daemon-before DIR` instead runs a second shipslogd from that
   source, driven by our CLI: a daemon change before and after, in 1 and 4.

Prints progress on stderr, a readable table on stdout, and as the LAST stdout line one JSON
object (null for whatever could not be measured here; the table says why).

I/O: builds the image tar and starts shipslogd (engine.testing.daemon.DaemonProcess), dockerd
(with its containerd) and podman, each on a temp dir under /tmp/engine-bench-*; runs their
CLIs and runc; reads /proc. On exit — normal, failure, Ctrl-C or SIGTERM — it removes every
container, stops the daemons it started (by pid), unmounts and deletes its temp dirs, and
removes host paths (/run/docker, cgroup parents, …) only if it created them and they are empty.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from tools.bench.common import (
    REPO,
    CommandFailed,
    Dockerd,
    HostTraces,
    Podman,
    RuncBundle,
    Unavailable,
    build_busybox_tar,
    cgroup_paths,
    find_pids,
    fmt_mb,
    fmt_ratio,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    make_workdir,
    median,
    p90,
    pss_kb,
    ratio,
    remove_tree,
    run,
    run_parallel,
    shield_cleanup,
    sum_mb,
    timed,
)

IMAGE = "busybox"


@dataclass
class Engine:
    """One client/daemon pair as the benchmark drives it."""

    key: str
    label: str
    prefix: list[str]
    env: dict[str, str]
    run_opts: list[str] = field(default_factory=list)
    rm_opts: list[str] = field(default_factory=list)
    daemon_pids: Callable[[], list[int]] = list
    monitor_pids: Callable[[], list[int]] = list
    error: str | None = None
    samples: list[float] = field(default_factory=list)

    def run_rm(self) -> list[str]:
        return [*self.prefix, "run", "--rm", "--network", "none", *self.run_opts, IMAGE, "true"]

    def run_d(self, name: str) -> list[str]:
        return [*self.prefix, "run", "-d", "--name", name, "--network", "none", *self.run_opts,
                IMAGE, "sleep", "600"]

    def rm(self, refs: list[str]) -> list[str]:
        return [*self.prefix, "rm", "-f", *self.rm_opts, *refs]

    def ps_q(self, all_: bool = False) -> list[str]:
        return [*self.prefix, "ps", "-q", *(["-a"] if all_ else [])]


@dataclass
class Parallel:
    start_s: float | None = None
    rm_s: float | None = None
    running: int | None = None
    daemon_idle_mb: float | None = None
    daemon_busy_mb: float | None = None
    monitors: int = 0
    monitor_rss_mb: float | None = None
    monitor_pss_mb: float | None = None
    error: str | None = None


def shipslog_cli() -> list[str]:
    venv = REPO / ".venv" / "bin" / "shipslog"
    if venv.exists():
        return [str(venv)]
    return [sys.executable, "-m", "engine.cli"]


# ---------------------------------------------------------------------------------------------
# setup


def setup_shipslog(work: Path, image: Path, stack: ExitStack,
                   wrap: Sequence[str] = (), name: str = "shipslog") -> tuple[Engine, Engine]:
    """`wrap`: a command prefix for the daemon (nsenter --net=…: a namespace of the bench's;
    `env -C DIR PYTHONPATH=DIR`: a daemon from another source tree)."""
    from engine.testing.daemon import DaemonProcess

    base = work / name
    base.mkdir()
    d = DaemonProcess(base)
    d.wrap = list(wrap)
    stack.callback(d.cleanup)
    env = dict(d.cli_env(), PYTHONPATH=str(REPO))
    env.pop("DOCKER_CONTEXT", None)
    # an installed CLI has its bytecode compiled; give ours a cache (in our work dir, so the
    # repo is untouched) even where PYTHONDONTWRITEBYTECODE is set, as it is on these machines
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    marker = str(d.exec_root) + "/"

    def daemon_pids() -> list[int]:
        return [d.proc.pid] if d.proc is not None and d.proc.poll() is None else []

    def monitor_pids() -> list[int]:
        return find_pids(lambda c, line: c == "conmon" and marker in line)

    ours = Engine("shipslog", "shipslog (CLI)", shipslog_cli(), env,
                  daemon_pids=daemon_pids, monitor_pids=monitor_pids)
    via_docker = Engine("shipslog_docker_cli", "shipslog (docker CLI)", ["docker"], env,
                        daemon_pids=daemon_pids, monitor_pids=monitor_pids)
    try:
        d.start(timeout=60)
    except RuntimeError as e:
        raise Unavailable(f"shipslogd did not start: {str(e)[-300:]}") from None
    run([*ours.prefix, "load", "-i", str(image)], env=env, timeout=300)
    return ours, via_docker


def before_cli(work: Path, source: Path, ours: Engine) -> Engine:
    """Our CLI from another source tree (`--cli-before`), started as the installed script
    starts (no `-m`, whose runpy costs a few ms), against the same daemon as `ours`."""
    script = work / "shipslog-before"
    script.write_text("import sys\nfrom engine.cli.main import main\nsys.exit(main())\n")
    env = dict(ours.env, PYTHONPATH=str(source.resolve()),
               PYTHONPYCACHEPREFIX=str(work / "pycache-before"))
    python = REPO / ".venv" / "bin" / "python"
    return Engine("shipslog_before", "shipslog (CLI before)",
                  [str(python if python.exists() else sys.executable), str(script)], env)


def before_daemon(work: Path, image: Path, stack: ExitStack, source: Path) -> Engine:
    """Our CLI against a second shipslogd run from another source tree (`--daemon-before`):
    `env -C` makes that tree the daemon's working dir, which `-m` puts first on sys.path."""
    tree = str(source.resolve())
    ours, _ = setup_shipslog(work, image, stack, wrap=["env", "-C", tree, f"PYTHONPATH={tree}"],
                             name="shipslog-before")
    return replace(ours, key="shipslog_before", label="shipslog (daemon before)")


def setup_docker(work: Path, image: Path, stack: ExitStack) -> Engine:
    d = Dockerd(work / "docker")
    stack.callback(d.stop)
    d.start()
    run(["docker", "load", "-i", str(image)], env=d.env, timeout=300)
    return Engine("docker", "docker (dockerd)", ["docker"], d.env,
                  daemon_pids=d.daemon_pids, monitor_pids=d.monitor_pids)


def setup_podman(work: Path, image: Path, stack: ExitStack) -> Engine:
    p = Podman(work / "podman")
    stack.callback(p.cleanup)
    p.setup()
    p.load(image)
    return Engine("podman", "podman (runc)", p.prefix, p.env, run_opts=list(p.run_opts),
                  rm_opts=["-t", "0"], monitor_pids=p.monitor_pids)


def setup_floor(work: Path, image: Path, stack: ExitStack) -> RuncBundle:
    b = RuncBundle(work / "runc")
    stack.callback(b.cleanup)
    b.prepare(image)
    return b


def try_setup(what: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
    log(f"setting up {what}")
    try:
        return fn(), None
    except (Unavailable, CommandFailed, OSError) as e:
        log(f"{what} unavailable: {e}")
        return None, str(e)


# ---------------------------------------------------------------------------------------------
# measurements


def measure_run_rm(engines: list[Engine], floor: RuncBundle | None, n: int,
                   floor_samples: list[float], floor_err: list[str]) -> None:
    """Warm up once, then N rounds; each round runs every engine once (interleaved so drift in
    the machine's load hits all engines alike)."""
    for e in engines:
        try:
            timed(e.run_rm(), env=e.env, timeout=120)
        except CommandFailed as err:
            e.error = f"warm-up failed: {err}"
            log(f"{e.label}: {e.error}")
    for i in range(n):
        for e in engines:
            if e.error:
                continue
            try:
                e.samples.append(timed(e.run_rm(), env=e.env, timeout=120)[0])
            except CommandFailed as err:
                e.error = f"run {i + 1} failed: {err}"
                e.samples.clear()
                log(f"{e.label}: {e.error}")
        if floor is not None and not floor_err:
            try:
                floor_samples.append(timed(floor.argv(i), timeout=60)[0])
            except CommandFailed as err:
                floor_err.append(str(err))
                floor_samples.clear()
        log(f"run --rm round {i + 1}/{n}: " + ", ".join(
            f"{e.key}={fmt_s(e.samples[-1])}" for e in engines if e.samples and not e.error))


def measure_parallel(e: Engine, count: int, *, memory: bool) -> Parallel:
    res = Parallel()
    if memory:
        res.daemon_idle_mb = sum_mb(e.daemon_pids())
    names = [f"bench-{e.key.replace('_', '-')}-{i}" for i in range(count)]
    log(f"{e.label}: starting {count} containers in parallel")
    try:
        pr = run_parallel([e.run_d(n) for n in names], env=e.env, timeout=600)
        if pr.errors:
            res.error = f"{len(pr.errors)} of {count} failed: {pr.errors[0]}"
        else:
            res.start_s = pr.wall_s
        res.running = len(run(e.ps_q(), env=e.env, timeout=120).stdout.split())
        if res.error is None and res.running < count:
            res.error = f"only {res.running} of {count} running after start"
            res.start_s = None
        if memory:
            res.daemon_busy_mb = sum_mb(e.daemon_pids())
            mons = e.monitor_pids()
            res.monitors = len(mons)
            if mons:
                rss, pss = sum_mb(mons), sum_mb(mons, pss_kb)
                res.monitor_rss_mb = rss / len(mons) if rss is not None else None
                res.monitor_pss_mb = pss / len(mons) if pss is not None else None
        log(f"{e.label}: {count} started in {fmt_s(pr.wall_s)}; removing")
        refs = run(e.ps_q(all_=True), env=e.env, timeout=120).stdout.split()
        if refs:
            t, _ = timed(e.rm(refs), env=e.env, timeout=600)
            if len(refs) == count:
                res.rm_s = t
    except CommandFailed as err:
        res.error = res.error or str(err)
    finally:
        try:  # whatever is left (a failed start, an interrupted rm): remove, untimed
            left = run(e.ps_q(all_=True), env=e.env, timeout=120).stdout.split()
            if left:
                run(e.rm(left), env=e.env, timeout=600)
        except CommandFailed as err:
            log(f"{e.label}: cleanup rm failed: {err}")
    if res.error:
        log(f"{e.label}: {res.error}")
    return res


CLI_COMMANDS = (("version", ["version"]), ("ps", ["ps", "-a"]))


def measure_cli(engines: list[Engine], n: int) -> dict[str, dict[str, list[float]]]:
    """`version` and `ps -a` (issue 17: what every command pays before and after it talks to
    its daemon): n rounds interleaved over the engines after one warm-up, as for run --rm.
    The pair to compare is our CLI and the docker CLI against the same shipslogd."""
    out: dict[str, dict[str, list[float]]] = {}
    for verb, argv in CLI_COMMANDS:
        res: dict[str, list[float]] = {e.key: [] for e in engines if not e.error}
        for i in range(n + 1):
            for e in engines:
                if e.key not in res:
                    continue
                try:
                    t, _ = timed([*e.prefix, *argv], env=e.env, timeout=60)
                except CommandFailed as err:
                    log(f"{e.key} {verb}: {err}")
                    res.pop(e.key)
                    continue
                if i:
                    res[e.key].append(t)
        out[verb] = res
    return out


def report_cli(cli: dict[str, dict[str, list[float]]], n: int) -> dict[str, Any]:
    """The CLI table (median, min; ratio of ours to the docker CLI on the same daemon)."""
    rows = []
    result: dict[str, Any] = {}
    for verb, res in cli.items():
        meds = {k: median(v) for k, v in res.items()}
        for key in ("shipslog", "shipslog_before", "shipslog_docker_cli", "docker", "podman"):
            if key == "shipslog_before" and key not in res:
                continue
            xs = res.get(key, [])
            rows.append([f"{verb}", key, fmt_s(meds.get(key)), fmt_s(min(xs) if xs else None)])
        ours = meds.get("shipslog")
        result[verb] = {"median_s": meds,
                        "shipslog_vs_docker_cli_same_daemon":
                            ratio(ours, meds.get("shipslog_docker_cli")),
                        "shipslog_vs_docker": ratio(ours, meds.get("docker")),
                        "shipslog_vs_podman": ratio(ours, meds.get("podman"))}
        rows.append([verb, "ratio: shipslog / docker CLI, same daemon",
                     fmt_ratio(result[verb]["shipslog_vs_docker_cli_same_daemon"]), ""])
        if "shipslog_before" in meds:
            result[verb]["before_vs_docker_cli_same_daemon"] = ratio(
                meds["shipslog_before"], meds.get("shipslog_docker_cli"))
            rows.append([verb, "ratio: shipslog before / docker CLI, same daemon",
                         fmt_ratio(result[verb]["before_vs_docker_cli_same_daemon"]), ""])
    print("\n".join(["", f"CLI start-up: {n} runs each, interleaved, after 1 warm-up",
                     format_table(["command", "client (daemon)", "median", "min"], rows)]),
          flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# report


def report(engines: dict[str, Engine], unavailable: dict[str, str], floor_samples: list[float],
           floor_err: str | None, par: dict[str, Parallel], n: int, count: int) -> dict[str, Any]:
    def why(key: str) -> str | None:
        if key in unavailable:
            return unavailable[key]
        e = engines.get(key)
        return e.error if e is not None else "not run"

    def med(key: str) -> float | None:
        e = engines.get(key)
        return median(e.samples) if e is not None and not e.error else None

    floor_med = median(floor_samples) if not floor_err else None
    notes: list[str] = []
    rows = []
    for key, label in (("shipslog", "shipslog (CLI)"),
                       ("shipslog_before", "shipslog (CLI before)"),
                       ("shipslog_docker_cli", "shipslog (docker CLI)"),
                       ("docker", "docker (dockerd)"), ("podman", "podman (runc)")):
        e = engines.get(key)
        if key == "shipslog_before" and e is None:
            continue
        if e is None or e.error:
            rows.append([label, DASH_ROW, DASH_ROW, DASH_ROW, "unavailable"])
            notes.append(f"{label}: {why(key)}")
            continue
        rows.append([e.label, fmt_s(median(e.samples)), fmt_s(p90(e.samples)),
                     fmt_s(min(e.samples)), fmt_ratio(ratio(median(e.samples), floor_med))])
    if floor_err is None:
        rows.append(["runc run (floor)", fmt_s(floor_med), fmt_s(p90(floor_samples)),
                     fmt_s(min(floor_samples) if floor_samples else None), "1.00x"])
    else:
        rows.append(["runc run (floor)", DASH_ROW, DASH_ROW, DASH_ROW, "unavailable"])
        notes.append(f"runc floor: {floor_err}")

    out = [f"run --rm --network none busybox true — {n} runs each, interleaved, after 1 warm-up",
           format_table(["engine", "median", "p90", "min", "vs runc"], rows), ""]

    prow = []
    for key, label in (("shipslog", "shipslog (CLI)"),
                       ("shipslog_docker_cli", "shipslog (docker CLI)"),
                       ("docker", "docker (dockerd)"), ("podman", "podman (runc)")):
        p = par.get(key)
        if p is None:
            prow.append([label, DASH_ROW, DASH_ROW, DASH_ROW])
            continue
        prow.append([label, fmt_s(p.start_s), fmt_s(p.rm_s),
                     DASH_ROW if p.running is None else f"{p.running}/{count}"])
        if p.error:
            notes.append(f"{label} parallel: {p.error}")
    out += [f"{count} x `run -d busybox sleep 600` in parallel; then one `rm -f` of all",
            format_table(["engine", "start all", "rm -f all", "running"], prow), ""]

    mrow = []
    for key, label, daemon, monitor in (
            ("shipslog", "shipslog", "shipslogd", "conmon"),
            ("docker", "docker", "dockerd+containerd", "containerd-shim"),
            ("podman", "podman", "(no daemon)", "conmon")):
        p = par.get(key)
        if p is None:
            mrow.append([label, daemon, DASH_ROW, DASH_ROW, monitor, DASH_ROW, DASH_ROW])
            continue
        mrow.append([label, daemon, fmt_mb(p.daemon_idle_mb), fmt_mb(p.daemon_busy_mb),
                     f"{monitor} x{p.monitors}", fmt_mb(p.monitor_rss_mb),
                     fmt_mb(p.monitor_pss_mb)])
    out += ["memory (VmRSS; Pss splits shared pages among the processes that map them)",
            format_table(["engine", "daemon", "idle RSS", f"RSS, {count} up", "monitor",
                          "RSS/ctr", "Pss/ctr"], mrow), ""]

    def pv(key: str, attr: str) -> float | None:
        p = par.get(key)
        return getattr(p, attr) if p is not None else None

    s_med, d_med, p_med = med("shipslog"), med("docker"), med("podman")
    v_med = med("shipslog_docker_cli")
    rrow = [
        ["run --rm median", fmt_ratio(ratio(s_med, d_med)), fmt_ratio(ratio(s_med, p_med))],
        ["run --rm median, both via docker CLI", fmt_ratio(ratio(v_med, d_med)), DASH_ROW],
        *([["run --rm median, before", fmt_ratio(ratio(med("shipslog_before"), d_med)),
            fmt_ratio(ratio(med("shipslog_before"), p_med))]]
          if "shipslog_before" in engines else []),
        [f"{count} parallel run -d", fmt_ratio(ratio(pv("shipslog", "start_s"),
                                                     pv("docker", "start_s"))),
         fmt_ratio(ratio(pv("shipslog", "start_s"), pv("podman", "start_s")))],
        [f"{count} parallel run -d, both via docker CLI",
         fmt_ratio(ratio(pv("shipslog_docker_cli", "start_s"), pv("docker", "start_s"))),
         DASH_ROW],
        [f"rm -f {count}", fmt_ratio(ratio(pv("shipslog", "rm_s"), pv("docker", "rm_s"))),
         fmt_ratio(ratio(pv("shipslog", "rm_s"), pv("podman", "rm_s")))],
        ["monitor RSS per container",
         fmt_ratio(ratio(pv("shipslog", "monitor_rss_mb"), pv("docker", "monitor_rss_mb"))),
         fmt_ratio(ratio(pv("shipslog", "monitor_rss_mb"), pv("podman", "monitor_rss_mb")))],
        ["daemon RSS idle", fmt_ratio(ratio(pv("shipslog", "daemon_idle_mb"),
                                            pv("docker", "daemon_idle_mb"))), DASH_ROW],
    ]
    out += ["ratios shipslog / other (above 1.00x: shipslog is slower or bigger)",
            format_table(["metric", "shipslog/docker", "shipslog/podman"], rrow)]
    if notes:
        out += ["", "not measured:"] + [f"  {x}" for x in notes]
    print("\n".join(out), flush=True)

    return {
        "runs": n,
        "parallel": count,
        "shipslog_run_rm_median_s": s_med,
        "shipslog_run_rm_p90_s": _p90(engines.get("shipslog")),
        "shipslog_docker_cli_run_rm_median_s": v_med,
        "shipslog_before_run_rm_median_s": med("shipslog_before"),
        "docker_run_rm_median_s": d_med,
        "docker_run_rm_p90_s": _p90(engines.get("docker")),
        "podman_run_rm_median_s": p_med,
        "podman_run_rm_p90_s": _p90(engines.get("podman")),
        "runc_floor_median_s": floor_med,
        "shipslog_50_parallel_s": pv("shipslog", "start_s"),
        "shipslog_docker_cli_50_parallel_s": pv("shipslog_docker_cli", "start_s"),
        "docker_50_parallel_s": pv("docker", "start_s"),
        "podman_50_parallel_s": pv("podman", "start_s"),
        "shipslog_50_rm_s": pv("shipslog", "rm_s"),
        "docker_50_rm_s": pv("docker", "rm_s"),
        "podman_50_rm_s": pv("podman", "rm_s"),
        "daemon_rss_mb": pv("shipslog", "daemon_idle_mb"),
        "daemon_rss_50_mb": pv("shipslog", "daemon_busy_mb"),
        "docker_daemon_rss_mb": pv("docker", "daemon_idle_mb"),
        "docker_daemon_rss_50_mb": pv("docker", "daemon_busy_mb"),
        "monitor_rss_mb_per_container": pv("shipslog", "monitor_rss_mb"),
        "monitor_pss_mb_per_container": pv("shipslog", "monitor_pss_mb"),
        "docker_monitor_rss_mb_per_container": pv("docker", "monitor_rss_mb"),
        "podman_monitor_rss_mb_per_container": pv("podman", "monitor_rss_mb"),
        "unavailable": {k: v for k, v in (
            (k, why(k)) for k in ("shipslog", "shipslog_docker_cli", "docker", "podman"))
            if v} | ({"runc_floor": floor_err} if floor_err else {}),
    }


DASH_ROW = "-"


def _p90(e: Engine | None) -> float | None:
    return p90(e.samples) if e is not None and not e.error else None


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.run", description=__doc__.split(
        "\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="5 runs per engine (default 20); whole run under ~3 minutes")
    p.add_argument("-n", "--runs", type=int, default=None, help="`run --rm` samples per engine")
    p.add_argument("--parallel", type=int, default=50, help="containers started at once")
    p.add_argument("--image", type=Path, default=None,
                   help="a busybox image tar to use (default: build one)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["docker", "podman", "floor", "shipslog_docker_cli"],
                   help="leave an engine out (repeatable)")
    before = p.add_mutually_exclusive_group()
    before.add_argument("--cli-before", type=Path, default=None, metavar="DIR",
                        help="another copy of the CLI's source (engine/, events/, "
                             "projections/) timed beside ours against the same daemon: "
                             "before and after")
    before.add_argument("--daemon-before", type=Path, default=None, metavar="DIR",
                        help="a second shipslogd from another copy of the source, driven "
                             "by our CLI: the daemon before and after")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.runs or (5 if args.quick else 20)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, mounts, namespaces)", file=sys.stderr)
        return 2
    interrupts_unwind()
    engines: dict[str, Engine] = {}
    unavailable: dict[str, str] = {}
    floor_samples: list[float] = []
    floor_err: list[str] = []
    par: dict[str, Parallel] = {}
    cli: dict[str, dict[str, list[float]]] = {}
    result: dict[str, Any] | None = None
    with ExitStack() as stack:
        work = make_workdir()
        stack.callback(remove_tree, work)
        traces = HostTraces([*Dockerd.host_traces(), *Podman.host_traces(),
                             *cgroup_paths("shipslog")])
        stack.callback(lambda: log("removed host paths we created: "
                                   + (", ".join(traces.restore()) or "none")))
        log(f"work dir {work}")
        try:
            image = args.image or build_busybox_tar(work / "busybox.tar")
            pair, err = try_setup("shipslogd", lambda: setup_shipslog(work, image, stack))
            if pair is not None:
                engines["shipslog"], engines["shipslog_docker_cli"] = pair
                if "shipslog_docker_cli" in args.skip:
                    engines.pop("shipslog_docker_cli")
                    unavailable["shipslog_docker_cli"] = "skipped (--skip)"
                if args.cli_before is not None:
                    engines["shipslog_before"] = before_cli(work, args.cli_before, pair[0])
                if args.daemon_before is not None:
                    engines["shipslog_before"] = before_daemon(work, image, stack,
                                                               args.daemon_before)
            else:
                unavailable["shipslog"] = unavailable["shipslog_docker_cli"] = str(err)
            setups: dict[str, Callable[[Path, Path, ExitStack], Engine]] = {
                "docker": setup_docker, "podman": setup_podman}
            for key, setup in setups.items():
                if key in args.skip:
                    unavailable[key] = "skipped (--skip)"
                    continue
                eng, err = try_setup(key, partial(setup, work, image, stack))
                if eng is not None:
                    engines[key] = eng
                else:
                    unavailable[key] = str(err)
            floor = None
            if "floor" in args.skip:
                floor_err.append("skipped (--skip)")
            else:
                floor, err = try_setup("runc bundle", lambda: setup_floor(work, image, stack))
                if err:
                    floor_err.append(err)

            order = [engines[k] for k in ("shipslog", "shipslog_before", "shipslog_docker_cli",
                                          "docker", "podman") if k in engines]
            log(f"run --rm: {n} rounds over {', '.join(e.key for e in order)}"
                + (", runc" if floor is not None else ""))
            measure_run_rm(order, floor, n, floor_samples, floor_err)
            log(f"CLI start-up: {n} rounds of version and ps -a")
            cli = measure_cli(order, n)

            for key in ("shipslog", "shipslog_docker_cli", "docker", "podman"):
                e = engines.get(key)
                if e is None or e.error:
                    continue
                par[key] = measure_parallel(e, args.parallel,
                                            memory=key != "shipslog_docker_cli")
        except KeyboardInterrupt:
            log("interrupted")
            raise
        finally:
            shield_cleanup()
            result = report(engines, unavailable, floor_samples,
                            floor_err[0] if floor_err else None, par, n, args.parallel)
            result["cli"] = report_cli(cli, n)
            log("cleaning up")
    # after cleanup, so the JSON object really is the last line
    print(json_line(result), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
