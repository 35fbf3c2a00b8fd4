"""`history CONTAINER --changes` (issue 18): the container's configuration over time as a
list of diffs — the options it was created with, `update`s, renames, networks connected and
disconnected (and joins recorded for its next start), health verdicts.

I/O: none. The caller hands in the container's events and the network connect/disconnect
events that name it, in seq order, and the network names to show (id -> name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from events import vocabulary as v
from events.envelope import Actor, Envelope
from projections.statediff import Leaf, leaves
from projections.statediff import full_builtins as _full

__all__ = ["ConfigChange", "config_changes"]

_UPDATABLE = ("memory", "nano_cpus", "pids_limit", "restart_policy")


class ConfigChange(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time_ns: int
    actor: Actor
    what: str  # created, updated, renamed, network connected, …, health
    fields: tuple[tuple[str, Any, Any], ...] = ()  # (field, old, new)


def config_changes(envelopes: Iterable[Envelope],
                   network_names: Mapping[str, str] | None = None) -> list[ConfigChange]:
    names = network_names or {}
    config: dict[str, Any] = {}
    health = ""
    out: list[ConfigChange] = []
    for env in envelopes:
        ev = env.event
        what = ""
        diffs: list[Leaf] = []
        if isinstance(ev, v.ContainerCreateRequested):
            config = _full(ev.config)
            what = "created"
            diffs = [("name", None, ev.name)] + [  # the options given: defaults left out
                (f"config.{f}", old, new) for f, old, new in
                leaves({k: (None, val) for k, val in msgspec.to_builtins(ev.config).items()})
                if new not in ({}, [], "", None)]
        elif isinstance(ev, v.ContainerUpdated):
            what = "updated"
            for field in _UPDATABLE:
                new = getattr(ev, field)
                if new is None:
                    continue
                new = _full(new)
                diffs += [(f"config.{f}", old, val) for f, old, val in
                          leaves({field: (config.get(field), new)})]
                config[field] = new
        elif isinstance(ev, v.ContainerRenamed):
            what, diffs = "renamed", [("name", ev.old_name, ev.new_name)]
        elif isinstance(ev, v.NetworkConnected):
            what = "network connected"
            net = names.get(ev.network_id, ev.network_id[:12])
            diffs = [(f"networks.{net}", None, " ".join(filter(None, (ev.ip, ev.ip6))) or
                      "connected")]
        elif isinstance(ev, v.NetworkDisconnected):
            what = "network disconnected"
            diffs = [(f"networks.{names.get(ev.network_id, ev.network_id[:12])}",
                      "connected", None)]
        elif isinstance(ev, v.NetworkConnectRecorded):
            what = "network connect recorded (joins at start)"
            diffs = [(f"joins.{names.get(ev.network_id, ev.network_id[:12])}", None,
                      ev.ipv4_address or "at start")]
        elif isinstance(ev, v.NetworkConnectWithdrawn):
            what = "network connect withdrawn"
            diffs = [(f"joins.{names.get(ev.network_id, ev.network_id[:12])}", "at start",
                      None)]
        elif isinstance(ev, v.ContainerHealthChanged):
            what = "health"
            diffs = [("health", health or None, ev.status)]
            health = ev.status
        if what:
            out.append(ConfigChange(seq=env.seq, time_ns=env.recorded_at, actor=env.actor,
                                    what=what, fields=tuple(diffs)))
    return out

