"""A small interpreter for Go's text/template, the language of Docker's `--format` flag.

I/O: none.

Supported: literal text; `{{.A.B}}` field chains (on dicts, attributes, and zero-argument
callables); `$` and `$var` references; string, raw-string, number, `true`/`false`/`nil` literals;
pipelines with `|`; parenthesised pipelines; `{{if}}`/`{{else if}}`/`{{else}}`/`{{end}}`,
`{{range}}` (with `$i, $v :=` declarations and `{{else}}`), `{{with}}`; comments; whitespace trim
markers `{{-` and `-}}`. Functions: Go's builtins (and, or, not, len, index, print, printf,
println, eq, ne, lt, le, gt, ge, slice) and Docker's extras (json, join, split, title, lower,
upper, pad, truncate). Values print the way Go's `%v` prints decoded JSON: `map[k:v]`, `[a b]`,
`true`, `<no value>` for a missing key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class TemplateError(ValueError):
    """The template cannot be parsed or cannot be executed against the value."""


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()

# --------------------------------------------------------------------------- lexing

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<decl>:=)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|(),])
    )""",
    re.X,
)


def _tokenize(src: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:].strip()!r} in action")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


# --------------------------------------------------------------------------- nodes


# Plain classes, not dataclasses: `dataclasses` imports `inspect` (~10 ms), and `shipslog ps`
# renders its default table through this module (issue 17).
class _Pipe:
    __slots__ = ("commands", "decl")

    def __init__(self, commands: list[list[tuple[str, Any]]],
                 decl: list[str] | None = None) -> None:
        self.commands = commands
        self.decl: list[str] = decl if decl is not None else []


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Action:
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Block:
    __slots__ = ("kind", "pipe", "body", "orelse")

    def __init__(self, kind: str, pipe: _Pipe) -> None:
        self.kind = kind  # "if" | "range" | "with"
        self.pipe = pipe
        self.body: list[Any] = []
        self.orelse: list[Any] = []


def _parse_pipe(tokens: list[tuple[str, str]]) -> _Pipe:
    decl: list[str] = []
    if any(kind == "decl" for kind, _ in tokens):
        idx = next(i for i, (kind, _) in enumerate(tokens) if kind == "decl")
        decl = [val for kind, val in tokens[:idx] if kind == "var"]
        tokens = tokens[idx + 1 :]
    pipe, rest = _parse_commands(tokens, 0)
    if rest != len(tokens):
        raise TemplateError("unexpected ')' in action")
    if not pipe:
        raise TemplateError("missing value for command")
    return _Pipe(pipe, decl)


def _parse_commands(tokens: list[tuple[str, str]], pos: int) -> tuple[list[list[Any]], int]:
    commands: list[list[Any]] = [[]]
    while pos < len(tokens):
        kind, val = tokens[pos]
        if kind == "punct" and val == ")":
            break
        pos += 1
        if kind == "punct" and val == "|":
            commands.append([])
        elif kind == "punct" and val == "(":
            inner, pos = _parse_commands(tokens, pos)
            if pos >= len(tokens) or tokens[pos][1] != ")":
                raise TemplateError("unclosed left paren")
            pos += 1
            # `(pipeline).Field` chains a field onto the result
            chain = ""
            if pos < len(tokens) and tokens[pos][0] == "field" and tokens[pos][1] != ".":
                chain = tokens[pos][1]
                pos += 1
            commands[-1].append(("pipe", (_Pipe(inner), chain)))
        elif kind == "punct" and val == ",":
            raise TemplateError("unexpected ',' in action")
        else:
            commands[-1].append((kind, _literal(kind, val)))
    if any(not cmd for cmd in commands):
        raise TemplateError("missing command in pipeline")
    return commands, pos


def _literal(kind: str, val: str) -> Any:
    if kind == "str":
        return json.loads(val)
    if kind == "raw":
        return val[1:-1]
    if kind == "num":
        return float(val) if any(c in val for c in ".eE") else int(val)
    return val


