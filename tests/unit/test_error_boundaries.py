"""How failures become a user's error at the boundaries (issue 15 item 6): single-leaf trio
groups unwrapped, OSError errno mapped to one clear line (`engine.core.errors`), and the API's
handler boundary answering with them instead of "internal error: ExceptionGroup". Pure:
exceptions and the router's error boundary called in-process."""

from __future__ import annotations

import errno

import msgspec
import pytest

from engine.api.server.router import App, Request, Response, Router
from engine.core.errors import (
    KernelError,
    NoSpace,
    NotFound,
    Unavailable,
    from_os_error,
    leaf_of,
    user_error,
)
from events.envelope import Actor


def group(*excs: Exception) -> ExceptionGroup[Exception]:
    return ExceptionGroup("Exceptions from Trio nursery", list(excs))


def test_leaf_of_unwraps_single_leaf_groups_only() -> None:
    leaf = NotFound("No such container: x")
    assert leaf_of(group(group(leaf))) is leaf
    two = group(leaf, KernelError("other"))
    assert leaf_of(two) is two
    assert leaf_of(leaf) is leaf


@pytest.mark.parametrize("exc, kind, message", [
    (OSError(errno.ENOSPC, "No space left on device", "/var/lib/shipslog/ingest/x"), NoSpace,
     "write /var/lib/shipslog/ingest/x: no space left on device"),
    (OSError(errno.ENOSPC, "No space left on device"), NoSpace, "no space left on device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/v"), NoSpace,
     "write /v: disk quota exceeded"),
    (OSError(errno.EMFILE, "Too many open files"), Unavailable, "too many open files"),
    (OSError(errno.EADDRINUSE, "Address already in use"), KernelError,
     "address already in use"),
    (OSError(errno.EACCES, "Permission denied", "/x"), KernelError, "/x: permission denied"),
])
def test_os_errors_become_one_line(exc: OSError, kind: type, message: str) -> None:
    err = from_os_error(exc)
    assert (type(err), err.message) == (kind, message)
    assert err.hint or kind is KernelError and exc.errno == errno.EACCES
    wrapped = user_error(group(exc), "pulling busybox")
    assert wrapped is not None and wrapped.message == f"pulling busybox: {message}"


def test_user_error_leaves_bugs_to_the_caller() -> None:
    assert user_error(group(TypeError("bug"))) is None
    assert user_error(group(ValueError("a"), ValueError("b"))) is None


def _request() -> Request:
    return Request(method="GET", path="/x", params={}, query={}, headers={},
                   api_version="1.43", actor=Actor(uid=0, gid=0, pid=1))


@pytest.mark.parametrize("raised, status, message", [
    (group(OSError(errno.ENOSPC, "No space left on device", "/root/ingest/x")), 507,
     "write /root/ingest/x: no space left on device"),
    (OSError(errno.ENOSPC, "No space left on device", "/root/layers/tmp-1/a"), 507,
     "write /root/layers/tmp-1/a: no space left on device"),
    (group(group(OSError(errno.EMFILE, "Too many open files"))), 503, "too many open files"),
])
async def test_api_boundary_answers_with_the_users_words(raised: BaseException, status: int,
                                                         message: str) -> None:
    router = Router()

    @router.route("GET", "/x")
    async def handler(req: Request) -> Response:
        raise raised

    app = App(router)
    route, _ = app.router.match("GET", "/x")
    resp = await app.call(route, _request())
    assert resp.status == status
    assert msgspec.json.decode(resp.body) == {"message": message}
