"""The Dockerfile builder's pure core: instruction semantics, variable expansion, image-config
changes, history entries and cache keys.

I/O: none. The Dockerfile arrives already parsed (engine/shell/build/parse.py wraps the official
BuildKit parser); the shell (engine/shell/build/builder.py) executes what this module plans. The
image config is handled as the raw OCI `config` mapping so that what Docker keeps there
(OnBuild, Shell, Healthcheck, Volumes…) survives a build unchanged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.core.errors import InvalidArgument

# moby builder/dockerfile/builder.go BuiltinAllowedBuildArgs: usable without an ARG line and
# never reported as unused.
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KNOWN = frozenset({
    "from", "run", "cmd", "entrypoint", "env", "arg", "label", "expose", "copy", "add",
    "workdir", "user", "volume", "healthcheck", "stopsignal", "onbuild", "shell", "maintainer",
})
LAYER_STEPS = frozenset({"run", "copy", "add"})


@dataclass(frozen=True)
class Instruction:
    """One parsed Dockerfile instruction (the parser's `Command`, as plain data)."""

    cmd: str  # lower case: "run", "copy", …
    value: tuple[str, ...]
    original: str
    line: int
    json: bool = False
    flags: tuple[str, ...] = ()

    def flag(self, name: str) -> str | None:
        for f in self.flags:
            if f == f"--{name}":
                return ""
            if f.startswith(f"--{name}="):
                return f.split("=", 1)[1]
        return None


@dataclass(frozen=True)
class Stage:
    index: int
    base: str  # image reference, "scratch", or the name/index of an earlier stage
    name: str  # "AS name", lower case; "" if none
    steps: tuple[Instruction, ...]
    line: int
    platform: str = ""  # `FROM --platform=…`, unexpanded


@dataclass(frozen=True)
class Plan:
    meta_args: tuple[Instruction, ...]  # ARGs before the first FROM
    stages: tuple[Stage, ...]

    @property
    def total_steps(self) -> int:
        """Docker's "Step N/M" count: every instruction, FROMs and meta ARGs included."""
        return len(self.meta_args) + sum(1 + len(s.steps) for s in self.stages)


class BuildError(InvalidArgument):
    """A Dockerfile or build request the builder refuses (a 400 on the API)."""


def plan_stages(instructions: Sequence[Instruction]) -> Plan:
    """Split the instructions into stages at each FROM; refuse unknown instructions."""
    meta: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    head: Instruction | None = None
    for ins in instructions:
        if ins.cmd not in KNOWN:
            raise BuildError(f"dockerfile parse error line {ins.line}: unknown instruction: "
                             f"{ins.original.split()[0].upper()}",
                             hint="see https://docs.docker.com/reference/dockerfile/")
        _check_arguments(ins)
        if ins.cmd == "from":
            if head is not None:
                stages.append(_stage(len(stages), head, current))
            head, current = ins, []
        elif head is None:
            if ins.cmd != "arg":
                raise BuildError(f"dockerfile parse error line {ins.line}: no build stage in "
                                 "current context", hint="a Dockerfile starts with FROM")
            meta.append(ins)
        else:
            current.append(ins)
    if head is None:
        raise BuildError("the Dockerfile has no FROM instruction",
                         hint="a Dockerfile starts with FROM IMAGE")
    stages.append(_stage(len(stages), head, current))
    return Plan(tuple(meta), tuple(stages))


_AT_LEAST_ONE = frozenset({"run", "cmd", "entrypoint", "env", "label", "expose", "volume",
                           "arg", "shell", "onbuild", "maintainer", "healthcheck"})
_EXACTLY_ONE = frozenset({"workdir", "user", "stopsignal"})


def _check_arguments(ins: Instruction) -> None:
    """moby's instruction parser checks (instructions/parse.go), before any step runs."""
    name = ins.cmd.upper()
    words = [w for w in ins.value if w != ""]
    if ins.cmd in _AT_LEAST_ONE and not words:
        message = f"{name} requires at least one argument"
    elif ins.cmd in ("copy", "add") and len(words) < 2:
        message = f"{name} requires at least two arguments"
    elif ins.cmd in _EXACTLY_ONE and len(words) != 1:
        message = f"{name} requires exactly one argument"
    elif ins.cmd == "healthcheck":
        for flag in ("interval", "timeout", "start-period", "start-interval"):
            raw = ins.flag(flag)
            if raw:
                parse_duration_ns(raw, ins)
        return
    else:
        return
    raise BuildError(f"dockerfile parse error line {ins.line}: {message}",
                     hint="see https://docs.docker.com/reference/dockerfile/")


def _stage(index: int, head: Instruction, steps: list[Instruction]) -> Stage:
    words = list(head.value)
    name = ""
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
    elif len(words) != 1:
        raise BuildError(f"dockerfile parse error line {head.line}: FROM requires either one or "
                         "three arguments")
    return Stage(index, words[0], name, tuple(steps), head.line, head.flag("platform") or "")


def select_stages(plan: Plan, target: str) -> tuple[Stage, ...]:
    """The stages up to `target` (all when empty); an unknown target is the user's error."""
    if not target:
        return plan.stages
    for s in plan.stages:
        if s.name == target.lower():
            return plan.stages[: s.index + 1]
    raise BuildError(f"failed to reach build target {target} in Dockerfile",
                     hint="--target names a stage: FROM IMAGE AS NAME")


# --- .dockerignore ------------------------------------------------------------------------

IgnoreRules = list[tuple[bool, re.Pattern[str]]]


def _ignore_pattern(p: str) -> re.Pattern[str]:
    p = p.strip().lstrip("/")
    p = posixpath.normpath(p) if p else p
    parts = []
    for seg in p.split("/"):
        if seg == "**":
            parts.append("(?:.*/)?")
        else:
            parts.append(fnmatch.translate(seg).replace(r"\Z", "").removeprefix("(?s:")
                         .removesuffix(")") + "/")
    rx = "".join(parts).rstrip("/")
    rx = rx.replace("(?:.*/)?/", "(?:.*/)?")
    return re.compile(f"(?s:{rx})(?:/.*)?\\Z")


def dockerignore_rules(text: str) -> IgnoreRules:
    """`.dockerignore` rules in order: (exception, regex); "!" re-includes (moby
    patternmatcher). Shared by the CLI (which leaves ignored files out of the context it
    sends, as the docker CLI does) and the builder (which drops them from what it gets)."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exc = line.startswith("!")
        rules.append((exc, _ignore_pattern(line[1:] if exc else line)))
    return rules


def ignored(rel: str, rules: IgnoreRules) -> bool:
    out = False
    for exc, rx in rules:
        if rx.match(rel):
            out = not exc
    return out


# --- COPY/ADD --chown ----------------------------------------------------------------------


def chown_needs_names(spec: str) -> bool:
    """Whether `--chown=SPEC` names a user or group (then the image's files are read)."""
    return any(not part.isdigit() for part in spec.split(":"))


def chown_ids(spec: str, passwd: bytes | None, group: bytes | None,
              line: int) -> tuple[int, int]:
    """`--chown=user[:group]` as moby's classic builder reads it (builder/dockerfile/
    internals_linux.go parseChownFlag): numbers as given, names looked up in the step image's
    /etc/passwd and /etc/group; a lone user is also the group (`--chown=1000` is 1000:1000,
    `--chown=app` needs a group named app too)."""
    from engine.core.oci_spec import parse_user_db
    parts = spec.split(":")
    if len(parts) > 2:
        raise BuildError(f"line {line}: invalid chown string format: {spec}",
                         hint="use --chown=USER[:GROUP]")
    user, grp = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])

    def lookup(name: str, data: bytes | None, what: str, path: str, fields: int) -> int:
        if name.isdigit():
            return int(name)
        if data is None:
            reason = f"open {path}: no such file or directory"
        else:
            row = next((r for r in parse_user_db(data, fields) if r[0] == name
                        and r[2].isdigit()), None)
            if row is not None:
                return int(row[2])
            reason = f"no such {what}: {name}"
        raise BuildError(f"line {line}: can't find {'uid' if what == 'user' else 'gid'} for "
                         f"{what} {name}: {reason}",
                         hint=f"use a numeric id or a {what} the image's {path} names")

    return (lookup(user, passwd, "user", "/etc/passwd", 7),
            lookup(grp, group, "group", "/etc/group", 4))