def parse(src: str) -> list[Any]:
    """Parse a template into a node list; raises TemplateError with Go-like messages."""
    root: list[Any] = []
    stack: list[tuple[_Block, list[Any]]] = []
    out = root
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        if pending_trim:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            out.append(_Text(text))
        pos = m.end()
        pending_trim = bool(m.group(3))
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        word, _, rest = body.partition(" ")
        if word in ("if", "range", "with"):
            block = _Block(word, _parse_pipe(_tokenize(rest)))
            out.append(block)
            stack.append((block, out))
            out = block.body
        elif word == "else":
            if not stack:
                raise TemplateError("unexpected {{else}}")
            block, parent = stack[-1]
            if rest.strip().startswith("if "):
                nested = _Block("if", _parse_pipe(_tokenize(rest.strip()[3:])))
                block.orelse = [nested]
                # the nested if shares the outer block's {{end}}
                stack[-1] = (nested, parent)
                out = nested.body
            else:
                out = block.orelse
        elif word == "end":
            if not stack:
                raise TemplateError("unexpected {{end}}")
            _, out = stack.pop()
        elif body == "":
            raise TemplateError("missing value for command")
        else:
            out.append(_Action(_parse_pipe(_tokenize(body))))
    tail = src[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    if pending_trim:
        tail = tail.lstrip()
    if tail:
        out.append(_Text(tail))
    if stack:
        raise TemplateError(f"unexpected EOF: unclosed {{{{{stack[-1][0].kind}}}}}")
    return root


# --------------------------------------------------------------------------- printing


def go_str(value: Any) -> str:
    """Render a value the way Go's fmt %v renders decoded JSON."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = " ".join(f"{go_str(k)}:{go_str(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, Sequence):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, Mapping, Sequence)):
        return bool(value)
    return True


# --------------------------------------------------------------------------- functions


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key, MISSING)
        elif isinstance(item, Sequence) and isinstance(key, int):
            if not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None or item is MISSING:
            return MISSING
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(item)}")
    return item


_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})


def go_json(value: Any, *, sort_keys: bool = False) -> str:
    """Go's json.Marshal: compact, UTF-8, and HTML-safe (`<` → `\\u003c`, as Docker prints)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    return text.translate(_GO_JSON_ESCAPES)


def _json(value: Any) -> str:
    if value is MISSING:
        value = None
    return go_json(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, (NilList, NilMap)):
        return None
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _go_sprintf(fmt: str, *args: Any) -> str:
    converted = [a if isinstance(a, (int, float)) and not isinstance(a, bool) else go_str(a)
                 for a in args]
    try:
        return re.sub(r"%v", "%s", fmt) % tuple(converted)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"error calling printf: {exc}") from None


def _println(*args: Any) -> str:
    return " ".join(go_str(a) for a in args) + "\n"


def _print(*args: Any) -> str:
    return "".join(go_str(a) for a in args)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *bs: Any) -> bool:
        return any(op(a, b) for b in bs) if op is _eq else all(op(a, b) for b in bs)

    return compare


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


def _truncate(value: Any, n: int) -> str:
    text = go_str(value)
    return text[:n]


def _pad(value: Any, left: int, right: int) -> str:
    return " " * left + go_str(value) + " " * right


def _slice(value: Any, *idx: int) -> Any:
    return value[slice(*idx)] if idx else value


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "len": lambda v: len(v),
    "join": lambda items, sep: sep.join(go_str(i) for i in (items or [])),
    "split": lambda s, sep: go_str(s).split(sep),
    "title": lambda s: go_str(s).title(),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "pad": _pad,
    "truncate": _truncate,
    "print": _print,
    "printf": _go_sprintf,
    "println": _println,
    "not": lambda v: not _truthy(v),
    "eq": _cmp(_eq),
    "ne": _cmp(lambda a, b: a != b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "slice": _slice,
}


# --------------------------------------------------------------------------- execution


class NilList(list[Any]):
    """A JSON null where Docker's Go type is a slice: prints `[]`, marshals to null."""


class NilMap(dict[str, Any]):
    """A JSON null where Docker's Go type is a map: prints `map[]`, marshals to null."""


# Docker's inspect types are Go structs, so a null slice or map prints as `[]` / `map[]`, not
# `<nil>`. These are the field names (API v1.43) whose type is a slice or a map.
_SLICE_FIELDS = frozenset(
    "Binds Cmd Entrypoint Env Shell OnBuild Mounts CapAdd CapDrop Dns DnsOptions DnsSearch "
    "ExtraHosts GroupAdd Links SecurityOpt VolumesFrom Devices DeviceCgroupRules DeviceRequests "
    "Ulimits MaskedPaths ReadonlyPaths BlkioWeightDevice BlkioDeviceReadBps BlkioDeviceWriteBps "
    "BlkioDeviceReadIOps BlkioDeviceWriteIOps Aliases DNSNames RepoTags RepoDigests Layers Test "
    "Warnings Args".split())
_MAP_FIELDS = frozenset(
    "Labels Volumes ExposedPorts PortBindings Ports Tmpfs Sysctls StorageOpt Networks Options "
    "DriverOpts Annotations".split())
_SLICE_VALUED_MAPS = frozenset(("Ports", "PortBindings"))  # nat.PortMap: port → []PortBinding


def _typed(name: str, value: Any) -> Any:
    if value is None:
        if name in _SLICE_FIELDS:
            return NilList()
        if name in _MAP_FIELDS:
            return NilMap()
    elif name in _SLICE_VALUED_MAPS and isinstance(value, Mapping):
        return {k: NilList() if v is None else v for k, v in value.items()}
    return value


