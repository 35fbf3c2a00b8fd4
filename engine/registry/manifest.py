"""Manifests from a registry: decoding, media-type checks, platform selection. Pure.

I/O: none. The client fetches a document (capped at `MAX_INDEX_BYTES`, verified against the
digest it was asked for or the one the registry named); this module decides what it is:

- a document with both `manifests` and `layers` is refused (CVE-2021-41190);
- the `mediaType` field, when present, must agree with the `Content-Type` the registry sent,
  and a document whose type cannot be told is refused (RELIABILITY I-11, moby
  `TestDetectManifestBlobMediaTypeInvalid`);
- layers with foreign `urls` are refused: we never fetch from a host the image names
  (CVE-2020-15157); unknown layer or config media types are refused before any download;
- an index picks the manifest for a platform like Docker's `platforms.Only` matcher: same os
  and architecture, the variant equal (arm64 defaults to v8, arm to v7) or unspecified.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from engine.core.image_documents import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_INDEX_BYTES,
    MAX_LAYERS,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    Descriptor,
    IndexDoc,
    InvalidImage,
    ManifestDoc,
    Platform,
    decode,
)
from engine.core.image_reference import InvalidReference, validate_digest

ACCEPT = f"{MT_OCI_INDEX}, {MT_DOCKER_LIST}, {MT_OCI_MANIFEST}, {MT_DOCKER_MANIFEST}"

LAYER_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
})
FOREIGN_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MAX_INDEX_ENTRIES = 1000


class ManifestError(InvalidImage):
    """The registry sent a document we refuse (HTTP 400 on the API)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint or "the image in the registry is malformed or hostile")


@dataclass(frozen=True)
class Resolved:
    """A decoded manifest document and what it is."""

    media_type: str
    index: IndexDoc | None = None
    manifest: ManifestDoc | None = None


class _Probe(msgspec.Struct):
    mediaType: str = ""
    schemaVersion: int = 0
    manifests: object = None
    layers: object = None
    config: object = None


def _probe(data: bytes) -> dict[str, object]:
    p = decode(data, _Probe, "manifest")
    return {"mediaType": p.mediaType, "schemaVersion": p.schemaVersion,
            "manifests": p.manifests is not None, "layers": p.layers is not None,
            "config": p.config is not None}


def parse_document(data: bytes, content_type: str) -> Resolved:
    """Decode a manifest or index; refuse ambiguity, mismatches, foreign and unknown content."""
    if len(data) > MAX_INDEX_BYTES:
        raise ManifestError(f"manifest larger than {MAX_INDEX_BYTES} bytes")
    probe = _probe(data)
    if probe["manifests"] and (probe["layers"] or probe["config"]):
        raise ManifestError("invalid manifest: a document with both manifests and layers "
                            "is ambiguous (CVE-2021-41190)")
    field_type = str(probe["mediaType"])
    header_type = content_type.split(";")[0].strip().lower()
    known = INDEX_TYPES | MANIFEST_TYPES
    if field_type and header_type in known and field_type != header_type:
        raise ManifestError(f"invalid manifest: mediaType {field_type} does not match "
                            f"Content-Type {header_type}")
    mt = field_type or (header_type if header_type in known else "")
    if not mt:
        if probe["manifests"]:
            mt = MT_OCI_INDEX
        elif probe["layers"] and probe["config"] and probe["schemaVersion"] == 2:
            mt = MT_OCI_MANIFEST
        else:
            raise ManifestError("cannot determine media type of the manifest",
                                "schema 1 manifests are not supported; push the image again")
    if mt in INDEX_TYPES:
        if not probe["manifests"]:
            raise ManifestError(f"invalid manifest: {mt} without manifests")
        index: IndexDoc = decode(data, IndexDoc, "image index")
        if len(index.manifests) > MAX_INDEX_ENTRIES:
            raise ManifestError(f"image index has more than {MAX_INDEX_ENTRIES} entries")
        for d in index.manifests:
            _check_descriptor(d)
        return Resolved(mt, index=index)
    if mt in MANIFEST_TYPES:
        if probe["manifests"]:
            raise ManifestError(f"invalid manifest: {mt} with manifests")
        manifest: ManifestDoc = decode(data, ManifestDoc, "image manifest")
        check_manifest(manifest)
        return Resolved(mt, manifest=manifest)
    raise ManifestError(f"cannot determine media type: unsupported manifest type {mt!r}")


def _check_descriptor(d: Descriptor) -> None:
    try:
        validate_digest(d.digest)
    except InvalidReference as e:
        raise ManifestError(f"invalid manifest: {e}") from None
    if d.size < 0:
        raise ManifestError(f"invalid manifest: negative size for {d.digest}")


def check_manifest(m: ManifestDoc) -> None:
    _check_descriptor(m.config)
    if m.config.mediaType and m.config.mediaType not in CONFIG_TYPES:
        raise ManifestError(f"cannot determine media type: unsupported config type "
                            f"{m.config.mediaType!r}", "this is not a container image")
    if len(m.layers) > MAX_LAYERS:
        raise ManifestError(f"image has more than {MAX_LAYERS} layers")
    for layer in m.layers:
        _check_descriptor(layer)
        if layer.urls or layer.mediaType in FOREIGN_TYPES:
            raise ManifestError(f"foreign layer {layer.digest} is not pulled (its urls point "
                                "outside the registry)", "push the image with all its layers")
        if layer.mediaType not in LAYER_TYPES:
            raise ManifestError(f"cannot determine media type: unsupported layer type "
                                f"{layer.mediaType!r}")


def parse_platform(spec: str) -> Platform:
    """`linux/arm64/v8` → Platform. An empty string is not accepted here (use the host's)."""
    parts = spec.strip().lower().split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise InvalidImage(f"invalid platform {spec[:60]!r}",
                           "use OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    return normalize_platform(Platform(os=parts[0], architecture=parts[1],
                                       variant=parts[2] if len(parts) == 3 else ""))


_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
         "armel": "arm", "i386": "386", "i686": "386"}


def normalize_platform(p: Platform) -> Platform:
    arch = _ARCH.get(p.architecture, p.architecture)
    variant = p.variant
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant in ("", "7"):
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os=p.os or "linux", architecture=arch, variant=variant)


def platform_str(p: Platform) -> str:
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


def select_manifest(index: IndexDoc, want: Platform) -> Descriptor:
    """The index entry for `want` (already normalised), or ManifestError naming what exists."""
    want = normalize_platform(want)
    candidates: list[tuple[int, int, Descriptor]] = []
    for d in index.manifests:
        if d.mediaType and d.mediaType not in MANIFEST_TYPES | INDEX_TYPES:
            continue
        if d.platform is None:
            continue
        have = normalize_platform(d.platform)
        if (have.os, have.architecture) != (want.os, want.architecture):
            continue
        if want.variant and have.variant and have.variant != want.variant:
            continue
        exact = have.variant == want.variant
        candidates.append((0 if exact else 1, len(candidates), d))
    if not candidates:
        offered = sorted({platform_str(normalize_platform(d.platform))
                          for d in index.manifests if d.platform is not None})
        raise ManifestError(
            f"no matching manifest for {platform_str(want)} in the manifest list entries",
            f"the image offers: {', '.join(offered) or 'nothing'}; choose one with --platform")
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[0][2]
