"""Manifest documents from registries: what they are, what is refused (RELIABILITY I-11,
CVE-2021-41190, CVE-2020-15157), and which index entry a platform picks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.core.image_documents import InvalidImage, Platform
from engine.registry.manifest import (
    ManifestError,
    parse_document,
    parse_platform,
    platform_str,
    select_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
DOCKER_M = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_L = "application/vnd.docker.distribution.manifest.list.v2+json"


def manifest(**over: Any) -> dict[str, Any]:
    doc = {"schemaVersion": 2, "mediaType": OCI_M,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": D1, "size": 10},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": D2, "size": 20}]}
    doc.update(over)
    return doc


def entry(digest: str, arch: str, variant: str = "") -> dict[str, Any]:
    p = {"architecture": arch, "os": "linux"}
    if variant:
        p["variant"] = variant
    return {"mediaType": OCI_M, "digest": digest, "size": 100, "platform": p}


def index(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_I, "manifests": list(entries)}


def b(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_manifest_and_index() -> None:
    r = parse_document(b(manifest()), OCI_M)
    assert r.media_type == OCI_M and r.manifest is not None and r.index is None
    assert r.manifest.layers[0].digest == D2
    r = parse_document(b(index(entry(D1, "amd64"))), OCI_I)
    assert r.index is not None and r.media_type == OCI_I
    docker = manifest(mediaType=DOCKER_M)
    docker["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert parse_document(b(docker), DOCKER_M).media_type == DOCKER_M
    # No mediaType field: the Content-Type tells; failing that, the shape does.
    assert parse_document(b(manifest(mediaType="")), OCI_M).manifest is not None
    no_type = index(entry(D1, "amd64"))
    del no_type["mediaType"]
    assert parse_document(b(no_type), "application/json").index is not None


@pytest.mark.parametrize(("doc", "ctype", "error"), [
    (manifest(manifests=[]), OCI_M, "both manifests and layers"),
    ({**index(entry(D1, "amd64")), "layers": []}, OCI_I, "both manifests and layers"),
    (manifest(), OCI_I, "does not match Content-Type"),
    (manifest(mediaType=DOCKER_L), DOCKER_L, "without manifests"),
    ({"schemaVersion": 1, "fsLayers": []}, "application/json", "cannot determine media type"),
    (manifest(mediaType="application/x-evil"), "application/x-evil", "unsupported manifest"),
    (manifest(layers=[{"mediaType": "application/x-evil", "digest": D2, "size": 1}]), OCI_M,
     "unsupported layer type"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": D2, "size": 1, "urls": ["http://evil/"]}]), OCI_M,
     "foreign layer"),
    (manifest(config={"mediaType": "application/x-helm", "digest": D1, "size": 1}), OCI_M,
     "unsupported config type"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": "sha256:../../x", "size": 1}]), OCI_M, "invalid"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": D2, "size": -1}]), OCI_M, "negative size"),
])
def test_refused_documents(doc: dict[str, Any], ctype: str, error: str) -> None:
    with pytest.raises(InvalidImage) as info:
        parse_document(b(doc), ctype)
    assert error in info.value.message


def test_size_cap_and_trailing_garbage() -> None:
    with pytest.raises(ManifestError):
        parse_document(b" " * (4 << 20) + b(manifest()), OCI_M)
    with pytest.raises(InvalidImage):
        parse_document(b(manifest()) + b"{}", OCI_M)


def test_platform_selection() -> None:
    idx = parse_document(b(index(entry(D1, "amd64"), entry(D2, "arm64", "v8"),
                                 entry(D3, "arm", "v6"))), OCI_I).index
    assert idx is not None
    assert select_manifest(idx, Platform(os="linux", architecture="amd64")).digest == D1
    assert select_manifest(idx, parse_platform("linux/arm64")).digest == D2
    assert select_manifest(idx, parse_platform("linux/aarch64")).digest == D2
    assert select_manifest(idx, parse_platform("linux/arm/v6")).digest == D3
    with pytest.raises(ManifestError) as info:
        select_manifest(idx, parse_platform("linux/arm/v7"))
    assert "no matching manifest for linux/arm/v7" in info.value.message
    assert "linux/amd64" in info.value.hint
    # arm without a variant is v7, as Docker normalises it; an exact match wins over none.
    idx2 = parse_document(b(index(entry(D1, "arm", "v6"), entry(D2, "arm"))), OCI_I).index
    assert idx2 is not None
    assert select_manifest(idx2, parse_platform("linux/arm/v7")).digest == D2
    assert select_manifest(idx2, parse_platform("linux/arm")).digest == D2


def test_parse_platform() -> None:
    assert platform_str(parse_platform("linux/amd64")) == "linux/amd64"
    assert platform_str(parse_platform("LINUX/ARM64/V8")) == "linux/arm64"
    assert platform_str(parse_platform("arm")) == "linux/arm/v7"
    for bad in ("", "a/b/c/d", "linux//amd64"):
        with pytest.raises(InvalidImage):
            parse_platform(bad)
