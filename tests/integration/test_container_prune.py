"""`docker container prune` and `shipslog container prune` on a real daemon: stopped
containers go (and are recorded as removed by the caller), running ones stay, label and
until filters pick, and without -f nothing happens unless the user says yes."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from engine.testing.cli import shipslog

pytestmark = [pytest.mark.kernel]




def names(daemon: Any) -> set[str]:
    return {c["Names"][0].lstrip("/") for c in
            daemon.client().get_json("/containers/json", {"all": 1})}


def test_prune_takes_stopped_containers_only_and_asks_first(daemon: Any) -> None:
    for name, labels in (("done1", ["keep=no"]), ("done2", ["keep=yes"]), ("fresh", [])):
        args = [a for label in labels for a in ("--label", label)]
        assert shipslog(daemon, "create", "--name", name, *args, "busybox", "true")[0] == 0
    assert shipslog(daemon, "run", "-d", "--name", "alive", "busybox", "sleep", "60")[0] == 0

    code, out, err = shipslog(daemon, "container", "prune", stdin=b"n\n")
    assert code == 0 and "Are you sure" in err and out == ""
    assert names(daemon) == {"done1", "done2", "fresh", "alive"}

    code, out, _ = shipslog(daemon, "container", "prune", "-f", "--filter", "label=keep=no")
    assert code == 0 and out.startswith("Deleted Containers:\n")
    assert names(daemon) == {"done2", "fresh", "alive"}

    code, out, _ = shipslog(daemon, "container", "prune", "--filter", "until=1h",
                            stdin=b"y\n")
    assert code == 0 and "Deleted Containers" not in out  # all are newer than an hour

    if shutil.which("docker"):
        p = subprocess.run(["docker", "container", "prune", "-f"], capture_output=True,
                           text=True, env=daemon.cli_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        assert "Total reclaimed space" in p.stdout
    else:
        assert shipslog(daemon, "container", "prune", "-f")[0] == 0
    assert names(daemon) == {"alive"}
    code, _, err = shipslog(daemon, "container", "prune", "-f", "--filter", "bogus=1")
    assert code != 0 and "invalid filter" in err
    assert shipslog(daemon, "rm", "-f", "alive")[0] == 0


def test_system_prune_and_image_prune(daemon: Any) -> None:
    assert shipslog(daemon, "create", "--name", "old", "busybox", "true")[0] == 0
    assert shipslog(daemon, "network", "create", "unused")[0] == 0
    code, out, err = shipslog(daemon, "system", "prune", "-f")
    assert code == 0, err
    assert "Deleted Containers:" in out and "Deleted Networks:\nunused" in out
    assert "Total reclaimed space" in out and names(daemon) == set()
    code, out, _ = shipslog(daemon, "image", "prune", "-f")  # busybox is tagged: not dangling
    assert code == 0 and "Deleted Images" not in out
    code, out, _ = shipslog(daemon, "image", "prune", "-a", "-f")
    assert code == 0 and "untagged: busybox:latest" in out
    assert daemon.client().get_json("/images/json") == []
