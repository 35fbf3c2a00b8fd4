"""The daemon's registry service: one connection pool, one token cache, one puller and one
pusher, and the background tasks that run pulls and pushes apart from the API connection.

I/O: network, the stores and the log, through the modules it wires. A pull started by an API
request runs in a background nursery (a trio system task), so a client that hangs up does
not cut a download other pulls may be waiting on (single-flight); its progress goes to the
request through a memory channel, and is dropped once nobody listens.

Settings from the environment (the daemon has no configuration file yet):
`SHIPSLOG_INSECURE_REGISTRIES` (comma-separated hosts spoken to over plain HTTP, as
`--insecure-registry`), `SHIPSLOG_PULL_TIMEOUT` (seconds, total per pull).
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from engine.core.errors import ShipslogError, user_error
from engine.core.image_documents import Platform
from engine.core.image_reference import Reference
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.registry.auth import Credentials, CredentialStore
from engine.registry.challenge import endpoint
from engine.registry.client import RegistryClient, RetryPolicy, TokenCache, Transport
from engine.registry.login import check_login
from engine.registry.pull import Puller, PullResult
from engine.registry.push import Pusher
from engine.shell.journal import Journal
from events.envelope import Actor
from projections.state import ImageView

Message = dict[str, Any]


class RegistryService:
    def __init__(self, journal: Journal, content: ContentStore, layers: LayerStore, *,
                 credentials: CredentialStore | None = None, insecure: tuple[str, ...] = (),
                 policy: RetryPolicy | None = None, total_timeout: float = 3600.0,
                 verify: Any = True) -> None:
        self.credentials = credentials or CredentialStore.default()
        self.insecure = insecure
        self.policy = policy or RetryPolicy()
        self.tokens = TokenCache()
        self.verify = verify
        self._transport: Transport | None = None
        self.puller = Puller(journal, content, layers, total_timeout=total_timeout)
        self.pusher = Pusher(journal, content)
        self._nursery: trio.Nursery | None = None
        self._ready: trio.Event | None = None

    @classmethod
    def from_env(cls, journal: Journal, content: ContentStore, layers: LayerStore
                 ) -> RegistryService:
        insecure = tuple(h.strip() for h in
                         os.environ.get("SHIPSLOG_INSECURE_REGISTRIES", "").split(",")
                         if h.strip())
        timeout = float(os.environ.get("SHIPSLOG_PULL_TIMEOUT") or 3600)
        return cls(journal, content, layers, insecure=insecure, total_timeout=timeout)

    @staticmethod
    def sweep(content: ContentStore, layers: LayerStore, tmp: Path | None = None) -> int:
        """What a killed pull left: partial ingests and staged layers (F-01). Only before
        the API serves, when no ingest or unpack can be running."""
        return content.sweep_ingest() + layers.sweep()

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(verify=self.verify)
        return self._transport

    def client(self, domain: str, creds: Credentials | None) -> RegistryClient:
        ep = endpoint(domain, self.insecure)
        return RegistryClient(ep, creds, self.transport, self.tokens, self.policy)

    async def credentials_for(self, domain: str, given: Credentials | None
                              ) -> Credentials | None:
        if given is not None:
            return given
        return await trio.to_thread.run_sync(self.credentials.lookup, domain)

    # -- background work -------------------------------------------------------------------

    async def _run_background(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            assert self._ready is not None
            self._ready.set()
            await trio.sleep_forever()

    async def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._ready is None:
            self._ready = trio.Event()
            trio.lowlevel.spawn_system_task(self._run_background)
        await self._ready.wait()
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def start(self, work: Callable[[Callable[[Message], Awaitable[None]]],
                                         Awaitable[None]]
                    ) -> trio.MemoryReceiveChannel[Message | ShipslogError]:
        """Run `work(emit)` in the background; its messages (and a final error) arrive on the
        returned channel, which closes when the work is done."""
        send, recv = trio.open_memory_channel[Message | ShipslogError](math.inf)

        async def emit(message: Message) -> None:
            try:
                send.send_nowait(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # nobody listens any more; the work goes on

        async def runner() -> None:
            with send:
                try:
                    await work(emit)
                except ShipslogError as exc:
                    try:
                        send.send_nowait(exc)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                except Exception as exc:  # noqa: BLE001 - a background task must not crash
                    # A full disk in a nursery's group is the user's to fix, not ours (issue 15)
                    err = user_error(exc) or ShipslogError(
                        f"internal error: {type(exc).__name__}: {exc}")
                    try:
                        send.send_nowait(err)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

        await self._spawn(runner)
        return recv

    # -- operations ------------------------------------------------------------------------

    async def pull(self, ref: Reference, platform: Platform | None, creds: Credentials | None,
                   actor: Actor, emit: Callable[[Message], Awaitable[None]]) -> PullResult:
        creds = await self.credentials_for(ref.domain, creds)
        return await self.puller.pull(self.client(ref.domain, creds), ref, actor, emit,
                                      platform=platform)

    async def push(self, ref: Reference, img: ImageView, creds: Credentials | None,
                   actor: Actor, emit: Callable[[Message], Awaitable[None]]) -> str:
        creds = await self.credentials_for(ref.domain, creds)
        return await self.pusher.push(self.client(ref.domain, creds), ref, img, actor, emit)

    async def login(self, domain: str, creds: Credentials) -> None:
        await check_login(self.client(domain, creds))
