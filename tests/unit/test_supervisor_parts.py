"""The supervisor is composed, not mixed (issue 16): its storage and network steps are
collaborators it holds, each seeing only the drivers it needs, and the step table sends the
storage steps to them."""

from __future__ import annotations

import inspect

from engine.shell.supervisor import Supervisor
from engine.shell.supervisor_network import NetworkSteps
from engine.shell.supervisor_storage import StorageSteps


def test_the_supervisor_inherits_no_steps() -> None:
    assert Supervisor.__bases__ == (object,)


def test_collaborators_see_only_their_drivers() -> None:
    assert list(inspect.signature(StorageSteps).parameters) == [
        "journal", "volumes", "layers", "append"]
    assert list(inspect.signature(NetworkSteps).parameters) == ["journal", "ops"]
