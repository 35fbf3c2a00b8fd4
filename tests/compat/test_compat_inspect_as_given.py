"""`docker inspect` keeps the create options it was given as they were written, on both
engines: `HostConfig.Binds` and `HostConfig.Tmpfs` hold the client's strings (an explicit
`:rw`, a size in the user's units), and each mount's `Mode` is the options written after the
target (named volumes without any: `z`, Docker's default label option)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel


def test_binds_tmpfs_and_mount_modes_read_back_as_given(engine: Engine, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    docker(engine, "create", "--name", "given", "--network", "none",
           "-v", f"{a}:/a:rw", "-v", f"{b}:/b", "-v", "givenvol:/data:ro",
           "-v", "givenvol2:/more",
           "--tmpfs", "/run:size=64m,mode=1777", "--tmpfs", "/t", "busybox", "true")
    try:
        [info] = json.loads(docker(engine, "inspect", "given").stdout)
        host = info["HostConfig"]
        # (the docker CLI sends its -v list in map order: the order is not the user's)
        assert sorted(host["Binds"]) == sorted(
            [f"{a}:/a:rw", f"{b}:/b", "givenvol:/data:ro", "givenvol2:/more"])
        assert host["Tmpfs"] == {"/run": "size=64m,mode=1777", "/t": ""}
        modes = {mt["Destination"]: (mt["Type"], mt["Mode"], mt["RW"]) for mt in info["Mounts"]}
        assert modes == {"/a": ("bind", "rw", True), "/b": ("bind", "", True),
                         "/data": ("volume", "ro", False), "/more": ("volume", "z", True)}
    finally:
        docker(engine, "rm", "-f", "given")
        docker(engine, "volume", "rm", "givenvol", "givenvol2", check=False)


def test_mount_api_mounts_stay_out_of_binds_and_tmpfs(engine: Engine, tmp_path: Path) -> None:
    c = tmp_path / "c"
    c.mkdir()
    docker(engine, "create", "--name", "given2", "--network", "none",
           "--mount", "type=volume,src=givenvol3,dst=/m3",
           "--mount", f"type=bind,src={c},dst=/m4,readonly",
           "--mount", "type=tmpfs,dst=/m5,tmpfs-size=1048576",
           "-v", "/anon", "busybox", "true")
    try:
        [info] = json.loads(docker(engine, "inspect", "given2").stdout)
        host = info["HostConfig"]
        # Docker leaves an empty Tmpfs out; shipslog sends null (the same to every client)
        assert host["Binds"] is None and host.get("Tmpfs") is None
        modes = {mt["Destination"]: (mt["Type"], mt["Mode"], mt["RW"]) for mt in info["Mounts"]}
        assert modes == {"/m3": ("volume", "z", True), "/m4": ("bind", "", False),
                         "/m5": ("tmpfs", "", True), "/anon": ("volume", "", True)}
    finally:
        docker(engine, "rm", "-f", "-v", "given2")
        docker(engine, "volume", "rm", "givenvol3", check=False)
