"""Query and lifecycle verbs against a recording fake client: the requests they make and what
they print."""

from __future__ import annotations

import io
import json
import pathlib
import threading
from typing import Any

import pytest

from engine.api.docker.stream import frame
from engine.cli.client import ApiError
from tests.unit.test_cli_fakeclient import FakeClient, cli

NOW = 1_700_000_000.0
CID = "0123456789abcdef" * 4


def summary(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "Id": CID, "Names": ["/web"], "Image": "busybox", "Command": "sleep 100",
        "Created": NOW - 3, "State": "running", "Status": "Up 3 seconds", "Ports": [],
        "Labels": {}}
    base.update(over)
    return base


def test_ps_default_table_and_params() -> None:
    fake = FakeClient({("GET", "/containers/json"): [
        summary(), summary(Id="f" * 64, Names=["/db"], Status="Exited (0) 2 minutes ago",
                           Created=NOW - 90, Command="postgres")]})
    r = cli(fake, "ps", "-a", "--filter", "status=exited", now=NOW)
    assert r.code == 0, r.err
    assert fake.calls[0].params == {"all": True, "filters": '{"status":["exited"]}'}
    lines = r.out.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert '"sleep 100"' in lines[1] and "3 seconds ago" in lines[1] and "Up 3 seconds" in lines[1]
    assert "About a minute ago" in lines[2] and "Exited (0) 2 minutes ago" in lines[2]
    assert lines[2].endswith("db")


def test_ps_quiet_last_latest_size_and_notrunc() -> None:
    fake = FakeClient({("GET", "/containers/json"): [summary(SizeRw=12, SizeRootFs=4_860_000)]})
    assert cli(fake, "ps", "-q").out == "0123456789ab\n"
    assert cli(fake, "ps", "-q", "--no-trunc").out == CID + "\n"
    cli(fake, "ps", "-n", "3")
    cli(fake, "ps", "-l")
    r = cli(fake, "ps", "-s")
    assert [c.params for c in fake.calls[2:]] == [{"all": True, "limit": 3},
                                                  {"all": True, "limit": 1}, {"size": True}]
    assert r.out.splitlines()[0].endswith("SIZE")
    assert r.out.splitlines()[1].endswith("12B (virtual 4.86MB)")


def test_ps_quiet_wins_over_format_with_a_warning() -> None:
    fake = FakeClient({("GET", "/containers/json"): [summary()]})
    r = cli(fake, "ps", "-q", "--format", "{{.Names}}")
    assert r.out == "0123456789ab\n"
    assert r.err.startswith("WARNING: Ignoring custom format")


def test_ps_format_json_is_one_object_per_line() -> None:
    fake = FakeClient({("GET", "/containers/json"): [summary(), summary(Names=["/b"])]})
    r = cli(fake, "ps", "--format", "json", now=NOW)
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert [row["Names"] for row in rows] == ["web", "b"]
    assert rows[0]["RunningFor"] == "3 seconds ago"
    r = cli(fake, "ps", "--format", "table {{.Names}}\t{{.State}}")
    assert r.out == "NAMES     STATE\nweb       running\nb         running\n"


def test_inspect_array_format_and_fallback_to_image() -> None:
    container = {"Id": CID, "Name": "/web", "State": {"Pid": 42}}
    image = {"Id": "sha256:ff", "RepoTags": ["busybox:latest"]}
    fake = FakeClient({("GET", "/containers/web/json"): container,
                       ("GET", "/containers/busybox/json"): ApiError(404, "No such container"),
                       ("GET", "/images/busybox/json"): image})
    r = cli(fake, "inspect", "web", "busybox")
    assert r.code == 0
    assert json.loads(r.out) == [container, image]
    assert r.out.startswith("[\n    {")
    r = cli(fake, "inspect", "-f", "{{.State.Pid}} {{.Name}}", "web")
    assert r.out == "42 /web\n"
    r = cli(fake, "inspect", "--format", "json", "web")
    assert json.loads(r.out) == container


