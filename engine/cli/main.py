"""The `shipslog` command: global flags, verb dispatch, and the one place where every failure
becomes two lines on stderr and an exit code.

I/O: reads argv and the environment; everything else happens in the verb modules (the daemon's
API, the terminal, files named on the command line).

Global flags: `-H/--host` (or SHIPSLOG_HOST), `--root DIR` (read-only verbs straight from a
state root), `--debug` (tracebacks), `--version`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.cli.context import CliParser, Context
from engine.cli.errors import (
    BROKEN_PIPE,
    INTERRUPTED,
    CliError,
    ExitStatus,
    UsageError,
    report,
    translate,
)

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TextIO


def build_parser(verb: str | None = None) -> CliParser:
    """The whole command line; given the verb about to run, only that verb's parser is built
    (argparse setup of every verb costs more than a short command's own work)."""
    only = verb if verb in VERBS else None
    parser = CliParser(prog="shipslog", description="A container engine whose state is an "
                       "append-only event log.")
    parser.add_argument("-H", "--host", default=None,
                        help="daemon socket to connect to (unix:///path)")
    parser.add_argument("--root", default=None,
                        help="read-only queries straight from this state root")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="fleet queries (events, history, audit) from a central "
                        "PostgreSQL: postgresql://…")
    parser.add_argument("-D", "--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--version", action="store_true",
                        help="print version information and quit")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=CliParser)
    target = sub if only is None else _Only(sub, only)
    for name in ("containers", "manage", "system", "audit", "timeline", "volumes", "networks",
                 "files", "compose"):
        if only is None or only in MODULE_VERBS[name]:
            _module(name).register(target)
    if only is None or only in MODULE_VERBS["images"]:
        # `shipslog history X` is the event timeline; Docker's layer history: `image history`.
        _module("images").register(_Skipping(target, {"history"}))
    if only is None or only in MODULE_VERBS["build"]:
        # `image provenance` only: a top-level `provenance` is not a Docker verb.
        _module("build").register(_Skipping(target, {"provenance"}))
    containers, manage, images, system, files, build = (
        _LazyModule(n) for n in ("containers", "manage", "images", "system", "files", "build"))
    # Docker's management commands: `container ls`, `image rm`, `system info`, …
    for group, modules, names in (
        ("container", (containers, manage, files), CONTAINER_GROUP),
        ("image", (images, manage, build), IMAGE_GROUP),
        ("system", (system,), SYSTEM_GROUP),
    ):
        if only is not None and only != group:
            continue
        group_parser = sub.add_parser(group, help=f"Manage {group}s" if group != "system"
                                      else "Manage shipslog")
        group_sub = group_parser.add_subparsers(dest="subverb", metavar="COMMAND",
                                                parser_class=CliParser, required=True)
        for module in modules:
            module.register(_Renaming(group_sub, names))
        if group == "system":  # `system check`, `df`, `prune`, `compact`, `reset`: only here
            _module("system").register_check(group_sub)
            _module("system").register_reset(group_sub)
            _module("diskusage").register(group_sub)
            _module("prune").register_system(group_sub)
            _module("compact").register(group_sub)
        if group == "container":  # `container prune`, `image prune`: no top-level verbs
            _module("prune").register_container(group_sub)
        if group == "image":
            _module("prune").register_image(group_sub)
    return parser


# Which module registers which top-level verbs: a command imports only its own module (the
# others cost tens of milliseconds of start-up). A test checks this table against the parser.
MODULE_VERBS: dict[str, frozenset[str]] = {
    "containers": frozenset({"run", "create", "start", "attach", "exec", "logs"}),
    "manage": frozenset({"ps", "inspect", "top", "port", "stop", "restart", "kill", "rm",
                         "pause", "unpause", "wait", "rename", "update"}),
    "system": frozenset({"version", "info", "events"}),
    "audit": frozenset({"audit"}),
    "timeline": frozenset({"history", "state", "replay", "debug"}),
    "volumes": frozenset({"volume"}),
    "networks": frozenset({"network"}),
    "files": frozenset({"cp", "diff", "export", "stats"}),
    "compose": frozenset({"compose"}),
    "images": frozenset({"images", "rmi", "tag", "load", "save", "import", "pull", "push",
                         "login", "logout"}),
    "build": frozenset({"build", "commit", "builder"}),
}


def _module(name: str) -> Any:
    return importlib.import_module(f"engine.cli.{name}")


