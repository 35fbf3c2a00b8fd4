"""Docker API routes of features shipslog does not have — swarm mode and plugins — answered
as Docker answers them when the feature is off, so clients that probe them carry on.

I/O: none. Docker's words (moby daemon/cluster/errors.go, plugin/store.go): every swarm
manager route is 503 "This node is not a swarm manager…", leaving a swarm the node is not
in is 503 "This node is not part of a swarm", the plugin list is empty and a named plugin
is 404 `plugin "NAME" not found`. A 404 "page not found" instead makes the docker CLI and
the SDK abort (issue 13).
"""

from __future__ import annotations

from typing import Any

from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import NotFound, Unavailable

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                 'join" to connect this node to swarm and try again.')
NOT_IN_A_SWARM = "This node is not part of a swarm"
# Objects only a swarm manager holds: each has a list, an item and its verbs.
_SWARM_OBJECTS = ("nodes", "services", "tasks", "secrets", "configs")


async def _not_a_manager(req: Request) -> Response:
    raise Unavailable(NOT_A_MANAGER, hint="shipslog runs containers on this host only")


async def _not_in_a_swarm(req: Request) -> Response:
    raise Unavailable(NOT_IN_A_SWARM, hint="shipslog has no swarm mode")


async def _no_swarm_mode(req: Request) -> Response:
    raise Unavailable("swarm mode is not supported by shipslog",
                      hint="run containers with shipslog run, or Compose")


async def _no_plugins(req: Request) -> Response:
    return json_response([])


async def _no_such_plugin(req: Request) -> Response:
    raise NotFound(f'plugin "{req.params["name"]}" not found',
                   hint="shipslog has no plugins: list them with GET /plugins")


def off_routes(ctx: Any) -> Router:
    r = Router()
    r.add("GET", "/swarm", _not_a_manager)
    r.add("GET", "/swarm/unlockkey", _not_a_manager)
    r.add("POST", "/swarm/update", _not_a_manager)
    r.add("POST", "/swarm/unlock", _not_a_manager)
    r.add("POST", "/swarm/leave", _not_in_a_swarm)
    r.add("POST", "/swarm/init", _no_swarm_mode)
    r.add("POST", "/swarm/join", _no_swarm_mode)
    for kind in _SWARM_OBJECTS:
        r.add("GET", f"/{kind}", _not_a_manager)
        r.add("POST", f"/{kind}/create", _not_a_manager)
        for method in ("GET", "POST", "DELETE"):
            r.add(method, f"/{kind}/{{rest:path}}", _not_a_manager)
    r.add("GET", "/plugins", _no_plugins)
    r.add("GET", "/plugins/{name:path}/json", _no_such_plugin)
    r.add("DELETE", "/plugins/{name:path}", _no_such_plugin)
    for verb in ("enable", "disable", "push", "set", "upgrade"):
        r.add("POST", f"/plugins/{{name:path}}/{verb}", _no_such_plugin)
    return r
