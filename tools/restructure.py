"""Issue 16, step 1: the mechanical part of the engine/ restructure, as a replayable script.

I/O: runs `git mv` / `git rm` in the repository, creates `__init__.py` files for the new
packages, and rewrites text files of the working tree in place.

The moves are data (MOVES below: old file → new file). The script

1. moves every old file that still exists (`git mv`; a file already at its new place is left
   alone), creates the new packages' `__init__.py`, and removes the `__init__.py` of a package
   the moves emptied (one that still holds a module the table does not know is kept, and named);
2. rewrites every reference to a moved module across the tree — files it has never seen
   included — with the AST and the tokenizer, never a blind text substitution (`engine` is also
   a common local variable: `engine.supervisor.d` in a route is an attribute, not a module):
   - `import a.b` / `import a.b as c` (alias spans), and `a.b.x` attribute chains in a file
     that did `import a.b`;
   - `from a.b import x`, including `from a import b` where `a.b` moved (the local name is kept:
     `from engine.api import routes_df` → `from engine.api.routes import df as routes_df`);
   - dotted module names inside string literals and comments (`-m` invocations, monkeypatch
     targets such as "engine.service.host_routes", `resources.files("engine.runtime")`);
   - repository paths (`engine/network_ops.py`, `engine/network/*.py`) in every text file;
   - dotted names in non-Python text files (README.md, pyproject.toml, shell scripts).

It is idempotent: a name already rewritten never matches again (a dotted name that continues
into a module of the new package, such as `engine.drivers.runtime.linux`, is left alone), so a
second run changes nothing. Run it from anywhere: `python3 tools/restructure.py [--dry-run]`.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# old file → new file. The rule of each new folder is in NEW_PACKAGES and README.md.
MOVES: dict[str, str] = {
    # The log's read model (seq <-> time, points, time travel, the actor as shown) is shared
    # by the /shipslog routes and the CLI's --root readers: in the shell, so the CLI need
    # not import a route module for it (issue 16).
    "engine/api/routes/log_time.py": "engine/shell/logread.py",
    # Docker's stream framing and detach keys are pure codecs the CLI shares with the server:
    # beside the other Docker formats, so the CLI no longer imports the server (issue 16).
    "engine/api/server/stream.py": "engine/api/docker/stream.py",
    "engine/api/server/escape.py": "engine/api/docker/escape.py",
    # Landed on the day of the restructure (issue 13's create options, issue 12's builds).
    "engine/api/hostopts.py": "engine/api/docker/hostopts.py",
    "engine/api/inspect_host.py": "engine/api/docker/inspect_host.py",
    "engine/api/routes_build.py": "engine/api/routes/build.py",
    "engine/build/__init__.py": "engine/shell/build/__init__.py",
    "engine/build/builder.py": "engine/shell/build/builder.py",
    "engine/build/commit.py": "engine/shell/build/commit.py",
    "engine/build/context.py": "engine/shell/build/context.py",
    "engine/build/layer.py": "engine/shell/build/layer.py",
    "engine/build/parse.py": "engine/shell/build/parse.py",
    "engine/build/session.py": "engine/shell/build/session.py",
    # The Compose v2 binary's runner (issue 14): used by the CLI verb and the tests only.
    "engine/compose.py": "engine/cli/compose_binary.py",
    # engine/core: every pure decision and planner (no I/O).
    "engine/errors.py": "engine/core/errors.py",
    "engine/units.py": "engine/core/units.py",
    "engine/volumes/plan.py": "engine/core/volume_plan.py",
    "engine/network/plan.py": "engine/core/net_plan.py",
    "engine/network/nftplan.py": "engine/core/nft_plan.py",
    "engine/network/fwdplan.py": "engine/core/fwd_plan.py",
    "engine/network/hostfiles.py": "engine/core/hostfiles.py",
    "engine/runtime/spec.py": "engine/core/oci_spec.py",
    "engine/runtime/seccomp.py": "engine/core/seccomp.py",
    "engine/runtime/seccomp_default.json": "engine/core/seccomp_default.json",
    "engine/images/reference.py": "engine/core/image_reference.py",
    "engine/images/documents.py": "engine/core/image_documents.py",
    # engine/drivers/<seam>: one folder per kernel seam.
    "engine/drivers/runtime.py": "engine/drivers/runtime/linux.py",
    "engine/drivers/runc.py": "engine/drivers/runtime/runc.py",
    "engine/drivers/monitor.py": "engine/drivers/runtime/monitor.py",
    "engine/drivers/execio.py": "engine/drivers/runtime/execio.py",
    "engine/drivers/cgroups.py": "engine/drivers/runtime/cgroups.py",
    "engine/drivers/container_stats.py": "engine/drivers/runtime/stats.py",
    "engine/runtime/logs.py": "engine/drivers/runtime/logs.py",
    "engine/drivers/snapshots.py": "engine/drivers/snapshots/overlay.py",
    "engine/drivers/rootfs_access.py": "engine/drivers/snapshots/rootfs_access.py",
    "engine/drivers/layers.py": "engine/drivers/layers/unpack.py",
    "engine/drivers/tarsafe.py": "engine/drivers/layers/tarsafe.py",
    "engine/drivers/content.py": "engine/drivers/layers/content.py",
    "engine/drivers/volumes.py": "engine/drivers/volumes/linux.py",
    "engine/drivers/bindsafe.py": "engine/drivers/volumes/bindsafe.py",
    "engine/volumes/seed.py": "engine/drivers/volumes/seed.py",
    "engine/drivers/netlink.py": "engine/drivers/network/netlink.py",
    "engine/drivers/netns.py": "engine/drivers/network/netns.py",
    "engine/drivers/nft.py": "engine/drivers/network/nft.py",
    "engine/drivers/dns.py": "engine/drivers/network/dns.py",
    "engine/drivers/hostfw.py": "engine/drivers/network/hostfw.py",
    "engine/drivers/hostfiles.py": "engine/drivers/network/hostfiles.py",
    "engine/secrets.py": "engine/drivers/secrets/store.py",
    "engine/drivers/hostinfo.py": "engine/drivers/host/info.py",
    "engine/host_users.py": "engine/drivers/host/users.py",
    "engine/drivers/diskusage.py": "engine/drivers/host/diskusage.py",
    "engine/drivers/mountsys.py": "engine/drivers/host/mountsys.py",
    "engine/failpoints.py": "engine/drivers/host/failpoints.py",
    # engine/shell: the imperative shell that carries plans out through the drivers.
    "engine/service.py": "engine/shell/service.py",
    "engine/supervisor.py": "engine/shell/supervisor.py",
    "engine/supervisor_storage.py": "engine/shell/supervisor_storage.py",
    "engine/recovery.py": "engine/shell/recovery.py",
    "engine/network_ops.py": "engine/shell/network.py",
    "engine/image_ops.py": "engine/shell/images.py",
    "engine/images/archive.py": "engine/shell/image_archive.py",
    "engine/journal.py": "engine/shell/journal.py",
    "engine/outcomes.py": "engine/shell/outcomes.py",
    "engine/compaction.py": "engine/shell/compaction.py",
    "engine/health.py": "engine/shell/health.py",
    "engine/image_gate.py": "engine/shell/image_gate.py",
    "engine/replay.py": "engine/shell/replay.py",
    "engine/leftovers.py": "engine/shell/leftovers.py",
    "engine/paths.py": "engine/shell/paths.py",
    # engine/admin: verbs that work on a state root with the daemon down.
    "engine/reset.py": "engine/admin/reset.py",
    "engine/system_check.py": "engine/admin/check.py",
    "engine/debug_memory.py": "engine/admin/debug_memory.py",
    # engine/api: the HTTP server, the Docker translation layer, the route modules.
    "engine/api/http.py": "engine/api/server/http.py",
    "engine/api/router.py": "engine/api/server/router.py",
    "engine/api/stream.py": "engine/api/docker/stream.py",
    "engine/api/hijack.py": "engine/api/server/hijack.py",
    "engine/api/relay.py": "engine/api/server/relay.py",
    "engine/api/peercred.py": "engine/api/server/peercred.py",
    "engine/api/admission.py": "engine/api/server/admission.py",
    "engine/api/escape.py": "engine/api/docker/escape.py",
    "engine/api/translate.py": "engine/api/docker/translate.py",
    "engine/api/models.py": "engine/api/docker/models.py",
    "engine/api/render.py": "engine/api/docker/render.py",
    "engine/api/docker_events.py": "engine/api/docker/events.py",
    "engine/api/routes_archive.py": "engine/api/routes/archive.py",
    "engine/api/routes_check.py": "engine/api/routes/check.py",
    "engine/api/routes_compact.py": "engine/api/routes/compact.py",
    "engine/api/routes_containers.py": "engine/api/routes/containers.py",
    "engine/api/routes_df.py": "engine/api/routes/df.py",
    "engine/api/routes_images.py": "engine/api/routes/images.py",
    "engine/api/routes_networks.py": "engine/api/routes/networks.py",
    "engine/api/routes_off.py": "engine/api/routes/off.py",
    "engine/api/routes_prune.py": "engine/api/routes/prune.py",
    "engine/api/routes_registry.py": "engine/api/routes/registry.py",
    "engine/api/routes_shipslog.py": "engine/api/routes/shipslog.py",
    "engine/api/routes_streams.py": "engine/api/routes/streams.py",
    "engine/api/routes_system.py": "engine/api/routes/system.py",
    "engine/api/routes_volumes.py": "engine/api/routes/volumes.py",
    # the CLI's side of the socket belongs to the CLI.
    "engine/api/client.py": "engine/cli/client.py",
    # a test helper (starts a registry process) is not part of the engine.
    "engine/registry/localreg.py": "engine/testing/localreg.py",
}

# Packages the moves create, with the rule of the folder as their docstring.
NEW_PACKAGES: dict[str, str] = {
    "engine/shell": "The imperative shell: services, supervisor, recovery, journal, networking and "
    "images.\n\nRule: carries out the core's plans through the driver Protocols and appends "
    "their outcomes;\nimports core, drivers, events and projections; never the API or the CLI.",
    "engine/admin": "Admin verbs on a state root, with the daemon up or down: check, reset, "
    "debug.\n\nRule: may use the shell and the drivers; only the daemon, the routes and the "
    "CLI import admin.",
    "engine/api/server": "The HTTP/1.1 server on trio + h11: routing, streams, hijack, "
    "admission, peer credentials.\n\nRule: knows HTTP, not containers; imports no route module.",
    "engine/api/docker": "The Docker translation layer: Docker's JSON shapes to and from ours.\n\n"
    "Rule: pure (I/O: none); imports core, events and projections only.",
    "engine/api/routes": "One module per group of API endpoints.\n\nRule: calls the shell, never "
    "a driver; translates with engine/api/docker.",
    "engine/drivers/runtime": "Runtime seam: runc + conmon, exec I/O, cgroups, stats, logs.\n\n"
    "Rule: kernel I/O; imports only core, events and other drivers.",
    "engine/drivers/snapshots": "Snapshots seam: overlayfs rootfs mounts and confined access "
    "to them.\n\nRule: kernel I/O; imports only core, events and other drivers.",
    "engine/drivers/layers": "Layers seam: the content store (blobs by digest) and the "
    "confined layer unpacker.\n\nRule: file I/O; imports only core, events and other drivers.",
    "engine/drivers/volumes": "Volumes seam: named/anonymous volumes, fd-safe binds, seeding "
    "from the image.\n\nRule: kernel I/O; imports only core, events and other drivers.",
    "engine/drivers/network": "Network seam: netlink (pyroute2), named netns, nftables, DNS, "
    "host firewall, /etc files.\n\nRule: kernel I/O; imports only core, events and other drivers.",
    "engine/drivers/secrets": "Secrets seam: the 0600 store of values that never enter the "
    "log.\n\nRule: file I/O; imports only core, events and other drivers.",
    "engine/drivers/host": "Host seam: mount helpers, host facts, disk usage, failpoints.\n\n"
    "Rule: kernel I/O; imports only core and events.",
}

TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".ini", ".yaml", ".yml", ".rst"}
TEXT_NAMES = {".ci/run"}
SKIP_PREFIXES = ("tests/data/", ".venv/", "out/", "tools/restructure.py")
DOTTED = re.compile(r"(?<![\w.])engine(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w/.-])engine(?:/[A-Za-z0-9_]+)+(?:\.py|\.json|/)?")


def module_of(path: str) -> str | None:
    if not path.endswith(".py"):
        return None
    mod = path[: -len(".py")].replace("/", ".")
    return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod


MODULES: dict[str, str] = {
    m: n for o, p in MOVES.items() if (m := module_of(o)) and (n := module_of(p))
}


def emptied(d: str) -> bool:
    """An old folder the moves left without a module or a subpackage (engine/network/, not
    engine/api/, which now holds server/, docker/ and routes/)."""
    folder = REPO / d
    return not any(p for p in folder.glob("*.py") if p.name != "__init__.py") and not any(
        (p / "__init__.py").exists() for p in folder.iterdir() if p.is_dir()) \
        if folder.is_dir() else True


def dissolved_packages() -> dict[str, str]:
    """Old packages whose every module moved: their dotted name → the folder most moved to."""
    out: dict[str, str] = {}
    dirs = {str(Path(o).parent) for o in MOVES if Path(o).parent != Path("engine")}
    for d in sorted(dirs):
        if not emptied(d):
            continue  # still holds a module or a package: not dissolved
        targets = [str(Path(n).parent) for o, n in MOVES.items() if str(Path(o).parent) == d]
        out[d.replace("/", ".")] = max(set(targets), key=targets.count).replace("/", ".")
    return out


def is_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def resolve(dotted: str, packages: dict[str, str], *, text: bool = False) -> str:
    """The new name of a dotted reference (a module, or a module + attribute path).

    `text`: a name in a string or comment. One that names a module or package of the new tree
    exactly is left as it is: `engine.drivers.runtime` was a module and is now the runtime
    seam's package, and only an import statement says which of the two it means."""
    if text and dotted in MODULES and is_module(dotted):
        return dotted
    if dotted in packages:
        return packages[dotted]
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        prefix = ".".join(parts[:i])
        if prefix not in MODULES:
            continue
        if i < len(parts) and is_module(f"{prefix}.{parts[i]}"):
            return dotted  # continues into a module of the new package: already new
        return ".".join([MODULES[prefix], *parts[i:]])
    return dotted


