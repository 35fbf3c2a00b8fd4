"""Image verbs: `images`, `rmi`, `tag`, `history`, `load`, `save`, `import`, `pull`, `push`,
`login`, `logout`.

I/O: the daemon's API; reads and writes image archives named on the command line (or stdin /
stdout); reads and writes the credentials file `~/.shipslog/config.json` (mode 0600; override
the directory with SHIPSLOG_CONFIG).
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import json
import os
import sys

from engine.api.docker.stream import JsonLineDecoder
from engine.cli import format as fmt
from engine.cli import parse
from engine.cli.context import Context
from engine.cli.errors import CliError, UsageError
from engine.cli.manage import for_each
from engine.cli.progress import ProgressRenderer
from engine.cli.timeline import AT_HELP, at_read

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import IO, Any, TextIO

DEFAULT_REGISTRY = "https://index.docker.io/v1/"


def register(sub: Any) -> None:
    p = sub.add_parser("images", help="List images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("--at", default=None, metavar="TIME|seq:N", help=AT_HELP)
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("rmi", help="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("history", help="Show the layer history of an image (Docker's "
                       "history; 'shipslog history' is the event timeline)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-H", "--human", default="true", choices=["true", "false"])
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="")
    p.add_argument("image")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("load", help="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("save", help="Save one or more images to a tar archive")
    p.add_argument("-o", "--output", default="")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("import", help="Import a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform", default="")
    p.add_argument("source", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("pull", help="Download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--platform", default="")
    p.add_argument("image")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("image")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="Log in to a registry")
    p.add_argument("-u", "--username", default="")
    p.add_argument("-p", "--password", default="")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="Log out from a registry")
    p.add_argument("server", nargs="?", default="")
    p.set_defaults(func=cmd_logout)


# ------------------------------------------------------------------- listing

def images_params(args: argparse.Namespace) -> dict[str, Any]:
    filters = parse.parse_filters(args.filter)
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)
    params: dict[str, Any] = {}
    if args.all:
        params["all"] = True
    if args.digests:
        params["digests"] = True
    if filters:
        params["filters"] = json.dumps(filters, separators=(",", ":"))
    return params


def cmd_images(ctx: Context, args: argparse.Namespace) -> int:
    try:
        params = images_params(args)
    except ValueError as exc:
        raise UsageError(str(exc), "images") from None
    answer, now = at_read(ctx, "images", "/images/json", params, args.at)
    answer = answer or []
    rows = [row for img in answer for row in fmt.image_rows(img, now=now, trunc=not args.no_trunc)]
    if args.quiet:
        seen: list[str] = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
        ctx.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    table = fmt.IMAGE_TABLE
    if args.digests:
        table = table.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    ctx.stdout.write(fmt.render_list(args.format, rows, table, fmt.IMAGE_TITLES))
    return 0


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.read("history", f"/images/{args.image}/history") or []
    now = ctx.clock()
    human = args.human == "true"
    rows = []
    for layer in answer:
        image_id = layer.get("Id", "<missing>")
        created_by = layer.get("CreatedBy", "")
        rows.append({
            "ID": image_id if args.no_trunc or image_id == "<missing>" else
            fmt.truncate_id(image_id),
            "CreatedSince": fmt.ago(layer.get("Created", 0), now) if human else
            fmt.go_time(layer.get("Created", 0)),
            "CreatedAt": fmt.go_time(layer.get("Created", 0)),
            "CreatedBy": created_by if args.no_trunc else fmt.ellipsis(created_by, 45),
            "Size": fmt.human_size(layer.get("Size", 0), 3) if human else str(layer.get("Size")),
            "Comment": layer.get("Comment", ""),
        })
    if args.quiet:
        ctx.stdout.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    table = ("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}")
    titles = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
              "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
    ctx.stdout.write(fmt.render_list(args.format, rows, table, titles))
    return 0


def cmd_rmi(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.force:
        params["force"] = True
    if args.no_prune:
        params["noprune"] = True
    def show(_: str, answer: Any) -> str | None:
        lines = []
        for item in answer or []:
            if "Untagged" in item:
                lines.append(f"Untagged: {item['Untagged']}")
            if "Deleted" in item:
                lines.append(f"Deleted: {item['Deleted']}")
        return "\n".join(lines) if lines else None

    return for_each(ctx, args.images,
                    lambda ref: ctx.client.delete(f"/images/{ref}", params or None), show)


def cmd_tag(ctx: Context, args: argparse.Namespace) -> int:
    repo, tag = parse.split_image_ref(args.target)
    ctx.client.post_json(f"/images/{args.source}/tag", {"repo": repo, "tag": tag or "latest"})
    return 0


# ------------------------------------------------------------------- archives

def _json_lines(data: bytes) -> Iterator[Any]:
    decoder = JsonLineDecoder()
    yield from decoder.feed(data)
    yield from decoder.close()


def _renderer(ctx: Context, out: TextIO, quiet: bool = False) -> ProgressRenderer:
    tty = ctx.isatty(out)
    import shutil  # progress bars only: every `run` imports this module

    width = shutil.get_terminal_size().columns if tty else 80
    return ProgressRenderer(out, tty=tty, width=width, quiet=quiet)


def cmd_load(ctx: Context, args: argparse.Namespace) -> int:
    params = {"quiet": True} if args.quiet else None
    with _open_input(ctx, args.input, "load") as source:
        response = ctx.client.upload("POST", "/images/load", source, params)
    renderer = _renderer(ctx, ctx.stdout)
    for message in _json_lines(response.body):
        renderer.feed(message)
    return 0


@contextlib.contextmanager
def _open_input(ctx: Context, path: str, verb: str) -> Iterator[IO[bytes]]:
    if path and path != "-":
        with open(path, "rb") as fh:
            yield fh
        return
    stdin = ctx.stdin or sys.stdin.buffer
    if ctx.isatty(stdin):
        raise CliError(f"requested {verb} from stdin, but stdin is a terminal",
                       f"pass a file with '-i FILE' or redirect one: shipslog {verb} < image.tar")
    yield stdin


def cmd_save(ctx: Context, args: argparse.Namespace) -> int:
    if not args.output and ctx.isatty(ctx.stdout):
        raise CliError("cowardly refusing to save to a terminal",
                       "use the -o flag or redirect: shipslog save IMAGE > image.tar")
    params: Mapping[str, Any] | None = None
    if len(args.images) == 1:
        path = f"/images/{args.images[0]}/get"
    else:
        path, params = "/images/get", RepeatedParams([("names", n) for n in args.images])
    if args.output:
        partial = args.output + ".partial"
        try:
            with open(partial, "wb") as fh, ctx.client.stream("GET", path, params) as chunks:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(partial, args.output)  # never leave a half-written archive behind
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return 0
    out = ctx.out_bytes()
    with ctx.client.stream("GET", path, params) as chunks:
        for chunk in chunks:
            out.write(chunk)
    out.flush()
    return 0


class RepeatedParams(collections.abc.Mapping):  # of str to Any (typing: not at run time)
    """Query parameters where a key repeats (`names=a&names=b`, as `GET /images/get` wants).

    `items()` yields every pair, which is what the API client encodes; as a mapping it shows
    the last value of each key."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def __getitem__(self, key: str) -> Any:
        for k, v in reversed(self.pairs):
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self.pairs))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self.pairs))

    def items(self) -> Any:
        return list(self.pairs)


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.reference:
        repo, tag = parse.split_image_ref(args.reference)
        params["repo"] = repo
        if tag:
            params["tag"] = tag
    if args.message:
        params["message"] = args.message
    if args.change:
        params["changes"] = args.change
    if args.platform:
        params["platform"] = args.platform
    if args.source.startswith(("http://", "https://")):
        params = {"fromSrc": args.source, **params}
        with ctx.client.stream_json("POST", "/images/create", params) as messages:
            _show_import(ctx, messages)
        return 0
    params = {"fromSrc": "-", **params}
    with _open_input(ctx, args.source, "import") as source:
        response = ctx.client.upload("POST", "/images/create", source, params)
    _show_import(ctx, _json_lines(response.body))
    return 0


