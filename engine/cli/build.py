"""`shipslog build`: Docker's flags, a context from a directory or stdin, the daemon's build
messages shown as they arrive (Step N/M, the RUN output streamed).

I/O: reads the context directory (tarred into a temp file) or stdin; the daemon's socket.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import stat
import sys
import tarfile
import tempfile
from typing import IO, Any
from urllib.parse import urlencode

from engine.cli.client import ApiError, JsonLineDecoder, _chunks_of
from engine.cli.context import Context
from engine.cli.errors import CliError


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file", default="")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target", default="")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--pull", action="store_true")
    p.add_argument("--platform", default="")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--network", default="")
    p.add_argument("--iidfile", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("context", metavar="PATH | -")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("commit", help="Create a new image from a container's changes")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("-p", "--pause", default="true", choices=["true", "false"], nargs="?",
                   const="true")
    p.add_argument("container")
    p.add_argument("repository", nargs="?", default="", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("builder", help="Manage the build cache")
    bsub = p.add_subparsers(dest="subverb", metavar="COMMAND", required=True)
    bp = bsub.add_parser("prune", help="Remove the build cache (untagged step images)")
    bp.add_argument("-f", "--force", action="store_true")
    bp.add_argument("-a", "--all", action="store_true")
    bp.set_defaults(func=cmd_builder_prune)

    p = sub.add_parser("provenance", help="How an image was built, from the log: a SLSA v1 "
                       "provenance statement (in-toto JSON), or the steps with --steps")
    p.add_argument("--steps", action="store_true", help="show each step, its cache status and "
                   "duration, and who ran the build")
    p.add_argument("image")
    p.set_defaults(func=cmd_provenance)


def _pairs(items: list[str], environ: Any, *, from_env: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq and from_env:  # docker: `--build-arg KEY` takes KEY from the environment
            if key not in environ:
                continue
            val = environ[key]
        out[key] = val
    return out


def _stdin(ctx: Context) -> IO[bytes]:
    return ctx.stdin or sys.stdin.buffer


def make_context(ctx: Context, args: argparse.Namespace, out: IO[bytes]) -> str:
    """Write the context tar to `out`; return the Dockerfile's name inside it."""
    dockerfile = args.file
    extra: bytes | None = None
    if dockerfile == "-":
        if args.context == "-":
            raise CliError("invalid argument: can't use stdin for both build context and "
                           "dockerfile", "give the context as a directory")
        extra = _stdin(ctx).read()
    with tarfile.open(fileobj=out, mode="w") as tf:
        tf.copybufsize = 1 << 20  # type: ignore[attr-defined]  # 16 KiB by default
        if args.context == "-":
            data = _stdin(ctx).read()
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as src:
                    for m in src:
                        tf.addfile(m, src.extractfile(m) if m.isreg() else None)
            except tarfile.TarError:
                extra, dockerfile = data, ""  # stdin was a Dockerfile: an empty context
        else:
            if not os.path.isdir(args.context):
                raise CliError(f'unable to prepare context: path "{args.context}" not found',
                               "give the build context directory, or - for stdin")
            if dockerfile and dockerfile != "-":
                path = os.path.abspath(dockerfile)
                inside = os.path.relpath(path, os.path.abspath(args.context))
                if inside.startswith(".."):  # outside the context: sent along, as docker does
                    with open(path, "rb") as fh:
                        extra = fh.read()
                else:
                    dockerfile = inside
            add_directory(tf, args.context, dockerfile or "Dockerfile")
        if extra is not None:
            dockerfile = f".dockerfile.{secrets.token_hex(10)}"
            ti = tarfile.TarInfo(dockerfile)
            ti.size = len(extra)
            tf.addfile(ti, io.BytesIO(extra))
    return dockerfile or "Dockerfile"


