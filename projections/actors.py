"""Who acted, as a filter: `--filter actor=NAME|UID`, `uid=N`, `command=TEXT` and
`outcome=failed|completed|compensated|pending` for `events`, `history` and `audit who`
(issue 18).

I/O: none. User names are resolved by the caller (the API, from the host's passwd) and handed
in as `uid_of`; nothing here stores or looks up a name. A command filter matches the caller's
command line as every output shows it (`projections.history.command_line` of the redacted
argv), so a secret value can never be searched for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import msgspec

from events.envelope import Actor
from projections.history import Timeline, WhoRow, command_line

__all__ = ["ACTOR_KEYS", "OUTCOMES", "ActorFilter", "UnknownUser", "actor_filter",
           "filter_timeline", "filter_who"]

ACTOR_KEYS = ("actor", "uid", "command", "outcome")
OUTCOMES = ("completed", "failed", "compensated", "pending")


class UnknownUser(ValueError):
    """A filter names a user the host does not know, or gives a value that is no uid."""


class ActorFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Every set field must match (values within one key: any of them)."""

    uids: frozenset[int] = frozenset()
    commands: tuple[str, ...] = ()
    outcomes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.uids or self.commands or self.outcomes)

    def actor_ok(self, actor: Actor, shown_command: str) -> bool:
        """`shown_command`: the actor's command line as outputs print it (redacted)."""
        # The daemon acts as uid 0: `uid=0` has always listed its events too.
        if self.uids and actor.uid not in self.uids:
            return False
        return not self.commands or any(c in shown_command for c in self.commands)

    def outcome_ok(self, outcome: str) -> bool:
        return not self.outcomes or outcome in self.outcomes


def actor_filter(filters: Mapping[str, Iterable[str]],
                 uid_of: Callable[[str], int | None]) -> ActorFilter:
    """The actor part of Docker-style `filters`; raises `UnknownUser` or `ValueError` with a
    message fit to show (Docker: `invalid filter 'outcome=x'`)."""
    uids: set[int] = set()
    for key in ("actor", "uid"):
        for value in filters.get(key, ()):
            if value.isdigit():
                uids.add(int(value))
            elif key == "uid":
                raise UnknownUser(f"invalid filter 'uid={value}': want a number")
            else:
                uid = uid_of(value)
                if uid is None:
                    raise UnknownUser(f"invalid filter 'actor={value}': no such user on "
                                      "this host")
                uids.add(uid)
    outcomes = set(filters.get("outcome", ()))
    for value in outcomes - set(OUTCOMES):
        raise ValueError(f"invalid filter 'outcome={value}'")
    return ActorFilter(uids=frozenset(uids), commands=tuple(filters.get("command", ())),
                       outcomes=frozenset(outcomes))


def filter_timeline(tl: Timeline, who: ActorFilter) -> Timeline:
    """`history NAME --filter ...`: the operations whose actor and outcome match, their
    events, and the runs they started (restart-policy runs are the daemon's, uid 0)."""
    if not who:
        return tl
    ops = tuple(o for o in tl.ops if who.actor_ok(o.actor, command_line(o.actor.command))
                and who.outcome_ok(o.outcome))
    outcome = {o.op_id: o.outcome for o in tl.ops}
    entries = tuple(e for e in tl.entries
                    if who.actor_ok(e.actor, command_line(e.actor.command))
                    and who.outcome_ok(outcome.get(e.op_id, "pending")))
    seqs = {e.seq for e in entries}
    runs = tuple(r for r in tl.runs if r.start_seq in seqs)
    return msgspec.structs.replace(tl, entries=entries, ops=ops, runs=runs)


def filter_who(rows: Iterable[WhoRow], who: ActorFilter) -> list[WhoRow]:
    """`audit who --filter ...`."""
    return [r for r in rows
            if who.actor_ok(Actor(uid=r.uid, gid=r.gid, pid=r.pid, via=r.via),
                            command_line(r.command)) and who.outcome_ok(r.outcome)]
