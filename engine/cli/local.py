"""`--root DIR`: read-only verbs (ps, inspect, images, events, logs, history, audit, …) answered
straight from a state root's event database while the daemon is down.

I/O: opens `DIR/events.db` read-only (SQLite), reads container log files under `DIR`, and
host facts for `info`; all through the read model.

The state is the fold of the whole log (`EventStore.fold_to`), the same fold the daemon keeps
in memory, and every GET is answered by the functions the daemon's routes call: the log's
answers in `engine.shell.readmodel`, Docker's shapes in `engine.api.docker.reads` (`GETS`), so
the output is the same with and without the daemon, and no server module is loaded. Docker's
`/events` is the history part of the daemon's stream (nothing is appending, so there is no
live part). A verb that needs the daemon (run, stop, pull, …) refuses `--root` outright, since
it would have to write.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from engine.cli.errors import CliError

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

READ_ONLY_VERBS = ("ps", "inspect", "events", "images", "history", "logs", "top", "port", "info",
                   "version", "audit", "state", "replay", "debug", "system df")


def _encode_param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class LocalReader:
    """Reads a state root without the daemon. Methods mirror the API client's."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.database = os.path.join(self.root, "events.db")
        self._store: Any = None
        self._ctx: Any = None

    def check(self) -> None:
        if not os.path.isdir(self.root):
            raise CliError(f"state root {self.root} does not exist",
                           "pass the daemon's state directory, e.g. --root /var/lib/shipslog")
        if not os.path.exists(self.database):
            raise CliError(f"no event database at {self.database}",
                           "pass the directory that holds events.db, e.g. --root "
                           "/var/lib/shipslog")

    # -- the read model ------------------------------------------------------------------

    def context(self) -> Any:
        """The read model of the root (opened once)."""
        if self._ctx is not None:
            return self._ctx
        self.check()
        from engine.shell.paths import Paths
        from engine.shell.readmodel import ReadModel
        from events.store import EventStore, StoreError

        try:
            store: EventStore[Any] = EventStore.open(self.database, readonly=True)
        except StoreError as exc:
            raise CliError(exc.message,
                           exc.hint or "pass the directory that holds events.db") from None
        self._store = store
        try:
            first = next(iter(store.read(0, limit=1)), None)
            engine_id = first.hash[:12].upper() if first else ""
        except Exception:  # noqa: BLE001 - a damaged first event: `audit verify` says which
            engine_id = ""
        folded = _LazyState(store, self.database)
        now_ns = time.time_ns()
        self._ctx = ReadModel(
            store=store, state=folded.get, clock=lambda: now_ns, engine_id=engine_id,
            paths=Paths.of(self.root, os.environ.get("SHIPSLOG_EXEC_ROOT", "/run/shipslog")))
        return self._ctx

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._ctx = None

    def _call(self, method: str, path: str, params: Mapping[str, Any] | None) -> tuple[
            int, list[bytes]]:
        """Answer a GET as the daemon would: the status and the whole body."""
        from engine.core.errors import ShipslogError

        if method != "GET":
            raise CliError(f"--root serves read-only queries, not {method} {path}",
                           "start shipslogd and run the command without --root")
        query = {k: [_encode_param(val)] for k, val in (params or {}).items() if val is not None}
        try:
            return 200, _answer(self.context(), _bare(path), query)
        except ShipslogError as exc:
            return exc.status, [json.dumps({"message": exc.message}).encode()]

    # -- the client's interface ----------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None, *,
                 verb: str = "") -> Any:
        """Answer a GET the way the daemon would, from the log."""
        from engine.cli.client import ApiError, _error_message

        status, chunks = self._call("GET", path, params)
        body = b"".join(chunks)
        if status >= 400:
            raise ApiError(status, _error_message(status, body))
        if not body.strip():
            return None
        return json.loads(body)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, params: Mapping[str, Any] | None = None,
               body: Any = None, headers: Mapping[str, str] | None = None
               ) -> Iterator[Iterator[bytes]]:
        from engine.cli.client import ApiError, _error_message

        status, chunks = self._call(method, path, params)
        if status >= 400:
            raw = b"".join(chunks)
            raise ApiError(status, _error_message(status, raw))
        yield iter(chunks)

    @contextlib.contextmanager
    def stream_json(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                    body: Any = None) -> Iterator[Iterator[Any]]:
        from engine.api.docker.stream import JsonLineDecoder

        with self.stream(method, path, params, body) as chunks:

            def objects() -> Iterator[Any]:
                decoder = JsonLineDecoder()
                for chunk in chunks:
                    yield from decoder.feed(chunk)
                yield from decoder.close()

            yield objects()

    def unsupported(self, what: str) -> CliError:
        return CliError(f"--root is not supported for {what}",
                        "start shipslogd and run the command without --root")


