"""Network IPAM details against shipslogd and dockerd (the `engine` fixture): auxiliary
addresses (`--aux-address`, `IPAM.Config[].AuxiliaryAddresses`), IPAM driver options
(`--ipam-opt`, `IPAM.Options`) and the inspect of a dual-stack network (issue 13).

I/O: the docker CLI and the Docker SDK's API client against each engine; networks and
containers it makes are removed by the test (shipslog) or the fixture (dockerd)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.testing.dockercli import docker
from tests.compat.conftest import Engine

pytestmark = pytest.mark.kernel

# Off the predefined pools (172.18-31/16, 192.168/16) and off anything these hosts route.
SUBNET = "10.213.7.0/29"


def network(engine: Engine, ref: str) -> dict[str, Any]:
    return json.loads(docker(engine, "network", "inspect", ref).stdout)[0]


def create_raw(engine: Engine, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /networks/create as a client sends it, status and JSON answer."""
    api = engine.sdk().api
    r = api._post_json(api._url("/networks/create"), data=body)
    return r.status_code, r.json()


def test_aux_addresses_and_ipam_options_shown_and_never_handed_out(engine: Engine) -> None:
    docker(engine, "network", "create", "--subnet", SUBNET, "--aux-address", "router=10.213.7.2",
           "--aux-address", "printer=10.213.7.3", "--ipam-opt", "foo=bar", "auxnet")
    try:
        ipam = network(engine, "auxnet")["IPAM"]
        assert ipam["Driver"] == "default" and ipam["Options"] == {"foo": "bar"}
        # shipslog also shows the gateway it chose (Docker shows only a gateway the user gave)
        [config] = ipam["Config"]
        assert config["Subnet"] == SUBNET
        assert config["AuxiliaryAddresses"] == {"router": "10.213.7.2", "printer": "10.213.7.3"}
        # .1 is the gateway, .2 and .3 are reserved: the first container gets .4
        docker(engine, "run", "-d", "--name", "a1", "--network", "auxnet", "busybox",
               "sleep", "1000")
        ip = docker(engine, "inspect", "-f", "{{.NetworkSettings.Networks.auxnet.IPAddress}}",
                    "a1").stdout.strip()
        assert ip == "10.213.7.4"
        p = docker(engine, "run", "--rm", "--network", "auxnet", "--ip", "10.213.7.3",
                   "busybox", "true", check=False)
        assert p.returncode != 0 and "Address already in use" in p.stderr
    finally:
        docker(engine, "rm", "-f", "a1", check=False)
        docker(engine, "network", "rm", "auxnet", check=False)


def test_ipam_options_null_unless_given(engine: Engine) -> None:
    """The SDK sends no IPAM: Docker shows `Options: null`; the docker CLI always sends its
    (maybe empty) --ipam-opt map, shown as {}."""
    net = engine.sdk().networks.create("noipam")
    try:
        assert net.attrs["IPAM"]["Options"] is None
    finally:
        net.remove()
    docker(engine, "network", "create", "cliipam")
    try:
        assert network(engine, "cliipam")["IPAM"]["Options"] == {}
    finally:
        docker(engine, "network", "rm", "cliipam")


@pytest.mark.parametrize(("n", "aux", "status", "message"), [
    (1, {"a": "10.99.0.1"}, 403,
     "auxiliary address: (a:10.99.0.1) must belong to the master pool: 10.213.71.0/29"),
    (2, {"a": "10.213.72.1"}, 400,  # the gateway
     "failed to allocate secondary ip address (a:10.213.72.1): Address already in use"),
    (3, {"a": "10.213.73.7"}, 400,  # the broadcast address
     "failed to allocate secondary ip address (a:10.213.73.7): Address already in use"),
    (4, {"a": "zzz"}, 400, "non parsable secondary ip address (a:zzz) passed for network badaux"),
])
def test_bad_aux_address_refused_with_dockers_message(engine: Engine, n: int,
                                                      aux: dict[str, str], status: int,
                                                      message: str) -> None:
    # A subnet of its own each: dockerd 20.10 keeps the pool of a create it refused here
    # reserved until it restarts ("Pool overlaps" at the next use), which shipslog does not.
    body = {"Name": "badaux", "IPAM": {"Config": [{"Subnet": f"10.213.7{n}.0/29",
                                                   "AuxiliaryAddresses": aux}]}}
    got, answer = create_raw(engine, body)
    assert answer["message"] == message
    if engine.name == "shipslog" or status == 403:
        # Docker 20.10 answers 500 for the last three (libnetwork InternalErrorf, and the
        # parse error is not typed); a mistake of the user's is a 4xx here
        assert got == status
    assert docker(engine, "network", "ls", "-q", "--filter", "name=badaux").stdout == ""