def test_inspect_missing_object_exits_1_after_printing_the_rest() -> None:
    fake = FakeClient({("GET", "/containers/web/json"): {"Id": "x"},
                       ("GET", "/containers/nope/json"): ApiError(404, "No such container"),
                       ("GET", "/images/nope/json"): ApiError(404, "No such image")})
    r = cli(fake, "inspect", "web", "nope")
    assert r.code == 1
    assert json.loads(r.out) == [{"Id": "x"}]
    assert r.err.splitlines()[0] == "shipslog: No such object: nope"
    r = cli(fake, "inspect", "--type", "container", "nope")
    assert r.err.splitlines()[0] == "shipslog: No such container: nope"
    assert ("GET", "/images/nope/json") not in fake.paths()[-1:]


def test_lifecycle_verbs_send_docker_params_and_echo_names() -> None:
    fake = FakeClient({
        ("POST", "/containers/a/stop"): None, ("POST", "/containers/b/stop"): None,
        ("POST", "/containers/a/kill"): None, ("POST", "/containers/a/restart"): None,
        ("DELETE", "/containers/a"): None, ("POST", "/containers/a/pause"): None,
        ("POST", "/containers/a/unpause"): None, ("POST", "/containers/a/rename"): None,
    })
    assert cli(fake, "stop", "-t", "5", "-s", "SIGINT", "a", "b").out == "a\nb\n"
    assert cli(fake, "kill", "-s", "HUP", "a").out == "a\n"
    assert cli(fake, "restart", "--time", "0", "a").out == "a\n"
    assert cli(fake, "rm", "-fv", "a").out == "a\n"
    assert cli(fake, "pause", "a").out == "a\n"
    assert cli(fake, "unpause", "a").out == "a\n"
    assert cli(fake, "rename", "a", "z").out == ""
    assert [(c.path, c.params) for c in fake.calls] == [
        ("/containers/a/stop", {"t": 5, "signal": "SIGINT"}),
        ("/containers/b/stop", {"t": 5, "signal": "SIGINT"}),
        ("/containers/a/kill", {"signal": "HUP"}),
        ("/containers/a/restart", {"t": 0}),
        ("/containers/a", {"force": True, "v": True}),
        ("/containers/a/pause", None),
        ("/containers/a/unpause", None),
        ("/containers/a/rename", {"name": "z"}),
    ]


def test_partial_failure_reports_each_and_exits_1() -> None:
    fake = FakeClient({("DELETE", "/containers/a"): None,
                       ("DELETE", "/containers/b"): ApiError(409, "You cannot remove a running "
                                                                  "container b")})
    r = cli(fake, "rm", "b", "a")
    assert r.code == 1
    assert r.out == "a\n"
    lines = r.err.splitlines()
    assert lines[0] == ("shipslog: Error response from daemon: You cannot remove a running "
                        "container b")
    assert lines == lines[:1]  # Docker: the daemon's message alone, no summary (issue 18)


def test_one_failed_rm_or_stop_is_the_daemons_message_and_its_hint() -> None:
    for argv, method, path in ((("rm",), "DELETE", "/containers/nosuch"),
                               (("stop",), "POST", "/containers/nosuch/stop")):
        fake = FakeClient({(method, path): ApiError(404, "No such container: nosuch")})
        r = cli(fake, *argv, "nosuch")
        assert r.code == 1 and r.out == ""
        first, *rest = r.err.splitlines()
        assert first == "shipslog: Error response from daemon: No such container: nosuch"
        assert len(rest) == 1 and rest[0].startswith("hint: ") and "above" not in rest[0]


def test_wait_prints_status_codes() -> None:
    fake = FakeClient({("POST", "/containers/a/wait"): {"StatusCode": 137}})
    assert cli(fake, "wait", "a").out == "137\n"


def test_top_table() -> None:
    fake = FakeClient({("GET", "/containers/a/top"): {
        "Titles": ["UID", "PID", "CMD"], "Processes": [["root", "12", "sleep 100"]]}})
    r = cli(fake, "top", "a", "-ef")
    assert fake.calls[0].params == {"ps_args": "-ef"}
    assert r.out == ("UID                 PID                 CMD\n"
                     "root                12                  sleep 100\n")


