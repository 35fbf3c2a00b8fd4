"""The engine's command surface: what the API handlers call.

I/O: through the journal (the log), the supervisor (the kernel) and the secret store.

Every command has the same shape (DESIGN.md, "The write path"): decide on the current state
(pure), append the decision's events in one transaction — re-deciding when another writer got
there first (`ConcurrencyConflict`) — then let the supervisor carry out the plan. Commands on
one container are serialised by a per-container lock, so a `rm` never overtakes a `start`
that is still creating the runtime.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
import trio

from engine.core import containers as cc
from engine.core import images as ci
from engine.core import links as cl
from engine.core import networks as cn
from engine.core import volumes as cv
from engine.core.decision import Decision
from engine.core.errors import Conflict, InvalidArgument, ShipslogError
from engine.core.lookup import find_container, find_network
from engine.core.names import generate_name
from engine.core.volume_plan import anonymous_needed
from engine.drivers.host import failpoints
from engine.shell.image_gate import gate_for
from engine.shell.journal import ConcurrencyConflict, Journal
from engine.shell.supervisor import Supervisor
from events.envelope import Actor, Pending, stream_of
from events.redact import RedactError, redact_env
from events.values import ContainerConfig
from events.vocabulary import NetworkRemoved, OperationCompleted, OperationFailed
from projections.state import ContainerView, EngineState, ImageView

MAX_ATTEMPTS = 8
log = logging.getLogger("shipslog.service")


class Engine:
    def __init__(self, journal: Journal, supervisor: Supervisor, secrets: Any) -> None:
        self.journal = journal
        self.supervisor = supervisor
        self.secrets = secrets
        self._locks: dict[str, trio.Lock] = {}
        self._random = random.SystemRandom()

    @property
    def state(self) -> EngineState:
        return self.journal.state

    def locked(self, cid: str) -> AbstractAsyncContextManager[None]:
        """Hold container `cid`'s lock: no start, stop or removal of it runs meanwhile (the
        files service mounts a stopped container's rootfs under it)."""
        return self._locked(cid)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def _locked(self, cid: str):  # type: ignore[no-untyped-def]
        lock = self._locks.setdefault(cid, trio.Lock())
        async with lock:
            yield
        if not lock.locked() and lock.statistics().tasks_waiting == 0:
            self._locks.pop(cid, None)

    async def decide_and_append(self, decide: Callable[[EngineState], Decision],
                                actor: Actor) -> Decision:
        """Decide on the latest state and append; on a lost race, decide again."""
        for _ in range(MAX_ATTEMPTS):
            decision = decide(self.journal.state)
            if decision.not_modified or not decision.pending:
                return decision
            try:
                await self.journal.append(decision.pending, actor=actor, op_id=decision.op_id)
                return decision
            except ConcurrencyConflict:
                continue
        raise Conflict("the object kept changing while the command was decided",
                       hint="try the command again")

    async def run(self, decide: Callable[[EngineState], Decision], actor: Actor,
                  lock: str | None = None, *, uses_image: bool = False) -> Decision:
        """`uses_image`: the command puts an image to use (create, start), so it decides and
        appends only while no rmi or prune is deciding (engine/shell/image_gate.py); once its
        operation is in the log, the image counts as in use."""
        if lock is None:
            return await self._decide_and_execute(decide, actor, uses_image)
        async with self._locked(lock):
            return await self._decide_and_execute(decide, actor, uses_image)

    async def _decide_and_execute(self, decide: Callable[[EngineState], Decision],
                                  actor: Actor, uses_image: bool) -> Decision:
        if uses_image:
            async with gate_for(self.journal).using():
                decision = await self.decide_and_append(decide, actor)
        else:
            decision = await self.decide_and_append(decide, actor)
        await self.supervisor.execute(decision, actor)
        return decision

    def _cid(self, ref: str) -> str:
        return find_container(self.state, ref).id

    # -- containers -----------------------------------------------------------------------

    async def create_container(self, *, name: str, config: ContainerConfig, env: list[str],
                               actor: Actor) -> tuple[str, list[str]]:
        cid = self.journal.new_id()
        op_id = self.journal.new_id()
        if not name:
            name = generate_name(self._random.choice, lambda n: n in self.state.names)
        try:
            entries = redact_env(self.secrets.key(), env)
        except RedactError as exc:  # a user's entry: a 400, never an internal error
            raise InvalidArgument(exc.message, exc.hint) from None
        config = msgspec.structs.replace(config, env=entries)
        # The values go to the 0600 secret store, never into the log (DESIGN.md "Secrets").
        if env:
            self.secrets.put(cid, env)
        anonymous = tuple(self.journal.new_id() for _ in range(anonymous_needed(config.mounts)))
        command = cc.CreateContainer(name=name, config=config, anonymous_ids=anonymous)
        try:
            decision = await self.run(
                lambda s: cc.decide_create(s, command, op_id=op_id, container_id=cid), actor,
                lock=cid, uses_image=True)
        except BaseException:
            if cid not in self.state.containers:
                self.secrets.wipe(cid)
            raise
        return cid, list(decision.warnings)

    async def start(self, ref: str, actor: Actor) -> bool:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        d = await self.run(lambda s: cc.decide_start(s, cid, op_id=op_id), actor, lock=cid,
                           uses_image=True)
        return not d.not_modified

    async def stop(self, ref: str, actor: Actor, *, timeout: int | None = None,
                   signal: str | None = None) -> bool:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        d = await self.run(lambda s: cc.decide_stop(s, cid, op_id=op_id, timeout=timeout,
                                                    signal=signal), actor, lock=cid)
        return not d.not_modified

    async def kill(self, ref: str, actor: Actor, *, signal: str = "SIGKILL") -> None:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_kill(s, cid, op_id=op_id, signal=signal), actor,
                       lock=cid)

    async def restart(self, ref: str, actor: Actor, *, timeout: int | None = None) -> None:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_restart(s, cid, op_id=op_id, timeout=timeout),
                       actor, lock=cid, uses_image=True)

    async def pause(self, ref: str, actor: Actor, *, pause: bool = True) -> None:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_pause(s, cid, op_id=op_id, pause=pause), actor,
                       lock=cid)

    async def update(self, ref: str, changes: Any, actor: Actor) -> None:
        """`docker update`: `changes` is a `ContainerUpdated` (its container id is filled)."""
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_update(s, cid, op_id=op_id, changes=changes), actor,
                       lock=cid)

    async def rename(self, ref: str, new_name: str, actor: Actor) -> None:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_rename(s, cid, new_name, op_id=op_id), actor,
                       lock=cid)

    async def remove(self, ref: str, actor: Actor, *, force: bool = False,
                     volumes: bool = False) -> None:
        cid = self._cid(ref)
        op_id = self.journal.new_id()
        await self.run(lambda s: cc.decide_remove(s, cid, op_id=op_id, force=force,
                                                  remove_volumes=volumes), actor, lock=cid)

    async def remove_link(self, ref: str, actor: Actor) -> None:
        """`docker rm --link /web/db`: `ref` is the link's path (parent/alias)."""
        op_id = self.journal.new_id()
        await self.run(lambda s: cl.decide_remove_link(s, ref, op_id=op_id), actor)

    async def wait(self, ref: str, condition: str = "not-running") -> ContainerView:
        """Docker's wait: `not-running` (default), `next-exit`, or `removed`.

        Returns the container as it was when the condition was met (for `removed`, the last
        view before removal) so the caller can report its exit code."""
        c = find_container(self.state, ref)
        cid, last = c.id, c
        if condition == "not-running" and c.status in ("created", "exited", "dead"):
            return c
        start_finished = c.finished_at if condition == "next-exit" else -1

        def done(s: EngineState) -> ContainerView | None:
            nonlocal last
            cur = s.containers.get(cid)
            if cur is None:
                return last
            last = cur
            if condition == "removed":
                return None
            if cur.status == "exited" and cur.finished_at != start_finished:
                return cur
            if condition == "not-running" and cur.status in ("created", "exited", "dead") \
                    and cur.status != "creating":
                return cur
            return None

        result: ContainerView = await self.journal.wait_for(done)
        return result

    # -- volumes --------------------------------------------------------------------------

    async def create_volume(self, name: str, actor: Actor, *, driver: str = "local",
                            labels: dict[str, str] | None = None,
                            options: dict[str, str] | None = None) -> str:
        anonymous = not name  # Docker 23+: an unnamed volume is anonymous (prune takes it)
        if not name:
            name = self.journal.new_id()
        op_id = self.journal.new_id()
        await self.run(lambda s: cv.decide_volume_create(
            s, name, op_id=op_id, driver=driver, labels=labels, options=options,
            anonymous=anonymous), actor, lock="volume-" + name)
        return name

    async def remove_volume(self, name: str, actor: Actor, *, force: bool = False) -> None:
        op_id = self.journal.new_id()
        await self.run(lambda s: cv.decide_volume_remove(s, name, op_id=op_id, force=force),
                       actor, lock="volume-" + name)

    # -- networks -------------------------------------------------------------------------

    def _network_ops(self) -> Any:
        net = self.supervisor.d.network
        if net is None:
            raise Conflict("networking is not available in this engine",
                           hint="start shipslogd with its network drivers")
        return net

    async def create_network(self, name: str, actor: Actor, **options: Any) -> str:
        ops = self._network_ops()
        nid = self.journal.new_id()
        op_id = self.journal.new_id()
        routes = await trio.to_thread.run_sync(ops.k.host.host_routes)
        # a macvlan/ipvlan parent is checked against the host's links (issue 20)
        links = await trio.to_thread.run_sync(ops.k.host.links) \
            if options.get("driver", "bridge") != "bridge" else {}
        d = await self.decide_and_append(lambda s: cn.decide_network_create(
            s, name, op_id=op_id, network_id=nid, host_routes=routes, by_user=True,
            host_links=links, **options), actor)
        try:
            await ops.setup_network(self.state.networks[d.target])
            failpoints.hit("net.after_network_setup")
        except Exception as exc:
            # Issue 13: a create the kernel refused (or half made) must not stay recorded
            # as a network, nor leave a bridge no event owns: undone, on the record.
            with trio.CancelScope(shield=True):
                await self._compensate_network_create(ops, d.target, op_id, exc, actor)
            raise
        return d.target

    async def _compensate_network_create(self, ops: Any, nid: str, op_id: str,
                                         exc: BaseException, actor: Actor) -> None:
        """Take down what `setup_network` made, then record the failure and the removal."""
        net = self.state.networks[nid]
        error, cleaned = str(exc) or type(exc).__name__, True
        try:
            await ops.teardown_network(net)
        except (ShipslogError, OSError) as undo:
            error, cleaned = f"{error}; cleanup failed: {undo}", False
        await self.journal.append([
            Pending(stream=stream_of("op", op_id), event=OperationFailed(
                op_id=op_id, step="network.create", error=error, needs_cleanup=not cleaned)),
            Pending(stream=stream_of("network", nid), event=NetworkRemoved(network_id=nid))],
            actor=actor, op_id=op_id)

    async def remove_network(self, ref: str, actor: Actor) -> None:
        ops = self._network_ops()
        op_id = self.journal.new_id()
        net = find_network(self.state, ref)
        await self.decide_and_append(lambda s: cn.decide_network_remove(s, ref, op_id=op_id),
                                     actor)
        try:
            await ops.teardown_network(net)
        except (ShipslogError, OSError) as exc:
            await self.journal.append([Pending(stream=stream_of("op", op_id), event=OperationFailed(
                op_id=op_id, step="network.remove", error=str(exc), needs_cleanup=True))],
                actor=actor, op_id=op_id)
            raise
        await self.journal.append([Pending(stream=stream_of("op", op_id),
                                           event=OperationCompleted(op_id=op_id))],
                                  actor=actor, op_id=op_id)

    async def connect_network(self, net_ref: str, container_ref: str, actor: Actor, *,
                              aliases: tuple[str, ...] = (), ip: str = "",
                              ip6: str = "") -> None:
        ops = self._network_ops()
        net = find_network(self.state, net_ref)
        c = find_container(self.state, container_ref)
        if (ip or ip6) and net.name == "bridge":
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only", hint="connect to a network you created")
        if c.id in net.endpoints:
            raise Conflict(f"endpoint with name {c.name} already exists in network {net.name}",
                           hint="it is connected already")
        if c.status not in ("running", "paused"):
            # Recorded, joined at its next start (Docker's ConnectToNetwork when not running).
            op_id = self.journal.new_id()
            await self.run(lambda s: cn.decide_connect_at_start(
                s, net.id, c.id, op_id=op_id, ip=ip, aliases=aliases, ip6=ip6), actor,
                lock=c.id)
            return
        if not ip and not ip6:
            async with self._locked(c.id):
                await ops.connect_live(c, net, self.journal.new_id(), actor, aliases)
            return
        # A static address is recorded first (NetworkAddressAllocated, checked by IPAM); the
        # connect then keeps the allocation it finds, and a refused connect gives it back.
        if ip6 and not net.subnet6:
            raise InvalidArgument(f"network {net.name} has no IPv6 subnet for {ip6}",
                                  hint="create the network with --ipv6 --subnet <v6 CIDR>")
        op_id = self.journal.new_id()
        try:
            if ip:
                await ops.reserve_address(c, net, ip, op_id, actor)
            if ip6:  # issue 13: `network connect --ip6`
                await ops.reserve_address(c, net, ip6, op_id, actor, family=6)
            await self.connect_network(net.id, c.id, actor, aliases=aliases)
        except BaseException:
            with trio.CancelScope(shield=True):
                await ops.release_reserved(c.id, net.id, op_id, actor)
            raise

    async def disconnect_network(self, net_ref: str, container_ref: str, actor: Actor) -> None:
        ops = self._network_ops()
        net = find_network(self.state, net_ref)
        c = find_container(self.state, container_ref)
        if c.status not in ("running", "paused") and c.id not in net.endpoints:
            op_id = self.journal.new_id()
            await self.run(lambda s: cn.decide_disconnect_at_start(s, net.id, c.id,
                                                                   op_id=op_id),
                           actor, lock=c.id)
            return
        if c.id not in net.endpoints:
            raise Conflict(f"container {c.id} is not connected to network {net.name}",
                           hint="nothing to disconnect")
        async with self._locked(c.id):
            await ops.disconnect_live(c, net, self.journal.new_id(), actor)
            if net.id in self.state.containers[c.id].joins:  # or it comes back at start
                op_id = self.journal.new_id()
                await self.decide_and_append(lambda s: cn.decide_disconnect_at_start(
                    s, net.id, c.id, op_id=op_id), actor)

    # -- images ---------------------------------------------------------------------------

    async def tag(self, source: str, target: str, actor: Actor) -> None:
        op_id = self.journal.new_id()
        await self.run(lambda s: ci.decide_tag(s, source, target, op_id=op_id), actor)

    async def remove_image(self, ref: str, actor: Actor, *, force: bool = False) -> Decision:
        op_id = self.journal.new_id()
        async with gate_for(self.journal).deleting():
            return await self.run(lambda s: ci.decide_remove_image(s, ref, op_id=op_id,
                                                                   force=force), actor)

    async def prune_images(self, actor: Actor, *, dangling_only: bool = True) -> list[ImageView]:
        """Remove the images nothing uses (engine/core/images.prunable_images); returns them."""
        op_id = self.journal.new_id()
        async with gate_for(self.journal).deleting():
            before = dict(self.state.images.items())
            await self.run(lambda s: ci.decide_prune_images(s, op_id=op_id,
                                                            dangling_only=dangling_only),
                           actor)
        return [img for iid, img in before.items() if iid not in self.state.images]
