"""Load, L-01, in process: the puller's single-flight per blob against the misbehaving fake
registry of the integration tests, whose request log shows every blob GET. A download that
fails for a reason of the blob fails every waiter with that error after one download; a
waiter that is cancelled does not cancel the download the others wait for.

I/O: the fake registry (threads on 127.0.0.1), a temp state root with the puller's stores.
"""

# ruff: noqa: F811 - the fixtures are imported by name and taken as parameters
from __future__ import annotations

import pytest
import trio

from engine.core.errors import ShipslogError
from tests.integration.test_registry_misbehaving import (  # noqa: F401 - fixtures
    Env,
    Fake,
    Image,
    _ok,
    env,
    fake,
    image,
)


async def _blob_requests(fake: Fake, image: Image, at_least: int) -> None:
    while len([r for r in fake.requests("blob") if image.layer_digest in r["path"]]) < at_least:
        await trio.sleep(0.01)


async def test_a_failed_shared_download_fails_every_waiter_once(env: Env, fake: Fake,
                                                                image: Image) -> None:
    bad = bytearray(image.layer)
    bad[len(bad) // 2] ^= 0xFF
    fake.wrong_blob = bytes(bad)
    fake.script = {"blob": ["slow"]}  # hold the first download until the others wait
    errors: list[str] = []

    async def one() -> None:
        with pytest.raises(ShipslogError) as info:
            await env.pull(fake.domain)
        errors.append(info.value.message)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
        await _blob_requests(fake, image, 1)
        await trio.sleep(0.2)
        fake.release.set()
    assert len(errors) == 3 and all("unexpected commit digest" in e for e in errors), errors
    gets = [r for r in fake.requests("blob") if image.layer_digest in r["path"]]
    assert [bool(r["range"]) for r in gets] == [False, True]  # one download and its resume
    assert env.leftovers() == [] and not env.content.has(image.layer_digest)
    assert len(env.failures()) == 3


async def test_a_cancelled_waiter_does_not_cancel_the_download(env: Env, fake: Fake,
                                                               image: Image) -> None:
    fake.script = {"blob": ["slow"]}
    done: list[str] = []
    cancelled = trio.CancelScope()

    async def one(tag: str) -> None:
        await env.pull(fake.domain)
        done.append(tag)

    async def cancelled_waiter() -> None:
        with cancelled:
            await env.pull(fake.domain)
        done.append("cancelled" if cancelled.cancelled_caught else "cancelled-finished")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "owner")
        await _blob_requests(fake, image, 1)  # the owner's download has begun
        nursery.start_soon(one, "other")
        nursery.start_soon(cancelled_waiter)
        await trio.sleep(0.3)  # both are waiting on the owner's download
        cancelled.cancel()
        await trio.sleep(0.1)
        fake.release.set()
    assert sorted(done) == ["cancelled", "other", "owner"], done
    _ok(env, image)
    gets = [r for r in fake.requests("blob") if image.layer_digest in r["path"]]
    assert [bool(r["range"]) for r in gets] == [False, True]  # one download and its resume
