"""`docker cp` into and out of volumes and bind mounts, on both engines: paths under a mount
point reach the mount's files (running or stopped container), as asked or through a symlink
in the container's own filesystem; a read-only mount refuses a copy in with Docker's words."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel


def _run(engine: Engine, bind: Path, *extra: str) -> None:
    docker(engine, "run", "-d", "--name", "cpm", "--network", "none", "-v", "cpvol:/data",
           "-v", f"{bind}:/bind", *extra, "busybox", "sh", "-c",
           "echo invol > /data/a; mkdir -p /data/sub; echo deep > /data/sub/b; "
           "ln -s /data /tmp/datalink; touch /data/.ready; sleep 1000")
    deadline = time.monotonic() + 20
    while docker(engine, "exec", "cpm", "test", "-e", "/data/.ready", check=False).returncode:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    bind, src, out = tmp_path / "bind", tmp_path / "src", tmp_path / "out"
    for d in (bind, src, out):
        d.mkdir()
    (bind / "hostfile").write_text("from host\n")
    (src / "file").write_text("copied in\n")
    return bind, src, out


def _copies_work(engine: Engine, src: Path, out: Path, bind: Path, tag: str) -> None:
    docker(engine, "cp", "cpm:/data/a", str(out / f"a{tag}"))
    assert (out / f"a{tag}").read_text() == "invol\n"
    docker(engine, "cp", "cpm:/data/sub", str(out / f"sub{tag}"))
    assert (out / f"sub{tag}" / "b").read_text() == "deep\n"
    docker(engine, "cp", "cpm:/bind/hostfile", str(out / f"h{tag}"))
    assert (out / f"h{tag}").read_text() == "from host\n"
    docker(engine, "cp", "cpm:/tmp/datalink/sub/b", str(out / f"link{tag}"))  # via a symlink
    assert (out / f"link{tag}").read_text() == "deep\n"
    docker(engine, "cp", str(src / "file"), "cpm:/data/")
    docker(engine, "cp", str(src / "file"), f"cpm:/data/sub/renamed{tag}")
    docker(engine, "cp", str(src / "file"), "cpm:/tmp/datalink/sub/")
    docker(engine, "cp", str(src / "file"), f"cpm:/bind/in{tag}")
    assert (bind / f"in{tag}").read_text() == "copied in\n"


def test_cp_reaches_volumes_and_binds_of_a_running_container(engine: Engine,
                                                             tmp_path: Path) -> None:
    bind, src, out = _dirs(tmp_path)
    _run(engine, bind)
    _copies_work(engine, src, out, bind, "")
    for path in ("/data/file", "/data/sub/renamed", "/data/sub/file"):
        assert docker(engine, "exec", "cpm", "cat", path).stdout == "copied in\n"
    listing = docker(engine, "exec", "cpm", "ls", "/data").stdout.split()
    assert listing == ["a", "file", "sub"]


def test_cp_reaches_volumes_and_binds_of_a_stopped_container(engine: Engine,
                                                             tmp_path: Path) -> None:
    bind, src, out = _dirs(tmp_path)
    _run(engine, bind)
    docker(engine, "stop", "-t", "0", "cpm")
    _copies_work(engine, src, out, bind, "-stopped")
    docker(engine, "start", "cpm")
    assert docker(engine, "exec", "cpm", "cat", "/data/sub/renamed-stopped").stdout == \
        "copied in\n"


def test_cp_into_a_read_only_mount_is_refused(engine: Engine, tmp_path: Path) -> None:
    bind, src, out = _dirs(tmp_path)
    _run(engine, bind, "-v", "cpro:/ro:ro", "--read-only")
    for dest in ("cpm:/ro/", "cpm:/ro/x"):
        p = docker(engine, "cp", str(src / "file"), dest, check=False)
        assert p.returncode == 1 and "mounted volume is marked read-only" in p.stderr, p.stderr
    # --read-only guards the container's own filesystem, not its read-write volumes
    docker(engine, "cp", str(src / "file"), "cpm:/data/")
    p = docker(engine, "cp", str(src / "file"), "cpm:/tmp/", check=False)
    assert p.returncode == 1 and "container rootfs is marked read-only" in p.stderr, p.stderr
    docker(engine, "cp", "cpm:/ro", str(out / "ro"))  # reading is fine
    assert (out / "ro").is_dir()


def test_symlink_inside_a_volume(engine: Engine, tmp_path: Path) -> None:
    bind, _, out = _dirs(tmp_path)
    _run(engine, bind)
    docker(engine, "exec", "cpm", "sh", "-c", "ln -s / /data/root; ln -s ../../.. /data/up; "
           "echo mine > /etc/mine")
    # a symlink that climbs out of the volume never reaches the host
    for link in ("/data/up/etc/mine", "/data/root/etc/mine"):
        p = docker(engine, "cp", f"cpm:{link}", str(out / "x"), check=False)
        if engine.name == "docker":
            # Docker resolves it in the container's whole tree
            assert p.returncode == 0 and (out / "x").read_text() == "mine\n"
            (out / "x").unlink()
        else:
            # A deliberate difference (README, "Compatibility with Docker"): shipslog reaches
            # a mount's files in its host directory, so a symlink in it resolves inside the
            # mount: no such file there
            assert p.returncode == 1 and "Could not find the file" in p.stderr, p.stderr
            assert not (out / "x").exists()


def test_cp_out_of_a_single_file_bind(engine: Engine, tmp_path: Path) -> None:
    bind, _, out = _dirs(tmp_path)
    single = tmp_path / "single.conf"
    single.write_text("one file bound\n")
    _run(engine, bind, "-v", f"{single}:/etc/app.conf:ro")
    docker(engine, "cp", "cpm:/etc/app.conf", str(out / "app.conf"))
    assert (out / "app.conf").read_text() == "one file bound\n"
    p = docker(engine, "cp", "cpm:/etc/app.conf/x", str(out / "x"), check=False)
    assert p.returncode == 1 and not (out / "x").exists()
