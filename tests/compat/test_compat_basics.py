"""The same assertions against shipslogd and dockerd (the `engine` fixture): container
lifecycle and inspect, ps, logs, non-interactive exec, networks, volumes, image inspect and the
events of a run, through the docker CLI and the Docker SDK for Python. Ids and times differ
between engines by nature; everything else compared here must agree."""

from __future__ import annotations

import json
import re
import tarfile
import time

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import BUSYBOX_TAR, Engine

pytestmark = pytest.mark.kernel

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def inspect(engine: Engine, *ref: str, kind: str = "container") -> dict:
    return json.loads(docker(engine, kind, "inspect", *ref).stdout)[0]


def wait_status(engine: Engine, ref: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = inspect(engine, ref)
        if info["State"]["Status"] == status or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def test_create_start_stop_rm_and_inspect(engine: Engine) -> None:
    cid = docker(engine, "create", "--name", "c1", "--network", "none", "busybox",
                 "sleep", "1000").stdout.strip()
    assert HEX64.match(cid)
    info = inspect(engine, "c1")
    assert info["Id"] == cid and info["Name"] == "/c1"
    assert info["Path"] == "sleep" and info["Args"] == ["1000"]
    assert info["Config"]["Image"] == "busybox" and info["Config"]["Cmd"] == ["sleep", "1000"]
    assert info["Image"].startswith("sha256:")
    state = info["State"]
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == (
        "created", False, 0, 0)
    assert state["StartedAt"] == "0001-01-01T00:00:00Z"
    assert info["RestartCount"] == 0

    docker(engine, "start", "c1")
    state = inspect(engine, "c1")["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("running", True, False)
    assert state["Pid"] > 0 and state["StartedAt"] != "0001-01-01T00:00:00Z"

    docker(engine, "stop", "-t", "1", "c1")  # sleep as pid 1 ignores SIGTERM: SIGKILL
    state = inspect(engine, "c1")["State"]
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == (
        "exited", False, 0, 137)

    assert docker(engine, "rm", "c1").stdout.strip() == "c1"
    # --type: an untyped inspect also matches ids of other objects, and a network id may
    # well start with "c1".
    p = docker(engine, "inspect", "--type", "container", "c1", check=False)
    assert p.returncode == 1 and "No such container: c1" in p.stderr


def test_ps_lists_running_then_all(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "1000")
    docker(engine, "create", "--name", "new", "--network", "none", "busybox", "true")
    fmt = "{{.Names}}|{{.Image}}|{{.Command}}"
    assert docker(engine, "ps", "--format", fmt).stdout.splitlines() == [
        'up|busybox|"sleep 1000"']
    rows = docker(engine, "ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    assert sorted(r.split()[0] for r in rows) == ["new", "up"]
    assert dict(r.split(" ", 1) for r in rows)["new"] == "Created"
    assert dict(r.split(" ", 1) for r in rows)["up"].startswith("Up ")
    names = docker(engine, "ps", "-a", "--filter", "status=created", "--format",
                   "{{.Names}}").stdout.split()
    assert names == ["new"]


def test_logs_keep_stdout_and_stderr_apart(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "talk", "--network", "none", "busybox", "sh", "-c",
           "echo out; echo err >&2")
    assert docker(engine, "wait", "talk").stdout.strip() == "0"
    p = docker(engine, "logs", "talk")
    assert (p.stdout, p.stderr) == ("out\n", "err\n")
    sdk = engine.sdk()
    c = sdk.containers.get("talk")
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"


def test_exec_non_interactive(engine: Engine) -> None:
    docker(engine, "run", "-d", "--name", "box", "--network", "none", "busybox",
           "sleep", "1000")
    assert docker(engine, "exec", "box", "echo", "inside").stdout == "inside\n"
    p = docker(engine, "exec", "box", "sh", "-c", "echo o; echo e >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "o\n", "e\n")
    p = docker(engine, "exec", "-e", "X=1", "-w", "/tmp", "box", "sh", "-c", "echo $X $PWD")
    assert p.stdout == "1 /tmp\n"
    code, out = engine.sdk().containers.get("box").exec_run(["sh", "-c", "echo sdk; exit 2"])
    assert (code, out) == (2, b"sdk\n")


def test_network_create_inspect_rm(engine: Engine) -> None:
    nid = docker(engine, "network", "create", "compatnet").stdout.strip()
    assert HEX64.match(nid)
    info = inspect(engine, "compatnet", kind="network")
    assert (info["Id"], info["Name"], info["Driver"], info["Scope"]) == (
        nid, "compatnet", "bridge", "local")
    assert (info["Internal"], info["Attachable"], info["EnableIPv6"]) == (False, False, False)
    assert info["IPAM"]["Driver"] == "default"
    assert len(info["IPAM"]["Config"]) == 1 and "Subnet" in info["IPAM"]["Config"][0]
    p = docker(engine, "network", "create", "compatnet", check=False)
    assert p.returncode == 1 and "network with name compatnet already exists" in p.stderr
    sdk_net = engine.sdk().networks.get("compatnet")
    assert sdk_net.id == nid and sdk_net.name == "compatnet"
    assert docker(engine, "network", "rm", "compatnet").stdout.strip() == "compatnet"
    p = docker(engine, "network", "inspect", "compatnet", check=False)
    assert p.returncode == 1 and "network compatnet not found" in p.stderr


def test_volume_create_inspect_rm(engine: Engine) -> None:
    assert docker(engine, "volume", "create", "--label", "k=v", "compatvol").stdout.strip() \
        == "compatvol"
    info = inspect(engine, "compatvol", kind="volume")
    assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == (
        "compatvol", "local", "local", {"k": "v"})
    assert info["Mountpoint"].endswith("/volumes/compatvol/_data")
    vol = engine.sdk().volumes.get("compatvol")
    assert vol.name == "compatvol" and vol.attrs["Driver"] == "local"
    assert docker(engine, "volume", "rm", "compatvol").stdout.strip() == "compatvol"
    p = docker(engine, "volume", "inspect", "compatvol", check=False)
    assert p.returncode == 1 and "no such volume" in p.stderr.lower()


def _busybox_config_digest() -> str:
    with tarfile.open(BUSYBOX_TAR) as t:
        f = t.extractfile("manifest.json")
        assert f is not None
        config = json.load(f)[0]["Config"]
    return "sha256:" + config.rsplit("/", 1)[-1].removesuffix(".json")


def test_image_inspect_basic_fields(engine: Engine) -> None:
    info = inspect(engine, "busybox", kind="image")
    assert info["Id"] == _busybox_config_digest()
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) >= 1
    assert info["Size"] > 0
    img = engine.sdk().images.get("busybox:latest")
    assert img.id == info["Id"] and img.tags == ["busybox:latest"]


def test_events_of_a_run(engine: Engine) -> None:
    start = int(time.time()) - 1
    cid = docker(engine, "run", "-d", "--name", "ev", "--network", "none", "busybox",
                 "true").stdout.strip()
    docker(engine, "wait", "ev")
    docker(engine, "rm", "ev")
    until = int(time.time()) + 1
    p = docker(engine, "events", "--since", str(start), "--until", str(until), "--filter",
               f"container={cid}", "--filter", "type=container", "--format",
               "{{.Type}} {{.Status}} {{.ID}} {{.Actor.Attributes.name}}")
    lines = p.stdout.splitlines()
    assert [x.split()[1] for x in lines] == ["create", "start", "die", "destroy"]
    assert all(x.split()[0] == "container" and x.split()[2] == cid and x.split()[3] == "ev"
               for x in lines)
    die = json.loads(docker(engine, "events", "--since", str(start), "--until", str(until),
                            "--filter", f"container={cid}", "--filter", "event=die",
                            "--format", "{{json .}}").stdout)
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    assert die["Actor"]["Attributes"]["image"] == "busybox"


def test_env_values_in_inspect_are_redacted_by_shipslog_only(engine: Engine) -> None:
    # A deliberate difference (README, "Compatibility with Docker"): environment values never
    # enter shipslog's log, so its inspect shows the key with <redacted>; Docker shows the
    # value. The process itself sees the value on both.
    docker(engine, "run", "-d", "--name", "envy", "--network", "none", "-e", "GREETING=hello",
           "busybox", "sleep", "1000")
    env = inspect(engine, "envy")["Config"]["Env"]
    shown = "GREETING=<redacted>" if engine.name == "shipslog" else "GREETING=hello"
    assert shown in env
    assert docker(engine, "exec", "envy", "sh", "-c", "echo $GREETING").stdout == "hello\n"


def test_an_unset_stop_signal_is_not_shown_and_masked_paths_are(engine: Engine) -> None:
    """Docker keeps `Config.StopSignal` as given: absent when neither the request nor the
    image set one (Compose's config and `commit` would copy an invented one)."""
    docker(engine, "run", "-d", "--name", "nosig", "--network", "none", "busybox", "sh", "-c",
           "trap 'exit 7' TERM; while true; do sleep 0.1; done")
    try:
        raw = engine.sdk().api.inspect_container("nosig")
        assert raw["Config"].get("StopSignal") in (None, "")
        # and the paths the spec masks and makes read-only are shown, as Docker shows them
        assert {"/proc/kcore", "/proc/keys", "/sys/firmware"} <= set(
            raw["HostConfig"]["MaskedPaths"])
        assert {"/proc/sys", "/proc/sysrq-trigger"} <= set(raw["HostConfig"]["ReadonlyPaths"])
        docker(engine, "stop", "-t", "5", "nosig")
        assert docker(engine, "inspect", "-f", "{{.State.ExitCode}}",
                      "nosig").stdout.strip() == "7"
    finally:
        docker(engine, "rm", "-f", "nosig", check=False)


def test_security_opts_seccomp_and_systempaths_applied(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`--security-opt seccomp=unconfined|PROFILE` and `systempaths=unconfined` do what
    Docker does (they were accepted with a warning and ignored); inspect shows them."""
    def run(*opts: str, cmd: str) -> str:
        flags = [a for o in opts for a in ("--security-opt", o)]
        return docker(engine, "run", "--rm", "--network", "none", *flags, "busybox", "sh",
                      "-c", cmd, check=False).stdout + "|"

    seccomp_mode = "grep Seccomp: /proc/self/status"
    assert "Seccomp:\t2" in run(cmd=seccomp_mode)
    assert "Seccomp:\t0" in run("seccomp=unconfined", cmd=seccomp_mode)
    profile = tmp_path / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                       '["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}')
    out = run(f"seccomp={profile}", cmd="mkdir /made 2>&1; ls -d /made 2>&1; true")
    assert "Operation not permitted" in out, out
    masked = "grep -c ' /proc/keys ' /proc/mounts; grep -c ' /proc/sys ' /proc/mounts"
    assert run(cmd=masked).split()[:2] == ["1", "1"]  # /dev/null over keys, /proc/sys ro
    assert run("systempaths=unconfined", cmd=masked).split()[:2] == ["0", "0"]
    docker(engine, "create", "--name", "secopt", "--security-opt", "seccomp=unconfined",
           "--security-opt", "systempaths=unconfined", "busybox")
    try:
        host = engine.sdk().api.inspect_container("secopt")["HostConfig"]
        assert host["SecurityOpt"] == ["seccomp=unconfined"]  # systempaths: the empty lists
        assert host["MaskedPaths"] == [] and host["ReadonlyPaths"] == []
    finally:
        docker(engine, "rm", "-f", "secopt", check=False)
    api = engine.sdk().api
    errors = pytest.importorskip("docker.errors")
    with pytest.raises(errors.APIError) as refused:  # the docker CLI refuses it itself
        api.create_container("busybox", host_config=api.create_host_config(
            security_opt=["bogus=1"]))
    # dockerd 20.10 answers 500 (a server error for a client's mistake); newer ones and we 400
    assert refused.value.status_code == (400 if engine.name == "shipslog" else
                                         refused.value.status_code)
    assert refused.value.status_code in (400, 500)
    assert "bogus=1" in str(refused.value.explanation)
