"""A whole engine on recording fakes: the real store, journal, supervisor, service and
recovery, with fakes where the kernel would be.

I/O: the event store (in memory or a file the test names); no kernel. A `Machine` is what
survives a simulated crash (the fakes' kernel state and the database file); an `EngineRig`
is one daemon run on top of it. `crash_and_restart` drops the running daemon without any
cleanup and starts a new one on the same machine, running recovery — the in-process twin of
kill -9 followed by a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from engine.shell.files import FileService
from engine.shell.journal import Journal
from engine.shell.network import NetworkOps
from engine.shell.recovery import Recovery
from engine.shell.service import Engine
from engine.shell.supervisor import Drivers, Supervisor
from engine.testing.fakes import (
    FakeFiles,
    FakeLayers,
    FakeNetKernel,
    FakeRuntime,
    FakeSecrets,
    FakeSnapshots,
    FakeSpecs,
    FakeVolumes,
    Faults,
    fake_network,
)
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Pending, stream_of
from events.store import EventStore
from events.values import ImageConfig
from events.writer import open_store_writer
from projections.engine import EngineProjection

BUSYBOX_ID = "sha256:" + "b" * 64
LAYER = "sha256:" + "1" * 64


@dataclass
class Machine:
    """What a crash does not take away: the kernel (fakes) and the database."""

    db: Path
    faults: Faults = field(default_factory=Faults)
    secrets: FakeSecrets = field(default_factory=FakeSecrets)

    def __post_init__(self) -> None:
        self.layers = FakeLayers(self.faults)
        # A layer's directory is there while the fake layer store has it, as on disk.
        self.snapshots = FakeSnapshots(
            self.faults, layer_exists=lambda p: p.rsplit("/", 1)[-1] in self.layers.present)
        self.runtime = FakeRuntime(self.faults)
        self.files = FakeFiles(self.faults)
        self.volumes = FakeVolumes(self.faults)
        self.net = FakeNetKernel(self.faults)
        self.specs = FakeSpecs()

    def drivers(self) -> Drivers:
        return Drivers(snapshots=self.snapshots, runtime=self.runtime, secrets=self.secrets,
                       layers=self.layers, specs=self.specs, files=self.files,
                       volumes=self.volumes)


@dataclass
class EngineRig:
    machine: Machine
    store: EventStore
    journal: Journal
    supervisor: Supervisor
    engine: Engine
    nursery: trio.Nursery
    network: NetworkOps | None = None
    files: FileService | None = None


@asynccontextmanager
async def open_rig(machine: Machine, *, recover: bool = True, boot_changed: bool = False,
                   network: bool = True) -> AsyncIterator[EngineRig]:
    """`network`: the network seam on the machine's fake kernel, started and reconciled as
    shipslogd does (the default bridge is made on a fresh log)."""
    store = EventStore.open(machine.db, projection=EngineProjection())
    machine.runtime.rebind()
    try:
        async with open_store_writer(store) as writer, trio.open_nursery() as nursery:
            journal = Journal(store, writer)
            drivers = machine.drivers()
            net = None
            if network:
                net = NetworkOps(journal, fake_network(machine.faults, machine.net))
                await net.start(nursery)
                drivers.network = net
            sup = Supervisor(journal, drivers, nursery)
            engine = Engine(journal, sup, machine.secrets)
            if recover:
                await Recovery(sup, boot_changed=boot_changed).run()
                if net is not None:
                    await net.readopt()
                    await net.reconcile()
                    await net.sweep()
            files = FileService(engine, machine.snapshots, machine.layers, machine.volumes.path,
                                "/fake")
            yield EngineRig(machine, store, journal, sup, engine, nursery, net, files)
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def load_busybox(rig: EngineRig) -> None:
    """Record an image the way `load` would, without a real archive."""
    await rig.journal.append([
        Pending(stream=stream_of("layer", LAYER), event=v.LayerUnpacked(
            digest=LAYER, diff_id=LAYER, size=1)),
        Pending(stream=stream_of("image", BUSYBOX_ID), event=v.ImageLoaded(
            image_id=BUSYBOX_ID, repo_tags=("busybox:latest",), layers=(LAYER,),
            config=ImageConfig(cmd=("sh",), env=("PATH=/bin",)), size=1)),
    ], actor=SYSTEM_ACTOR, op_id="load")
    rig.machine.layers.present.add(LAYER)
