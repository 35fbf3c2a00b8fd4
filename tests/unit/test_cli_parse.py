"""Docker's flag value syntaxes: sizes, CPUs, durations and timestamps, env files, labels,
filters, ports, volumes, mounts, tmpfs, restart policies, image references."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.cli import parse


@pytest.mark.parametrize(("text", "value"), [
    ("512m", 512 * 2**20), ("512M", 512 * 2**20), ("1g", 2**30), ("1gb", 2**30),
    ("1GiB", 2**30), ("100", 100), ("64k", 65536), ("1.5g", 3 * 2**29), ("10b", 10),
])
def test_sizes(text: str, value: int) -> None:
    assert parse.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "m", "1x", "-1m", "1.2.3m"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_size(text)


def test_cpus_exact_nanocpus() -> None:
    assert parse.parse_cpus("1.5") == 1_500_000_000
    assert parse.parse_cpus("0.1") == 100_000_000
    assert parse.parse_cpus("2") == 2_000_000_000
    with pytest.raises(ValueError):
        parse.parse_cpus("abc")
    with pytest.raises(ValueError):
        parse.parse_cpus("0.0000000001")


def test_go_durations() -> None:
    assert parse.parse_go_duration("10m") == 600
    assert parse.parse_go_duration("1h30m") == 5400
    assert parse.parse_go_duration("1.5s") == 1.5
    assert parse.parse_go_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse.parse_go_duration("10 minutes")


def test_timestamps_relative_absolute_and_unix() -> None:
    now = 1_700_000_000.0
    assert parse.parse_timestamp("10m", now) == "1699999400.000000000"
    assert parse.parse_timestamp("1700000000", now) == "1700000000"
    assert parse.parse_timestamp("1700000000.5", now) == "1700000000.5"
    assert parse.parse_timestamp("2023-11-14T22:13:20Z", now) == "1700000000.000000000"
    assert parse.parse_timestamp("2023-11-14T23:13:20+01:00", now) == "1700000000.000000000"
    local = datetime(2023, 11, 14, 12, 0, 0).astimezone().timestamp()
    assert parse.parse_timestamp("2023-11-14T12:00:00", now) == f"{int(local)}.000000000"
    with pytest.raises(ValueError):
        parse.parse_timestamp("yesterday", now)


def test_env_values() -> None:
    env = {"HOME": "/root"}
    assert parse.parse_env("A=1", env) == "A=1"
    assert parse.parse_env("A=", env) == "A="
    assert parse.parse_env("HOME", env) == "HOME=/root"
    assert parse.parse_env("UNSET", env) == "UNSET"
    with pytest.raises(ValueError):
        parse.parse_env("=x", env)


def test_env_file_lines() -> None:
    lines = ["# comment\n", "\n", "A=1\n", "  B=x y\r\n", "C\n"]
    assert parse.parse_env_lines(lines, {"C": "3"}, "f") == ["A=1", "B=x y", "C=3"]
    with pytest.raises(ValueError, match="f:1"):
        parse.parse_env_lines(["BAD KEY=1"], {}, "f")


def test_labels_and_filters() -> None:
    assert parse.parse_labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    assert parse.parse_filters(["status=exited", "label=a=b", "status=created"]) == {
        "status": ["exited", "created"], "label": ["a=b"]}
    with pytest.raises(ValueError):
        parse.parse_filters(["nokey"])


@pytest.mark.parametrize(("spec", "exposed", "bindings"), [
    ("80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": ""}]}),
    ("8080:80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}),
    ("127.0.0.1:8080:80/udp", ["80/udp"],
     {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}),
    ("127.0.0.1::80", ["80/tcp"], {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}),
    ("[::1]:8080:80", ["80/tcp"], {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}),
    ("8000-8001:80-81", ["80/tcp", "81/tcp"],
     {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
      "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}),
    ("8000-8010:80", ["80/tcp"], {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}),
])
def test_publish(spec: str, exposed: list[str], bindings: dict[str, object]) -> None:
    got_exposed, got_bindings = parse.parse_publish(spec)
    assert sorted(got_exposed) == exposed
    assert got_bindings == bindings


@pytest.mark.parametrize("spec", ["0:80", "8080:70000", "8000-8002:80-81", "80/icmp", "a:b",
                                  "8080:"])
def test_bad_publish(spec: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_publish(spec)


def test_volumes() -> None:
    assert parse.parse_volume("/data") == (None, "/data")
    assert parse.parse_volume("/srv:/data") == ("/srv:/data", None)
    assert parse.parse_volume("named:/data:ro") == ("named:/data:ro", None)
    for bad in ("data", "/a:relative", "/a:/b:bogus", "/a::/b", "/a:/b:ro:x"):
        with pytest.raises(ValueError):
            parse.parse_volume(bad)


def test_mounts() -> None:
    assert parse.parse_mount("type=bind,source=/a,target=/b,readonly") == {
        "Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True}
    assert parse.parse_mount("type=bind,src=/a,dst=/b,ro=false,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": False,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse.parse_mount("source=vol,target=/v,volume-nocopy,volume-opt=o=addr") == {
        "Type": "volume", "Source": "vol", "Target": "/v",
        "VolumeOptions": {"NoCopy": True, "DriverConfig": {"Options": {"o": "addr"}}}}
    assert parse.parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t",
        "TmpfsOptions": {"SizeBytes": 64 * 2**20, "Mode": 0o1770}}
    assert parse.parse_mount('type=bind,"source=/a,b",target=/c')["Source"] == "/a,b"
    for bad in ("type=bind,target=/b", "type=tmpfs,source=/x,target=/t", "source=/a",
                "type=weird,target=/t", "type=volume,target=/t,bind-propagation=shared",
                "type=bind,source=/a,target=/b,colour=red"):
        with pytest.raises(ValueError):
            parse.parse_mount(bad)


def test_tmpfs_restart_and_opts() -> None:
    assert parse.parse_tmpfs("/run:rw,size=64m") == ("/run", "rw,size=64m")
    assert parse.parse_tmpfs("/run") == ("/run", "")
    assert parse.parse_restart("always") == {"Name": "always"}
    assert parse.parse_restart("no") == {"Name": ""}
    assert parse.parse_restart("on-failure:5") == {"Name": "on-failure", "MaximumRetryCount": 5}
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(ValueError):
            parse.parse_restart(bad)
    assert parse.parse_key_value_opts(["max-size=10m", "k=a=b"], "--log-opt") == {
        "max-size": "10m", "k": "a=b"}


def test_image_references() -> None:
    assert parse.split_image_ref("busybox") == ("busybox", "")
    assert parse.split_image_ref("busybox:1.36") == ("busybox", "1.36")
    assert parse.split_image_ref("localhost:5000/a/b") == ("localhost:5000/a/b", "")
    assert parse.split_image_ref("localhost:5000/a/b:v1") == ("localhost:5000/a/b", "v1")
    assert parse.split_image_ref("a@sha256:abc") == ("a", "sha256:abc")
