"""docker-archive / OCI-layout load, save and import against a content store in tmp_path.

RELIABILITY I-11: every digest and size is checked, documents are capped, ambiguous documents
and foreign layers are refused, and a refused archive leaves nothing in ingest/.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.core.image_reference import InvalidReference
from engine.drivers.layers.content import ContentStore, DigestMismatch
from engine.shell.image_archive import (
    MAX_INDEX_BYTES,
    ImageToSave,
    InvalidArchive,
    build_image_config,
    import_rootfs,
    load_archive,
    parse_image_config,
    save_archive,
)
from events.values import ImageConfig


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return buf.getvalue()


def layer(content: bytes = b"hello\n", name: str = "etc/motd") -> bytes:
    return make_tar({name: content})


def config_for(diff_ids: list[str], **kw: Any) -> bytes:
    cfg = ImageConfig(architecture="amd64", cmd=("sh",), env=("PATH=/bin",), **kw)
    return build_image_config(cfg, diff_ids)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store")


def write(tmp_path: Path, data: bytes, name: str = "a.tar") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def docker_archive(layers: list[bytes], tags: list[str], cfg: bytes | None = None) -> bytes:
    diff_ids = [sha(x) for x in layers]
    cfg = cfg if cfg is not None else config_for(diff_ids)
    files = {f"{sha(cfg)[7:]}.json": cfg}
    names = []
    for i, x in enumerate(layers):
        files[f"l{i}/layer.tar"] = x
        names.append(f"l{i}/layer.tar")
    manifest = [{"Config": f"{sha(cfg)[7:]}.json", "RepoTags": tags, "Layers": names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    return make_tar(files)


def oci_layout(
    layer_blobs: list[tuple[bytes, str]],
    diff_ids: list[str],
    *,
    annotations: dict[str, str] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    layer_desc_extra: dict[str, Any] | None = None,
) -> bytes:
    cfg = config_for(diff_ids)
    blobs = {sha(cfg): cfg}
    descs = []
    for data, mt in layer_blobs:
        blobs[sha(data)] = data
        descs.append(
            {"mediaType": mt, "digest": sha(data), "size": len(data)} | (layer_desc_extra or {})
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(cfg),
            "size": len(cfg),
        },
        "layers": descs,
    } | (manifest_extra or {})
    mraw = json.dumps(manifest).encode()
    blobs[sha(mraw)] = mraw
    desc: dict[str, Any] = {
        "mediaType": manifest["mediaType"],
        "digest": sha(mraw),
        "size": len(mraw),
    }
    if annotations:
        desc["annotations"] = annotations
    index = {"schemaVersion": 2, "manifests": [desc]}
    files = {f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()}
    files["index.json"] = json.dumps(index).encode()
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    return make_tar(files)


def assert_ingest_clean(store: ContentStore) -> None:
    assert os.listdir(store.ingest_dir) == []


# --- configs ------------------------------------------------------------------------------


def test_config_round_trip() -> None:
    cfg = ImageConfig(
        architecture="arm64",
        created="2024-01-01T00:00:00Z",
        cmd=("sh", "-c", "x"),
        entrypoint=("/init",),
        env=("A=1", "B=2"),
        working_dir="/w",
        user="1000:1000",
        labels={"k": "v"},
        exposed_ports=("80/tcp", "53/udp"),
        volumes=("/data",),
        stop_signal="SIGINT",
    )
    diff_ids = [sha(b"x"), sha(b"y")]
    raw = build_image_config(cfg, diff_ids)
    back, ids = parse_image_config(raw)
    assert ids == tuple(diff_ids)
    assert back == ImageConfig(**{**_fields(cfg), "exposed_ports": ("53/udp", "80/tcp")})
    assert build_image_config(cfg, diff_ids) == raw  # deterministic


def _fields(cfg: ImageConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__struct_fields__}


@pytest.mark.parametrize(
    "doc",
    [
        b"{}",
        b"[]",
        b'{"rootfs": {"type": "layers", "diff_ids": ["sha256:../../x"]}}',
        b'{"rootfs": {"type": "zfs", "diff_ids": []}}',
        b'{"rootfs": {"type": "layers", "diff_ids": []}, "config": {"Cmd": "sh"}}',
        b'{"rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": [1]}}',
        b'{"rootfs": {"type": "layers", "diff_ids": []}} trailing',
        b'{"rootfs": {"type": "layers", "diff_ids": ["sha256:' + b"a" * 64 + b'"]' + b"}" * 0,
    ],
)
def test_bad_configs_rejected(doc: bytes) -> None:
    with pytest.raises(InvalidArchive):
        parse_image_config(doc)


def test_config_with_too_many_layers_rejected() -> None:
    ids = ",".join(f'"sha256:{i:064x}"' for i in range(501))
    with pytest.raises(InvalidArchive, match="more than"):
        parse_image_config(f'{{"rootfs":{{"type":"layers","diff_ids":[{ids}]}}}}'.encode())


# --- docker-archive -------------------------------------------------------------------------


def test_load_legacy_docker_archive(tmp_path: Path, store: ContentStore) -> None:
    layers = [layer(b"one"), layer(b"two", "usr/x")]
    path = write(tmp_path, docker_archive(layers, ["busybox:latest", "example.com/a/b:1"]))
    [img] = load_archive(path, store)
    assert img.repo_tags == ("busybox:latest", "example.com/a/b:1")
    assert [x.diff_id for x in img.layers] == [sha(x) for x in layers]
    assert [x.digest for x in img.layers] == [sha(x) for x in layers]
    assert img.config.cmd == ("sh",)
    assert store.has(img.image_id)
    assert all(store.has(x.digest) for x in img.layers)
    assert img.size == sum(len(x) for x in layers)
    assert_ingest_clean(store)


def test_load_follows_in_archive_symlinks(tmp_path: Path, store: ContentStore) -> None:
    x = layer()
    cfg = config_for([sha(x), sha(x)])
    files = {f"{sha(cfg)[7:]}.json": cfg, "a/layer.tar": x}
    manifest = [
        {
            "Config": f"{sha(cfg)[7:]}.json",
            "RepoTags": None,
            "Layers": ["a/layer.tar", "b/layer.tar"],
        }
    ]
    files["manifest.json"] = json.dumps(manifest).encode()
    data = make_tar(files, links={"b/layer.tar": "../a/layer.tar"})
    [img] = load_archive(write(tmp_path, data), store)
    assert img.repo_tags == ()
    assert len(img.layers) == 2


def test_load_from_gzip_stream(tmp_path: Path, store: ContentStore) -> None:
    data = gzip.compress(docker_archive([layer()], ["a:b"]))

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.f = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            return self.f.readinto(b)

    [img] = load_archive(Unseekable(), store)  # type: ignore[arg-type]
    assert img.repo_tags == ("a:b",)


@pytest.mark.parametrize("compress", ["gzip", "bz2", "xz", "zstd"])
def test_load_compressed_archives(tmp_path: Path, store: ContentStore, compress: str) -> None:
    import bz2
    import lzma

    import zstandard

    raw = docker_archive([layer(), layer(b"2", "b")], ["c:" + compress])
    data = {
        "gzip": gzip.compress,
        "bz2": bz2.compress,
        "xz": lzma.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[compress](raw)
    [img] = load_archive(write(tmp_path, data), store)
    assert img.repo_tags == ("c:" + compress,) and len(img.layers) == 2
    assert_ingest_clean(store)


def test_truncated_compressed_archive_rejected(tmp_path: Path, store: ContentStore) -> None:
    data = gzip.compress(docker_archive([layer()], ["a:b"]))[:-30]
    with pytest.raises(InvalidArchive):
        load_archive(write(tmp_path, data), store)
    assert_ingest_clean(store)


def test_config_digest_mismatch_rejected(tmp_path: Path, store: ContentStore) -> None:
    x = layer()
    cfg = config_for([sha(x)])
    wrong = "b" * 64
    files = {f"{wrong}.json": cfg, "l/layer.tar": x}
    files["manifest.json"] = json.dumps(
        [{"Config": f"{wrong}.json", "RepoTags": [], "Layers": ["l/layer.tar"]}]
    ).encode()
    with pytest.raises(InvalidArchive, match="unexpected commit digest"):
        load_archive(write(tmp_path, make_tar(files)), store)
    assert not store.has(sha(cfg)) and not store.has("sha256:" + wrong)
    assert_ingest_clean(store)


def test_layer_not_matching_diff_id_rejected(tmp_path: Path, store: ContentStore) -> None:
    real, fake = layer(b"real"), layer(b"fake")
    data = docker_archive([fake], [], cfg=config_for([sha(real)]))
    with pytest.raises(InvalidArchive, match="does not match diff_id"):
        load_archive(write(tmp_path, data), store)


def test_diff_id_count_mismatch_rejected(tmp_path: Path, store: ContentStore) -> None:
    x = layer()
    data = docker_archive([x], [], cfg=config_for([sha(x), sha(x)]))
    with pytest.raises(InvalidArchive, match="diff_ids"):
        load_archive(write(tmp_path, data), store)


def test_blob_named_by_wrong_digest_rejected(tmp_path: Path, store: ContentStore) -> None:
    x = layer()
    cfg = config_for([sha(x)])
    bad_name = "blobs/sha256/" + "c" * 64
    files = {f"blobs/sha256/{sha(cfg)[7:]}": cfg, bad_name: x}
    files["manifest.json"] = json.dumps(
        [{"Config": f"blobs/sha256/{sha(cfg)[7:]}", "RepoTags": [], "Layers": [bad_name]}]
    ).encode()
    with pytest.raises(InvalidArchive, match="unexpected commit digest"):
        load_archive(write(tmp_path, make_tar(files)), store)
    assert not store.has(sha(x))
    assert_ingest_clean(store)


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b'{"Config": "x"}',
        b'[{"Config": 1, "Layers": []}]',
        b'[{"Config": "missing.json", "Layers": []}]',
        b" " * (MAX_INDEX_BYTES + 1) + b"[]",
    ],
)
def test_bad_manifest_json_rejected(tmp_path: Path, store: ContentStore, manifest: bytes) -> None:
    with pytest.raises(InvalidArchive):
        load_archive(write(tmp_path, make_tar({"manifest.json": manifest})), store)


@pytest.mark.parametrize("tag", ["UPPER:x", "a:b\nc", "a@sha256:" + "a" * 64, "../x:y"])
def test_bad_repo_tag_rejected(tmp_path: Path, store: ContentStore, tag: str) -> None:
    with pytest.raises(InvalidArchive, match="invalid repo tag"):
        load_archive(write(tmp_path, docker_archive([layer()], [tag])), store)


def test_not_an_image_archive(tmp_path: Path, store: ContentStore) -> None:
    with pytest.raises(InvalidArchive, match="neither manifest.json") as exc:
        load_archive(write(tmp_path, make_tar({"etc/passwd": b"x"})), store)
    assert "import" in exc.value.hint
    with pytest.raises(InvalidArchive, match="not a tar"):
        load_archive(write(tmp_path, b"garbage" * 100), store)


# --- OCI layout -------------------------------------------------------------------------------

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def test_load_oci_layout_with_gzip_layer(tmp_path: Path, store: ContentStore) -> None:
    raw = layer()
    gz = gzip.compress(raw, mtime=0)
    data = oci_layout(
        [(gz, GZ)],
        [sha(raw)],
        annotations={
            "io.containerd.image.name": "docker.io/library/app:v2",
            "org.opencontainers.image.ref.name": "v2",
        },
    )
    [img] = load_archive(write(tmp_path, data), store)
    assert img.repo_tags == ("app:v2",)
    assert img.layers[0].digest == sha(gz)
    assert img.layers[0].diff_id == sha(raw)
    assert img.layers[0].media_type == GZ


def test_bare_ref_name_gives_no_tag(tmp_path: Path, store: ContentStore) -> None:
    raw = layer()
    data = oci_layout(
        [(raw, "application/vnd.oci.image.layer.v1.tar")],
        [sha(raw)],
        annotations={"org.opencontainers.image.ref.name": "latest"},
    )
    [img] = load_archive(write(tmp_path, data), store)
    assert img.repo_tags == ()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"manifest_extra": {"manifests": []}}, "ambiguous"),
        ({"layer_desc_extra": {"urls": ["http://evil/x"]}}, "foreign"),
        ({"layer_desc_extra": {"mediaType": "application/x-evil"}}, "media type"),
        ({"layer_desc_extra": {"size": 3}}, "size"),
        ({"layer_desc_extra": {"digest": "sha256:../../etc/passwd"}}, "digest"),
    ],
)
def test_hostile_oci_layouts_rejected(
    tmp_path: Path, store: ContentStore, kw: dict[str, Any], match: str
) -> None:
    raw = layer()
    data = oci_layout([(raw, "application/vnd.oci.image.layer.v1.tar")], [sha(raw)], **kw)
    with pytest.raises(InvalidArchive, match=match):
        load_archive(write(tmp_path, data), store)
    assert not store.has(sha(raw))
    assert_ingest_clean(store)


def test_index_loop_rejected(tmp_path: Path, store: ContentStore) -> None:
    # An index that lists itself cannot be built (its digest would change), but a chain of
    # nested indexes deeper than the cap stands in for a loop.
    inner = b""
    blobs = {}
    prev = None
    for _ in range(8):
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [prev] if prev else [],
        }
        inner = json.dumps(doc).encode()
        blobs[sha(inner)] = inner
        prev = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha(inner),
            "size": len(inner),
        }
    files = {f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()}
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [prev]}).encode()
    with pytest.raises(InvalidArchive, match="too deep"):
        load_archive(write(tmp_path, make_tar(files)), store)


# --- save ------------------------------------------------------------------------------------


def test_save_then_load_round_trip(tmp_path: Path, store: ContentStore) -> None:
    layers = [layer(b"a"), gzip.compress(layer(b"b", "b"), mtime=0)]
    diff_ids = [sha(layers[0]), sha(layer(b"b", "b"))]
    digests = [store.ingest_bytes(x)[0] for x in layers]
    image_id, _ = store.ingest_bytes(config_for(diff_ids))
    out = tmp_path / "saved.tar"
    with open(out, "wb") as f:
        save_archive(f, [ImageToSave(image_id, ("busybox:latest", "x/y:1"), tuple(digests))], store)
    first = out.read_bytes()
    with open(out, "wb") as f:
        save_archive(f, [ImageToSave(image_id, ("busybox:latest", "x/y:1"), tuple(digests))], store)
    assert out.read_bytes() == first  # deterministic

    other = ContentStore(tmp_path / "other")
    [img] = load_archive(out, other)
    assert img.image_id == image_id
    assert img.repo_tags == ("busybox:latest", "x/y:1")
    assert [x.digest for x in img.layers] == digests
    assert [x.diff_id for x in img.layers] == diff_ids
    # The same tar read as an OCI layout (no manifest.json) gives the same image.
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert {"index.json", "oci-layout", "manifest.json"} <= set(names)
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    del files["manifest.json"]
    [oci] = load_archive(write(tmp_path, make_tar(files), "oci.tar"), ContentStore(tmp_path / "o"))
    assert (oci.image_id, oci.repo_tags, oci.layers) == (
        img.image_id,
        img.repo_tags,
        tuple(
            type(x)(x.digest, x.diff_id, oci.layers[i].media_type, x.size)
            for i, x in enumerate(img.layers)
        ),
    )


def test_save_refuses_mismatched_layers(tmp_path: Path, store: ContentStore) -> None:
    image_id, _ = store.ingest_bytes(config_for([sha(b"x")]))
    with pytest.raises(InvalidArchive):
        save_archive(io.BytesIO(), [ImageToSave(image_id, (), ())], store)


# --- import ----------------------------------------------------------------------------------


def test_import_gzip_rootfs(store: ContentStore) -> None:
    raw = layer(b"rootfs")
    img = import_rootfs(
        io.BytesIO(gzip.compress(raw)),
        store,
        repo_tags=["imp:1"],
        created="2024-02-03T04:05:06Z",
        comment="from test",
    )
    assert img.layers[0].diff_id == img.layers[0].digest == sha(raw)
    assert img.repo_tags == ("imp:1",)
    assert img.config.created == "2024-02-03T04:05:06Z"
    assert store.open(img.layers[0].digest).read() == raw
    cfg = json.loads(store.open(img.image_id).read())
    assert cfg["rootfs"]["diff_ids"] == [sha(raw)]
    assert cfg["history"][0]["comment"] == "from test"


def test_import_rejects_bad_tag_before_reading(store: ContentStore) -> None:
    with pytest.raises(InvalidArchive):
        import_rootfs(io.BytesIO(b"x"), store, repo_tags=["Bad:tag"])
    assert store.list() == []


# --- content store ---------------------------------------------------------------------------


def test_content_store_refuses_wrong_bytes(store: ContentStore) -> None:
    with pytest.raises(DigestMismatch):
        store.ingest([b"abc"], expected_digest=sha(b"abd"))
    with pytest.raises(DigestMismatch):
        store.ingest([b"abc"], expected_size=2)
    with pytest.raises(DigestMismatch):
        store.ingest([b"ab"], expected_size=3)
    assert store.list() == []
    assert_ingest_clean(store)
    d, n = store.ingest([b"a", b"bc"], expected_digest=sha(b"abc"), expected_size=3)
    assert (d, n) == (sha(b"abc"), 3) and store.verify(d)
    (store.ingest_dir / "orphan").write_bytes(b"partial")
    assert store.sweep_ingest() == 1
    assert store.delete(d) and not store.has(d) and not store.delete(d)


def test_concurrent_ingest_of_one_blob(store: ContentStore) -> None:
    data = b"x" * (3 << 20)
    results: list[tuple[str, int]] = []

    def worker() -> None:
        results.append(store.ingest(io.BytesIO(data), sha(data), len(data)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(sha(data), len(data))] * 4
    assert store.list() == [sha(data)] and store.verify(sha(data))
    assert_ingest_clean(store)


def test_content_store_refuses_bad_digest_names(store: ContentStore) -> None:
    for bad in ("sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:abc"):
        assert not store.has(bad)
        with pytest.raises(InvalidReference):
            store.path(bad)


# --- I-13: hostile image configs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        {"working_dir": "/proc/self/fd/7"},
        {"working_dir": "/proc/thread-self/fd/8/x"},
        {"working_dir": "//proc/1/task/1/fd"},
        {"working_dir": "/srv\n"},
        {"volumes": ("/../../etc",)},
        {"volumes": ("relative",)},
        {"volumes": ("/data\n/etc",)},
        {"user": "0:0\n"},
        {"user": "root\x00"},
        {"labels": {"a\nb": "c"}},
        {"labels": {"a": "b\x00"}},
        {"cmd": ("sh\x00-c",)},
        {"env": ("A=\x00",)},
        {"exposed_ports": ("80/icmp",)},
        {"exposed_ports": ("0/tcp",)},
        {"exposed_ports": ("70000",)},
        {"stop_signal": "SIGKILL; rm -rf /"},
    ],
)
def test_hostile_image_configs_rejected(field: dict[str, Any]) -> None:
    raw = build_image_config(ImageConfig(**field), [])
    with pytest.raises(InvalidArchive, match="invalid image config") as exc:
        parse_image_config(raw)
    assert exc.value.hint


def test_ordinary_image_configs_accepted() -> None:
    cfg = ImageConfig(
        working_dir="/proc-data/app",
        volumes=("/var/lib/data", "/srv"),
        user="www-data:1000",
        labels={"org.opencontainers.image.description": "line one\nline two"},
        exposed_ports=("80/tcp", "53/udp", "8000-8010/tcp", "9000"),
        stop_signal="SIGRTMIN+3",
        env=("MULTI=a\nb",),
    )
    assert parse_image_config(build_image_config(cfg, []))[0].working_dir == "/proc-data/app"
