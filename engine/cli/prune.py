"""`container prune` and `system prune`: remove what is stopped or unused, after asking.

I/O: `POST /containers/prune`, `/networks/prune`, `/images/prune`, `/volumes/prune`; asks on
stderr and reads the answer from stdin unless `-f`. Output as Docker's CLI prints it.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context
from engine.cli.parse import flag_values


def register_container(sub: Any) -> None:
    p = sub.add_parser("prune", help="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--filter", action="append", default=[], help="until=…, label=…")
    p.set_defaults(func=cmd_container_prune)


def register_image(sub: Any) -> None:
    p = sub.add_parser("prune", help="Remove dangling images (every unused one with -a)")
    p.add_argument("-a", "--all", action="store_true",
                   help="remove every image no container uses, not only dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_image_prune)


def register_system(sub: Any) -> None:
    p = sub.add_parser("prune", help="Remove stopped containers, unused networks and "
                       "dangling images (and unused volumes with --volumes)")
    p.add_argument("-a", "--all", action="store_true",
                   help="remove every image no container uses, not only dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--volumes", action="store_true", help="prune anonymous volumes too")
    p.add_argument("--filter", action="append", default=[], help="until=…, label=…")
    p.set_defaults(func=cmd_system_prune)


def confirmed(ctx: Context, warning: str) -> bool:
    """Docker's prompt: anything but y/yes (or no answer at all) means no."""
    ctx.err(f"{warning}\nAre you sure you want to continue? [y/N] ", end="")
    line = ctx.stdin.readline() if ctx.stdin is not None else b""
    return line.strip().lower() in (b"y", b"yes")


def prune(ctx: Context, kind: str, filters: dict[str, list[str]]) -> int:
    """`POST /<kind>s/prune` for containers, networks or volumes; prints what went, as
    Docker does ("Deleted Volumes:" …), and returns the bytes reclaimed."""
    answer = ctx.client.post_json(f"/{kind}s/prune", {"filters": filters} if filters else None)
    deleted = answer.get(f"{kind.capitalize()}sDeleted") or []
    if deleted:
        ctx.out(f"Deleted {kind.capitalize()}s:")
        for item in deleted:
            ctx.out(item)
        ctx.out("")
    return int(answer.get("SpaceReclaimed") or 0)


def cmd_container_prune(ctx: Context, args: argparse.Namespace) -> int:
    filters = flag_values("filter", args.filter, "container prune")
    if not args.force and not confirmed(
            ctx, "WARNING! This will remove all stopped containers."):
        return 0
    reclaimed = prune(ctx, "container", filters)
    ctx.out(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0


def cmd_system_prune(ctx: Context, args: argparse.Namespace) -> int:
    filters = flag_values("filter", args.filter, "system prune")
    items = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if args.all
                 else "all dangling images")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not args.force and not confirmed(ctx, warning.rstrip("\n")):
        return 0
    reclaimed = prune(ctx, "container", filters) + prune(ctx, "network", filters)
    if args.volumes:
        reclaimed += prune(ctx, "volume", filters)
    reclaimed += _prune_images(ctx, every=args.all)  # image prune takes no other filter
    ctx.out(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0


def _prune_images(ctx: Context, *, every: bool) -> int:
    images = ctx.client.post_json("/images/prune",
                                  {"filters": {"dangling": ["false" if every else "true"]}})
    if images.get("ImagesDeleted"):
        ctx.out("Deleted Images:")
        for item in images["ImagesDeleted"]:
            for key, word in (("Untagged", "untagged"), ("Deleted", "deleted")):
                if item.get(key):
                    ctx.out(f"{word}: {item[key]}")
        ctx.out("")
    return int(images.get("SpaceReclaimed") or 0)


def cmd_image_prune(ctx: Context, args: argparse.Namespace) -> int:
    warning = ("WARNING! This will remove all images without at least one container "
               "associated to them." if args.all else "WARNING! This will remove all "
               "dangling images.")
    if not args.force and not confirmed(ctx, warning):
        return 0
    reclaimed = _prune_images(ctx, every=args.all)
    ctx.out(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0
