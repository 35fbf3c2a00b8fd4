"""Local mode (`shipslog --root DIR`) and the daemon answer each read-only verb with the same
bytes (issue 16: both go through the read model, engine/shell/readmodel.py and
engine/api/docker/reads.py), asked of one state root while nothing appends. What only the
running daemon knows (runc's version, its fds and tasks, health probes, the image configs in
its content store) and how long a verify took are left out by the verbs' formats."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.test_history_cli import cli, head, settle

pytestmark = pytest.mark.kernel

VERBS = [
    ["ps", "-a", "--no-trunc", "--format",
     "{{.ID}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Names}}|{{.Ports}}|{{.Labels}}"],
    ["ps", "-a", "--format", "{{.Names}} {{.State}}", "--filter", "status=exited"],
    ["inspect", "--format", "{{json .State}} {{json .Config}} {{json .HostConfig}} "
     "{{json .Mounts}} {{.LogPath}} {{.Name}} {{.RestartCount}}", "job"],
    ["port", "web"],
    ["images", "--no-trunc"],
    ["logs", "job"], ["logs", "-t", "--tail", "1", "job"],
    ["info", "--format", "{{.ID}} {{.Containers}} {{.ContainersStopped}} {{.Images}} "
     "{{.DockerRootDir}} {{.KernelVersion}} {{.OperatingSystem}} {{.NCPU}}"],
    ["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"],
    ["system", "df"], ["system", "df", "--format", "json"],
    ["history", "job"], ["history", "web", "--format", "json"], ["history", "job", "--changes"],
    ["audit", "verify", "--format", "json"], ["audit", "who"], ["audit", "who", "web"],
    ["replay"], ["replay", "--explain", "job"],
    ["events", "--all", "--format", "json"], ["events", "--all", "--filter", "container=job"],
]


def make_scene(daemon: Any) -> int:
    """A volume, a running container with a published port, an exited one with output."""
    cli(daemon, "volume", "create", "data")
    cli(daemon, "run", "-d", "--name", "web", "-p", "127.0.0.1::80", "-v", "data:/data",
        "busybox", "sleep", "1000")
    settle(daemon, "web", "running")
    cli(daemon, "run", "-d", "--name", "job", "--label", "tier=batch", "busybox", "sh", "-c",
        "echo out; echo err >&2; exit 3")
    settle(daemon, "job", "exited")
    return still_head(daemon)


def still_head(daemon: Any) -> int:
    """The head once the log stands still (the run's last outcomes land after its exit)."""
    last = head(daemon)
    for _ in range(100):
        time.sleep(0.2)
        now = head(daemon)
        if now == last:
            return now
        last = now
    raise AssertionError("the log never stood still")


def test_root_and_daemon_say_the_same(daemon: Any) -> None:
    scene = make_scene(daemon)
    differ = []
    for argv in [*VERBS,
                 ["ps", "-a", "--at", f"seq:{scene - 3}", "--format", "{{.Names}} {{.State}}"],
                 ["state", "diff", "seq:1", f"seq:{scene}"],
                 ["events", "--since", "0", "--until", "1999999999", "--format", "json"]]:
        served = cli(daemon, *argv)
        local = cli(daemon, *argv, root=True)
        if local != served:
            differ.append(f"{' '.join(argv)}:\n  daemon: {served!r}\n  --root: {local!r}")
    assert head(daemon) == scene, "something appended while the two were asked"
    assert not differ, "\n".join(differ)
