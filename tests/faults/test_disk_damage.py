"""On-disk damage at rest (RELIABILITY F-15, F-05): a truncated bundle config and container
log, a deleted layer directory, a flipped byte in a layer file, a deleted blob. The daemon
starts, `system check` reports each one, `--repair` quarantines what it can (and records it
in the log), and `rm -f` and `rmi -f` work on the damaged objects; a fresh load and run work
afterwards without manual cleanup.

I/O: real daemons; damages files under the daemon's state root while it is stopped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.cli.client import Client
from engine.core.image_reference import digest_hex
from engine.testing.daemon import DaemonProcess, cgroups_of
from events.store import EventStore
from tests.faults.conftest import load_busybox, oracle

pytestmark = pytest.mark.kernel

SLEEPER = {"Image": "busybox", "Cmd": ["sh", "-c", "echo hello; sleep 600"]}


def image_layers(c: Client) -> tuple[list[str], str]:
    """(diff_ids, first layer's blob digest) of busybox, through the projection's log."""
    info = c.get_json("/images/busybox/json")
    diff_ids = info["RootFS"]["Layers"]
    return diff_ids, ""


def layer_blob(d: DaemonProcess, diff_id: str) -> str:
    from projections.fold import fold

    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        state = fold(store.read())
    finally:
        store.close()
    for image in state.images.values():
        for did, blob in zip(image.layers, image.layer_digests, strict=False):
            if did == diff_id:
                return blob
    raise AssertionError(f"no blob for {diff_id}")


def a_regular_file(top: Path) -> Path:
    for p in sorted(top.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size > 1024:
            return p
    raise AssertionError("no regular file in the layer")


def check(c: Client, repair: bool = False) -> dict[str, object]:
    report: dict[str, object] = c.post_json("/shipslog/system/check",
                                            {"repair": 1} if repair else None)
    return report


def cli_check(d: DaemonProcess, *argv: str) -> tuple[int, str, str]:
    """`system check` through the CLI's own command function (the management-group wiring
    in engine/cli/main.py is the lead's: see the report)."""
    import argparse
    import io

    from engine.cli.context import Context
    from engine.cli.system import register_check

    parser = argparse.ArgumentParser()
    register_check(parser.add_subparsers())
    args = parser.parse_args(["check", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.func(Context(d.client, stdout=out, stderr=err), args)
    return code, out.getvalue(), err.getvalue()


def recorded_repairs(d: DaemonProcess) -> list[str]:
    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        return [env.event.subject for env in store.read()  # type: ignore[attr-defined]
                if env.type == "ReconcileDifferenceFound"
                and env.event.reason == "system check --repair"]  # type: ignore[attr-defined]
    finally:
        store.close()


DAMAGES = {
    "layer-dir-deleted": ("layer", "layer directory missing"),
    "layer-byte-flipped": ("layer", "layer file differs from its blob"),
    "blob-deleted": ("blob", "blob missing"),
    "bundle-config-truncated": ("container", "bundle config.json unreadable"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damage_is_reported_quarantined_and_removable(daemon: DaemonProcess,
                                                      busybox_tar: Path, damage: str) -> None:
    d, c = daemon, daemon.client()
    assert check(c)["Findings"] == [] and check(c)["Integrity"] == "ok"
    cid = c.post_json("/containers/create", {"name": "damaged"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{cid}/start")
    diff_id = image_layers(c)[0][-1]
    blob = layer_blob(d, diff_id)
    layer_dir = d.root / "layers" / digest_hex(diff_id)
    log = d.root / "containers" / cid / f"{cid}-json.log"
    d.stop()
    if damage == "layer-dir-deleted":
        # A lower layer of a mounted overlay: move it out of the store (what a careless
        # `rm -rf` of the directory does to the engine), keep the inode for the live mount.
        os.rename(layer_dir, d.base / "stolen-layer")
    elif damage == "layer-byte-flipped":
        victim = a_regular_file(layer_dir / "diff")
        with open(victim, "r+b") as f:
            f.seek(victim.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "blob-deleted":
        (d.root / "blobs" / "sha256" / digest_hex(blob)).unlink()
    else:
        (d.exec_root / "bundles" / cid / "config.json").write_bytes(b"")
        if log.exists():
            with open(log, "r+b") as f:
                f.truncate(max(log.stat().st_size - 3, 0))  # a torn last line
    d.start()  # start-up never crashes on damage
    c = d.client()
    kind, problem = DAMAGES[damage]
    findings = check(c)["Findings"]
    assert [(f["Kind"], f["Problem"].split(":")[0].strip()) for f in findings] \
        == [(kind, problem.split(":")[0])], findings
    assert not any(f["Action"] for f in findings)  # a plain check changes nothing
    code, out, err = cli_check(d)
    assert code == 1 and problem.split(":")[0] in out and "--repair" in err
    repaired = check(c, repair=True)["Findings"]
    if damage in ("layer-dir-deleted", "blob-deleted"):
        assert repaired[0]["Action"] == ""  # nothing left to move aside
    else:
        assert str(repaired[0]["Action"]).startswith("quarantined: ")
        assert Path(str(repaired[0]["Action"]).split(": ", 1)[1]).exists()
        assert recorded_repairs(d) == [f"{kind}:{repaired[0]['Subject']}"]
    assert c.request("GET", f"/containers/{cid}/logs", {"stdout": 1}).status == 200
    # rm -f and rmi -f work on the damaged objects.
    c.delete(f"/containers/{cid}", {"force": True})
    assert not [p for p in cgroups_of(d.root) if p.name == cid]
    c.delete("/images/busybox", {"force": True})
    assert c.get_json("/images/json") == []
    assert check(c)["Findings"] == []
    assert cli_check(d) == (0, "no damage found\n", "")
    assert oracle(d) == {}
    # Everything works again without manual cleanup.
    load_busybox(d, busybox_tar)
    again = c.post_json("/containers/create", {"name": "damaged"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{again}/start")
    assert check(c)["Findings"] == []
    c.delete(f"/containers/{again}", {"force": True})
    assert oracle(d) == {}
    shutil.rmtree(d.base / "stolen-layer", ignore_errors=True)
