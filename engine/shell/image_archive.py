"""Image archives: `docker load` / `docker save` / `docker import` on our content store.

I/O: reads and writes tar files; writes blobs into the content store
(engine/drivers/layers/content.py).

- `load_archive` reads a docker-archive (`manifest.json` with Config/RepoTags/Layers, old and
  Docker 25+ layouts) or an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`),
  optionally gzip-compressed, into `LoadedImage`s. Every digest the archive states is checked,
  `diff_ids` must match the layer count, JSON documents are size-capped and decoded into typed
  structs (RELIABILITY I-11: CVE-2021-41190 ambiguous documents, moby#… 10⁶ diff_ids).
- `import_rootfs` turns a plain rootfs tar into a one-layer image with a default config.
- `save_archive` writes a tar that is both a docker-archive and an OCI layout (as Docker 25
  does), from blobs in the store; `load_archive(save_archive(x)) == x`.

Layers are stored as blobs only; `unpack_image` (or the pull code) unpacks them with
`LayerStore.unpack(expected_diff_id=…)`, which verifies each diff_id.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from engine.core.image_documents import (
    ANN_CONTAINERD_NAME,
    ANN_REF_NAME,
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    MAX_INDEX_BYTES,
    MAX_INDEX_DEPTH,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    Descriptor,
    DockerManifestEntry,
    IndexDoc,
    InvalidImage,
    ManifestDoc,
    build_image_config,
    canonical_json,
    decode,
    familiar_tags,
    parse_image_config,
)
from engine.core.image_reference import InvalidReference, parse_reference, validate_digest
from engine.drivers.host.info import machine_arch
from engine.drivers.layers.content import ContentError, ContentStore, sha256_bytes
from engine.drivers.layers.unpack import (
    LAYER_MEDIA_TYPES,
    InvalidLayer,
    LayerStore,
    decompressed_chunks,
)
from events.values import ImageConfig

MAX_MEMBERS = 100_000
MAX_IMPORT_BYTES = 32 << 30
InvalidArchive = InvalidImage  # the name callers of load/save/import expect

_BLOB_NAME = re.compile(r"blobs/sha256/([a-f0-9]{64})", re.ASCII)
_LEGACY_CONFIG_NAME = re.compile(r"([a-f0-9]{64})\.json", re.ASCII)


@dataclass(frozen=True)
class LayerRef:
    digest: str  # the blob in the content store (compressed or not)
    diff_id: str  # sha256 of the uncompressed tar, from the image config
    media_type: str = ""
    size: int = 0  # blob size


@dataclass(frozen=True)
class LoadedImage:
    image_id: str  # sha256 of the config blob (also its content-store digest)
    repo_tags: tuple[str, ...]  # familiar form: "busybox:latest"
    config: ImageConfig
    layers: tuple[LayerRef, ...]  # bottom first
    size: int  # sum of layer blob sizes

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)


@dataclass(frozen=True)
class ImageToSave:
    image_id: str
    repo_tags: tuple[str, ...]
    layer_digests: tuple[str, ...]  # blob digests, bottom first


# --- reading ----------------------------------------------------------------------------------


class _Archive:
    """Random access to the regular files of a tar, with in-archive symlinks resolved."""

    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf
        self.members: dict[str, tarfile.TarInfo] = {}
        count = 0
        while (m := tf.next()) is not None:
            count += 1
            if count > MAX_MEMBERS:
                raise InvalidArchive(f"archive has more than {MAX_MEMBERS} entries")
            name = posixpath.normpath("/" + m.name).lstrip("/")
            if m.isreg() or m.issym() or m.islnk():
                self.members[name] = m

    def resolve(self, name: str) -> tarfile.TarInfo:
        # Old `docker save` links duplicate layers (`<id>/layer.tar -> ../<id2>/layer.tar`).
        for _ in range(8):
            clean = posixpath.normpath("/" + name).lstrip("/")
            m = self.members.get(clean)
            if m is None:
                raise InvalidArchive(f"archive does not contain {name[:200]!r}")
            if m.isreg():
                return m
            if m.islnk():
                name = m.linkname
            else:
                if m.linkname.startswith("/"):
                    raise InvalidArchive(f"archive link {name[:200]!r} points outside")
                name = posixpath.join(posixpath.dirname(clean), m.linkname)
        raise InvalidArchive(f"too many links resolving {name[:200]!r}")

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str, cap: int) -> bytes:
        m = self.resolve(name)
        if m.size > cap:
            raise InvalidArchive(f"{name[:200]!r} is larger than {cap} bytes")
        f = self.tf.extractfile(m)
        assert f is not None
        return f.read()

    def ingest(
        self, name: str, store: ContentStore, expected: str | None, expected_size: int | None
    ) -> tuple[str, int]:
        m = self.resolve(name)
        if expected_size is not None and m.size != expected_size:
            raise InvalidArchive(
                f"unexpected commit size: {name[:200]!r} has {m.size} bytes, "
                f"descriptor says {expected_size}"
            )
        f = self.tf.extractfile(m)
        assert f is not None
        try:
            return store.ingest(f, expected, m.size)
        except ContentError as e:
            raise InvalidArchive(f"{name[:200]!r}: {e.message}") from None


def _digest_from_name(name: str) -> str | None:
    clean = posixpath.normpath("/" + name).lstrip("/")
    if m := _BLOB_NAME.fullmatch(clean):
        return "sha256:" + m.group(1)
    if m := _LEGACY_CONFIG_NAME.fullmatch(clean):
        return "sha256:" + m.group(1)
    return None


def _is_compressed(store: ContentStore, digest: str) -> bool:
    with store.open(digest) as f:
        head = f.read(4)
    return head.startswith(b"\x1f\x8b") or head == b"\x28\xb5\x2f\xfd"


def _load_config(
    arc: _Archive, store: ContentStore, name: str, expected: str | None, size: int | None
) -> tuple[str, ImageConfig, tuple[str, ...]]:
    raw = arc.read(name, MAX_CONFIG_BYTES)
    digest = sha256_bytes(raw)
    if expected is not None and digest != expected:
        raise InvalidArchive(f"unexpected commit digest {digest} for config, expected {expected}")
    if size is not None and len(raw) != size:
        raise InvalidArchive("unexpected commit size for config")
    config, diff_ids = parse_image_config(raw)
    store.ingest_bytes(raw, digest)
    return digest, config, diff_ids


def _load_docker(arc: _Archive, store: ContentStore) -> list[LoadedImage]:
    entries: list[DockerManifestEntry] = decode(
        arc.read("manifest.json", MAX_INDEX_BYTES), list[DockerManifestEntry], "manifest.json"
    )
    images = []
    for entry in entries:
        image_id, config, diff_ids = _load_config(
            arc, store, entry.Config, _digest_from_name(entry.Config), None
        )
        if len(diff_ids) != len(entry.Layers):
            raise InvalidArchive(
                f"image {image_id[:19]} has {len(entry.Layers)} layers but its config lists "
                f"{len(diff_ids)} diff_ids"
            )
        layers = []
        for path, diff_id in zip(entry.Layers, diff_ids, strict=True):
            expected = _digest_from_name(path)
            digest, size = arc.ingest(path, store, expected, None)
            if digest != diff_id and not _is_compressed(store, digest):
                # An uncompressed layer's digest is its diff_id: catch a swapped or corrupt
                # layer here, before anything is unpacked.
                raise InvalidArchive(f"layer {path[:200]!r} does not match diff_id {diff_id}")
            layers.append(LayerRef(digest, diff_id, "", size))
        images.append(
            LoadedImage(
                image_id=image_id,
                repo_tags=familiar_tags(entry.RepoTags or ()),
                config=config,
                layers=tuple(layers),
                size=sum(layer.size for layer in layers),
            )
        )
    return images


def _blob_name(desc: Descriptor) -> str:
    try:
        return "blobs/sha256/" + validate_digest(desc.digest)[7:]
    except InvalidReference as e:
        raise InvalidArchive(f"invalid descriptor: {e}") from None


def _read_blob(arc: _Archive, desc: Descriptor, cap: int) -> bytes:
    if desc.size > cap or desc.size < 0:
        raise InvalidArchive(f"document {desc.digest[:19]} declares {desc.size} bytes (cap {cap})")
    raw = arc.read(_blob_name(desc), cap)
    if len(raw) != desc.size:
        raise InvalidArchive(f"unexpected commit size for {desc.digest[:19]}")
    if sha256_bytes(raw) != desc.digest:
        raise InvalidArchive(f"unexpected commit digest for {desc.digest[:19]}")
    return raw


def _manifest_tags(desc: Descriptor) -> tuple[str, ...]:
    ann = desc.annotations or {}
    name = ann.get(ANN_CONTAINERD_NAME) or ann.get(ANN_REF_NAME, "")
    # A bare ref.name such as "latest" names no repository, so it gives no repo tag.
    if not name or (":" not in name and "/" not in name):
        return ()
    return familiar_tags([name])


def _load_manifest(
    arc: _Archive, store: ContentStore, desc: Descriptor, depth: int, tags: tuple[str, ...]
) -> list[LoadedImage]:
    if depth > MAX_INDEX_DEPTH:
        raise InvalidArchive("index nesting too deep (index loop?)")
    if desc.mediaType in INDEX_TYPES:
        index: IndexDoc = decode(_read_blob(arc, desc, MAX_INDEX_BYTES), IndexDoc, "image index")
        if index.layers is not None:
            raise InvalidArchive("ambiguous document: both manifests and layers")
        host = machine_arch()
        chosen = [
            d
            for d in index.manifests
            if d.platform is None
            or (d.platform.os in ("", "linux") and d.platform.architecture in ("", host))
        ]
        if not chosen:
            raise InvalidArchive(f"no image for linux/{host} in the index")
        out = []
        for d in chosen[:1]:
            out += _load_manifest(arc, store, d, depth + 1, tags)
        return out
    if desc.mediaType not in MANIFEST_TYPES:
        raise InvalidArchive(f"cannot determine media type: {desc.mediaType[:100]!r}")
    man: ManifestDoc = decode(_read_blob(arc, desc, MAX_INDEX_BYTES), ManifestDoc, "manifest")
    if man.manifests is not None:
        raise InvalidArchive("ambiguous document: both manifests and layers")
    if man.config.mediaType not in CONFIG_TYPES:
        raise InvalidArchive(f"cannot determine media type: config {man.config.mediaType[:100]!r}")
    image_id, config, diff_ids = _load_config(
        arc, store, _blob_name(man.config), man.config.digest, man.config.size
    )
    if len(diff_ids) != len(man.layers):
        raise InvalidArchive(
            f"manifest has {len(man.layers)} layers but the config lists {len(diff_ids)} diff_ids"
        )
    layers = []
    for d, diff_id in zip(man.layers, diff_ids, strict=True):
        if d.urls:
            raise InvalidArchive("foreign layers (urls) are not supported")  # CVE-2020-15157
        if d.mediaType not in LAYER_MEDIA_TYPES or not d.mediaType:
            raise InvalidArchive(f"cannot determine media type: layer {d.mediaType[:100]!r}")
        digest, size = arc.ingest(_blob_name(d), store, d.digest, d.size)
        layers.append(LayerRef(digest, diff_id, d.mediaType, size))
    return [LoadedImage(image_id, tags, config, tuple(layers), sum(x.size for x in layers))]


def _load_oci(arc: _Archive, store: ContentStore) -> list[LoadedImage]:
    index: IndexDoc = decode(arc.read("index.json", MAX_INDEX_BYTES), IndexDoc, "index.json")
    if index.layers is not None:
        raise InvalidArchive("ambiguous document: both manifests and layers")
    by_id: dict[str, LoadedImage] = {}
    for desc in index.manifests:
        for img in _load_manifest(arc, store, desc, 0, _manifest_tags(desc)):
            old = by_id.get(img.image_id)
            if old is not None:
                img = LoadedImage(
                    img.image_id,
                    tuple(dict.fromkeys(old.repo_tags + img.repo_tags)),
                    img.config,
                    img.layers,
                    img.size,
                )
            by_id[img.image_id] = img
    return list(by_id.values())


def _magic(f: BinaryIO) -> bytes:
    pos = f.tell()
    head = f.read(6)
    f.seek(pos)
    return head


def _seekable_tar(source: str | Path | BinaryIO, store: ContentStore) -> tuple[BinaryIO, bool]:
    """A seekable, uncompressed view of the archive, and whether it is a spool we own.

    `tarfile` random access into a compressed archive re-decompresses from the start at every
    backward seek (quadratic in the number of layers), so a compressed or unseekable input is
    spooled uncompressed into the ingest dir first (as `docker load` does into a temp dir).
    """
    f: BinaryIO
    if isinstance(source, (str, Path)):
        f = open(source, "rb")  # noqa: SIM115 (closed by the caller)
        owned = True
    else:
        f, owned = source, False
    if getattr(f, "seekable", lambda: False)():
        head = _magic(f)
        if not (head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ"))):
            return f, owned
    spool = tempfile.TemporaryFile(dir=store.ingest_dir)
    try:
        first = f.read(6)
        rest = _Rejoin(first, f)
        if first.startswith(b"BZh"):
            stream: Any = bz2.BZ2File(rest)  # type: ignore[call-overload]
        elif first.startswith(b"\xfd7zXZ"):
            stream = lzma.LZMAFile(rest)  # type: ignore[arg-type]
        else:
            stream = _ChunkReader(decompressed_chunks(rest)[0])  # type: ignore[arg-type]
        copied = 0
        while chunk := stream.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_IMPORT_BYTES:
                raise InvalidArchive(f"archive larger than {MAX_IMPORT_BYTES} bytes uncompressed")
            spool.write(chunk)
        spool.seek(0)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, InvalidLayer) as e:
        spool.close()
        raise InvalidArchive(f"invalid archive: {e}") from None
    except BaseException:
        spool.close()
        raise
    finally:
        if owned:
            f.close()
    return spool, True  # type: ignore[return-value]


class _Rejoin:
    """Put back the bytes read to sniff the compression."""

    def __init__(self, first: bytes, f: BinaryIO) -> None:
        self.first, self.f = first, f

    def read(self, n: int = -1) -> bytes:
        if self.first:
            b, self.first = self.first, b""
            return b
        return self.f.read(n)

    def readable(self) -> bool:
        return True


class _ChunkReader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.it = iter(chunks)

    def read(self, n: int = -1) -> bytes:
        return next(self.it, b"")


def load_archive(source: str | Path | BinaryIO, store: ContentStore) -> list[LoadedImage]:
    """Load every image in a docker-archive or OCI-layout tar into `store`.

    The archive may be plain, gzip, zstd, bzip2 or xz (what `docker load` accepts).
    """
    f, owned = _seekable_tar(source, store)
    try:
        tf = tarfile.open(fileobj=f, mode="r:")
    except (tarfile.TarError, OSError, EOFError) as e:
        if owned:
            f.close()
        raise InvalidArchive(f"invalid archive: not a tar file ({e})") from None
    spool = f if owned else None
    try:
        try:
            arc = _Archive(tf)
            if arc.has("manifest.json"):
                images = _load_docker(arc, store)
            elif arc.has("index.json"):
                if arc.has("oci-layout"):
                    layout = arc.read("oci-layout", 4096)
                    if b'"imageLayoutVersion"' not in layout:
                        raise InvalidArchive("invalid oci-layout file")
                images = _load_oci(arc, store)
            else:
                raise InvalidArchive(
                    "archive has neither manifest.json nor index.json",
                    "to make an image from a root filesystem tar, use import",
                )
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise InvalidArchive(f"invalid archive: {e}") from None
        if not images:
            raise InvalidArchive("archive contains no image")
        return images
    finally:
        tf.close()
        if spool is not None:
            spool.close()


def import_rootfs(
    source: BinaryIO,
    store: ContentStore,
    *,
    repo_tags: Sequence[str] = (),
    created: str = "",
    config: ImageConfig | None = None,
    comment: str = "",
) -> LoadedImage:
    """`docker import`: one uncompressed layer from a (gzip/zstd/plain) rootfs tar.

    `created` is passed in (RFC 3339) rather than read from the clock, so callers control it.
    The layer is stored uncompressed, so its blob digest is its diff_id.
    """
    tags = familiar_tags(repo_tags)
    chunks, _, _ = decompressed_chunks(source)
    try:
        diff_id, size = store.ingest(chunks, max_size=MAX_IMPORT_BYTES)
    except ContentError as e:
        raise InvalidArchive(f"import: {e.message}") from None
    base = config or ImageConfig(architecture=machine_arch())
    base = msgspec.structs.replace(base, created=created or base.created)
    history = [{"created": created, "created_by": "import", "comment": comment}] if created else []
    raw = build_image_config(
        base, [diff_id], history=[{k: v for k, v in h.items() if v} for h in history]
    )
    image_id, _ = store.ingest_bytes(raw)
    cfg, _ = parse_image_config(raw)
    return LoadedImage(image_id, tags, cfg, (LayerRef(diff_id, diff_id, "", size),), size)


# --- writing ----------------------------------------------------------------------------------


def _layer_media_type(store: ContentStore, digest: str) -> str:
    with store.open(digest) as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        return "application/vnd.oci.image.layer.v1.tar+gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.oci.image.layer.v1.tar"


def _tarinfo(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if directory:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
    else:
        ti.size = size
        ti.mode = 0o644
    return ti


def save_archive(out: BinaryIO, images: Sequence[ImageToSave], store: ContentStore) -> None:
    """Write `images` as one tar that is both a docker-archive and an OCI layout.

    Deterministic: fixed mtimes and owners, entries in a fixed order, canonical JSON.
    """
    blobs: dict[str, bytes | None] = {}  # digest -> inline bytes (generated) or None (store)
    manifest_json: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    for img in images:
        raw_cfg = store.read_bytes(img.image_id, max_size=MAX_CONFIG_BYTES)
        _, diff_ids = parse_image_config(raw_cfg)
        if len(diff_ids) != len(img.layer_digests):
            raise InvalidArchive(f"image {img.image_id[:19]}: layer count does not match config")
        blobs[img.image_id] = None
        layer_descs = []
        for d in img.layer_digests:
            blobs[d] = None
            layer_descs.append(
                {"mediaType": _layer_media_type(store, d), "digest": d, "size": store.size(d)}
            )
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {
                    "mediaType": MT_OCI_CONFIG,
                    "digest": img.image_id,
                    "size": len(raw_cfg),
                },
                "layers": layer_descs,
            }
        )
        mdigest = sha256_bytes(manifest)
        blobs[mdigest] = manifest
        tags = familiar_tags(img.repo_tags)
        manifest_json.append(
            {
                "Config": "blobs/sha256/" + img.image_id[7:],
                "RepoTags": list(tags) or None,  # Docker writes null for an untagged save
                "Layers": ["blobs/sha256/" + d[7:] for d in img.layer_digests],
            }
        )
        desc = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(manifest)}
        if not tags:
            index_entries.append(desc)
        for t in tags:
            ref = parse_reference(t)
            index_entries.append(
                desc | {"annotations": {ANN_CONTAINERD_NAME: ref.canonical, ANN_REF_NAME: ref.tag}}
            )
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(_tarinfo("blobs", directory=True))
        tf.addfile(_tarinfo("blobs/sha256", directory=True))
        for digest in sorted(blobs):
            inline = blobs[digest]
            name = "blobs/sha256/" + digest[7:]
            if inline is not None:
                tf.addfile(_tarinfo(name, len(inline)), io.BytesIO(inline))
            else:
                with store.open(digest) as f:
                    tf.addfile(_tarinfo(name, store.size(digest)), f)
        index = canonical_json(
            {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index_entries}
        )
        mj = json.dumps(manifest_json, separators=(",", ":")).encode()
        layout = canonical_json({"imageLayoutVersion": "1.0.0"})
        for name, data in (("index.json", index), ("manifest.json", mj), ("oci-layout", layout)):
            tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def unpack_image(image: LoadedImage, store: ContentStore, layers: LayerStore) -> list[str]:
    """Unpack every layer not yet unpacked; return the overlay lowerdirs, bottom first."""
    paths = []
    for ref in image.layers:
        if not layers.has(ref.diff_id):
            layers.unpack(
                store.path(ref.digest), media_type=ref.media_type, expected_diff_id=ref.diff_id
            )
        paths.append(layers.path(ref.diff_id))
    return paths


def digest_of_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