FROM_IMPORT = re.compile(r"\bfrom\s+(engine(?:\.\w+)*)\s+import\s+(\w+)(?!\s+as\b)")


def _from_import_text(m: re.Match[str], packages: dict[str, str]) -> str:
    """`from X import Y` written inside a string (a child process's code): as an import."""
    module, name = m.group(1), m.group(2)
    if f"{module}.{name}" in MODULES:
        new_mod, _, new_name = MODULES[f"{module}.{name}"].rpartition(".")
        return f"from {new_mod} import {new_name}" + (f" as {name}" if new_name != name else "")
    if is_module(f"{module}.{name}"):
        return m.group(0)
    return m.group(0).replace(module, resolve(module, packages), 1)


def rewrite_dotted_text(text: str, packages: dict[str, str]) -> str:
    out, last = [], 0
    for m in FROM_IMPORT.finditer(text):
        out += [DOTTED.sub(lambda d: resolve(d.group(0), packages, text=True),
                           text[last:m.start()]), _from_import_text(m, packages)]
        last = m.end()
    out.append(DOTTED.sub(lambda d: resolve(d.group(0), packages, text=True), text[last:]))
    return "".join(out)


_GONE_DIRS: dict[str, str] = {}


def find_gone_dirs() -> dict[str, str]:
    """Old folders the moves emptied (`engine/network/`) → the folder most of them went to."""
    out: dict[str, str] = {}
    for d in sorted({str(Path(o).parent) + "/" for o in MOVES}):
        if not emptied(d):
            continue
        targets = [str(Path(n).parent) + "/" for o, n in MOVES.items()
                   if str(Path(o).parent) + "/" == d]
        out[d] = max(set(targets), key=targets.count)
    return out