def test_unknown_ipam_driver_refused(engine: Engine) -> None:
    got, answer = create_raw(engine, {"Name": "ipamdrv", "IPAM": {"Driver": "nosuch"}})
    assert (got, answer["message"]) == (404, 'plugin "nosuch" not found')


def test_dual_stack_network_inspect(engine: Engine) -> None:
    """The inspect fields of a dual-stack network (tests/integration/test_ipv6_networks.py,
    against both engines): one IPAM config per family, v4 first, EnableIPv6 set, and a
    container's v6 address in its endpoint."""
    docker(engine, "network", "create", "--ipv6", "--subnet", "10.213.8.0/24",
           "--subnet", "fd00:213:8::/64", "--gateway", "fd00:213:8::1",
           "--aux-address", "r6=fd00:213:8::2", "dual")
    try:
        info = network(engine, "dual")
        assert info["EnableIPv6"] is True
        configs = info["IPAM"]["Config"]
        assert [c["Subnet"] for c in configs] == ["10.213.8.0/24", "fd00:213:8::/64"]
        assert configs[1]["Gateway"] == "fd00:213:8::1"
        assert configs[1]["AuxiliaryAddresses"] == {"r6": "fd00:213:8::2"}
        assert "AuxiliaryAddresses" not in configs[0]
        docker(engine, "run", "-d", "--name", "d1", "--network", "dual", "busybox",
               "sleep", "1000")
        ep = json.loads(docker(engine, "inspect", "d1").stdout)[0][
            "NetworkSettings"]["Networks"]["dual"]
        assert ep["IPAddress"].startswith("10.213.8.")
        assert ep["GlobalIPv6Address"] == "fd00:213:8::3"  # ::1 gateway, ::2 reserved
        assert ep["GlobalIPv6PrefixLen"] == 64 and ep["IPv6Gateway"] == "fd00:213:8::1"
    finally:
        docker(engine, "rm", "-f", "d1", check=False)
        docker(engine, "network", "rm", "dual", check=False)


def test_attachable_is_recorded_and_shown(engine: Engine) -> None:
    docker(engine, "network", "create", "--attachable", "att")
    try:
        assert network(engine, "att")["Attachable"] is True
    finally:
        docker(engine, "network", "rm", "att")


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"Scope": "swarm"}, 403, "cannot create a swarm scoped network when swarm is not active"),
    ({"Ingress": True}, 403, "Ingress network can only be global scope network"),
    ({"Scope": "global"}, 503, 'This node is not a swarm manager. Use "docker swarm init" or '
     '"docker swarm join" to connect this node to swarm and try again.'),
    ({"ConfigFrom": {"Network": "nosuch"}}, 404, 'configuration network "nosuch" does not exist'),
])
def test_swarm_networks_refused_as_docker_with_swarm_off(engine: Engine, body: dict[str, Any],
                                                         status: int, message: str) -> None:
    """Never created as a plain local bridge: refused with Docker's words."""
    got, answer = create_raw(engine, {"Name": "swarmish", **body})
    assert answer["message"] == message
    if engine.name == "shipslog" or status != 503:
        assert got == status  # dockerd 20.10 answers "not a swarm manager" with a 500 here
    assert docker(engine, "network", "ls", "-q", "--filter", "name=swarmish").stdout == ""


def test_config_only_network_refused_not_made_a_bridge(engine: Engine) -> None:
    if engine.name == "docker":
        pytest.skip("Docker makes a config-only network (a template for swarm and macvlan "
                    "networks); shipslog has none and refuses it rather than make a bridge")
    got, answer = create_raw(engine, {"Name": "tmpl", "ConfigOnly": True})
    assert got == 400 and "config-only networks" in answer["message"]


@pytest.mark.parametrize(("args", "message"), [
    (["--ipv6"], "non-overlapping IPv6 address pool"),
    (["--subnet", "fd00:213:9::/64"], "IPv6 is not enabled"),
    (["--ipv6", "--subnet", "fd00:213:9::/129"], "invalid CIDR"),
])
def test_refused_v6_create_leaves_no_network(engine: Engine, args: list[str],
                                             message: str) -> None:
    """tests/integration/test_ipv6_networks.py's refusals, against both engines."""
    p = docker(engine, "network", "create", *args, "refused6", check=False)
    if engine.name == "docker" and p.returncode == 0:
        pytest.skip(f"dockerd 20.10 creates it ({' '.join(args)}) and never uses the v6 "
                    "pool; shipslog refuses it (README, IPv6 networks)")
    assert p.returncode != 0 and message in p.stderr, p.stderr
    assert docker(engine, "network", "inspect", "refused6", check=False).returncode != 0


