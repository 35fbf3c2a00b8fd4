"""`shipslogd`: the daemon.

I/O: everything, in this order (DESIGN.md, "Processes"): take the exclusive lock on the state
root (before any write), open the log and catch the projection up, record the start, recover
(finish or undo half-done operations, adopt or account for containers), then serve the API on
the unix socket and supervise. SIGTERM/SIGINT stop serving and write the clean-shutdown
marker; containers keep running (their monitors hold them) and are adopted at the next start.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from engine.admin.debug_memory import install_from_env
from engine.api.routes.archive import archive_routes
from engine.api.routes.build import build_routes
from engine.api.routes.check import check_routes
from engine.api.routes.compact import compact_routes
from engine.api.routes.containers import container_routes
from engine.api.routes.df import df_routes
from engine.api.routes.images import image_routes
from engine.api.routes.networks import network_routes
from engine.api.routes.prune import prune_routes
from engine.api.routes.registry import registry_routes
from engine.api.routes.shipslog import shipslog_routes
from engine.api.routes.streams import stream_routes
from engine.api.routes.system import VERSION, system_routes
from engine.api.routes.volumes import volume_routes
from engine.api.server.http import App, Limits, serve_unix
from engine.core.errors import ShipslogError
from engine.daemon.wiring import ImageStorage, LinuxRuntime, real_drivers
from engine.drivers.host.statelock import take_lock
from engine.drivers.network.linux import linux_network
from engine.drivers.secrets.store import SecretStore
from engine.drivers.snapshots.overlay import Snapshotter
from engine.registry.client import warm_tls
from engine.shell.build.session import sweep_step_containers
from engine.shell.compaction import archive_dir, run_auto_compaction
from engine.shell.files import FileService
from engine.shell.images import ImageOps
from engine.shell.journal import Journal
from engine.shell.leftovers import Leftover, discard_uncommitted
from engine.shell.network import NetworkOps
from engine.shell.paths import Paths
from engine.shell.recovery import Recovery, run_bounded
from engine.shell.replication import default_host_name, open_replicator
from engine.shell.service import Engine
from engine.shell.supervisor import Supervisor
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Pending
from events.store import EventStore, StoreError
from events.writer import StoreWriter, open_store_writer
from projections.engine import EngineProjection

log = logging.getLogger("shipslogd")

DEFAULT_ROOT = "/var/lib/shipslog"
DEFAULT_EXEC_ROOT = "/run/shipslog"


@dataclass
class DaemonContext:
    """What the API handlers reach: the engine, the log, the runtime and the paths."""

    engine: Engine
    images: ImageOps
    store: EventStore
    writer: StoreWriter
    paths: Paths
    runtime: LinuxRuntime
    clock: Any
    engine_id: str
    runc_version: str = ""
    files: FileService | None = None  # cp, diff, export, stats (None: no daemon, no files)
    exec_stdin: dict[str, bool] = field(default_factory=dict)  # exec id -> AttachStdin
    replication: Any = None  # engine.shell.replication.ReplicationStatus (--replicate-to)
    compaction_hold: Any = None  # () -> ns: compaction stops at the center's last event


def open_log(paths: Paths, store: str | None = None,
             host_name: str | None = None) -> EventStore[Any]:
    """The event log (`store`: a `postgresql://` URL, default the SQLite file under the root),
    or one clear error when SQLite finds it damaged (RELIABILITY F-15): a corrupt page must
    not end the daemon in a traceback."""
    try:
        return EventStore.open(store or paths.db, projection=EngineProjection(),
                               host_name=host_name)
    except (sqlite3.DatabaseError, StoreError) as exc:
        damaged = damaged_log(exc, paths)
        if damaged is None:
            raise
        raise damaged from None


_DAMAGE_WORDS = ("malformed", "not a database", "corrupt")


def damaged_log(exc: BaseException, paths: Paths) -> ShipslogError | None:
    """The one-line error for SQLite finding the log damaged anywhere in `exc` (at open, or
    at the first read or write of a damaged page); None for anything else."""
    todo = [exc]
    while todo:
        e = todo.pop()
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
            continue
        if isinstance(e, (sqlite3.DatabaseError, StoreError)) and any(
                w in str(e) for w in _DAMAGE_WORDS):
            reason = str(e).rsplit(": ", 1)[-1]
            return ShipslogError(
                f"the event log {paths.db} is damaged ({reason}); the daemon cannot run on it",
                hint=f"see the damage with `shipslog --root {paths.root} system check`; restore "
                     f"{paths.db.name} from a backup, or start over with `shipslog system reset "
                     f"--root {paths.root} --exec-root {paths.exec_root} --force` (it removes "
                     "every container, image and volume of this root)")
        if e.__cause__ is not None:
            todo.append(e.__cause__)
    return None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def socket_path(host: str) -> str:
    if not host.startswith("unix://"):
        raise ShipslogError(f"unsupported host {host!r}", hint="use unix:///path/to/socket")
    return host[len("unix://"):]


async def run_daemon(args: argparse.Namespace, *,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    paths = Paths.of(args.root, args.exec_root)
    paths.ensure()
    lock_fd = take_lock(paths)
    try:
        await _serve(args, paths, task_status)
    finally:
        os.close(lock_fd)


async def _serve(args: argparse.Namespace, paths: Paths, task_status: Any) -> None:
    install_from_env()  # SHIPSLOG_TRACEMALLOC: memory snapshots on SIGUSR2 (debugging)
    current_boot = boot_id()
    previous_boot = paths.boot_id_file.read_text().strip() if paths.boot_id_file.exists() else ""
    boot_changed = previous_boot != current_boot
    clean = paths.clean_shutdown_marker.exists()
    paths.clean_shutdown_marker.unlink(missing_ok=True)

    store = await trio.to_thread.run_sync(
        open_log, paths, getattr(args, "store", None), getattr(args, "host_name", None))
    store.archive_dir = archive_dir(paths.root)  # where compaction writes (any backend)
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(paths.db) + suffix)
        if p.exists():
            os.chmod(p, 0o600)
    runtime = LinuxRuntime(paths)
    runc_version = await runtime.check()
    storage = ImageStorage(paths.root)
    secrets = SecretStore(paths.secrets)
    # Nothing runs yet: whatever a killed daemon left half-written (an ingest, a staged
    # layer, a half-deleted snapshot) is swept before anything could look at it (F-01).
    discarded = await trio.to_thread.run_sync(_sweep_partial_writes, storage, paths)
    try:
        async with open_store_writer(store) as writer, trio.open_nursery() as nursery:
            journal = Journal(store, writer)
            await journal.append([Pending(stream="daemon", event=v.DaemonStarted(
                version=VERSION, boot_id=current_boot, clean_shutdown=clean)),
                *(Pending(stream="daemon", event=v.IngestDiscarded(path=x.path, bytes=x.bytes))
                  for x in discarded)],
                actor=SYSTEM_ACTOR, op_id="daemon-" + journal.new_id()[:12])
            network = NetworkOps(journal, linux_network(paths.exec_root))
            await network.start(nursery)
            drivers = real_drivers(paths, runtime=runtime, secrets=secrets, storage=storage,
                                   network=network)
            supervisor = Supervisor(journal, drivers, nursery)
            restart = await Recovery(supervisor, boot_changed=boot_changed).run()
            await network.readopt()
            await network.reconcile()
            await network.sweep()
            paths.boot_id_file.write_text(current_boot + "\n")
            engine = Engine(journal, supervisor, secrets)
            nursery.start_soon(sweep_step_containers, engine)  # a build cut by a crash
            nursery.start_soon(run_bounded, partial(_start_quietly, engine), restart)
            nursery.start_soon(_snapshot_periodically, store, writer)
            nursery.start_soon(trio.to_thread.run_sync, warm_tls)  # before the first pull
            ctx = DaemonContext(
                engine=engine, images=ImageOps(journal, storage.content, storage.layers,
                                               paths.root / "tmp"),
                store=store, writer=writer, paths=paths, runtime=runtime, clock=journal.clock,
                engine_id=_engine_id(store), runc_version=runc_version,
                files=FileService(engine, drivers.snapshots, drivers.layers,
                                  drivers.volumes.path, paths.root))
            app = App(system_routes(ctx), container_routes(ctx), image_routes(ctx),
                      stream_routes(ctx), shipslog_routes(ctx), volume_routes(ctx),
                      registry_routes(ctx), network_routes(ctx), check_routes(ctx),
                      df_routes(ctx), prune_routes(ctx), compact_routes(ctx), archive_routes(ctx),
                      build_routes(ctx),
                      limits=Limits.parse(os.environ.get("SHIPSLOG_API_LIMITS", "")),
                      secret_key=secrets.key())
            replicator = None
            if args.replicate_to:  # issue 19: ship the log to a central PostgreSQL
                replicator = open_replicator(args.replicate_to, args.host_name, paths.db,
                                             writer, journal.clock)
                ctx.replication = replicator.status
                ctx.compaction_hold = replicator.compaction_bound
                nursery.start_soon(replicator.run)
            nursery.start_soon(lambda: run_auto_compaction(
                writer, paths.root, journal.clock, after_ns=args.compact_after,
                max_events=args.compact_max_events, interval_s=args.compact_interval,
                actor=SYSTEM_ACTOR,
                hold=None if replicator is None else replicator.compaction_bound))
            api = _Api()
            sock = await nursery.start(api.serve, socket_path(args.host), app)
            log.info("shipslogd %s serving on %s (root %s)", VERSION, sock, paths.root)
            task_status.started(sock)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            log.info("shutting down; containers keep running")
            # Sessions first, API connections and exec sessions together: what they record
            # when they end precedes DaemonStopped (issue 15, item 8).
            async with trio.open_nursery() as closing:
                closing.start_soon(api.close)
                closing.start_soon(_close_exec_sessions, supervisor)
            supervisor.outcomes.close()  # refused outcomes: recovery settles them at start
            await journal.append([Pending(stream="daemon", event=v.DaemonStopped(
                reason="signal"))], actor=SYSTEM_ACTOR, op_id="daemon-stop", last=True)
            nursery.cancel_scope.cancel()
        paths.clean_shutdown_marker.write_text("")
    finally:
        store.close()


SESSIONS_GRACE_S = 1.5  # shutdown stays under 2 s (issue 15, item 8)


async def _close_exec_sessions(supervisor: Supervisor) -> None:
    if not await supervisor.close_sessions(SESSIONS_GRACE_S):
        log.warning("some exec sessions did not end within %.1f s of shutdown",
                    SESSIONS_GRACE_S)


class _Api:
    """The API server under its own cancel scope, so that shutdown can end every connection
    (hijacked exec/attach sessions, `events`/`logs -f` followers, slow clients) and let their
    handlers record how they ended *before* `DaemonStopped` is appended (issue 15, item 8:
    SIGTERM took 11.6 s with 5 exec sessions, and their events came after `DaemonStopped`)."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    async def serve(self, path: str, app: App, *,
                    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                await serve_unix(path, app, task_status=task_status)
        finally:
            self.done.set()

    async def close(self) -> None:
        """Cancel every connection; wait up to SESSIONS_GRACE_S for their handlers to end.
        A handler still busy after that finds the log closed (`WriterClosed`) and is
        cancelled with the rest of the daemon."""
        self.scope.cancel()
        with trio.move_on_after(SESSIONS_GRACE_S):
            await self.done.wait()
        if not self.done.is_set():
            log.warning("some API sessions did not end within %.1f s of shutdown",
                        SESSIONS_GRACE_S)


