"""Tables, `--format` rules, Go templates, and Docker's human renderings of durations, sizes,
ports and container rows."""

from __future__ import annotations

import pytest

from engine.cli import format as fmt
from engine.cli.gotemplate import TemplateError, render

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (59 * 60, "59 minutes"),
    (3600, "About an hour"), (5400 - 1, "About an hour"), (5400, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (13 * 86400, "13 days"),
    (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"), (60 * 86400, "2 months"),
    (2 * 365 * 86400, "2 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert fmt.human_duration(seconds) == text


@pytest.mark.parametrize(("size", "precision", "text"), [
    (0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"), (1234567, 3, "1.23MB"),
    (4_860_000, 3, "4.86MB"), (1_500_000_000, 4, "1.5GB"), (123_456, 4, "123.5kB"),
])
def test_human_size(size: int, precision: int, text: str) -> None:
    assert fmt.human_size(size, precision) == text


def test_bytes_size() -> None:
    assert fmt.bytes_size(2 * 2**30) == "2GiB"
    assert fmt.bytes_size(1536) == "1.5KiB"


def test_display_ports_groups_runs_and_mappings() -> None:
    ports = [
        {"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
        {"PrivatePort": 444, "Type": "tcp"},
        {"PrivatePort": 53, "Type": "udp"},
        {"PrivatePort": 9000, "PublicPort": 9000, "IP": "127.0.0.1", "Type": "tcp"},
        {"PrivatePort": 80, "PublicPort": 8080, "IP": "::", "Type": "tcp"},
    ]
    assert fmt.display_ports(ports) == (
        "53/udp, 443-444/tcp, 127.0.0.1:9000->9000/tcp, 0.0.0.0:8080->80/tcp, "
        "[::]:8080->80/tcp")
    assert fmt.display_ports([]) == ""


def test_tabulate_like_go_tabwriter() -> None:
    table = fmt.tabulate(["CONTAINER ID\tIMAGE\tNAMES", "abc\tbusybox\tweb"])
    assert table == ("CONTAINER ID   IMAGE     NAMES\n"
                     "abc            busybox   web\n")


CONTAINER = {
    "Id": "0123456789abcdef" * 4, "Names": ["/web", "/other/alias"], "Image": "busybox",
    "Command": "sh -c 'while true; do sleep 1; done'", "Created": NOW - 125,
    "State": "running", "Status": "Up 2 minutes",
    "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"}],
    "Labels": {"tier": "front", "app": "x"},
    "NetworkSettings": {"Networks": {"bridge": {}}},
    "Mounts": [{"Name": "averyveryverylongvolumename", "Driver": "local"}],
}


def test_container_row_fields() -> None:
    row = fmt.container_row(CONTAINER, now=NOW)
    assert row["ID"] == "0123456789ab"
    assert row["Command"] == '"sh -c \'while true; …"'
    assert row["RunningFor"] == "2 minutes ago"
    assert row["Names"] == "web"
    assert row["Labels"] == "app=x,tier=front"
    assert row["Ports"] == "0.0.0.0:8080->80/tcp"
    assert row["Networks"] == "bridge"
    assert row["Mounts"] == "averyveryveryl…"
    assert row["Label"]("tier") == "front"
    full = fmt.container_row(CONTAINER, now=NOW, trunc=False)
    assert full["ID"] == CONTAINER["Id"]
    assert full["Names"] == "web,other/alias"
    assert full["Command"] == '"sh -c \'while true; do sleep 1; done\'"'


def test_default_ps_table() -> None:
    rows = [fmt.container_row(CONTAINER, now=NOW)]
    out = fmt.render_list("", rows, fmt.CONTAINER_TABLE, fmt.CONTAINER_TITLES)
    header, line = out.splitlines()
    assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                              "PORTS", "NAMES"]
    assert line.startswith("0123456789ab   busybox   \"sh -c 'while true; …\"   2 minutes ago")
    assert line.endswith("Up 2 minutes   0.0.0.0:8080->80/tcp   web")
    # columns line up under their titles
    assert header.index("IMAGE") == line.index("busybox")
    assert header.index("NAMES") == line.index("web")


def test_custom_table_json_and_plain_formats() -> None:
    rows = [fmt.container_row(CONTAINER, now=NOW)]
    table = fmt.render_list("table {{.ID}}\\t{{.Names}}\\t{{.Label \"tier\"}}", rows,
                            fmt.CONTAINER_TABLE, fmt.CONTAINER_TITLES)
    assert table == "CONTAINER ID   NAMES     LABEL\n0123456789ab   web       front\n"
    plain = fmt.render_list("{{.Names}}: {{.Status}}", rows, fmt.CONTAINER_TABLE,
                            fmt.CONTAINER_TITLES)
    assert plain == "web: Up 2 minutes\n"
    import json

    line = fmt.render_list("json", rows, fmt.CONTAINER_TABLE, fmt.CONTAINER_TITLES)
    decoded = json.loads(line)
    assert decoded["ID"] == "0123456789ab" and decoded["Names"] == "web"
    assert "Label" not in decoded
    with pytest.raises(ValueError, match="template"):
        fmt.render_list("{{.Names", rows, fmt.CONTAINER_TABLE, fmt.CONTAINER_TITLES)


def test_image_rows_one_per_tag_and_dangling() -> None:
    image = {"Id": "sha256:" + "f" * 64, "RepoTags": ["busybox:latest", "reg:5000/b:v1"],
             "RepoDigests": ["busybox@sha256:dd"], "Created": NOW - 3 * 7 * 86400,
             "Size": 4_860_000}
    rows = fmt.image_rows(image, now=NOW)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [
        ("busybox", "latest", "sha256:dd"), ("reg:5000/b", "v1", "<none>")]
    assert rows[0]["ID"] == "f" * 12 and rows[0]["Size"] == "4.86MB"
    assert rows[0]["CreatedSince"] == "3 weeks ago"
    dangling = fmt.image_rows({"Id": "sha256:" + "e" * 64, "RepoTags": None}, now=NOW)
    assert [(r["Repository"], r["Tag"]) for r in dangling] == [("<none>", "<none>")]
    out = fmt.render_list("", rows, fmt.IMAGE_TABLE, fmt.IMAGE_TITLES)
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED",
                                           "SIZE"]


INSPECT = {"Id": "abc", "Name": "/web", "State": {"Pid": 42, "Status": "running",
                                                  "Running": True},
           "Config": {"Labels": {"k": "v", "a": "b"}, "Env": ["A=1", "B=2"], "Cmd": None}}


@pytest.mark.parametrize(("template", "text"), [
    ("{{.State.Pid}}", "42"),
    ("{{.Name}}", "/web"),
    ("{{.State.Status}}", "running"),
    ("{{json .Config.Labels}}", '{"k":"v","a":"b"}'),
    ('{{index .Config.Labels "k"}}', "v"),
    ("{{.Config.Labels}}", "map[a:b k:v]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Cmd}}", "[]"),  # a null slice, printed as Go prints a nil []string
    ("{{.Nope}}", "<no value>"),
    ("{{.State.Running}}", "true"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=b;k=v;"),
    ("{{range $i, $e := .Config.Env}}{{$i}}{{end}}", "01"),
    ("{{range .Config.Cmd}}x{{else}}empty{{end}}", "empty"),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ('{{if .Config.Cmd}}a{{else if .State.Running}}b{{else}}c{{end}}', "b"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ("{{.Name | upper}}", "/WEB"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ('{{printf "%s:%d" .Name .State.Pid}}', "/web:42"),
    ("{{len .Config.Env}}", "2"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{(index .Config.Env 0)}}", "A=1"),
    ("{{- .Name }}   \n{{- .Id -}}  !", "/webabc!"),
    ("{{/* ignored */}}ok", "ok"),
    ("{{if and .State.Running (not .Config.Cmd)}}yes{{end}}", "yes"),
    ('{{$.Name}}{{with .State}}{{$.Id}}{{end}}', "/webabc"),
])
def test_go_templates(template: str, text: str) -> None:
    assert render(template, INSPECT) == text


def test_json_of_whole_object_keeps_order() -> None:
    assert render("{{json .}}", {"b": 1, "a": [True, None]}) == '{"b":1,"a":[true,null]}'


@pytest.mark.parametrize("template", ["{{.Name", "{{if .X}}no end", "{{end}}", "{{nofunc .}}",
                                      "{{.Name.Deeper}}", "{{index .Config.Env 9}}"])
def test_template_errors(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, INSPECT)


def test_render_each_for_inspect() -> None:
    assert fmt.render_each("{{.Name}}", [INSPECT, {"Name": "/db"}]) == "/web\n/db\n"
    assert fmt.render_each("json", [{"a": 1}]) == '{"a":1}\n'


def test_null_slices_and_maps_print_as_docker_go_types_do() -> None:
    obj = {"HostConfig": {"Binds": None, "PortBindings": None, "CapAdd": None},
           "NetworkSettings": {"Ports": {"80/tcp": None}}, "State": {"Health": None}}
    assert render("{{.HostConfig.Binds}}", obj) == "[]"
    assert render("{{json .HostConfig.Binds}}", obj) == "null"
    assert render("{{.HostConfig.PortBindings}}", obj) == "map[]"
    assert render("{{.NetworkSettings.Ports}}", obj) == "map[80/tcp:[]]"
    assert render("{{json .NetworkSettings.Ports}}", obj) == '{"80/tcp":null}'
    assert render("{{.State.Health}}", obj) == "<nil>"
    assert render("{{len .HostConfig.CapAdd}}{{if .HostConfig.Binds}}y{{end}}", obj) == "0"


def test_json_is_html_safe_like_go() -> None:
    assert render("{{json .}}", {"a": "<none> & >"}) == '{"a":"\\u003cnone\\u003e \\u0026 \\u003e"}'
    rows = fmt.image_rows({"Id": "sha256:" + "e" * 64}, now=NOW)
    line = fmt.render_list("json", rows, fmt.IMAGE_TABLE, fmt.IMAGE_TITLES)
    assert '"Digest":"\\u003cnone\\u003e"' in line
    assert line.index('"Containers"') < line.index('"CreatedAt"') < line.index('"VirtualSize"')


def test_container_size_is_always_shown() -> None:
    assert fmt.container_row({"Id": "x"}, now=NOW)["Size"] == "0B"


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_go_time_without_datetime_matches_datetime(zone: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # go_time renders with `time` (datetime costs every `ps` ~1 ms to import, issue 17); it
    # must print what the datetime rendering printed, daylight saving time included
    import time
    from datetime import datetime

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for epoch in (0, 1_700_000_000, 1_720_000_000.75, 1_795_826_622):
            dt = datetime.fromtimestamp(epoch).astimezone()
            assert fmt.go_time(epoch) == f"{dt:%Y-%m-%d %H:%M:%S} {dt:%z} {dt.tzname()}"
    finally:
        monkeypatch.undo()
        time.tzset()
