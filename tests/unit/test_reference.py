"""Image reference parsing: Docker's normalisation and RELIABILITY I-01 hostile inputs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.core.image_reference import (
    InvalidReference,
    Reference,
    digest_hex,
    is_short_name,
    parse_reference,
    validate_digest,
)

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "familiar"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", "", "busybox:1.36"),
        ("library/busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        (
            "docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            "latest",
            "",
            "busybox:latest",
        ),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        ("user/app:v1", "docker.io", "user/app", "v1", "", "user/app:v1"),
        ("localhost/app", "localhost", "app", "latest", "", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", "", "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", "", "127.0.0.1:5000/x:latest"),
        ("[::1]:5000/x:y", "[::1]:5000", "x", "y", "", "[::1]:5000/x:y"),
        (
            "quay.io/a/b-c_d.e__f",
            "quay.io",
            "a/b-c_d.e__f",
            "latest",
            "",
            "quay.io/a/b-c_d.e__f:latest",
        ),
        (f"busybox@{D}", "docker.io", "library/busybox", "", D, f"busybox@{D}"),
        (f"busybox:1@{D}", "docker.io", "library/busybox", "1", D, f"busybox:1@{D}"),
    ],
)
def test_normalises_like_docker(
    text: str, domain: str, path: str, tag: str, digest: str, familiar: str
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(domain, path, tag, digest)
    assert ref.familiar == familiar
    assert parse_reference(ref.canonical) == ref
    assert parse_reference(ref.familiar) == ref


def test_canonical_form() -> None:
    assert parse_reference("busybox").canonical == "docker.io/library/busybox:latest"
    assert parse_reference("busybox", default_tag=False).canonical == "docker.io/library/busybox"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox",  # uppercase repository
        "docker.io/Library/busybox",
        "../busybox",
        "a/../b",
        "busybox:",  # empty tag
        "busybox:-tag",
        "busybox:.tag",
        "busybox:" + "t" * 129,
        "a" * 256,
        "docker.io/" + "a/" * 130 + "b",
        "busybox@sha256:" + "a" * 63,
        "busybox@sha256:" + "a" * 65,
        "busybox@sha256:" + "g" * 64,
        "busybox@sha256:" + "A" * 64,
        "busybox@sha256:../../x",
        "busybox@md5:" + "a" * 32,
        "busybox@",
        "-bfoo",
        "--help",
        "bus\x00box",
        "busybox\n",
        "busybox\nlatest",
        "bus box",
        "busуbox",  # Cyrillic у (U+0443): a homoglyph
        "ｂusybox",  # full-width b
        "a" * 64,  # a bare 64-hex id is not a repository name
        "busybox::tag",
        ":tag",
        "/busybox",
        "busybox/",
        "a//b",
        "exa_mple.com/x",  # '_' not allowed in a domain
    ],
)
def test_rejects_hostile_references(bad: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        parse_reference(bad)
    assert exc.value.hint
    assert "\n" not in str(exc.value) and "\x00" not in str(exc.value)


def test_uppercase_repository_says_lowercase() -> None:
    with pytest.raises(InvalidReference, match="must be lowercase"):
        parse_reference("docker.io/library/BusyBox")


def test_digest_validation() -> None:
    assert validate_digest(D) == D
    assert digest_hex(D) == "a" * 64
    for bad in ("sha256:../../x", "sha256:" + "a" * 63, "sha512:" + "a" * 128, "", "a" * 64):
        with pytest.raises(InvalidReference):
            validate_digest(bad)


def test_short_names() -> None:
    assert is_short_name("busybox")
    assert is_short_name("user/app")
    assert not is_short_name("docker.io/library/busybox")
    assert not is_short_name("localhost/app")
    assert not is_short_name("localhost:5000/app")


_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_component = st.builds(
    lambda parts, seps: parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=False)),
    st.lists(_alnum, min_size=1, max_size=3),
    st.lists(st.sampled_from([".", "_", "__", "-", "--"]), min_size=2, max_size=2),
)
_domain = st.sampled_from(["", "docker.io/", "quay.io/", "localhost:5000/", "reg.example.com/"])
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True)


@given(
    domain=_domain,
    path=st.lists(_component, min_size=1, max_size=3).map("/".join),
    tag=st.one_of(st.just(""), _tag),
    digest=st.one_of(st.just(""), _digest),
)
def test_round_trip(domain: str, path: str, tag: str, digest: str) -> None:
    first = path.split("/")[0]
    # Without a domain, a first component with "." (or "localhost") is read as a domain, as
    # Docker does; that case is covered by test_normalises_like_docker.
    assume(domain or ("." not in first and first != "localhost"))
    text = domain + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    assert parse_reference(ref.canonical) == ref
    assert parse_reference(ref.familiar) == ref
    assert ref.digest == digest
    assert ref.tag == (tag or ("" if digest else "latest"))


@given(st.text(max_size=300))
def test_never_raises_anything_but_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    # Whatever parses is ASCII, has no path traversal and survives its own canonical form.
    assert ref.canonical.isascii()
    assert ".." not in ref.path.split("/")
    assert parse_reference(ref.canonical) == ref
