"""The functional core stays pure (STYLE.md): the modules that decide, fold and plan import no
I/O — no os, subprocess, socket, sqlite3, pyroute2, trio, ctypes — and neither do the modules
they import from this repository. A new import of that kind fails here, with the chain."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BANNED = {"os", "subprocess", "socket", "sqlite3", "pyroute2", "trio", "ctypes", "fcntl",
          "shutil", "threading"}
PURE = [
    "events/vocabulary.py", "events/values.py", "events/envelope.py", "events/codec.py",
    "events/hashing.py", "events/redact.py",
    "projections/*.py",
    "engine/core/*.py",
    "engine/core/errors.py",
    "engine/api/server/admission.py",
    "engine/core/volume_plan.py",
    "engine/core/*.py",
    "engine/core/oci_spec.py",
    "engine/core/image_reference.py",
    "engine/api/docker/translate.py",
]


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _local(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in ("engine", "events", "projections"):
        return None
    module = REPO.joinpath(*parts).with_suffix(".py")
    if module.exists():
        return module
    package = REPO.joinpath(*parts, "__init__.py")
    return package if package.exists() else None


def _offences(start: Path) -> list[str]:
    seen: set[Path] = set()
    out: list[str] = []
    stack = [(start, [start.relative_to(REPO).as_posix()])]
    while stack:
        module, chain = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(module):
            if name.split(".")[0] in BANNED:
                out.append(" -> ".join(chain) + f" imports {name}")
            local = _local(name)
            if local is not None:
                stack.append((local, chain + [local.relative_to(REPO).as_posix()]))
    return out


def test_the_core_imports_no_io() -> None:
    modules = sorted({p for pattern in PURE for p in REPO.glob(pattern)})
    assert len(modules) > 20
    offences = [o for m in modules for o in _offences(m)]
    assert offences == []