def _field(value: Any, path: str) -> Any:
    for name in [p for p in path.split(".") if p]:
        if isinstance(value, Mapping):
            value = _typed(name, value.get(name, MISSING))
        elif value is None or value is MISSING:
            raise TemplateError(f"nil pointer evaluating .{name}")
        elif hasattr(value, name):
            value = getattr(value, name)
        else:
            raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
        if callable(value) and not isinstance(value, type):
            value = _Bound(value)
    return value


class _Bound:
    """A method found by a field lookup: called with arguments, or with none when printed."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def call(self, *args: Any) -> Any:
        return self.fn(*args)


def _resolve(value: Any) -> Any:
    return value.call() if isinstance(value, _Bound) else value


class _Scope:
    def __init__(self, dot: Any, variables: dict[str, Any]) -> None:
        self.dot = dot
        self.vars = variables


def _operand(scope: _Scope, kind: str, val: Any) -> Any:
    if kind == "field":
        return scope.dot if val == "." else _field(scope.dot, val)
    if kind == "var":
        name, _, path = val.partition(".")
        if name not in scope.vars:
            raise TemplateError(f"undefined variable: {name}")
        return _field(scope.vars[name], path) if path else scope.vars[name]
    if kind == "ident":
        if val in ("true", "false"):
            return val == "true"
        if val == "nil":
            return None
        if val not in FUNCS:
            raise TemplateError(f'function "{val}" not defined')
        return FUNCS[val]
    if kind == "pipe":
        pipe, chain = val
        result = _run_pipe(scope, pipe)
        return _field(result, chain) if chain else result
    return val


def _run_command(scope: _Scope, command: list[tuple[str, Any]], piped: Any) -> Any:
    kind, val = command[0]
    args = [_resolve(_operand(scope, k, v)) for k, v in command[1:]]
    if piped is not MISSING:
        args.append(piped)
    if kind == "ident" and val in FUNCS:
        try:
            return FUNCS[val](*args)
        except TemplateError:
            raise
        # a Go template reports the failing call and carries on no further
        except Exception as exc:  # noqa: BLE001
            raise TemplateError(f"error calling {val}: {exc}") from None
    head = _operand(scope, kind, val)
    if isinstance(head, _Bound):
        return head.call(*args)
    if args:
        raise TemplateError(f"can't give argument to non-function {val}")
    return head


def _andor(name: str, args: list[Any]) -> Any:
    for arg in args:
        if _truthy(arg) != (name == "and"):
            return arg
    return args[-1] if args else None


FUNCS["and"] = lambda *a: _andor("and", list(a))
FUNCS["or"] = lambda *a: _andor("or", list(a))


def _run_pipe(scope: _Scope, pipe: _Pipe) -> Any:
    value: Any = MISSING
    for command in pipe.commands:
        value = _resolve(_run_command(scope, command, value))
    return value


def _execute(nodes: list[Any], scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Action):
            value = _run_pipe(scope, node.pipe)
            if node.pipe.decl:
                scope.vars[node.pipe.decl[0]] = value
            else:
                out.append(go_str(value))
        elif node.kind == "if":
            branch = node.body if _truthy(_run_pipe(scope, node.pipe)) else node.orelse
            _execute(branch, scope, out)
        elif node.kind == "with":
            value = _run_pipe(scope, node.pipe)
            if _truthy(value):
                _execute(node.body, _Scope(value, dict(scope.vars)), out)
            else:
                _execute(node.orelse, scope, out)
        else:
            _execute_range(node, scope, out)


def _execute_range(node: _Block, scope: _Scope, out: list[str]) -> None:
    value = _run_pipe(scope, node.pipe)
    if isinstance(value, Mapping):
        items: list[tuple[Any, Any]] = sorted(value.items())
    elif value is None or value is MISSING:
        items = []
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))
    elif isinstance(value, int):
        items = [(i, i) for i in range(value)]
    else:
        raise TemplateError(f"range can't iterate over {go_str(value)}")
    if not items:
        _execute(node.orelse, scope, out)
        return
    for key, item in items:
        variables = dict(scope.vars)
        if len(node.pipe.decl) == 1:
            variables[node.pipe.decl[0]] = item
        elif len(node.pipe.decl) == 2:
            variables[node.pipe.decl[0]] = key
            variables[node.pipe.decl[1]] = item
        _execute(node.body, _Scope(item, variables), out)


class Template:
    """A parsed template; `render(value)` executes it with `.` and `$` bound to value."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.nodes = parse(src)

    def render(self, value: Any) -> str:
        out: list[str] = []
        _execute(self.nodes, _Scope(value, {"$": value}), out)
        return "".join(out)


def render(src: str, value: Any) -> str:
    """Parse and execute in one call."""
    return Template(src).render(value)
