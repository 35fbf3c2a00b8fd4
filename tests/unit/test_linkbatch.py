"""The batching decisions of `LinkBatcher` (issue 14): link deletions that overlap in time go
to the kernel together, a lone one goes alone, and each caller hears only its own error.
The kernel call is a recording function; threads are ordered by events, never by sleeping.
"""

from __future__ import annotations

import threading
import time

import pytest

from engine.core.errors import KernelError
from engine.drivers.network.linkbatch import LinkBatcher


class Recorder:
    """A `delete_many` that records each batch; the first one waits until released."""

    def __init__(self, errors: dict[str, BaseException] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.errors = errors or {}
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, names: list[str]) -> dict[str, BaseException]:
        self.batches.append(sorted(names))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return {n: e for n, e in self.errors.items() if n in names}


def _queued(batcher: LinkBatcher, n: int) -> None:
    """Wait until `n` callers are queued (checked often: queueing notifies no one)."""
    deadline = time.monotonic() + 30
    while True:
        with batcher._cond:
            if len(batcher._queue) == n:
                return
        assert time.monotonic() < deadline, "callers did not queue"
        time.sleep(0.001)


def _call(batcher: LinkBatcher, name: str, raised: dict[str, BaseException]
          ) -> threading.Thread:
    def body() -> None:
        try:
            batcher.delete(name)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            raised[name] = exc
    t = threading.Thread(target=body)
    t.start()
    return t


def test_a_lone_deletion_is_a_batch_of_one() -> None:
    rec = Recorder()
    rec.release.set()
    batcher = LinkBatcher(rec)
    batcher.delete("slg1")
    assert rec.batches == [["slg1"]]
    assert list(batcher.sizes) == [1]


def test_deletions_arriving_during_a_batch_go_together_in_the_next() -> None:
    rec = Recorder()
    batcher = LinkBatcher(rec)
    raised: dict[str, BaseException] = {}
    first = _call(batcher, "slg0", raised)
    assert rec.entered.wait(30)
    later = [_call(batcher, f"slg{i}", raised) for i in range(1, 6)]
    _queued(batcher, 5)
    # every later caller still waits: none returns before its own link was handled
    assert all(t.is_alive() for t in later)
    rec.release.set()
    for t in [first, *later]:
        t.join(30)
    assert rec.batches == [["slg0"], [f"slg{i}" for i in range(1, 6)]]
    assert raised == {}


def test_a_lone_leader_lingers_and_takes_those_on_its_heels() -> None:
    rec = Recorder()
    rec.release.set()
    batcher = LinkBatcher(rec, linger=60)
    raised: dict[str, BaseException] = {}
    first = _call(batcher, "slg0", raised)
    _queued(batcher, 1)
    later = [_call(batcher, f"slg{i}", raised) for i in range(1, 4)]
    _queued(batcher, 4)  # the leader is still lingering: nothing was taken yet
    with batcher._cond:
        batcher._cond.notify_all()  # end the linger now rather than in 60 s
    for t in [first, *later]:
        t.join(30)
    assert rec.batches == [[f"slg{i}" for i in range(4)]]
    assert raised == {}


def test_each_caller_gets_its_own_error_only() -> None:
    boom = KernelError("netlink: Device or resource busy")
    rec = Recorder(errors={"slg2": boom})
    batcher = LinkBatcher(rec)
    raised: dict[str, BaseException] = {}
    first = _call(batcher, "slg0", raised)
    assert rec.entered.wait(30)
    later = [_call(batcher, f"slg{i}", raised) for i in range(1, 4)]
    _queued(batcher, 3)
    rec.release.set()
    for t in [first, *later]:
        t.join(30)
    assert raised == {"slg2": boom}


def test_a_failing_kernel_call_reaches_its_batch_and_the_next_batch_runs() -> None:
    calls: list[list[str]] = []

    def delete_many(names: list[str]) -> dict[str, BaseException]:
        calls.append(names)
        if len(calls) == 1:
            raise OSError(9, "Bad file descriptor")
        return {}

    batcher = LinkBatcher(delete_many)
    with pytest.raises(OSError):
        batcher.delete("slg0")
    batcher.delete("slg1")  # not stuck behind the failed batch
    assert calls == [["slg0"], ["slg1"]]
