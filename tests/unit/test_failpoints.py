"""The failpoint list (`engine.drivers.host.failpoints.NAMES`) and the call sites agree both ways,
so the
fault matrix (tests/faults/test_failpoint_matrix.py) walks every boundary there is; and the
grammar's actions do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.core.errors import KernelError
from engine.drivers.host import failpoints
from engine.shell.journal import _store_error
from events.store import StoreBusy, StoreError, StoreFull

ENGINE = Path(failpoints.__file__).parents[2]  # engine/drivers/host/ -> engine/


def call_sites() -> set[str]:
    found = set()
    for path in ENGINE.rglob("*.py"):
        found |= set(re.findall(r'failpoints\.hit\("([a-z_.]+)"', path.read_text()))
    return found


def test_every_call_site_is_listed_and_every_listed_name_has_a_call_site() -> None:
    assert call_sites() == set(failpoints.NAMES)


def test_error_action_raises_a_kernel_error_or_the_sites_own_error(monkeypatch) -> None:
    monkeypatch.setenv("SHIPSLOG_FAILPOINTS", "a=error(boom);b=2*error(full)")
    failpoints.reset()
    try:
        with pytest.raises(KernelError, match="failpoint a: boom"):
            failpoints.hit("a")
        failpoints.hit("b", _store_error)  # the first hit passes
        with pytest.raises(StoreFull):
            failpoints.hit("b", _store_error)
        failpoints.hit("b", _store_error)  # and later ones too
        failpoints.arm("c", "error(busy)")
        with pytest.raises(StoreBusy):
            failpoints.hit("c", _store_error)
        failpoints.arm("d", "error(ioerr)")
        with pytest.raises(StoreError, match="disk I/O error"):
            failpoints.hit("d", _store_error)
        failpoints.arm("e", "crash")
        with pytest.raises(failpoints.SimulatedCrash):
            failpoints.hit("e")
    finally:
        monkeypatch.delenv("SHIPSLOG_FAILPOINTS")
        failpoints.reset()
    assert not failpoints.armed()


def test_a_chain_refuses_n_times_then_lets_everything_through(monkeypatch) -> None:
    """containerd's `2*error(x)->off`: the log refuses an outcome twice, then accepts it
    (issue 15: an outcome must be retried until it lands)."""
    monkeypatch.setenv("SHIPSLOG_FAILPOINTS", "a=2*error(full)->off;b=1*delay(0)->error(x)")
    failpoints.reset()
    try:
        for _ in range(2):
            with pytest.raises(StoreFull):
                failpoints.hit("a", _store_error)
        for _ in range(5):
            failpoints.hit("a", _store_error)
        failpoints.hit("b")  # the delay term, once; then the error for ever
        for _ in range(3):
            with pytest.raises(KernelError, match="failpoint b: x"):
                failpoints.hit("b")
        with pytest.raises(ValueError, match="bad failpoint action"):
            failpoints.arm("c", "2*error(full)->sometimes")
    finally:
        monkeypatch.delenv("SHIPSLOG_FAILPOINTS")
        failpoints.reset()
