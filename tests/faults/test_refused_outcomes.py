"""A refused exit record is retried until it lands (issue 15 item 2), on a real daemon.

The log refuses `ContainerExited` (the failpoint raises the store's own "no space left on
device", the path a full disk takes): while it keeps refusing, `info` and `system check` say
which outcome is waiting and why, and `system check` reports that the runtime (runc and the
monitor's exit file) and the log disagree, instead of "no damage found". Once the log takes
it, the container ends `exited` with its real code and `wait` returns, without a restart.

I/O: real daemons on per-test roots (the `daemon` fixture cleans up every kernel object).
"""

from __future__ import annotations

import pytest

from engine.testing import oracle
from engine.testing.daemon import DaemonProcess
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.kernel

EXITS_3 = {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]}


def _run(daemon: DaemonProcess, name: str) -> str:
    c = daemon.client()
    cid: str = c.post_json("/containers/create", {"name": name}, EXITS_3)["Id"]
    c.post_json(f"/containers/{cid}/start")
    return cid


@pytest.mark.slow
def test_refused_exit_lands_after_two_refusals_and_wait_returns(daemon: DaemonProcess) -> None:
    daemon.stop()
    daemon.start(failpoints="append.ContainerExited=2*error(full)->off")
    cid = _run(daemon, "victim")
    c = daemon.client()
    # bounded: without the retry the exit is never recorded and `wait` blocks for ever
    wait_until(lambda: c.get_json(f"/containers/{cid}/json")["State"]["Status"] == "exited",
               "the refused exit to be recorded")
    waited = daemon.client().post_json(f"/containers/{cid}/wait")
    assert waited["StatusCode"] == 3
    st = daemon.client().get_json(f"/containers/{cid}/json")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 3 and not st["Running"]
    check = daemon.client().post_json("/shipslog/system/check")
    assert check["Findings"] == [] and check["Waiting"] == []
    assert daemon.client().get_json("/info")["Warnings"] == []
    oracle.check(daemon)


@pytest.mark.slow
def test_an_outcome_still_refused_is_visible_in_check_and_info(daemon: DaemonProcess) -> None:
    daemon.stop()
    daemon.start(failpoints="append.ContainerExited=error(full)")
    cid = _run(daemon, "victim")
    c = daemon.client()
    check = wait_until(lambda: (r := c.post_json("/shipslog/system/check"))["Waiting"] and r,
                       "the refused exit to be reported")
    assert check["Waiting"] == [
        f"1 outcome waiting to be recorded: ContainerExited for {cid}, retrying: no space "
        "left on device: the event log could not record the operation (failpoint "
        "append.ContainerExited)"]
    [finding] = [f for f in check["Findings"] if f["Subject"] == cid]
    assert finding["Kind"] == "runtime"
    assert finding["Problem"].startswith("the log says running, the runtime says ")
    assert "(its monitor recorded exit code 3)" in finding["Problem"]
    assert finding["Problem"].endswith("its outcome is waiting to be recorded")
    warnings = c.get_json("/info")["Warnings"]
    assert warnings == ["WARNING: " + check["Waiting"][0]]
    daemon.stop()
    daemon.start()  # recovery settles the exit from the monitor's file, as before
    st = daemon.client().get_json(f"/containers/{cid}/json")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 3
    oracle.check(daemon)