def _sweep_partial_writes(storage: ImageStorage, paths: Paths) -> list[Leftover]:
    """Remove what an earlier run left half-written; the staged writes it returns are
    recorded as `IngestDiscarded` events (issue 15 item 7)."""
    discarded = discard_uncommitted(paths.root)
    swept = storage.content.sweep_ingest() + storage.layers.sweep()
    swept += Snapshotter(paths.root).sweep()
    if swept or discarded:
        log.info("swept %d partial writes left by an earlier run",
                 swept + len(discarded))
    return discarded


async def _start_quietly(engine: Engine, cid: str) -> None:
    try:
        await engine.start(cid, SYSTEM_ACTOR)
    except ShipslogError as exc:
        log.warning("restart policy: starting %s failed: %s", cid[:12], exc)


SNAPSHOT_CHECK_S = 30.0


async def _snapshot_periodically(store: EventStore, writer: StoreWriter) -> None:
    """Snapshot the projection once `store.snapshot_every` events have passed (looked at
    every 30 s, on the writer thread between two commits), so that a restart and time travel
    fold only the events after it (RELIABILITY L-04)."""
    while True:
        await trio.sleep(SNAPSHOT_CHECK_S)
        try:
            await writer.run_in_writer(store.snapshot_if_due)
        except Exception as exc:  # noqa: BLE001 - an optimisation must not stop the daemon
            log.warning("projection snapshot failed (restarts fold from further back): %s", exc)


