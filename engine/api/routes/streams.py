"""Docker API handlers that stream a container's bytes: logs, attach, exec, top, resize.

I/O: reads container logs (files written by the monitor), connects to the monitor's attach
socket, runs `runc exec` through the runtime driver, and records exec sessions as events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from engine.api.docker import reads
from engine.api.docker.escape import DEFAULT_DETACH_KEYS, EscapeScanner, parse_detach_keys
from engine.api.docker.models import ExecConfig, ExecInspect, ExecStartConfig, ProcessConfig
from engine.api.routes.reading import read_model
from engine.api.server.hijack import HijackedStream
from engine.api.server.relay import RelayState, relay_exec
from engine.api.server.router import (
    Request,
    Response,
    Router,
    empty,
    hijack,
    json_response,
    streaming,
)
from engine.core import containers as cc
from engine.core import errors
from engine.core.errors import Conflict, InvalidArgument, NotFound, ShipslogError
from engine.core.lookup import find_container
from engine.core.oci_spec import exec_process
from engine.core.runc_messages import runc_message
from engine.shell.files import follow_logs, read_logs, user_db
from engine.shell.readmodel import parse_event_time
from events import vocabulary as v
from events.envelope import Pending, stream_of

log = logging.getLogger("shipslog.api")



def stream_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine
    exec_options: dict[str, ExecConfig] = {}  # exec id -> its create body, until it starts
    live_execs: dict[str, Any] = {}  # exec id -> its ExecProcess while it runs (resize)
    model = read_model(ctx)

    @r.route("GET", "/containers/{id}/logs")
    async def logs(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        stdout, stderr = req.bool("stdout"), req.bool("stderr")
        if not stdout and not stderr:
            raise InvalidArgument("you must choose at least one stream",
                                  hint="ask for stdout=1 and/or stderr=1")
        now = ctx.clock()
        since = parse_event_time(req.arg("since"), now) or 0
        until = parse_event_time(req.arg("until"), now) or 0
        if not (req.bool("follow") and c.status in ("running", "paused", "restarting")):
            _, chunks = await trio.to_thread.run_sync(lambda: _listed(
                reads.container_logs(model, c.id, req, since=since, until=until)))
            return streaming(_each(chunks), content_type=reads.logs_content_type(c))
        tail = reads.log_tail(req.arg("tail") or "all")
        timestamps, tty = req.bool("timestamps"), c.config.tty
        path = ctx.paths.log_path(c.id)

        async def body() -> AsyncIterator[bytes]:
            stop = trio.Event()

            async def watch_exit() -> None:
                await engine.journal.wait_for(
                    lambda s: s.containers.get(c.id) is None
                    or s.containers[c.id].status not in ("running", "paused", "restarting"))
                stop.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_exit)
                async for stream, ts, data in follow_logs(
                        path, stop=stop, stdout=stdout, stderr=stderr, since_ns=since,
                        tail=tail):
                    if until and ts > until:
                        break
                    yield reads.log_payload(stream, ts, data, tty=tty, timestamps=timestamps)
                nursery.cancel_scope.cancel()

        return streaming(body(), content_type=reads.logs_content_type(c))

    @r.route("POST", "/containers/{id}/attach")
    async def attach(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        if c.status in ("removing", "creating"):
            raise Conflict(f"container {c.name} is {c.status}", hint="wait for it to finish")
        want_stdin = req.bool("stdin") and c.config.open_stdin
        keys = parse_detach_keys(req.arg("detachKeys") or DEFAULT_DETACH_KEYS)
        want = {"stdout": req.bool("stdout"), "stderr": req.bool("stderr")}
        tty = c.config.tty
        running = c.status in ("running", "paused")
        # Docker replays the log first with logs=1, then streams only with stream=1: a
        # logs-only attach to a stopped container must end, not wait for its next start.
        with_logs, with_stream = req.bool("logs"), req.bool("stream")
        waiting = (None if running or not with_stream
                   else engine.supervisor.attach_at_start(c.id))
        log_path = ctx.paths.log_path(c.id)

        async def session_of() -> Any:
            if waiting is not None:
                return await waiting
            return await ctx.runtime.attach(c.id)

        async def run(conn: HijackedStream) -> None:
            try:
                session = await session_of()
            except ShipslogError as exc:
                # The start failed (`docker run` of a missing command): its outcome is in the
                # log and the client hears why from the start call; the attach just ends,
                # with one line here, not a traceback (issue 15 item 9).
                log.info("attach to %s ended: %s", c.name, exc.message)
                return
            detached = trio.Event()
            try:
                async with trio.open_nursery() as nursery:
                    if want_stdin:
                        nursery.start_soon(_pump_stdin, conn, session, EscapeScanner(keys),
                                           detached)

                        async def leave_on_detach() -> None:
                            await detached.wait()
                            nursery.cancel_scope.cancel()

                        nursery.start_soon(leave_on_detach)
                    while (msg := await session.receive()) is not None:
                        stream, data = msg
                        if want.get(stream, True):
                            if tty:
                                await conn.send_all(data)
                            else:
                                await conn.send_frame(reads.STREAM_IDS.get(stream, 1), data)
                    nursery.cancel_scope.cancel()
            finally:
                session.close()

        async def logs_then_stream(conn: HijackedStream) -> None:
            if with_logs:
                records = await trio.to_thread.run_sync(lambda: list(read_logs(
                    log_path, stdout=want["stdout"], stderr=want["stderr"])))
                for stream, _ts, data in records:
                    await conn.send_all(reads.log_payload(stream, 0, data, tty=tty,
                                                          timestamps=False))
            if with_stream:
                await run(conn)

        return hijack(logs_then_stream, tty=tty)

    @r.route("POST", "/containers/{id}/resize")
    async def resize(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        if c.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running", hint="start it first")
        await ctx.runtime.resize(c.id, req.int("h", 24) or 24, req.int("w", 80) or 80)
        return empty(200)

    @r.route("GET", "/containers/{id}/top")
    async def top(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        if c.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running", hint="start it first")
        titles, rows = await ctx.runtime.top(c.id, req.arg("ps_args") or "-ef")
        return json_response({"Titles": titles, "Processes": rows})

    @r.route("POST", "/containers/{id}/exec")
    async def exec_create(req: Request) -> Response:
        body = await req.json(ExecConfig)
        c = find_container(engine.state, req.params["id"])
        exec_id = engine.journal.new_id()
        op_id = engine.journal.new_id()
        cmd = tuple(body.Cmd or ())
        env = list(body.Env or [])
        await engine.decide_and_append(lambda s: cc.decide_exec_create(
            s, c.id, op_id=op_id, exec_id=exec_id, cmd=cmd, tty=bool(body.Tty),
            user=body.User or "", working_dir=body.WorkingDir or "",
            privileged=bool(body.Privileged)), req.actor)
        if env:
            engine.secrets.put(exec_id, env)
        if body.DetachKeys:
            parse_detach_keys(body.DetachKeys)  # a bad spec is refused here, as by Docker
        ctx.exec_stdin[exec_id] = bool(body.AttachStdin)
        exec_options[exec_id] = body
        return json_response({"Id": exec_id}, 201)

    @r.route("POST", "/exec/{id}/start")
    async def exec_start(req: Request) -> Response:
        body = await req.json(ExecStartConfig, required=False)
        x = engine.state.execs.get(req.params["id"])
        if x is None:
            raise NotFound(f"No such exec instance: {req.params['id']}",
                           hint="create it first with POST /containers/{id}/exec")
        if x.running or x.exit_code is not None:
            raise Conflict(f"exec {x.id[:12]} has already run", hint="create a new exec")
        c = find_container(engine.state, x.container_id)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running", hint="start it first")
        detach = bool(body and body.Detach)
        image = engine.state.images.get(c.config.image_id)
        try:
            exec_env = engine.secrets.get(x.id)
        except NotFound:
            exec_env = []  # the exec set no variables of its own
        # As in Docker, an exec sees the container's environment, its own variables on top.
        container_env = engine.secrets.get(c.id) if c.config.env else []
        passwd, group = await _user_db(c.rootfs, x.user or c.config.user)
        process = exec_process(c.config, list(image.config.env) if image else [],
                               container_env + exec_env, cmd=x.cmd, user=x.user,
                               working_dir=x.working_dir, tty=x.tty, passwd=passwd,
                               group=group, privileged=x.privileged)
        stdin_wanted = ctx.exec_stdin.pop(x.id, False)
        options = exec_options.pop(x.id, None)
        keys = parse_detach_keys((options and options.DetachKeys) or DEFAULT_DETACH_KEYS)
        size = _console_size((body.ConsoleSize if body else None)
                             or (options.ConsoleSize if options else None))

        async def record(event: v.Event) -> None:
            await engine.journal.append([Pending(stream=stream_of("container", c.id),
                                                 event=event)], actor=req.actor,
                                        op_id="exec-" + x.id[:12])

        async def finish(code: int) -> None:
            live_execs.pop(x.id, None)
            # Shielded but bounded: a cancelled exec (daemon shutdown) still records its exit.
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await record(v.ExecExited(exec_id=x.id, container_id=c.id, exit_code=code))
                engine.secrets.wipe(x.id)

        if detach:
            return await _start_detached(ctx, c.id, x.id, process, record, finish)

        async def session(conn: HijackedStream, state: RelayState) -> None:
            await record(v.ExecStarted(exec_id=x.id, container_id=c.id))
            code, known = 126, False
            ep: Any = None
            try:
                async with ctx.runtime.open_exec(c.id, process, tty=x.tty, size=size,
                                                    stdin=stdin_wanted) as ep:
                    live_execs[x.id] = ep
                    if await ep.started():
                        # Framing follows the start request's Tty, not the exec's (Docker).
                        await relay_exec(conn, ep, mux=not (body and body.Tty),
                                         stdin=stdin_wanted, state=state,
                                         escape=EscapeScanner(keys) if x.tty else None)
                        code = await ep.wait()
                    else:  # runc could not start it (no pid file): say why as dockerd does
                        code = await _tell_start_failure(conn, ep, raw=bool(body and body.Tty))
                    known = True
            except Exception as exc:  # noqa: BLE001 - told to the client, the exit recorded
                if not state.released.is_set():
                    data = f"{exc}\n".encode()
                    try:
                        await (conn.send_all(data) if body and body.Tty
                               else conn.send_frame(2, data))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            finally:
                if not known and ep is not None and ep.returncode is not None:
                    # Cancelled (daemon shutdown): what the process ended with once stopped.
                    code = ep.returncode if ep.returncode >= 0 else 128 - ep.returncode
                await finish(code)  # before the stream ends: a client then asks for the code
                state.released.set()

        async def run(conn: HijackedStream) -> None:
            # The exec lives in a supervisor task: a client that detaches or goes away frees
            # its connection while the process runs on (and the daemon's shutdown cancels it).
            state = RelayState()
            engine.supervisor.spawn_session(session, conn, state)
            await state.released.wait()

        return hijack(run, tty=bool(body and body.Tty))

    @r.route("GET", "/exec/{id}/json")
    async def exec_inspect(req: Request) -> Response:
        x = engine.state.execs.get(req.params["id"])
        if x is None:
            raise NotFound(f"No such exec instance: {req.params['id']}", hint="")
        return json_response(ExecInspect(
            ID=x.id, ContainerID=x.container_id, Running=x.running,
            ExitCode=x.exit_code, Pid=x.pid,
            ProcessConfig=ProcessConfig(privileged=x.privileged, tty=x.tty, user=x.user,
                                        entrypoint=x.cmd[0] if x.cmd else "",
                                        arguments=list(x.cmd[1:]))))

    @r.route("POST", "/exec/{id}/resize")
    async def exec_resize(req: Request) -> Response:
        if req.params["id"] not in engine.state.execs:
            raise NotFound(f"No such exec instance: {req.params['id']}", hint="")
        ep = live_execs.get(req.params["id"])
        if ep is not None and ep.tty:
            ep.resize(req.int("h", 24) or 24, req.int("w", 80) or 80)
        return empty(200)  # a resize before the start or after the exit is cosmetic

    return r


def _console_size(size: list[int] | None) -> tuple[int, int] | None:
    """Docker's ConsoleSize is [height, width]; zeros mean "not given"."""
    if size and len(size) == 2 and size[0] > 0 and size[1] > 0:
        return size[0], size[1]
    return None


