"""`system check --repair` moves nothing on uncertain evidence, and `--restore` undoes what it
moved (issue 15 item 3), on a real daemon.

On a full disk the check cannot unpack a layer into scratch space to compare it: that is
"could not check layer …: no space left on device", never "damaged", and `--repair` leaves
the healthy layer where it is (before, it was quarantined and `run` failed with "layer
directory … is missing"). A layer that really is damaged is quarantined by `--repair` and put
back by `--restore`, each move recorded in the log.

I/O: a small tmpfs state root of its own (mounted and unmounted here), a real daemon on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.testing.daemon import DaemonProcess
from events.store import EventStore
from tests.faults.conftest import load_busybox, oracle
from tests.faults.test_enospc import fill, run_busybox
from tests.faults.test_enospc import small_daemon as small_daemon  # noqa: F401 - the fixture

pytestmark = pytest.mark.kernel


def check(d: DaemonProcess, **params: int) -> dict[str, object]:
    return d.client().post_json("/shipslog/system/check", params or None)  # type: ignore[no-any-return]


def layer_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "layers").iterdir() if not p.name.startswith("tmp-"))


def reasons(d: DaemonProcess, why: str) -> list[str]:
    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        return [env.event.action for env in store.read(types=["ReconcileDifferenceFound"])  # type: ignore[attr-defined]
                if env.event.reason == why]  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.fixture
def loaded(small_daemon: DaemonProcess, busybox_tar: Path) -> Iterator[DaemonProcess]:  # noqa: F811
    load_busybox(small_daemon, busybox_tar)
    yield small_daemon


@pytest.mark.slow
def test_full_disk_is_could_not_check_and_repair_moves_nothing(loaded: DaemonProcess) -> None:
    d = loaded
    before = layer_dirs(d.root)
    filler = fill(d.root, 0)
    try:
        report = check(d, repair=1)
    finally:
        filler.unlink()
    findings = report["Findings"]
    assert findings, "a check that could not unpack must say so"
    assert layer_dirs(d.root) == before  # the healthy layer was not moved
    for f in findings:  # type: ignore[attr-defined]
        assert f["Uncertain"] is True and f["Action"] == ""
        assert f["Problem"].startswith(f"could not check {f['Kind']} ")
        assert "no space left on device" in f["Problem"]
    assert layer_dirs(d.root) == before
    assert not (d.root / "quarantine").exists() or not any((d.root / "quarantine").rglob("*"))
    assert reasons(d, "system check --repair") == []
    run_busybox(d.client(), "after-check")  # the layer is still there
    assert check(d)["Findings"] == []
    assert oracle(d) == {}


@pytest.mark.slow
def test_restore_puts_back_what_repair_moved_and_records_it(loaded: DaemonProcess) -> None:
    d = loaded
    [layer] = layer_dirs(d.root)
    victim = next(p for p in (layer / "diff").rglob("*") if p.is_file() and not p.is_symlink())
    victim.write_bytes(victim.read_bytes() + b"damage")
    repaired = check(d, repair=1)["Findings"]
    assert [f["Action"].startswith("quarantined: ") for f in repaired] == [True]  # type: ignore[index, union-attr]
    assert not layer.exists()
    report = check(d, restore=1)
    [restored] = report["Restored"]  # type: ignore[misc]
    assert restored["Problem"] == "" and restored["Path"] == str(layer)
    assert layer.is_dir() and victim.read_bytes().endswith(b"damage")  # exactly what was moved
    assert [f["Problem"] for f in report["Findings"]] == [repaired[0]["Problem"]]  # type: ignore[index, union-attr]
    assert reasons(d, "system check --restore") == [f"restored: {layer}"]
    assert check(d, restore=1)["Restored"] == []  # nothing left in quarantine
