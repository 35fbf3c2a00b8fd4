"""mypy's proof that every seam has two implementations of one shape: each real driver and
each recording fake is assigned to a variable typed with its seam's Protocol, so a method
that drifts (a missing keyword, another return type) is a type error in `.ci/run`'s mypy
run, before any contract test runs (issue 16: the runtime and secret seams had drifted
unnoticed while the supervisor typed its drivers `Any`).

I/O: none; the functions are never called (mypy checks their bodies), and
`tests/unit/test_seam_types.py` checks that every seam is listed here.
"""

from __future__ import annotations

from engine.drivers.host.files import ContainerFiles
from engine.drivers.host.seam import Files
from engine.drivers.layers.seam import Layers
from engine.drivers.layers.storage import ImageStorage
from engine.drivers.network.seam import NetworkKernel
from engine.drivers.runtime.execio import ExecProcess as LinuxExec
from engine.drivers.runtime.linux import LinuxRuntime
from engine.drivers.runtime.seam import ExecProcess, Runtime, SpecMaker
from engine.drivers.runtime.specs import SpecMaker as LinuxSpecMaker
from engine.drivers.secrets.seam import Secrets
from engine.drivers.secrets.store import SecretStore
from engine.drivers.snapshots.overlay import Snapshotter
from engine.drivers.snapshots.seam import Snapshots
from engine.drivers.volumes.linux import LocalVolumes
from engine.drivers.volumes.seam import Volumes
from engine.testing.fakes import (
    FakeExec,
    FakeFiles,
    FakeLayers,
    FakeRuntime,
    FakeSecrets,
    FakeSnapshots,
    FakeSpecs,
    FakeVolumes,
)

# seam Protocol -> (Linux implementation, recording fake), for the test that keeps this
# module complete
SEAMS: dict[type, tuple[type, type]] = {
    Runtime: (LinuxRuntime, FakeRuntime),
    ExecProcess: (LinuxExec, FakeExec),
    SpecMaker: (LinuxSpecMaker, FakeSpecs),
    Snapshots: (Snapshotter, FakeSnapshots),
    Layers: (ImageStorage, FakeLayers),
    Volumes: (LocalVolumes, FakeVolumes),
    Secrets: (SecretStore, FakeSecrets),
    Files: (ContainerFiles, FakeFiles),
}


def runtime(real: LinuxRuntime, fake: FakeRuntime) -> tuple[Runtime, Runtime]:
    return real, fake


def execs(real: LinuxExec, fake: FakeExec) -> tuple[ExecProcess, ExecProcess]:
    return real, fake


def specs(real: LinuxSpecMaker, fake: FakeSpecs) -> tuple[SpecMaker, SpecMaker]:
    return real, fake


def snapshots(real: Snapshotter, fake: FakeSnapshots) -> tuple[Snapshots, Snapshots]:
    return real, fake


def layers(real: ImageStorage, fake: FakeLayers) -> tuple[Layers, Layers]:
    return real, fake


def volumes(real: LocalVolumes, fake: FakeVolumes) -> tuple[Volumes, Volumes]:
    return real, fake


def secrets(real: SecretStore, fake: FakeSecrets) -> tuple[Secrets, Secrets]:
    return real, fake


def files(real: ContainerFiles, fake: FakeFiles) -> tuple[Files, Files]:
    return real, fake


# The network seam's own checks are in engine/drivers/network/linux.py (`linux_network`
# returns a NetworkKernel) and engine/testing/fakes.py (`fake_network`).
__all__ = ["SEAMS", "NetworkKernel"]
