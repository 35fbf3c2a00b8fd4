"""`shipslog --store postgresql://…`: the log readers (`events`, `history`, `audit verify`,
`audit who`) answered from a fleet's central PostgreSQL instead of a daemon, for one host
(`--host NAME`) or all of them (a HOST column first in tables, a `host` field in JSON).

I/O: reads the center through events/central.py (PostgreSQL); no daemon, no local state.

`FleetReader` stands where `--root`'s LocalReader does (the verbs call `ctx.read` and
`stream_json` the same way), so each verb keeps its own table and JSON formats; the answers
are built with the same projections the daemon's routes use (projections/history.py).
"""

from __future__ import annotations

import contextlib
import json

from engine.cli.errors import CliError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

    from events.central import Unreadable
    from events.envelope import Envelope

FLEET_VERBS = ("events", "history", "audit")
KINDS = ("container", "image", "volume", "network")


class FleetReader:
    """The center, read the way the CLI reads a daemon. Methods mirror the API client's."""

    fleet = True

    def __init__(self, url: str, host: str | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        from events.central import CentralLog

        self.url = url
        self.host = host
        self.warn = warn
        self.left_out: dict[tuple[str, str], int] = {}  # (host, type) -> events left out
        self.log = CentralLog(url, on_unreadable=self._left_out)

    def _left_out(self, what: Unreadable) -> None:
        """An event this build cannot read: the answer goes on without it, and the user is
        told once per host and event type (a host running a newer version writes many)."""
        key = (what.host, what.type)
        seen = self.left_out.get(key, 0)
        self.left_out[key] = seen + 1
        if not seen and self.warn is not None:
            self.warn(f"warning: left out events of type {what.type} from host {what.host} "
                      f"(first: seq {what.seq}): {what.message}; {what.hint}")

    def _open(self) -> Any:
        from events.central import CentralError

        try:
            self.log.open()
            if self.host is not None and self.host not in {h for h, _, _ in self.log.hosts()}:
                raise CliError(f"no host {self.host!r} at the center",
                               "list the hosts with 'shipslog --store URL events' (HOST column)")
        except CentralError as exc:
            raise CliError(exc.message, exc.hint) from None
        return self.log

    def close(self) -> None:
        self.log.close()

    def hosts(self) -> list[str]:
        log = self._open()
        return [self.host] if self.host is not None else [h for h, _, _ in log.hosts()]

    # -- the client's interface -----------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None, *,
                 verb: str = "") -> Any:
        params = dict(params or {})
        if path == "/shipslog/audit/verify":
            return self._verify()
        if path.startswith("/shipslog/history/"):
            if params.get("changes") or params.get("filters"):
                raise UsageError("--changes and --filter are not served from --store", "history")
            return self._history(path[len("/shipslog/history/"):], params.get("kind"))
        if path == "/shipslog/audit/who":
            return self._who(params)
        if path == "/shipslog/at/containers/json":
            return self._ps_at(params)
        raise CliError(f"--store does not serve {path}",
                       "fleet queries: events, history, audit verify, audit who, ps --at")

    @contextlib.contextmanager
    def stream_json(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                    body: Any = None) -> Iterator[Iterator[Any]]:
        if path == "/events":
            yield self._docker_events(dict(params or {}))
            return
        if path != "/shipslog/events":
            raise CliError(f"--store does not serve {path}", "use 'events --all'")
        yield self._events(dict(params or {}))

    # -- answers ------------------------------------------------------------------------

    def _verify(self) -> dict[str, Any]:
        """Each host's chain re-walked from the center's rows; all hosts: the first failure."""
        log = self._open()
        total, heads, bad = 0, 0, None
        last = ""
        for host in self.hosts():
            result = log.verify(host)
            total += result.checked
            heads += log.head(host)[0]
            last = result.last_hash
            if not result.ok and bad is None:
                bad = (host, result)
        out: dict[str, Any] = {
            "ok": bad is None, "checked": total, "head": heads, "last_hash": last,
            "first_bad_seq": None, "reason": "", "first_hash": "", "archived": 0,
            "archived_checked": 0, "missing_archives": [], "host": self.host,
            "hosts": self.hosts(),
        }
        if bad is not None:
            out.update(first_bad_seq=bad[1].first_bad_seq,
                       reason=f"host {bad[0]}: {bad[1].reason}")
        return out

    def _matches(self, ref: str, kind: str | None) -> list[tuple[str, str, str]]:
        """(host, kind, stream) of every object `ref` names, on the chosen host(s)."""
        from events.vocabulary import NameClaimed, NameReleased

        log = self._open()
        found: list[tuple[str, str, str]] = []
        for k in (kind,) if kind else KINDS:
            for host, stream in log.streams(f"{k}-{ref}", self.host):
                found.append((host, k, stream))
        if not found and kind in (None, "container"):
            for host, stream in log.streams(f"name-{ref.lstrip('/')}", self.host):
                if stream != f"name-{ref.lstrip('/')}":
                    continue
                for env in reversed(log.stream_events(host, [stream])):
                    if isinstance(env.event, NameClaimed | NameReleased):
                        found.append((host, "container", f"container-{env.event.container_id}"))
                        break
        return found

    def _history(self, ref: str, kind: str | None) -> dict[str, Any]:
        import msgspec

        from projections import history as hist

        found = self._matches(ref, kind)
        if not found:
            where = f"host {self.host}" if self.host else "any host"
            raise CliError(f"No such object: {ref} on {where}",
                           "it never reached the center; check the name or --host")
        if len({(h, s) for h, _, s in found}) > 1:
            places = ", ".join(sorted({f"{s[:24]} on {h}" for h, _, s in found}))
            raise CliError(f"{ref} names several objects: {places}",
                           "give more of the id, or --host NAME")
        host, k, stream = found[0]
        envs = self._object_events(host, stream)
        ident = stream[len(k) + 1:]
        doc = msgspec.to_builtins(hist.build_timeline(k, ident, _shown(envs)))
        return {**doc, "host": host}

    def _object_events(self, host: str, stream: str) -> list[Any]:
        """An object's own events on `host` and those of the operations that acted on it."""
        from events.envelope import stream_of
        from projections import history as hist

        log = self._open()
        own = log.stream_events(host, [stream])
        ops = [stream_of("op", op) for op in hist.op_ids_of(own) if not op.startswith("exit-")]
        return sorted(own + (log.stream_events(host, ops) if ops else []), key=lambda e: e.seq)

    def _who(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Who did what, per host: every operation, or those on OBJECT (on each host where
        that name or id is found), filtered as the daemon filters them."""
        import msgspec

        from projections import history as hist
        from projections.actors import filter_who

        who = _actor_filter(params.get("filters"))
        since, until = _ns_point(params.get("since")), _ns_point(params.get("until"))
        uid = params.get("uid")
        ref = params.get("object")
        if ref:
            found = self._matches(str(ref), params.get("kind") or None)
            if not found:
                where = f"host {self.host}" if self.host else "any host"
                raise CliError(f"No such object: {ref} on {where}",
                               "it never reached the center; check the name or --host")
            sources = [(host, self._object_events(host, stream)) for host, _, stream in found]
        else:
            sources = [(host, [h.envelope for h in self._open().events(
                host=host, types=["OperationRequested", "OperationCompleted",
                                  "OperationFailed", "OperationCompensated"])])
                       for host in self.hosts()]
        rows: list[dict[str, Any]] = []
        for host, envs in sources:
            for row in filter_who(hist.who(_shown(envs)), who):
                doc = msgspec.to_builtins(row)
                if uid is not None and doc["uid"] != int(uid):
                    continue
                if (since is not None and doc["time_ns"] < since) or (
                        until is not None and doc["time_ns"] > until):
                    continue
                rows.append({"host": host, **doc})
        rows.sort(key=lambda r: (r["time_ns"], r["host"], r["seq"]))
        return rows

    def _ps_at(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """`ps --at T`: each host's state folded from its events up to T (projections/fold),
        listed as the daemon's `GET /containers/json` lists it, with a `Host` field."""
        import msgspec

        from engine.api.docker.render import status_line, summary
        from projections.fold import fold

        if params.get("filters"):
            raise UsageError("--filter is not served from --store", "ps")
        at = _ns_point(params.get("at"))
        assert at is not None
        show_all = bool(params.get("all"))
        found: list[tuple[int, dict[str, Any]]] = []
        for host in self.hosts():
            state = fold(h.envelope for h in self._open().events(host=host, until_ns=at))
            for c in state.containers.values():
                if not show_all and c.status not in ("running", "paused", "restarting"):
                    continue
                doc = msgspec.to_builtins(msgspec.structs.replace(
                    summary(state, c, now_ns=0), Status=status_line(c, at)))
                found.append((c.created_at, {"Host": host, **doc}))
        found.sort(key=lambda item: item[0], reverse=True)
        limit = int(params.get("limit") or 0)
        rows = [doc for _, doc in found]
        return rows[:limit] if limit > 0 else rows

    def _docker_events(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """`events` as `docker events` prints them (what a daemon's `/events` sends), from
        every host's log in time order, each with its `host`. Docker's filters (type,
        event, container, image, volume, network, label) apply to the messages."""
        import msgspec

        from engine.api.docker.events import DockerEvents, matches
        from engine.api.docker.translate import parse_filters
        from engine.core.errors import InvalidArgument
        from projections.fold import fold

        since, until = _ns_point(params.get("since")), _ns_point(params.get("until"))
        try:
            filters = parse_filters(params.get("filters"))
        except InvalidArgument as exc:
            raise UsageError(exc.message, "events") from None
        log = self._open()
        converters: dict[str, DockerEvents] = {}

        def converter(host: str) -> DockerEvents:
            # Names and images come from the create events on the way; a container created
            # before the window is looked up in that host's state, folded once when needed.
            if host not in converters:
                state: list[Any] = []

                def state_of(h: str = host) -> Any:
                    if not state:
                        state.append(fold(e.envelope for e in log.events(host=h,
                                                                         until_ns=until)))
                    return state[0]

                converters[host] = DockerEvents(state_of)
            return converters[host]

        for item in self._history_then_live(params, until):
            for msg in converter(item.host).convert_all(next(_shown([item.envelope]))):
                if (since is None or item.envelope.recorded_at >= since) and (
                        not filters or matches(msg, filters)):
                    yield {"host": item.host, **msgspec.to_builtins(msg)}

    def _history_then_live(self, params: dict[str, Any], until: int | None) -> Iterator[Any]:
        """Every host's events up to `until`; with `follow` (and no `until`), then each new
        one as the center commits it (LISTEN/NOTIFY: CentralLog.follow)."""
        log = self._open()
        seen: dict[str, int] = {}
        for item in log.events(host=self.host, until_ns=until):
            seen[item.host] = item.envelope.seq
            yield item
        if params.get("follow") and until is None:
            yield from log.follow(host=self.host, after=seen)

    def _events(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        since, until = _ns_point(params.get("since")), _ns_point(params.get("until"))
        types, stream = _event_filters(params.get("filters"))
        limit = params.get("limit")
        if params.get("follow") and limit is None:
            for item in self._history_then_live(params, until):
                env = item.envelope
                if (since is None or env.recorded_at >= since) and (
                        types is None or env.type in types) and (
                        stream is None or env.stream == stream):
                    yield _event_line(item.host, env)
            return
        for item in self._open().events(host=self.host, since_ns=since, until_ns=until,
                                        types=types, stream=stream,
                                        limit=None if limit is None else int(limit)):
            yield _event_line(item.host, item.envelope)


def _shown(envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
    """Envelopes with callers' old command lines redacted, as the daemon shows them (the rule
    of engine/api/routes/shipslog.shown_actor; the CLI may not import the server)."""
    import msgspec

    from events.redact import redact_argv

    for env in envelopes:
        command = env.actor.command
        shown = redact_argv(command) if command else command
        yield env if shown == command else msgspec.structs.replace(
            env, actor=msgspec.structs.replace(env.actor, command=shown))


def _event_line(host: str, env: Envelope) -> dict[str, Any]:
    """One event in shipslog's own JSON format (the daemon's `/shipslog/events` line), with
    the host it came from first."""
    from datetime import UTC, datetime

    import msgspec

    env = next(_shown([env]))
    secs, nanos = divmod(env.recorded_at, 1_000_000_000)
    time = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
    return {"host": host, "seq": env.seq, "time": time,
            "timeNano": env.recorded_at, "type": env.type, "stream": env.stream,
            "stream_version": env.stream_version, "schema_version": env.schema_version,
            "op_id": env.op_id, "actor": msgspec.to_builtins(env.actor),
            "event": msgspec.to_builtins(env.event), "hash": env.hash,
            "command_id": env.command_id}


def _actor_filter(raw: Any) -> Any:
    """`--filter actor=|uid=|command=|outcome=` as the daemon reads them (user names from this
    machine's passwd: the log keeps uids)."""
    from engine.api.docker.translate import parse_filters
    from engine.core.errors import InvalidArgument
    from engine.shell.files import uid_of
    from projections.actors import ACTOR_KEYS, UnknownUser, actor_filter

    try:
        return actor_filter(parse_filters(raw, ACTOR_KEYS) if raw else {}, uid_of)
    except InvalidArgument as exc:
        raise UsageError(exc.message, "audit") from None
    except (UnknownUser, ValueError) as exc:
        raise UsageError(str(exc), "audit") from None


def _ns_point(value: Any) -> int | None:
    """A CLI point (Unix seconds as text) in ns; `seq:N` is per host, so not across a fleet."""
    if value in (None, ""):
        return None
    text = str(value)
    if text.startswith("seq:"):
        raise UsageError("seq:N names a point in one host's log; with --store give a time",
                         "events")
    return int(float(text) * 1_000_000_000)


def _event_filters(raw: Any) -> tuple[list[str] | None, str | None]:
    """`--filter type=EventType` and `--filter container=ID` from the Docker-style JSON."""
    if not raw:
        return None, None
    filters = json.loads(raw)
    unknown = set(filters) - {"type", "container"}
    if unknown:
        raise UsageError(f"--filter {sorted(unknown)[0]} is not served from --store",
                         "filter by type=EVENT_TYPE or container=FULL_ID")
    types = [t for t in filters.get("type", {})] or None
    containers = list(filters.get("container", {}))
    return types, (f"container-{containers[0]}" if containers else None)


def refuse_store(verb: str) -> CliError:
    return CliError(f"'{verb}' is not a fleet query; --store serves events, history, audit "
                    "verify, audit who and ps --at TIME",
                    f"run 'shipslog {verb}' against a host's daemon")


def add_host_flag(parser: Any) -> None:
    """`--host NAME` of a fleet query (dest fleet_host: -H/--host is the daemon's socket)."""
    parser.add_argument("--host", dest="fleet_host", default=None, metavar="NAME",
                        help="with --store: only this host's events")
