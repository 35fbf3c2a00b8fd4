"""Issue 18's loose ends on the real kernel: `exec -u NAME` resolves the name in the
container's own /etc/passwd (as `run -u` does) instead of refusing every non-numeric user;
an unknown name is Docker's one-line error.

I/O: a daemon (subprocess) and our CLI against its socket; one busybox container, removed.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.testing import oracle
from engine.testing.cli import shipslog

pytestmark = [pytest.mark.kernel]




def test_exec_user_by_name_from_the_containers_passwd(daemon: Any) -> None:
    code, _, err = shipslog(daemon, "run", "-d", "--name", "who", "busybox", "sleep", "600")
    assert code == 0, err
    try:
        code, out, err = shipslog(daemon, "exec", "-u", "nobody", "who", "id", "-u")
        assert (code, out) == (0, "65534\n"), err
        code, out, err = shipslog(daemon, "exec", "-u", "nobody:root", "who", "id", "-g")
        assert (code, out) == (0, "0\n"), err
        code, out, err = shipslog(daemon, "exec", "-u", "alice", "who", "id", "-u")
        assert code != 0 and "unable to find user alice" in err, (code, out, err)
        assert "Traceback" not in err and "numeric" not in err
    finally:
        assert shipslog(daemon, "rm", "-f", "who")[0] == 0
    oracle.check(daemon)


def settle_exited(daemon: Any, name: str, restarts: int) -> None:
    import time

    c = daemon.client()
    deadline = time.monotonic() + 30  # a bound on hanging, not a timing assertion
    while time.monotonic() < deadline:
        info = c.get_json(f"/containers/{name}/json")
        if info["State"]["Status"] == "exited" and info["RestartCount"] >= restarts:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never settled: {info['State']}")


def test_the_log_in_other_tools_through_the_daemon(daemon: Any, tmp_path: Any) -> None:
    """Issue 18 through the socket (not --root): `audit export --sqlite` and `--format ocsf`
    decode the daemon's stream, keep the secret out, and tell the runs; `events --follow --to
    syslog`; `history --html` draws one bar per run."""
    import json
    import socket
    import sqlite3
    import threading

    canary = "canary-kernel-5531"
    code, _, err = shipslog(daemon, "run", "-d", "--name", "flaky", "-e",
                            f"DB_PASSWORD={canary}", "--restart", "on-failure:2", "busybox",
                            "sh", "-c", "exit 3")
    assert code == 0, err
    settle_exited(daemon, "flaky", 2)
    head = int(daemon.client().get_json("/shipslog/audit/head")["seq"])

    out = tmp_path / "audit.db"
    code, _, err = shipslog(daemon, "audit", "export", "--sqlite", str(out))
    assert code == 0, err
    assert canary.encode() not in out.read_bytes()
    with sqlite3.connect(out) as db:
        assert db.execute("select max(seq), count(*) from events").fetchone()[0] >= head
        exits = db.execute("select exit_code from container_events where type = "
                           "'ContainerExited' order by seq").fetchall()
        assert exits == [(3,), (3,), (3,)]
        hits = db.execute("select message from events_fts where events_fts match "
                          "'exited'").fetchall()
        assert [h[0] for h in hits].count("exited with code 3") == 3
        assert sum("restart #" in h[0] for h in hits) == 2

    code, ocsf, err = shipslog(daemon, "audit", "export", "--format", "ocsf")
    assert code == 0 and canary not in ocsf, err
    ends = [r for r in map(json.loads, ocsf.splitlines()) if r["class_uid"] == 1007
            and r["activity_id"] == 2]
    assert [(r["process"]["name"], r["exit_code"]) for r in ends] == [("flaky", 3)] * 3

    path = tmp_path / "syslog.sock"
    got: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(30)
        reader = threading.Thread(target=lambda: got.extend(server.recv(65536)
                                                            for _ in range(10)))
        reader.start()
        code, _, err = shipslog(daemon, "events", "--follow", "--limit", "10", "--to",
                                "syslog", "--syslog-address", f"unix://{path}")
        reader.join()
    assert code == 0 and len(got) == 10, err
    assert all(b'[shipslog@32473 seq="' in m and b' hash="' in m for m in got)

    page = tmp_path / "flaky.html"
    code, _, err = shipslog(daemon, "history", "flaky", "--html", str(page))
    assert code == 0, err
    assert page.read_text().count('<rect class="run failed"') == 3
    assert shipslog(daemon, "rm", "flaky")[0] == 0
    oracle.check(daemon)


def test_health_probe_of_a_container_run_as_a_named_user(daemon: Any) -> None:
    """The probe runs as the container's user: a name resolves in its /etc/passwd (before,
    every probe failed with 'only numeric uid[:gid] is supported')."""
    import time

    code, _, err = shipslog(daemon, "run", "-d", "--name", "probed", "-u", "nobody",
                            "--health-cmd", "test $(id -u) = 65534", "--health-interval", "1s",
                            "--health-retries", "1", "busybox", "sleep", "600")
    assert code == 0, err
    try:
        c = daemon.client()
        deadline = time.monotonic() + 30  # a bound on hanging, not a timing assertion
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = c.get_json("/containers/probed/json")["State"].get("Health") or {}
            if health.get("Status") in ("healthy", "unhealthy"):
                break
            time.sleep(0.1)
        assert health.get("Status") == "healthy", health
    finally:
        assert shipslog(daemon, "rm", "-f", "probed")[0] == 0
    oracle.check(daemon)
