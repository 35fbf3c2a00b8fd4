"""The OCI spec builder: Docker's defaults, limits, user resolution and hostile input."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core import oci_spec as spec_mod
from engine.core.errors import InvalidArgument
from engine.core.oci_spec import DEFAULT_CAPABILITIES, build_spec, resolve_user
from events.values import ContainerConfig, ImageConfig, MountSpec

PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:app\n"
HOST = {"RLIMIT_NOFILE": (1024, 20000), "RLIMIT_NPROC": (96364, 96364)}


def make(image: ImageConfig | None = None, *, env: list[str] | None = None, **cfg: Any) -> dict:
    cfg.setdefault("cmd", ("echo", "hi"))
    config = ContainerConfig(image="busybox", image_id="sha256:" + "a" * 64, **cfg)
    return build_spec(
        config,
        image,
        env=env or [],
        rootfs="/var/lib/shipslog/x/rootfs",
        hostname=cfg.pop("hostname", None) or "abc123",
        netns_path=None,
        cgroups_path="/shipslog/abc",
        host_rlimits=HOST,
        passwd=PASSWD,
        group=GROUP,
    )


def test_docker_default_capabilities_and_no_inheritable() -> None:
    s = make()
    caps = s["process"]["capabilities"]
    assert len(DEFAULT_CAPABILITIES) == 14
    for key in ("bounding", "effective", "permitted"):
        assert sorted(caps[key]) == sorted(DEFAULT_CAPABILITIES)
    assert caps["inheritable"] == [] and caps["ambient"] == []


def test_default_mounts_masks_and_devices() -> None:
    s = make()
    dests = [m["destination"] for m in s["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert d in dests
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    devices = s["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in devices
    assert s["linux"]["cgroupsPath"] == "/shipslog/abc"


def test_seccomp_resolved_for_default_caps() -> None:
    sc = make()["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO"
    assert sc["architectures"][0] == "SCMP_ARCH_X86_64"
    names = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
             for n in r["names"]}  # fmt: skip
    assert "read" in names and "mount" not in names and "bpf" not in names
    assert "chroot" in names  # CAP_SYS_CHROOT is a default capability


def test_args_are_entrypoint_plus_cmd_with_image_fallback() -> None:
    img = ImageConfig(entrypoint=("/entry",), cmd=("default",), working_dir="/srv")
    assert make(img, cmd=())["process"]["args"] == ["/entry", "default"]
    assert make(img, cmd=("x",))["process"]["args"] == ["/entry", "x"]
    # An explicit entrypoint drops the image's CMD, as in Docker.
    assert make(img, cmd=(), entrypoint=("/other",))["process"]["args"] == ["/other"]
    assert make(img, cmd=())["process"]["cwd"] == "/srv"
    with pytest.raises(InvalidArgument, match="no command"):
        make(None, cmd=())


def test_init_binds_tini_as_pid_one() -> None:
    s = make(init=True)
    assert s["process"]["args"][:2] == ["/sbin/docker-init", "--"]
    bind = next(m for m in s["mounts"] if m["destination"] == "/sbin/docker-init")
    assert bind["source"] == "/usr/bin/docker-init" and "ro" in bind["options"]


def test_env_merges_image_then_container_with_defaults() -> None:
    img = ImageConfig(env=("PATH=/custom", "A=img", "B=img"))
    env = make(img, env=["A=ctr"], tty=True)["process"]["env"]
    assert "PATH=/custom" in env and "A=ctr" in env and "B=img" in env
    assert "HOSTNAME=abc123" in env and "TERM=xterm" in env
    assert "A=img" not in env


@pytest.mark.parametrize("bad", ["HOME=/x\nroot::0:0::/:/bin/sh", "HOME=/x\r", "A=\x00", "=x"])
def test_env_with_control_bytes_or_no_key_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        make(env=[bad])


def test_a_bare_env_key_sets_nothing_and_hides_the_images() -> None:
    # `docker run --env KEY` with KEY unset in the client's environment (Docker keeps the
    # entry in the config; the process gets no KEY)
    env = spec_mod.merge_env(["PATH=/bin", "NOEQ=from-image"], ["NOEQ", "A=1"])
    assert env == ["PATH=/bin", "A=1"]


def test_literal_backslash_n_is_not_a_newline() -> None:
    # I-03: test the byte, not the two characters.
    assert "A=x\\ny" in make(env=["A=x\\ny"])["process"]["env"]


@pytest.mark.parametrize("host", ["a\nb", "a\rb", "a\x00", "-bad", "x" * 70, ""])
def test_bad_hostnames_rejected(host: str) -> None:
    config = ContainerConfig(image="b", image_id="x", cmd=("true",))
    with pytest.raises(InvalidArgument):
        build_spec(config, None, env=[], rootfs="/r", hostname=host, netns_path=None,
                   cgroups_path="/s/x", host_rlimits={})  # fmt: skip


@pytest.mark.parametrize(
    "wd",
    ["/proc/self/fd/7", "/proc/self/fd", "/proc/1/fd/3/x", "/proc/thread-self/fd/8",
     "/proc/self/task/1/fd/4", "/x/../proc/self/fd/9", "//proc/self/fd/5"],
)  # fmt: skip
def test_workdir_under_proc_fd_is_refused(wd: str) -> None:
    with pytest.raises(InvalidArgument, match="under /proc") as err:
        make(working_dir=wd)
    assert "CVE-2024-21626" in err.value.hint


def test_relative_workdir_is_refused_and_normal_one_kept() -> None:
    with pytest.raises(InvalidArgument, match="absolute"):
        make(working_dir="rel/dir")
    assert make(working_dir="/proc/cpuinfo/../x")["process"]["cwd"] == "/proc/x"
    assert make(working_dir="/app/")["process"]["cwd"] == "/app"


def test_limits() -> None:
    res = make(memory=8 << 20, nano_cpus=1_500_000_000, pids_limit=50)["linux"]["resources"]
    assert res["memory"] == {"limit": 8 << 20, "swap": 16 << 20}
    assert res["cpu"] == {"period": 100_000, "quota": 150_000}
    assert res["pids"] == {"limit": 50}
    with pytest.raises(InvalidArgument, match="6MB"):
        make(memory=1 << 20)
    # runc reads an int64: twice a huge limit must still be one (it was a 500 at create).
    huge = make(memory=(1 << 63) - 1)["linux"]["resources"]["memory"]
    assert huge == {"limit": (1 << 63) - 1, "swap": (1 << 63) - 1}


def test_rlimits_never_exceed_host_hard_limits() -> None:
    s = make()
    nofile = next(r for r in s["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    assert nofile == {"type": "RLIMIT_NOFILE", "soft": 20000, "hard": 20000}
    lim = spec_mod.rlimits_for({"RLIMIT_NPROC": (10**6, 10**6)}, HOST)
    nproc = next(r for r in lim if r["type"] == "RLIMIT_NPROC")
    assert nproc["hard"] == 96364 and nproc["soft"] == 96364


def test_read_only_rootfs_and_no_new_privileges() -> None:
    s = make(read_only=True, no_new_privileges=True)
    assert s["root"] == {"path": "/var/lib/shipslog/x/rootfs", "readonly": True}
    assert s["process"]["noNewPrivileges"] is True
    assert make()["process"]["noNewPrivileges"] is False


def test_network_namespaces() -> None:
    def net(**cfg: Any) -> list[dict]:
        return [n for n in make(**cfg)["linux"]["namespaces"] if n["type"] in ("network", "uts")]

    assert {"type": "network"} in net(network_mode="none")
    assert net(network_mode="host") == []
    config = ContainerConfig(image="b", image_id="x", cmd=("true",), network_mode="bridge")
    s = build_spec(config, None, env=[], rootfs="/r", hostname="h", netns_path="/run/netns/slg-1",
                   cgroups_path="/s/x", host_rlimits={})  # fmt: skip
    assert {"type": "network", "path": "/run/netns/slg-1"} in s["linux"]["namespaces"]


def test_cap_add_drop_and_privileged() -> None:
    caps = make(cap_add=("NET_ADMIN",), cap_drop=("chown", "CAP_KILL"))["process"]["capabilities"]
    assert "CAP_NET_ADMIN" in caps["bounding"]
    assert "CAP_CHOWN" not in caps["bounding"] and "CAP_KILL" not in caps["bounding"]
    only = make(cap_drop=("ALL",), cap_add=("CHOWN",))["process"]["capabilities"]["effective"]
    assert only == ["CAP_CHOWN"]
    with pytest.raises(InvalidArgument):
        make(cap_add=("NOT_A_CAP",))
    p = make(privileged=True)
    assert "seccomp" not in p["linux"] and "maskedPaths" not in p["linux"]
    assert "CAP_SYS_ADMIN" in p["process"]["capabilities"]["bounding"]
    # With CAP_SYS_ADMIN added, the profile allows mount/clone with namespace flags.
    sc = make(cap_add=("SYS_ADMIN",))["linux"]["seccomp"]
    assert any("mount" in r["names"] for r in sc["syscalls"])


def test_tmpfs_mounts_and_extra_mounts() -> None:
    s = make(mounts=(MountSpec(type="tmpfs", target="/run", tmpfs_size=1 << 20),))
    run = next(m for m in s["mounts"] if m["destination"] == "/run")
    assert run["type"] == "tmpfs" and "size=1048576" in run["options"]
    config = ContainerConfig(image="b", image_id="x", cmd=("true",))
    extra = [{"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": ["rbind"]}]
    s = build_spec(config, None, env=[], rootfs="/r", hostname="h", netns_path=None,
                   cgroups_path="/s/x", host_rlimits={}, extra_mounts=extra)  # fmt: skip
    assert s["mounts"][-1] == extra[0]


def test_user_resolution() -> None:
    # the primary group is always a supplementary one too, as under Docker
    assert resolve_user("", PASSWD, GROUP) == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert resolve_user("app", PASSWD, GROUP) == {
        "uid": 1000,
        "gid": 1001,
        "additionalGids": [10, 29, 1001],
    }
    assert resolve_user("1000", PASSWD, GROUP)["gid"] == 1001
    assert resolve_user("4242", PASSWD, GROUP) == {"uid": 4242, "gid": 0, "additionalGids": [0]}
    assert resolve_user("app:wheel", PASSWD, GROUP) == {"uid": 1000, "gid": 10,
                                                        "additionalGids": [10]}
    assert resolve_user("5:7", None, None) == {"uid": 5, "gid": 7, "additionalGids": [7]}
    with pytest.raises(InvalidArgument, match="unable to find user"):
        resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find group"):
        resolve_user("app:ghosts", PASSWD, GROUP)


@pytest.mark.parametrize("user", ["0\n", "0:0\n", "root\x00", "a\rb"])
def test_user_with_control_bytes_rejected(user: str) -> None:
    with pytest.raises(InvalidArgument, match="NUL, CR or LF"):
        make(user=user)


def test_huge_group_file_is_capped() -> None:
    huge = b"".join(b"g%d:x:%d:app\n" % (i, i + 2000) for i in range(200_000))
    assert len(huge) > spec_mod.PASSWD_MAX_BYTES
    out = resolve_user("app", PASSWD, huge)
    # Only groups inside the first MiB are seen; the rest is never parsed.
    assert 0 < len(out["additionalGids"]) < 200_000


def test_env_values_may_span_lines_but_home_and_nul_may_not() -> None:
    pem = "KEY=-----BEGIN-----\r\nabc\n-----END-----"
    assert spec_mod.merge_env(["A=1"], [pem]) == ["A=1", pem]
    for bad in ("HOME=/x\nroot::0:0::/:/bin/sh", "A=b\x00c", "BAD\nKEY=v"):
        with pytest.raises(InvalidArgument, match="NUL, CR or LF"):
            spec_mod.merge_env([bad])


def test_an_exec_leaves_limits_and_capabilities_to_the_container_unless_privileged() -> None:
    cfg = ContainerConfig(image="busybox", image_id="", cmd=("sh",), cap_drop=("NET_RAW",))
    plain = spec_mod.exec_process(cfg, [], [], cmd=["true"])
    # absent: the runtime fills in the container's own (its --ulimit and --cap-drop)
    assert "rlimits" not in plain and "capabilities" not in plain
    priv = spec_mod.exec_process(cfg, [], [], cmd=["true"], privileged=True)
    caps = priv["capabilities"]
    assert caps["effective"] == caps["bounding"] == list(spec_mod.ALL_CAPABILITIES)
    assert caps["ambient"] == [] and "CAP_NET_RAW" in caps["effective"]



def test_security_options_shape_seccomp_and_the_system_paths() -> None:
    def linux(*opts: str) -> dict[str, Any]:
        cfg = ContainerConfig(image="busybox", image_id="", cmd=("sh",), security_opt=opts)
        return build_spec(cfg, None, env=[], rootfs="/r", hostname="h", netns_path=None,
                          cgroups_path="/x", host_rlimits={})["linux"]  # type: ignore[no-any-return]

    default = linux()
    assert default["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO" and default["maskedPaths"]
    assert "seccomp" not in linux("seccomp=unconfined")
    assert linux("seccomp=builtin")["seccomp"] == default["seccomp"]
    assert "maskedPaths" not in linux("systempaths=unconfined")
    assert "readonlyPaths" not in linux("systempaths=unconfined")
    custom = linux('seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                   '["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}')["seccomp"]
    assert custom["defaultAction"] == "SCMP_ACT_ALLOW"
    assert custom["syscalls"] == [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
