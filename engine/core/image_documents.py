"""OCI and Docker image documents: typed decoding, image-config mapping, canonical JSON.

I/O: none (pure). Shared by archive load/save and the registry client: every document is
size-capped by its reader and decoded into a typed struct here, so a wrong type, a trailing
byte or an ambiguous document is refused before anything acts on it (RELIABILITY I-11,
CVE-2021-41190).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from engine.core import health
from engine.core.errors import InvalidArgument
from engine.core.image_reference import InvalidReference, parse_reference, validate_digest
from events.values import HealthCheck, ImageConfig

MAX_INDEX_BYTES = 4 << 20  # manifest.json, index.json, manifests (containerd's limit; I-11)
MAX_CONFIG_BYTES = 8 << 20
MAX_LAYERS = 500  # overlayfs's OVL_MAX_STACK
MAX_INDEX_DEPTH = 4

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = {MT_OCI_INDEX, MT_DOCKER_LIST}
MANIFEST_TYPES = {MT_OCI_MANIFEST, MT_DOCKER_MANIFEST}
CONFIG_TYPES = {MT_OCI_CONFIG, MT_DOCKER_CONFIG}
ANN_CONTAINERD_NAME = "io.containerd.image.name"
ANN_REF_NAME = "org.opencontainers.image.ref.name"


class InvalidImage(InvalidArgument):
    """An image document or archive is malformed, inconsistent or fails a check (HTTP 400)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(
            message, hint or "the archive is damaged or was not made by docker save / an OCI tool"
        )


# --- typed documents (unknown fields ignored; wrong types rejected) -------------------------


class HealthcheckDoc(msgspec.Struct):
    Test: list[str] | None = None
    Interval: int = 0
    Timeout: int = 0
    Retries: int = 0
    StartPeriod: int = 0


class ContainerConfigDoc(msgspec.Struct):
    Cmd: list[str] | None = None
    Entrypoint: list[str] | None = None
    Env: list[str] | None = None
    WorkingDir: str = ""
    User: str = ""
    Labels: dict[str, str] | None = None
    ExposedPorts: dict[str, Any] | None = None
    Volumes: dict[str, Any] | None = None
    StopSignal: str = ""
    Healthcheck: HealthcheckDoc | None = None


class RootFSDoc(msgspec.Struct):
    type: str
    diff_ids: list[str]


class ImageConfigDoc(msgspec.Struct):
    rootfs: RootFSDoc
    architecture: str = ""
    os: str = ""
    created: str = ""
    config: ContainerConfigDoc | None = None


class Platform(msgspec.Struct):
    architecture: str = ""
    os: str = ""
    variant: str = ""


class Descriptor(msgspec.Struct):
    digest: str
    size: int
    mediaType: str = ""
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    urls: list[str] | None = None


class IndexDoc(msgspec.Struct):
    manifests: list[Descriptor]
    schemaVersion: int = 2
    mediaType: str = ""
    layers: Any = None  # present only in ambiguous documents (CVE-2021-41190)


class ManifestDoc(msgspec.Struct):
    config: Descriptor
    layers: list[Descriptor]
    schemaVersion: int = 2
    mediaType: str = ""
    manifests: Any = None  # present only in ambiguous documents (CVE-2021-41190)


class DockerManifestEntry(msgspec.Struct):
    Config: str
    Layers: list[str]
    RepoTags: list[str] | None = None


def decode(data: bytes, typ: Any, what: str) -> Any:
    try:
        return msgspec.json.decode(data, type=typ)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidImage(f"invalid {what}: {e}") from None


# --- image configs ----------------------------------------------------------------------------


