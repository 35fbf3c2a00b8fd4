"""Build a busybox image archive from Debian's busybox-static package (these machines have no
registry access, so tests, benchmarks and the README demo use this image).

I/O: reads the busybox binary (from the installed `busybox-static` package, or from
`apt-get download busybox-static` + `dpkg-deb -x` when it is not installed), runs
`busybox --list-full`, writes one tar file. The output is a docker-archive that is also an OCI
image layout (as `docker save` writes since Docker 25), so `docker load`, `podman load`,
`skopeo` and `shipslog load` all accept it.

The bytes are deterministic (fixed mtimes and owners, sorted entries, canonical JSON), so the
image id only changes when the busybox binary does.

    python3 -m tools.build_busybox_image -o busybox.tar [--tag busybox:latest]
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from engine.drivers.host.info import machine_arch
from engine.drivers.layers.content import ContentStore
from engine.shell.image_archive import ImageToSave, build_image_config, save_archive
from events.values import ImageConfig

EPOCH = 1704067200  # 2024-01-01T00:00:00Z: a fixed mtime keeps the layer digest stable
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
DIRS = {  # path -> mode
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/www": 0o755,
}


class BuildError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def is_static_elf(path: Path) -> bool:
    """True if `path` is an ELF executable without a PT_INTERP segment (statically linked)."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64, little = ident[4] == 2, ident[5] == 1
        end = "<" if little else ">"
        if is64:
            f.seek(32)
            (phoff,) = struct.unpack(end + "Q", f.read(8))
            f.seek(54)
        else:
            f.seek(28)
            (phoff,) = struct.unpack(end + "I", f.read(4))
            f.seek(42)
        phentsize, phnum = struct.unpack(end + "HH", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def _package_version() -> str:
    try:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "busybox-static"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def find_busybox(workdir: Path) -> Path:
    """The static busybox binary: installed package first, else a downloaded .deb."""
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file() and is_static_elf(candidate) and _package_version():
            return candidate
    r = subprocess.run(
        ["apt-get", "download", "busybox-static"], cwd=workdir, capture_output=True, text=True
    )
    debs = sorted(workdir.glob("busybox-static_*.deb"))
    if r.returncode != 0 or not debs:
        raise BuildError(
            f"busybox-static is not installed and could not be downloaded: {r.stderr.strip()}",
            "apt-get install busybox-static",
        )
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(workdir / "x")], check=True)
    for rel in ("bin/busybox", "usr/bin/busybox"):
        p = workdir / "x" / rel
        if p.is_file():
            return p
    raise BuildError("busybox-static package holds no busybox binary")


def applets(busybox: Path) -> list[str]:
    """Applet paths relative to / (`bin/sh`, `usr/bin/awk`, …), sorted."""
    out = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout
    paths = set()
    for line in out.split():
        p = line.strip().strip("/")
        # Root-level applets (linuxrc) belong to an initramfs, not a container image.
        if p and "/" in p and ".." not in p.split("/") and p != "bin/busybox":
            paths.add(p)
    return sorted(paths)


def _ti(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def build_layer(busybox: Path) -> bytes:
    """The rootfs layer tar (uncompressed): every applet hard-linked to /bin/busybox."""
    names = applets(busybox)
    dirs = dict(DIRS)
    for p in names:
        parent = os.path.dirname(p)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
    data = busybox.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
        for d, mode in dirs.items():
            entries.append((d, _ti(d + "/", tarfile.DIRTYPE, mode), None))
        entries.append(("bin/busybox", _ti("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), data))
        entries.append(
            ("etc/passwd", _ti("etc/passwd", tarfile.REGTYPE, 0o644, len(PASSWD)), PASSWD)
        )
        entries.append(("etc/group", _ti("etc/group", tarfile.REGTYPE, 0o644, len(GROUP)), GROUP))
        for p in names:
            entries.append((p, _ti(p, tarfile.LNKTYPE, 0o755, link="bin/busybox"), None))
        # Parents sort before children; bin/busybox sorts before the links to it in bin/, but
        # links elsewhere may sort earlier, so emit the binary first among files.
        entries.sort(key=lambda e: (e[1].type != tarfile.DIRTYPE, e[0] != "bin/busybox", e[0]))
        for _, ti, payload in entries:
            tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def build_image(out: Path, tag: str = "busybox:latest", busybox: Path | None = None) -> str:
    """Write the image archive to `out`; return the image id."""
    with tempfile.TemporaryDirectory(prefix="shipslog-bbimg-") as tmp:
        work = Path(tmp)
        bb = busybox or find_busybox(work)
        layer = build_layer(bb)
        store = ContentStore(work / "store")
        layer_digest, _ = store.ingest_bytes(layer)
        version = _package_version() or "unknown"
        config = ImageConfig(
            architecture=machine_arch(),
            os="linux",
            created=CREATED,
            cmd=("sh",),
            env=(PATH_ENV,),
        )
        raw = build_image_config(
            config,
            [layer_digest],
            history=[
                {
                    "created": CREATED,
                    "created_by": f"shipslog tools/build_busybox_image (busybox-static {version})",
                }
            ],
        )
        image_id, _ = store.ingest_bytes(raw)
        tmp_out = out.with_name(out.name + ".tmp")
        with open(tmp_out, "wb") as f:
            save_archive(f, [ImageToSave(image_id, (tag,) if tag else (), (layer_digest,))], store)
        os.replace(tmp_out, out)
        return image_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, type=Path)
    ap.add_argument("--tag", default="busybox:latest", help="repo tag ('' for none)")
    ap.add_argument("--busybox", type=Path, help="use this static busybox binary")
    args = ap.parse_args(argv)
    try:
        image_id = build_image(args.output, args.tag, args.busybox)
    except BuildError as e:
        print(f"error: {e}\nhint: {e.hint}", file=sys.stderr)
        return 1
    print(image_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