def add_directory(tf: tarfile.TarFile, root: str, dockerfile: str) -> None:
    """The context directory into `tf` as the docker CLI sends it (cli/command/image/build.go,
    moby TarWithOptions): what `.dockerignore` excludes is left out (the Dockerfile and
    `.dockerignore` always go), everything is owned 0:0 with no names, the directory itself
    is not an entry. One scandir per directory and no user-name lookups: `tarfile.add` spent
    most of its time in stat and pwd/grp calls for a 2,500-file context."""
    from engine.core.build import dockerignore_rules, ignored
    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8", errors="replace") as fh:
            rules = dockerignore_rules(fh.read())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        rules = []
    keep = {".dockerignore", os.path.normpath(dockerfile)}
    negations = any(exc for exc, _ in rules)
    links: dict[tuple[int, int], str] = {}

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            skip = bool(rules) and name not in keep and ignored(name, rules)
            st = e.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if skip and not (is_dir and negations):
                continue  # a directory is walked only if a "!" rule may take something back
            if not skip:
                _add(tf, e.path, name, st, links)
            if is_dir:
                walk(e.path, name)

    walk(root, "")


def _add(tf: tarfile.TarFile, path: str, name: str, st: os.stat_result,
         links: dict[tuple[int, int], str]) -> None:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid = ti.gid = 0  # the docker CLI's ChownOpts{0, 0}: COPY gives root:root by default
    ti.uname = ti.gname = ""
    fmt = stat.S_IFMT(st.st_mode)
    key = (st.st_dev, st.st_ino)
    if fmt == stat.S_IFREG and st.st_nlink > 1 and key in links:
        ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
        tf.addfile(ti)
    elif fmt == stat.S_IFREG:
        links.setdefault(key, name)
        ti.size = st.st_size
        with open(path, "rb") as fh:
            tf.addfile(ti, fh)
    elif fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
    elif fmt == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        tf.addfile(ti)
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
        tf.addfile(ti)
    # sockets and device nodes are not sent (the builder would skip them: S-11)


def cmd_build(ctx: Context, args: argparse.Namespace) -> int:
    build_args = _pairs(args.build_arg, ctx.environ, from_env=True)
    if "SOURCE_DATE_EPOCH" in ctx.environ and "SOURCE_DATE_EPOCH" not in build_args:
        build_args["SOURCE_DATE_EPOCH"] = ctx.environ["SOURCE_DATE_EPOCH"]  # as buildx does
    query: list[tuple[str, str]] = [("t", t) for t in args.tag]
    with tempfile.TemporaryFile() as f:
        query.append(("dockerfile", make_context(ctx, args, f)))
        f.seek(0)
        import json
        for key, val in (("buildargs", build_args), ("labels", _pairs(args.label, {},
                                                                      from_env=False))):
            if val:
                query.append((key, json.dumps(val)))
        platform = args.platform or ctx.environ.get("DOCKER_DEFAULT_PLATFORM", "")
        for key, flag in (("target", args.target), ("networkmode", args.network),
                          ("platform", platform)):
            if flag:
                query.append((key, flag))
        for key, on in (("nocache", args.no_cache), ("pull", args.pull), ("q", args.quiet)):
            if on:
                query.append((key, "1"))
        image_id = _send(ctx, f, query, quiet=args.quiet)
    if args.iidfile:
        with open(args.iidfile, "w") as fh:
            fh.write(image_id)
    if args.quiet:
        ctx.stdout.write(image_id + "\n")
    return 0


def _send(ctx: Context, f: IO[bytes], query: list[tuple[str, str]], *, quiet: bool) -> str:
    client = ctx.client
    # The body goes up chunked and the answer is shown as it streams back: `Client.upload`
    # reads the whole answer first, which would hide the RUN output until the end.
    conn = client._open()
    try:
        url = client._url("/build", None) + "?" + urlencode(query)
        status, head = client._exchange(conn, "POST", url, None,
                                        {"Content-Type": "application/x-tar"},
                                        chunks=_chunks_of(f))
        if status >= 400:
            body = client._read_all(conn, head)
            raise ApiError(status, _message(body))
        decoder = JsonLineDecoder()
        image_id = ""
        for chunk in conn.body(head):
            for msg in decoder.feed(chunk):
                image_id = _show(ctx, msg, quiet) or image_id
        for msg in decoder.close():
            image_id = _show(ctx, msg, quiet) or image_id
    finally:
        conn.close()
    return image_id


