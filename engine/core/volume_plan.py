"""Plan a container's mounts — named and anonymous volumes, binds, tmpfs — as data.

I/O: none. From the container's `MountSpec`s, the image's VOLUMEs and the names of the
volumes that exist, decide which volumes must be created (anonymous names are 64-hex ids the
caller passes in), what each mount's OCI mount entry is and in which order runc must mount
them (parents before children, as moby sorts them). The kernel side (`engine/drivers/
volumes.py`, `bindsafe.py`) turns the plan into host paths: it stages bind sources through
file descriptors and resolves targets inside the rootfs, then calls `PlannedMount.oci`.

Everything is validated here, before any disk access (RELIABILITY S-03, I-02, I-13):
  * targets absolute, at most PATH_MAX, no NUL/CR/LF, no `..` component, not `/`; harmless
    spellings (`//`, `/./`, a trailing `/`) are cleaned; duplicate targets are refused (an
    anonymous volume — an image VOLUME — gives way to any other mount at its target);
  * bind sources absolute and free of `..` (a relative source is refused, never resolved
    against the daemon's cwd);
  * volume names by the local driver's `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (and not ending in `.`);
  * tmpfs options by moby's `MergeTmpfsOptions` rules, never containing a `,` (runc joins
    options with commas: one option must never smuggle in another);
  * local-driver options (`type`, `o`, `device`) by `parse_local_options`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.errors import InvalidArgument
from engine.core.validate import check_name
from events.values import ImageConfig, MountSpec

PATH_MAX = 4096
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")  # moby daemon/oci_linux.go
# The bind option `-v` (HostConfig.Binds) and `BindOptions.CreateMountpoint` carry: a missing
# host directory is created at start. `--mount type=bind` without it refuses a missing source.
CREATE_HOST_PATH = "create-host-path"
_ANON_RE = re.compile(r"[0-9a-f]{64}")
_CONTROL = ("\x00", "\r", "\n")

# mount(8) flags a tmpfs may carry, each with the group it collides in (moby/sys/mount).
_FLAG_GROUPS = {
    **{f: "ro" for f in ("ro", "rw")},
    **{f: "exec" for f in ("exec", "noexec")},
    **{f: "suid" for f in ("suid", "nosuid")},
    **{f: "dev" for f in ("dev", "nodev")},
    **{f: "sync" for f in ("sync", "async")},
    **{f: "atime" for f in ("atime", "noatime")},
    **{f: "diratime" for f in ("diratime", "nodiratime")},
    **{f: "relatime" for f in ("relatime", "norelatime")},
    **{f: "strictatime" for f in ("strictatime", "nostrictatime")},
    **{f: "mand" for f in ("mand", "nomand")},
    "dirsync": "dirsync",
    **{f: "propagation" for f in PROPAGATIONS + ("unbindable", "runbindable")},
}
_TMPFS_DATA = {
    "size": re.compile(r"[0-9]+[kKmMgG%]?"),
    "mode": re.compile(r"0?[0-7]{1,4}"),
    "uid": re.compile(r"[0-9]{1,10}"),
    "gid": re.compile(r"[0-9]{1,10}"),
    "nr_inodes": re.compile(r"[0-9]+[kKmMgG]?"),
    "nr_blocks": re.compile(r"[0-9]+[kKmMgG]?"),
    "mpol": re.compile(r"(default|prefer|bind|interleave|local)(:[0-9-]+)?"),
}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _no_control(value: str, what: str) -> None:
    if any(c in value for c in _CONTROL):
        raise InvalidArgument(f"invalid {what} {_shown(value)}: it contains a NUL, CR or LF byte",
                              hint=f"remove control characters from the {what}")


def _clean_abs(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"invalid {what}: it is empty", hint=f"give an absolute {what}")
    if len(value) > PATH_MAX:
        raise InvalidArgument(f"invalid {what} {_shown(value)}: longer than {PATH_MAX} bytes",
                              hint=f"give a shorter {what}")
    _no_control(value, what)
    if not value.startswith("/"):
        raise InvalidArgument(
            f"invalid {what} {_shown(value)}: it must be an absolute path",
            hint="relative paths are refused; they would be resolved against the daemon's "
                 "directory (RELIABILITY S-03)")
    if ".." in value.split("/"):
        raise InvalidArgument(f"invalid {what} {_shown(value)}: it contains a '..' component",
                              hint=f"give the {what} without '..'")
    clean = posixpath.normpath(value)
    return "/" + clean.lstrip("/")


def clean_target(target: str, what: str = "mount target") -> str:
    """The target as a clean absolute container path; raises InvalidArgument."""
    clean = _clean_abs(target, what)
    if clean == "/":
        raise InvalidArgument(f"invalid {what} {_shown(target)}: destination can't be '/'",
                              hint="mount somewhere below /")
    return clean


def clean_bind_source(source: str, what: str = "bind source") -> str:
    """A bind source as a clean absolute host path; relative sources are refused (S-03)."""
    return _clean_abs(source, what)


def check_volume_name(name: str) -> str:
    """Local-driver volume names (I-02): the only strings that become directory names."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("invalid volume name '': it is empty", hint="name the volume")
    _no_control(name, "volume name")
    return check_name(name, "volume")


