"""`system check` calls only positive evidence damage (issue 15 item 3): an error injected
into the checker's read path (EIO, EACCES, EMFILE) is "could not check …", and repair never
moves an object on such a finding; a quarantined object goes back with `restore_quarantined`.

I/O: files under pytest's tmp_path only.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from engine.admin import check as sc
from engine.drivers.layers.content import ContentStore
from engine.shell.paths import Paths


def _store_blob(tmp_path: Path, data: bytes) -> tuple[ContentStore, str]:
    content = ContentStore(tmp_path)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = content.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return content, digest


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES, errno.EMFILE, errno.ENOSPC])
def test_a_read_error_is_could_not_check_not_damage(tmp_path, monkeypatch, code) -> None:  # type: ignore[no-untyped-def]
    content, digest = _store_blob(tmp_path, b"healthy")
    assert sc.blob_problem(content, digest) == ""

    def refuse(self, d):  # type: ignore[no-untyped-def]  # the read path, failing
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ContentStore, "verify", refuse)
    with pytest.raises(sc.Uncheckable, match=os.strerror(code).lower()):
        sc.blob_problem(content, digest)


def test_an_unreadable_bundle_config_is_could_not_check(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    paths = Paths.of(tmp_path / "root", tmp_path / "run")

    class C:
        id = "c" * 64
        rootfs = ""
        status = "running"

    (paths.exec_root / "runc" / C.id).mkdir(parents=True)
    (paths.exec_root / "runc" / C.id / "state.json").write_text("{}")
    config = paths.bundle_dir(C.id) / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")

    def refuse(self):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(sc.Uncheckable, match="input/output error"):
        sc._container_findings(paths, C)


def test_repair_moves_nothing_on_uncertain_evidence_and_restore_undoes_a_move(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = Paths.of(tmp_path / "root", tmp_path / "run")
    layer = paths.root / "layers" / ("a" * 64)
    (layer / "diff").mkdir(parents=True)
    (layer / "diff" / "f").write_text("x")
    unsure = sc.Finding(kind="layer", subject="sha256:" + "a" * 64, uncertain=True,
                        problem="could not check …", path=str(layer))
    assert sc.quarantine(paths, unsure) == unsure and layer.is_dir()
    damaged = sc.Finding(kind="layer", subject="sha256:" + "a" * 64, problem="differs",
                         path=str(layer))
    moved = sc.quarantine(paths, damaged)
    assert moved.action.startswith("quarantined: ") and not layer.exists()
    [back] = sc.restore_quarantined(paths)
    assert back.problem == "" and back.path == str(layer) and back.kind == "layer"
    assert (layer / "diff" / "f").read_text() == "x"
    assert sc.restore_quarantined(paths) == []