class _LazyState:
    """The engine's state as the log says, folded on first use: `audit verify` must work on
    a log so damaged that it no longer folds."""

    def __init__(self, store: Any, database: str) -> None:
        self.store = store
        self.database = database
        self._state: Any = None

    def get(self) -> Any:
        if self._state is None:
            from projections.engine import EngineProjection

            try:
                self._state = self.store.fold_to(EngineProjection())
            except Exception as exc:  # noqa: BLE001 - e.g. an altered event that won't decode
                raise CliError(f"{self.database} is not a readable shipslog event log: {exc}",
                               "run 'shipslog --root DIR audit verify' to find the damaged "
                               "event") from None
        return self._state


def _bare(path: str) -> str:
    """The path without its API version prefix (`/v1.43/info` -> `/info`)."""
    if path.startswith("/v") and "/" in path[1:]:
        head, rest = path[1:].split("/", 1)
        if head[1:].replace(".", "").isdigit():
            return "/" + rest
    return path


def _json(answer: Any) -> list[bytes]:
    """A body as the daemon's `json_response` encodes it (bytes are already JSON)."""
    import msgspec

    if isinstance(answer, bytes):
        return [answer]
    return [msgspec.json.encode(answer) + b"\n"]


def _answer(model: Any, path: str, query: dict[str, list[str]]) -> list[bytes]:
    """The body of `GET path`: the log's answers, Docker's, a container's log, or Docker's
    event history."""
    from engine.api.docker import reads
    from engine.core.errors import Conflict, InvalidArgument, NotFound
    from engine.core.queryargs import QueryArgs

    args = QueryArgs(query)
    if path == "/events":
        return _docker_events(model, args)
    if path.startswith("/shipslog/"):
        return _shipslog(model, path, args)
    try:
        pattern, params = reads.match(path, [*reads.GETS, *_STREAMS])
    except NotFound:
        raise NotFound("page not found") from None
    if pattern == "/containers/{id}/logs":
        from engine.shell.readmodel import parse_event_time

        now = model.now()
        since = parse_event_time(args.arg("since"), now) or 0
        until = parse_event_time(args.arg("until"), now) or 0
        _, chunks = reads.container_logs(model, params["id"], args, since=since, until=until)
        return list(chunks)
    if pattern == "/containers/{id}/top":
        from engine.core.lookup import find_container

        c = find_container(model.state, params["id"])
        if c.status not in ("running", "paused"):
            raise Conflict(f"Container {c.id} is not running", hint="start it first")
        raise InvalidArgument("top lists a container's processes through the daemon",
                              hint="start shipslogd and run 'shipslog top' without --root")
    return _json(reads.GETS[pattern](model, params, args))


_STREAMS = ("/containers/{id}/logs", "/containers/{id}/top")


