"""The busybox test image: deterministic, loadable by us and by other tools, and runnable."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine.drivers.host import info
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.drivers.snapshots.overlay import Snapshotter
from engine.shell.image_archive import load_archive, unpack_image
from tools.build_busybox_image import build_image, is_static_elf

needs_busybox = pytest.mark.skipif(
    not Path("/bin/busybox").exists(), reason="busybox-static is not installed"
)
pytestmark = needs_busybox


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bb") / "busybox.tar"
    return out, build_image(out)


def test_build_is_deterministic(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, image_id = archive
    again = tmp_path / "again.tar"
    assert build_image(again) == image_id
    assert again.read_bytes() == path.read_bytes()


def test_cli(tmp_path: Path, archive: tuple[Path, str]) -> None:
    out = tmp_path / "cli.tar"
    r = subprocess.run(
        [sys.executable, "-m", "tools.build_busybox_image", "-o", str(out), "--tag", "bb:1"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == archive[1]  # the tag lives in manifest.json, not in the config
    with tarfile.open(out) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["bb:1"]


def test_loads_into_the_content_store(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, image_id = archive
    [img] = load_archive(path, ContentStore(tmp_path))
    assert img.image_id == image_id
    assert img.repo_tags == ("busybox:latest",)
    assert img.config.cmd == ("sh",)
    assert any(e.startswith("PATH=") and "/bin" in e for e in img.config.env)
    assert img.config.architecture == info.machine_arch()
    assert img.config.os == "linux"
    assert len(img.layers) == 1


@pytest.mark.kernel
def test_rootfs_layout(archive: tuple[Path, str], tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    [img] = load_archive(archive[0], store)
    [layer_dir] = unpack_image(img, store, LayerStore(tmp_path))
    root = Path(layer_dir)
    bb = os.stat(root / "bin/busybox")
    assert is_static_elf(root / "bin/busybox")
    assert os.stat(root / "bin/sh").st_ino == bb.st_ino
    assert bb.st_nlink > 100  # every applet is a hard link
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(root / "root").st_mode) == 0o700
    assert (root / "var/www").is_dir()
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd] == ["root", "nobody"]
    assert (root / "etc/group").read_text().startswith("root:x:0:")
    assert not (root / "linuxrc").exists()


@pytest.mark.kernel
def test_runs_in_an_overlay_rootfs(archive: tuple[Path, str], tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    [img] = load_archive(archive[0], store)
    snaps = Snapshotter(tmp_path)
    rootfs = snaps.prepare("bb", unpack_image(img, store, LayerStore(tmp_path)))
    try:
        r = subprocess.run(
            [
                shutil.which("chroot") or "/usr/sbin/chroot",
                str(rootfs),
                "/bin/sh",
                "-c",
                "echo hi > /tmp/f && cat /tmp/f && id -u",
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/bin"},
            check=False,
        )
        assert (r.returncode, r.stdout) == (0, "hi\n0\n"), r.stderr
    finally:
        snaps.remove("bb")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_other_tools_read_it(archive: tuple[Path, str], transport: str) -> None:
    r = subprocess.run(
        ["skopeo", "inspect", "--config", f"{transport}:{archive[0]}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["config"]["Cmd"] == ["sh"]
    assert cfg["rootfs"]["diff_ids"] == [f"sha256:{layer_digest(archive[0])}"]


def layer_digest(path: Path) -> str:
    with tarfile.open(path) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    return str(manifest[0]["Layers"][0]).rsplit("/", 1)[1]


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
@pytest.mark.parametrize(
    ("dest", "extra"),
    [
        ("docker-archive:{out}:busybox:sk", []),  # legacy layout: <hex>.json, symlinked layers
        ("oci-archive:{out}:busybox:zst", ["--dest-compress", "--dest-compress-format", "zstd"]),
        ("oci-archive:{out}:busybox:gz", ["--dest-compress", "--dest-compress-format", "gzip"]),
    ],
)
def test_loads_what_skopeo_writes(
    archive: tuple[Path, str], tmp_path: Path, dest: str, extra: list[str]
) -> None:
    out = tmp_path / "copy.tar"
    r = subprocess.run(
        ["skopeo", "copy", "-q", *extra, f"docker-archive:{archive[0]}", dest.format(out=out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    store = ContentStore(tmp_path / "s")
    [img] = load_archive(out, store)
    assert img.repo_tags == ("busybox:" + dest.rsplit(":", 1)[1],)
    [layer_dir] = unpack_image(img, store, LayerStore(tmp_path / "s"))  # verifies the diff_id
    assert (
        os.stat(Path(layer_dir) / "bin/sh").st_ino
        == os.stat(Path(layer_dir) / "bin/busybox").st_ino
    )
