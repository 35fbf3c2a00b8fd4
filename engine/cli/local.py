"""`--root DIR`: the seam through which read-only verbs (ps, inspect, events, images, history)
read a state root's event database directly when the daemon is down.

I/O: checks that the state root and its `events.db` exist; reading the projections will open
the database read-only.

The projection-based readers belong to the lead; until they land, every verb that reaches this
seam reports clearly that `--root` is not supported for it yet. A verb that needs the daemon
(run, stop, pull, …) refuses `--root` outright, since it would have to write.
"""

from __future__ import annotations

import os
from typing import Any

from engine.cli.errors import CliError

READ_ONLY_VERBS = ("ps", "inspect", "events", "images", "history", "logs", "top", "port", "info",
                   "version")


class LocalReader:
    """Reads a state root without the daemon. Methods mirror the API's GET answers."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.database = os.path.join(self.root, "events.db")

    def check(self) -> None:
        if not os.path.isdir(self.root):
            raise CliError(f"state root {self.root} does not exist",
                           "pass the daemon's state directory, e.g. --root /var/lib/shipslog")
        if not os.path.exists(self.database):
            raise CliError(f"no event database at {self.database}",
                           "pass the directory that holds events.db, e.g. --root "
                           "/var/lib/shipslog")

    def get_json(self, path: str, params: dict[str, Any] | None = None, *,
                 verb: str = "") -> Any:
        """Answer a GET the way the daemon would, from the projections."""
        self.check()
        raise self.unsupported(f"'{verb}'" if verb else f"GET {path}")

    def unsupported(self, what: str) -> CliError:
        return CliError(f"--root is not yet supported for {what}",
                        "start shipslogd and run the command without --root")


def refuse_root(verb: str) -> CliError:
    """A verb that changes state needs the daemon: --root only serves reads."""
    return CliError(f"'{verb}' changes state and needs the daemon; --root serves read-only "
                    "queries", f"start shipslogd and run 'shipslog {verb}' without --root")
