"""The Compose project fold (projections/compose.py, issue 14): for any sequence of Compose
commands, replayed as the events Compose's API calls cause, each command that changed
something is one history entry, of the right kind, with its actor; a recreate names its
reason; and folding in two pieces gives the same state as folding at once."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events import vocabulary as v
from events.envelope import Actor, Envelope
from events.values import ContainerConfig
from projections import compose as pc

SERVICES = ("db", "web", "worker")


class Sim:
    """Compose, as the log sees it: one client pid per command."""

    def __init__(self) -> None:
        self.envs: list[Envelope] = []
        self.alive: dict[str, dict[int, str]] = {s: {} for s in SERVICES}
        self.hashes = {s: "h0" for s in SERVICES}
        self.n = 0
        self.pid = 1000

    def emit(self, ev: Any, *, daemon: bool = False) -> None:
        actor = Actor(uid=0, gid=0, pid=1 if daemon else self.pid,
                      via="daemon" if daemon else "api",
                      command=None if daemon else ("docker-compose", "cmd"))
        seq = len(self.envs) + 1
        self.envs.append(Envelope(seq=seq, stream="container-x", stream_version=seq,
                                  schema_version=1, recorded_at=seq * 1_000_000, actor=actor,
                                  op_id=f"op{seq}", event=ev))

    def create(self, service: str, number: int) -> str:
        self.n += 1
        cid = f"{self.n:064x}"
        labels = {pc.PROJECT: "p", pc.SERVICE: service, pc.NUMBER: str(number),
                  pc.CONFIG_HASH: self.hashes[service], pc.IMAGE: "sha256:i",
                  pc.DEPENDS_ON: "db:service_healthy:false" if service != "db" else ""}
        cfg = ContainerConfig(image="busybox", image_id="sha256:i", labels=labels)
        self.emit(v.ContainerCreateRequested(container_id=cid, name=f"p-{service}-{number}",
                                             config=cfg))
        self.emit(v.ContainerStarted(container_id=cid, pid=1))
        if service == "db":
            self.emit(v.ContainerHealthChanged(container_id=cid, status="healthy"), daemon=True)
        self.alive[service][number] = cid
        return cid

    def remove(self, service: str, number: int) -> None:
        cid = self.alive[service].pop(number)
        self.emit(v.ContainerStopRequested(container_id=cid))
        self.emit(v.ContainerRemoved(container_id=cid))

    def command(self, cmd: tuple[str, str, int]) -> str | None:
        """Run one command; the kind of entry it makes, or None if it changed nothing."""
        self.pid += 1
        verb, service, count = cmd
        if verb == "up":
            todo = [s for s in SERVICES if not self.alive[s]]
            for s in todo:
                self.create(s, 1)
            return "up" if todo else None
        if verb == "down":
            if not any(self.alive.values()):
                return None
            for s in SERVICES:
                for number in sorted(self.alive[s]):
                    self.remove(s, number)
            return "down"
        if not self.alive[service]:
            return None
        if verb == "recreate":
            self.hashes[service] += "'"
            for number in sorted(self.alive[service]):
                self.remove(service, number)
                self.create(service, number)
            return "recreate"
        have = sorted(self.alive[service])
        if count == len(have):
            return None
        for number in range(len(have) + 1, count + 1):
            self.create(service, number)
        for number in have[count:]:
            self.remove(service, number)
        return "scale"


commands = st.lists(st.tuples(st.sampled_from(["up", "down", "recreate", "scale"]),
                              st.sampled_from(SERVICES), st.integers(1, 3)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(commands, st.integers(0, 200))
def test_each_command_is_one_entry_of_its_kind(cmds: list[tuple[str, str, int]],
                                                cut: int) -> None:
    sim = Sim()
    expected = [k for k in (sim.command(c) for c in cmds) if k is not None]
    state = pc.fold(sim.envs)
    rows = pc.history(state, "p")
    assert [r["kind"] for r in rows] == expected
    assert all(r["actor"]["command"] == ["docker-compose", "cmd"] for r in rows)
    for row in rows:
        for s in row["services"]:
            if s["action"] == "recreated":
                assert s["reason"] == "config hash changed"
            if s["action"] == "started" and s["service"] != "db" and row["kind"] == "up":
                assert s["reason"] == "db became healthy"
    # every container the project ever had, removed ones too, by service (issue 18's rows)
    created = [e.event for e in sim.envs if isinstance(e.event, v.ContainerCreateRequested)]
    members = pc.members(state, "p")
    assert [m["id"] for m in members] == [
        c.container_id for s in sorted(SERVICES) for c in created
        if c.config.labels[pc.SERVICE] == s]
    assert sum(m["alive"] for m in members) == sum(len(a) for a in sim.alive.values())
    # a fold is resumable: two pieces give the state one pass gives
    cut = min(cut, len(sim.envs))
    assert pc.fold(sim.envs[cut:], pc.fold(sim.envs[:cut])) == state


def test_unlabelled_containers_are_not_projects() -> None:
    sim = Sim()
    cfg = ContainerConfig(image="busybox", image_id="sha256:i")
    sim.emit(v.ContainerCreateRequested(container_id="a" * 64, name="plain", config=cfg))
    sim.emit(v.ContainerStarted(container_id="a" * 64, pid=1))
    state = pc.fold(sim.envs)
    assert pc.projects(state) == [] and state.entries == ()
