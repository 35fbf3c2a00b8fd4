"""Container verbs that move a process's stdio: `run`, `create`, `start`, `attach`, `exec`,
`logs`.

I/O: the daemon's API (through `ctx.client`), the user's terminal and stdio.

`run` follows Docker's order so that no output and no exit is ever missed: create → attach
(hijacked before start) → wait (a request opened before start, `condition=removed` for `--rm`)
→ start → copy stdio until the container closes its output → exit with its status.
"""

from __future__ import annotations

import argparse
import json

from engine.api.docker.escape import DEFAULT_DETACH_KEYS, parse_detach_keys
from engine.cli import attach as stdio
from engine.cli import parse
from engine.cli.client import ApiError
from engine.cli.context import Context
from engine.cli.errors import CliError, ExitStatus, UsageError, hint_for, start_exit_code
from engine.cli.runhelp import describe
from engine.cli.runopts import add_run_flags, build_create
from engine.core.errors import InvalidArgument

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("run", add_help=False, help="Create and run a new container from an image")
    add_run_flags(p, run=True)
    describe(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("create", add_help=False, help="Create a new container")
    add_run_flags(p, run=False)
    describe(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("start", help="Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys", default="")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("attach", help="Attach to a running container's stdio")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--detach-keys", default="")
    p.add_argument("container")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("exec", help="Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys", default="")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("logs", help="Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("--details", action="store_true")
    p.add_argument("container")
    p.set_defaults(func=cmd_logs)


# ------------------------------------------------------------------- create and run

def create_container(ctx: Context, name: str, body: dict[str, Any], *, pull_quietly: bool = False
                     ) -> str:
    """POST /containers/create; when the image is missing, pull it (as Docker does) and retry."""
    params = {"name": name} if name else None
    try:
        answer = ctx.client.post_json("/containers/create", params, body)
    except ApiError as exc:
        if exc.status != 404 or "no such image" not in exc.message.lower():
            raise
        ref = body["Image"]
        _, tag = parse.split_image_ref(ref)
        shown = ref if tag else f"{ref}:latest"
        ctx.err(f"Unable to find image '{shown}' locally")
        from engine.cli import images  # only to pull: ~2 ms of every run's start-up otherwise

        images.pull_image(ctx, ref, out=ctx.stderr, quiet=pull_quietly)
        answer = ctx.client.post_json("/containers/create", params, body)
    for warning in (answer or {}).get("Warnings") or []:
        ctx.err(f"WARNING: {warning}")
    return str(answer["Id"])


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    name, body = build_create(args, ctx.environ, "create")
    ctx.out(create_container(ctx, name, body, pull_quietly=args.quiet))
    return 0


def _start(ctx: Context, container_id: str) -> None:
    try:
        ctx.client.post_json(f"/containers/{container_id}/start")
    except ApiError as exc:
        # Docker exits 127/126 when the command is missing or not executable
        code = start_exit_code(exc.message)
        err = CliError(f"Error response from daemon: {exc.message}",
                       hint_for(exc.status, exc.message), code)
        raise err from None


class _Waiter:
    """`POST /containers/{id}/wait` in a thread, answered when the container exits.

    The daemon sends the response head as soon as the wait is registered and the body at the
    exit (Docker does the same), so `begun` is set once the head is in: only then may the
    container be started, or a fast exit (or an `--rm` removal) could slip past the wait.
    (A thread it holds, not a Thread subclass: `logs` and `start` need no threading module.)"""

    def __init__(self, ctx: Context, container_id: str, condition: str) -> None:
        import threading

        self.thread = threading.Thread(target=self.run, daemon=True)
        self.ctx = ctx
        self.container_id = container_id
        self.condition = condition
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.begun = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with self.ctx.client.stream("POST", f"/containers/{self.container_id}/wait",
                                        {"condition": self.condition}) as chunks:
                self.begun.set()
                data = b"".join(chunks)
            self.result = json.loads(data) if data.strip() else {}
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = exc
        finally:
            self.begun.set()
            self.ready.set()

    def start(self) -> None:
        self.thread.start()

    def wait_begun(self) -> None:
        self.begun.wait()
        if self.error is not None:
            raise self.error

    def status(self) -> int:
        self.ready.wait()
        if self.error is not None:
            raise self.error
        result = self.result or {}
        message = (result.get("Error") or {}).get("Message")
        if message:
            raise CliError(f"Error waiting for container: {message}",
                           "check 'shipslog ps -a' for the container's state")
        return int(result.get("StatusCode", 0))


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    name, body = build_create(args, ctx.environ, "run")
    tty = bool(body["Tty"])
    want_stdin = bool(body["AttachStdin"])
    if tty and want_stdin and not ctx.isatty(ctx.stdin):
        # Docker's CheckTty, before anything is created: raw mode needs a terminal
        raise CliError("the input device is not a TTY",
                       "drop -t, or run from a terminal (use -i alone to pipe input)")
    container_id = create_container(ctx, name, body, pull_quietly=args.quiet)
    if args.detach:
        _start(ctx, container_id)
        ctx.out(container_id)
        return 0
    attach_params = {"stream": True, "stdin": want_stdin, "stdout": body["AttachStdout"],
                     "stderr": body["AttachStderr"]}
    if args.detach_keys:
        attach_params["detachKeys"] = args.detach_keys
    sock = None
    if want_stdin or body["AttachStdout"] or body["AttachStderr"]:
        sock = ctx.client.hijack("POST", f"/containers/{container_id}/attach", attach_params)
    condition = "removed" if args.rm else "next-exit"
    waiter = _Waiter(ctx, container_id, condition)
    waiter.start()
    try:
        waiter.wait_begun()
        _start(ctx, container_id)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    if tty:
        _resize(ctx, f"/containers/{container_id}/resize")
    if sock is not None:
        with stdio.proxy_signals(
            lambda name: ctx.client.post_json(f"/containers/{container_id}/kill",
                                              {"signal": name}),
            enabled=not tty and args.sig_proxy == "true",
        ):
            if _copy(ctx, sock, tty=tty, want_stdin=want_stdin,
                     resize_path=f"/containers/{container_id}/resize",
                     detach_keys=args.detach_keys):
                return 0  # detached: the container runs on
    raise ExitStatus(waiter.status())


def _resize(ctx: Context, path: str) -> None:
    size = stdio.terminal_size(ctx.stdin)
    if size is None:
        return
    try:
        ctx.client.post_json(path, {"h": size[0], "w": size[1]})
    except ApiError:
        pass  # a resize the daemon refuses is cosmetic; Docker ignores it too


# ------------------------------------------------------------------- start and attach

def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    if (args.attach or args.interactive) and len(args.containers) > 1:
        raise UsageError("you cannot start and attach multiple containers at once", "start")
    if args.attach or args.interactive:
        return _start_attached(ctx, args.containers[0], args.interactive, args.detach_keys)
    failed = 0
    for ref in args.containers:
        try:
            _start(ctx, ref)
            ctx.out(ref)
        except CliError as exc:
            ctx.err(f"shipslog: {exc.message}")
            failed += 1
    if failed:
        raise CliError(f"failed to start {failed} of {len(args.containers)} containers",
                       "see the errors above", 1)
    return 0


def _container_info(ctx: Context, ref: str) -> dict[str, Any]:
    return dict(ctx.client.get_json(f"/containers/{ref}/json"))


def _start_attached(ctx: Context, ref: str, interactive: bool, detach_keys: str = "") -> int:
    info = _container_info(ctx, ref)
    container_id = info["Id"]
    tty = bool(info.get("Config", {}).get("Tty"))
    want_stdin = interactive and bool(info.get("Config", {}).get("OpenStdin"))
    sock = ctx.client.hijack("POST", f"/containers/{container_id}/attach",
                             {"stream": True, "stdin": want_stdin, "stdout": True,
                              "stderr": True, **_keys_param(detach_keys)})
    auto_remove = bool(info.get("HostConfig", {}).get("AutoRemove"))
    waiter = _Waiter(ctx, container_id, "removed" if auto_remove else "next-exit")
    waiter.start()
    waiter.wait_begun()
    _start(ctx, container_id)
    if _copy(ctx, sock, tty=tty, want_stdin=want_stdin, detach_keys=detach_keys):
        return 0
    raise ExitStatus(waiter.status())


def _keys_param(detach_keys: str) -> dict[str, str]:
    return {"detachKeys": detach_keys} if detach_keys else {}


def _detach_bytes(ctx: Context, spec: str) -> bytes:
    try:
        return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)
    except InvalidArgument as exc:  # Docker's CLI warns and falls back to the default
        ctx.err(f"shipslog: {exc.message}; using {DEFAULT_DETACH_KEYS}")
        return parse_detach_keys(DEFAULT_DETACH_KEYS)


def _copy(ctx: Context, sock: Any, *, tty: bool, want_stdin: bool,
          resize_path: str = "", detach_keys: str = "") -> bool:
    """Stream both ways until the output ends; True when the user typed the detach keys
    (with a terminal only, as in Docker's CLI), leaving the container or exec running."""
    import threading

    keys = _detach_bytes(ctx, detach_keys) if tty else None
    detached = threading.Event()
    with stdio.raw_terminal(ctx.stdin, tty and want_stdin), stdio.on_resize(
            lambda: _resize(ctx, resize_path), enabled=tty and bool(resize_path)):
        system_error = stdio.pump(sock, tty=tty, stdin=ctx.stdin if want_stdin else None,
                                  stdout=ctx.out_bytes(), stderr=ctx.err_bytes(),
                                  detach_keys=keys, detached=detached)
    if system_error:
        ctx.err(system_error.decode("utf-8", "replace").rstrip())
    return detached.is_set()


def cmd_attach(ctx: Context, args: argparse.Namespace) -> int:
    info = _container_info(ctx, args.container)
    state = info.get("State", {})
    if not state.get("Running"):
        raise CliError("You cannot attach to a stopped container, start it first",
                       f"run 'shipslog start -a {args.container}'")
    container_id = info["Id"]
    tty = bool(info.get("Config", {}).get("Tty"))
    want_stdin = not args.no_stdin and bool(info.get("Config", {}).get("OpenStdin"))
    sock = ctx.client.hijack("POST", f"/containers/{container_id}/attach",
                             {"stream": True, "stdin": want_stdin, "stdout": True,
                              "stderr": True, "logs": False, **_keys_param(args.detach_keys)})
    if tty:
        _resize(ctx, f"/containers/{container_id}/resize")
    if _copy(ctx, sock, tty=tty, want_stdin=want_stdin,
             resize_path=f"/containers/{container_id}/resize", detach_keys=args.detach_keys):
        return 0
    answer = ctx.client.get_json(f"/containers/{container_id}/json")
    raise ExitStatus(int(answer.get("State", {}).get("ExitCode", 0)))


# ------------------------------------------------------------------- exec

def build_exec(args: argparse.Namespace, environ: Any) -> dict[str, Any]:
    """The body of `POST /containers/{id}/exec`."""
    if not args.command:
        raise UsageError("\"exec\" requires at least 2 arguments", "exec")
    env: list[str] = []
    for path in args.env_file:
        env += parse.read_env_file(path, environ)
    env += [parse.parse_env(e, environ) for e in args.env]
    body: dict[str, Any] = {
        "AttachStdin": args.interactive and not args.detach,
        "AttachStdout": not args.detach,
        "AttachStderr": not args.detach,
        "Tty": args.tty,
        "Cmd": list(args.command),
    }
    if env:
        body["Env"] = env
    if args.workdir:
        body["WorkingDir"] = args.workdir
    if args.user:
        body["User"] = args.user
    if args.privileged:
        body["Privileged"] = True
    if args.detach_keys:
        body["DetachKeys"] = args.detach_keys
    return body


def cmd_exec(ctx: Context, args: argparse.Namespace) -> int:
    body = build_exec(args, ctx.environ)
    if args.tty and body["AttachStdin"] and not ctx.isatty(ctx.stdin):
        raise CliError("the input device is not a TTY",
                       "drop -t, or run from a terminal (use -i alone to pipe input)")
    created = ctx.client.post_json(f"/containers/{args.container}/exec", None, body)
    exec_id = created["Id"]
    start_body: dict[str, Any] = {"Detach": args.detach, "Tty": args.tty}
    size = stdio.terminal_size(ctx.stdin) if args.tty else None
    if size is not None:
        start_body["ConsoleSize"] = list(size)  # set before the process starts (Docker 23+)
    try:
        if args.detach:
            ctx.client.post_json(f"/exec/{exec_id}/start", None, start_body)
            return 0
        sock = ctx.client.hijack("POST", f"/exec/{exec_id}/start", None, start_body)
    except ApiError as exc:
        code = start_exit_code(exc.message)
        raise CliError(f"Error response from daemon: {exc.message}",
                       "check the command and the container's PATH", code) from None
    if args.tty:
        _resize(ctx, f"/exec/{exec_id}/resize")
    if _copy(ctx, sock, tty=args.tty, want_stdin=bool(body["AttachStdin"]),
             resize_path=f"/exec/{exec_id}/resize", detach_keys=args.detach_keys):
        return 0  # detached: the exec runs on
    inspected = ctx.client.get_json(f"/exec/{exec_id}/json")
    code = inspected.get("ExitCode")
    raise ExitStatus(int(code) if code is not None else 0)


# ------------------------------------------------------------------- logs

def logs_params(args: argparse.Namespace, now: float) -> dict[str, Any]:
    """Query parameters of `GET /containers/{id}/logs`."""
    params: dict[str, Any] = {"stdout": True, "stderr": True}
    if args.follow:
        params["follow"] = True
    if args.timestamps:
        params["timestamps"] = True
    if args.details:
        params["details"] = True
    if args.tail != "all":
        if not args.tail.lstrip("-").isdigit():
            raise UsageError(f"invalid value for --tail: {args.tail}", "logs")
        params["tail"] = args.tail
    for flag in ("since", "until"):
        value = getattr(args, flag)
        if value:
            try:
                params[flag] = parse.parse_timestamp(value, now)
            except ValueError as exc:
                raise UsageError(f"invalid value for --{flag}: {exc}", "logs") from None
    return params


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    params = logs_params(args, ctx.clock())
    info = ctx.read("logs", f"/containers/{args.container}/json")
    tty = bool(info.get("Config", {}).get("Tty"))
    demux = stdio.Demuxer(ctx.out_bytes(), ctx.err_bytes(), tty=tty)
    source = ctx.local if ctx.local is not None else ctx.client
    with source.stream("GET", f"/containers/{info['Id']}/logs", params) as chunks:
        demux.copy(chunks)
    if demux.system_error:
        raise CliError(demux.system_error.decode("utf-8", "replace").strip(),
                       "check the container's log driver and log file")
    return 0

