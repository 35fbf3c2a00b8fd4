"""API answers Docker's clients and Compose depend on (issues 13 and 14), checked with Docker's
own CLI against shipslogd on the real kernel: connect/disconnect of a created container,
network options, image inspect fields, and the routes of features that are off.

I/O: runs shipslogd and the `docker` binary; makes bridges, namespaces and containers, and
removes every one it makes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.testing.dockercli import docker, needs_docker
from engine.testing.localreg import LocalRegistry, free_port
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]

# moby daemon/cluster (errNoManager), word for word.
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                 'join" to connect this node to swarm and try again.')


def _event_types(daemon) -> list[str]:  # type: ignore[no-untyped-def]
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    return [e.type for e in store.read(after_seq=0)]


def _lookup(daemon, net: str, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    out = docker(daemon, "run", "--rm", "--network", net, "busybox", "sh", "-c",
                 f"nslookup {name} | sed -n 's/^Address: *//p'").stdout
    return out.split()


def test_connect_and_disconnect_a_created_container(daemon) -> None:
    # Compose v2 creates a service's container on its first network and connects the others
    # before the start; Docker records them and the container joins them all at start.
    for i, name in enumerate(("front", "back", "spare")):
        docker(daemon, "network", "create", "--subnet", f"10.231.{40 + i}.0/24", name)
    try:
        cid = docker(daemon, "create", "--name", "svc", "--network", "front", "busybox",
                     "sleep", "600").stdout.strip()
        docker(daemon, "network", "connect", "--alias", "db", "back", "svc")
        docker(daemon, "network", "connect", "--ip", "10.231.42.9", "spare", "svc")
        docker(daemon, "network", "connect", "back", "svc")  # again: left as it is
        nets = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                 "svc").stdout)
        assert sorted(nets) == ["back", "front", "spare"]
        assert nets["back"]["Aliases"] == ["db", cid[:12]]
        assert nets["front"]["Aliases"] == [cid[:12]]
        assert nets["spare"]["IPAMConfig"] == {"IPv4Address": "10.231.42.9"}
        docker(daemon, "network", "disconnect", "spare", "svc")
        p = docker(daemon, "network", "disconnect", "spare", "svc", check=False)
        assert p.returncode != 0 and "is not connected to the network spare" in p.stderr
        docker(daemon, "start", "svc")
        addrs = docker(daemon, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        assert "10.231.40." in addrs and "10.231.41." in addrs and "10.231.42." not in addrs
        ip = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                               "svc").stdout)["back"]["IPAddress"]
        assert ip in _lookup(daemon, "back", "db")
        # The recorded connect is the container's own: a stop and a start join it again.
        docker(daemon, "stop", "-t", "0", "svc")
        docker(daemon, "start", "svc")
        assert "10.231.41." in docker(daemon, "exec", "svc", "ip", "-o", "-4", "addr").stdout
        types = _event_types(daemon)
        assert types.count("NetworkConnectRecorded") == 2
        assert types.count("NetworkConnectWithdrawn") == 1
    finally:
        docker(daemon, "rm", "-f", "svc", check=False)
        docker(daemon, "network", "rm", "front", "back", "spare", check=False)


def test_disconnect_a_created_container_from_its_own_network(daemon) -> None:
    docker(daemon, "network", "create", "--subnet", "10.231.43.0/24", "first")
    docker(daemon, "network", "create", "--subnet", "10.231.44.0/24", "other")
    try:
        docker(daemon, "create", "--name", "mover", "--network", "first", "busybox",
               "sleep", "600")
        docker(daemon, "network", "connect", "other", "mover")
        docker(daemon, "network", "disconnect", "first", "mover")
        nets = json.loads(docker(daemon, "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                 "mover").stdout)
        assert sorted(nets) == ["other"]
        docker(daemon, "start", "mover")
        addrs = docker(daemon, "exec", "mover", "ip", "-o", "-4", "addr").stdout
        assert "10.231.44." in addrs and "10.231.43." not in addrs
        docker(daemon, "network", "rm", "first")  # nothing holds it
    finally:
        docker(daemon, "rm", "-f", "mover", check=False)
        docker(daemon, "network", "rm", "first", "other", check=False)


def test_user_network_reports_only_the_options_given(daemon) -> None:
    # Compose recreates a network whose options differ from its file's (issue 14).
    docker(daemon, "network", "create", "plain")
    docker(daemon, "network", "create", "-o", "com.docker.network.driver.mtu=1400", "tuned")
    try:
        opts = docker(daemon, "network", "inspect", "-f", "{{json .Options}}", "plain", "tuned")
        assert opts.stdout.split() == ["{}", '{"com.docker.network.driver.mtu":"1400"}']
    finally:
        docker(daemon, "network", "rm", "plain", "tuned")


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


def test_image_inspect_has_container_config_and_the_image_fields(daemon, busybox_tar,
                                                                 tmp_path) -> None:
    # docker-compose 1.29 reads ContainerConfig on recreate (KeyError without it). An image
    # built by BuildKit has none: Docker 24 sends its empty config.
    cc = json.loads(docker(daemon, "image", "inspect", "-f", "{{json .ContainerConfig}}",
                           "busybox").stdout)
    assert cc == {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                  "AttachStdout": False, "AttachStderr": False, "Tty": False,
                  "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
                  "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                  "OnBuild": None, "Labels": None}
    with tarfile.open(busybox_tar) as src:
        manifest = json.load(src.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        base = json.load(src.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    health = {"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000, "Retries": 3}
    base["config"].update(Healthcheck=health, Shell=["/bin/sh", "-e", "-c"],
                          OnBuild=["RUN echo child"])
    base["container_config"] = {"Cmd": ["/bin/sh", "-c", "#(nop) ", "ONBUILD RUN echo child"],
                                "Image": "sha256:" + "0" * 64, "Hostname": "b1d0"}
    base["container"] = "b1d0" + "0" * 60
    base["docker_version"] = "20.10.24"
    _legacy_image_tar(busybox_tar, tmp_path / "legacy.tar", base)
    docker(daemon, "load", "-i", str(tmp_path / "legacy.tar"))
    try:
        doc = json.loads(docker(daemon, "image", "inspect", "legacy:1").stdout)[0]
        assert doc["Config"]["Healthcheck"] == health
        assert doc["Config"]["Shell"] == ["/bin/sh", "-e", "-c"]
        assert doc["Config"]["OnBuild"] == ["RUN echo child"]
        assert doc["ContainerConfig"]["Cmd"] == base["container_config"]["Cmd"]
        assert doc["ContainerConfig"]["Hostname"] == "b1d0"
        assert doc["Container"] == base["container"] and doc["DockerVersion"] == "20.10.24"
    finally:
        docker(daemon, "rmi", "legacy:1")


def test_swarm_and_plugins_answer_as_docker_with_them_off(daemon) -> None:
    # Clients probe these routes; a 404 "page not found" makes them abort (issue 13).
    for args in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls")):
        p = docker(daemon, *args, check=False)
        assert p.returncode != 0 and NOT_A_MANAGER in p.stderr, (args, p.stderr)
    p = docker(daemon, "swarm", "leave", check=False)
    assert p.returncode != 0 and "This node is not part of a swarm" in p.stderr
    with pytest.raises(ApiError) as info:
        daemon.client().get_json("/swarm")
    assert (info.value.status, info.value.message) == (503, NOT_A_MANAGER)
    assert docker(daemon, "plugin", "ls", "-q").stdout == ""
    p = docker(daemon, "plugin", "inspect", "nosuch", check=False)
    assert p.returncode != 0 and 'plugin "nosuch" not found' in p.stderr, p.stderr


def test_search_with_no_index_reachable_is_dockers_500(daemon) -> None:
    port = free_port("127.0.0.1")  # nothing listens there: loopback only, never the internet
    p = docker(daemon, "search", f"127.0.0.1:{port}/busybox", check=False)
    url = f"http://127.0.0.1:{port}/v1/search?q=busybox&n=25"
    assert p.returncode != 0 and f'Get "{url}": ' in p.stderr, p.stderr
    with pytest.raises(ApiError) as info:
        daemon.client().get_json("/images/search", {"term": "busybox", "limit": "101"})
    assert (info.value.status, info.value.message) == (400, "limit 101 is outside the range "
                                                            "of [1, 100]")


def test_distribution_inspect_resolves_through_the_registry(daemon) -> None:
    with LocalRegistry.running() as reg:
        target = f"{reg.domain}/dist/busybox:v1"
        docker(daemon, "tag", "busybox", target)
        pushed = docker(daemon, "push", target).stdout
        digest = pushed.split("digest: ")[1].split()[0]
        doc = daemon.client().get_json(f"/distribution/{target}/json")
        assert doc["Descriptor"]["digest"] == digest
        assert doc["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        with pytest.raises(ApiError) as info:
            daemon.client().get_json(f"/distribution/{reg.domain}/dist/busybox:nope/json")
        assert info.value.status == 404
        docker(daemon, "rmi", target)
    private = LocalRegistry.make(users={"alice": "s3cret"})
    try:
        private.start()
        with pytest.raises(ApiError) as info:
            daemon.client().get_json(f"/distribution/{private.domain}/x/y:1/json")
        assert info.value.status == 500
        assert info.value.message.endswith("no basic auth credentials")
    finally:
        private.cleanup()


def test_env_values_may_span_lines(daemon) -> None:
    # A PEM key passed with -e: Docker accepts it and the process sees it whole.
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"
    out = docker(daemon, "run", "--rm", "-e", f"TLS_KEY={pem}", "busybox", "sh", "-c",
                 'printf %s "$TLS_KEY"').stdout
    assert out == pem
    p = docker(daemon, "run", "--rm", "-e", "HOME=/x\nroot::0:0::/:/bin/sh", "busybox", "true",
               check=False)
    assert p.returncode == 125 and "HOME" in p.stderr  # it goes into /etc/passwd


def test_predefined_network_names_are_refused(daemon) -> None:
    # A bridge called host or none could never be reached with --network host|none.
    for name in ("host", "none", "bridge", "default", "ingress"):
        with pytest.raises(ApiError) as info:
            daemon.client().post_json("/networks/create", None, {"Name": name})
        assert (info.value.status, info.value.message) == (
            403, f"operation is not permitted on predefined {name} network ")
    names = docker(daemon, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert names == ["bridge"]


def test_volume_driver_and_anonymous_volumes_as_docker(daemon) -> None:
    p = docker(daemon, "volume", "create", "-d", "nosuch", "v1", check=False)
    assert p.returncode != 0 and ('create v1: error looking up volume plugin nosuch: plugin '
                                  '"nosuch" not found') in p.stderr, p.stderr
    assert docker(daemon, "volume", "ls", "-q").stdout == ""
    unnamed = docker(daemon, "volume", "create").stdout.strip()
    docker(daemon, "volume", "create", "named")
    docker(daemon, "run", "--name", "anon", "-v", "/data", "busybox", "true")
    (image_vol,) = set(docker(daemon, "volume", "ls", "-q").stdout.split()) - {unnamed,
                                                                              "named"}
    for vol in (unnamed, image_vol):
        labels = docker(daemon, "volume", "inspect", "-f", "{{json .Labels}}", vol).stdout
        assert json.loads(labels) == {"com.docker.volume.anonymous": ""}
    docker(daemon, "rm", "anon")
    pruned = docker(daemon, "volume", "prune", "-f").stdout.split()
    assert unnamed in pruned and image_vol in pruned
    assert docker(daemon, "volume", "ls", "-q").stdout.split() == ["named"]
    docker(daemon, "volume", "rm", "named")


def test_save_names_the_tags_docker_would(daemon, tmp_path) -> None:
    # moby tarexport.parseNames: by ID no RepoTags, by name every tag, by tag that tag.
    docker(daemon, "tag", "busybox", "busybox:two")
    iid = docker(daemon, "image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    try:
        for ref, want in ((iid, None), (iid[7:19], None), ("busybox", ["busybox:latest",
                          "busybox:two"]), ("busybox:two", ["busybox:two"])):
            out = tmp_path / "save.tar"
            docker(daemon, "save", "-o", str(out), ref)
            with tarfile.open(out) as tar:
                manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            tags = manifest[0]["RepoTags"]
            assert (sorted(tags) if tags is not None else None) == want, (ref, tags)
    finally:
        docker(daemon, "rmi", "busybox:two")


def test_logs_tail_that_is_not_a_number_means_all(daemon) -> None:
    # moby daemon/logs.go: a tail strconv.Atoi cannot parse is -1, every line.
    docker(daemon, "run", "--name", "lines", "busybox", "sh", "-c", "echo 1; echo 2; echo 3")
    try:
        c = daemon.client()
        for tail, want in (("abc", b"1\n2\n3\n"), ("-1", b"1\n2\n3\n"), ("2", b"2\n3\n")):
            r = c.request("GET", "/containers/lines/logs", {"stdout": "1", "tail": tail})
            assert r.status == 200, (tail, r.body)
            frames, body = [], r.body
            while body:  # the multiplexed stream: an 8-byte header, then the payload
                size = int.from_bytes(body[4:8], "big")
                frames.append(body[8:8 + size])
                body = body[8 + size:]
            assert b"".join(frames) == want, tail
    finally:
        docker(daemon, "rm", "lines")


def test_memory_limits_near_2_to_the_63(daemon) -> None:
    # The docker CLI parses -m through a float64: 2^63-1 arrives negative, and Docker
    # answers its one check for small limits.
    p = docker(daemon, "run", "--rm", "-m", "9223372036854775807", "busybox", "true",
               check=False)
    assert p.returncode == 125 and "Minimum memory limit allowed is 6MB" in p.stderr
    # 2^62: twice it is no int64, which runc refused at create (a 500); Docker runs it.
    docker(daemon, "run", "--rm", "-m", "4611686018427387904b", "busybox", "true")
    r = daemon.client().request("POST", "/containers/create", None,
                                b'{"Image":"busybox","HostConfig":{"Memory":'
                                b'9223372036854775808}}', {"Content-Type": "application/json"})
    assert r.status == 400 and b"cannot unmarshal number 9223372036854775808" in r.body
    assert docker(daemon, "ps", "-aq").stdout == ""


def test_a_network_create_that_fails_half_way_leaves_no_network(daemon) -> None:
    daemon.stop()
    daemon.start(failpoints="net.after_network_setup=error")
    p = docker(daemon, "network", "create", "half", check=False)
    assert p.returncode != 0 and "failpoint net.after_network_setup" in p.stderr
    assert docker(daemon, "network", "ls", "--format", "{{.Name}}").stdout.split() == ["bridge"]
    types = _event_types(daemon)
    assert types[-2:] == ["OperationFailed", "NetworkRemoved"], types
    daemon.stop()
    daemon.start()
    docker(daemon, "network", "create", "half")  # the name is free again
    docker(daemon, "network", "rm", "half")


def test_a_refused_load_is_an_error_message_in_a_200_stream(daemon, tmp_path) -> None:
    # moby postImagesLoad answers 200 and writes the error into the stream; the docker CLI
    # prints it and exits 1, the SDK raises ImageLoadError from it.
    r = daemon.client().request("POST", "/images/load", None, b"garbage" * 10,
                                {"Content-Type": "application/x-tar"})
    assert r.status == 200
    (msg,) = [json.loads(line) for line in r.body.splitlines() if line.strip()]
    assert msg["error"] == msg["errorDetail"]["message"]
    assert msg["error"].startswith("invalid archive: not a tar file")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    p = docker(daemon, "load", "-i", str(bad), check=False)
    assert p.returncode == 1 and "invalid archive: not a tar file" in p.stderr, p.stderr
    assert docker(daemon, "images", "-q").stdout.split() != []  # busybox is still there


def test_network_names_with_spaces_work_as_in_docker(daemon) -> None:
    docker(daemon, "network", "create", "my net")
    try:
        out = docker(daemon, "run", "--rm", "--network", "my net", "busybox", "sh", "-c",
                     "ip -o -4 addr show eth0 | wc -l").stdout
        assert out.strip() == "1"
        assert "my net" in docker(daemon, "network", "ls", "--format", "{{.Name}}").stdout
        for bad, message in (("  ", "invalid name:"), ("a\nb", "control characters")):
            with pytest.raises(ApiError) as info:
                daemon.client().post_json("/networks/create", None, {"Name": bad})
            assert info.value.status == 400 and message in info.value.message
    finally:
        docker(daemon, "network", "rm", "my net")
