"""The pure helpers of `shipslog cp` (engine/cli/files.py): which side of a copy is the
container, and how an archive's top entry is renamed for the destination."""

from __future__ import annotations

import pytest

from engine.cli.files import _rebase, split_cp_arg


@pytest.mark.parametrize("arg, want", [
    ("web:/etc/passwd", ("web", "/etc/passwd")),
    ("web:relative", ("web", "relative")),
    ("/abs/with:colon", ("", "/abs/with:colon")),
    ("./local:colon", ("", "./local:colon")),
    ("plain", ("", "plain")),
    ("-", ("", "-")),
])
def test_split_cp_arg(arg: str, want: tuple[str, str]) -> None:
    assert split_cp_arg(arg) == want


@pytest.mark.parametrize("name, top, want", [
    ("d", "new", "new"),
    ("d/", "new", "new"),
    ("d/a/b", "new", "new/a/b"),
    ("./a", "", "a"),
    (".", "", ""),
    ("passwd", "pw", "pw"),
])
def test_rebase(name: str, top: str, want: str) -> None:
    assert _rebase(name, top) == want
