"""Preparing a build reads the context without unpacking it (issue 12: a fully cached rebuild
spent ~2 s writing a 50 MB context to disk before any step could be looked up): the Dockerfile,
`.dockerignore` and every checksum come from the index; files are written only for a step that
misses the cache, and only its sources.

I/O: a temp state root (the builder's spool and work dirs); no daemon, no kernel objects.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from engine.core.build import BuildError
from engine.shell.build.builder import Builder, BuildOptions


def _context() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add("Dockerfile", b"FROM busybox\nCOPY files /files\nCOPY extra.txt /extra.txt\n")
        add(".dockerignore", b"*.log\n")
        add("extra.txt", b"extra\n")
        add("debug.log", b"ignored\n")
        for i in range(200):
            add(f"files/d{i % 10}/f{i}.bin", bytes([i % 256]) * 1000)
    return buf.getvalue()


def _files_under(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_preparing_a_build_writes_none_of_the_context(tmp_path: Path) -> None:
    builder = Builder(SimpleNamespace(journal=None), None, None, None, tmp_path)
    with tempfile_of(_context()) as f:
        prepared = trio.run(builder.prepare, f, BuildOptions())
    try:
        assert "COPY files /files" in prepared.dockerfile
        assert _files_under(tmp_path) == []  # nothing unpacked, not even the Dockerfile
        index = prepared.context
        assert len(index.sources(["files"], 2)) == 1
        with pytest.raises(BuildError, match="excluded by .dockerignore"):
            index.sources(["debug.log"], 2)
        # a step that misses the cache: its sources only, through the confined applier
        target = prepared.workdir / "step-3"
        target.mkdir()
        index.materialize(index.sources(["extra.txt"], 3), target)
        assert _files_under(target) == ["extra.txt"]
    finally:
        prepared.context.close()


def test_the_context_digest_is_the_tar_stream_digest(tmp_path: Path) -> None:
    import hashlib
    raw = _context()
    builder = Builder(SimpleNamespace(journal=None), None, None, None, tmp_path)
    with tempfile_of(raw) as f:
        prepared = trio.run(builder.prepare, f, BuildOptions())
    prepared.context.close()
    assert prepared.context_digest == "sha256:" + hashlib.sha256(raw).hexdigest()


def tempfile_of(raw: bytes):  # the API route spools the body to an unnamed temp file
    import tempfile
    f = tempfile.TemporaryFile()
    f.write(raw)
    f.seek(0)
    return f