# --- --platform -------------------------------------------------------------------------

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


def image_platform(doc: Mapping[str, Any]) -> str:
    """An image config's OS/ARCH[/VARIANT], normalized as containerd's platforms package."""
    arch = str(doc.get("architecture") or "amd64")
    arch = _ARCH_ALIASES.get(arch, arch)
    variant = str(doc.get("variant") or "")
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    return "/".join(x for x in (str(doc.get("os") or "linux"), arch, variant) if x)


def normalize_platform(spec: str, line: int) -> str:
    """`OS[/ARCH[/VARIANT]]` (`FROM --platform=`) as containerd's platforms.Parse normalizes
    it: linux/x86_64 is linux/amd64, a lone ARCH is linux/ARCH."""
    parts = spec.strip().lower().split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise BuildError(f"line {line}: invalid platform {spec!r}",
                         hint="use OS/ARCH[/VARIANT], e.g. linux/amd64")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    doc = {"os": parts[0], "architecture": parts[1], "variant": parts[2] if len(parts) == 3
           else ""}
    return image_platform(doc)


def check_platform(ref: str, wanted: str, doc: Mapping[str, Any]) -> None:
    """`build --platform`: a base of another platform is refused with moby's words
    (daemon/images/image.go GetImage)."""
    actual = image_platform(doc)
    if actual != wanted:
        raise BuildError(f"image with reference {ref} was found but does not match the "
                         f"specified platform: wanted {wanted}, actual: {actual}",
                         hint="build for the platform of this host, or without --platform")


