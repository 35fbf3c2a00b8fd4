"""Issue 13, the pure parts: create options validated with Docker's rules and messages,
applied in the OCI spec, copied from other containers, shown by inspect where Docker shows
them, recorded without changing the bytes of older events — and never dropped."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.docker import inspect_host
from engine.api.docker.hostopts import REFUSED, ULIMIT_NAMES
from engine.api.docker.models import ContainerCreateBody
from engine.api.docker.translate import create_body_to_config
from engine.cli.main import build_parser
from engine.cli.runopts import build_create
from engine.core import links
from engine.core.createopts import for_start, resolve_create_options
from engine.core.errors import Conflict, InvalidArgument, NotFound
from engine.core.oci_spec import build_spec, update_resources
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Envelope
from events.values import ContainerConfig, DeviceMapping, MountSpec, PortBinding, Ulimit
from projections.fold import fold_batch
from projections.state import ContainerView, Endpoint, EngineState, NetworkView

HOST = {"RLIMIT_NOFILE": (1024, 20000)}
IMAGE_ID = "sha256:" + "a" * 64


def translate(host: dict[str, Any], **config: Any) -> tuple[dict[str, Any], list[str]]:
    body = msgspec.convert({"Image": "busybox", **config, "HostConfig": host},
                           ContainerCreateBody)
    fields, _, warnings = create_body_to_config(body)
    return fields, warnings


def refused(host: dict[str, Any], match: str, **config: Any) -> None:
    with pytest.raises(InvalidArgument, match=match):
        translate(host, **config)


def spec(group: bytes | None = None, devices: Any = (), **cfg: Any) -> dict[str, Any]:
    config = ContainerConfig(image="busybox", image_id=IMAGE_ID, cmd=("true",), **cfg)
    return build_spec(config, None, env=[], rootfs="/r", hostname="abc", netns_path="/ns",
                      cgroups_path="/shipslog/abc", host_rlimits=HOST, group=group,
                      devices=devices)


# -- translation: applied, with Docker's validation -----------------------------------------


def test_applied_options_become_config_fields() -> None:
    fields, warnings = translate({
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
        "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "", "CgroupPermissions": ""}],
        "DeviceCgroupRules": ["c 1:3 rwm", "b *:* m"], "ShmSize": 1 << 20,
        "ExtraHosts": ["a:10.0.0.1", "b=::1", "gw:host-gateway"], "Dns": ["1.1.1.1"],
        "DnsSearch": ["corp"], "DnsOptions": ["ndots:2"], "Sysctls": {"net.core.somaxconn": "5"},
        "CgroupParent": "/mine", "GroupAdd": ["audio", "10"], "CpusetCpus": "0-1,3",
        "CpuShares": 512, "MemorySwappiness": 0, "OomKillDisable": True, "OomScoreAdj": -5,
        "PidMode": "host", "IpcMode": "none", "UTSMode": "host", "CgroupnsMode": "private",
        "VolumesFrom": ["src:ro"], "Runtime": "runc", "Isolation": "default",
    }, MacAddress="02:42:AC:11:00:02")
    assert fields["ulimits"] == (Ulimit(name="nofile", soft=100, hard=200),)
    assert fields["devices"] == (DeviceMapping(path_on_host="/dev/fuse",
                                               path_in_container="/dev/fuse"),)
    assert fields["extra_hosts"] == ("a:10.0.0.1", "b:::1", "gw:host-gateway")
    assert fields["sysctls"] == {"net.core.somaxconn": "5"}
    assert fields["memory_swappiness"] == 0 and fields["oom_kill_disable"] is True
    assert (fields["pid_mode"], fields["ipc_mode"], fields["uts_mode"],
            fields["cgroupns_mode"]) == ("host", "none", "host", "private")
    assert fields["mac_address"] == "02:42:ac:11:00:02"
    assert fields["volumes_from"] == ("src:ro",)
    assert any("OOM killer is disabled" in w for w in warnings)  # no --memory: Docker warns
    ContainerConfig(image_id=IMAGE_ID, **{k: v for k, v in fields.items()
                                          if v is not None})  # every field is recordable


@pytest.mark.parametrize(("field", "flag"), REFUSED)
def test_each_unsupported_field_is_refused_by_name(field: str, flag: str) -> None:
    value: Any = {"BlkioWeight": 300}.get(field, ["x"] if field.startswith(
        ("Blkio", "DeviceRequests", "Masked", "Readonly", "Links")) else 1)
    if field in ("UsernsMode", "VolumeDriver", "Cgroup"):
        value = "x"
    if field in ("StorageOpt", "Annotations"):
        value = {"a": "b"}
    refused({field: value}, flag)


def test_an_inspected_host_config_sent_back_keeps_its_default_masked_paths() -> None:
    """inspect shows the default MaskedPaths/ReadonlyPaths; a client that creates a copy
    from it (SDK round-trips, UIs that duplicate a container) sends them back."""
    from engine.core.oci_spec import MASKED_PATHS, READONLY_PATHS
    old_docker = [p for p in MASKED_PATHS if "powercap" not in p]
    for masked in (list(MASKED_PATHS), old_docker):
        translate({"MaskedPaths": masked, "ReadonlyPaths": list(READONLY_PATHS)})
    refused({"MaskedPaths": ["/proc/kcore"]}, "MaskedPaths")
    refused({"ReadonlyPaths": ["/proc/sys"]}, "ReadonlyPaths")


def test_docker_cli_zero_values_are_not_settings() -> None:
    """docker sends every field; zeros mean "not given" and must not be refused."""
    fields, warnings = translate({f: v for f, v in (
        ("BlkioWeight", 0), ("BlkioWeightDevice", []), ("CpuCount", 0), ("UsernsMode", ""),
        ("MaskedPaths", None), ("Links", None), ("MemorySwappiness", -1), ("Isolation", ""),
        ("OomKillDisable", False), ("Runtime", ""))})
    assert fields["memory_swappiness"] == -1 and warnings == []


@pytest.mark.parametrize(("host", "match"), [
    ({"Runtime": "kata"}, "unknown or invalid runtime name: kata"),
    ({"Isolation": "hyperv"}, "invalid isolation 'hyperv' on linux"),
    ({"Ulimits": [{"Name": "nofiles", "Soft": 1}]}, "invalid ulimit type: nofiles"),
    ({"Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 4}]}, "5 > 4"),
    ({"Devices": [{"PathOnHost": "dev/x"}]}, "absolute path"),
    ({"Devices": [{"PathOnHost": "/dev/x", "CgroupPermissions": "rwx"}]}, "invalid device mode"),
    ({"DeviceCgroupRules": ["c 1:3 rwmx"]}, "invalid device cgroup format"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"ExtraHosts": ["a:not-an-ip"]}, "invalid IP address"),
    ({"ExtraHosts": ["a\nb:1.2.3.4"]}, "line break"),
    ({"Dns": ["1.2.3.4\nnameserver 6.6.6.6"]}, "line break"),
    ({"DnsOptions": ["ndots:2 x"]}, "invalid DNS option"),
    ({"Sysctls": {"kernel.panic": "1"}}, "sysctl 'kernel.panic=1' is not whitelisted"),
    ({"Sysctls": {"kernel.shmmax": "1"}, "IpcMode": "host"}, "hosts ipc namespace"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}, "NetworkMode": "host"}, "host network"),
    ({"CgroupParent": "../../escape"}, "invalid cgroup parent"),
    ({"GroupAdd": ["a:b"]}, "invalid group"),
    ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus"),
    ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
    ({"MemorySwap": 1 << 30}, "always set the Memory limit when using Memoryswap"),
    ({"OomScoreAdj": 1001}, r"range for oom score adj is \[-1000, 1000\]"),
    ({"MemoryReservation": 1024}, "Minimum memory reservation allowed is 6MB"),
    ({"IpcMode": "container:db"}, "--ipc=container:db is not supported by shipslog yet"),
    ({"PidMode": "container:../x"}, "invalid PID mode"),
    ({"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
    ({"UTSMode": "private"}, "invalid UTS mode"),
    ({"CgroupnsMode": "x"}, "invalid cgroup namespace mode"),
    ({"VolumesFrom": ["src:rx"]}, "invalid --volumes-from"),
])
def test_invalid_values_are_refused_with_dockers_words(host: dict[str, Any], match: str) -> None:
    refused(host, match)


def test_conflicts() -> None:
    refused({"UTSMode": "host"}, "hostname and the UTS mode", Hostname="h")
    refused({"NetworkMode": "none"}, "mac-address and the network mode",
            MacAddress="02:00:00:00:00:01")
    refused({}, "invalid MAC address", MacAddress="02:00:00:00:00")
    refused({}, "multicast", MacAddress="01:00:5e:00:00:01")
    refused({}, "NetworkDisabled is not supported", NetworkDisabled=True)


@given(st.sampled_from(ULIMIT_NAMES), st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_ulimits_are_kept_exactly_or_refused(name: str, soft: int, hard: int) -> None:
    host = {"Ulimits": [{"Name": name, "Soft": soft, "Hard": hard}]}
    if soft > hard:
        refused(host, "soft limit must be less than or equal to hard limit")
        return
    fields, _ = translate(host)
    rlimits = spec(ulimits=fields["ulimits"])["process"]["rlimits"]
    assert {"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard} in rlimits


@given(st.from_regex(r"[a-z]{1,8}(\.[a-z_]{1,8}){1,3}", fullmatch=True))
def test_only_namespaced_sysctls_pass(key: str) -> None:
    namespaced = key.startswith(("net.", "fs.mqueue.")) or key in (
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
    if namespaced:
        assert translate({"Sysctls": {key: "1"}})[0]["sysctls"] == {key: "1"}
    else:
        refused({"Sysctls": {key: "1"}}, "is not whitelisted")


# -- the OCI spec -------------------------------------------------------------------------


def test_spec_applies_limits_and_kernel_settings() -> None:
    s = spec(
        ulimits=(Ulimit(name="nofile", soft=30000, hard=40000),), shm_size=1 << 20,
        sysctls={"net.core.somaxconn": "5"}, oom_score_adj=-5, cpu_shares=512,
        cpuset_cpus="0", cpuset_mems="0", memory=64 << 20, memory_swap=-1,
        memory_swappiness=10, memory_reservation=32 << 20, oom_kill_disable=True,
        device_cgroup_rules=("c 1:3 rwm", "b *:* m"))
    nofile = [r for r in s["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE"]
    assert nofile == [{"type": "RLIMIT_NOFILE", "soft": 30000, "hard": 40000}]  # not clamped
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={1 << 20}" in shm["options"]
    assert s["linux"]["sysctl"] == {"net.core.somaxconn": "5"}
    assert s["process"]["oomScoreAdj"] == -5
    res = s["linux"]["resources"]
    assert res["cpu"] == {"shares": 512, "cpus": "0", "mems": "0"}
    assert res["memory"] == {"limit": 64 << 20, "swap": -1, "swappiness": 10,
                             "reservation": 32 << 20, "disableOOMKiller": True}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in res["devices"]
    assert {"allow": True, "type": "b", "access": "m"} == res["devices"][-1]


def test_spec_defaults_are_unchanged() -> None:
    s = spec()
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert "size=67108864" in shm["options"]
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["pid", "ipc", "mount", "uts",
                                                             "network"]
    assert "sysctl" not in s["linux"] and "oomScoreAdj" not in s["process"]
    assert "cpu" not in s["linux"]["resources"] and "memory" not in s["linux"]["resources"]


def test_host_modes_drop_namespaces() -> None:
    s = spec(pid_mode="host", ipc_mode="host", uts_mode="host", cgroupns_mode="private")
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["mount", "network", "cgroup"]
    assert "hostname" not in s
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    assert not any(m["destination"] == "/dev/shm" for m in spec(ipc_mode="none")["mounts"])


def test_devices_and_group_add() -> None:
    dev = {"path": "/dev/x", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
           "uid": 0, "gid": 0, "access": "rw"}
    group = b"root:x:0:\naudio:x:29:\n"
    s = spec(group=group, devices=[dev], group_add=("audio", "4321"))
    assert s["linux"]["devices"] == [{k: v for k, v in dev.items() if k != "access"}]
    assert {"allow": True, "type": "c", "major": 10, "minor": 229,
            "access": "rw"} in s["linux"]["resources"]["devices"]
    assert s["process"]["user"]["additionalGids"] == [0, 29, 4321]  # with the primary gid
    with pytest.raises(InvalidArgument, match="Unable to find group video"):
        spec(group=group, group_add=("video",))


def test_update_keeps_unlimited_quota_with_shares() -> None:
    config = ContainerConfig(image="b", image_id=IMAGE_ID, cpu_shares=512)
    assert update_resources(config)["cpu"] == {"shares": 512, "period": 100_000, "quota": -1}


# -- options that read other state: --volumes-from, host-gateway ----------------------------


def _state(*containers: ContainerView, gateway: str = "172.17.0.1") -> EngineState:
    s = EngineState()
    net = NetworkView(id="n1", name="bridge", gateway=gateway)  # type: ignore[call-arg]
    s = dataclasses.replace(s, networks=s.networks.set("n1", net),
                            network_names=s.network_names.set("bridge", "n1"))
    for c in containers:
        s = dataclasses.replace(s, containers=s.containers.set(c.id, c),
                                names=s.names.set(c.name, c.id))
    return s


def test_volumes_from_copies_binds_and_volumes() -> None:
    src = ContainerView(id="b" * 64, name="src", config=ContainerConfig(
        image="b", image_id=IMAGE_ID, mounts=(
            MountSpec(type="bind", source="/h", target="/h"),
            MountSpec(type="volume", source="v1", target="/v", read_only=True),
            MountSpec(type="tmpfs", target="/t"))))
    own = ContainerConfig(image="b", image_id=IMAGE_ID, volumes_from=("src",), mounts=(
        MountSpec(type="bind", source="/mine", target="/h"),
        MountSpec(type="volume", target="/v")))  # an image VOLUME: the copy replaces it
    got = resolve_create_options(_state(src), own).mounts
    assert got == (MountSpec(type="bind", source="/mine", target="/h"),
                   MountSpec(type="volume", source="v1", target="/v", read_only=True))
    rw = msgspec.structs.replace(own, volumes_from=("src:rw",), mounts=())
    assert all(not m.read_only for m in resolve_create_options(_state(src), rw).mounts)
    with pytest.raises(InvalidArgument, match="could not get container for src"):
        resolve_create_options(_state(), own)


def test_host_gateway_is_the_default_bridges_gateway() -> None:
    cfg = ContainerConfig(image="b", image_id=IMAGE_ID, extra_hosts=("a:1.2.3.4",
                                                                     "gw:host-gateway"))
    assert resolve_create_options(_state(), cfg).extra_hosts == ("a:1.2.3.4", "gw:172.17.0.1")
    with pytest.raises(InvalidArgument, match="host-gateway"):
        resolve_create_options(_state(gateway=""), cfg)


# -- inspect ------------------------------------------------------------------------------


def test_inspect_fields_as_docker_shows_them() -> None:
    cfg = ContainerConfig(
        image="b", image_id=IMAGE_ID, memory=64 << 20, dns=("1.1.1.1",), shm_size=1 << 20,
        ports=(PortBinding(container_port=80, host_port=8080),
               PortBinding(container_port=53, protocol="udp", host_ip="127.0.0.1")),
        mounts=(MountSpec(type="bind", source="/h", target="/c", read_only=True),
                MountSpec(type="volume", source="named", target="/n"),
                MountSpec(type="volume", source="f" * 64, target="/anon")))
    host = inspect_host.host_config_fields(cfg)
    assert host["PortBindings"]["80/tcp"][0].HostPort == "8080"
    assert host["PortBindings"]["53/udp"][0].HostIp == "127.0.0.1"
    assert host["Binds"] == ["/h:/c:ro", "named:/n"]  # anonymous volumes are not binds
    assert host["MemorySwap"] == 128 << 20  # Docker shows the default: twice --memory
    assert host["ShmSize"] == 1 << 20 and host["Dns"] == ["1.1.1.1"]
    assert host["IpcMode"] == "private" and host["Runtime"] == "runc"
    view = ContainerView(id="c" * 64, name="x", config=cfg)
    mounts = {p.Destination: p for p in inspect_host.mount_points(view, "/var/lib/s/volumes")}
    assert mounts["/c"].Type == "bind" and mounts["/c"].Source == "/h" and not mounts["/c"].RW
    assert mounts["/n"].Source == "/var/lib/s/volumes/named/_data"
    assert mounts["/anon"].Name == "f" * 64


# -- the log: new fields leave older events' bytes alone ---------------------------------------


def test_defaults_are_not_encoded_so_old_events_keep_their_hashes() -> None:
    old = b'{"image":"busybox","image_id":"sha256:' + b"a" * 64 + b'","cmd":["true"]}'
    cfg = msgspec.json.decode(old, type=ContainerConfig)
    assert cfg.ulimits == () and cfg.memory_swappiness == -1 and cfg.sysctls == {}
    assert msgspec.json.encode(cfg) == old


# -- our CLI sends them as docker does ------------------------------------------------------------


def test_cli_flags_reach_the_body() -> None:
    args = build_parser().parse_args([
        "run", "--device", "/dev/fuse:rw", "--device", "/dev/a:/dev/b", "--dns-search", "c",
        "--sysctl", "net.x=1", "--group-add", "audio", "--pid", "host", "--cgroupns",
        "private", "--memory-swappiness", "0", "--oom-kill-disable", "--mac-address",
        "02:00:00:00:00:01", "--volumes-from", "src:ro", "--link", "db", "--runtime", "runc",
        "--memory-reservation", "8m", "busybox"])
    _, body = build_create(args, {})
    host = body["HostConfig"]
    assert host["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"},
        {"PathOnHost": "/dev/a", "PathInContainer": "/dev/b", "CgroupPermissions": "rwm"}]
    assert host["Sysctls"] == {"net.x": "1"} and host["MemorySwappiness"] == 0
    assert host["PidMode"] == "host" and host["Links"] == ["db"]
    assert host["MemoryReservation"] == 8 << 20 and host["OomKillDisable"] is True
    assert body["MacAddress"] == "02:00:00:00:00:01"


# -- legacy links ---------------------------------------------------------------------------


def _linked() -> tuple[EngineState, ContainerView]:
    db = ContainerView(id="d" * 64, name="db", status="running", config=ContainerConfig(
        image="b", image_id=IMAGE_ID, exposed_ports=("5432/tcp", "53/udp")),
        networks={"n1": Endpoint(network_id="n1", ip="172.17.0.5")})
    web_cfg = ContainerConfig(image="b", image_id=IMAGE_ID, links=("db:my-db",))
    state = _state(db)
    web = ContainerView(id="e" * 64, name="web", config=resolve_create_options(state, web_cfg))
    return _state(db, web), web


def test_links_resolve_to_ids_and_give_hosts_and_env() -> None:
    state, web = _linked()
    assert web.config.links == ("d" * 64 + ":my-db",)  # a rename of db keeps the link
    running, env = links.for_start(state, web)
    assert running.config.extra_hosts == ("my-db:172.17.0.5", "db:172.17.0.5",
                                          "dddddddddddd:172.17.0.5")
    assert env[0] == "MY_DB_PORT=udp://172.17.0.5:53"  # the lowest port, as moby sorts
    assert "MY_DB_PORT_5432_TCP_ADDR=172.17.0.5" in env and env[-1] == "MY_DB_NAME=/web/my-db"
    assert links.shown(state, web) == ["/db:/web/my-db"]


def test_link_to_a_stopped_container_refuses_the_start() -> None:
    state, web = _linked()
    db = msgspec.structs.replace(state.containers["d" * 64], status="exited")
    state = dataclasses.replace(state, containers=state.containers.set(db.id, db))
    with pytest.raises(Conflict, match="Cannot link to a non running container: /db AS "
                                       "/web/my-db"):
        links.for_start(state, web)


def test_remove_link_is_an_event_the_fold_applies() -> None:
    state, web = _linked()
    decision = links.decide_remove_link(state, "/web/my-db", op_id="op")
    (pending,) = decision.pending
    assert pending.event == v.ContainerLinkRemoved(container_id=web.id, alias="my-db")
    env = Envelope(seq=1, stream=pending.stream, stream_version=1, schema_version=1,
                   recorded_at=0, actor=SYSTEM_ACTOR, op_id="op", event=pending.event)
    after, _ = fold_batch(state, [env])
    assert after.containers[web.id].config.links == ()
    with pytest.raises(NotFound, match="Could not find entity for /web/other"):
        links.decide_remove_link(state, "web/other", op_id="op")
    with pytest.raises(Conflict, match="cannot remove the default link name"):
        links.decide_remove_link(state, "web", op_id="op")


def test_update_applies_more_and_refuses_the_rest() -> None:
    from engine.api.docker.models import HostConfig
    from engine.api.docker.translate import update_changes

    raw = {"CpuShares": 512, "CpusetCpus": "0-1", "MemoryReservation": 8 << 20,
           "MemorySwap": -1, "BlkioWeight": 0, "KernelMemoryTCP": 0}
    changes, warnings = update_changes(msgspec.convert(raw, HostConfig), raw)
    assert (changes.cpu_shares, changes.cpuset_cpus, changes.memory_reservation,
            changes.memory_swap) == (512, "0-1", 8 << 20, -1) and warnings == []
    with pytest.raises(InvalidArgument, match="BlkioWeight cannot be updated"):
        update_changes(HostConfig(), {"BlkioWeight": 300})


def test_pid_container_mode_joins_the_running_containers_namespace() -> None:
    state, _ = _linked()
    cfg = ContainerConfig(image="b", image_id=IMAGE_ID, pid_mode="container:db")
    resolved = resolve_create_options(state, cfg)
    assert resolved.pid_mode == "container:" + "d" * 64  # recorded by id
    db = msgspec.structs.replace(state.containers["d" * 64], pid=4242)
    state = dataclasses.replace(state, containers=state.containers.set(db.id, db))
    joined, _ = for_start(state, ContainerView(id="f" * 64, name="j", config=resolved))
    namespaces = spec(pid_mode=joined.config.pid_mode)["linux"]["namespaces"]
    assert namespaces[0] == {"type": "pid", "path": "/proc/4242/ns/pid"}
    stopped = dataclasses.replace(state, containers=state.containers.set(
        db.id, msgspec.structs.replace(db, status="exited", pid=0)))
    with pytest.raises(Conflict, match="cannot join PID of a non running container"):
        for_start(stopped, ContainerView(id="f" * 64, name="j", config=resolved))
