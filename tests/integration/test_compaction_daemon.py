"""Compaction on a real daemon: `system compact` (CLI and API) archives the history of removed
containers, the projection answers exactly as before, `audit verify` still proves the whole
chain (re-hashing the archived events) and names the event when the archive is altered; an
`events --follow` running across compactions sees every live event exactly once; the daemon
compacts by size on its own; `--root` compacts only while no daemon holds the root.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.cli.main import run
from engine.testing.daemon import DaemonProcess
from tests.integration.conftest import loaded_daemon

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def cli(daemon: Any, *argv: str, root: bool = False, ok: bool = True) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = ["--root", str(daemon.root), *argv] if root else list(argv)
    code = run(args, environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
               stdout=out, stderr=err)
    if ok:
        assert code == 0, f"shipslog {' '.join(args)} -> {code}: {err.getvalue()}"
    return code, out.getvalue(), err.getvalue()


def churn(daemon: Any, names: list[str]) -> None:
    """Create, run and remove containers: history that compaction may archive."""
    for name in names:
        cli(daemon, "run", "--name", name, "busybox", "true")
        cli(daemon, "rm", name)


def live_view(daemon: Any) -> tuple[str, str]:
    ps = cli(daemon, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}")[1]
    nets = cli(daemon, "network", "ls", "--format", "{{.ID}} {{.Name}}")[1]
    return ps, nets


def test_compact_keeps_state_and_verifiability_and_names_a_tampered_archive(
        daemon: DaemonProcess) -> None:
    cli(daemon, "create", "--name", "keep", "busybox", "sleep", "100")
    churn(daemon, ["gone1", "gone2", "gone3"])
    before = live_view(daemon)
    checkpoint = daemon.base / "head.checkpoint"
    cli(daemon, "audit", "checkpoint", "-o", str(checkpoint))
    head = daemon.client().get_json("/shipslog/audit/head")
    report = json.loads(cli(daemon, "system", "compact", "--before", "0s", "--format",
                            "json")[1])
    assert report["Count"] > 0 and report["Streams"] >= 3
    assert report["SummarySeq"] == head["seq"] + 1 and report["BytesFreed"] > 0
    archive = Path(report["Archive"])
    assert archive.parent == daemon.root / "archive" and archive.exists()
    assert live_view(daemon) == before
    # The removed containers' events are gone from the live stream; the summary is there.
    events = cli(daemon, "events", "--format", "json")[1].splitlines()
    types = [json.loads(line)["type"] for line in events]
    assert "ChainCompacted" in types and "ContainerRemoved" not in types
    # `history` of a compacted container answers from the archive.
    history = cli(daemon, "history", "gone2")[1]
    first = history.splitlines()[0]
    assert first.startswith("container gone2 ") and "(removed): " in first, history
    assert ": 0 events" not in first and "container.create requested" in history, history
    # A second run finds nothing more to do.
    again = cli(daemon, "system", "compact", "--before", "0s")[1]
    assert again.startswith("nothing to compact")

    _, out, err = cli(daemon, "audit", "verify")
    assert out.startswith("chain ok: ") and "compacted: " in out
    assert f"{report['Count']} re-hashed" in out, out + err
    # A checkpoint taken before compaction still holds.
    _, out, _ = cli(daemon, "audit", "verify", "--checkpoint", str(checkpoint))
    assert f"checkpoint ok: event {head['seq']} still has hash" in out, out
    _, out, _ = cli(daemon, "audit", "verify", "--format", "json")
    assert json.loads(out)["archived_checked"] == report["Count"]
    assert daemon.client().get_json("/shipslog/audit/head")["first_hash"] == head["first_hash"]

    lines = archive.read_bytes().splitlines(keepends=True)
    row = json.loads(lines[2])
    row[7] = "forged-op"
    lines[2] = json.dumps(row).encode() + b"\n"
    archive.write_bytes(b"".join(lines))
    code, _, err = cli(daemon, "audit", "verify", ok=False)
    assert code == 1
    assert f"audit failed: event {row[0]}: archived event {row[0]}" in err, err
    # Verify against a directory without the archive: the live chain is fine, with a warning.
    code, out, err = cli(daemon, "audit", "verify", "--archive", str(daemon.base / "none"),
                         ok=False)
    assert code == 0 and "were not rechecked" in err, out + err


def test_compact_api_refuses_bad_input_and_root_refuses_a_running_daemon(
        daemon: DaemonProcess) -> None:
    c = daemon.client()
    for params, status in (({}, 400), ({"before": "yesterday-ish"}, 400),
                           ({"before": "seq:99999999"}, 400)):
        with pytest.raises(ApiError) as info:
            c.post_json("/shipslog/system/compact", params)
        assert info.value.status == status
    code, _, err = cli(daemon, "system", "compact", "--before", "1h", root=True, ok=False)
    assert code != 0 and "a daemon holds" in err and "hint:" in err and "Traceback" not in err
    code, _, err = cli(daemon, "system", "compact", "--before", "soon", ok=False)
    assert code != 0 and "invalid value for --before" in err


def test_a_follower_sees_every_live_event_exactly_once_across_compaction(
        daemon: DaemonProcess) -> None:
    seen: list[int] = []
    types: list[str] = []
    done = threading.Event()
    stop_after = {"seq": None}

    def follow() -> None:
        with daemon.client().stream_json("GET", "/shipslog/events",
                                          {"follow": 1}) as events:
            for ev in events:
                seen.append(ev["seq"])
                types.append(ev["type"])
                if stop_after["seq"] is not None and ev["seq"] >= stop_after["seq"]:
                    break
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    for round_ in range(3):
        churn(daemon, [f"r{round_}a", f"r{round_}b"])
        compactor = threading.Thread(target=lambda: cli(daemon, "system", "compact",
                                                        "--before", "0s"))
        compactor.start()
        churn(daemon, [f"r{round_}c"])  # appends race the compaction
        compactor.join()
    cli(daemon, "create", "--name", "marker", "busybox", "true")
    last = daemon.client().get_json("/shipslog/audit/head")["seq"]
    stop_after["seq"] = last
    cli(daemon, "rename", "marker", "marker2")  # one more event wakes the follower up
    assert done.wait(30), "the follower never reached the head"
    assert seen == sorted(set(seen)), "every event once, in order"
    live = [json.loads(line)["seq"] for line in
            cli(daemon, "events", "--format", "json")[1].splitlines()]
    assert {s for s in live if s <= last} <= set(seen), "no live event missed"
    assert types.count("ChainCompacted") == 3


@pytest.fixture
def small_daemon(busybox_tar: Path) -> Any:
    with loaded_daemon(busybox_tar, ["--compact-max-events", "5", "--compact-interval", "1s"]) as d:
        yield d


def test_the_daemon_compacts_by_size_on_its_own_and_root_compacts_when_it_is_down(
        small_daemon: DaemonProcess) -> None:
    daemon = small_daemon
    churn(daemon, ["a1", "a2"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = json.loads(cli(daemon, "audit", "verify", "--format", "json")[1])
        if result["archived"]:
            break
        time.sleep(0.2)
    assert result["ok"] and result["archived"] > 0
    assert result["archived_checked"] == result["archived"]
    assert list((daemon.root / "archive").iterdir())

    churn(daemon, ["b1"])
    daemon.stop()
    code, out, err = cli(daemon, "system", "compact", "--before", "0s", "--format", "json",
                         root=True, ok=False)
    assert code == 0, err
    report = json.loads(out)
    _, out, _ = cli(daemon, "audit", "verify", root=True)
    assert out.startswith("chain ok: ") and "compacted: " in out
    assert report["Count"] >= 0
