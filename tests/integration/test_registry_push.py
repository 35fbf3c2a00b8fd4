"""Push against the real registry server (Debian's `docker-registry`) on 127.0.0.1, through
the real `RegistryService` in this process (content, layer and event stores in a temp dir):
monolithic and chunked uploads, skipping blobs the registry has, cross-repository mounts,
and a push → pull round trip into a second, empty store that gives the same image id."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import ShipslogError
from engine.core.image_reference import parse_reference
from engine.core.images import decide_tag
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.registry.auth import CredentialStore
from engine.registry.service import RegistryService
from engine.shell.images import ImageOps
from engine.shell.journal import Journal
from engine.testing.localreg import LocalRegistry, free_port
from events.envelope import Actor
from events.store import EventStore
from events.writer import open_store_writer
from projections.engine import EngineProjection

ACTOR = Actor(uid=0, gid=0, pid=os.getpid(), via="api")


@dataclass
class Side:
    svc: RegistryService
    ops: ImageOps
    store: EventStore[Any]
    messages: list[dict[str, Any]]

    async def emit(self, m: dict[str, Any]) -> None:
        self.messages.append(m)

    async def push(self, ref: str, image: str = "busybox:latest") -> str:
        img = self.store.state.images[self.store.state.tags[image]]
        return await self.svc.push(parse_reference(ref), img, None, ACTOR, self.emit)

    def statuses(self) -> list[str]:
        return [m.get("status", "") for m in self.messages]


async def _side(root: Path) -> AsyncIterator[Side]:
    store: EventStore[Any] = EventStore.open(root / "events.db", projection=EngineProjection())
    try:
        async with open_store_writer(store) as writer:
            journal = Journal(store, writer)
            content, layers = ContentStore(root), LayerStore(root)
            (root / "tmp").mkdir(exist_ok=True)
            svc = RegistryService(journal, content, layers,
                                  credentials=CredentialStore(root / "none.json"))
            yield Side(svc, ImageOps(journal, content, layers, root / "tmp"), store, [])
            await svc.transport.aclose()
    finally:
        store.close()


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry.running(log_level="info") as reg:
        yield reg


@pytest.fixture
async def pusher(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path
                 ) -> AsyncIterator[Side]:
    async for side in _side(tmp_path_factory.mktemp("shipslog-push")):
        async def body() -> AsyncIterator[bytes]:
            with open(busybox_tar, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        await side.ops.load(body(), ACTOR)
        yield side


@pytest.fixture
async def puller(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Side]:
    async for side in _side(tmp_path_factory.mktemp("shipslog-pull")):
        yield side


def methods(reg: LocalRegistry) -> list[str]:
    return [line.split("http.request.method=")[1].split()[0]
            for line in (reg.base / "registry.log").read_text().splitlines()
            if "response completed" in line and "http.request.method=" in line]


async def test_monolithic_push_skip_and_round_trip(registry: LocalRegistry, pusher: Side,
                                                   puller: Side) -> None:
    ref = f"{registry.domain}/mono/busybox:v1"
    digest = await pusher.push(ref)
    assert "Pushed" in pusher.statuses() and "PATCH" not in methods(registry)
    assert f"v1: digest: {digest} size:" in " ".join(pusher.statuses())
    assert [m["aux"]["Digest"] for m in pusher.messages if "aux" in m] == [digest]
    pushed = [e.event for e in pusher.store.read() if type(e.event).__name__ == "ImagePushed"]
    assert [(p.reference, p.digest) for p in pushed] == [(ref, digest)]

    pusher.messages.clear()
    assert await pusher.push(ref) == digest  # same bytes, same manifest digest
    assert "Layer already exists" in pusher.statuses() and "Pushed" not in pusher.statuses()

    result = await puller.svc.pull(parse_reference(ref), None, None, ACTOR, puller.emit)
    assert result.image_id == pusher.store.state.tags["busybox:latest"]
    assert result.digest == digest


async def test_chunked_upload(registry: LocalRegistry, pusher: Side, puller: Side) -> None:
    pusher.svc.pusher.chunk_size = 256 << 10  # the busybox layer is ~2 MiB: 9 chunks
    ref = f"{registry.domain}/chunked/busybox:v1"
    digest = await pusher.push(ref)
    assert methods(registry).count("PATCH") >= 8
    result = await puller.svc.pull(parse_reference(ref), None, None, ACTOR, puller.emit)
    assert result.digest == digest
    assert result.image_id == pusher.store.state.tags["busybox:latest"]


async def test_cross_repository_mount(registry: LocalRegistry, pusher: Side) -> None:
    await pusher.push(f"{registry.domain}/first/busybox:v1")
    # The image now also carries a tag in another repository of the same registry.
    d = decide_tag(pusher.store.state, "busybox:latest", f"{registry.domain}/first/busybox:v1",
                   op_id="tag-1")
    await pusher.ops.journal.append(list(d.pending), actor=ACTOR, op_id="tag-1")
    pusher.messages.clear()
    await pusher.push(f"{registry.domain}/second/busybox:v1")
    assert any(s == "Mounted from first/busybox" for s in pusher.statuses()), pusher.statuses()
    assert "Pushed" not in pusher.statuses()


async def test_push_to_a_registry_that_is_not_there(pusher: Side) -> None:
    pusher.svc.policy = type(pusher.svc.policy)(attempts=2, base_delay=0.01)
    with pytest.raises(ShipslogError) as info:
        await pusher.push(f"127.0.0.1:{free_port()}/none/busybox:v1")
    assert "reachable" in info.value.hint
    failed = [e.event for e in pusher.store.read() if type(e.event).__name__ ==
              "OperationFailed"]
    assert failed and failed[-1].step == "push"