def merge_tmpfs_options(options: Sequence[str]) -> tuple[str, ...]:
    """moby's MergeTmpfsOptions: later options win over earlier ones of the same group."""
    seen: set[str] = set()
    out: list[str] = []
    for opt in reversed(options):
        if not opt or opt == "defaults":
            continue
        _no_control(opt, "tmpfs option")
        if "," in opt:
            raise InvalidArgument(f"invalid tmpfs option {_shown(opt)}: ',' inside an option",
                                  hint="give options one by one")
        group = _FLAG_GROUPS.get(opt)
        if group is None:
            key, sep, val = opt.partition("=")
            rule = _TMPFS_DATA.get(key)
            if not sep or rule is None or not rule.fullmatch(val):
                raise InvalidArgument(
                    f"invalid tmpfs option {_shown(opt)}",
                    hint="use size=, mode=, uid=, gid=, nr_inodes=, nr_blocks=, mpol= or a "
                         "mount flag such as ro, exec, noexec")
            group = "=" + key
        if group not in seen:
            seen.add(group)
            out.append(opt)
    return tuple(reversed(out))


@dataclass(frozen=True)
class LocalOptions:
    """What the local driver's `type`/`o`/`device` options ask for, validated."""

    kind: str = ""  # "": a plain directory; "tmpfs"; "bind"
    device: str = ""  # the tmpfs source name, or the host dir of a bind
    options: tuple[str, ...] = ()  # tmpfs: merged options; bind: ("ro",) or ()
    recursive: bool = True


def parse_local_options(options: Mapping[str, str] | None) -> LocalOptions:
    """Validate `docker volume create -o type=… -o o=… -o device=…` (moby's local driver:
    `device` and `type` go together, `o` needs both). Supported: tmpfs, and bind of a host
    directory (`type=none,o=bind,device=/abs/path`). Raises InvalidArgument."""
    opts = dict(options or {})
    for key, value in opts.items():
        if key not in ("type", "o", "device"):
            raise InvalidArgument(f"invalid option key: {_shown(key)}",
                                  hint="the local driver takes type, o and device")
        _no_control(value, f"volume option {key}")
    if not opts:
        return LocalOptions()
    for key, needs in (("device", ("type",)), ("type", ("device",)), ("o", ("device", "type"))):
        if key in opts:
            for need in needs:
                if need not in opts:
                    raise InvalidArgument(f"missing required option: {need!r}",
                                          hint="give type, device and o together")
    fstype, device = opts["type"], opts["device"]
    flags = [o for o in opts.get("o", "").split(",") if o]
    if "bind" in flags or "rbind" in flags:
        rest = [f for f in flags if f not in ("bind", "rbind", "rw")]
        if fstype not in ("none", "bind") or any(f != "ro" for f in rest):
            raise InvalidArgument(f"invalid bind volume options {_shown(opts.get('o', ''))}",
                                  hint="use type=none, o=bind (optionally ,ro), device=/path")
        return LocalOptions(kind="bind", device=clean_bind_source(device, "volume device"),
                            options=("ro",) if "ro" in rest else (),
                            recursive="rbind" in flags or "bind" not in flags)
    if fstype == "tmpfs":
        if "/" in device or "," in device or not device:
            raise InvalidArgument(f"invalid tmpfs device {_shown(device)}",
                                  hint="use device=tmpfs")
        return LocalOptions(kind="tmpfs", device=device, options=merge_tmpfs_options(flags))
    raise InvalidArgument(f"local volume type {_shown(fstype)} is not supported",
                          hint="use type=tmpfs, or type=none with o=bind and device=/host/dir")


