"""Load (RELIABILITY L-01, L-06): 50 concurrent create+start of one image with some names
used twice — exactly one winner per name, the others a 409 "already in use", no "database
is locked", everything else succeeds; and a leak soak of create/start/exec/stop/rm cycles
after which the daemon's fds, trio tasks, RSS (within a stated margin), mounts, cgroups,
links and processes are back to their baseline.

I/O: a real daemon; API calls from threads; reads /proc of the daemon process.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.api.client import ApiError, Client
from engine.testing.daemon import DaemonProcess, cgroups_of, kernel_inventory, mounts_under
from tests.faults.conftest import oracle

pytestmark = pytest.mark.kernel

SLEEPER = {"Image": "busybox", "Cmd": ["sleep", "600"]}


def create_and_start(d: DaemonProcess, name: str) -> tuple[str, str]:
    """("ok", id) or ("error", message)."""
    c = Client(d.host, timeout=120)
    try:
        cid = c.post_json("/containers/create", {"name": name}, SLEEPER)["Id"]
        c.post_json(f"/containers/{cid}/start")
    except ApiError as exc:
        return "error", f"{exc.status} {exc.message}"
    return "ok", cid


def one_winner_per_name(results: list[tuple[str, str, str]], names: list[str], *,
                        error_prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """Check (name, "ok"|"error", id or message) results of racing creates: one winner per
    name, every loser a clean "already in use" conflict, no "database is locked". Returns
    the winners' ids by name."""
    errors = [(n, msg) for n, kind, msg in results if kind == "error"]
    assert not [m for _, m in errors if "locked" in m.lower()], errors
    winners: dict[str, list[str]] = {}
    for name, kind, value in results:
        if kind == "ok":
            winners.setdefault(name, []).append(value)
    assert sorted(winners) == sorted(set(names)), errors
    assert all(len(ids) == 1 for ids in winners.values()), winners
    assert len(errors) == len(names) - len(set(names)), errors
    for _, message in errors:
        assert message.startswith(error_prefixes) and "already in use" in message, message
    return winners


def test_50_concurrent_runs_with_duplicate_names(daemon: DaemonProcess) -> None:
    d = daemon
    names = [f"l01-{i % 40}" for i in range(50)]  # ten names are asked for twice
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda n: (n, *create_and_start(d, n)), names))
    winners = one_winner_per_name(results, names, error_prefixes=("409 ",))
    c = d.client()
    running = {c.get_json(f"/containers/{name}/json")["Id"] for name in winners}
    assert running == {ids[0] for ids in winners.values()}
    assert oracle(d) == dict.fromkeys(running, "running")
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda cid: Client(d.host).delete(f"/containers/{cid}",
                                                        {"force": True}), running))
    assert oracle(d) == {}


def daemon_counts(d: DaemonProcess) -> dict[str, int]:
    pid = d.proc.pid  # type: ignore[union-attr]
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    info = d.client().get_json("/info")
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "tasks": int(info["NGoroutines"]),
        "rss_kb": int(status["VmRSS"].split()[0]),
        "mounts": len(mounts_under(d.base)),
        "cgroups": len([p for p in cgroups_of(d.root) if p.name in containers_ever(d)]),
    }


def containers_ever(d: DaemonProcess) -> set[str]:
    """Every container id this daemon's log has seen (removed ones too)."""
    from events.store import EventStore

    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        return {env.event.container_id for env in store.read()  # type: ignore[attr-defined]
                if env.type == "ContainerCreated"}
    finally:
        store.close()


def settled_counts(d: DaemonProcess) -> dict[str, int]:
    """The counts once they stop moving: the last request's connection and the last exit
    watcher end just after the answer. Two equal readings in a row, or the last one."""
    import time

    last = daemon_counts(d)
    for _ in range(50):
        time.sleep(0.2)
        now = daemon_counts(d)
        if all(now[k] == last[k] for k in ("fds", "tasks")):
            return now
        last = now
    return last


def cycle(c: Client, i: int) -> None:
    cid = c.post_json("/containers/create", {"name": f"soak-{i}"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{cid}/start")
    ex = c.post_json(f"/containers/{cid}/exec", None,
                     {"Cmd": ["true"] if i % 5 else ["no-such-command"],
                      "AttachStdout": True, "AttachStderr": True})["Id"]
    c.request("POST", f"/exec/{ex}/start", None, b'{"Detach": false, "Tty": false}',
              {"Content-Type": "application/json"})
    c.post_json(f"/containers/{cid}/stop", {"t": 0})
    c.delete(f"/containers/{cid}")


# RSS margin: the daemon keeps the log's projection in memory, and each removed container
# leaves its name's stream version and its events behind (by design: the log is never
# trimmed), plus SQLite's page cache (2 MiB per connection by default) and pymalloc's arenas,
# which CPython returns to the OS only when wholly free. 16 MiB over a warmed-up baseline
# covers that for a few hundred cycles; a per-cycle leak of a container's state (~50 KiB
# with its spec, buffers and task) would exceed it.
RSS_MARGIN_KB = 16 * 1024
WARMUP, CYCLES = 10, 200


@pytest.mark.slow
def test_soak_returns_to_baseline(daemon: DaemonProcess) -> None:
    d, c = daemon, daemon.client()
    shared = os.environ.get("SHIPSLOG_SHARED_HOST") == "1"
    for i in range(WARMUP):
        cycle(c, i)
    before, inventory = settled_counts(d), kernel_inventory()
    for i in range(WARMUP, WARMUP + CYCLES):
        cycle(c, i)
    after = settled_counts(d)
    for key in ("fds", "tasks", "mounts", "cgroups"):
        assert after[key] == before[key], (key, before, after)
    assert after["rss_kb"] - before["rss_kb"] <= RSS_MARGIN_KB, (before, after)
    if not shared:  # host-wide objects (links, nft, netns) are only ours on a quiet host
        now = kernel_inventory()
        assert now == inventory
    assert oracle(d) == {}
