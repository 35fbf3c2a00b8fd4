"""`--root DIR`: read-only verbs (ps, inspect, images, events, logs, history, audit, …) answered
straight from a state root's event database while the daemon is down.

I/O: opens `DIR/events.db` read-only (SQLite), reads container log files under `DIR`; runs the
daemon's own GET handlers in-process under `trio.run`.

The state is the fold of the whole log (`EventStore.fold_to`), the same fold the daemon keeps
in memory, and every GET is dispatched to the same route handlers the daemon serves
(`engine.api.routes.shipslog.read_only_router` and `shipslog_routes`) over a read-only
context, so the output is the same with and without the daemon. Docker's `/events` is the
history part of the daemon's stream (nothing is appending, so there is no live part). A verb
that needs the daemon (run, stop, pull, …) refuses `--root` outright, since it would have to
write.
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

    # -- the read-only context -----------------------------------------------------------

    def context(self) -> Any:
        if self._ctx is not None:
            return self._ctx
        self.check()
        from engine.api.routes.shipslog import ReadOnlyContext
        from engine.shell.paths import Paths
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
        self._ctx = ReadOnlyContext(
            engine=_LazyEngine(store, self.database), store=store,  # type: ignore[arg-type]
            paths=Paths.of(self.root, os.environ.get("SHIPSLOG_EXEC_ROOT", "/run/shipslog")),
            now_ns=time.time_ns(), engine_id=engine_id)
        return self._ctx

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._ctx = None

    def _call(self, method: str, path: str, params: Mapping[str, Any] | None) -> tuple[
            int, list[bytes]]:
        """Run the daemon's handler for a GET; the status and the whole body."""
        import trio

        from engine.api.routes.shipslog import read_only_router, shipslog_routes
        from engine.api.server.router import Request, Router, split_version
        from engine.core.errors import ShipslogError
        from events.envelope import Actor

        if method != "GET":
            raise CliError(f"--root serves read-only queries, not {method} {path}",
                           "start shipslogd and run the command without --root")
        ctx = self.context()
        router = Router()
        router.include(shipslog_routes(ctx))
        router.include(read_only_router(ctx, with_streams=True))
        query = {k: [_encode_param(val)] for k, val in (params or {}).items() if val is not None}
        _, bare = split_version(path)

        async def run() -> tuple[int, list[bytes]]:
            try:
                if bare == "/events":
                    return 200, await self._docker_events(query)
                route, matched = router.match("GET", bare)
                req = Request(method="GET", path=bare, params=matched, query=query, headers={},
                              api_version="1.43", actor=Actor(uid=os.getuid(), gid=os.getgid(),
                                                              pid=os.getpid(), via="cli"))
                resp = await route.handler(req)
            except ShipslogError as exc:
                return exc.status, [json.dumps({"message": exc.message}).encode()]
            chunks = [resp.body] if resp.body else []
            if resp.stream is not None:
                async for chunk in resp.stream:
                    chunks.append(chunk)
            return resp.status, chunks

        return trio.run(run)

    async def _docker_events(self, query: dict[str, list[str]]) -> list[bytes]:
        """Docker's `/events`, history only: there is no daemon appending."""
        import msgspec

        from engine.api.docker.events import DockerEvents, matches
        from engine.api.docker.translate import parse_filters
        from engine.api.routes.system import parse_event_time, parse_event_until

        ctx = self.context()
        arg = {k: v[0] for k, v in query.items()}
        since = parse_event_time(arg.get("since"), ctx.now_ns)
        until = parse_event_until(arg.get("until"), ctx.now_ns)
        filters = parse_filters(arg.get("filters"))
        converter = DockerEvents(lambda: ctx.engine.state)
        out: list[bytes] = []
        for env in ctx.store.read(0):
            if until is not None and env.recorded_at > until:
                break
            for msg in converter.convert_all(env):
                if ((since is None or env.recorded_at >= since)
                        and (not filters or matches(msg, filters))):
                    out.append(msgspec.json.encode(msg) + b"\n")
        return out

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


class _LazyEngine:
    """The engine's state as the log says, folded on first use: `audit verify` must work on
    a log so damaged that it no longer folds."""

    def __init__(self, store: Any, database: str) -> None:
        self.store = store
        self.database = database
        self._state: Any = None

    @property
    def state(self) -> Any:
        if self._state is None:
            from projections.engine import EngineProjection

            try:
                self._state = self.store.fold_to(EngineProjection())
            except Exception as exc:  # noqa: BLE001 - e.g. an altered event that won't decode
                raise CliError(f"{self.database} is not a readable shipslog event log: {exc}",
                               "run 'shipslog --root DIR audit verify' to find the damaged "
                               "event") from None
        return self._state


def refuse_root(verb: str) -> CliError:
    """A verb that changes state needs the daemon: --root only serves reads."""
    return CliError(f"'{verb}' changes state and needs the daemon; --root serves read-only "
                    "queries", f"start shipslogd and run 'shipslog {verb}' without --root")