def _start_failure_code(message: bytes) -> int:
    """Docker's codes for an exec that never ran: 127 command not found, 126 cannot run."""
    low = message.lower()
    return 127 if b"not found" in low or b"no such file" in low else 126


async def _start_detached(ctx: Any, container_id: str, exec_id: str, process: Any,
                          record: Any, finish: Any) -> Response:
    """`Detach: true`: answer once the process runs; a background task (cancelled with the
    daemon) drains its output and records its exit code, which `GET /exec/{id}/json` shows."""
    outcome: dict[str, Any] = {}
    ready = trio.Event()

    async def background() -> None:
        code = 126
        try:
            async with ctx.runtime.open_exec(container_id, process, stdin=False) as ep:
                async with trio.open_nursery() as nursery:
                    tail = bytearray()
                    nursery.start_soon(_drain, ep.stdout, None)
                    nursery.start_soon(_drain, ep.stderr, tail)
                    outcome["pid"] = await ep.started()
                    if outcome["pid"]:
                        await record(v.ExecStarted(exec_id=exec_id, container_id=container_id,
                                                   pid=outcome["pid"]))
                        ready.set()
                code = await ep.wait()
                if not outcome["pid"]:
                    code = _start_failure_code(bytes(tail))
                    outcome["error"] = bytes(tail).decode("utf-8", "replace").strip()
        except Exception as exc:  # noqa: BLE001 - told to the waiting request, exit recorded
            outcome["error"] = str(exc)
        finally:
            ready.set()
            await finish(code)

    ctx.engine.supervisor.spawn_session(background)
    await ready.wait()
    if not outcome.get("pid"):
        # Docker's words for an exec the runtime could not start; the CLI maps them to
        # 127 (not found) or 126 (cannot run).
        reason = runc_message(outcome.get("error") or "the exec did not start")
        raise errors.KernelError(f"OCI runtime exec failed: {reason}: unknown",
                                 hint="check the command and the container's PATH")
    return empty(200)


