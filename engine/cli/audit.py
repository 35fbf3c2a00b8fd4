"""`shipslog audit`: `verify` (recompute the hash chain, name the first bad event, re-hash
compacted events from their archives (`--archive DIR`, default `<root>/archive`); with
`--checkpoint FILE` also prove the chain was not rewritten since the checkpoint), `who` (which
users — by name, from the host's passwd when shown — and processes acted on what; `--filter
actor=|uid=|command=|outcome=`), `checkpoint` (sign the chain head with the operator's key
and write the anchor to a file kept outside the database).

I/O: the daemon's `/shipslog/audit/...` API (or the state root with `--root`); reads and writes
the checkpoint key (PEM, 0600; `--key`, SHIPSLOG_CHECKPOINT_KEY, or
~/.config/shipslog/checkpoint.key) and checkpoint files; writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context
from engine.cli.errors import CliError
from engine.cli.fleet import add_host_flag
from engine.cli.logargs import filter_params, point_arg, when


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="Verify the event log, and see who did what")
    asub = p.add_subparsers(dest="audit_verb", metavar="COMMAND", required=True)

    v = asub.add_parser("verify", help="Check the hash chain; name the first altered event")
    v.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="also check a signed checkpoint (catches a rewritten chain)")
    v.add_argument("--key", default=None, metavar="FILE",
                   help="the checkpoint key to trust (default: the one 'audit checkpoint' uses)")
    v.add_argument("--archive", default=None, metavar="DIR",
                   help="where the compaction archives are (default: <root>/archive)")
    v.add_argument("--format", default="")
    add_host_flag(v)
    v.set_defaults(func=cmd_verify)

    w = asub.add_parser("who", help="Which users and processes acted on what")
    w.add_argument("object", nargs="?", default=None, metavar="OBJECT",
                   help="a container, image, volume or network (default: everything)")
    w.add_argument("--uid", type=int, default=None)
    w.add_argument("-f", "--filter", action="append", default=[], help=WHO_FILTER_HELP)
    w.add_argument("--since", default="", help="seq:N, Unix time, RFC 3339 or a duration")
    w.add_argument("--until", default="")
    w.add_argument("--format", default="")
    add_host_flag(w)
    w.set_defaults(func=cmd_who)

    from engine.cli.export import register_export  # issue 18: the log in other formats

    register_export(asub)

    c = asub.add_parser("checkpoint", help="Sign the chain head; keep the file outside the DB")
    c.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="where to write the checkpoint (default: print it)")
    c.add_argument("--key", default=None, metavar="FILE",
                   help="the Ed25519 key (PEM); created 0600 on first use")
    c.set_defaults(func=cmd_checkpoint)


def key_path(ctx: Context, given: str | None) -> str:
    if given:
        return given
    env = ctx.environ.get("SHIPSLOG_CHECKPOINT_KEY")
    if env:
        return env
    home = ctx.environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config", "shipslog", "checkpoint.key")


def load_or_create_key(path: str) -> tuple[bytes, bool]:
    from events import checkpoint as cp

    try:
        with open(path, "rb") as fh:
            return fh.read(), False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    pem = cp.new_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return pem, True


def cmd_checkpoint(ctx: Context, args: argparse.Namespace) -> int:
    from events import checkpoint as cp

    path = key_path(ctx, args.key)
    pem, created = load_or_create_key(path)
    head = ctx.read("audit", "/shipslog/audit/head")
    if not head["seq"]:
        raise CliError("the event log is empty", "there is nothing to anchor yet")
    try:
        signed = cp.sign(pem, seq=head["seq"], hash=head["hash"], first_hash=head["first_hash"],
                         created_ns=int(ctx.clock() * 1e9))
    except cp.CheckpointError as exc:
        raise CliError(f"{path}: {exc}", "pass an Ed25519 PEM key with --key") from None
    data = cp.encode(signed)
    if created:
        ctx.err(f"created checkpoint key {path} (0600); keep it away from the state root")
    if args.output == "-":
        ctx.stdout.write(data.decode())
    else:
        tmp = args.output + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, args.output)
        ctx.err(f"checkpoint of event {signed.seq} ({signed.hash[:16]}…) written to "
                f"{args.output}, signed by key {signed.key_id}")
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from events import checkpoint as cp

    checkpoint = None
    trusted: bytes | None = None
    warnings: list[str] = []
    if args.checkpoint:
        try:
            with open(args.checkpoint, "rb") as fh:
                checkpoint = cp.decode(fh.read())
        except OSError as exc:
            raise CliError(f"cannot read checkpoint {args.checkpoint}: {exc.strerror}",
                           "pass the file 'shipslog audit checkpoint -o FILE' wrote") from None
        except cp.CheckpointError as exc:
            raise CliError(f"{args.checkpoint}: {exc}", "pass a checkpoint file") from None
        path = key_path(ctx, args.key)
        try:
            with open(path, "rb") as fh:
                trusted = cp.public_key_of(fh.read())
        except FileNotFoundError:
            if args.key:
                raise CliError(f"no checkpoint key at {path}", "pass the key that signed the "
                               "checkpoint with --key") from None
            warnings.append(f"no key at {path}: the signature was checked against the key "
                            "named in the checkpoint itself")
        except cp.CheckpointError as exc:
            raise CliError(f"{path}: {exc}", "pass an Ed25519 PEM key with --key") from None
    params: dict[str, Any] = {"seq": checkpoint.seq} if checkpoint is not None else {}
    if args.archive:
        params["archive"] = os.path.abspath(args.archive)
    t0 = time.perf_counter()
    result = ctx.read("audit", "/shipslog/audit/verify", params)
    took = time.perf_counter() - t0
    problems: list[str] = []
    if not result["ok"]:
        problems.append(f"event {result['first_bad_seq']}: {result['reason']}")
    if checkpoint is not None:
        try:
            cp.verify_signature(checkpoint, trusted)
            cp.check_against(checkpoint, hash_at_seq=result.get("hash_at_seq"),
                             first_hash=result["first_hash"])
        except cp.CheckpointError as exc:
            problems.append(f"checkpoint {args.checkpoint}: {exc}")
    if args.format == "json":
        ctx.out(json.dumps({**result, "problems": problems}))
    else:
        for warning in warnings:
            ctx.err(f"warning: {warning}")
        if result["ok"]:
            rate = result["checked"] / took if took > 0 else 0
            speed = f" ({rate:,.0f} events/s)" if result["checked"] >= 100_000 else ""
            hosts = result.get("hosts")  # a fleet query (--store): which hosts' chains
            of = f" of host{'s' if len(hosts) != 1 else ''} {', '.join(hosts)}" if hosts else ""
            ctx.out(f"chain ok{of}: {result['checked']} events verified, head "
                    f"{result['head']} ({result['last_hash'][:16]}…) in {took:.2f}s{speed}")
            _archived_lines(ctx, result)
        if checkpoint is not None and len(problems) == (0 if result["ok"] else 1) and \
                result["ok"]:
            ctx.out(f"checkpoint ok: event {checkpoint.seq} still has hash "
                    f"{checkpoint.hash[:16]}… (key {checkpoint.key_id})")
    if problems:
        first = problems[0]
        raise CliError(f"audit failed: {first}" + (f" (and {len(problems) - 1} more)"
                                                   if len(problems) > 1 else ""),
                       "the log was altered outside shipslog; restore events.db from a "
                       "backup and compare with 'shipslog events --all'", 1)
    return 0


def _archived_lines(ctx: Context, result: dict[str, Any]) -> None:
    archived = result.get("archived") or 0
    if not archived:
        return
    unchecked = archived - (result.get("archived_checked") or 0)
    ctx.out(f"compacted: {archived} archived events, {result.get('archived_checked') or 0} "
            "re-hashed from their archives")
    missing = result.get("missing_archives") or []
    if unchecked and missing:
        ctx.err(f"warning: {unchecked} archived events were not rechecked: archive "
                f"{', '.join(missing)} not found (give its directory with --archive DIR)")


def cmd_who(ctx: Context, args: argparse.Namespace) -> int:
    from projections.history import command_line

    params: dict[str, Any] = {}
    if args.object:
        params["object"] = args.object
    if args.uid is not None:
        params["uid"] = args.uid
    for flag in ("since", "until"):
        value = getattr(args, flag)
        if value:
            params[flag] = point_arg(value, ctx.clock(), flag)
    params.update(filter_params(args.filter, "audit"))
    rows = ctx.read("audit", "/shipslog/audit/who", params) or []
    rows = [{**r, "user": user_of(r)} for r in rows]
    if args.format == "json":
        for row in rows:
            ctx.out(json.dumps(row))
        return 0
    if args.format:
        ctx.stdout.write(fmt.render_list(args.format, rows, "", {}))
        return 0
    fleet = bool(rows) and "host" in rows[0]  # --store: a HOST column first
    lines = [("HOST\t" if fleet else "")
             + "TIME\tSEQ\tUSER\tUID\tPID\tCOMMAND\tOPERATION\tTARGET\tOUTCOME"]
    for r in rows:
        who = "daemon\t-" if r["via"] == "daemon" else f"{r['user']}\t{r['uid']}"
        command = fmt.ellipsis(command_line(tuple(r.get("command") or ())), 30) or "-"
        target = r["target"]
        kind, _, ident = target.partition("-")
        shown = f"{kind} {ident[:12]}" if len(ident) > 12 else target
        outcome = r["outcome"] + (f": {fmt.ellipsis(r['error'], 40)}" if r.get("error") else "")
        lines.append(f"{r['host'] + chr(9) if fleet else ''}{when(r['time_ns'])}\t{r['seq']}\t"
                     f"{who}\t{r['pid']}\t{command}\t{r['kind']}\t{shown}\t{outcome}")
    ctx.stdout.write(fmt.tabulate(lines))
    return 0


WHO_FILTER_HELP = ("actor=NAME|UID, uid=N, command=TEXT (in the caller's command line), "
                   "outcome=failed|completed|compensated|pending")


def user_of(row: dict[str, Any]) -> str:
    """The host's name for the row's uid, looked up now (the log keeps uids only)."""
    if row.get("via") == "daemon":
        return "daemon"
    from engine.drivers.host.users import name_of

    return name_of(int(row["uid"])) or str(row["uid"])