# --- variables ---------------------------------------------------------------------------

_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}"
                  r"|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Docker's word expansion subset: $V, ${V}, ${V:-default}, ${V:+alt}, \\$ kept literal."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3)
        val = env.get(name)
        if op == "-":
            return val if val else expand(word or "", env)
        if op == "+":
            return expand(word or "", env) if val else ""
        return val or ""

    return _VAR.sub(sub, text)


def env_map(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        k, _, val = item.partition("=")
        out[k] = val
    return out


def set_env(env: Sequence[str], key: str, value: str) -> list[str]:
    out = [e for e in env if e.partition("=")[0] != key]
    out.append(f"{key}={value}")
    return out


def pairs(ins: Instruction, words: Sequence[str]) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG key=value pairs (the parser yields key, value, key, value…)."""
    if ins.cmd == "arg":
        return [(w.partition("=")[0], w.partition("=")[2]) if "=" in w else (w, "\0")
                for w in words]
    if len(words) % 2:
        raise BuildError(f"dockerfile parse error line {ins.line}: {ins.cmd.upper()} "
                         "requires key=value pairs")
    return [(words[i], words[i + 1]) for i in range(0, len(words), 2)]


# --- the build's running state -----------------------------------------------------------


@dataclass
class StageState:
    """Where one stage is: its image config (raw OCI `config` mapping), the args in scope."""

    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage, resolved
    used_args: set[str] = field(default_factory=set)

    def scope(self) -> dict[str, str]:
        """What `$VAR` sees: ARGs, then ENV (ENV wins, as in Docker)."""
        return {**self.args, **env_map(self.config.get("Env") or [])}

    @property
    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.get("Shell") or DEFAULT_SHELL)


def declare_arg(st: StageState, name: str, default: str, build_args: Mapping[str, str],
                meta: Mapping[str, str]) -> None:
    if name in build_args:
        st.args[name] = build_args[name]
        st.used_args.add(name)
    elif default != "\0":
        st.args[name] = expand(default, st.scope())
    elif name in meta:
        st.args[name] = meta[name]


def run_argv(st: StageState, ins: Instruction) -> list[str]:
    if ins.json:
        return list(ins.value)
    return [*st.shell, " ".join(ins.value)]


def run_env(st: StageState, build_args: Mapping[str, str]) -> list[str]:
    """The RUN container's environment: the image's ENV plus the ARGs in scope (Docker passes
    build args to RUN as env, ENV winning) and the proxy args when given."""
    env = list(st.config.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    extra = dict(st.args)
    extra.update({k: v for k, v in build_args.items() if k in PROXY_ARGS})
    env += [f"{k}={v}" for k, v in sorted(extra.items()) if k not in keys]
    return env


def _command_words(ins: Instruction, st: StageState) -> list[str]:
    if ins.json:
        return list(ins.value)
    return [*st.shell, " ".join(ins.value)]


def _healthcheck(ins: Instruction, st: StageState) -> dict[str, Any]:
    words = list(ins.value)
    if words and words[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    if not words or words[0].upper() != "CMD":
        raise BuildError(f"dockerfile parse error line {ins.line}: HEALTHCHECK needs CMD or NONE")
    rest = words[1:]
    test = ["CMD", *rest] if ins.json else ["CMD-SHELL", " ".join(rest)]
    hc: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        raw = ins.flag(flag)
        if raw:
            hc[key] = parse_duration_ns(raw, ins)
    retries = ins.flag("retries")
    if retries:
        hc["Retries"] = int(retries)
    return hc


def parse_duration_ns(raw: str, ins: Instruction) -> int:
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total = 0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", raw):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * units[m.group(2)])
        pos = m.end()
    if pos != len(raw) or not raw:
        raise BuildError(f"dockerfile parse error line {ins.line}: invalid duration {raw!r}")
    return total


def apply_metadata(st: StageState, ins: Instruction, build_args: Mapping[str, str],
                   meta: Mapping[str, str]) -> str:
    """Apply a config-only instruction to `st.config`; return its history `created_by`."""
    cfg = st.config
    scope = st.scope()
    words = [expand(w, scope) for w in ins.value] if ins.cmd not in ("cmd", "entrypoint",
                                                                     "healthcheck", "onbuild",
                                                                     "shell") else list(ins.value)
    if ins.cmd == "env":
        for k, val in pairs(ins, words):
            cfg["Env"] = set_env(cfg.get("Env") or [], k, val)
        return nop("ENV " + " ".join(f"{k}={val}" for k, val in pairs(ins, words)))
    if ins.cmd == "arg":
        for k, default in pairs(ins, words):
            declare_arg(st, k, default, build_args, meta)
        return nop("ARG " + " ".join(words))
    if ins.cmd in ("label", "maintainer"):
        labels = dict(cfg.get("Labels") or {})
        if ins.cmd == "maintainer":
            labels["maintainer"] = " ".join(words)
        else:
            labels.update(pairs(ins, words))
        cfg["Labels"] = labels
        if ins.cmd == "maintainer":
            return nop("MAINTAINER " + " ".join(words))
        return nop("LABEL " + " ".join(f"{k}={val}" for k, val in pairs(ins, words)))
    if ins.cmd == "cmd":
        cfg["Cmd"] = _command_words(ins, st)
        return nop("CMD " + json.dumps(cfg["Cmd"]))
    if ins.cmd == "entrypoint":
        cfg["Entrypoint"] = _command_words(ins, st)
        cfg["Cmd"] = None  # moby dispatchEntrypoint: a new ENTRYPOINT resets the parent's CMD
        return nop("ENTRYPOINT " + json.dumps(cfg["Entrypoint"]))
    if ins.cmd == "expose":
        ports = dict(cfg.get("ExposedPorts") or {})
        for w in " ".join(words).split():
            ports[w if "/" in w else f"{w}/tcp"] = {}
        cfg["ExposedPorts"] = ports
        return nop("EXPOSE " + " ".join(sorted(ports)))
    if ins.cmd == "workdir":
        path = words[0] if words else ""
        if not path.startswith("/"):
            path = _join(cfg.get("WorkingDir") or "/", path)
        cfg["WorkingDir"] = path
        return nop("WORKDIR " + path)
    if ins.cmd == "user":
        cfg["User"] = words[0] if words else ""
        return nop("USER " + cfg["User"])
    if ins.cmd == "volume":
        vols = dict(cfg.get("Volumes") or {})
        for w in words:
            if not w.strip():
                raise BuildError(f"dockerfile parse error line {ins.line}: VOLUME specified "
                                 "can not be an empty string")
            vols[w] = {}
        cfg["Volumes"] = vols
        return nop("VOLUME " + json.dumps(words))
    if ins.cmd == "stopsignal":
        cfg["StopSignal"] = words[0] if words else ""
        return nop("STOPSIGNAL " + cfg["StopSignal"])
    if ins.cmd == "healthcheck":
        cfg["Healthcheck"] = _healthcheck(ins, st)
        return nop("HEALTHCHECK " + json.dumps(cfg["Healthcheck"]))
    if ins.cmd == "onbuild":
        trigger = ins.original.split(None, 1)[1] if " " in ins.original else ""
        if trigger.split(None, 1)[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildError(f"dockerfile parse error line {ins.line}: "
                             f"{trigger.split()[0].upper()} isn't allowed as an ONBUILD trigger")
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
        return nop("ONBUILD " + trigger)
    if ins.cmd == "shell":
        if not ins.json:
            raise BuildError(f"dockerfile parse error line {ins.line}: SHELL requires the "
                             "arguments to be in JSON form")
        cfg["Shell"] = list(ins.value)
        return nop("SHELL " + json.dumps(cfg["Shell"]))
    raise BuildError(f"dockerfile parse error line {ins.line}: {ins.cmd.upper()} is not a "
                     "metadata instruction")


def nop(text: str) -> str:
    """moby's history `created_by` for a step without a layer."""
    return f"/bin/sh -c #(nop)  {text}"


def _join(base: str, rel: str) -> str:
    parts = [p for p in (base.rstrip("/") + "/" + rel).split("/") if p not in ("", ".")]
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return "/" + "/".join(out)


def copy_dest(st: StageState, dest: str) -> str:
    """COPY's destination made absolute against WORKDIR (a trailing "/" kept: it means a dir)."""
    absolute = dest if dest.startswith("/") else _join(st.config.get("WorkingDir") or "/", dest)
    if dest.endswith("/") or dest in (".", "./"):
        absolute = absolute.rstrip("/") + "/"
    return absolute


# --- cache keys --------------------------------------------------------------------------


def cache_key(parent: str, created_by: str, *, config: Mapping[str, Any],
              files: str = "", run_env_digest: str = "") -> str:
    """Docker's classic cache rule as one digest: the parent image, the instruction (with the
    checksum of COPY/ADD sources, never their mtimes), the config the step runs with (so an ENV
    or WORKDIR change misses) and, for RUN, the keyed digest of the build args it sees."""
    doc = json.dumps({"p": parent, "i": created_by, "c": config, "f": files,
                      "a": run_env_digest}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


def combine_checksums(*parts: str) -> str:
    """One checksum of several (a COPY/ADD's context sources and its URL downloads)."""
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def history_entry(created: str, created_by: str, *, empty_layer: bool,
                  comment: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry


def next_config_doc(parent_doc: Mapping[str, Any], config: Mapping[str, Any], *,
                    created: str, history: dict[str, Any], diff_id: str = "") -> dict[str, Any]:
    """The image config document of a step: the parent's with `config`, one more history
    entry and, if the step made a layer, its diff_id."""
    doc = dict(parent_doc)
    doc.setdefault("architecture", "amd64")
    doc.setdefault("os", "linux")
    doc["config"] = {k: val for k, val in config.items() if val not in (None, [], {}, "")}
    doc["created"] = created
    doc["history"] = [*(parent_doc.get("history") or []), history]
    rootfs = dict(parent_doc.get("rootfs") or {"type": "layers", "diff_ids": []})
    if diff_id:
        rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    rootfs.setdefault("diff_ids", [])
    rootfs["type"] = "layers"
    doc["rootfs"] = rootfs
    doc.pop("container_config", None)
    doc.pop("container", None)
    return doc


def scratch_doc(arch: str) -> dict[str, Any]:
    return {"architecture": arch, "os": "linux", "config": {"Env": [DEFAULT_PATH]},
            "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def encode_doc(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def intermediate_images(images: Sequence[Any]) -> set[str]:
    """The untagged step images of builds that a later built image grew from: Docker's
    `images` hides images with children unless `-a`. A child is a later built image whose
    layers start with the step image's (a config-only step adds no layer)."""
    built = [i for i in images if i.source == "built"]
    hidden = set()
    for img in built:
        if img.repo_tags:
            continue
        n = len(img.layers)
        if any(other.id != img.id and other.created_at >= img.created_at
               and other.layers[:n] == img.layers for other in built):
            hidden.add(img.id)
    return hidden


def cache_records(images: Sequence[Any], used: set[str], layer_sizes: Mapping[str, int],
                  rfc3339: Any) -> list[dict[str, Any]]:
    """`system df`'s BuildCache rows: the untagged step images (the classic builder's cache),
    each sized by the layer it added over the image below it."""
    rows = []
    for img in images:
        if img.source != "built" or img.repo_tags:
            continue
        top = img.layers[-1] if img.layers else ""
        rows.append({"ID": img.id.split(":", 1)[-1][:25], "Type": "regular",
                     "Description": "classic builder step image", "InUse": img.id in used,
                     "Shared": False, "Size": layer_sizes.get(top, 0) if top else 0,
                     "CreatedAt": rfc3339(img.created_at), "UsageCount": 0})
    return rows
