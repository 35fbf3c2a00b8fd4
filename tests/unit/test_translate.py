"""Docker create bodies → ContainerConfig fields, image-default merging, and filters.

I/O: none. The two bodies below were captured from the real docker CLI 28.2 (`docker run` and
`docker create -it --entrypoint ""`) against our server, so the tests see what clients send.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api.docker.models import ContainerCreateBody
from engine.api.docker.translate import create_body_to_config, merge_image_defaults, parse_filters
from engine.core.errors import InvalidArgument
from engine.core.volume_plan import CREATE_HOST_PATH, plan_mounts
from events.values import ContainerConfig, ImageConfig, MountSpec, PortBinding, RestartPolicy

# docker run -d --name web -p 8080:80 -p 127.0.0.1::53/udp -v /tmp:/data:ro -v vol1:/v
#   --mount type=tmpfs,target=/scratch,tmpfs-size=1000000 -e A=1 -e B --restart on-failure:3
#   --memory 64m --cpus 1.5 --tmpfs /run:size=64m,noexec --cap-add net_admin
#   --security-opt no-new-privileges --read-only --init --entrypoint /bin/sh -w /work
#   -u 1000:1000 -h myhost -l x=y --stop-signal INT --stop-timeout 5 --log-driver local
#   busybox -c 'sleep 1'
DOCKER_RUN_BODY = (
    '{"Hostname":"myhost","Domainname":"","User":"1000:1000","AttachStdin":false,"AttachStd'
    'out":false,"AttachStderr":false,"ExposedPorts":{"53/udp":{},"80/tcp":{}},"Tty":false,"'
    'OpenStdin":false,"StdinOnce":false,"Env":["A=1","B"],"Cmd":["-c","sleep 1"],"Image":"b'
    'usybox","Volumes":{},"WorkingDir":"/work","Entrypoint":["/bin/sh"],"OnBuild":null,"Lab'
    'els":{"x":"y"},"StopSignal":"INT","StopTimeout":5,"HostConfig":{"Binds":["/tmp:/data:r'
    'o","vol1:/v"],"ContainerIDFile":"","LogConfig":{"Type":"local","Config":{}},"NetworkMo'
    'de":"default","PortBindings":{"53/udp":[{"HostIp":"127.0.0.1","HostPort":""}],"80/tcp"'
    ':[{"HostIp":"","HostPort":"8080"}]},"RestartPolicy":{"Name":"on-failure","MaximumRetry'
    'Count":3},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],'
    '"CapAdd":["CAP_NET_ADMIN"],"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"'
    'DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,'
    '"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootf'
    's":true,"SecurityOpt":["no-new-privileges"],"Tmpfs":{"/run":"size=64m,noexec"},"UTSMod'
    'e":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":67108864,"Nano'
    'Cpus":1500000000,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDevice'
    'ReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":['
    '],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus"'
    ':"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"Memor'
    'yReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit'
    '":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,'
    '"Mounts":[{"Type":"tmpfs","Target":"/scratch","TmpfsOptions":{"SizeBytes":1000000}}],"'
    'MaskedPaths":null,"ReadonlyPaths":null,"Init":true},"NetworkingConfig":{"EndpointsConf'
    'ig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverO'
    'pts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","I'
    'PPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSName'
    's":null}}}}'
)

# docker create -it --entrypoint "" busybox
DOCKER_CREATE_IT_BODY = (
    '{"Hostname":"","Domainname":"","User":"","AttachStdin":true,"AttachStdout":true,"Attac'
    'hStderr":true,"Tty":true,"OpenStdin":true,"StdinOnce":true,"Env":null,"Cmd":null,"Imag'
    'e":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":[""],"OnBuild":null,"Labels":{}'
    ',"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"'
    'NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCou'
    'nt":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"Ca'
    'pAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"E'
    'xtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,'
    '"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"Securi'
    'tyOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Mem'
    'ory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDev'
    'iceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps'
    '":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCp'
    'us":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"Me'
    'moryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLi'
    'mit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth"'
    ':0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{"de'
    'fault":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":nul'
    'l,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixL'
    'en":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}'
    "}}}"
)


def translate(body: dict | str, name: str = "") -> tuple[dict, list[str], list[str]]:
    raw = body if isinstance(body, str) else msgspec.json.encode(body).decode()
    return create_body_to_config(msgspec.json.decode(raw, type=ContainerCreateBody), name=name)


def bad(body: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        translate(body)


def test_real_docker_run_body() -> None:
    fields, env, warnings = translate(DOCKER_RUN_BODY, name="web")
    assert env == ["A=1", "B"]
    assert warnings == []
    assert fields["image"] == "busybox"
    assert fields["entrypoint"] == ("/bin/sh",)
    assert fields["cmd"] == ("-c", "sleep 1")
    assert fields["working_dir"] == "/work"
    assert fields["user"] == "1000:1000"
    assert fields["hostname"] == "myhost"
    assert fields["labels"] == {"x": "y"}
    assert fields["restart_policy"] == RestartPolicy(name="on-failure", maximum_retry_count=3)
    assert fields["memory"] == 64 * 1024 * 1024
    assert fields["nano_cpus"] == 1_500_000_000
    assert fields["read_only"] and fields["init"] and fields["no_new_privileges"]
    assert fields["cap_add"] == ("CAP_NET_ADMIN",)
    assert fields["network_mode"] == "bridge"  # Docker's "default"
    assert fields["stop_signal"] == "SIGINT" and fields["stop_timeout"] == 5
    assert fields["log_driver"] == "local"
    assert fields["exposed_ports"] == ("53/udp", "80/tcp")
    assert sorted(fields["ports"], key=lambda p: p.container_port) == [
        PortBinding(container_port=53, protocol="udp", host_ip="127.0.0.1", host_port=0),
        PortBinding(container_port=80, protocol="tcp", host_ip="", host_port=8080),
    ]
    # kept as written, for inspect (Docker shows them so)
    assert fields["binds_given"] == ("/tmp:/data:ro", "vol1:/v")
    assert fields["tmpfs_given"] == {"/run": "size=64m,noexec"}
    assert fields["mounts"] == (
        MountSpec(type="bind", target="/data", source="/tmp", read_only=True,
                  options=(CREATE_HOST_PATH,), mode="ro"),
        MountSpec(type="volume", target="/v", source="vol1", mode="z"),
        MountSpec(type="tmpfs", target="/scratch", tmpfs_size=1_000_000, mode=""),
        MountSpec(type="tmpfs", target="/run", tmpfs_size=64 * 1024 * 1024, options=("noexec",)),
    )
    # Everything it produced fits the event value type.
    ContainerConfig(image_id="sha256:" + "0" * 64, **fields)


def test_real_docker_create_it_body_keeps_nulls_apart() -> None:
    fields, env, _ = translate(DOCKER_CREATE_IT_BODY)
    assert fields["cmd"] is None  # null: the image's CMD applies
    assert fields["entrypoint"] == ()  # [""]: explicitly no entrypoint
    assert fields["tty"] and fields["open_stdin"] and fields["stdin_once"]
    assert fields["stop_signal"] is None
    assert env == []


def test_minimal_body_defaults() -> None:
    fields, env, warnings = translate({"Image": "busybox"})
    assert fields["cmd"] is None and fields["entrypoint"] is None
    assert fields["restart_policy"] == RestartPolicy()
    assert fields["mounts"] == () and fields["ports"] == ()
    assert fields["log_driver"] == "json-file" and fields["network_mode"] == "bridge"
    assert fields["pids_limit"] == 0 and fields["memory"] == 0 and fields["nano_cpus"] == 0


def test_explicit_network_modes() -> None:
    for mode in ("host", "bridge", "none", "container:web", "mynet"):
        assert (
            translate({"Image": "x", "HostConfig": {"NetworkMode": mode}})[0]["network_mode"]
            == mode
        )
    bad({"Image": "x", "HostConfig": {"NetworkMode": "container:"}}, "network mode")


def test_cpu_quota_and_period() -> None:
    host = {"CpuQuota": 50_000, "CpuPeriod": 100_000}
    assert translate({"Image": "x", "HostConfig": host})[0]["nano_cpus"] == 500_000_000
    host = {"CpuQuota": 150_000}
    assert translate({"Image": "x", "HostConfig": host})[0]["nano_cpus"] == 1_500_000_000
    bad({"Image": "x", "HostConfig": {"NanoCpus": 10**9, "CpuQuota": 50_000}}, "Conflicting")
    bad({"Image": "x", "HostConfig": {"CpuQuota": 500}}, "less than 1ms")
    bad({"Image": "x", "HostConfig": {"NanoCpus": -1}}, "negative")


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        ({"Name": "sometimes"}, "unknown policy 'sometimes'"),
        ({"Name": "on-failure", "MaximumRetryCount": -1}, "cannot be negative"),
        ({"Name": "always", "MaximumRetryCount": 3}, "only be used with 'on-failure'"),
    ],
)
def test_bad_restart_policies(policy: dict, match: str) -> None:
    bad({"Image": "x", "HostConfig": {"RestartPolicy": policy}}, match)


def test_auto_remove_with_restart_policy_is_refused() -> None:
    host = {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}
    bad({"Image": "x", "HostConfig": host}, "AutoRemove")


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
        ({"Memory": -(1 << 63)}, "Minimum memory limit allowed is 6MB"),  # -m 2^63-1 via CLI
        ({"Memory": 1 << 63}, "json: cannot unmarshal number 9223372036854775808 into Go"),
        ({"Memory": 1024}, "Minimum memory limit"),
        ({"Binds": ["relative/dir:/data"]}, "relative bind sources"),
        ({"Binds": ["./dir:/data"]}, "relative bind sources"),
        ({"Binds": ["/a:data"]}, "must be absolute"),
        ({"Binds": ["/a:/"]}, "can't be '/'"),
        ({"Binds": ["/a:/b:rw:extra"]}, "too many colons"),
        ({"Binds": ["/a:/b:bogus"]}, "unknown option"),
        ({"Binds": ["/a/../etc:/b"]}, "'..'"),
        ({"Binds": ["/a:/b", "/c:/b"]}, "Duplicate mount point"),
        ({"Mounts": [{"Type": "bind", "Target": "/b"}]}, "needs a source"),
        ({"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/b"}]}, "absolute"),
        ({"Mounts": [{"Type": "tmpfs", "Source": "/x", "Target": "/b"}]}, "no source"),
        ({"Mounts": [{"Type": "npipe", "Target": "/b"}]}, "invalid mount type"),
        ({"Tmpfs": {"/run": "size=lots"}}, "invalid size"),
        ({"PortBindings": {"http/tcp": []}}, "invalid port"),
        ({"PortBindings": {"80/icmp": []}}, "unknown protocol"),
        ({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}, "invalid host port"),
        ({"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}}, "invalid host port"),
        ({"PortBindings": {"80/tcp": [{"HostIp": "nope"}]}}, "invalid host IP"),
        ({"LogConfig": {"Type": "syslog"}}, "not supported"),
        ({"CapAdd": ["NET ADMIN"]}, "invalid capability"),
        ({"SecurityOpt": ["no-new-privileges=maybe"]}, "expected true or false"),
    ],
)
def test_bad_host_config_is_a_clear_400(host: dict, match: str) -> None:
    bad({"Image": "x", "HostConfig": host}, match)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "Image is required"),
        ({"Image": "x", "WorkingDir": "rel"}, "absolute path"),
        ({"Image": "x", "Hostname": "a\nb"}, "control characters"),
        ({"Image": "x", "User": "0\n"}, "control characters"),
        ({"Image": "x", "Env": ["HOME=/x\nroot::0:0::/:/bin/sh"]}, "control characters"),
        ({"Image": "x", "Env": ["A=b\0c"]}, "NUL"),
        ({"Image": "x", "Env": ["=v"]}, "empty name"),
        ({"Image": "x", "StopSignal": "NOT A SIGNAL"}, "Invalid signal"),
        ({"Image": "x", "StopSignal": "NOSUCH"}, "Invalid signal: NOSUCH"),
        ({"Image": "x", "ExposedPorts": {"0/tcp": {}}}, "1-65535"),
    ],
)
def test_bad_config_is_a_clear_400(body: dict, match: str) -> None:
    bad(body, match)


def test_newline_escape_sequence_is_not_a_newline() -> None:
    # The two characters backslash-n are legal; only the byte 0x0A is refused (I-03).
    fields, env, _ = translate({"Image": "x", "Hostname": "a\\nb", "Env": ["HOME=/x\\n"]})
    assert fields["hostname"] == "a\\nb" and env == ["HOME=/x\\n"]


def test_invalid_container_name() -> None:
    with pytest.raises(InvalidArgument, match="Invalid container name"):
        translate({"Image": "x"}, name="../etc")
    assert translate({"Image": "x"}, name="/web.1")[0]["image"] == "x"


def test_security_opts_kept_as_given_and_refused_in_dockers_words() -> None:
    fields, _, warnings = translate({"Image": "x", "HostConfig": {"SecurityOpt": [
        "seccomp=unconfined", "systempaths=unconfined", "no-new-privileges:true",
        "label=disable"]}})
    assert fields["security_opt"] == ("seccomp=unconfined", "systempaths=unconfined",
                                      "no-new-privileges:true", "label=disable")
    assert fields["no_new_privileges"] and warnings == []
    _, _, warnings = translate({"Image": "x", "HostConfig": {"SecurityOpt": ["apparmor=x"]}})
    assert len(warnings) == 1 and "apparmor=x" in warnings[0] and "not applied" in warnings[0]
    for opt, match in (("seccomp=x", "Decoding seccomp profile failed"),
                       ('seccomp={"syscalls": []}', "no defaultAction"),
                       ("systempaths=open", 'invalid --security-opt 2: "systempaths=open"'),
                       ("bogus", 'invalid --security-opt 2: "bogus"')):
        with pytest.raises(InvalidArgument, match=re.escape(match)):
            translate({"Image": "x", "HostConfig": {"SecurityOpt": [opt]}})


def test_only_v_binds_and_create_mountpoint_make_a_missing_host_dir() -> None:
    def bind(mount: dict[str, object]) -> MountSpec:
        return translate({"Image": "x", "HostConfig": {"Mounts": [mount]}})[0]["mounts"][0]

    plain = bind({"Type": "bind", "Source": "/h", "Target": "/t"})
    made = bind({"Type": "bind", "Source": "/h", "Target": "/t",
                 "BindOptions": {"CreateMountpoint": True}})
    assert plain.options == () and made.options == (CREATE_HOST_PATH,)
    with pytest.raises(InvalidArgument, match="unknown option"):
        plan_mounts([MountSpec(type="volume", target="/v", options=(CREATE_HOST_PATH,))])


def test_anonymous_volumes_and_mount_options() -> None:
    body = {
        "Image": "x",
        "Volumes": {"/data": {}, "/v": {}},
        "HostConfig": {
            "Binds": ["named:/v:ro,nocopy", "/host:/h:rshared"],
            "Mounts": [
                {"Type": "volume", "Target": "/anon", "VolumeOptions": {"NoCopy": True}},
                {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o1777}},
            ],
        },
    }
    mounts = translate(body)[0]["mounts"]
    assert mounts == (
        MountSpec(type="volume", target="/v", source="named", read_only=True, options=("nocopy",),
                  mode="ro,nocopy"),
        MountSpec(type="bind", target="/h", source="/host", propagation="rshared",
                  options=(CREATE_HOST_PATH,), mode="rshared"),
        MountSpec(type="volume", target="/anon", options=("nocopy",), mode="z"),
        MountSpec(type="tmpfs", target="/t", options=("mode=1777",), mode=""),
        MountSpec(type="volume", target="/data", mode=""),  # /v is already a named volume
    )


# -- merging with the image ---------------------------------------------------------------------

IMAGE = ImageConfig(
    cmd=("nginx", "-g", "daemon off;"),
    entrypoint=("/docker-entrypoint.sh",),
    env=("PATH=/usr/bin", "NGINX_VERSION=1"),
    working_dir="/srv",
    user="www",
    labels={"maintainer": "x", "x": "image"},
    exposed_ports=("80/tcp",),
    volumes=("/var/cache",),
    stop_signal="SIGQUIT",
)


def merged(body: dict) -> tuple[dict, list[str]]:
    fields, env, _ = translate({"Image": "nginx", **body})
    return merge_image_defaults(fields, env, IMAGE)


def test_merge_inherits_everything_when_unset() -> None:
    fields, env = merged({})
    assert fields["entrypoint"] == IMAGE.entrypoint and fields["cmd"] == IMAGE.cmd
    assert fields["working_dir"] == "/srv" and fields["user"] == "www"
    assert fields["stop_signal"] == "SIGQUIT"
    assert fields["exposed_ports"] == ("80/tcp",)
    assert fields["mounts"] == (MountSpec(type="volume", target="/var/cache", mode=""),)
    assert env == ["PATH=/usr/bin", "NGINX_VERSION=1"]
    ContainerConfig(image_id="sha256:" + "0" * 64, **fields)


def test_merge_cmd_entrypoint_rules() -> None:
    # A user cmd replaces the image cmd and keeps the image entrypoint.
    fields, _ = merged({"Cmd": ["sh"]})
    assert (fields["entrypoint"], fields["cmd"]) == (IMAGE.entrypoint, ("sh",))
    # A user entrypoint drops the image cmd too.
    fields, _ = merged({"Entrypoint": ["/bin/sh"]})
    assert (fields["entrypoint"], fields["cmd"]) == (("/bin/sh",), ())
    # --entrypoint "" clears the entrypoint but keeps the image cmd.
    fields, _ = merged({"Entrypoint": [""]})
    assert (fields["entrypoint"], fields["cmd"]) == ((), IMAGE.cmd)
    # Cmd [] is the same as no cmd (moby checks len(), not nil).
    fields, _ = merged({"Cmd": []})
    assert fields["cmd"] == IMAGE.cmd


def test_merge_user_values_win() -> None:
    fields, env = merged(
        {
            "Env": ["PATH=/bin", "A=1"],
            "Labels": {"x": "user"},
            "WorkingDir": "/w",
            "StopSignal": "TERM",
            "ExposedPorts": {"443": {}},
            "HostConfig": {"Binds": ["/host:/var/cache"]},
        }
    )
    assert env == ["NGINX_VERSION=1", "PATH=/bin", "A=1"]
    assert fields["labels"] == {"maintainer": "x", "x": "user"}
    assert fields["working_dir"] == "/w" and fields["stop_signal"] == "SIGTERM"
    assert fields["exposed_ports"] == ("443/tcp", "80/tcp")
    assert fields["mounts"] == (MountSpec(type="bind", target="/var/cache", source="/host",
                                          options=(CREATE_HOST_PATH,), mode=""),)


# -- filters ------------------------------------------------------------------------------------


def test_filters_both_forms() -> None:
    assert parse_filters(None) == {} and parse_filters("") == {}
    assert parse_filters('{"status":["running","exited"],"label":["a=b"]}') == {
        "status": ["running", "exited"],
        "label": ["a=b"],
    }
    assert parse_filters('{"status":{"running":true,"exited":false}}') == {"status": ["running"]}


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("{nope", "not valid JSON"),
        ('["status"]', "expected a JSON object"),
        ('{"status":[1]}', "values must be strings"),
        ('{"bogus":["x"]}', "invalid filter 'bogus'"),
    ],
)
def test_bad_filters(raw: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        parse_filters(raw, allowed={"status", "label"})


# -- robustness ---------------------------------------------------------------------------------

_text = st.text(max_size=12) | st.sampled_from(["/", "/a", "a:/b", "/a:/b:ro", "80/tcp", "no", ""])
_scalar = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_host_keys = st.sampled_from(
    [
        "Binds",
        "Mounts",
        "Tmpfs",
        "PortBindings",
        "RestartPolicy",
        "Memory",
        "NanoCpus",
        "CpuQuota",
        "CpuPeriod",
        "PidsLimit",
        "CapAdd",
        "SecurityOpt",
        "LogConfig",
        "NetworkMode",
        "AutoRemove",
        "MemorySwap",
    ]
)
_top_keys = st.sampled_from(
    [
        "Cmd",
        "Entrypoint",
        "Env",
        "WorkingDir",
        "User",
        "Hostname",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "StopTimeout",
        "Labels",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_top_keys, _value, max_size=4), st.dictionaries(_host_keys, _value, max_size=4)
)
def test_any_body_is_either_translated_or_a_clear_400(top: dict, host: dict) -> None:
    raw = msgspec.json.encode({"Image": "busybox", **top, "HostConfig": host})
    try:
        body = msgspec.json.decode(raw, type=ContainerCreateBody)
    except msgspec.ValidationError:
        return  # the server answers these with 400 "invalid JSON: ..." before translating
    try:
        fields, _, _ = create_body_to_config(body)
    except InvalidArgument as exc:
        assert exc.message and "\n" not in exc.message
        return
    ContainerConfig(
        image_id="sha256:" + "0" * 64, **{k: v for k, v in fields.items() if v is not None}
    )


def test_translate_and_models_stay_pure() -> None:
    forbidden = {"os", "subprocess", "socket", "sqlite3", "pyroute2", "trio"}
    for module in ("engine/api/docker/translate.py", "engine/api/docker/models.py"):
        tree = ast.parse((Path(__file__).parents[2] / module).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (
                node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
            )
        }
        assert not imported & forbidden, (module, imported & forbidden)
