"""The `shipslog` command-line client: a client of the daemon's socket (and, for read-only
verbs with `--root`, of a state root's database).

I/O: none at import time. Every command pays for what this package imports, so (issue 17):

- `main.py` builds the argparse parser of the one verb being run; a verb module is imported
  only when its verb (or its management group) is named. A new verb goes into its module's
  `register(sub)` and into `main.MODULE_VERBS`; a new module gets a `MODULE_VERBS` entry.
- Modules imported by every command (main, context, errors, format, parse, and
  engine.cli.client) import only the standard library's light modules at top level: no trio,
  h11, msgspec, sqlite3, nothing of engine.daemon / drivers / runtime / network / registry, no
  events or projections, and not `dataclasses`, `shutil`, `urllib`, `subprocess`,
  `threading` or `asyncio`. Import anything heavier inside the function that needs it, with a
  comment saying why. Names used only in annotations (`typing`, `collections.abc`) go under
  `if TYPE_CHECKING:` (a module-level `TYPE_CHECKING = False`): typing alone cost ~3 ms. The
  client talks through `_socket` (socket.py's enums cost ~2.5 ms); dates render with `time`,
  not `datetime`; default tables skip the Go template engine. tests/integration/
  test_cli_imports.py checks `version`, `ps`, `images`, `inspect` and `logs`.
- Every verb uses the blocking `engine.cli.client.Client`; the CLI runs no event loop (no
  trio). Verbs that stream both ways (attach, run -it) use a thread, in their own module.
"""
