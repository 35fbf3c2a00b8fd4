"""A minimal root filesystem for runtime tests: the host's static busybox and its applet
links, without an image store or a snapshotter in between.

I/O: copies /bin/busybox (busybox-static) into a directory the caller owns and runs
`busybox --list` once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def make_busybox_rootfs(root: Path, extra_dirs: tuple[str, ...] = ()) -> Path:
    """Fill `root` with bin/busybox, a link per applet, the mount points a runtime needs and
    an /etc/passwd and /etc/group with root and nobody; return `root`."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, check=True).stdout
    for name in applets.decode().split():
        if name != "busybox":
            (root / "bin" / name).symlink_to("busybox")
    for d in ("proc", "sys", "dev", "etc", "tmp", "sbin", *extra_dirs):
        (root / d).mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return root