def parse_image_config(raw: bytes) -> tuple[ImageConfig, tuple[str, ...]]:
    """Map an OCI/Docker image config blob to `ImageConfig` and its diff_ids. Pure."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidImage(f"image config larger than {MAX_CONFIG_BYTES} bytes")
    doc: ImageConfigDoc = decode(raw, ImageConfigDoc, "image config")
    if doc.rootfs.type != "layers":
        raise InvalidImage(f"invalid image config: rootfs type {doc.rootfs.type!r}")
    if len(doc.rootfs.diff_ids) > MAX_LAYERS:
        raise InvalidImage(f"image has more than {MAX_LAYERS} layers")
    try:
        diff_ids = tuple(validate_digest(d) for d in doc.rootfs.diff_ids)
    except InvalidReference as e:
        raise InvalidImage(f"invalid image config: {e}") from None
    c = doc.config or ContainerConfigDoc()
    cfg = ImageConfig(
        architecture=doc.architecture or "amd64",
        os=doc.os or "linux",
        created=doc.created,
        cmd=tuple(c.Cmd or ()),
        entrypoint=tuple(c.Entrypoint or ()),
        env=tuple(c.Env or ()),
        working_dir=c.WorkingDir,
        user=c.User,
        labels=dict(c.Labels or {}),
        exposed_ports=tuple(sorted(c.ExposedPorts or {})),
        volumes=tuple(sorted(c.Volumes or {})),
        stop_signal=c.StopSignal,
        healthcheck=_health(c.Healthcheck),
    )
    validate_image_config(cfg)
    return cfg, diff_ids


def _health(doc: HealthcheckDoc | None) -> HealthCheck | None:
    if doc is None or not doc.Test:
        return None
    try:
        return health.validate(HealthCheck(
            test=tuple(doc.Test), interval_ns=doc.Interval, timeout_ns=doc.Timeout,
            retries=doc.Retries, start_period_ns=doc.StartPeriod))
    except InvalidArgument as exc:
        raise InvalidImage(f"invalid image config: {exc}") from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PROC_FD = re.compile(r"^/+proc/+[^/]+/+(fd|task/+[^/]+/+fd)(/|$)")
_PORT = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?", re.ASCII)
_SIGNAL = re.compile(r"(SIG)?[A-Z0-9+-]{1,16}|\d{1,2}", re.ASCII)


def validate_image_config(cfg: ImageConfig) -> None:
    """Refuse image configs built to attack the runtime or generated files. Pure.

    RELIABILITY I-13: a WorkingDir under /proc/*/fd (CVE-2024-21626, runc leaked-fd escape),
    volume paths with `..` (CVE-2022-23648 family), control bytes in User or label keys that
    could add lines to generated files (CVE-2022-4318), NUL bytes anywhere in argv or env.
    """

    def bad(what: str, value: str, why: str) -> InvalidImage:
        return InvalidImage(
            f"invalid image config: {what} {value[:80]!r} {why}",
            "the image was built to attack the runtime, or is corrupt; do not run it",
        )

    for what, values in (("Cmd", cfg.cmd), ("Entrypoint", cfg.entrypoint), ("Env", cfg.env)):
        for v in values:
            if "\x00" in v:
                raise bad(what, v, "contains a NUL byte")
    if _CONTROL.search(cfg.user):
        raise bad("User", cfg.user, "contains control characters")
    if _CONTROL.search(cfg.working_dir):
        raise bad("WorkingDir", cfg.working_dir, "contains control characters")
    if _PROC_FD.match(cfg.working_dir):
        raise bad("WorkingDir", cfg.working_dir, "points into /proc/*/fd")
    for vol in cfg.volumes:
        if not vol.startswith("/") or _CONTROL.search(vol) or ".." in vol.split("/"):
            raise bad("volume", vol, "must be an absolute path without '..'")
    for key, value in cfg.labels.items():
        if not key or _CONTROL.search(key) or "\x00" in value:
            raise bad("label", key, "has control characters")
    for port in cfg.exposed_ports:
        m = _PORT.fullmatch(port)
        if not m or not all(0 < int(p) < 65536 for p in m.groups()[:2] if p is not None):
            raise bad("exposed port", port, "is not PORT[/tcp|udp|sctp]")
    if cfg.stop_signal and not _SIGNAL.fullmatch(cfg.stop_signal):
        raise bad("StopSignal", cfg.stop_signal, "is not a signal name")


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def build_image_config(
    config: ImageConfig, diff_ids: Sequence[str], *, history: Sequence[dict[str, Any]] = ()
) -> bytes:
    """The OCI image config JSON for `config` (deterministic bytes). Pure."""
    inner: dict[str, Any] = {}
    if config.cmd:
        inner["Cmd"] = list(config.cmd)
    if config.entrypoint:
        inner["Entrypoint"] = list(config.entrypoint)
    if config.env:
        inner["Env"] = list(config.env)
    if config.working_dir:
        inner["WorkingDir"] = config.working_dir
    if config.user:
        inner["User"] = config.user
    if config.labels:
        inner["Labels"] = dict(config.labels)
    if config.exposed_ports:
        inner["ExposedPorts"] = {p: {} for p in config.exposed_ports}
    if config.volumes:
        inner["Volumes"] = {v: {} for v in config.volumes}
    if config.stop_signal:
        inner["StopSignal"] = config.stop_signal
    if config.healthcheck is not None:
        h = config.healthcheck
        inner["Healthcheck"] = {"Test": list(h.test), "Interval": h.interval_ns,
                                "Timeout": h.timeout_ns, "Retries": h.retries,
                                "StartPeriod": h.start_period_ns}
    doc: dict[str, Any] = {
        "architecture": config.architecture,
        "os": config.os,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if config.created:
        doc["created"] = config.created
    if history:
        doc["history"] = list(history)
    return canonical_json(doc)


def familiar_tags(tags: Iterable[str]) -> tuple[str, ...]:
    out = []
    for t in tags:
        try:
            ref = parse_reference(t)
        except InvalidReference as e:
            raise InvalidImage(f"invalid repo tag {t[:100]!r}: {e}") from None
        if ref.digest or not ref.tag:
            raise InvalidImage(f"invalid repo tag {t[:100]!r}: a tag is NAME:TAG")
        out.append(ref.familiar)
    return tuple(dict.fromkeys(out))