def _engine_id(store: EventStore) -> str:
    for env in store.read(limit=1):
        return env.hash[:12].upper()
    return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="shipslogd", description="the shipslog daemon")
    p.add_argument("--root", default=os.environ.get("SHIPSLOG_ROOT", DEFAULT_ROOT),
                   help="state root (events.db, layers, containers)")
    p.add_argument("--exec-root", default=os.environ.get("SHIPSLOG_EXEC_ROOT",
                                                          DEFAULT_EXEC_ROOT),
                   help="runtime state (socket, runc state, bundles)")
    p.add_argument("-H", "--host", default=None, help="unix:///path of the API socket")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--store", default=os.environ.get("SHIPSLOG_STORE") or None,
                   metavar="URL", help="keep the event log in PostgreSQL "
                   "(postgresql://user@host:port/db?sslmode=…; default: events.db under --root)")
    p.add_argument("--host-name", default=os.environ.get("SHIPSLOG_HOST_NAME") or None,
                   help="this host's name in a shared PostgreSQL log (default: the hostname)")
    p.add_argument("--compact-after", type=_duration, default=None, metavar="DURATION",
                   help="archive the events of objects removed more than DURATION ago "
                        "(e.g. 720h; default: never)")
    p.add_argument("--compact-max-events", type=_positive, default=None, metavar="N",
                   help="archive the events of every removed object once the live log holds "
                        "more than N events (default: no limit)")
    p.add_argument("--replicate-to", default=None, metavar="URL",
                   help="ship the event log to a central PostgreSQL (postgresql://…; libpq's "
                        "sslmode/sslrootcert/… parameters are passed through)")
    if not any("--host-name" in a.option_strings for a in p._actions):
        # one flag with `--store postgresql://…` (issue 19 part 1), which names the host too
        p.add_argument("--host-name", default=None, metavar="NAME",
                       help="this host's name at the center (default: the short hostname)")
    p.add_argument("--compact-interval", type=lambda t: _duration(t) / 1e9, default=600.0,
                   metavar="DURATION", help="how often to check for compaction (default 10m)")
    args = p.parse_args(argv)
    if args.host is None:
        args.host = f"unix://{args.exec_root}/shipslog.sock"
    if args.replicate_to:
        _check_replication(p, args)
    return args


def _check_replication(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--replicate-to` ships a SQLite log: a valid host name, and not a PostgreSQL store."""
    from events.central import valid_host_name

    if getattr(args, "store", None):
        p.error("--replicate-to ships this host's SQLite log; with --store the log is "
                "already in PostgreSQL (give the daemon one or the other)")
    if args.host_name is None:
        args.host_name = default_host_name()
    if not valid_host_name(args.host_name):
        p.error(f"invalid host name {args.host_name!r}: letters, digits, '.', '_' and '-', "
                "at most 63")


def _duration(text: str) -> int:
    """A duration flag (`720h`, `90m`, `30s`, Go syntax) in nanoseconds."""
    from engine.core.units import parse_go_duration

    try:
        seconds = parse_go_duration(text.strip())
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 720h, 90m, 30s")
    return int(seconds * 1e9)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: want a whole number >= 1")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s shipslogd %(levelname)s %(message)s")
    try:
        try:
            trio.run(run_daemon, args)
        except (sqlite3.DatabaseError, StoreError, BaseExceptionGroup) as exc:
            damaged = damaged_log(exc, Paths.of(args.root, args.exec_root))
            if damaged is None:
                raise
            raise damaged from None
    except ShipslogError as exc:
        print(f"shipslogd: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
