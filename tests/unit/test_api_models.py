"""The Docker models against the v1.43 spec, and the pure API helpers: stream framing,
JSON lines, routing, version negotiation, query booleans, JSON body errors.

I/O: reads /work/shared/spec/docker-engine-api-v1.43.yaml (skipped when absent).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.docker import models
from engine.api.docker.stream import (
    STDERR,
    STDOUT,
    FrameDecoder,
    JsonLineDecoder,
    error_line,
    frame,
    json_line,
    progress,
)
from engine.api.server.router import (
    Request,
    Router,
    decode_json,
    empty,
    json_response,
    split_version,
)
from engine.core.errors import InvalidArgument, NotFound
from events.envelope import Actor

SPEC_PATH = "/work/shared/spec/docker-engine-api-v1.43.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not os.path.exists(SPEC_PATH):
        pytest.skip("Docker API spec not available")
    yaml = pytest.importorskip("yaml")
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def _definition(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """A definition name, or "METHOD path status"/"METHOD path body" for inline schemas."""
    if " " not in where:
        schema = spec["definitions"][where]
    else:
        method, path, part = where.split(" ")
        op = spec["paths"][path][method.lower()]
        if part == "body":
            schema = next(p["schema"] for p in op["parameters"] if p["in"] == "body")
        else:
            schema = op["responses"][int(part)]["schema"]
    props: dict[str, Any] = dict(schema.get("properties", {}))
    for part_schema in schema.get("allOf", []):
        if "$ref" in part_schema:
            props.update(_definition(spec, part_schema["$ref"].split("/")[-1]))
        props.update(part_schema.get("properties", {}))
    return props


def _spec_type(prop: dict[str, Any]) -> str:
    if "$ref" in prop or "allOf" in prop:
        return "object-or-enum"
    return prop.get("type", "object")


_JSON_TYPE = {
    msgspec.inspect.StrType: "string",
    msgspec.inspect.IntType: "integer",
    msgspec.inspect.BoolType: "boolean",
    msgspec.inspect.ListType: "array",
    msgspec.inspect.DictType: "object",
    msgspec.inspect.StructType: "object",
}


def _our_type(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        assert len(kinds) == 1, info
        info = kinds[0]
    return _JSON_TYPE[type(info)]


CHECKED = [
    (models.DockerContainerConfig, "ContainerConfig"),
    (models.ContainerCreateBody, "POST /containers/create body"),
    (models.HostConfig, "HostConfig"),
    (models.RestartPolicyBody, "RestartPolicy"),
    (models.MountBody, "Mount"),
    (models.PortBindingBody, "PortBinding"),
    (models.EndpointSettings, "EndpointSettings"),
    (models.NetworkingConfig, "NetworkingConfig"),
    (models.HealthConfig, "HealthConfig"),
    (models.ExecConfig, "POST /containers/{id}/exec body"),
    (models.ExecStartConfig, "POST /exec/{id}/start body"),
    (models.ContainerCreateResponse, "ContainerCreateResponse"),
    (models.ContainerWaitResponse, "ContainerWaitResponse"),
    (models.WaitExitError, "ContainerWaitExitError"),
    (models.ContainerState, "ContainerState"),
    (models.Health, "Health"),
    (models.HealthcheckResult, "HealthcheckResult"),
    (models.GraphDriverData, "GraphDriverData"),
    (models.MountPoint, "MountPoint"),
    (models.PortBindingOut, "PortBinding"),
    (models.NetworkEndpoint, "EndpointSettings"),
    (models.NetworkSettings, "NetworkSettings"),
    (models.ContainerInspect, "GET /containers/{id}/json 200"),
    (models.Port, "Port"),
    (models.ContainerSummary, "ContainerSummary"),
    (models.ImageSummary, "ImageSummary"),
    (models.ImageInspect, "ImageInspect"),
    (models.RootFS, "ImageInspect.RootFS"),
    (models.ComponentVersion, "SystemVersion.Components"),
    (models.PlatformName, "SystemVersion.Platform"),
    (models.SystemVersion, "SystemVersion"),
    (models.SystemInfo, "SystemInfo"),
    (models.PluginsInfo, "PluginsInfo"),
    (models.SwarmInfo, "SwarmInfo"),
    (models.EventActor, "EventActor"),
    (models.EventMessage, "EventMessage"),
    (models.ExecInspect, "GET /exec/{id}/json 200"),
    (models.ProcessConfig, "ProcessConfig"),
]
# Fields Docker sends that the v1.43 spec does not list (deprecated, still read by old clients).
UNLISTED = {("EventMessage", "status"), ("EventMessage", "id"), ("EventMessage", "from")}
# Fields of later API versions we send already: FirewallBackend (v1.48) says which firewall
# managers would drop our bridges' traffic (issue 15, item 5).
UNLISTED |= {("SystemInfo", "FirewallBackend")}
# shipslog's own: `shipslogd --replicate-to`'s progress (issue 19); Docker's clients ignore it.
UNLISTED |= {("SystemInfo", "Replication")}


@pytest.mark.parametrize(("struct_type", "where"), CHECKED, ids=lambda x: getattr(x, "__name__", x))
def test_fields_match_the_spec(spec: dict[str, Any], struct_type: type, where: str) -> None:
    where, _, nested = where.partition(".")
    props = _definition(spec, where)
    if nested:  # an inline object inside a definition (or the items of an inline array)
        inner = props[nested]
        props = inner.get("items", inner)["properties"]
    info = msgspec.inspect.type_info(struct_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if (struct_type.__name__, field.encode_name) in UNLISTED:
            continue
        assert field.encode_name in props, f"{struct_type.__name__}.{field.encode_name}"
        want = _spec_type(props[field.encode_name])
        got = _our_type(field.type)
        if want == "object-or-enum":
            continue  # a $ref: a nested struct, or an enum of strings
        assert got == want, f"{struct_type.__name__}.{field.encode_name}: {got} != {want}"


def test_create_body_ignores_unknown_fields_and_accepts_nulls() -> None:
    raw = (
        b'{"Image":"busybox","Cmd":null,"Entrypoint":null,"Tty":null,"FutureField":{"x":1},'
        b'"HostConfig":{"Binds":null,"PidsLimit":null,"RestartPolicy":null,"Whatever":1},'
        b'"NetworkingConfig":{"EndpointsConfig":{"default":null}}}'
    )
    body = msgspec.json.decode(raw, type=models.ContainerCreateBody)
    assert body.Image == "busybox" and body.Cmd is None and body.Tty is None
    assert body.HostConfig is not None and body.HostConfig.PidsLimit is None
    assert body.NetworkingConfig is not None
    assert body.NetworkingConfig.EndpointsConfig == {"default": None}


def test_event_message_shape() -> None:
    event = models.EventMessage(
        Type="container",
        Action="start",
        Actor=models.EventActor(ID="abc", Attributes={"name": "web", "image": "busybox"}),
        scope="local",
        time=1,
        timeNano=1_000_000_001,
        status="start",
        id="abc",
        from_="busybox",
    )
    decoded = msgspec.json.decode(msgspec.json.encode(event))
    assert decoded == {
        "Type": "container",
        "Action": "start",
        "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
        "scope": "local",
        "time": 1,
        "timeNano": 1_000_000_001,
        "status": "start",
        "id": "abc",
        "from": "busybox",
    }
    bare = models.EventMessage(
        Type="volume",
        Action="create",
        Actor=models.EventActor(ID="v"),
        scope="local",
        time=1,
        timeNano=1,
    )
    assert set(msgspec.json.decode(msgspec.json.encode(bare))) == {
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
    }


def test_inspect_defaults_look_like_docker() -> None:
    out = msgspec.json.decode(msgspec.json.encode(models.ContainerInspect(Id="a", Created="t")))
    assert out["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert out["Mounts"] == [] and out["Config"]["Image"] is None
    summary = msgspec.json.decode(msgspec.json.encode(models.ContainerSummary(Id="a")))
    assert summary["HostConfig"] == {"NetworkMode": "default"}


# -- stream framing ----------------------------------------------------------------------------


def test_frame_header_is_docker_shaped() -> None:
    assert frame(STDOUT, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(STDERR, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    assert struct.unpack(">I", frame(STDOUT, b"x" * 70000)[4:8]) == (70000,)
    with pytest.raises(ValueError):
        frame(7, b"")


@given(
    st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.binary(max_size=300)), max_size=20),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_frame_decoder_round_trips_under_any_split(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(frame(s, d) for s, d in frames)
    decoder = FrameDecoder()
    got: list[tuple[int, bytes]] = []
    pos, i = 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        got += decoder.feed(wire[pos : pos + step])
        pos += step
        i += 1
    assert got == frames and decoder.pending == 0


def test_frame_decoder_rejects_a_raw_stream() -> None:
    with pytest.raises(ValueError, match="not a multiplexed stream"):
        FrameDecoder().feed(b"hello world, this is a tty")


def test_json_lines() -> None:
    decoder = JsonLineDecoder()
    wire = json_line({"a": 1}) + progress("Downloading", id="abc", current=5, total=10)
    wire += error_line("boom") + b'{"tail":true}'
    objects = list(decoder.feed(wire[:7])) + list(decoder.feed(wire[7:])) + list(decoder.close())
    assert objects == [
        {"a": 1},
        {"status": "Downloading", "id": "abc", "progressDetail": {"current": 5, "total": 10}},
        {"errorDetail": {"message": "boom"}, "error": "boom"},
        {"tail": True},
    ]


# -- routing and requests -----------------------------------------------------------------------


async def _handler(req: Request) -> Any:
    return empty()


def test_router_params_literals_and_head() -> None:
    router = Router()
    router.add("GET", "/images/{name:path}/json", _handler)
    router.add("GET", "/images/json", _handler)
    router.add("POST", "/containers/{id}/start", _handler)
    router.add("GET", "/containers/{id}/json", _handler)
    route, params = router.match("GET", "/images/reg:5000/a/b%2Fc:1/json")
    assert route.pattern == "/images/{name:path}/json" and params == {"name": "reg:5000/a/b/c:1"}
    assert router.match("GET", "/images/json")[0].pattern == "/images/json"
    assert router.match("POST", "/containers/abc/start")[1] == {"id": "abc"}
    assert router.match("HEAD", "/containers/abc/json")[0].method == "GET"
    for method, path in [
        ("GET", "/containers/a/b/json"),
        ("DELETE", "/images/json"),
        ("GET", "/containers//json"),
    ]:
        with pytest.raises(NotFound, match="page not found"):
            router.match(method, path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/_ping", ("1.43", "/_ping")),
        ("/v1.24/containers/json", ("1.24", "/containers/json")),
        ("/v1.43/version", ("1.43", "/version")),
        ("/version", ("1.43", "/version")),
    ],
)
def test_split_version(path: str, expected: tuple[str, str]) -> None:
    assert split_version(path) == expected


def test_split_version_refuses_outside_the_range() -> None:
    with pytest.raises(InvalidArgument, match="client version 1.23 is too old"):
        split_version("/v1.23/version")
    with pytest.raises(InvalidArgument, match="client version 1.44 is too new"):
        split_version("/v1.44/version")
    with pytest.raises(InvalidArgument, match="too new"):
        split_version("/v2/version")


def _request(query: dict[str, list[str]], body: bytes = b"", ctype: str = "") -> Request:
    return Request(
        method="POST",
        path="/x",
        params={},
        query=query,
        headers={"content-type": ctype} if ctype else {},
        api_version="1.43",
        actor=Actor(uid=0, gid=0, pid=1),
        _body=body,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("none", False),
        ("", False),
    ],
)
def test_docker_booleans(value: str, expected: bool) -> None:
    assert _request({"force": [value]}).bool("force") is expected


def test_query_defaults_and_ints() -> None:
    req = _request({"t": ["5"], "bad": ["x"]})
    assert req.bool("missing") is False and req.bool("missing", True) is True
    assert req.int("t") == 5 and req.int("nope", 10) == 10
    with pytest.raises(InvalidArgument, match="not an integer"):
        req.int("bad")


async def test_request_json_errors() -> None:
    class Body(msgspec.Struct):
        Name: str

    assert await _request({}, b'{"Name":"a"}', "application/json").json(Body) == Body("a")
    assert await _request({}, b'{"Name":"a"}').json(Body) == Body("a")  # no Content-Type
    assert await _request({}, b"").json(Body, required=False) is None
    with pytest.raises(InvalidArgument, match="body required"):
        await _request({}, b"  ").json(Body)
    with pytest.raises(InvalidArgument, match="must be 'application/json'"):
        await _request({}, b"{}", "text/plain").json()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a":1} x', "invalid JSON: unexpected content after JSON"),
        (b'{"a":', "invalid JSON: Input data was truncated"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
        (b'{"a":"\xff"}', "invalid JSON"),
        (b'{"a":1e400}', "invalid JSON"),
        (b"\x00", "invalid JSON"),
    ],
)
def test_decode_json_turns_every_parser_error_into_400(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_json(raw, dict[str, int])
    assert err.value.message.startswith(message)


def test_duplicate_keys_decode_once_last_wins() -> None:
    # RELIABILITY S-10: whatever a policy hook sees is this one decode of these bytes.
    assert decode_json(b'{"a":1,"a":2}', dict[str, int]) == {"a": 2}


def test_json_response_ends_with_newline() -> None:
    response = json_response({"Id": "x"}, status=201)
    assert response.body == b'{"Id":"x"}\n' and response.status == 201
    assert ("Content-Type", "application/json") in response.headers
