"""The log as the product, on a real daemon: a scripted scenario records what `ps`, `images` and
`inspect` said at several moments, and `--at seq:N` must answer exactly that afterwards;
`history` tells a container's runs, exit codes and restarts (also after `rm`); `replay`
rebuilds without a difference and re-runs every decision; with the daemon stopped, `--root`
gives the same output as the daemon did; after a restart, `events --since` reaches back to the
first event."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from engine.cli.main import run

pytestmark = pytest.mark.kernel

PS = "{{.ID}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Names}}|{{.Ports}}"
INSPECT = ("{{.Name}}|{{.State.Status}}|{{.State.ExitCode}}|{{.State.Pid}}|{{.RestartCount}}|"
           "{{.State.StartedAt}}|{{.State.FinishedAt}}")


def cli(daemon: Any, *argv: str, root: bool = False) -> str:
    out, err = io.StringIO(), io.StringIO()
    args = ["--root", str(daemon.root), *argv] if root else list(argv)
    code = run(args, environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
               stdout=out, stderr=err)
    assert code == 0, f"shipslog {' '.join(args)} -> {code}: {err.getvalue()}"
    return out.getvalue()


def head(daemon: Any) -> int:
    return int(daemon.client().get_json("/shipslog/audit/head")["seq"])


def settle(daemon: Any, name: str, want: str, restarts: int = 0) -> None:
    """Wait until the container is in state `want` with its restarts done."""
    c = daemon.client()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = c.get_json(f"/containers/{name}/json")
        if info["State"]["Status"] == want and info["RestartCount"] >= restarts:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {want}: {info['State']}")


def snapshot(daemon: Any, names: list[str]) -> dict[str, Any]:
    """What the live projection answers now, tied to the seq it answers at (retried until no
    event lands while we ask)."""
    for _ in range(50):
        before = head(daemon)
        shot = {
            "ps": cli(daemon, "ps", "-a", "--no-trunc", "--format", PS),
            "images": cli(daemon, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"),
            "inspect": {n: cli(daemon, "inspect", "-f", INSPECT, n) for n in names},
        }
        if head(daemon) == before:
            shot["seq"] = before
            return shot
    raise AssertionError("the log never stood still")


def test_time_travel_answers_what_the_live_projection_answered(daemon: Any) -> None:
    shots = []
    cli(daemon, "run", "-d", "--name", "web", "busybox", "sleep", "1000")
    settle(daemon, "web", "running")
    shots.append(snapshot(daemon, ["web"]))
    cli(daemon, "run", "-d", "--name", "job", "busybox", "sh", "-c", "exit 3")
    settle(daemon, "job", "exited")
    shots.append(snapshot(daemon, ["web", "job"]))
    cli(daemon, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox",
        "sh", "-c", "exit 2")
    settle(daemon, "flaky", "exited", restarts=2)
    shots.append(snapshot(daemon, ["web", "job", "flaky"]))
    cli(daemon, "stop", "-t", "1", "web")
    cli(daemon, "rename", "job", "batch")
    shots.append(snapshot(daemon, ["web", "batch", "flaky"]))
    cli(daemon, "rm", "batch")
    shots.append(snapshot(daemon, ["web", "flaky"]))

    for shot in shots:
        at = f"seq:{shot['seq']}"
        assert cli(daemon, "ps", "-a", "--no-trunc", "--format", PS, "--at", at) == shot["ps"]
        assert cli(daemon, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                   "--at", at) == shot["images"]
        for name, said in shot["inspect"].items():
            assert cli(daemon, "inspect", "-f", INSPECT, "--at", at, name) == said
    # A point in time answers like the last seq at or before it.
    first = shots[0]
    when = json.loads(cli(daemon, "events", "--all", "--format", "json", "--since",
                          f"seq:{first['seq']}", "--until", f"seq:{first['seq']}"))["timeNano"]
    assert cli(daemon, "ps", "-a", "--no-trunc", "--format", PS, "--at",
               f"{when // 10**9}.{when % 10**9:09d}") == first["ps"]

    # What changed between the first and the last moment.
    diff = cli(daemon, "state", "diff", f"seq:{shots[0]['seq']}", f"seq:{shots[-1]['seq']}")
    cells = [line.split() for line in diff.splitlines()[2:]]
    assert ["appeared", "container", "flaky"] in [c[:3] for c in cells]
    web = next(i for i, c in enumerate(cells) if c[:3] == ["changed", "container", "web"])
    rest = [cells[web][4:]] + [c for c in cells[web + 1:]]
    assert ["status", "running", "exited"] in [c[:3] for c in rest]

    # history: every run, exit code and restart — also of a removed container, by its name.
    story = cli(daemon, "history", "flaky")
    assert "3 runs, 2 restarts" in story
    assert sum(line.endswith("exited with code 2") for line in story.splitlines()) == 3
    assert "restart policy #2: exited with code 2; restart policy on-failure" in story
    batch = json.loads(cli(daemon, "history", "--format", "json", "batch"))
    assert batch["removed"] and batch["name"] == "batch"
    assert [op["kind"] for op in batch["ops"]][-1] == "container.remove"
    assert batch["exit_codes"] == [3]
    assert cli(daemon, "image", "history", "-q", "busybox").strip()  # Docker's layer history

    # audit who names the caller of each operation.
    who = json.loads(cli(daemon, "audit", "who", "web", "--format", "json").splitlines()[0])
    assert who["kind"] == "container.create" and who["uid"] == 0 and who["via"] == "api"

    # replay: rebuild from zero equals the live tables; every decision re-runs the same.
    assert "no differences" in cli(daemon, "replay")
    assert "no differences" in cli(daemon, "replay", "--to", str(shots[1]["seq"]))
    for name in ("web", "flaky"):
        explained = json.loads(cli(daemon, "replay", "--explain", name, "--format", "json"))
        assert explained["steps"] and all(s["reproduced"] is not False
                                          for s in explained["steps"]), explained
        assert any(s["reproduced"] for s in explained["steps"])


def test_root_reads_match_the_daemon_and_history_survives_a_restart(daemon: Any) -> None:
    cli(daemon, "run", "-d", "--name", "echo", "busybox", "sh", "-c", "echo hello; exit 7")
    settle(daemon, "echo", "exited")
    cli(daemon, "run", "-d", "--name", "up", "busybox", "sleep", "1000")
    settle(daemon, "up", "running")
    end = head(daemon)
    reads = [
        ("ps", "-a", "--no-trunc", "--format", PS),
        ("inspect", "echo"),
        ("images",),
        ("events", "--since", "seq:1", "--until", f"seq:{end}"),
        ("events", "--all", "--since", "seq:1", "--until", f"seq:{end}"),
        ("logs", "echo"),
        ("history", "echo"),
        ("audit", "who"),
        ("ps", "-a", "--format", PS, "--at", f"seq:{end - 2}"),
    ]
    live = {r: cli(daemon, *r) for r in reads}
    assert live[("logs", "echo")] == "hello\n"
    daemon.stop()
    for r in reads:
        assert cli(daemon, *r, root=True) == live[r], r
    assert "chain ok" in cli(daemon, "audit", "verify", root=True)

    daemon.start()
    # After the restart the log still reaches back to the first event, in both formats.
    docker = cli(daemon, "events", "--since", "seq:1", "--until", f"seq:{end}")
    assert docker == live[("events", "--since", "seq:1", "--until", f"seq:{end}")]
    assert "container die" in docker and "exitCode=7" in docker
    full = cli(daemon, "events", "--all", "--format", "json", "--since", "seq:1")
    types = [json.loads(line)["type"] for line in full.splitlines()]
    assert types[0] != "" and "DaemonStopped" in types and types.count("DaemonStarted") == 2
    daemon.client().delete("/containers/up", {"force": True})
