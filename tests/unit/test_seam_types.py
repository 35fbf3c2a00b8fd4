"""One folder per seam (issue 16): each seam's Protocol lives in engine/drivers/<seam>/seam.py
beside its Linux implementation, and engine/testing/seams.py lists every Protocol with its
real driver and its fake, so mypy proves both satisfy it. This test keeps that list complete
and the implementations in their seam's folder.

I/O: imports the seam modules; no kernel.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Protocol

from engine.testing.seams import SEAMS

DRIVERS = Path(__file__).resolve().parents[2] / "engine" / "drivers"
# Protocols that are parts of another seam's answer, not seams of their own
PARTS = {"AttachSession"}


def _protocols() -> dict[str, type]:
    out: dict[str, type] = {}
    for seam in sorted(DRIVERS.glob("*/seam.py")):
        if seam.parent.name == "network":  # checked by its own contract and linux_network
            continue
        mod = importlib.import_module(f"engine.drivers.{seam.parent.name}.seam")
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and obj.__module__ == mod.__name__
                    and Protocol in getattr(obj, "__mro__", ()) and name not in PARTS):
                out[f"{seam.parent.name}.{name}"] = obj
    return out


def test_every_seam_protocol_has_a_driver_and_a_fake() -> None:
    protocols = _protocols()
    assert protocols, "no seam.py found"
    missing = sorted(k for k, p in protocols.items() if p not in SEAMS)
    assert not missing, f"seams without a listed driver and fake: {missing}"


def test_each_driver_lives_in_its_seams_folder() -> None:
    for protocol, (real, _fake) in SEAMS.items():
        folder = protocol.__module__.rsplit(".", 1)[0]
        assert real.__module__.startswith(folder + "."), (protocol, real.__module__)


def test_drivers_and_fakes_have_every_member() -> None:
    for protocol, impls in SEAMS.items():
        # methods; a Protocol's properties may be plain attributes set in __init__ (mypy
        # checks those through engine/testing/seams.py)
        members = {n for n, obj in vars(protocol).items()
                   if not n.startswith("_") and not isinstance(obj, property)}
        for impl in impls:
            lacking = sorted(m for m in members if not callable(getattr(impl, m, None)))
            assert not lacking, f"{impl.__name__} lacks {lacking} of {protocol.__name__}"