async def _tell_start_failure(conn: HijackedStream, ep: Any, *, raw: bool) -> int:
    """runc's error (on its stderr, or the terminal) to the client in dockerd's words, on
    stdout with CRLF (moby `postContainerExecStart`); the exit code dockerd records."""
    source = ep.stderr if ep.stderr is not None else ep.stdout
    err = bytearray()
    while len(err) < 65536:
        try:
            data = await source.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            break  # EIO on a terminal once runc closed it
        if not data:
            break
        err += data
    await ep.wait()
    message = runc_message(err.decode("utf-8", "replace") or "the exec did not start")
    line = f"OCI runtime exec failed: {message}: unknown\r\n".encode()
    try:
        await (conn.send_all(line) if raw else conn.send_frame(1, line))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    return _start_failure_code(bytes(err))


async def _drain(source: trio.abc.ReceiveStream, tail: bytearray | None) -> None:
    """Read and drop a detached exec's output (Docker discards it), keeping a short tail."""
    while True:
        try:
            data = await source.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        if not data:
            return
        if tail is not None:
            tail += data
            del tail[:-1024]


async def _pump_stdin(conn: HijackedStream, session: Any,
                      escape: EscapeScanner | None = None,
                      detached: trio.Event | None = None) -> None:
    """Client input to the container. With `escape`, typing the detach keys ends the attach
    (`detached` is set) and leaves the container running with its stdin open."""
    while data := await conn.receive_some(65536):
        if escape is not None and detached is not None:
            data, hit = escape.feed(data)
            if data:
                await session.send(data)
            if hit:
                detached.set()
                return
            continue
        await session.send(data)
    session.close_stdin()  # `echo x | run -i … cat` ends when the client's input does


async def _user_db(rootfs: str, user: str) -> tuple[bytes | None, bytes | None]:
    """The container's /etc/passwd and /etc/group when `user` names a user or group (issue
    18: `exec -u nobody`), read inside the rootfs without following its symlinks."""
    return await trio.to_thread.run_sync(user_db, rootfs, user)


def _listed(answer: tuple[Any, Any]) -> tuple[Any, list[bytes]]:
    """The log's chunks, read in the worker thread (not lazily on the event loop)."""
    c, chunks = answer
    return c, list(chunks)


async def _each(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
