"""Our events as Docker's event messages, so `docker events` works against shipslog.

I/O: none. Docker's stream only knows some facts (create, start, die, kill, destroy, tag…);
intents and operation bookkeeping have no Docker twin and are skipped here — they are in
`shipslog events`. Names and images are remembered from the events as they pass, so a
container removed long ago is still reported by its name.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.api.docker.models import EventActor, EventMessage
from events import vocabulary as v
from events.envelope import Envelope
from projections.state import EngineState

Mapping = tuple[str, str, str]  # (Type, Action, actor id)


class DockerEvents:
    def __init__(self, state: Callable[[], EngineState]) -> None:
        self._state = state
        self._containers: dict[str, tuple[str, str]] = {}  # id -> (name, image)
        self._exec_cmds: dict[str, str] = {}

    def _container_attrs(self, cid: str) -> dict[str, str]:
        known = self._containers.get(cid)
        if known is None:
            c = self._state().containers.get(cid)
            if c is None:
                return {}
            known = (c.name, c.config.image)
        attrs = {"name": known[0], "image": known[1]}
        c = self._state().containers.get(cid)
        if c is not None:
            attrs.update(c.config.labels)
        return attrs

    def convert_all(self, env: Envelope) -> list[EventMessage]:
        """Every Docker message for `env`: a tagged build is one `tag` per name, as moby's
        builder tags the result through TagImage (one event each)."""
        ev = env.event
        if isinstance(ev, v.ImageBuilt):
            return [self._message(env, "image", "tag", ev.image_id, {"name": ref})
                    for ref in ev.repo_tags]
        msg = self.convert(env)
        return [] if msg is None else [msg]

    def convert(self, env: Envelope) -> EventMessage | None:
        ev = env.event
        attrs: dict[str, str] = {}
        if isinstance(ev, v.ContainerCreateRequested):
            self._containers[ev.container_id] = (ev.name, ev.config.image)
            return None
        if isinstance(ev, v.ContainerRenamed):
            old = self._containers.get(ev.container_id, ("", ""))
            self._containers[ev.container_id] = (ev.new_name, old[1])
            attrs["oldName"] = "/" + ev.old_name
        mapped = _MAP.get(type(ev))
        if mapped is None:
            return None
        kind, action = mapped
        actor_id = _actor_id(ev)
        if kind == "container":
            attrs = {**self._container_attrs(actor_id), **attrs}
            if isinstance(ev, v.ContainerExited | v.ContainerLost):
                attrs["exitCode"] = str(ev.exit_code)
            if isinstance(ev, v.ContainerSignalled):
                attrs["signal"] = ev.signal.removeprefix("SIG")
            if isinstance(ev, v.ContainerPathExtracted) and ev.error:
                return None  # Docker reports only a completed extraction
            if isinstance(ev, v.ExecCreated):
                self._exec_cmds[ev.exec_id] = " ".join(ev.cmd)
            if isinstance(ev, v.ExecCreated | v.ExecStarted):
                action = f"{action}: " + self._exec_cmds.get(ev.exec_id, "")
            if isinstance(ev, v.ContainerHealthChanged):
                action = f"{action}: {ev.status}"
        elif kind == "image":
            ref = getattr(ev, "reference", "")
            if ref:
                attrs["name"] = ref
        elif kind == "volume":
            # Docker: the volume is the actor; the container is an attribute (moby
            # volume/service: LogVolumeEvent(name, "mount", {container, destination, ...})).
            actor_id = getattr(ev, "name", actor_id)
            if isinstance(ev, v.VolumeMounted | v.VolumeUnmounted):
                attrs.update(container=ev.container_id, driver="local")
            if isinstance(ev, v.VolumeMounted):
                attrs.update({"destination": ev.destination, "propagation": "",
                              "read/write": str(not ev.read_only).lower()})
        elif kind == "network":
            # Docker: the network is the actor; the container is an attribute.
            actor_id = getattr(ev, "network_id", actor_id)
            net = self._state().networks.get(actor_id)
            attrs["name"] = getattr(ev, "name", "") or (net.name if net else "")
            attrs["type"] = net.driver if net else "bridge"
            if hasattr(ev, "container_id"):
                attrs["container"] = ev.container_id  # type: ignore[union-attr]
        return self._message(env, kind, action, actor_id, attrs)

    @staticmethod
    def _message(env: Envelope, kind: str, action: str, actor_id: str,
                 attrs: dict[str, str]) -> EventMessage:
        secs = env.recorded_at // 1_000_000_000
        msg = EventMessage(
            Type=kind,
            Action=action,
            Actor=EventActor(ID=actor_id, Attributes=attrs),
            scope="local",
            time=secs,
            timeNano=env.recorded_at,
        )
        if kind in ("container", "image"):
            msg.status, msg.id = action, actor_id
            msg.from_ = attrs.get("image", "")
        return msg


def _actor_id(ev: v.BaseEvent) -> str:
    for attr in ("container_id", "image_id", "network_id", "name"):
        value = getattr(ev, attr, None)
        if value:
            return str(value)
    return ""


_MAP: dict[type, tuple[str, str]] = {
    v.ContainerCreated: ("container", "create"),
    v.ContainerStarted: ("container", "start"),
    v.ContainerExited: ("container", "die"),
    v.ContainerLost: ("container", "die"),
    v.ContainerSignalled: ("container", "kill"),
    v.ContainerStopRequested: ("container", "stop"),
    v.ContainerPaused: ("container", "pause"),
    v.ContainerUnpaused: ("container", "unpause"),
    v.ContainerRenamed: ("container", "rename"),
    v.ContainerHealthChanged: ("container", "health_status"),
    v.ContainerRestartedByPolicy: ("container", "restart"),
    v.ContainerRemoved: ("container", "destroy"),
    v.ExecCreated: ("container", "exec_create"),
    v.ExecStarted: ("container", "exec_start"),
    v.ExecExited: ("container", "exec_die"),
    v.ImageLoaded: ("image", "load"),
    v.ImageImported: ("image", "import"),
    v.ImagePulled: ("image", "pull"),
    v.ImagePushed: ("image", "push"),
    v.ImageTagged: ("image", "tag"),
    v.ImageUntagged: ("image", "untag"),
    v.ImageRemoved: ("image", "delete"),
    v.VolumeCreated: ("volume", "create"),
    v.VolumeMounted: ("volume", "mount"),
    v.VolumeUnmounted: ("volume", "unmount"),
    v.VolumeRemoved: ("volume", "destroy"),
    v.NetworkCreated: ("network", "create"),
    v.NetworkConnected: ("network", "connect"),
    v.NetworkDisconnected: ("network", "disconnect"),
    v.NetworkRemoved: ("network", "destroy"),
    v.ContainerPathArchived: ("container", "archive-path"),
    v.ContainerPathExtracted: ("container", "extract-to-dir"),
    v.ContainerExported: ("container", "export"),
}


def matches(msg: EventMessage, filters: dict[str, list[str]]) -> bool:
    """Docker's event filters: type, event, container, image, volume, network, label."""
    for key, values in filters.items():
        if key == "type" and msg.Type not in values:
            return False
        if key == "event" and msg.Action.split(":")[0] not in values:
            return False
        if key in ("container", "image", "volume", "network"):
            if msg.Type != key:
                return False
            names = {msg.Actor.ID, msg.Actor.Attributes.get("name", "")}
            if not any(v_ in names or msg.Actor.ID.startswith(v_) for v_ in values):
                return False
        if key == "label":
            for lbl in values:
                k, _, want = lbl.partition("=")
                got = msg.Actor.Attributes.get(k)
                if got is None or (want and got != want):
                    return False
        # shipslog's own: a Compose project by name (issue 14); container events carry labels
        if key == "project" and msg.Actor.Attributes.get(
                "com.docker.compose.project") not in values:
            return False
    return True
