"""`GET /system/df` (`docker system df`): what images, containers and volumes use on disk.

I/O: none here: the read model walks containers' overlay upper dirs and volumes' `_data` (in a
worker thread, only for the kinds asked for with `type=`); the answer's shape, with
`Unattributed` beyond Docker's, is `engine.api.docker.reads.system_df`.
"""

from __future__ import annotations

from typing import Any

import trio

from engine.api.docker import reads
from engine.api.routes.reading import read_model
from engine.api.server.router import Request, Response, Router, json_response


def df_routes(ctx: Any) -> Router:
    r = Router()
    model = read_model(ctx)

    @r.route("GET", "/system/df")
    async def system_df(req: Request) -> Response:
        kinds = reads.df_kinds(req)
        return json_response(await trio.to_thread.run_sync(reads.system_df, model, kinds))

    return r
