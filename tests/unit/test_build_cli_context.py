"""`shipslog build DIR` sends the context as the docker CLI does (issue 12): what
`.dockerignore` excludes stays on the client (a "!" rule takes a file back; the Dockerfile and
`.dockerignore` always go), every entry is owned 0:0 without names (COPY then gives root:root,
as under Docker), and the directory itself is not an entry.

I/O: a temp directory, tarred into memory; no daemon.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
from pathlib import Path

from engine.cli.build import make_context


def test_the_context_leaves_out_what_dockerignore_excludes_and_is_owned_by_root(
        tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "secret").mkdir(parents=True)
    (ctx / "src").mkdir()
    (ctx / "src" / "app.py").write_text("print(1)\n")
    (ctx / "src" / "debug.log").write_text("noise\n")
    (ctx / "secret" / "key").write_text("k\n")
    (ctx / "secret" / "keep.txt").write_text("kept\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    (ctx / ".dockerignore").write_text("**/*.log\nsecret\n!secret/keep.txt\nDockerfile\n")
    os.link(ctx / "src" / "app.py", ctx / "src" / "same.py")
    os.symlink("app.py", ctx / "src" / "link.py")
    for p in ctx.rglob("*"):  # a user's files: their uid must not reach the image
        os.lchown(p, 1234, 1234) if os.geteuid() == 0 else None
    args = argparse.Namespace(file=None, context=str(ctx))
    buf = io.BytesIO()
    assert make_context(None, args, buf) == "Dockerfile"  # type: ignore[arg-type]
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        members = {m.name: m for m in tf}
    assert sorted(members) == [".dockerignore", "Dockerfile", "secret/keep.txt", "src",
                               "src/app.py", "src/link.py", "src/same.py"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert members["src/link.py"].issym() and members["src/link.py"].linkname == "app.py"
    assert members["src/same.py"].islnk() and members["src/same.py"].linkname == "src/app.py"
