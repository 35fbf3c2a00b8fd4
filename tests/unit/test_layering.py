"""The import graph keeps the layering the README's "How it is built" draws (issue 16).

- events/ imports nothing above it; projections/ only events/; engine/core/ only core, events
  and projections;
- only engine/drivers/ (and the test helpers in engine/testing/) import the kernel's tools:
  pyroute2, ctypes, subprocess and the mount helpers;
- the route modules call the shell, never a driver;
- the CLI never imports the server (engine/api/server/, engine/api/routes/, engine/daemon/;
  the pure Docker translation layer, engine/api/docker/, is shared), nor the server the CLI;
- the shell, drivers, registry and admin verbs never import the daemon or the API;
- no module imports itself back through a circle.

I/O: reads the source files of the repository.
The debts still open are listed in KNOWN, each with what clears it; a new wrong-way import
fails here with the importing module and the imported one, and so does a listed debt that
has been paid (remove it from KNOWN).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "events", "projections")
KERNEL_TOOLS = {"pyroute2", "ctypes", "subprocess", "engine.drivers.host.mountsys"}

# (rule, importer, imported): wrong-way imports that the restructure moved but did not yet fix.
KNOWN: set[tuple[str, str, str]] = {
    # The CLI's `compose` verb runs the Compose binary, a client program of the user's (as
    # `docker compose` runs its plugin), not kernel work: moving the spawn into drivers/
    # would make the CLI import a driver, which is no better. It stays, named here.
    # (Paid: routes reach files, logs, disk usage, users and host facts through
    # engine/shell/files.py; the CLI's --root readers share the log's read model,
    # engine/shell/logread.py, and compaction's and check's JSON through the shell and the
    # admin verbs; local mode answers through the read model, engine/shell/readmodel.py, and
    # Docker's shapes in engine/api/docker/reads.py, as the routes do.)
    ('only drivers use kernel tools',
     'engine.cli.compose_binary', 'subprocess'),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every module a file imports at run time (typing-only imports excluded), resolved to the
    longest known module name, or the top-level name of a third-party/stdlib module."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            yield resolve(name, known)


def resolve(name: str, known: dict[str, Path]) -> str:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return name if name in KERNEL_TOOLS else parts[0]


def graph() -> dict[str, set[str]]:
    known = modules()
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        out[name] = {m for m in imports_of(path, known) if m != name}
    return out


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def rule_breaks(g: dict[str, set[str]]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for importer, imported in g.items():
        for dep in imported:
            local = under(dep, *PACKAGES)
            if under(importer, "events") and local and not under(dep, "events"):
                out.add(("events imports only events", importer, dep))
            if under(importer, "projections") and local and not under(
                    dep, "events", "projections"):
                out.add(("projections imports only events", importer, dep))
            if under(importer, "engine.core") and local and not under(
                    dep, "engine.core", "events", "projections"):
                out.add(("core imports only core, events, projections", importer, dep))
            if dep in KERNEL_TOOLS and not under(importer, "engine.drivers", "engine.testing"):
                out.add(("only drivers use kernel tools", importer, dep))
            if under(importer, "engine.api.routes") and under(dep, "engine.drivers"):
                out.add(("routes call the shell, never drivers", importer, dep))
            if under(importer, "engine.cli") and under(
                    dep, "engine.api.server", "engine.api.routes", "engine.daemon"):
                out.add(("the CLI never imports the server", importer, dep))
            if under(importer, "engine.daemon", "engine.api") and under(dep, "engine.cli"):
                out.add(("the server never imports the CLI", importer, dep))
            if under(importer, "engine.shell", "engine.drivers", "engine.admin",
                     "engine.registry") and under(dep, "engine.daemon", "engine.api"):
                out.add(("below the server nothing imports it", importer, dep))
    return out


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root] & g.keys())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(g[child] & g.keys()))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_runs_the_wrong_way() -> None:
    breaks = rule_breaks(graph())
    new = sorted(breaks - KNOWN)
    assert not new, "wrong-way imports:\n" + "\n".join(f"  {r}: {a} -> {b}" for r, a, b in new)
    paid = sorted(KNOWN - breaks)
    assert not paid, "paid debts still listed in KNOWN:\n" + "\n".join(map(str, paid))


# None left: the log readers' shared arguments moved to engine/cli/logargs.py.
KNOWN_CIRCLES: list[list[str]] = []


def test_no_circles() -> None:
    assert circles(graph()) == KNOWN_CIRCLES


def test_the_rules_catch_a_wrong_import() -> None:
    """The checker itself: a core module importing a driver, and a circle, are both found."""
    g = {"engine.core.x": {"engine.drivers.runtime.linux"}, "engine.drivers.runtime.linux": set(),
         "a": {"b"}, "b": {"a"}}
    assert ("core imports only core, events, projections", "engine.core.x",
            "engine.drivers.runtime.linux") in rule_breaks(g)
    assert circles(g) == [["a", "b"]]


# Reaches an import test cannot see: a route that takes a driver out of an object's insides
# (`runtime.rt`, the runc class under the seam; `supervisor.d`, the supervisor's drivers)
# instead of calling the seam the daemon context holds.
PAST_THE_SEAM = {"rt", "d"}
KNOWN_REACHES: set[tuple[str, str]] = set()


def reaches(path: Path) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in PAST_THE_SEAM}


def test_routes_reach_the_runtime_through_its_seam() -> None:
    found = {(name, attr) for name, path in modules().items()
             if under(name, "engine.api.routes") for attr in reaches(path)}
    assert found - KNOWN_REACHES == set(), "routes reaching past a seam: " + ", ".join(
        f"{name} .{attr}" for name, attr in sorted(found - KNOWN_REACHES))
    assert KNOWN_REACHES <= found, "paid reaches still listed in KNOWN_REACHES"