def test_sdk_ipam_pool_with_aux_addresses_and_options(engine: Engine) -> None:
    types = pytest.importorskip("docker.types")
    ipam = types.IPAMConfig(pool_configs=[types.IPAMPool(
        subnet="10.213.10.0/24", iprange="10.213.10.128/25", gateway="10.213.10.1",
        aux_addresses={"nas": "10.213.10.5"})], options={"opt": "1"})
    net = engine.sdk().networks.create("sdkipam", ipam=ipam)
    try:
        net.reload()
        assert net.attrs["IPAM"] == {"Driver": "default", "Options": {"opt": "1"}, "Config": [
            {"Subnet": "10.213.10.0/24", "IPRange": "10.213.10.128/25",
             "Gateway": "10.213.10.1", "AuxiliaryAddresses": {"nas": "10.213.10.5"}}]}
    finally:
        net.remove()


def test_names_resolve_on_every_network_the_container_is_on(engine: Engine) -> None:
    """A container on two user networks resolves names from both (Docker's embedded DNS
    answers for every network of the asking container), whichever network its resolv.conf
    names; a container on one network does not see names from the other."""
    docker(engine, "network", "create", "--subnet", "10.213.8.0/24", "dnsfront")
    docker(engine, "network", "create", "--subnet", "10.213.9.0/24", "dnsback")
    try:
        docker(engine, "run", "-d", "--name", "dnsdb", "--network", "dnsback",
               "--network-alias", "database", "busybox", "sleep", "1000")
        docker(engine, "create", "--name", "dnsapp", "--network", "dnsfront", "busybox",
               "sleep", "1000")
        docker(engine, "network", "connect", "dnsback", "dnsapp")
        docker(engine, "start", "dnsapp")
        docker(engine, "run", "-d", "--name", "dnsweb", "--network", "dnsfront", "busybox",
               "sleep", "1000")
        db_ip = docker(engine, "inspect", "-f",
                       "{{.NetworkSettings.Networks.dnsback.IPAddress}}", "dnsdb").stdout.strip()
        for name in ("dnsdb", "database"):
            p = docker(engine, "exec", "dnsapp", "nslookup", name, check=False)
            assert p.returncode == 0 and db_ip in p.stdout, (name, p.stdout, p.stderr)
        p = docker(engine, "exec", "dnsapp", "nslookup", "dnsweb", check=False)
        assert p.returncode == 0 and "10.213.8." in p.stdout, p.stdout
        p = docker(engine, "exec", "dnsweb", "nslookup", "dnsdb", check=False)
        assert db_ip not in p.stdout, p.stdout
    finally:
        docker(engine, "rm", "-f", "dnsdb", "dnsapp", "dnsweb", check=False)
        docker(engine, "network", "rm", "dnsfront", "dnsback", check=False)


def test_dns_option_on_a_user_network_keeps_names_resolving(engine: Engine) -> None:
    """`--dns` (Compose's `dns:`) on a user network: Docker keeps its embedded server in
    resolv.conf and forwards other names to the given servers, so container names still
    resolve; on the default bridge the servers go into resolv.conf as given."""
    docker(engine, "network", "create", "--subnet", "10.213.10.0/24", "dnsext")
    try:
        docker(engine, "run", "-d", "--name", "dnsext-db", "--network", "dnsext", "busybox",
               "sleep", "1000")
        db_ip = docker(engine, "inspect", "-f", "{{.NetworkSettings.Networks.dnsext.IPAddress}}",
                       "dnsext-db").stdout.strip()
        p = docker(engine, "run", "--rm", "--network", "dnsext", "--dns", "10.213.99.53",
                   "busybox", "sh", "-c", "cat /etc/resolv.conf; nslookup dnsext-db",
                   check=False)
        assert p.returncode == 0 and db_ip in p.stdout, (p.stdout, p.stderr)
        assert "10.213.99.53" not in p.stdout.split("Server:")[0]  # not in resolv.conf
        assert "ndots:0" in p.stdout
        p = docker(engine, "run", "--rm", "--dns", "10.213.99.53", "busybox",
                   "cat", "/etc/resolv.conf")
        assert "nameserver 10.213.99.53" in p.stdout
    finally:
        docker(engine, "rm", "-f", "dnsext-db", check=False)
        docker(engine, "network", "rm", "dnsext", check=False)