def _show_import(ctx: Context, messages: Any) -> None:
    renderer = _renderer(ctx, ctx.stdout)
    for message in messages:
        renderer.feed(message)


# ------------------------------------------------------------------- registries

def registry_of(ref: str) -> str:
    """The registry a reference lives in: its first component when that looks like a host
    (has a dot or a port, or is localhost), else Docker Hub."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def config_path(environ: Mapping[str, str]) -> str:
    base = environ.get("SHIPSLOG_CONFIG") or os.path.join(os.path.expanduser("~"), ".shipslog")
    return os.path.join(base, "config.json")


def _load_config(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        with open(config_path(environ), encoding="utf-8") as fh:
            return dict(json.load(fh))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise CliError(f"{config_path(environ)} is not valid JSON: {exc}",
                       "fix or remove the file and log in again") from None


def _save_config(environ: Mapping[str, str], config: dict[str, Any]) -> None:
    path = config_path(environ)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    partial = path + ".partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent="\t")
    os.replace(partial, path)


def registry_auth(environ: Mapping[str, str], server: str) -> str:
    """The X-Registry-Auth header value: base64url JSON credentials, `e30=` ("{}") if none."""
    import base64  # imported where used: `run` imports this module, and start-up counts

    entry = _load_config(environ).get("auths", {}).get(server, {})
    creds: dict[str, str] = {}
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        creds = {"username": user, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(creds).encode()).decode()


def pull_image(ctx: Context, ref: str, *, out: TextIO, quiet: bool = False,
               platform: str = "", all_tags: bool = False) -> None:
    """POST /images/create?fromImage=…, its progress rendered like `docker pull`."""
    repo, tag = parse.split_image_ref(ref)
    params: dict[str, Any] = {"fromImage": repo}
    if not all_tags:
        params["tag"] = tag or "latest"
    if platform:
        params["platform"] = platform
    headers = {"X-Registry-Auth": registry_auth(ctx.environ, registry_of(ref))}
    renderer = _renderer(ctx, out, quiet)
    with ctx.client.stream("POST", "/images/create", params, None, headers) as chunks:
        decoder = JsonLineDecoder()
        for chunk in chunks:
            for message in decoder.feed(chunk):
                renderer.feed(message)
        for message in decoder.close():
            renderer.feed(message)


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    pull_image(ctx, args.image, out=ctx.stdout, quiet=args.quiet, platform=args.platform,
               all_tags=args.all_tags)
    repo, tag = parse.split_image_ref(args.image)
    if not args.all_tags:
        ctx.out(f"{repo}{'@' if tag.startswith('sha256:') else ':'}{tag or 'latest'}")
    return 0


def cmd_push(ctx: Context, args: argparse.Namespace) -> int:
    repo, tag = parse.split_image_ref(args.image)
    params = {"tag": tag} if tag and not args.all_tags else None
    headers = {"X-Registry-Auth": registry_auth(ctx.environ, registry_of(args.image))}
    renderer = _renderer(ctx, ctx.stdout, args.quiet)
    with ctx.client.stream("POST", f"/images/{repo}/push", params, None, headers) as chunks:
        decoder = JsonLineDecoder()
        for chunk in chunks:
            for message in decoder.feed(chunk):
                renderer.feed(message)
        for message in decoder.close():
            renderer.feed(message)
    if args.quiet:
        ctx.out(args.image)
    return 0


def cmd_login(ctx: Context, args: argparse.Namespace) -> int:
    server = args.server or DEFAULT_REGISTRY
    username = args.username
    password = args.password
    if args.password and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive", "login")
    if args.password_stdin:
        if not username:
            raise UsageError("Must provide --username with --password-stdin", "login")
        password = (ctx.stdin or sys.stdin.buffer).read().decode().rstrip("\r\n")
    elif args.password:
        ctx.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if (not username or not password) and not ctx.isatty(ctx.stdin or sys.stdin):
        raise CliError("Cannot perform an interactive login from a non TTY device",
                       "pass -u USER and --password-stdin, e.g. "
                       "'cat pass.txt | shipslog login -u USER --password-stdin'")
    if not username:
        username = input("Username: ").strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise CliError("username and password are required", "pass -u and --password-stdin")
    answer = ctx.client.post_json("/auth", None, {"username": username, "password": password,
                                                   "serveraddress": server}) or {}
    config = _load_config(ctx.environ)
    import base64

    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    config.setdefault("auths", {})[server] = {"auth": token}
    _save_config(ctx.environ, config)
    ctx.out(answer.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(ctx: Context, args: argparse.Namespace) -> int:
    server = args.server or DEFAULT_REGISTRY
    config = _load_config(ctx.environ)
    if server not in config.get("auths", {}):
        ctx.out(f"Not logged in to {server}")
        return 0
    ctx.out(f"Removing login credentials for {server}")
    del config["auths"][server]
    _save_config(ctx.environ, config)
    return 0
