"""The failpoint matrix (issue 7; RELIABILITY F-01, F-02, harness notes 1 and 6): every named
failpoint between a kernel operation and its event — in pull, create, start, stop, rm, volume
mount/unmount, volume create/rm, network connect and port publishing — crossed with the
actions `error`, `panic` (kill -9 of the daemon) and `crash` (the daemon dies unwinding).

After each injection the three-way oracle holds (engine/testing/oracle.py: log rebuilt ==
live projection == kernel; `PRAGMA integrity_check` ok): at once for `error` (the daemon
stays up, and the user saw an error, never success), and after a restart for every action.
Then the same operation, retried without faults after clearing the scenario through the API,
succeeds: nothing left behind blocks it.

I/O: real daemons on per-test roots (busybox loaded), a local registry on 127.0.0.1 for the
pull points; every daemon, registry and kernel object is cleaned up by the fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engine.cli.client import ApiError, DaemonUnreachable
from engine.drivers.host import failpoints
from engine.testing import oracle
from engine.testing.daemon import DaemonProcess
from engine.testing.localreg import LocalRegistry
from tests.faults.scenarios import SCENARIOS, StreamError, World, clear

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

# (failpoint, the scenario whose operation walks through it)
POINTS = [
    ("pull.after_manifest", "pull"),
    ("pull.after_blob_stored", "pull"),
    ("pull.after_layer_unpacked", "pull"),
    ("pull.before_pulled_event", "pull"),
    ("ingest.after_chunk", "pull"),
    ("create.after_rootfs", "create"),
    ("start.after_volume_mount", "start-volume"),
    ("start.after_runtime_create", "start"),
    ("start.after_runtime_start", "start"),
    ("stop.after_signal", "stop"),
    ("remove.after_runtime_delete", "remove"),
    ("remove.after_volume_unmount", "remove-volume"),
    ("remove.after_rootfs", "remove"),
    ("volume.after_create", "volume-create"),
    ("volume.after_remove", "volume-remove"),
    ("net.after_netns", "start-network"),
    ("net.after_allocate", "start-network"),
    ("net.after_veth", "start-network"),
    ("net.after_connected_event", "start-network"),
    ("net.after_nft", "start-network"),
    ("net.after_published_event", "start-network"),
    ("net.after_allocate", "connect"),
    ("net.after_veth", "connect"),
    ("net.after_connected_event", "connect"),
    ("net.after_detach_kernel", "remove-network"),
    ("net.after_network_setup", "network-create"),
]
ACTIONS = ["error", "panic", "crash"]
CASES = [(p, s, a) for p, s in POINTS for a in ACTIONS]

UNREACHABLE = (DaemonUnreachable, ConnectionError, OSError)


def test_the_matrix_walks_every_failpoint() -> None:
    assert {p for p, _ in POINTS} == set(failpoints.NAMES)


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry.running() as reg:
        yield reg


@pytest.fixture
def pushed(registry: LocalRegistry) -> Callable[[DaemonProcess], str]:
    """Push busybox from this test's daemon to the module's registry; its reference."""
    def push(d: DaemonProcess) -> str:
        ref = f"{registry.domain}/fp/busybox:v1"
        c = d.client()
        c.post_json("/images/busybox/tag", {"repo": ref.rsplit(":", 1)[0], "tag": "v1"})
        with c.stream("POST", f"/images/{ref.rsplit(':', 1)[0]}/push", {"tag": "v1"}, None,
                      {"X-Registry-Auth": "e30="}) as chunks:
            body = b"".join(chunks)
        assert b'"error"' not in body, body
        c.delete(f"/images/{ref}")
        return ref

    return push


def attempt(act: Callable[[World], None], w: World) -> BaseException | None:
    try:
        act(w)
    except (ApiError, StreamError, *UNREACHABLE) as exc:
        return exc
    return None


def restart_clean(d: DaemonProcess) -> None:
    d.stop()
    d.start()


@pytest.mark.parametrize(("point", "scenario", "action"), CASES,
                         ids=[f"{p}-{s}-{a}" for p, s, a in CASES])
def test_failpoint(daemon: DaemonProcess, pushed: Callable[[DaemonProcess], str], point: str,
                   scenario: str, action: str) -> None:
    sc = SCENARIOS[scenario]
    w = World(daemon)
    if sc.needs_registry:
        w.pulled_ref = pushed(daemon)
    sc.prep(w)
    daemon.stop()
    daemon.start(failpoints=f"{point}={action}")
    outcome = attempt(sc.act, w)

    if action == "error":
        # The user saw an error, one line naming what failed, and the daemon kept serving.
        assert isinstance(outcome, (ApiError, StreamError)), \
            f"{point} error: the operation reported success ({outcome!r})"
        assert f"failpoint {point}" in outcome.message, outcome.message
        assert "\n" not in outcome.message and "Traceback" not in outcome.message
        oracle.check(daemon, open_ops=True)
        restart_clean(daemon)
    else:
        assert isinstance(outcome, UNREACHABLE + (ApiError, StreamError)), outcome
        code = daemon.wait_exit()
        assert code == -9 if action == "panic" else code != 0, code
        if action == "crash":
            assert f"SimulatedCrash: {point}" in daemon.log_text()
        daemon.start()
    oracle.check(daemon)

    # A retry works without manual cleanup.
    clear(w)
    sc.prep(w)
    assert attempt(sc.act, w) is None, f"retry of {scenario} after {point}={action} failed"
    oracle.check(daemon)
    if scenario == "stop":
        assert daemon.client().get_json("/containers/victim/json")["State"]["Status"] == \
            "exited"


def test_delay_only_slows(daemon: DaemonProcess) -> None:
    """`delay` holds an operation at a boundary and changes nothing else: the stop completes
    and the oracle holds (the one action that says something without a failure)."""
    w = World(daemon)
    SCENARIOS["stop"].prep(w)
    daemon.stop()
    daemon.start(failpoints="stop.after_signal=delay(300)")
    SCENARIOS["stop"].act(w)
    assert daemon.client().get_json("/containers/victim/json")["State"]["Status"] == "exited"
    oracle.check(daemon)

