"""The failpoint list (`engine.failpoints.NAMES`) and the call sites agree both ways, so the
fault matrix (tests/faults/test_failpoint_matrix.py) walks every boundary there is; and the
grammar's actions do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine import failpoints
from engine.errors import KernelError
from engine.journal import _store_error
from events.store import StoreBusy, StoreError, StoreFull

ENGINE = Path(failpoints.__file__).parent


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
