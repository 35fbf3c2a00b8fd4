"""`run`, `create`, `start` and `exec`: flags into exact API request bodies, the order of calls
Docker's CLI makes, stdio copied from the hijacked stream, and the exit codes that result."""

from __future__ import annotations

import io
import json
import os
import signal
import termios

from engine.api.docker.stream import frame
from engine.cli.attach import on_resize, proxy_signals
from engine.cli.client import ApiError
from tests.unit.test_cli_fakeclient import FakeClient, cat_container, cli, seq

CID = "a" * 64


def running_fake(output: bytes = b"", status: int = 0,
                 extra: dict[tuple[str, str], object] | None = None) -> FakeClient:
    answers = {
        ("POST", "/containers/create"): {"Id": CID, "Warnings": []},
        ("POST", f"/containers/{CID}/attach"): output,
        ("POST", f"/containers/{CID}/start"): None,
        ("POST", f"/containers/{CID}/wait"): [json.dumps({"StatusCode": status}).encode()],
        ("POST", f"/containers/{CID}/resize"): None,
        ("POST", f"/containers/{CID}/kill"): None,
    }
    answers.update(extra or {})
    return FakeClient(answers)


def test_run_detached_body_and_prints_full_id() -> None:
    fake = running_fake()
    r = cli(fake, "run", "-d", "--name", "web", "-e", "A=1", "-e", "HOME", "-p", "8080:80",
            "-v", "/srv:/data:ro", "-v", "/cache", "--restart", "on-failure:3", "-m", "512m",
            "--cpus", "1.5", "-l", "tier=front", "busybox", "sh", "-c", "echo hi",
            env={"HOME": "/root"})
    assert r.code == 0, r.err
    assert r.out == CID + "\n"
    create = fake.calls[0]
    assert (create.method, create.path, create.params) == ("POST", "/containers/create",
                                                           {"name": "web"})
    assert create.body == {
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": {"80/tcp": {}},
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": ["A=1", "HOME=/root"],
        "Cmd": ["sh", "-c", "echo hi"],
        "Image": "busybox",
        "Volumes": {"/cache": {}},
        "Labels": {"tier": "front"},
        "HostConfig": {
            "Binds": ["/srv:/data:ro"],
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Memory": 536870912,
            "NanoCpus": 1500000000,
        },
    }
    assert fake.paths() == [("POST", "/containers/create"), ("POST", f"/containers/{CID}/start")]


def test_run_every_flag_lands_in_the_body() -> None:
    fake = running_fake()
    r = cli(fake, "run", "-d", "--read-only", "--init", "--privileged", "--cap-add", "NET_ADMIN",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "net1",
            "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--tmpfs", "/run:size=64m",
            "-P", "--log-driver", "json-file", "--log-opt", "max-size=10m",
            "--stop-signal", "SIGINT", "--stop-timeout", "0", "--pids-limit", "100",
            "-w", "/w", "-u", "1000:1000", "--entrypoint", "", "-h", "box", "busybox")
    assert r.code == 0, r.err
    body = fake.calls[0].body
    assert body["WorkingDir"] == "/w" and body["User"] == "1000:1000"
    assert body["Entrypoint"] == [""] and body["Hostname"] == "box"
    assert body["StopSignal"] == "SIGINT" and body["StopTimeout"] == 0
    assert "Cmd" not in body
    assert body["HostConfig"] == {
        "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}}],
        "Tmpfs": {"/run": "size=64m"},
        "PublishAllPorts": True,
        "NetworkMode": "net1",
        "Privileged": True,
        "ReadonlyRootfs": True,
        "Init": True,
        "CapAdd": ["CAP_NET_ADMIN"],
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "PidsLimit": 100,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
    }


def test_run_foreground_attaches_before_start_and_exits_with_status() -> None:
    fake = running_fake(frame(1, b"out\n") + frame(2, b"err\n"), status=3)
    r = cli(fake, "run", "busybox", "sh")
    assert r.code == 3
    assert r.out == "out\n"
    assert r.err == "err\n"
    paths = fake.paths()
    # attach, then a wait the daemon has registered, and only then start (Docker's order)
    assert paths.index(("POST", f"/containers/{CID}/attach")) < paths.index(
        ("POST", f"/containers/{CID}/wait")) < paths.index(("POST", f"/containers/{CID}/start"))
    assert fake.call("POST", f"/containers/{CID}/attach").params == {
        "stream": True, "stdin": False, "stdout": True, "stderr": True}
    assert fake.call("POST", f"/containers/{CID}/wait").params == {"condition": "next-exit"}
    body = fake.calls[0].body
    assert body["AttachStdout"] and body["AttachStderr"] and not body["AttachStdin"]


