"""The kernel operation succeeded, the event append failed (RELIABILITY F-12): SQLITE_FULL,
an I/O error or a lock timeout injected at the engine side of the append
(`append.<EventType>` failpoints in engine/shell/journal.py, raising the store's own errors).

Expected: the user never sees success; the kernel work is undone at once (no veth, rule,
mount or runtime container without an owning event), so the three-way oracle holds while
the daemon keeps running and again after a restart; when even the undo cannot be recorded,
recovery settles it from the kernel at the next start. A retry then works.

I/O: real daemons on per-test roots; fixtures clean up every kernel object.
"""

from __future__ import annotations

import pytest

from engine.cli.client import ApiError
from engine.testing import oracle
from engine.testing.daemon import DaemonProcess
from tests.faults.scenarios import SCENARIOS, World, clear

pytestmark = pytest.mark.kernel

# (append failpoint, what it injects, scenario, words the user must see)
CASES = [
    ("append.ContainerStarted", "full", "start", "no space left on device"),
    ("append.ContainerStarted", "busy", "start", "could not write the event log"),
    ("append.VolumeMounted", "full", "start-volume", "no space left on device"),
    ("append.NetworkConnected", "ioerr", "start-network", "disk I/O error"),
    ("append.NetworkPortPublished", "full", "start-network", "no space left on device"),
    ("append.NetworkConnected", "ioerr", "connect", "disk I/O error"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "code", "scenario", "words"), CASES,
                         ids=[f"{p}-{c}-{s}" for p, c, s, _ in CASES])
def test_refused_append_is_undone_and_reported(daemon: DaemonProcess, point: str, code: str,
                                               scenario: str, words: str) -> None:
    sc = SCENARIOS[scenario]
    w = World(daemon)
    sc.prep(w)
    daemon.stop()
    daemon.start(failpoints=f"{point}=1*error({code})")
    with pytest.raises(ApiError) as info:
        sc.act(w)
    assert words in info.value.message and f"failpoint {point}" in info.value.message
    assert info.value.status >= 500  # the engine's fault, not the caller's
    assert "\n" not in info.value.message
    state = oracle.check(daemon)
    victim = next(c for c in state.containers.values() if c.name == "victim")
    if scenario == "connect":
        assert victim.status == "running" and len(victim.networks) == 1  # as before
    else:
        assert victim.status != "running"
    daemon.stop()
    daemon.start()
    oracle.check(daemon)
    clear(w)
    sc.prep(w)
    sc.act(w)  # works again, nothing left in the way
    oracle.check(daemon)


@pytest.mark.slow
def test_undo_that_cannot_be_recorded_is_settled_at_restart(daemon: DaemonProcess) -> None:
    """Both the outcome and the record of its undo are refused: the kernel is undone anyway,
    the operation stays open in the log, and the next start closes it from the kernel."""
    w = World(daemon)
    SCENARIOS["start-network"].prep(w)
    daemon.stop()
    daemon.start(failpoints="append.ContainerStarted=1*error(full);"
                            "append.ContainerStartFailed=1*error(full)")
    with pytest.raises(ApiError) as info:
        SCENARIOS["start-network"].act(w)
    assert "no space left on device" in info.value.message
    assert daemon.client().get_json("/containers/victim/json")["State"]["Running"] is False
    daemon.stop()
    daemon.start()
    state = oracle.check(daemon)
    victim = next(c for c in state.containers.values() if c.name == "victim")
    assert victim.status != "running"
    daemon.client().post_json("/containers/victim/start")
    assert oracle.check(daemon).containers[victim.id].status == "running"