@dataclass(frozen=True)
class VolumeToCreate:
    name: str
    anonymous: bool


@dataclass(frozen=True)
class PlannedMount:
    """One mount, validated; the host side (source path, resolved destination) comes later."""

    kind: str  # "volume", "bind", "tmpfs"
    target: str  # clean absolute container path
    source: str = ""  # volume name, host path; "" for tmpfs
    read_only: bool = False
    propagation: str = ""  # binds only; "" is rprivate
    options: tuple[str, ...] = ()  # tmpfs: the merged mount options
    seed: bool = False  # volumes: copy the image's content when the volume is empty
    create_source: bool = False  # binds from `-v`: make the missing host directory

    def oci(self, source: str = "", destination: str = "") -> dict[str, Any]:
        """The OCI runtime-spec mount entry. `source` is the host path the kernel side made
        (the volume's `_data`, or a bind's staging path), `destination` the target as
        resolved inside the rootfs (defaults to `target`)."""
        dest = destination or self.target
        if self.kind == "tmpfs":
            return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                    "options": list(self.options)}
        if not source:
            raise ValueError(f"{self.kind} mount at {self.target} needs a host source")
        opts = ["rbind", self.propagation or DEFAULT_PROPAGATION]
        if self.read_only:
            opts.append("ro")
        return {"destination": dest, "type": "bind", "source": source, "options": opts}


@dataclass(frozen=True)
class MountPlan:
    mounts: tuple[PlannedMount, ...]  # in mount order: parents before children
    create: tuple[VolumeToCreate, ...]  # volumes to create (append VolumeCreated) first
    specs: tuple[MountSpec, ...]  # the requests with anonymous names filled in: store these

    @property
    def volumes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.source for m in self.mounts if m.kind == "volume"))

    @property
    def rootfs_propagation(self) -> str:
        """What `linux.rootfsPropagation` must be for the binds' propagation to work (moby:
        shared binds need a shared root, slave binds at least a slave one); "" for default."""
        props = {m.propagation for m in self.mounts if m.kind == "bind"}
        if props & {"shared", "rshared"}:
            return "shared"
        if props & {"slave", "rslave"}:
            return "rslave"
        return ""


def _planned(spec: MountSpec, target: str) -> PlannedMount:
    if spec.type not in ("volume", "bind", "tmpfs"):
        raise InvalidArgument(f"invalid mount type {_shown(spec.type)}",
                              hint="use bind, volume or tmpfs")
    if spec.propagation and spec.type != "bind":
        raise InvalidArgument(f"invalid mount {target}: propagation is only for bind mounts")
    if spec.propagation and spec.propagation not in PROPAGATIONS:
        raise InvalidArgument(f"invalid mount {target}: propagation {_shown(spec.propagation)}",
                              hint="use one of " + ", ".join(PROPAGATIONS))
    if spec.type == "tmpfs":
        if spec.source:
            raise InvalidArgument(f"invalid mount {target}: tmpfs takes no source")
        if spec.tmpfs_size < 0:
            raise InvalidArgument(f"invalid mount {target}: negative tmpfs size")
        opts = [*TMPFS_DEFAULTS, *spec.options]
        if spec.tmpfs_size:
            opts.append(f"size={spec.tmpfs_size}")
        if spec.read_only:
            opts.append("ro")
        return PlannedMount(kind="tmpfs", target=target, read_only=spec.read_only,
                            options=merge_tmpfs_options(opts))
    for opt in spec.options:
        if opt != "nocopy" and not (opt == CREATE_HOST_PATH and spec.type == "bind"):
            raise InvalidArgument(f"invalid mount {target}: unknown option {_shown(opt)}")
    if spec.tmpfs_size:
        raise InvalidArgument(f"invalid mount {target}: a size is only for tmpfs mounts")
    if spec.type == "bind":
        if not spec.source:
            raise InvalidArgument(f"invalid mount {target}: a bind mount needs a source",
                                  hint="give an absolute host path")
        return PlannedMount(kind="bind", target=target, source=clean_bind_source(spec.source),
                            read_only=spec.read_only, propagation=spec.propagation,
                            create_source=CREATE_HOST_PATH in spec.options)
    name = check_volume_name(spec.source) if spec.source else ""
    return PlannedMount(kind="volume", target=target, source=name, read_only=spec.read_only,
                        seed="nocopy" not in spec.options)