class _LazyModule:
    """A verb module imported only when its `register` is called (management groups)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def register(self, sub: Any) -> None:
        _module(self.name).register(sub)


CONTAINER_GROUP = {
    "ps": ["ls", "ps", "list"], "run": ["run"], "create": ["create"], "start": ["start"],
    "stop": ["stop"], "kill": ["kill"], "restart": ["restart"], "rm": ["rm", "remove"],
    "pause": ["pause"], "unpause": ["unpause"], "rename": ["rename"], "wait": ["wait"],
    "logs": ["logs"], "exec": ["exec"], "inspect": ["inspect"], "top": ["top"],
    "port": ["port"], "attach": ["attach"], "update": ["update"], "cp": ["cp"],
    "diff": ["diff"], "export": ["export"], "stats": ["stats"],
}
IMAGE_GROUP = {
    "images": ["ls", "list"], "rmi": ["rm", "remove"], "tag": ["tag"], "history": ["history"],
    "load": ["load"], "save": ["save"], "import": ["import"], "pull": ["pull"],
    "push": ["push"], "inspect": ["inspect"], "build": ["build"],
    "provenance": ["provenance"],
}
SYSTEM_GROUP = {"info": ["info"], "events": ["events"]}


# every top-level verb; a test checks it against the full parser
VERBS = frozenset(
    "run create start attach exec logs ps inspect top port stop restart kill rm pause unpause "
    "wait rename update images rmi tag history load save import pull push login logout version "
    "info events container image system audit state replay debug volume network cp diff export "
    "stats compose build commit builder".split())
_GLOBAL_WITH_VALUE = ("-H", "--host", "--root", "--store")


def verb_hint(argv: Sequence[str]) -> str | None:
    """The verb in a command line: the first word that is not a global flag or its value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


class _Discard:
    """The parser of a verb that is not being run: takes any call and keeps nothing. (A real
    throwaway ArgumentParser costs ~0.3 ms each, a module registers up to 13 verbs; issue 17.)"""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> _Discard:
        return self


_DISCARD = _Discard()


def _split_passthrough(argv: Sequence[str]) -> tuple[Sequence[str], list[str] | None]:
    """`shipslog compose ARGS…`: ARGS are Compose's own flags and verbs, passed on unparsed."""
    if verb_hint(argv) != "compose":
        return argv, None
    skip = False
    for at, word in enumerate(argv):
        if skip:
            skip = False
        elif word in _GLOBAL_WITH_VALUE:
            skip = True
        elif word == "compose":
            return argv[:at + 1], list(argv[at + 1:])
    return argv, None


class _Only:
    """Registers one verb and sends every other verb to a parser that is thrown away."""

    def __init__(self, sub: Any, verb: str) -> None:
        self.sub = sub
        self.verb = verb

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self.verb:
            return _DISCARD  # type: ignore[return-value]
        parser: argparse.ArgumentParser = self.sub.add_parser(name, **kwargs)
        return parser


def effective_verb(verb: str, subverb: str | None) -> str:
    """`container ls` → `ps`, `image rm` → `rmi`: the top-level verb a sub-verb stands for."""
    group = {"container": CONTAINER_GROUP, "image": IMAGE_GROUP, "system": SYSTEM_GROUP}.get(verb)
    if group is None or subverb is None:
        return verb
    # `system df`, `system check`: verbs that exist only under their group keep its name
    return next((base for base, names in group.items() if subverb in names),
                f"{verb} {subverb}")


class _Skipping:
    """Registers a module's verbs except the named ones (which go to a throwaway parser)."""

    def __init__(self, sub: Any, skip: set[str]) -> None:
        self.sub = sub
        self.skip = skip

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name in self.skip:
            return _DISCARD  # type: ignore[return-value]
        parser: argparse.ArgumentParser = self.sub.add_parser(name, **kwargs)
        return parser


class _Renaming:
    """Registers a module's verbs under a management command with Docker's sub-verb names;
    verbs the group does not offer go to a parser that is thrown away."""

    def __init__(self, sub: Any, names: Mapping[str, list[str]]) -> None:
        self.sub = sub
        self.names = names

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name not in self.names:
            return _DISCARD  # type: ignore[return-value]
        first, *aliases = self.names[name]
        kwargs.pop("help", None)
        parser: argparse.ArgumentParser = self.sub.add_parser(first, aliases=aliases, **kwargs)
        return parser


def _make_client(host: str | None) -> Callable[[], Any]:
    def make() -> Any:
        from engine.cli.client import Client

        return Client(host)

    return make