def test_port_lists_bindings() -> None:
    fake = FakeClient({("GET", "/containers/a/json"): {"NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None}}}})
    assert cli(fake, "port", "a").out == "80/tcp -> 0.0.0.0:8080\n"
    assert cli(fake, "port", "a", "80").out == "0.0.0.0:8080\n"
    assert cli(fake, "port", "a", "81").code == 125


def test_logs_params_and_demultiplexing() -> None:
    fake = FakeClient({
        ("GET", "/containers/web/json"): {"Id": CID, "Config": {"Tty": False}},
        # frames split across chunks, as a socket delivers them
        ("GET", f"/containers/{CID}/logs"): [frame(1, b"one\n")[:5],
                                             frame(1, b"one\n")[5:] + frame(2, b"two\n")],
    })
    r = cli(fake, "logs", "-f", "-t", "--tail", "10", "--since", "10m", "web", now=NOW)
    assert r.code == 0, r.err
    assert r.out == "one\n" and r.err == "two\n"
    assert fake.calls[1].params == {"stdout": True, "stderr": True, "follow": True,
                                    "timestamps": True, "tail": "10",
                                    "since": "1699999400.000000000"}


def test_logs_of_a_tty_container_are_raw() -> None:
    fake = FakeClient({("GET", "/containers/t/json"): {"Id": "t", "Config": {"Tty": True}},
                       ("GET", "/containers/t/logs"): [b"\x01raw"]})
    assert cli(fake, "logs", "t").out == "\x01raw"


def test_images_table_quiet_and_reference_filter() -> None:
    images = [{"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest", "busybox:1"],
               "Created": NOW - 86400 * 3, "Size": 4_860_000}]
    fake = FakeClient({("GET", "/images/json"): images})
    r = cli(fake, "images", now=NOW)
    assert r.out.splitlines() == [
        "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE",
        "busybox      latest    aaaaaaaaaaaa   3 days ago   4.86MB",
        "busybox      1         aaaaaaaaaaaa   3 days ago   4.86MB",
    ]
    assert cli(fake, "images", "-q").out == "aaaaaaaaaaaa\n"
    cli(fake, "images", "-a", "busybox")
    assert fake.calls[-1].params == {"all": True, "filters": '{"reference":["busybox"]}'}
    r = cli(fake, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert r.out == "busybox:latest\nbusybox:1\n"


def test_rmi_and_tag() -> None:
    fake = FakeClient({("DELETE", "/images/busybox"): [{"Untagged": "busybox:latest"},
                                                       {"Deleted": "sha256:aa"}],
                       ("POST", "/images/busybox/tag"): None})
    r = cli(fake, "rmi", "-f", "busybox")
    assert r.out == "Untagged: busybox:latest\nDeleted: sha256:aa\n"
    assert fake.calls[0].params == {"force": True}
    cli(fake, "tag", "busybox", "reg:5000/me/bb")
    assert fake.calls[1].params == {"repo": "reg:5000/me/bb", "tag": "latest"}


class _AllAtOnce(FakeClient):
    """Answers only once `parties` calls are in flight together (else the barrier breaks)."""

    def __init__(self, answers: dict[tuple[str, str], Any], parties: int) -> None:
        super().__init__(answers)
        self.barrier = threading.Barrier(parties, timeout=10)

    def delete(self, path: str, params: Any = None) -> Any:
        self.barrier.wait()
        return super().delete(path, params)

    def post_json(self, path: str, params: Any = None, body: Any = None) -> Any:
        self.barrier.wait()
        return super().post_json(path, params, body)


@pytest.mark.parametrize("argv, method, suffix", [
    (("rm", "-f"), "DELETE", ""), (("stop",), "POST", "/stop"), (("kill",), "POST", "/kill"),
    (("pause",), "POST", "/pause"), (("unpause",), "POST", "/unpause"),
])
def test_verbs_on_many_containers_run_at_once_and_report_in_order(
        argv: tuple[str, ...], method: str, suffix: str) -> None:
    # As docker/cli's parallelOperation: every call is in flight at once (the fake answers
    # only when all three are), yet names print in the order given and a failure (b: no
    # answer, a 404) is reported in its place; one failure makes the exit status 1.
    fake = _AllAtOnce({(method, f"/containers/{ref}{suffix}"): None for ref in ("a", "c")}, 3)
    r = cli(fake, *argv, "a", "b", "c")
    assert r.out == "a\nc\n"
    assert r.code == 1 and r.err.count("Error response from daemon") == 1
    assert "operations failed" not in r.err
    assert f"{method} /containers/b{suffix}" in r.err
    assert sorted(call.path for call in fake.calls) == [
        f"/containers/{ref}{suffix}" for ref in ("a", "b", "c")]


def test_load_from_file_prints_loaded_lines(tmp_path: pathlib.Path) -> None:
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"tar bytes")
    fake = FakeClient({("POST", "/images/load"):
                       b'{"stream":"Loaded image: busybox:latest\\n"}\n'})
    r = cli(fake, "load", "-i", str(archive))
    assert r.code == 0, r.err
    assert r.out == "Loaded image: busybox:latest\n"
    assert fake.calls[0].body == b"tar bytes"


def test_load_refuses_a_terminal_stdin() -> None:
    class TtyIn(io.BytesIO):
        def isatty(self) -> bool:
            return True

    r = cli(FakeClient(), "load", stdin=TtyIn())
    assert r.code == 125
    assert "stdin is a terminal" in r.err


def test_save_to_file_and_refuses_a_terminal(tmp_path: pathlib.Path) -> None:
    fake = FakeClient({("GET", "/images/busybox/get"): [b"part1", b"part2"]})
    out = tmp_path / "out.tar"
    assert cli(fake, "save", "-o", str(out), "busybox").code == 0
    assert out.read_bytes() == b"part1part2"
    assert list(tmp_path.iterdir()) == [out]
    r = cli(fake, "save", "busybox", tty=True)
    assert r.code == 125 and "cowardly refusing" in r.err
    r = cli(fake, "save", "busybox")
    assert r.out == "part1part2"


def test_save_of_several_images_repeats_the_names_parameter() -> None:
    fake = FakeClient({("GET", "/images/get"): [b"tar"]})
    r = cli(fake, "save", "a", "b:1")
    assert r.out == "tar"
    assert fake.calls[0].params == [("names", "a"), ("names", "b:1")]


def test_import_from_stdin_with_reference() -> None:
    fake = FakeClient({("POST", "/images/create"): b'{"status":"sha256:abc"}\n'})
    r = cli(fake, "import", "-m", "hi", "-", "me/img:v2", stdin=io.BytesIO(b"rootfs"))
    assert r.out == "sha256:abc\n"
    assert fake.calls[0].params == {"fromSrc": "-", "repo": "me/img", "tag": "v2",
                                    "message": "hi"}
    assert fake.calls[0].body == b"rootfs"


PULL_STREAM = [
    b'{"status":"Pulling from library/busybox","id":"latest"}\n',
    b'{"status":"Pulling fs layer","progressDetail":{},"id":"l1"}\n',
    b'{"status":"Downloading","progressDetail":{"current":500,"total":1000},'
    b'"progress":"[=>  ]","id":"l1"}\n',
    b'{"status":"Pull complete","progressDetail":{},"id":"l1"}\n',
    b'{"status":"Digest: sha256:dd"}\n{"status":"Status: Downloaded newer image for busybox"}\n',
]


def test_pull_plain_output_hides_progress_bars() -> None:
    fake = FakeClient({("POST", "/images/create"): PULL_STREAM})
    r = cli(fake, "pull", "busybox")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "latest: Pulling from library/busybox", "l1: Pulling fs layer", "l1: Pull complete",
        "Digest: sha256:dd", "Status: Downloaded newer image for busybox", "busybox:latest"]
    call = fake.calls[0]
    assert call.params == {"fromImage": "busybox", "tag": "latest"}
    assert call.headers == {"X-Registry-Auth": "e30="}


def test_pull_on_a_terminal_redraws_layer_lines_in_place() -> None:
    fake = FakeClient({("POST", "/images/create"): PULL_STREAM})
    r = cli(fake, "pull", "busybox", tty=True)
    assert r.out == (
        "latest: Pulling from library/busybox\n"
        "\n\x1b[1A\r\x1b[2Kl1: Pulling fs layer\r\x1b[1B"
        "\x1b[1A\r\x1b[2Kl1: Downloading     500B/1kB\r\x1b[1B"
        "\x1b[1A\r\x1b[2Kl1: Pull complete\r\x1b[1B"
        "Digest: sha256:dd\nStatus: Downloaded newer image for busybox\nbusybox:latest\n")
    assert cli(fake, "pull", "-q", "busybox").out == "busybox:latest\n"


def test_pull_error_in_stream() -> None:
    fake = FakeClient({("POST", "/images/create"):
                       [b'{"errorDetail":{"message":"manifest unknown"},'
                        b'"error":"manifest unknown"}\n']})
    r = cli(fake, "pull", "nope:v9")
    assert r.code == 125
    assert r.err.splitlines()[0] == "shipslog: manifest unknown"


def test_login_stores_credentials_used_by_push(tmp_path: pathlib.Path) -> None:
    env = {"SHIPSLOG_CONFIG": str(tmp_path)}
    fake = FakeClient({("POST", "/auth"): {"Status": "Login Succeeded"},
                       ("POST", "/images/localhost:5000/me/bb/push"):
                       [b'{"status":"Pushed","id":"l1"}\n']})
    r = cli(fake, "login", "-u", "me", "--password-stdin", "localhost:5000", env=env,
            stdin=io.BytesIO(b"s3cret\n"))
    assert r.code == 0, r.err
    assert r.out == "Login Succeeded\n"
    assert fake.calls[0].body == {"username": "me", "password": "s3cret",
                                  "serveraddress": "localhost:5000"}
    config = tmp_path / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    r = cli(fake, "push", "localhost:5000/me/bb:v1", env=env)
    assert r.out == "l1: Pushed\n"
    push = fake.calls[1]
    assert push.params == {"tag": "v1"}
    import base64

    auth = json.loads(base64.urlsafe_b64decode(push.headers["X-Registry-Auth"]))
    assert auth == {"username": "me", "password": "s3cret", "serveraddress": "localhost:5000"}
    r = cli(fake, "logout", "localhost:5000", env=env)
    assert r.out == "Removing login credentials for localhost:5000\n"
    assert json.loads(config.read_text()) == {"auths": {}}


def test_events_lines_and_params() -> None:
    event = {"Type": "container", "Action": "start",
             "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
             "time": 1700000000, "timeNano": 1700000000123456789}
    fake = FakeClient({("GET", "/events"): [event]})
    r = cli(fake, "events", "--since", "1699999000", "--filter", "type=container",
            env={"TZ": "UTC"})
    assert r.code == 0, r.err
    assert fake.calls[0].params == {"since": "1699999000",
                                    "filters": '{"type":["container"]}'}
    stamp, rest = r.out.split(" ", 1)
    assert stamp.startswith("2023-11-1") and ".123456789" in stamp
    assert rest == "container start abc (image=busybox, name=web)\n"
    r = cli(fake, "events", "--format", "{{.Type}} {{.Action}}")
    assert r.out == "container start\n"


def test_version_shows_client_then_server() -> None:
    fake = FakeClient({("GET", "/version"): {"Version": "0.1.0", "ApiVersion": "1.43",
                                             "MinAPIVersion": "1.24", "Os": "linux",
                                             "Arch": "amd64"}})
    r = cli(fake, "version")
    assert r.out.startswith("Client:\n Version:")
    assert "  API version:      1.43 (minimum version 1.24)" in r.out
    r = cli(fake, "version", "--format", "{{.Server.Version}}")
    assert r.out == "0.1.0\n"


def test_info_summary() -> None:
    fake = FakeClient({("GET", "/info"): {"Containers": 3, "ContainersRunning": 1,
                                          "Images": 2, "MemTotal": 2 * 2**30, "NCPU": 4}})
    r = cli(fake, "info")
    assert " Containers: 3\n  Running: 1\n" in r.out
    assert " Total Memory: 2GiB\n" in r.out
    assert cli(fake, "info", "-f", "{{.NCPU}}").out == "4\n"


def test_login_without_a_terminal_needs_password_stdin(tmp_path: pathlib.Path) -> None:
    fake = FakeClient()
    r = cli(fake, "login", "-u", "me", env={"SHIPSLOG_CONFIG": str(tmp_path)})
    assert r.code == 125
    assert r.err.splitlines()[0] == ("shipslog: Cannot perform an interactive login from a "
                                     "non TTY device")
    assert fake.calls == []


def test_progress_bar_like_moby() -> None:
    from engine.cli.progress import progress_bar

    assert progress_bar({"current": 500, "total": 1000}, 80) == "    500B/1kB"
    wide = progress_bar({"current": 500, "total": 1000}, 120)
    assert wide == "[" + "=" * 25 + ">" + " " * 25 + "]     500B/1kB"
    assert progress_bar({"current": 2_500_000}, 80) == "   2.5MB"
    assert progress_bar({}, 80) == ""
