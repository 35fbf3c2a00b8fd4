"""The operations the fault tests drive through a real daemon, one per failpoint family: each
has a `prep` (run on an unarmed daemon: what must exist before) and an `act` (the operation
that walks through the failpoint). Shared by the failpoint matrix and the append-failure
tests (RELIABILITY F-01, F-02, F-12).

I/O: HTTP requests to the daemon; for pulls, a local registry on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.cli.client import ApiError
from engine.testing.daemon import DaemonProcess

BUSY = {"Image": "busybox", "Cmd": ["sleep", "600"]}


class StreamError(Exception):
    """A streamed operation (pull) ended with an error message in its stream."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    """What the scenarios share: the daemon, and the registry reference of busybox."""

    d: DaemonProcess
    pulled_ref: str = ""  # "127.0.0.1:PORT/fp/busybox" once pushed
    port: int = 0


def _c(w: World) -> Any:
    return w.d.client()


def _create(w: World, name: str, body: dict[str, Any]) -> str:
    return str(_c(w).post_json("/containers/create", {"name": name}, body)["Id"])


def _web(w: World, network: str) -> dict[str, Any]:
    w.port = w.port or free_port()
    return {"Image": "busybox", "Cmd": ["sleep", "600"], "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"NetworkMode": network, "PortBindings": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(w.port)}]}}}


def pull(w: World) -> None:
    name, _, tag = w.pulled_ref.rpartition(":")
    buf = b""
    with _c(w).stream("POST", "/images/create", {"fromImage": name, "tag": tag}, None,
                      {"X-Registry-Auth": "e30="}) as chunks:
        for chunk in chunks:
            buf += chunk
    msgs = [json.loads(line) for line in buf.splitlines() if line.strip()]
    for msg in msgs:
        if "error" in msg:
            raise StreamError(msg["error"])
    if not msgs or not msgs[-1].get("status", "").startswith("Status: "):
        raise StreamError("the pull stream ended without its result")


def _prep_pull(w: World) -> None:
    for img in _c(w).get_json("/images/json"):  # so the pull fetches every blob
        _c(w).delete(f"/images/{img['Id']}", {"force": True})


def _prep_network(w: World) -> None:
    _c(w).post_json("/networks/create", None, {"Name": "fpnet"})


def _prep_web(w: World) -> None:
    _prep_network(w)
    _c(w).post_json("/networks/create", None, {"Name": "fpnet2"})
    _c(w).post_json(f"/containers/{_create(w, 'victim', _web(w, 'fpnet'))}/start")


def _prep_created(w: World) -> None:
    _create(w, "victim", BUSY)


def _prep_volume_ctr(w: World) -> None:
    _create(w, "victim", {**BUSY, "HostConfig": {"Binds": ["fpvol:/data"]}})


def _prep_running_volume(w: World) -> None:
    _prep_volume_ctr(w)
    _c(w).post_json("/containers/victim/start")


def _prep_running(w: World) -> None:
    _prep_created(w)
    _c(w).post_json("/containers/victim/start")


def _prep_volume(w: World) -> None:
    _c(w).post_json("/volumes/create", None, {"Name": "fpvol"})


@dataclass(frozen=True)
class Scenario:
    name: str
    prep: Callable[[World], None]
    act: Callable[[World], None]
    needs_registry: bool = False


def _nothing(w: World) -> None:
    del w


SCENARIOS = {
    "pull": Scenario("pull", _prep_pull, pull, needs_registry=True),
    "create": Scenario("create", _nothing, lambda w: _prep_created(w)),
    "start": Scenario("start", _prep_created,
                      lambda w: _c(w).post_json("/containers/victim/start")),
    "start-volume": Scenario("start-volume", _prep_volume_ctr,
                             lambda w: _c(w).post_json("/containers/victim/start")),
    "start-network": Scenario("start-network", lambda w: (_prep_network(w), _create(
        w, "victim", _web(w, "fpnet")))[0],
        lambda w: _c(w).post_json("/containers/victim/start")),
    "stop": Scenario("stop", _prep_running,
                     lambda w: _c(w).post_json("/containers/victim/stop", {"t": 1})),
    "remove": Scenario("remove", _prep_running,
                       lambda w: _c(w).delete("/containers/victim", {"force": True})),
    "remove-volume": Scenario("remove-volume", _prep_running_volume,
                              lambda w: _c(w).delete("/containers/victim", {"force": True})),
    "remove-network": Scenario("remove-network", _prep_web,
                               lambda w: _c(w).delete("/containers/victim", {"force": True})),
    "connect": Scenario("connect", _prep_web, lambda w: _c(w).post_json(
        "/networks/fpnet2/connect", None, {"Container": "victim"})),
    "volume-create": Scenario("volume-create", _nothing, _prep_volume),
    "network-create": Scenario("network-create", _nothing, _prep_network),
    "volume-remove": Scenario("volume-remove", _prep_volume,
                              lambda w: _c(w).delete("/volumes/fpvol")),
}


def clear(w: World) -> None:
    """Remove what the scenarios make (containers, volumes, networks), through the API."""
    c = _c(w)
    for ctr in c.get_json("/containers/json", {"all": True}):
        c.delete(f"/containers/{ctr['Id']}", {"force": True, "v": True})
    for vol in c.get_json("/volumes")["Volumes"] or []:
        c.delete(f"/volumes/{vol['Name']}", {"force": True})
    for net in c.get_json("/networks"):
        if net["Name"] not in ("bridge", "host", "none"):
            c.delete(f"/networks/{net['Id']}")


__all__ = ["SCENARIOS", "ApiError", "Scenario", "StreamError", "World", "clear", "pull"]