def test_run_does_not_start_when_the_wait_is_refused() -> None:
    fake = running_fake(extra={("POST", f"/containers/{CID}/wait"):
                               ApiError(400, "invalid condition: 'removed'")})
    r = cli(fake, "run", "--rm", "busybox")
    assert r.code == 125
    assert "invalid condition" in r.err
    assert ("POST", f"/containers/{CID}/start") not in fake.paths()


def test_run_rm_waits_for_removal_and_sends_autoremove() -> None:
    fake = running_fake(frame(1, b"x"))
    r = cli(fake, "run", "--rm", "busybox")
    assert r.code == 0
    assert fake.calls[0].body["HostConfig"] == {"AutoRemove": True}
    assert fake.call("POST", f"/containers/{CID}/wait").params == {"condition": "removed"}


def test_run_interactive_tty_uses_raw_mode_and_restores_the_terminal() -> None:
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "rb", buffering=0)
    try:
        before = termios.tcgetattr(slave)
        fake = running_fake(b"raw tty bytes")
        r = cli(fake, "run", "-it", "busybox", "sh", stdin=stdin)
        assert r.code == 0, r.err
        assert r.out == "raw tty bytes"  # a TTY stream is not multiplexed
        assert termios.tcgetattr(slave) == before
        body = fake.calls[0].body
        assert body["Tty"] and body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]
        assert fake.call("POST", f"/containers/{CID}/attach").params["stdin"] is True
        assert fake.call("POST", f"/containers/{CID}/resize").params.keys() == {"h", "w"}
    finally:
        stdin.close()
        os.close(master)


def test_run_it_without_a_terminal_is_refused_like_docker() -> None:
    fake = running_fake()
    r = cli(fake, "run", "-it", "busybox", stdin=io.BytesIO(b""))
    assert r.code == 125
    assert r.err.splitlines()[0] == "shipslog: the input device is not a TTY"
    assert fake.calls == []  # refused before anything was created


def test_run_interactive_forwards_piped_stdin() -> None:
    fake = FakeClient({**running_fake().answers,
                       ("POST", f"/containers/{CID}/attach"): cat_container})
    r = cli(fake, "run", "-i", "busybox", "cat", stdin=io.BytesIO(b"typed input"))
    assert r.code == 0, r.err
    assert r.out == "typed input"  # cat only answers after the CLI closed its stdin side


def test_terminal_resizes_are_followed_while_attached() -> None:
    resized: list[bool] = []
    previous = signal.getsignal(signal.SIGWINCH)
    with on_resize(lambda: resized.append(True)):
        os.kill(os.getpid(), signal.SIGWINCH)
    os.kill(os.getpid(), signal.SIGWINCH)  # after the block: no longer followed
    assert resized == [True]
    assert signal.getsignal(signal.SIGWINCH) is previous


def test_signals_are_proxied_to_the_container_while_attached() -> None:
    sent: list[str] = []
    previous = signal.getsignal(signal.SIGUSR1)
    with proxy_signals(sent.append):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGINT)
    assert sent == ["SIGUSR1", "SIGINT"]
    assert signal.getsignal(signal.SIGUSR1) is previous


def test_run_dit_stops_parsing_at_the_image() -> None:
    fake = running_fake()
    r = cli(fake, "run", "-dit", "busybox", "ls", "-l", "--rm")
    assert r.code == 0, r.err
    body = fake.calls[0].body
    assert body["Cmd"] == ["ls", "-l", "--rm"]
    assert body["Tty"] and body["OpenStdin"]
    assert body["HostConfig"] == {}


def test_run_missing_command_exits_127_and_permission_126() -> None:
    for message, code in (
        ('exec: "nope": executable file not found in $PATH', 127),
        ("exec /bin/x: permission denied", 126),
        ("cgroup setup failed", 125),
    ):
        fake = running_fake(extra={("POST", f"/containers/{CID}/start"): ApiError(500, message)})
        r = cli(fake, "run", "busybox", "nope")
        assert r.code == code, (message, r.err)
        lines = r.err.splitlines()
        assert lines[0] == f"shipslog: Error response from daemon: {message}"
        assert lines[1].startswith("hint: ")


