"""The items of issue 13 that tests/integration/test_docker_compat.py checks on shipslogd
alone, with the same assertions against dockerd (the `engine` fixture): connect/disconnect
of a created container, network options, image inspect fields, the routes of features that
are off, env values over several lines, predefined network names, volume drivers, `save`'s
tags, `logs --tail`, memory limits, a refused `load`, network names with spaces.

Where the private dockerd (20.10, API 1.41) differs from the Docker 24 (v1.43) behaviour we
target, or where shipslog differs on purpose, the docker side of that assertion is skipped
with the reason; the shipslog assertion is never weakened.

I/O: the docker CLI and the Docker SDK against each engine; shipslog's event log (read
only); everything a test makes is removed by it or by the fixture."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from engine.testing.dockercli import docker
from events.store import EventStore
from tests.compat.conftest import BUSYBOX_TAR, Engine

pytestmark = pytest.mark.kernel

# moby daemon/cluster (errNoManager), word for word.
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                 'join" to connect this node to swarm and try again.')


def _legacy_image_tar(busybox_tar: Path, out: Path, config: dict[str, Any]) -> None:
    """busybox's layer under `config`, as `docker save` of Docker 24 writes it."""
    with tarfile.open(busybox_tar) as src:
        manifest = json.load(src.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        layer = src.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    raw = json.dumps(config).encode()
    digest = hashlib.sha256(raw).hexdigest()
    files = {f"{digest}.json": raw, "layer/layer.tar": layer,
             "manifest.json": json.dumps([{"Config": f"{digest}.json",
                                           "RepoTags": ["legacy:1"],
                                           "Layers": ["layer/layer.tar"]}]).encode()}
    with tarfile.open(out, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def raw(engine: Engine, method: str, path: str, body: Any = None,
        headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> Any:
    """One request as a client sends it (requests.Response: status and body)."""
    api = engine.sdk().api
    if isinstance(body, dict):
        body, headers = json.dumps(body), {"Content-Type": "application/json"}
    return api.request(method, api._url(path), data=body, headers=headers or {},
                       params=params or {}, timeout=60)


def event_types(engine: Engine) -> list[str]:
    assert engine.daemon is not None
    store = EventStore.open(engine.daemon.root / "events.db", readonly=True)
    return [e.type for e in store.read(after_seq=0)]


def networks_of(engine: Engine, ctr: str) -> dict[str, Any]:
    return dict(json.loads(docker(engine, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                  ctr).stdout))


def test_connect_and_disconnect_a_created_container(engine: Engine) -> None:
    # Compose v2 creates a service's container on its first network and connects the others
    # before the start; Docker records them and the container joins them all at start.
    for i, name in enumerate(("front", "back", "spare")):
        docker(engine, "network", "create", "--subnet", f"10.213.{40 + i}.0/24", name)
    try:
        docker(engine, "create", "--name", "svc", "--network", "front", "busybox",
               "sleep", "600")
        docker(engine, "network", "connect", "--alias", "db", "back", "svc")
        docker(engine, "network", "connect", "--ip", "10.213.42.9", "spare", "svc")
        docker(engine, "network", "connect", "back", "svc")  # again: left as it is
        nets = networks_of(engine, "svc")
        assert sorted(nets) == ["back", "front", "spare"]
        assert "db" in nets["back"]["Aliases"]
        assert nets["spare"]["IPAMConfig"] == {"IPv4Address": "10.213.42.9"}
        docker(engine, "network", "disconnect", "spare", "svc")
        p = docker(engine, "network", "disconnect", "spare", "svc", check=False)
        assert p.returncode != 0 and "is not connected to the network spare" in p.stderr
        docker(engine, "start", "svc")
        addrs = docker(engine, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        assert "10.213.40." in addrs and "10.213.41." in addrs and "10.213.42." not in addrs
        # The recorded connect is the container's own: a stop and a start join it again.
        docker(engine, "stop", "-t", "0", "svc")
        docker(engine, "start", "svc")
        assert "10.213.41." in docker(engine, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        if engine.name == "shipslog":
            types = event_types(engine)
            assert types.count("NetworkConnectRecorded") == 2
            assert types.count("NetworkConnectWithdrawn") == 1
    finally:
        docker(engine, "rm", "-f", "svc", check=False)
        docker(engine, "network", "rm", "front", "back", "spare", check=False)


def test_created_container_aliases_include_its_short_id(engine: Engine) -> None:
    docker(engine, "network", "create", "--subnet", "10.213.45.0/24", "aliased")
    try:
        cid = docker(engine, "create", "--name", "al", "--network", "aliased", "busybox",
                     "true").stdout.strip()
        aliases = networks_of(engine, "al")["aliased"]["Aliases"]
        if engine.name == "docker" and cid[:12] not in (aliases or []):
            pytest.skip("dockerd 20.10 adds the short-ID alias only at start; Docker 24 "
                        "shows it on a created container")
        assert cid[:12] in aliases
    finally:
        docker(engine, "rm", "-f", "al", check=False)
        docker(engine, "network", "rm", "aliased", check=False)


def test_disconnect_a_created_container_from_its_own_network(engine: Engine) -> None:
    docker(engine, "network", "create", "--subnet", "10.213.43.0/24", "first")
    docker(engine, "network", "create", "--subnet", "10.213.44.0/24", "other")
    try:
        docker(engine, "create", "--name", "mover", "--network", "first", "busybox",
               "sleep", "600")
        docker(engine, "network", "connect", "other", "mover")
        docker(engine, "network", "disconnect", "first", "mover")
        assert sorted(networks_of(engine, "mover")) == ["other"]
        docker(engine, "start", "mover")
        addrs = docker(engine, "exec", "mover", "ip", "-o", "-4", "addr").stdout
        assert "10.213.44." in addrs and "10.213.43." not in addrs
        docker(engine, "network", "rm", "first")  # nothing holds it
    finally:
        docker(engine, "rm", "-f", "mover", check=False)
        docker(engine, "network", "rm", "first", "other", check=False)


def test_user_network_reports_only_the_options_given(engine: Engine) -> None:
    # Compose recreates a network whose options differ from its file's (issue 14).
    docker(engine, "network", "create", "plain")
    docker(engine, "network", "create", "-o", "com.docker.network.driver.mtu=1400", "tuned")
    try:
        opts = docker(engine, "network", "inspect", "-f", "{{json .Options}}", "plain", "tuned")
        assert opts.stdout.split() == ["{}", '{"com.docker.network.driver.mtu":"1400"}']
    finally:
        docker(engine, "network", "rm", "plain", "tuned")


def test_image_inspect_has_container_config_and_the_image_fields(engine: Engine,
                                                                 tmp_path: Path) -> None:
    # docker-compose 1.29 reads ContainerConfig on recreate (KeyError without it).
    cc = json.loads(docker(engine, "image", "inspect", "-f", "{{json .ContainerConfig}}",
                           "busybox").stdout)
    assert cc == {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                  "AttachStdout": False, "AttachStderr": False, "Tty": False,
                  "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
                  "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                  "OnBuild": None, "Labels": None}
    with tarfile.open(BUSYBOX_TAR) as src:
        manifest = json.load(src.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        base = json.load(src.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    health = {"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000, "Retries": 3}
    base["config"].update(Healthcheck=health, Shell=["/bin/sh", "-e", "-c"],
                          OnBuild=["RUN echo child"])
    base["container_config"] = {"Cmd": ["/bin/sh", "-c", "#(nop) ", "ONBUILD RUN echo child"],
                                "Image": "sha256:" + "0" * 64, "Hostname": "b1d0"}
    base["container"] = "b1d0" + "0" * 60
    base["docker_version"] = "20.10.24"
    _legacy_image_tar(BUSYBOX_TAR, tmp_path / "legacy.tar", base)
    docker(engine, "load", "-i", str(tmp_path / "legacy.tar"))
    try:
        doc = json.loads(docker(engine, "image", "inspect", "legacy:1").stdout)[0]
        assert doc["Config"]["Healthcheck"] == health
        assert doc["Config"]["Shell"] == ["/bin/sh", "-e", "-c"]
        assert doc["Config"]["OnBuild"] == ["RUN echo child"]
        assert doc["ContainerConfig"]["Cmd"] == base["container_config"]["Cmd"]
        assert doc["ContainerConfig"]["Hostname"] == "b1d0"
        assert doc["Container"] == base["container"] and doc["DockerVersion"] == "20.10.24"
    finally:
        docker(engine, "rmi", "legacy:1")


def test_swarm_and_plugins_answer_as_docker_with_them_off(engine: Engine) -> None:
    # Clients probe these routes; a 404 "page not found" makes them abort (issue 13).
    for args in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls")):
        p = docker(engine, *args, check=False)
        assert p.returncode != 0 and NOT_A_MANAGER in p.stderr, (args, p.stderr)
    p = docker(engine, "swarm", "leave", check=False)
    assert p.returncode != 0 and "This node is not part of a swarm" in p.stderr
    r = raw(engine, "GET", "/swarm")
    assert (r.status_code, r.json()["message"]) == (503, NOT_A_MANAGER)
    assert docker(engine, "plugin", "ls", "-q").stdout == ""
    p = docker(engine, "plugin", "inspect", "nosuch", check=False)
    assert p.returncode != 0 and 'plugin "nosuch" not found' in p.stderr, p.stderr


def test_env_values_may_span_lines(engine: Engine) -> None:
    # A PEM key passed with -e: Docker accepts it and the process sees it whole.
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"
    out = docker(engine, "run", "--rm", "--network", "none", "-e", f"TLS_KEY={pem}",
                 "busybox", "sh", "-c", 'printf %s "$TLS_KEY"').stdout
    assert out == pem
    if engine.name == "docker":
        pytest.skip("shipslog refuses a newline in HOME on purpose (it goes into the "
                    "container's /etc/passwd: RELIABILITY.md I-03); Docker runs it")
    p = docker(engine, "run", "--rm", "-e", "HOME=/x\nroot::0:0::/:/bin/sh", "busybox", "true",
               check=False)
    assert p.returncode == 125 and "HOME" in p.stderr


@pytest.mark.parametrize("name", ["host", "none", "bridge", "default", "ingress"])
def test_predefined_network_names_are_refused(engine: Engine, name: str) -> None:
    # A bridge called host or none could never be reached with --network host|none.
    r = raw(engine, "POST", "/networks/create", {"Name": name})
    if engine.name == "docker" and name == "ingress" and r.status_code == 201:
        pytest.skip("dockerd 20.10 lets a local network be called ingress; Docker 23+ "
                    "refuses it (runconfig.IsPreDefinedNetwork)")
    assert (r.status_code, r.json()["message"]) == (
        403, f"operation is not permitted on predefined {name} network ")


def test_unknown_volume_driver_is_refused(engine: Engine) -> None:
    p = docker(engine, "volume", "create", "-d", "nosuch", "v1", check=False)
    assert p.returncode != 0 and ('create v1: error looking up volume plugin nosuch: plugin '
                                  '"nosuch" not found') in p.stderr, p.stderr
    assert "v1" not in docker(engine, "volume", "ls", "-q").stdout.split()


def test_anonymous_volumes_are_labelled_and_pruned(engine: Engine) -> None:
    if engine.name == "docker":
        pytest.skip("dockerd 20.10 has no com.docker.volume.anonymous label and prunes "
                    "named volumes too; Docker 23+ labels and prunes only anonymous ones")
    unnamed = docker(engine, "volume", "create").stdout.strip()
    docker(engine, "volume", "create", "named")
    docker(engine, "run", "--name", "anon", "-v", "/data", "busybox", "true")
    (image_vol,) = set(docker(engine, "volume", "ls", "-q").stdout.split()) - {unnamed,
                                                                              "named"}
    for vol in (unnamed, image_vol):
        labels = docker(engine, "volume", "inspect", "-f", "{{json .Labels}}", vol).stdout
        assert json.loads(labels) == {"com.docker.volume.anonymous": ""}
    docker(engine, "rm", "anon")
    pruned = docker(engine, "volume", "prune", "-f").stdout.split()
    assert unnamed in pruned and image_vol in pruned
    assert docker(engine, "volume", "ls", "-q").stdout.split() == ["named"]
    docker(engine, "volume", "rm", "named")


def test_save_names_the_tags_docker_would(engine: Engine, tmp_path: Path) -> None:
    # moby tarexport.parseNames: by ID no RepoTags, by name every tag, by tag that tag.
    docker(engine, "tag", "busybox", "busybox:two")
    iid = docker(engine, "image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    try:
        for ref, want in ((iid, None), (iid[7:19], None), ("busybox", ["busybox:latest",
                          "busybox:two"]), ("busybox:two", ["busybox:two"])):
            out = tmp_path / "save.tar"
            docker(engine, "save", "-o", str(out), ref)
            with tarfile.open(out) as tar:
                manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            tags = manifest[0]["RepoTags"]
            assert (sorted(tags) if tags is not None else None) == want, (ref, tags)
    finally:
        docker(engine, "rmi", "busybox:two")


def test_logs_tail_that_is_not_a_number_means_all(engine: Engine) -> None:
    # moby daemon/logs.go: a tail strconv.Atoi cannot parse is -1, every line.
    docker(engine, "run", "--name", "lines", "--network", "none", "busybox", "sh", "-c",
           "echo 1; echo 2; echo 3")
    try:
        for tail, want in (("abc", b"1\n2\n3\n"), ("-1", b"1\n2\n3\n"), ("2", b"2\n3\n")):
            r = raw(engine, "GET", "/containers/lines/logs", params={"stdout": "1",
                                                                     "tail": tail})
            assert r.status_code == 200, (tail, r.content)
            frames, body = [], r.content
            while body:  # the multiplexed stream: an 8-byte header, then the payload
                size = int.from_bytes(body[4:8], "big")
                frames.append(body[8:8 + size])
                body = body[8 + size:]
            assert b"".join(frames) == want, tail
    finally:
        docker(engine, "rm", "lines")


def test_memory_limits_near_2_to_the_63(engine: Engine) -> None:
    # The docker CLI parses -m through a float64: 2^63-1 arrives negative, and Docker
    # answers its one check for small limits.
    p = docker(engine, "run", "--rm", "--network", "none", "-m", "9223372036854775807",
               "busybox", "true", check=False)
    assert p.returncode == 125 and "Minimum memory limit allowed is 6MB" in p.stderr
    docker(engine, "run", "--rm", "--network", "none", "-m", "4611686018427387904b", "busybox",
           "true")
    r = raw(engine, "POST", "/containers/create", b'{"Image":"busybox","HostConfig":'
            b'{"Memory":9223372036854775808}}', {"Content-Type": "application/json"})
    assert "cannot unmarshal number 9223372036854775808" in r.json()["message"]
    if engine.name == "shipslog":  # dockerd 20.10 answers this JSON error with a 500
        assert r.status_code == 400
    assert docker(engine, "ps", "-aq").stdout == ""


def test_a_refused_load_is_an_error_message_in_a_200_stream(engine: Engine,
                                                           tmp_path: Path) -> None:
    # moby postImagesLoad answers 200 and writes the error into the stream; the docker CLI
    # prints it and exits 1, the SDK raises ImageLoadError from it.
    r = raw(engine, "POST", "/images/load", b"garbage" * 10,
            {"Content-Type": "application/x-tar"})
    assert r.status_code == 200
    (msg,) = [json.loads(line) for line in r.content.splitlines() if line.strip()]
    assert msg["error"] == msg["errorDetail"]["message"]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    p = docker(engine, "load", "-i", str(bad), check=False)
    assert p.returncode == 1 and p.stderr.strip(), p.stderr
    if engine.name == "shipslog":  # the words are ours; dockerd's are its tar's
        assert msg["error"].startswith("invalid archive: not a tar file")
        assert "invalid archive: not a tar file" in p.stderr
    assert docker(engine, "images", "-q").stdout.split() != []  # busybox is still there


def test_network_names_with_spaces_work_as_in_docker(engine: Engine) -> None:
    docker(engine, "network", "create", "my net")
    try:
        out = docker(engine, "run", "--rm", "--network", "my net", "busybox", "sh", "-c",
                     "ip -o -4 addr show eth0 | wc -l").stdout
        assert out.strip() == "1"
        assert "my net" in docker(engine, "network", "ls", "--format", "{{.Name}}").stdout
        r = raw(engine, "POST", "/networks/create", {"Name": "  "})
        assert "invalid name:" in r.json()["message"]
        if engine.name == "shipslog":  # dockerd 20.10 answers it with a 500
            assert r.status_code == 400
    finally:
        docker(engine, "network", "rm", "my net")
