"""The daemon's single writer: one OS thread owns the writing connection and group-commits.

I/O: SQLite writes (through `EventStore.append_group`) on a dedicated thread. This module is
the one place in `events/` that imports trio: it is the bridge between trio tasks and the
blocking store (DESIGN.md, "one writer in the daemon"; `events/follow.py` builds on the
subscriptions it offers).

Group commit: appends that arrive while a commit is in flight queue up; the thread drains
them all into one `BEGIN IMMEDIATE … COMMIT` (one fsync). A trio run's appends are handed to
the thread once per scheduler pass, together (`StoreWriter._hand_over`), so appenders woken
by one commit form the next group whole. When no append came for
`IDLE_CHECKPOINT_S` and `IDLE_CHECKPOINT_COMMITS` commits are not checkpointed yet (so sparse
traffic does not pay two extra fsyncs per append), the thread checkpoints the WAL
(`EventStore.checkpoint`),
so SQLite's own checkpoint rarely lands inside an appender's COMMIT and the WAL restarts
inside its preallocated size. Each batch is checked and folded
on its own against the group's staged state (`EventStore.append_group`), so a conflict or a
projection error fails only its caller. After each COMMIT the committed envelopes are
published to subscribers in seq order, then the callers are woken (one wakeup per trio run).

A trio caller that is cancelled while its append is queued still gets its batch committed
(the wait cannot be cancelled): the caller must always learn whether its events were recorded, and a
commit takes milliseconds. Retrying with the same `command_id` is always safe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

import outcome
import trio

from events.envelope import Actor, Envelope, Pending
from events.store import EventStore, StoreError

__all__ = [
    "Published",
    "StoreWriter",
    "Subscription",
    "WriterClosed",
    "open_store_writer",
    "run_in_thread",
    "sleep",
]

T = TypeVar("T")

MAX_GROUP = 1024  # batches per transaction: bounds the time the write lock is held
IDLE_CHECKPOINT_S = 0.05  # checkpoint the WAL after this long without an append,
IDLE_CHECKPOINT_COMMITS = 32  # once this many commits (~150+ WAL frames) are uncheckpointed


class WriterClosed(StoreError):
    """The writer has shut down; no more appends are accepted."""


class Subscription:
    """Live envelopes for one follower, delivered in seq order on the follower's trio thread.

    The buffer is bounded: past `max_buffer` envelopes the subscription stops buffering and
    sets `lagged`; the follower then reads what it missed from the database (it never loses
    events) or gives up with `SlowConsumer` (RELIABILITY L-05).
    """

    def __init__(self, writer: StoreWriter, token: trio.lowlevel.TrioToken, max_buffer: int):
        self._writer = writer
        self._token = token
        self.max_buffer = max_buffer
        self.buffer: deque[Envelope] = deque()
        self.lagged = False
        self.closed = False
        self._wakeup = trio.Event()

    def _deliver(self, envelopes: Sequence[Envelope]) -> None:  # runs on the trio thread
        if self.closed:
            return
        if len(self.buffer) + len(envelopes) > self.max_buffer:
            self.lagged = True
        else:
            self.buffer.extend(envelopes)
        self._wakeup.set()

    def _close_soon(self) -> None:  # runs on the trio thread
        self.closed = True
        self._wakeup.set()

    async def wait(self) -> None:
        """Sleep until something was delivered, the buffer overflowed, or the writer closed."""
        if self.buffer or self.lagged or self.closed:
            return
        self._wakeup = trio.Event()
        await self._wakeup.wait()

    def close(self) -> None:
        self.closed = True
        self._writer._unsubscribe(self)


class Published(NamedTuple):
    """What a `run_in_writer` call returns when it appended events itself (a compaction):
    the writer publishes `envelopes` to subscribers and hands the caller `value`."""

    value: Any
    envelopes: list[Envelope]


class _Request:
    __slots__ = ("batch", "call", "task", "result", "token", "future", "last")

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.call: Callable[[], Any] | None = None
        self.result: Any = None
        self.task: trio.lowlevel.Task | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.future: Future[list[Envelope]] | None = None
        self.last = False  # the writer's final append: refuse everything queued after it


class StoreWriter:
    """Owns `store`'s writing connection from one thread; see the module docstring."""

    def __init__(
        self,
        store: EventStore[Any],
        *,
        idle_checkpoint_s: float = IDLE_CHECKPOINT_S,
        idle_checkpoint_commits: int = IDLE_CHECKPOINT_COMMITS,
    ) -> None:
        self.store = store
        self.idle_checkpoint_s = idle_checkpoint_s
        self.idle_checkpoint_commits = idle_checkpoint_commits
        self._uncheckpointed = 0  # commits since the last idle checkpoint
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        # Appends of the current trio scheduler pass, per trio run, not yet handed to the
        # thread (only touched on that run's own thread).
        self._gathering: dict[trio.lowlevel.TrioToken, list[_Request]] = {}
        self._closing = False
        self._subscribers: set[Subscription] = set()
        self._sub_lock = threading.Lock()
        self._finished = False  # the thread has exited and closed its subscribers
        self._published = store.head()
        self._thread = threading.Thread(target=self._run, name="shipslog-writer", daemon=True)
        self.commits = 0  # transactions committed (for benchmarks and tests)
        self.checkpoints = 0  # idle checkpoints run (for tests)

    def start(self) -> None:
        self._thread.start()

    # --- appending -------------------------------------------------------------------------

    async def append(
        self,
        pending: Sequence[Pending],
        *,
        actor: Actor,
        op_id: str,
        command_id: str | None = None,
        now_ns: int,
        last: bool = False,
    ) -> list[Envelope]:
        """Append one batch. With `last`, it is the writer's final batch: every append
        submitted after it is refused (`WriterClosed`), so a daemon's `DaemonStopped` is the
        last event of its run (issue 15, item 8)."""
        request = _Request(
            EventStore.batch(
                pending, actor=actor, op_id=op_id, command_id=command_id, now_ns=now_ns
            )
        )
        result = await self._submit_and_wait(request, last=last)
        if isinstance(result, Exception):
            raise result
        assert result is not None
        return result  # type: ignore[no-any-return]

    def append_sync(
        self,
        pending: Sequence[Pending],
        *,
        actor: Actor,
        op_id: str,
        command_id: str | None = None,
        now_ns: int,
    ) -> list[Envelope]:
        """Blocking append for tools and threads (never call it from the writer thread)."""
        request = _Request(
            EventStore.batch(
                pending, actor=actor, op_id=op_id, command_id=command_id, now_ns=now_ns
            )
        )
        request.future = Future()
        self._submit(request)
        return request.future.result()

    async def run_in_writer(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread between two group commits (e.g. `store.rebuild`),
        so maintenance never races the writer for the connection or blocks the event loop."""
        request = _Request(None)
        request.call = fn
        result = await self._submit_and_wait(request)
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def _submit_and_wait(self, request: _Request, *, last: bool = False) -> Any:
        # Sleep without a cancel point (Abort.FAILED): a cancelled caller still learns whether
        # its events were recorded. Cheaper than an Event plus a shielded CancelScope, which
        # matters on this path (one per append).
        if self._closing:
            raise WriterClosed("the event writer is shut down", "the daemon is stopping")
        request.task = trio.lowlevel.current_task()
        token = request.token = trio.lowlevel.current_trio_token()
        request.last = last
        gathering = self._gathering.get(token)
        if gathering is None:
            # The first append of this scheduler pass: hand the pass's appends over together
            # once every task the pass runs has had its turn (see `_hand_over`).
            gathering = self._gathering[token] = []
            token.run_sync_soon(self._hand_over, token)
        gathering.append(request)
        return await trio.lowlevel.wait_task_rescheduled(_uncancellable)

    def _hand_over(self, token: trio.lowlevel.TrioToken) -> None:
        """On the trio thread, one scheduler pass after the first append of a pass: queue
        every append that pass's tasks made, in order, with one wakeup of the writer thread.

        Appenders woken by the same commit run in the same pass, so they reach the thread
        as one group (one commit), and the thread is not woken, to compete for the GIL with
        the trio thread, while they are still being submitted: queued one at a time, a busy
        trio thread split every such group in two and paid a GIL hand-off for each."""
        requests = self._gathering.pop(token)
        refused: list[tuple[trio.lowlevel.Task, Any]] = []
        with self._cond:
            for request in requests:
                if self._closing:  # a `last` append went ahead, or the writer was closed
                    assert request.task is not None
                    refused.append((request.task, WriterClosed(
                        "the event writer is shut down", "the daemon is stopping")))
                    continue
                self._queue.append(request)
                self._closing = request.last  # under the lock: nothing can queue behind it
            self._cond.notify()
        if refused:
            _reschedule_all(refused)

    def _submit(self, request: _Request) -> None:
        with self._cond:
            if self._closing:
                raise WriterClosed("the event writer is shut down", "the daemon is stopping")
            self._queue.append(request)
            self._cond.notify()

    # --- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                idle = self._wait_for_work()
                if not idle and not self._queue:
                    break  # closing, and everything queued is committed
                call, group = (None, []) if idle else self._take()
            if idle:
                self._checkpoint()
                continue
            if call is not None:
                self._run_call(call)  # outside the lock: submitters never wait on it
                continue
            try:
                results = self.store.append_group([r.batch for r in group])
            except BaseException as exc:  # noqa: BLE001 - a bug here must not strand callers
                error = exc if isinstance(exc, Exception) else StoreError(f"writer failed: {exc}")
                results = [error for _ in group]
            self.commits += 1
            self._uncheckpointed += 1
            fresh: list[Envelope] = []
            for result in results:
                if isinstance(result, list):
                    fresh.extend(e for e in result if e.seq > self._published)
            if fresh:
                self._published = fresh[-1].seq
                self._publish(fresh)
            # One wakeup per trio run, not per caller: each run_sync_soon writes to its wakeup fd.
            wake: dict[trio.lowlevel.TrioToken, list[tuple[trio.lowlevel.Task, Any]]] = {}
            for request, result in zip(group, results, strict=True):
                request.result = result
                if request.future is not None:
                    if isinstance(result, Exception):
                        request.future.set_exception(result)
                    else:
                        request.future.set_result(result)
                else:
                    assert request.token is not None and request.task is not None
                    wake.setdefault(request.token, []).append((request.task, result))
            for token, items in wake.items():
                _call_soon(token, _reschedule_all, items)
        with self._sub_lock:
            self._finished = True
            subscribers = list(self._subscribers)
        for sub in subscribers:
            _call_soon(sub._token, sub._close_soon)

    def _wait_for_work(self) -> bool:
        """Under the lock: wait for a request or shutdown; True when the wait timed out after
        a commit instead, and the WAL is due its idle checkpoint."""
        while not self._queue and not self._closing:
            if self._uncheckpointed < self.idle_checkpoint_commits:
                self._cond.wait()
            elif not self._cond.wait(self.idle_checkpoint_s):
                return True
        return False

    def _take(self) -> tuple[_Request | None, list[_Request]]:
        """Under the lock: the next maintenance call alone, or the next group of appends."""
        if self._queue[0].call is not None:
            return self._queue.popleft(), []
        group: list[_Request] = []
        while self._queue and self._queue[0].call is None and len(group) < MAX_GROUP:
            group.append(self._queue.popleft())
        return None, group

    def _checkpoint(self) -> None:
        self._uncheckpointed = 0
        try:
            self.store.checkpoint()
        except Exception:  # noqa: BLE001 - a failed checkpoint is retried after the next commit
            return
        self.checkpoints += 1

    def _run_call(self, request: _Request) -> None:
        assert request.call is not None and request.token is not None and request.task is not None
        try:
            result = request.call()
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            result = exc
        if isinstance(result, Published):  # a call that appended (compaction): tell followers
            fresh = [e for e in result.envelopes if e.seq > self._published]
            if fresh:
                self._published = fresh[-1].seq
                self._publish(fresh)
            result = result.value
        _call_soon(request.token, _reschedule_all, [(request.task, result)])

    def _publish(self, envelopes: list[Envelope]) -> None:
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if not _call_soon(sub._token, sub._deliver, envelopes):
                self._unsubscribe(sub)

    # --- subscriptions ---------------------------------------------------------------------

    def subscribe(self, *, max_buffer: int = 10_000) -> Subscription:
        """Subscribe the calling trio task's run to envelopes committed from now on."""
        sub = Subscription(self, trio.lowlevel.current_trio_token(), max_buffer)
        with self._sub_lock:
            if self._finished:  # nothing more will ever be published
                sub.closed = True
            else:
                self._subscribers.add(sub)
        return sub

    @property
    def published_seq(self) -> int:
        """The last seq delivered to subscribers."""
        return self._published

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._sub_lock:
            self._subscribers.discard(sub)

    # --- shutdown --------------------------------------------------------------------------

    def close_nowait(self) -> None:
        """Refuse new appends; the thread commits what is queued, then exits."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def _uncancellable(raise_cancel: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _reschedule_all(items: list[tuple[trio.lowlevel.Task, Any]]) -> None:
    for task, result in items:
        trio.lowlevel.reschedule(task, outcome.Value(result))


def _call_soon(token: trio.lowlevel.TrioToken, fn: Any, *args: Any) -> bool:
    try:
        token.run_sync_soon(fn, *args)
    except trio.RunFinishedError:
        return False
    return True


async def run_in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking store call (a read) in a worker thread: events/follow.py's only way to
    reach trio, so this module stays the one place in events/ that imports it."""
    return await trio.to_thread.run_sync(fn)


async def sleep(seconds: float) -> None:
    await trio.sleep(seconds)


@asynccontextmanager
async def open_store_writer(
    store: EventStore[Any],
    *,
    idle_checkpoint_s: float = IDLE_CHECKPOINT_S,
    idle_checkpoint_commits: int = IDLE_CHECKPOINT_COMMITS,
) -> AsyncIterator[StoreWriter]:
    """Run a `StoreWriter` for the duration of the block; queued appends finish on exit."""
    writer = StoreWriter(
        store,
        idle_checkpoint_s=idle_checkpoint_s,
        idle_checkpoint_commits=idle_checkpoint_commits,
    )
    writer.start()
    try:
        yield writer
    finally:
        writer.close_nowait()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(writer.join)