def test_run_pulls_a_missing_image_then_creates() -> None:
    fake = running_fake(extra={
        ("POST", "/containers/create"): seq(ApiError(404, "No such image: busybox:latest"),
                                             {"Id": CID}),
        ("POST", "/images/create"): [b'{"status":"Pulling from library/busybox","id":"latest"}\n',
                                     b'{"status":"Pull complete","id":"abc"}\n'],
    })
    r = cli(fake, "run", "-d", "busybox")
    assert r.code == 0, r.err
    assert "Unable to find image 'busybox:latest' locally" in r.err
    assert "abc: Pull complete" in r.err
    assert fake.call("POST", "/images/create").params == {"fromImage": "busybox",
                                                          "tag": "latest"}
    assert fake.paths().count(("POST", "/containers/create")) == 2
    fake.answers[("POST", "/containers/create")] = seq(
        ApiError(404, "No such image: busybox:latest"), {"Id": CID})
    r = cli(fake, "run", "-d", "-q", "busybox")
    assert r.err == "Unable to find image 'busybox:latest' locally\n"  # no pull progress


def test_run_pull_failure_is_reported() -> None:
    fake = running_fake(extra={
        ("POST", "/containers/create"): ApiError(404, "No such image: nope:latest"),
        ("POST", "/images/create"): [b'{"error":"pull access denied for nope"}\n'],
    })
    r = cli(fake, "run", "nope")
    assert r.code == 125
    assert "shipslog: pull access denied for nope" in r.err


def test_run_conflicting_flags_are_usage_errors() -> None:
    for argv, message in ((["-d", "-a", "stdout"], "Conflicting options: -a and -d"),
                          (["--rm", "--restart", "always"],
                           "Conflicting options: --restart and --rm"),
                          (["-p", "99999:80"], "invalid argument for -p")):
        r = cli(FakeClient(), "run", *argv, "busybox")
        assert r.code == 125
        assert message in r.err
        assert r.err.splitlines()[1] == "hint: see 'shipslog run --help'"


def test_create_prints_id_and_warnings() -> None:
    fake = FakeClient({("POST", "/containers/create"): {"Id": CID, "Warnings": ["low memory"]}})
    r = cli(fake, "create", "-t", "busybox")
    assert r.code == 0
    assert r.out == CID + "\n"
    assert r.err == "WARNING: low memory\n"
    body = fake.calls[0].body
    assert body["Tty"] and body["AttachStdout"]