def rewrite_paths(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        s = m.group(0)
        if s in MOVES:
            return MOVES[s]
        return _GONE_DIRS.get(s, s)

    return PATH.sub(one, text)


class Edits:
    """Non-overlapping (start, end, text) replacements on one source string."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = [0]
        for line in source.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))
        self.items: list[tuple[int, int, str]] = []

    def offset(self, line: int, col: int) -> int:
        # ast columns are utf-8 byte offsets; tokenize columns are str offsets
        return self.starts[line - 1] + col

    def byte_offset(self, line: int, col: int) -> int:
        text = self.source[self.starts[line - 1]:self.starts[line] if line < len(self.starts)
                           else len(self.source)]
        return self.starts[line - 1] + len(text.encode()[:col].decode(errors="ignore"))

    def add(self, start: int, end: int, text: str) -> None:
        if self.source[start:end] != text:
            self.items.append((start, end, text))

    def apply(self) -> str:
        out, last = [], 0
        for start, end, text in sorted(self.items):
            if start < last:
                continue  # overlapping edit (an import's comment): the import edit came first
            out += [self.source[last:start], text]
            last = end
        return "".join(out) + self.source[last:]


def node_span(edits: Edits, node: ast.AST) -> tuple[int, int]:
    return (edits.byte_offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
            edits.byte_offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]


def dotted_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted_of(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def rewrite_import_from(edits: Edits, node: ast.ImportFrom, packages: dict[str, str]) -> None:
    if node.level or not node.module or not node.module.startswith("engine"):
        return
    targets: list[tuple[str, str, str]] = []  # (new module, new name, local name)
    for alias in node.names:
        local = alias.asname or alias.name
        sub = f"{node.module}.{alias.name}"
        if sub in MODULES:
            new_mod, _, new_name = MODULES[sub].rpartition(".")
        elif alias.name != "*" and is_module(sub):
            new_mod, new_name = node.module, alias.name
        else:
            new_mod, new_name = resolve(node.module, packages), alias.name
        targets.append((new_mod, new_name, local))
    start, end = node_span(edits, node)
    if len({t[0] for t in targets}) == 1:
        new_mod = targets[0][0]
        head = re.match(r"from\s+([\w.]+)", edits.source[start:end])
        assert head, edits.source[start:end]
        edits.add(start + head.start(1), start + head.end(1), new_mod)
        for alias, (_, new_name, local) in zip(node.names, targets, strict=True):
            if new_name == alias.name:
                continue
            a_start, a_end = node_span(edits, alias)
            text = new_name if new_name == local else f"{new_name} as {local}"
            edits.add(a_start, a_end, text)
        return
    # the names now live in different modules: one statement per module, same indentation
    indent = " " * node.col_offset
    groups: dict[str, list[str]] = {}
    for new_mod, new_name, local in targets:
        groups.setdefault(new_mod, []).append(
            new_name if new_name == local else f"{new_name} as {local}")
    lines = [f"from {m} import {', '.join(names)}" for m, names in groups.items()]
    edits.add(start, end, f"\n{indent}".join(lines))


def rewrite_python(source: str, packages: dict[str, str]) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return rewrite_paths(source)
    edits = Edits(source)
    imported: dict[str, str] = {}  # `import a.b` (no alias): a.b → its new name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                new = resolve(alias.name, packages)
                if new == alias.name:
                    continue
                a_start, _ = node_span(edits, alias)
                edits.add(a_start, a_start + len(alias.name), new)
                if alias.asname is None:
                    imported[alias.name] = new
        elif isinstance(node, ast.ImportFrom):
            rewrite_import_from(edits, node, packages)
    if imported:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and dotted_of(node) in imported:
                edits.add(*node_span(edits, node), imported[dotted_of(node) or ""])
    # strings and comments: dotted module names and repository paths
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        text = rewrite_paths(tok.string)
        is_fstring = tok.type == tokenize.STRING and "f" in tok.string.split("'")[0].split(
            '"')[0].lower()
        if not is_fstring:
            text = rewrite_dotted_text(text, packages)
        start = edits.offset(*tok.start)
        end = edits.offset(*tok.end)
        edits.add(start, end, text)
    return edits.apply()


LINE = 100  # pyproject's ruff line-length

# Code that finds files relative to a moved module: (file, old text, new text). Applied only
# where the old text is still there, so a second run changes nothing.
FIXUPS: list[tuple[str, str, str]] = [
    ("tests/unit/test_failpoints.py", "ENGINE = Path(failpoints.__file__).parent\n",
     "ENGINE = Path(failpoints.__file__).parents[2]  # engine/drivers/host/ -> engine/\n"),
]


def apply_fixups(dry: bool) -> None:
    for f, old, new in FIXUPS:
        path = REPO / f
        if path.exists() and old in (text := path.read_text()):
            print(f"fixup {f}")
            if not dry:
                path.write_text(text.replace(old, new))


def wrap_line(line: str, comment: bool) -> str:
    """Split a comment or docstring line the rewrite made too long, at its last fitting space."""
    if len(line) <= LINE:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    lead = indent + ("# " if comment else "")
    cut = line.rfind(" ", len(lead) + 1, LINE + 1)
    if cut <= len(lead):
        return line
    return line[:cut] + "\n" + wrap_line(lead + line[cut + 1:], comment)


def wrap_long_lines(old: str, new: str) -> str:
    """Re-wrap the comment and docstring lines that grew past LINE because a path grew."""
    before = set(old.splitlines())
    long_lines = {i for i, line in enumerate(new.splitlines(), 1)
                  if len(line) > LINE and line not in before}
    if not long_lines:
        return new
    lines = new.splitlines(keepends=True)
    kinds: dict[int, bool] = {}
    for tok in tokenize.generate_tokens(io.StringIO(new).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in long_lines \
                and lines[tok.start[0] - 1].lstrip().startswith("#"):
            kinds[tok.start[0]] = True
        elif tok.type == tokenize.STRING and tok.string[-3:] in ('"""', "'''"):
            for n in range(tok.start[0] + 1, tok.end[0]):
                if n in long_lines:
                    kinds[n] = False
            if tok.start[0] in long_lines and tok.start[0] != tok.end[0] \
                    and lines[tok.start[0] - 1].lstrip().startswith(('"""', "'''")):
                kinds[tok.start[0]] = False
    for n, comment in kinds.items():
        body = lines[n - 1].rstrip("\n")
        lines[n - 1] = wrap_line(body, comment) + "\n"
    return "".join(lines)


def sort_imports(files: list[str]) -> None:
    """ruff's isort on the rewritten files: a renamed module changes its import's sort place."""
    ruff = REPO / ".venv" / "bin" / "ruff"
    cmd = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    subprocess.run([*cmd, "check", "-q", "--select", "I001", "--fix", *files], cwd=REPO,
                   check=False)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return sorted({f for f in out if f and (REPO / f).is_file()
                   and not f.startswith(SKIP_PREFIXES)
                   and (Path(f).suffix in TEXT_SUFFIXES or f in TEXT_NAMES)})


def git(*args: str, dry: bool) -> None:
    print("git", *args)
    if not dry:
        subprocess.run(["git", *args], cwd=REPO, check=True)


def move(dry: bool) -> None:
    for old, new in MOVES.items():
        if not (REPO / old).exists():
            if not (REPO / new).exists():
                print(f"warning: {old} is gone and {new} does not exist", file=sys.stderr)
            continue
        if (REPO / new).exists():
            sys.exit(f"error: both {old} and {new} exist; resolve by hand")
        if not dry:
            (REPO / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", old, new, dry=dry)
    for package, doc in NEW_PACKAGES.items():
        init = REPO / package / "__init__.py"
        if not init.exists():
            print(f"create {package}/__init__.py")
            if not dry:
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(f'"""{doc}\n"""\n')
                git("add", str(init.relative_to(REPO)), dry=dry)
    for d in sorted({str(Path(o).parent) for o in MOVES}):
        init = REPO / d / "__init__.py"
        left = [p.name for p in (REPO / d).glob("*.py") if p.name != "__init__.py"]
        if d in ("engine", "engine/drivers", "engine/api", "engine/registry"):
            continue
        if left:
            print(f"note: {d}/ keeps modules the table does not move: {left}", file=sys.stderr)
        elif init.exists():
            git("rm", "-q", str(init.relative_to(REPO)), dry=dry)


def rewrite(dry: bool) -> int:
    packages = dissolved_packages()
    _GONE_DIRS.update(find_gone_dirs())
    changed = 0
    python_changed: list[str] = []
    for f in tracked_files():
        path = REPO / f
        source = path.read_text()
        new = rewrite_python(source, packages) if f.endswith(".py") else rewrite_paths(
            rewrite_dotted_text(source, packages))
        if f.endswith(".py") and new != source:
            new = wrap_long_lines(source, new)
        if new != source:
            changed += 1
            print(f"rewrite {f}")
            if not dry:
                path.write_text(new)
                if f.endswith(".py"):
                    python_changed.append(f)
    if python_changed:
        sort_imports(python_changed)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would change")
    args = parser.parse_args()
    move(args.dry_run)
    n = rewrite(args.dry_run)
    apply_fixups(args.dry_run)
    print(f"{n} files rewritten")


if __name__ == "__main__":
    main()
