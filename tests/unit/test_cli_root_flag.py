"""`shipslog system reset --root DIR` as the README writes it (issue 15 item 9), and the global
`--root DIR` before the verb: both name the root to reset. Pure: the parser only."""

from __future__ import annotations

import pytest

from engine.cli.main import build_parser, verb_hint


@pytest.mark.parametrize("argv", [
    ["system", "reset", "--root", "/srv/a", "--exec-root", "/run/a"],
    ["--root", "/srv/a", "system", "reset", "--exec-root", "/run/a"],
    ["system", "reset", "--exec-root", "/run/a", "--root=/srv/a", "--force"],
])
def test_reset_takes_root_before_or_after_the_verb(argv: list[str]) -> None:
    args, extras = build_parser(verb_hint(argv)).parse_known_args(argv)
    assert extras == []
    assert (args.root, args.exec_root, args.subverb) == ("/srv/a", "/run/a", "reset")


def test_reset_without_root_keeps_none() -> None:
    argv = ["system", "reset", "--force"]
    args, extras = build_parser(verb_hint(argv)).parse_known_args(argv)
    assert extras == [] and args.root is None
