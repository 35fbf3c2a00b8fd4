"""`system df [-v] [--format]`: disk used by images, containers, volumes (docker system df).

I/O: one `GET /system/df` (or the state root with --root); writes to `ctx.stdout`.
`summary_rows` is the pure part: Docker's four TYPE rows from the API answer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context

TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
TITLES = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
          "Reclaimable": "RECLAIMABLE"}


def register(sub: Any) -> None:
    p = sub.add_parser("df", help="Show disk usage of images, containers and volumes")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per object")
    p.add_argument("--format", default="", help="table, json, or a Go template")
    p.set_defaults(func=cmd_df)


def _reclaimable(size: int, total: int) -> str:
    if total <= 0:  # Docker shows a share only of something
        return fmt.human_size(size)
    return f"{fmt.human_size(size)} ({100 * size // total}%)"


def summary_rows(df: Mapping[str, Any]) -> list[dict[str, Any]]:
    """TYPE / TOTAL / ACTIVE / SIZE / RECLAIMABLE as Docker's CLI computes them: an image is
    active while a container uses it; what active images use alone is not reclaimable."""
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    layers = int(df.get("LayersSize") or 0)
    active_images = [i for i in images if (i.get("Containers") or 0) > 0]
    in_use = sum(i.get("Size", 0) - max(i.get("SharedSize", 0), 0) for i in active_images)
    image_free = max(layers - in_use, 0)
    rw = [int(c.get("SizeRw") or 0) for c in containers]
    stopped_rw = sum(int(c.get("SizeRw") or 0) for c in containers
                     if c.get("State") not in ("running", "paused"))
    vsizes = [max(int((v.get("UsageData") or {}).get("Size", 0)), 0) for v in volumes]
    unused_v = sum(max(int((v.get("UsageData") or {}).get("Size", 0)), 0) for v in volumes
                   if not (v.get("UsageData") or {}).get("RefCount"))
    cache = df.get("BuildCache") or []
    cache_size = sum(int(b.get("Size") or 0) for b in cache)
    rows = [
        {"Type": "Images", "TotalCount": len(images), "Active": len(active_images),
         "Size": fmt.human_size(layers), "Reclaimable": _reclaimable(image_free, layers)},
        {"Type": "Containers", "TotalCount": len(containers),
         "Active": sum(1 for c in containers if c.get("State") == "running"),
         "Size": fmt.human_size(sum(rw)), "Reclaimable": _reclaimable(stopped_rw, sum(rw))},
        {"Type": "Local Volumes", "TotalCount": len(volumes),
         "Active": sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount")),
         "Size": fmt.human_size(sum(vsizes)), "Reclaimable": _reclaimable(unused_v, sum(vsizes))},
        {"Type": "Build Cache", "TotalCount": len(cache),
         "Active": sum(1 for b in cache if b.get("InUse")), "Size": fmt.human_size(cache_size),
         "Reclaimable": _reclaimable(sum(int(b.get("Size") or 0) for b in cache
                                         if not b.get("InUse")), cache_size)},
    ]
    loose = df.get("Unattributed") or {}
    if loose.get("Size"):  # ours, not Docker's: bytes no object owns (issue 15 item 7)
        rows.append({"Type": "Unattributed", "TotalCount": len(loose.get("Items") or []),
                     "Active": 0, "Size": fmt.human_size(loose["Size"]), "Reclaimable": ""})
    return rows


def _verbose(ctx: Context, df: Mapping[str, Any]) -> None:
    now = time.time()
    lines = ["REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"]
    for img in df.get("Images") or []:
        tags = img.get("RepoTags") or ["<none>:<none>"]
        shared = max(img.get("SharedSize", 0), 0)
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            lines.append("\t".join([
                repo, name, fmt.truncate_id(img["Id"]), fmt.ago(img.get("Created", 0), now),
                fmt.human_size(img.get("Size", 0)), fmt.human_size(shared),
                fmt.human_size(img.get("Size", 0) - shared), str(img.get("Containers", 0))]))
    ctx.out("Images space usage:\n")
    ctx.stdout.write(fmt.tabulate(lines))
    lines = ["CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES"]
    for c in df.get("Containers") or []:
        volumes = sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        lines.append("\t".join([
            fmt.truncate_id(c["Id"]), c.get("Image", ""),
            fmt.go_quote(fmt.ellipsis(c.get("Command", ""), 20)), str(volumes),
            fmt.human_size(c.get("SizeRw") or 0), fmt.ago(c.get("Created", 0), now),
            c.get("Status", ""), ",".join(n.lstrip("/") for n in c.get("Names") or [])]))
    ctx.out("\nContainers space usage:\n")
    ctx.stdout.write(fmt.tabulate(lines))
    lines = ["VOLUME NAME\tLINKS\tSIZE"]
    for v in df.get("Volumes") or []:
        usage = v.get("UsageData") or {}
        lines.append(f"{v['Name']}\t{usage.get('RefCount', 0)}\t"
                     f"{fmt.human_size(max(usage.get('Size', 0), 0))}")
    ctx.out("\nLocal Volumes space usage:\n")
    ctx.stdout.write(fmt.tabulate(lines))
    ctx.out("\nBuild cache usage: 0B")
    loose = (df.get("Unattributed") or {}).get("Items") or []
    if loose:
        lines = ["PATH\tSIZE", *(f"{x['Path']}\t{fmt.human_size(x['Size'])}" for x in loose)]
        ctx.out("\nUnattributed space usage (no image, container or volume owns it):\n")
        ctx.stdout.write(fmt.tabulate(lines))


def cmd_df(ctx: Context, args: argparse.Namespace) -> int:
    df = ctx.read("system df", "/system/df") or {}
    if args.verbose and not args.format:
        _verbose(ctx, df)
        return 0
    ctx.stdout.write(fmt.render_list(args.format, summary_rows(df), TABLE, TITLES))
    return 0