def _depth(target: str) -> int:
    return target.count("/")


def anonymous_needed(mounts: Sequence[MountSpec], image: ImageConfig | None = None,
                     assigned: Mapping[str, str] | None = None) -> int:
    """An upper bound on the anonymous ids `plan_mounts` will take: pass that many."""
    assigned = assigned or {}
    anon = [m.target for m in mounts if m.type == "volume" and not m.source]
    anon += list(image.volumes if image else ())
    return sum(1 for t in anon if t not in assigned and t.rstrip("/") not in assigned)


def plan_mounts(mounts: Sequence[MountSpec], image: ImageConfig | None = None, *,
                known_volumes: Collection[str] = (), anonymous_ids: Sequence[str] = (),
                assigned: Mapping[str, str] | None = None) -> MountPlan:
    """Plan the mounts of one container.

    `known_volumes` are the volumes that exist; a named volume outside it is to be created
    (Docker creates it on `run`). `assigned` maps targets to the anonymous volumes this
    container already owns (from its stored specs); other anonymous volumes take their
    names from `anonymous_ids` in order (see `anonymous_needed`). Raises InvalidArgument.
    """
    assigned = dict(assigned or {})
    requests: list[tuple[MountSpec, str]] = []
    for spec in mounts:
        if spec.type == "tmpfs":
            what = "tmpfs target"
        elif spec.type == "volume" and not spec.source:
            what = "volume target"
        else:
            what = "mount target"
        requests.append((spec, clean_target(spec.target, what)))
    for target in sorted(image.volumes if image else ()):
        requests.append((MountSpec(type="volume", target=target, mode=""),
                         clean_target(target, "image VOLUME")))

    chosen: dict[str, MountSpec] = {}
    for spec, target in requests:
        prior = chosen.get(target)
        if prior is None:
            chosen[target] = spec
            continue
        prior_anon = prior.type == "volume" and not prior.source and not prior.options
        spec_anon = spec.type == "volume" and not spec.source and not spec.options
        if spec_anon:
            continue  # an image VOLUME gives way to the mount the user asked for
        if not prior_anon:
            raise InvalidArgument(f"Duplicate mount point: {target}",
                                  hint="mount each target once")
        chosen[target] = spec

    ids = iter(anonymous_ids)
    known = set(known_volumes)
    to_create: dict[str, VolumeToCreate] = {}
    planned: list[PlannedMount] = []
    specs: list[MountSpec] = []
    for target, spec in chosen.items():
        pm = _planned(spec, target)
        if pm.kind == "volume":
            if not pm.source:
                name = assigned.get(target) or assigned.get(spec.target)
                if name is None:
                    name = next(ids, None)
                    if name is None:
                        raise ValueError("plan_mounts needs more anonymous ids "
                                         f"(see anonymous_needed); ran out at {target}")
                if not _ANON_RE.fullmatch(name):
                    raise ValueError(f"anonymous volume names are 64 hex digits, not {name!r}")
                pm = PlannedMount(kind="volume", target=target, source=name,
                                  read_only=pm.read_only, seed=pm.seed)
                if name not in known and name not in to_create:
                    to_create[name] = VolumeToCreate(name=name, anonymous=True)
                spec = MountSpec(type="volume", target=target, source=name,
                                 read_only=spec.read_only, options=spec.options,
                                 mode=spec.mode)
            elif pm.source not in known and pm.source not in to_create:
                to_create[pm.source] = VolumeToCreate(name=pm.source, anonymous=False)
        planned.append(pm)
        specs.append(spec)
    order = sorted(range(len(planned)), key=lambda i: _depth(planned[i].target))
    return MountPlan(mounts=tuple(planned[i] for i in order),
                     create=tuple(to_create.values()),
                     specs=tuple(specs[i] for i in order))
