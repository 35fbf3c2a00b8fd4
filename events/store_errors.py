"""The event store's errors, with the HTTP status the API answers each with.

I/O: none.
"""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store refuses or cannot do; `.hint` says what to do about it, `.status`
    the HTTP status an API boundary should answer with (the store's fault: 500)."""

    status = 500

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class StoreFull(StoreError):
    """The disk under the log is full (SQLITE_FULL): nothing of the batch was recorded."""

    status = 507


class ConcurrencyConflict(StoreError):
    """A stream moved on since the caller decided: re-read and decide again."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream} is at version {actual}, expected {expected}",
            "someone else changed this object at the same time; retry the command",
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StoreBusy(StoreError):
    """The write lock stayed held past the busy timeout."""




class StoreUnavailable(StoreError):
    """The database holding the log cannot be reached (a PostgreSQL server down or
    unreachable): nothing of the batch was recorded; the API answers 503."""

    status = 503
