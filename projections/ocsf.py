"""The log as OCSF records for SIEMs (issue 18, `audit export --format ocsf`): each operation
as an API Activity (class 6003) when its outcome is known, and each container process start
and exit as a Process Activity (class 1007: Launch, Terminate). OCSF 1.1.0; the required
attributes of both classes are filled (tests/unit/test_log_readers.py lists them).

I/O: none. The caller hands in envelopes as every output shows them (actors' command lines
redacted), the host's name, and a uid -> user name lookup made at export time (the log keeps
uids only); it writes the records as JSON lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from events import vocabulary as v
from events.envelope import Actor, Envelope
from projections.history import command_line, describe

__all__ = ["OCSF_VERSION", "records"]

OCSF_VERSION = "1.1.0"
API_ACTIVITY, PROCESS_ACTIVITY = 6003, 1007
_CATEGORY = {API_ACTIVITY: 6, PROCESS_ACTIVITY: 1}  # Application Activity, System Activity
_OUTCOMES = (v.OperationCompleted, v.OperationFailed, v.OperationCompensated)
_OUTCOME: dict[type, tuple[int, str]] = {
    v.OperationCompleted: (1, "Success"), v.OperationFailed: (2, "Failure"),
    v.OperationCompensated: (2, "Failure")}


def _activity(kind: str) -> tuple[int, str]:
    verb = kind.rsplit(".", 1)[-1]
    if verb in ("create", "pull", "load", "import", "build", "tag"):
        return 1, "Create"
    if verb in ("remove", "rm", "prune", "untag", "delete"):
        return 4, "Delete"
    if verb in ("archive", "export", "inspect"):
        return 2, "Read"
    return 3, "Update"


def _metadata(env: Envelope) -> dict[str, Any]:
    return {"version": OCSF_VERSION, "uid": str(env.seq), "correlation_uid": env.op_id,
            "log_name": "shipslog events", "sequence": env.seq,
            "product": {"name": "shipslog", "vendor_name": "shipslog"},
            "original_time": str(env.recorded_at)}


def _actor(actor: Actor, name_of: Callable[[int], str | None]) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": str(actor.uid), "type_id": 0 if actor.via != "daemon" else 3}
    name = "shipslogd" if actor.via == "daemon" else name_of(actor.uid)
    if name:
        user["name"] = name
    out: dict[str, Any] = {"user": user}
    if actor.pid:
        out["process"] = {"pid": actor.pid, "cmd_line": command_line(actor.command)}
    return out


def _base(class_uid: int, activity: tuple[int, str], env: Envelope, time_ns: int,
          message: str) -> dict[str, Any]:
    activity_id, name = activity
    return {"class_uid": class_uid, "category_uid": _CATEGORY[class_uid],
            "activity_id": activity_id, "activity_name": name,
            "type_uid": class_uid * 100 + activity_id, "severity_id": 1,
            "time": time_ns // 1_000_000, "message": message, "metadata": _metadata(env),
            "unmapped": {"hash": env.hash, "seq": env.seq, "stream": env.stream}}


def records(envelopes: Iterable[Envelope], hostname: str,
            name_of: Callable[[int], str | None]) -> Iterator[dict[str, Any]]:
    """OCSF records in log order (an operation's at its outcome; those still pending at
    the end last, status Unknown)."""
    pending: dict[str, tuple[Envelope, v.OperationRequested]] = {}
    names: dict[str, str] = {}
    for env in envelopes:
        ev = env.event
        if isinstance(ev, v.ContainerCreateRequested):
            names[ev.container_id] = ev.name
        if isinstance(ev, v.OperationRequested):
            pending[ev.op_id] = (env, ev)
        elif isinstance(ev, _OUTCOMES) and ev.op_id in pending:
            req_env, req = pending.pop(ev.op_id)
            error = ev.error if isinstance(ev, v.OperationFailed) else (
                ev.action if isinstance(ev, v.OperationCompensated) else "")
            yield _api(req_env, req, hostname, name_of, env, _OUTCOME[type(ev)], error)
        elif isinstance(ev, v.ContainerStarted | v.ContainerExited | v.ContainerLost):
            yield _process(env, ev, hostname, name_of, names.get(ev.container_id, ""))
    for req_env, req in pending.values():
        yield _api(req_env, req, hostname, name_of, None, (0, "Unknown"), "")


def _api(env: Envelope, req: v.OperationRequested, hostname: str,
         name_of: Callable[[int], str | None], outcome_env: Envelope | None,
         status: tuple[int, str], error: str) -> dict[str, Any]:
    message = describe(env) + (f": {error}" if error else "")
    rec = _base(API_ACTIVITY, _activity(req.kind), env, env.recorded_at, message)
    kind, _, ident = req.target.partition("-")
    rec.update({
        "actor": _actor(env.actor, name_of),
        "api": {"operation": req.kind, "request": {"uid": req.op_id},
                "service": {"name": "shipslogd"}},
        "src_endpoint": {"hostname": hostname, "svc_name": "shipslog"},
        "resources": [{"type": kind, "uid": ident}],
        "status_id": status[0], "status": status[1],
    })
    if error:
        rec["status_detail"] = error
    if outcome_env is not None:
        rec["end_time"] = outcome_env.recorded_at // 1_000_000
        rec["duration"] = (outcome_env.recorded_at - env.recorded_at) // 1_000_000
    return rec


def _process(env: Envelope, ev: v.ContainerStarted | v.ContainerExited | v.ContainerLost,
             hostname: str, name_of: Callable[[int], str | None],
             name: str) -> dict[str, Any]:
    started = isinstance(ev, v.ContainerStarted)
    rec = _base(PROCESS_ACTIVITY, (1, "Launch") if started else (2, "Terminate"), env,
                env.recorded_at, describe(env))
    process: dict[str, Any] = {"uid": ev.container_id, "name": name or ev.container_id[:12]}
    if started:
        process["pid"] = ev.pid  # type: ignore[union-attr]
    rec.update({"actor": _actor(env.actor, name_of), "process": process,
                "device": {"hostname": hostname, "type_id": 1, "type": "Server"}})
    if not started:
        rec["exit_code"] = ev.exit_code  # type: ignore[union-attr]
    return rec
