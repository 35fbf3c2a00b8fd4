"""What a plain request/response command imports (issue 17): `shipslog version`, `ps`,
`images`, `inspect` and `logs` against a real daemon, each in a fresh interpreter, must load
nothing of the daemon, no trio or h11, no sqlite, and none of the stdlib modules the client
path was cut loose from (shutil via argparse's terminal width, urllib.parse via quoting,
locale via argparse's gettext lookups, typing, datetime, socket, threading). The rule they
follow is written in engine/cli/__init__.py."""

from __future__ import annotations

import pytest

from engine.testing.cli import imported_by
from engine.testing.daemon import DaemonProcess

pytestmark = pytest.mark.kernel

FORBIDDEN_PREFIXES = ("trio", "h11", "engine.daemon", "engine.shell", "engine.drivers",
                      "engine.core.oci_spec", "engine.core.seccomp", "engine.core.net_plan",
                      "engine.core.nft_plan", "engine.core.fwd_plan", "engine.registry",
                      "engine.api.routes", "engine.api.server.http", "events.",
                      "projections", "msgspec", "sqlite3", "_sqlite3", "asyncio", "dataclasses",
                      "shutil", "bz2", "lzma", "urllib", "ipaddress", "subprocess", "threading",
                      # gettext imports locale when it searches for a catalogue: the sign that
                      # argparse's ~30 message lookups went to the disk again
                      "locale",
                      # what no plain verb needs (issue 17: ~10 ms of every start): typing (its
                      # names are for mypy), datetime (go_time uses time), socket (the client
                      # speaks through _socket; attach and exec get a socket.socket), threading
                      # and signal (run and attach only), the Go template engine (default
                      # tables are plain cells)
                      "typing", "datetime", "socket", "selectors", "threading", "signal",
                      "engine.cli.gotemplate")


def imported(daemon: DaemonProcess, *argv: str) -> list[str]:
    return imported_by(list(argv), dict(daemon.cli_env()))


@pytest.mark.parametrize("argv", [["version"], ["ps", "-a"], ["images"], ["inspect", "probe"],
                                  ["logs", "probe"]])
def test_plain_commands_import_only_the_client(daemon: DaemonProcess, argv: list[str]) -> None:
    # a container with a row, a creation time and a log, so each verb renders something
    client = daemon.client()
    cid = client.post_json("/containers/create", {"name": "probe"},
                           {"Image": "busybox", "Cmd": ["echo", "probe"]})["Id"]
    client.post_json(f"/containers/{cid}/start")
    client.post_json(f"/containers/{cid}/wait")
    mods = imported(daemon, *argv)
    heavy = [m for m in mods if m.startswith(FORBIDDEN_PREFIXES) or m == "events"]
    assert heavy == [], f"`shipslog {' '.join(argv)}` imported {heavy}"
