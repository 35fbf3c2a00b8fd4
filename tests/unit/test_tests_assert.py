"""Every test can fail (issue 16): an AST scan of the test tree finds test functions that
assert nothing, such as a benchmark that only printed timings or a control that only printed
a count.

I/O: reads the files under tests/.

A test asserts when its body, or a function of the same module (or of tests/ and
engine/testing/) it calls, holds an `assert`, a `pytest.raises`/`warns`/`fail`, or a call of a
checker whose name says so (`assert_*`, `check*`, `expect*`, `verify*`): the oracle and the
leak fixture are such checkers.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKER_PREFIXES = ("assert", "check", "expect", "verify", "_assert", "_check", "_expect")
PYTEST_CHECKS = {"raises", "warns", "fail", "deprecated_call", "approx"}


def _called_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _asserts_directly(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Raise):
            return True  # a test that raises AssertionError/pytest.fail.Exception itself
        if isinstance(node, ast.Call):
            name = _called_name(node) or ""
            if name in PYTEST_CHECKS or name.startswith(CHECKER_PREFIXES):
                return True
    return False


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _calls(fn: ast.AST, *, methods: bool) -> set[str]:
    """Names a function calls: plain names, and with `methods` attribute calls too."""
    out = set()
    for c in ast.walk(fn):
        if isinstance(c, ast.Call):
            if isinstance(c.func, ast.Name) or (methods and isinstance(c.func, ast.Attribute)):
                out.add(_called_name(c) or "")
    return out


def _refs(fn: ast.AST) -> set[str]:
    """Plain names a function uses (calls, or passes on: `trio.run(_race, …)`), without its
    parameters and local variables (a fixture named `env` is not a helper called `env`)."""
    own = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(
        n.ctx, ast.Store)}
    own |= {a.arg for n in ast.walk(fn) if isinstance(n, ast.arguments)
            for a in (*n.posonlyargs, *n.args, *n.kwonlyargs)}
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - own


def _closure(calls: dict[str, set[str]], asserting: set[str]) -> set[str]:
    known = set(asserting)
    changed = True
    while changed:  # a helper that calls an asserting helper asserts too
        changed = False
        for name, called in calls.items():
            if name not in known and called & known:
                known.add(name)
                changed = True
    return known


def _shared_asserting() -> set[str]:
    """Plain functions anywhere in tests/ and engine/testing/ (the oracle, leak checks) that
    assert; a name clash only makes the scan more lenient, never stricter."""
    calls: dict[str, set[str]] = {}
    asserting: set[str] = set()
    for base in (REPO / "tests", REPO / "engine" / "testing"):
        for path in base.rglob("*.py"):
            for fn in _functions(ast.parse(path.read_text())):
                calls.setdefault(fn.name, set()).update(_refs(fn))
                if _asserts_directly(fn):
                    asserting.add(fn.name)
    return _closure(calls, asserting)


# Tests whose property is that nothing escapes: the call itself is the assertion.
NOTHING_RAISES = {"property/test_fs_plan.py::test_parsers_never_raise"}


def assertionless_tests(root: Path) -> list[str]:
    shared = _shared_asserting()
    found = []
    for path in sorted(root.rglob("test_*.py")):
        fns = _functions(ast.parse(path.read_text()))
        # this module's own helpers and methods (fixture classes such as `env.run`)
        local = _closure({f.name: _refs(f) for f in fns},
                         {f.name for f in fns if _asserts_directly(f)} | shared)
        for fn in fns:
            if not fn.name.startswith("test_"):
                continue
            name = f"{path.relative_to(root)}::{fn.name}"
            if _asserts_directly(fn) or _refs(fn) & local or name in NOTHING_RAISES:
                continue
            found.append(name)
    return found


def test_every_test_asserts_something() -> None:
    found = assertionless_tests(REPO / "tests")
    assert not found, "tests that assert nothing (move benchmarks to tools/bench/):\n" + \
        "\n".join(found)


def test_the_scan_finds_a_test_that_only_prints(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "def test_prints():\n    print('took 3 ms')\n\n"
        "def test_asserts():\n    assert 1 + 1 == 2\n")
    found = assertionless_tests(tmp_path)
    assert [f.rsplit("::", 1)[1] for f in found] == ["test_prints"]