def run(argv: Sequence[str], *, environ: Mapping[str, str] | None = None,
        stdout: TextIO | None = None, stderr: TextIO | None = None,
        make_client: Callable[[], Any] | None = None, clock: Callable[[], float] | None = None,
        stdin: Any = None) -> int:
    """Run one command line; returns the exit code. Never raises (except SystemExit for
    `--help`, which argparse prints itself)."""
    env = dict(os.environ if environ is None else environ)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    debug = "--debug" in argv or "-D" in argv[:1]
    try:
        argv, passthrough = _split_passthrough(argv)
        parser = build_parser(verb_hint(argv))
        args, extras = parser.parse_known_args(list(argv))
        if passthrough is not None:
            args.args = passthrough
        if extras:
            flag = next((e for e in extras if e.startswith("-")), extras[0])
            kind = "unknown flag" if flag.startswith("-") else "unexpected argument"
            raise UsageError(f"{kind}: {flag}", args.verb or "")
        debug = args.debug
        if args.version:
            from engine.cli.system import CLIENT_VERSION

            out.write(f"shipslog version {CLIENT_VERSION}\n")
            return 0
        if not args.verb:
            parser.print_help(err)
            raise UsageError("no command given")
        host = args.host or env.get("SHIPSLOG_HOST")
        ctx = Context(
            make_client=make_client or _make_client(host),
            stdout=out, stderr=err, environ=env,
            stdin=stdin if stdin is not None else getattr(sys.stdin, "buffer", None),
            debug=debug,
        )
        if clock is not None:
            ctx.clock = clock
        root = args.root
        if root is not None:
            # only with --root: the reader (and its imports) cost every other command
            from engine.cli.local import READ_ONLY_VERBS, LocalReader, refuse_root

            verb = effective_verb(args.verb, getattr(args, "subverb", None))
            if verb not in READ_ONLY_VERBS and not _root_writer(args) \
                    and not _compose_history(args):
                raise refuse_root(verb)
            ctx.local = LocalReader(root)
        if args.store is not None:  # issue 19: a fleet's central log, no daemon
            from engine.cli.fleet import FleetReader, refuse_store

            if args.verb not in ("events", "history", "audit", "ps") or \
                    (args.verb == "ps" and not args.at) or \
                    getattr(args, "audit_verb", "verify") not in ("verify", "who"):
                raise refuse_store(args.verb)
            # it answers the reads a LocalReader answers (ctx.read, stream_json)
            ctx.local = FleetReader(  # type: ignore[assignment]
                args.store, getattr(args, "fleet_host", None), warn=ctx.err)
        code = int(args.func(ctx, args) or 0)
        out.flush()
        return code
    except ExitStatus as status:
        _flush(out)
        return status.code
    except KeyboardInterrupt:
        _flush(out)
        return INTERRUPTED
    except BrokenPipeError:
        # `shipslog ps | head -1`: the reader left; say nothing, like any Unix filter
        _silence(out)
        return BROKEN_PIPE
    except BaseException as exc:  # the CLI's one boundary: a line and a hint, never a traceback
        if isinstance(exc, SystemExit):
            raise
        _flush(out)
        if debug:
            import traceback  # only for --debug: a CLI start-up cost otherwise

            traceback.print_exception(exc, file=err)
        cli_error: CliError = translate(exc)
        report(cli_error, err)
        return cli_error.exit_code


def _root_writer(args: argparse.Namespace) -> bool:
    """`system compact|check|reset --root DIR` work on the root itself, when no daemon holds
    it (each takes the daemon's lock)."""
    return bool(args.verb == "system"
                and getattr(args, "subverb", None) in ("compact", "check", "reset"))


def _compose_history(args: argparse.Namespace) -> bool:
    """`compose history PROJECT` only reads the log: it works from the state root too."""
    return bool(args.verb == "compose" and list(getattr(args, "args", []))[:1] == ["history"])


def _silence(stream: TextIO) -> None:
    """Point the stream's fd at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _flush(stream: TextIO) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


# Verbs that only talk to the daemon and write to stdout/stderr (no files, no temp files, no
# atexit handlers): they end with os._exit once both are flushed. The interpreter's own
# teardown (freeing every module and object, a last GC) frees nothing the kernel does not, and
# cost `ps` 2-5 ms (issue 17). Verbs that write files (save, export, cp, build, …) keep the
# normal exit.
QUICK_EXIT_VERBS = frozenset(
    "ps images version inspect info logs port top run create start attach exec stop restart "
    "kill rm pause unpause wait rename update".split())


def main(argv: Sequence[str] | None = None) -> None:
    """The `shipslog` entry point."""
    args = sys.argv[1:] if argv is None else argv
    code = run(args)
    if argv is None and verb_hint(args) in QUICK_EXIT_VERBS:
        _flush(sys.stdout)
        _flush(sys.stderr)
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()



