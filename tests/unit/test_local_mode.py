"""`shipslog --root DIR` (local mode) answers through the read model the daemon's routes use
(engine/shell/readmodel.py, engine/api/docker/reads.py), not through the server (issue 16):
each read-only verb, in a fresh interpreter, loads no server or route module, and the plain
ones no trio or h11 either; an image's inspect is answered from the log (it used to fail on
the missing content store), and `top` of a running container says it needs the daemon (it
failed with an AttributeError). Pure of the kernel: the root is a file log written as the engine
writes it (tests/unit/test_log_readers.py's `FileLog`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.cli.main import run
from engine.testing.cli import imported_by
from tests.unit.test_history import CID, OTHER
from tests.unit.test_log_readers import ROOT, FileLog

SERVER = ("engine.api.server", "engine.api.routes", "engine.daemon")
LOOP = ("trio", "h11")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.core import containers as cc

    path = tmp_path_factory.mktemp("root")
    log = FileLog(path / "events.db")
    log.load_image()
    log.create(CID, "web")
    op = log.decide(cc.decide_start(log.state, CID, op_id=log.op()), actor=ROOT)
    log.started(CID, op, pid=100, actor=ROOT)
    log.exit(CID, 3, ran_ms=2000)
    log.create(OTHER, "db")
    op = log.decide(cc.decide_start(log.state, OTHER, op_id=log.op()), actor=ROOT)
    log.started(OTHER, op, pid=200, actor=ROOT)
    log.store.close()
    return path


def imported(root: Path, *argv: str) -> list[str]:
    return imported_by(["--root", str(root), *argv],
                       {"HOME": str(root), "PATH": "/usr/bin:/bin"})


# The plain reads: no event loop, no server.
PLAIN = [["ps", "-a"], ["inspect", "web"], ["images"], ["events", "--all"],
         ["events", "--since", "0", "--until", "1800000000"], ["history", "web"],
         ["audit", "verify"], ["audit", "who"], ["state", "diff", "seq:1", "seq:3"],
         ["replay"], ["ps", "-a", "--at", "seq:4"], ["version"]]
# These read files through drivers that also follow them (trio), but never the server.
WITH_FILES = [["logs", "web"], ["system", "df"], ["info"]]


@pytest.mark.parametrize("argv", PLAIN + WITH_FILES, ids=" ".join)
def test_local_mode_loads_no_server(root: Path, argv: list[str]) -> None:
    mods = imported(root, *argv)
    server = [m for m in mods if m.startswith(SERVER)]
    assert server == [], f"`shipslog --root DIR {' '.join(argv)}` imported {server}"
    if argv in PLAIN:
        loop = [m for m in mods if m.split(".")[0] in LOOP]
        assert loop == [], f"`shipslog --root DIR {' '.join(argv)}` imported {loop}"


def test_an_image_is_inspected_from_the_log(root: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run(["--root", str(root), "inspect", "busybox"], environ={"HOME": str(root)},
               stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    [image] = json.loads(out.getvalue())
    assert image["RepoTags"] == ["busybox:latest"]


def test_top_of_a_running_container_says_it_needs_the_daemon(root: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run(["--root", str(root), "top", "db"], environ={"HOME": str(root)},
               stdout=out, stderr=err)
    assert code != 0
    assert "through the daemon" in err.getvalue()
    assert "unexpected error" not in err.getvalue()