def test_env_file_is_read(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "env"
    path.write_text("# comment\n\nA=1\n  B=two words\nC\n")
    fake = running_fake()
    r = cli(fake, "run", "-d", "--env-file", str(path), "-e", "D=4", "busybox", env={"C": "c"})
    assert r.code == 0, r.err
    assert fake.calls[0].body["Env"] == ["A=1", "B=two words", "C=c", "D=4"]


def test_start_prints_names_and_continues_past_failures() -> None:
    fake = FakeClient({("POST", "/containers/a/start"): None,
                       ("POST", "/containers/b/start"): ApiError(404, "No such container: b")})
    r = cli(fake, "start", "a", "b")
    assert r.out == "a\n"
    assert "No such container: b" in r.err
    assert r.code == 1


def exec_fake(output: bytes, exit_code: int | None) -> FakeClient:
    return FakeClient({
        ("POST", "/containers/web/exec"): {"Id": "e1"},
        ("POST", "/exec/e1/start"): output,
        ("GET", "/exec/e1/json"): {"ExitCode": exit_code, "Running": False},
    })


def test_exec_body_streams_output_and_returns_exit_code() -> None:
    fake = exec_fake(frame(1, b"hello\n"), 7)
    r = cli(fake, "exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "web", "ls", "-la")
    assert r.code == 7
    assert r.out == "hello\n"
    assert fake.call("POST", "/containers/web/exec").body == {
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
        "Cmd": ["ls", "-la"], "Env": ["X=1"], "WorkingDir": "/tmp", "User": "nobody"}
    assert fake.call("POST", "/exec/e1/start").body == {"Detach": False, "Tty": False}


def test_exec_detached_starts_without_hijack() -> None:
    fake = FakeClient({("POST", "/containers/web/exec"): {"Id": "e1"},
                       ("POST", "/exec/e1/start"): None})
    r = cli(fake, "exec", "-d", "web", "sleep", "9")
    assert r.code == 0
    assert fake.call("POST", "/exec/e1/start").body == {"Detach": True, "Tty": False}
    assert fake.hijacked == []


def test_exec_it_without_a_terminal_is_refused() -> None:
    fake = exec_fake(b"", 0)
    r = cli(fake, "exec", "-it", "web", "sh", stdin=io.BytesIO(b""))
    assert r.code == 125 and "not a TTY" in r.err
    assert fake.calls == []


def test_exec_needs_a_command() -> None:
    r = cli(FakeClient(), "exec", "web")
    assert r.code == 125
    assert "requires at least 2 arguments" in r.err


# `docker run -d --name web -p 8080:80 -p 127.0.0.1::53/udp -v /tmp:/data:ro -v vol1:/v
#   --mount type=tmpfs,target=/scratch,tmpfs-size=1000000 -e A=1 -e B --restart on-failure:3
#   --memory 64m --cpus 1.5 --tmpfs /run:size=64m,noexec --cap-add net_admin
#   --security-opt no-new-privileges --read-only --init --entrypoint /bin/sh -w /work
#   -u 1000:1000 -h myhost -l x=y --stop-signal INT --stop-timeout 5 --log-driver local
#   busybox -c 'sleep 1'`, as the real docker CLI 28.2 sent it (captured for
# tests/unit/test_translate.py), with the fields it sends at their zero values left out.
DOCKER_RUN_ARGV = [
    "run", "-d", "--name", "web", "-p", "8080:80", "-p", "127.0.0.1::53/udp", "-v",
    "/tmp:/data:ro", "-v", "vol1:/v", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1000000",
    "-e", "A=1", "-e", "B", "--restart", "on-failure:3", "--memory", "64m", "--cpus", "1.5",
    "--tmpfs", "/run:size=64m,noexec", "--cap-add", "net_admin", "--security-opt",
    "no-new-privileges", "--read-only", "--init", "--entrypoint", "/bin/sh", "-w", "/work",
    "-u", "1000:1000", "-h", "myhost", "-l", "x=y", "--stop-signal", "INT", "--stop-timeout",
    "5", "--log-driver", "local", "busybox", "-c", "sleep 1"]
DOCKER_RUN_BODY = {
    "Hostname": "myhost", "User": "1000:1000", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "ExposedPorts": {"53/udp": {}, "80/tcp": {}}, "Tty": False,
    "OpenStdin": False, "StdinOnce": False, "Env": ["A=1", "B"], "Cmd": ["-c", "sleep 1"],
    "Image": "busybox", "WorkingDir": "/work", "Entrypoint": ["/bin/sh"], "Labels": {"x": "y"},
    "StopSignal": "INT", "StopTimeout": 5,
    "HostConfig": {
        "Binds": ["/tmp:/data:ro", "vol1:/v"], "LogConfig": {"Type": "local", "Config": {}},
        "PortBindings": {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                         "80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "CapAdd": ["CAP_NET_ADMIN"], "ReadonlyRootfs": True,
        "SecurityOpt": ["no-new-privileges"], "Tmpfs": {"/run": "size=64m,noexec"},
        "Memory": 67108864, "NanoCpus": 1500000000,
        "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1000000}}],
        "Init": True,
    },
}


def test_run_body_means_what_the_real_docker_cli_sends() -> None:
    fake = running_fake()
    r = cli(fake, *DOCKER_RUN_ARGV)
    assert r.code == 0, r.err
    assert fake.calls[0].params == {"name": "web"}
    # compare as JSON, so ordering inside dicts never matters and types must match exactly
    assert json.loads(json.dumps(fake.calls[0].body, sort_keys=True)) == DOCKER_RUN_BODY


def test_start_attach_streams_output_and_exits_with_status() -> None:
    fake = FakeClient({
        ("GET", "/containers/c1/json"): {"Id": CID, "Config": {"Tty": False, "OpenStdin": False},
                                         "HostConfig": {"AutoRemove": True}},
        ("POST", f"/containers/{CID}/attach"): frame(1, b"from-start\n"),
        ("POST", f"/containers/{CID}/wait"): [b'{"StatusCode": 2}'],
        ("POST", f"/containers/{CID}/start"): None,
    })
    r = cli(fake, "start", "-a", "c1")
    assert (r.code, r.out) == (2, "from-start\n")
    assert fake.call("POST", f"/containers/{CID}/wait").params == {"condition": "removed"}
    paths = fake.paths()
    assert paths.index(("POST", f"/containers/{CID}/wait")) < paths.index(
        ("POST", f"/containers/{CID}/start"))


def test_attach_refuses_a_stopped_container_and_follows_a_running_one() -> None:
    fake = FakeClient({("GET", "/containers/off/json"): {"Id": "off", "State": {"Running": False}}})
    r = cli(fake, "attach", "off")
    assert r.code == 125 and "cannot attach to a stopped container" in r.err
    fake = FakeClient({
        ("GET", "/containers/on/json"): seq(
            {"Id": "on", "State": {"Running": True}, "Config": {"Tty": False}},
            {"Id": "on", "State": {"Running": False, "ExitCode": 5}}),
        ("POST", "/containers/on/attach"): frame(2, b"late\n"),
    })
    r = cli(fake, "attach", "on")
    assert (r.code, r.err) == (5, "late\n")
    assert fake.call("POST", "/containers/on/attach").params == {
        "stream": True, "stdin": False, "stdout": True, "stderr": True, "logs": False}
