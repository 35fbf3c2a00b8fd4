"""Fields of `docker inspect` that scripts and Compose read, on both engines: a running
container's aliases on a user network include its short ID, the legacy IPv6 fields at the top
of NetworkSettings are there (a template reading them prints "", not "<no value>"), and
`Config.Volumes` lists anonymous volumes only, and `GraphDriver.Data` names the overlay
directories a script on the host can read the container's files through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel

SUBNET = "10.213.21.0/24"


def test_inspect_fields_scripts_read(engine: Engine) -> None:
    docker(engine, "network", "create", "--subnet", SUBNET, "fieldsnet")
    try:
        cid = docker(engine, "run", "-d", "--name", "fields", "--network", "fieldsnet",
                     "-v", "fieldsvol:/data", "-v", "/anon", "busybox", "sleep", "300"
                     ).stdout.strip()
        [info] = json.loads(docker(engine, "inspect", "fields").stdout)
        assert info["NetworkSettings"]["Networks"]["fieldsnet"]["Aliases"] == [cid[:12]]
        assert info["Config"]["Volumes"] == {"/anon": {}}
        shown = docker(engine, "inspect", "-f",
                       "{{.NetworkSettings.GlobalIPv6Address}}|{{.NetworkSettings.IPv6Gateway}}|"
                       "{{.NetworkSettings.GlobalIPv6PrefixLen}}|"
                       "{{.NetworkSettings.SecondaryIPAddresses}}", "fields").stdout.strip()
        assert shown == "||0|[]"
        docker(engine, "exec", "fields", "sh", "-c", "echo from-inside > /written")
        data = info["GraphDriver"]["Data"]
        assert Path(data["MergedDir"], "written").read_text() == "from-inside\n"
        assert Path(data["UpperDir"], "written").read_text() == "from-inside\n"
        assert Path(data["MergedDir"], "bin", "busybox").is_file()
        [image] = json.loads(docker(engine, "image", "inspect", "busybox").stdout)
        assert Path(image["GraphDriver"]["Data"]["UpperDir"], "bin", "busybox").is_file()
    finally:
        docker(engine, "rm", "-f", "-v", "fields", check=False)
        docker(engine, "volume", "rm", "fieldsvol", check=False)
        docker(engine, "network", "rm", "fieldsnet", check=False)