def _message(body: bytes) -> str:
    import json
    try:
        return str(json.loads(body).get("message", body.decode(errors="replace")))
    except ValueError:
        return body.decode(errors="replace").strip()


def _show(ctx: Context, msg: Any, quiet: bool) -> str:
    if not isinstance(msg, dict):
        return ""
    if "errorDetail" in msg or "error" in msg:
        detail = msg.get("errorDetail") or {}
        text = detail.get("message") or msg.get("error") or "build failed"
        code = detail.get("code")  # a failed RUN's exit code: exit with it, as docker does
        raise CliError(text, "the step and its command are named above",
                       **({"exit_code": code} if isinstance(code, int) and code > 0 else {}))
    if "stream" in msg and not quiet:
        ctx.stdout.write(str(msg["stream"]))
        ctx.stdout.flush()
    aux = msg.get("aux")
    if isinstance(aux, dict) and "ID" in aux:
        return str(aux["ID"])
    return ""


def cmd_provenance(ctx: Context, args: argparse.Namespace) -> int:
    import json
    path = f"/shipslog/images/{args.image}/build"  # the client quotes the path
    if not args.steps:
        doc = ctx.client.get_json(path, {"format": "slsa"})
        ctx.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    rec = ctx.client.get_json(path)
    who = " ".join(rec.get("command") or ()) or "?"
    ctx.stdout.write(f"build {rec['op_id']} by uid {rec['uid']} ({who}): {rec['outcome']}"
                     f"{' - ' + rec['error'] if rec.get('error') else ''}\n")
    ctx.stdout.write(f"context {rec['context_digest']}  dockerfile {rec['dockerfile']} "
                     f"{rec['dockerfile_digest']}\n")
    ctx.stdout.write(f"{'STEP':<8}{'CACHE':<8}{'TIME':>9}  INSTRUCTION\n")
    for st in rec.get("steps", []):
        cache = "-" if st["instruction"].startswith("FROM ") else (
            "hit" if st.get("cached") else "miss")
        ctx.stdout.write(f"{st['step']}/{st['total']:<6}{cache:<8}"
                         f"{st.get('duration_ms', 0) / 1000:>8.2f}s  {st['instruction']}\n")
    return 0


def cmd_commit(ctx: Context, args: argparse.Namespace) -> int:
    repo, tag = args.repository, ""
    if repo and ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    query = [("container", args.container), ("repo", repo), ("tag", tag),
             ("comment", args.message), ("author", args.author),
             ("pause", "1" if args.pause == "true" else "0")]
    query += [("changes", c) for c in args.change]
    url = "/commit?" + urlencode([(k, val) for k, val in query if val])
    client = ctx.client
    conn = client._open()
    try:
        status, head = client._exchange(conn, "POST", client._url(url.split("?")[0], None) +
                                        "?" + url.split("?", 1)[1], None, {})
        body = client._read_all(conn, head)
    finally:
        conn.close()
    if status >= 400:
        raise ApiError(status, _message(body))
    import json
    ctx.stdout.write(json.loads(body)["Id"] + "\n")
    return 0


def cmd_builder_prune(ctx: Context, args: argparse.Namespace) -> int:
    if not args.force:
        stdin = _stdin(ctx)
        ctx.stdout.write("WARNING! This will remove all dangling build cache. "
                         "Are you sure you want to continue? [y/N] ")
        ctx.stdout.flush()
        if stdin.readline().strip().lower() not in (b"y", b"yes"):
            return 0
    answer = ctx.client.post_json("/build/prune")
    for cid in answer.get("CachesDeleted") or []:
        ctx.stdout.write(f"Deleted build cache objects:\n{cid}\n")
    size = answer.get("SpaceReclaimed", 0)
    ctx.stdout.write(f"Total reclaimed space: {size / 1e6:.3g}MB\n")
    return 0
