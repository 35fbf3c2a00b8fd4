"""`shipslog build` against shipslogd on the real kernel (issue 12): Docker's flags, stdin
contexts, reproducible image ids with SOURCE_DATE_EPOCH, hostile contexts contained, and the
log recording the build without its build-arg values."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from engine.testing.cli import shipslog
from events.store import EventStore

pytestmark = [pytest.mark.kernel]




def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_cli_flags_stdin_and_iidfile(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("file\n")
    (ctx / "Dockerfile").write_text("FROM busybox AS a\nRUN echo one\nFROM a AS b\n"
                                    "ARG SECRET_ARG\nRUN echo \"$SECRET_ARG\" | wc -c > /n\n"
                                    "COPY f /f\n")
    iid = tmp_path / "iid"
    code, out, err = shipslog(daemon, "build", "-t", "cli:1", "-t", "cli:2", "--label", "l=1",
                              "--build-arg", "SECRET_ARG=canary-build-arg", "--iidfile",
                              str(iid), "--target", "b", str(ctx))
    assert code == 0, err
    # --label is a step of its own at the end, as in Docker (moby buildLabelOptions)
    assert "Step 2/7 : RUN echo one" in out and "Step 7/7 : LABEL l=1" in out
    assert "one\n" in out
    image_id = iid.read_text()
    assert image_id.startswith("sha256:") and f"Successfully built {image_id[7:19]}" in out
    code, out, _ = shipslog(daemon, "run", "--rm", "cli:2", "cat", "/n", "/f")
    assert out.split() == ["17", "file"]
    raw = (daemon.root / "events.db").read_bytes()
    wal = daemon.root / "events.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"canary-build-arg" not in raw

    # -q prints only the id; a Dockerfile on stdin with an empty context (`-`)
    code, out, err = shipslog(daemon, "build", "-q", "-", stdin=b"FROM busybox\nCMD [\"x\"]\n")
    assert code == 0 and out.startswith("sha256:") and out.count("\n") == 1, err
    # -f - with a directory context
    code, out, err = shipslog(daemon, "build", "-f", "-", str(ctx),
                              stdin=b"FROM busybox\nCOPY f /g\n")
    assert code == 0, err


def test_source_date_epoch_gives_identical_ids(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("same\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN echo x > /x\n")
    ids = []
    for i in range(2):
        os.utime(ctx / "f", (1_800_000_000 + i, 1_800_000_000 + i))  # a fresh checkout
        code, out, err = shipslog(daemon, "build", "-q", "--no-cache", str(ctx),
                                  env={"SOURCE_DATE_EPOCH": "1700000000"})
        assert code == 0, err
        ids.append(out.strip())
    assert ids[0] == ids[1]


@pytest.mark.parametrize("name,what", [
    ("../escape", "invalid archive"),
    ("/abs/escape", ""),
])
def test_hostile_tar_contexts_are_contained(daemon: Any, tmp_path: Path, name: str,
                                            what: str) -> None:
    body = _tar([_file("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n"), _file(name, b"evil")])
    r = daemon.client().request("POST", "/build", {"t": "hostile"}, body=body,
                                headers={"Content-Type": "application/x-tar"})
    if what:
        assert r.status == 400 and what in r.body.decode()
    else:  # an absolute name is taken as relative to the context, as tar does
        assert r.status == 200 and b"errorDetail" not in r.body
    assert not (daemon.root.parent / "escape").exists()
    assert not Path("/abs/escape").exists()


def test_symlinks_out_of_the_context_are_not_followed(daemon: Any, tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc"
    up = tarfile.TarInfo("up")
    up.type, up.linkname = tarfile.SYMTYPE, "../../../../../../etc/hostname"
    for df in (b"FROM busybox\nCOPY link/passwd /x\n", b"FROM busybox\nCOPY up /x\n"):
        body = _tar([_file("Dockerfile", df), (link, None), (up, None)])
        r = daemon.client().request("POST", "/build", None, body=body,
                                    headers={"Content-Type": "application/x-tar"})
        text = r.body.decode()
        if df.endswith(b"/x\n") and b"link/" in df:
            assert "outside the build context" in text or "not found" in text, text
        else:  # a symlink itself is copied as a symlink, never its target's bytes
            assert r.status == 200 and "errorDetail" not in text, text


def test_build_is_recorded_step_by_step(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nRUN true\n")
    assert shipslog(daemon, "build", "-t", "logged", str(ctx))[0] == 0
    assert shipslog(daemon, "build", "-t", "logged", str(ctx))[0] == 0
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    req = [e.event for e in store.read(types=["BuildRequested"])]
    steps = [e.event for e in store.read(types=["BuildStepCompleted"])]
    assert len(req) == 2 and req[0].tags == ("logged",) and req[0].context_digest.startswith(
        "sha256:")
    assert [(s.instruction, s.cached) for s in steps] == [
        ("FROM busybox", False), ("ENV A=1", False), ("RUN true", False),
        ("FROM busybox", False), ("ENV A=1", True), ("RUN true", True)]
    assert steps[2].layer.startswith("sha256:") and steps[2].exit_code == 0
    assert steps[0].base_digest == daemon.client().get_json("/images/busybox/json")["Id"]
    assert len([e for e in store.read(types=["OperationCompleted"])
                if e.op_id == req[1].op_id]) == 1


def test_provenance_and_steps_come_from_the_log(daemon: Any, tmp_path: Path) -> None:
    import json
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo hi > /hi\nLABEL a=b\n")
    assert shipslog(daemon, "build", "-t", "prov:1", "--build-arg", "K=v", str(ctx))[0] == 0
    code, out, err = shipslog(daemon, "image", "provenance", "prov:1")
    assert code == 0, err
    doc = json.loads(out)
    image_id = daemon.client().get_json("/images/prov:1/json")["Id"]
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": "prov:1", "digest": {"sha256": image_id[7:]}}]
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    busybox = daemon.client().get_json("/images/busybox/json")["Id"]
    assert {"uri": "docker-image://busybox", "digest": {"sha256": busybox[7:]}} in deps
    assert deps[0]["uri"] == "context" and len(deps[0]["digest"]["sha256"]) == 64
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"]["K"] != "v"
    assert shipslog(daemon, "build", "-t", "prov:1", str(ctx))[0] == 0
    code, out, err = shipslog(daemon, "image", "provenance", "--steps", "prov:1")
    assert code == 0, err
    lines = out.splitlines()
    assert "by uid 0" in lines[0] and lines[0].endswith("completed")
    assert [ln.split()[1] for ln in lines[3:]] == ["-", "hit", "hit"]
    code, _, err = shipslog(daemon, "image", "provenance", "busybox")
    assert code != 0 and "was not built here" in err
    # `history IMAGE` of a built image tells how it was built: who, every step, the cache
    code, out, err = shipslog(daemon, "history", "prov:1")
    assert code == 0, err
    assert "build requested: Dockerfile" in out and "build args K" in out, out
    assert "step 2/3 RUN echo hi > /hi: using cache" in out, out


def test_commit_with_changes(daemon: Any) -> None:
    import json
    assert shipslog(daemon, "run", "--name", "tocommit", "busybox", "sh", "-c",
                    "echo data > /data.txt")[0] == 0
    code, out, err = shipslog(daemon, "commit", "-m", "my message", "-a", "me",
                              "-c", "ENV X=1", "-c", 'CMD ["cat", "/data.txt"]',
                              "tocommit", "committed:v1")
    assert code == 0 and out.startswith("sha256:"), err
    code, out, _ = shipslog(daemon, "run", "--rm", "committed:v1")
    assert out == "data\n"
    info = daemon.client().get_json("/images/committed:v1/json")
    assert "X=1" in info["Config"]["Env"] and info["Author"] == "me"
    hist = daemon.client().get_json("/images/committed:v1/history")
    assert hist[0]["Comment"] == "my message"
    code, _, err = shipslog(daemon, "commit", "-c", "RUN true", "tocommit", "x")
    assert code != 0 and "RUN is not a valid change command" in err
    assert shipslog(daemon, "rm", "tocommit")[0] == 0
    del json


def test_import_applies_its_changes(daemon: Any) -> None:
    body = _tar([_file("hello.txt", b"imported\n")])
    code, out, err = shipslog(daemon, "import", "-c", "ENV IMPORTED=yes", "-c",
                              'CMD ["/hello.txt"]', "-c", "WORKDIR /w", "-", "imp:1",
                              stdin=body)
    assert code == 0, err
    cfg = daemon.client().get_json("/images/imp:1/json")["Config"]
    assert "IMPORTED=yes" in cfg["Env"] and cfg["Cmd"] == ["/hello.txt"]
    assert cfg["WorkingDir"] == "/w"
    code, _, err = shipslog(daemon, "import", "-c", "RUN x", "-", "imp:2", stdin=body)
    assert code != 0 and "not a valid change command" in err


@pytest.mark.parametrize("when", [b"Step 2/2", b'{"stream":"started\\n"}'])
def test_a_client_that_goes_away_cancels_the_build(daemon: Any, when: bytes) -> None:
    import socket
    import time
    body = _tar([_file("Dockerfile", b"FROM busybox\nRUN echo started; sleep 60\n")])
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"POST /v1.43/build HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    seen = b""
    deadline = time.monotonic() + 30
    while when not in seen:
        assert time.monotonic() < deadline, seen
        seen += s.recv(65536)
    s.close()  # the client goes away mid-RUN
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    deadline = time.monotonic() + 30
    while not [e for e in store.read(types=["OperationFailed"])
               if "cancelled" in e.event.error]:
        assert time.monotonic() < deadline, "the build was not cancelled"
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while daemon.client().get_json("/containers/json", {"all": 1}):
        assert time.monotonic() < deadline, "the step container was left behind"
        time.sleep(0.1)


def test_builder_prune_removes_the_step_images_only(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo 1 > /1\nRUN echo 2 > /2\n")
    assert shipslog(daemon, "build", "-t", "keep", str(ctx))[0] == 0
    before = daemon.client().get_json("/images/json", {"all": 1})
    assert len(before) == 3  # busybox, the first RUN's step image, the tagged result
    shown = daemon.client().get_json("/images/json")  # step images hidden, as Docker does
    assert sorted(t for img in shown for t in img["RepoTags"]) == ["busybox:latest",
                                                                   "keep:latest"]
    cache = daemon.client().get_json("/system/df")["BuildCache"]
    assert len(cache) == 1 and cache[0]["Size"] > 0 and not cache[0]["InUse"]
    code, out, _ = shipslog(daemon, "system", "df")
    assert [ln.split()[2] for ln in out.splitlines() if ln.startswith("Build Cache")] == ["1"]
    code, out, err = shipslog(daemon, "builder", "prune", "-f")
    assert code == 0 and "Total reclaimed space" in out, err
    assert daemon.client().get_json("/system/df")["BuildCache"] == []
    left = {t for img in daemon.client().get_json("/images/json", {"all": 1})
            for t in img["RepoTags"] or ["<none>"]}
    assert left == {"busybox:latest", "keep:latest"}
    assert shipslog(daemon, "run", "--rm", "keep", "cat", "/1", "/2")[1] == "1\n2\n"
    # the cache went with them: the next build runs its steps again
    code, out, _ = shipslog(daemon, "build", str(ctx))
    first_run = out.split("Step 2/3")[1].split("Step 3/3")[0]
    assert code == 0 and "Using cache" not in first_run and "Running in" in first_run


def test_a_daemon_killed_mid_build_leaves_no_step_container(daemon: Any) -> None:
    import socket
    import time
    body = _tar([_file("Dockerfile", b"FROM busybox\nRUN echo started; sleep 60\n")])
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"POST /v1.43/build HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    seen = b""
    deadline = time.monotonic() + 30
    while b'{"stream":"started\\n"}' not in seen:
        assert time.monotonic() < deadline, seen
        seen += s.recv(65536)
    daemon.kill9()
    s.close()
    daemon.start()
    deadline = time.monotonic() + 30
    while daemon.client().get_json("/containers/json", {"all": 1}):
        assert time.monotonic() < deadline, "the step container was left behind"
        time.sleep(0.1)
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    build = [e.op_id for e in store.read(types=["BuildRequested"])]
    outcomes = [e.type for e in store.read(op_id=build[0])
                if e.type in ("OperationCompensated", "OperationFailed", "OperationCompleted")]
    assert outcomes == ["OperationCompensated"]


def test_network_none_and_host_steps(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN ls /sys/class/net > /nets\n")
    code, _, err = shipslog(daemon, "build", "--no-cache", "--network", "none", "-t", "nonet",
                            str(ctx))
    assert code == 0, err
    assert shipslog(daemon, "run", "--rm", "nonet", "cat", "/nets")[1] == "lo\n"
    code, _, err = shipslog(daemon, "build", "--no-cache", "-t", "withnet", str(ctx))
    assert code == 0, err
    assert "eth0" in shipslog(daemon, "run", "--rm", "withnet", "cat", "/nets")[1]


def test_from_scratch_and_copy_from_an_image(daemon: Any, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\n"
                                    "COPY f /f\nCMD [\"/bin/sh\", \"-c\", \"cat /f\"]\n")
    (ctx / "f").write_text("from scratch\n")
    code, _, err = shipslog(daemon, "build", "-t", "scratchy", str(ctx))
    assert code == 0, err
    assert shipslog(daemon, "run", "--rm", "scratchy")[1] == "from scratch\n"
    layers = daemon.client().get_json("/images/scratchy/json")["RootFS"]["Layers"]
    assert len(layers) == 2


def _post_build(daemon: Any, body: bytes, **query: str) -> str:
    r = daemon.client().request("POST", "/build", query or None, body=body,
                                headers={"Content-Type": "application/x-tar"})
    text = r.body.decode()
    assert r.status == 200 and "errorDetail" not in text, text
    return text


def test_owner_and_copy_flags_are_part_of_the_cache_key(daemon: Any) -> None:
    """Docker's context checksum covers uid/gid (moby tarsum), and a different --chown or
    --chmod makes a different layer: each must miss the cache, never reuse the old layer."""
    def body(uid: int, chown: str) -> bytes:
        f = tarfile.TarInfo("f")
        f.uid = f.gid = uid
        df = f"FROM busybox\nCOPY {chown} f /f\n".encode()
        return _tar([_file("Dockerfile", df), (f, b"same bytes\n")])

    _post_build(daemon, body(0, ""))
    assert _post_build(daemon, body(0, "")).count("Using cache") == 1
    assert _post_build(daemon, body(1000, "")).count("Using cache") == 0
    assert _post_build(daemon, body(1000, "--chown=7:7")).count("Using cache") == 0
    assert _post_build(daemon, body(1000, "--chown=7:7")).count("Using cache") == 1
    out = _post_build(daemon, body(1000, "--chown=7:7 --chmod=0600"), t="flags:1")
    assert out.count("Using cache") == 0
    code, shown, err = shipslog(daemon, "run", "--rm", "--network", "none", "flags:1", "stat",
                                "-c", "%u:%g %a", "/f")
    assert (code, shown) == (0, "7:7 600\n"), err



def test_pull_takes_the_registry_base_even_when_one_is_here(daemon: Any,
                                                            tmp_path: Path) -> None:
    from engine.testing.localreg import LocalRegistry
    with LocalRegistry.running() as reg:
        ref = f"{reg.domain}/base:1"
        for which in ("registry", "local"):  # the registry holds one image, this host another
            ctx = tmp_path / which
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo {which} > /which\n")
            code, _, err = shipslog(daemon, "build", "-q", "-t", ref, str(ctx))
            assert code == 0, err
            if which == "registry":
                code, _, err = shipslog(daemon, "push", ref)
                assert code == 0, err
        use = tmp_path / "use"
        use.mkdir()
        (use / "Dockerfile").write_text(f"FROM {ref}\nRUN cat /which > /seen\n"
                                        "CMD [\"cat\", \"/seen\"]\n")
        for args, seen in ((), "local\n"), (("--pull",), "registry\n"):
            code, out, err = shipslog(daemon, "build", "-t", "based:1", *args, str(use))
            assert code == 0, err
            code, out, err = shipslog(daemon, "run", "--rm", "--network", "none", "based:1")
            assert (code, out) == (0, seen), err


def test_platform_of_this_host_is_accepted_others_are_refused(daemon: Any,
                                                              tmp_path: Path) -> None:
    import platform as host
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(host.machine(), host.machine())
    other = "linux/arm64" if arch != "arm64" else "linux/amd64"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    code, _, err = shipslog(daemon, "build", "-q", "--platform", f"linux/{arch}", str(ctx))
    assert code == 0, err
    alias = {"amd64": "linux/x86_64", "arm64": "linux/aarch64"}.get(arch, f"linux/{arch}")
    assert shipslog(daemon, "build", "-q", "--platform", alias, str(ctx))[0] == 0
    code, _, err = shipslog(daemon, "build", "--platform", other, str(ctx))
    assert code != 0
    assert (f"image with reference busybox was found but does not match the specified "
            f"platform: wanted {other}, actual: linux/{arch}") in err
    assert err.count("\n") <= 2  # one line and a hint, no traceback
    code, _, err = shipslog(daemon, "build", "--platform", "linux/amd64/v1/extra", str(ctx))
    assert code != 0 and "invalid platform" in err
    (ctx / "Dockerfile").write_text(f"FROM --platform={other} busybox\nRUN true\n")
    code, _, err = shipslog(daemon, "build", str(ctx))
    assert code != 0 and f"wanted {other}, actual: linux/{arch}" in err
    (ctx / "Dockerfile").write_text(f"ARG P={alias}\nFROM --platform=$P busybox\nRUN true\n")
    code, _, err = shipslog(daemon, "build", "-q", str(ctx))
    assert code == 0, err


def test_pull_uses_the_logins_the_docker_cli_sends(daemon: Any) -> None:
    """`docker build --pull` sends its logins in X-Registry-Config (base64url JSON, registry
    to auth config); a FROM image of a registry that wants a login is pulled with them."""
    import base64
    import json

    from engine.testing.localreg import LocalRegistry

    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()

    with LocalRegistry.running(users={"builder": "s3cret-pw"}) as reg:
        repo = f"{reg.domain}/auth/base"
        c = daemon.client()
        assert c.request("POST", "/images/busybox/tag", {"repo": repo, "tag": "1"}).status == 201
        r = c.request("POST", f"/images/{repo}/push", {"tag": "1"}, headers={
            "X-Registry-Auth": b64({"username": "builder", "password": "s3cret-pw"})})
        assert r.status == 200 and b"errorDetail" not in r.body, r.body
        body = _tar([_file("Dockerfile", f"FROM {repo}:1\nRUN true\n".encode())])
        headers = {"Content-Type": "application/x-tar"}
        r = c.request("POST", "/build", {"pull": "1"}, body=body, headers=headers)
        assert b"errorDetail" in r.body  # no login: the registry refuses the pull
        config = {reg.domain: {"username": "builder", "password": "s3cret-pw",
                               "serveraddress": reg.domain}}
        r = c.request("POST", "/build", {"pull": "1"}, body=body,
                      headers={**headers, "X-Registry-Config": b64(config)})
        assert r.status == 200 and b"errorDetail" not in r.body, r.body
