"""`docker system df` and `shipslog system df` against a real daemon: the writable layer,
volume contents and shared layers are measured on disk; `type=` picks the sections; the
answer also comes from `--root` when asked offline."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.testing import cli

pytestmark = [pytest.mark.kernel]


def shipslog(daemon: Any, *argv: str) -> str:
    return cli.shipslog(daemon, *argv, ok=True)[1]


def test_system_df_measures_writable_layers_and_volumes(daemon: Any) -> None:
    shipslog(daemon, "volume", "create", "blobs")
    shipslog(daemon, "run", "--name", "writer", "-v", "blobs:/data", "busybox", "sh", "-c",
             "head -c 300000 /dev/zero > /big; head -c 120000 /dev/zero > /data/v")
    df = daemon.client().get_json("/system/df")
    (c,) = df["Containers"]
    assert c["Names"] == ["/writer"] and 300_000 <= c["SizeRw"] < 400_000
    (img,) = df["Images"]
    assert img["Containers"] == 1 and img["SharedSize"] == 0
    assert c["SizeRootFs"] == c["SizeRw"] + img["Size"] and df["LayersSize"] == img["Size"]
    (vol,) = df["Volumes"]
    assert vol["UsageData"] == {"Size": 120_000, "RefCount": 1}
    only = daemon.client().get_json("/system/df", {"type": "volume"})
    assert set(only) == {"Volumes"}
    with pytest.raises(ApiError) as bad:
        daemon.client().get_json("/system/df", {"type": "nonsense"})
    assert bad.value.status == 400

    rows = [json.loads(line) for line in
            shipslog(daemon, "system", "df", "--format", "json").splitlines()]
    by_type = {r["Type"]: r for r in rows}
    assert by_type["Containers"]["TotalCount"] == 1 and by_type["Containers"]["Active"] == 0
    assert by_type["Containers"]["Reclaimable"].endswith("(100%)")  # it has exited
    assert by_type["Local Volumes"]["Size"] == "120kB"
    assert "Local Volumes space usage:" in shipslog(daemon, "system", "df", "-v")
    offline = shipslog(daemon, "--root", str(daemon.root), "system", "df")
    assert offline.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    if shutil.which("docker"):
        p = subprocess.run(["docker", "system", "df"], capture_output=True, text=True,
                           env=daemon.cli_env(), timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[2].split()[:3] == ["Containers", "1", "0"]
    shipslog(daemon, "rm", "writer")
    shipslog(daemon, "volume", "rm", "blobs")