def _shipslog(model: Any, path: str, args: Any) -> list[bytes]:
    """`/shipslog/…`: the log's own answers (nothing appends, so `events` never follows)."""
    from pathlib import Path

    from engine.api.docker import reads
    from engine.api.docker.translate import parse_filters
    from engine.shell import readmodel as rm
    from engine.shell.logobjects import event_filter

    store, now = model.store, model.now()
    if path == "/shipslog/events":
        filters = parse_filters(args.arg("filters"))
        keep = event_filter(model.state, filters, store) if filters else None
        after, last = rm.events_window(store, args.arg("since"), args.arg("until"), now)
        return list(rm.event_chunks(store, after, last, keep, args.int("limit")))
    if path.startswith("/shipslog/at/"):
        state, _, when = rm.state_at_point(store, args.arg("at"), now)
        frozen = rm.ReadModel(store=store, paths=model.paths, state=lambda: state,
                              clock=lambda: when, engine_id=model.engine_id)
        inner = "/" + path[len("/shipslog/at/"):].lstrip("/")
        pattern, params = reads.match(inner, reads.GETS)
        if pattern not in reads.AT_PATHS:
            from engine.core.errors import InvalidArgument

            raise InvalidArgument(f"GET {inner} cannot be asked at a point in time",
                                  hint="time travel serves ps, inspect, images, volume ls, "
                                       "network ls and info")
        return _json(reads.GETS[pattern](frozen, params, args))
    pattern, params = reads.match(path, _LOG_ANSWERS)
    archive = Path(model.paths.root) / "archive"
    return _json(_LOG_ANSWERS[pattern](rm, model, params, args, archive))


def _who_filters(args: Any) -> Any:
    from engine.api.docker.translate import parse_filters
    from engine.shell.readmodel import WHO_KEYS

    return parse_filters(args.arg("filters"), WHO_KEYS)


# `/shipslog/…` path -> its answer: (readmodel module, model, path params, query, archive)
_LOG_ANSWERS: dict[str, Any] = {
    "/shipslog/history/{ref:path}": lambda rm, m, p, a, arc: rm.history(
        m.store, m.state, p["ref"], a.arg("kind") or None, _who_filters(a), arc,
        changes=a.bool("changes")),
    "/shipslog/audit/head": lambda rm, m, p, a, arc: rm.audit_head(m.store),
    "/shipslog/audit/verify": lambda rm, m, p, a, arc: rm.audit_verify(
        m.store, a.int("seq"), a.int("until"), a.arg("archive") or None),
    "/shipslog/audit/who": lambda rm, m, p, a, arc: rm.audit_who(
        m.store, m.state, m.now(), ref=a.arg("object"), kind=a.arg("kind") or None,
        uid=a.int("uid"), since=a.arg("since"), until=a.arg("until"),
        filters=_who_filters(a)),
    "/shipslog/state/diff": lambda rm, m, p, a, arc: rm.state_diff(
        m.store, a.arg("a"), a.arg("b"), m.now()),
    "/shipslog/replay": lambda rm, m, p, a, arc: rm.replay_report(m.store, a.int("to")),
    "/shipslog/replay/explain/{ref:path}": lambda rm, m, p, a, arc: rm.explain(
        m.store, m.state, p["ref"]),
    "/shipslog/compose/{project}/history": lambda rm, m, p, a, arc: rm.compose_history(
        m.store, p["project"]),
    "/shipslog/compose/{project}/containers": lambda rm, m, p, a, arc: rm.compose_containers(
        m.store, p["project"]),
}


def _docker_events(model: Any, args: Any) -> list[bytes]:
    """Docker's `/events`, history only: there is no daemon appending."""
    import msgspec

    from engine.api.docker.events import DockerEvents, matches
    from engine.api.docker.translate import parse_filters
    from engine.shell.readmodel import parse_event_time, parse_event_until

    now = model.now()
    since = parse_event_time(args.arg("since"), now)
    until = parse_event_until(args.arg("until"), now)
    filters = parse_filters(args.arg("filters"))
    converter = DockerEvents(lambda: model.state)
    out: list[bytes] = []
    for env in model.store.read(0):
        if until is not None and env.recorded_at > until:
            break
        for msg in converter.convert_all(env):
            if ((since is None or env.recorded_at >= since)
                    and (not filters or matches(msg, filters))):
                out.append(msgspec.json.encode(msg) + b"\n")
    return out


def refuse_root(verb: str) -> CliError:
    """A verb that changes state needs the daemon: --root only serves reads."""
    return CliError(f"'{verb}' changes state and needs the daemon; --root serves read-only "
                    "queries", f"start shipslogd and run 'shipslog {verb}' without --root")
