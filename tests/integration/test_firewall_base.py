"""The firewall's base is ensured idempotently, by any number of daemons at once.

Each case runs in a child process in a network namespace of its own (`unshare -n`), so the
host's iptables and nftables are never touched and the namespace goes with the process.
Two daemons on one host (or helpers in CI) each ensure the base at start: nft's base chains
must not be rewritten when already in place (a rewrite resets the S-07 guard's counter and
gives every rule a new handle), and FORWARD must end with exactly one jump into our chain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.kernel


def _in_own_netns(code: str) -> dict[str, object]:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    p = subprocess.run(["unshare", "-n", sys.executable, "-c", textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout.splitlines()[-1]))


def test_an_ensured_base_is_left_in_place_keeping_handles_and_counters() -> None:
    out = _in_own_netns("""
        import json
        from engine.drivers.network.nft import Nft
        n = Nft()
        n.ensure_base()
        def handles():
            return sorted(i["rule"]["handle"] for i in n._table_json() if "rule" in i)
        first = handles()
        Nft().ensure_base()  # a second daemon
        again = handles()
        n.apply("add rule inet shipslog filter_fwd counter accept")  # someone changed it
        n.ensure_base()
        repaired = [i["rule"].get("comment") for i in n._table_json()
                    if "rule" in i and i["rule"]["chain"] == "filter_fwd"]
        print(json.dumps({"first": first, "again": again, "repaired": repaired}))
    """)
    assert out["first"] and out["again"] == out["first"]
    assert out["repaired"] == ["slg:base"]


@pytest.mark.skipif(shutil.which("iptables") is None, reason="no iptables")
def test_daemons_ensuring_forward_at_once_leave_one_jump() -> None:
    out = _in_own_netns("""
        import json, subprocess, threading
        from engine.drivers.network.hostfw import HostForward
        subprocess.run(["iptables", "-w", "-N", "DOCKER-USER"], check=True)
        subprocess.run(["iptables", "-w", "-A", "FORWARD", "-j", "DOCKER-USER"], check=True)
        start = threading.Barrier(8)
        def daemon():
            fw = HostForward()  # each daemon has its own in-process lock
            start.wait()
            fw.ensure_base()
        threads = [threading.Thread(target=daemon) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        fwd = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
        # a FORWARD with two jumps (left by an older version) is mended by the next ensure
        subprocess.run(["iptables", "-w", "-A", "FORWARD", "-j", "SHIPSLOG-FORWARD"], check=True)
        HostForward().ensure_base()
        mended = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                                text=True, check=True).stdout.splitlines()
        print(json.dumps({"forward": fwd, "mended": mended}))
    """)
    jump = "-A FORWARD -j SHIPSLOG-FORWARD"
    assert out["forward"].count(jump) == 1, out["forward"]  # type: ignore[attr-defined]
    assert out["forward"].index(jump) == 2  # type: ignore[attr-defined]  # after DOCKER-USER
    assert out["mended"].count(jump) == 1, out["mended"]  # type: ignore[attr-defined]
