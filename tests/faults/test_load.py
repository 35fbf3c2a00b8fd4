"""Load (RELIABILITY L-01): 50 concurrent create+start of one image with some names used
twice — exactly one winner per name, the others a 409 "already in use", no "database is
locked", everything else succeeds. (The same with an image still to pull is in
test_load_pull.py; the leak soak, L-06, in test_soak.py.)

I/O: a real daemon; API calls from threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.cli.client import ApiError, Client
from engine.testing.daemon import DaemonProcess
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
