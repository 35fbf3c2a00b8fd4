"""API answers Docker's clients and Compose depend on (issues 13 and 14), checked with Docker's
own CLI against shipslogd on the real kernel, where no private dockerd can give the same
answer (no index reachable, a local registry, a failpoint); the rest runs against both
engines in tests/compat/test_compat_issue13.py.

I/O: runs shipslogd and the `docker` binary; makes bridges, namespaces and containers, and
removes every one it makes.
"""

from __future__ import annotations

import pytest

from engine.cli.client import ApiError
from engine.testing.dockercli import docker, needs_docker
from engine.testing.localreg import LocalRegistry, free_port
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def _event_types(daemon) -> list[str]:  # type: ignore[no-untyped-def]
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    return [e.type for e in store.read(after_seq=0)]


def test_search_with_no_index_reachable_is_dockers_500(daemon) -> None:
    port = free_port("127.0.0.1")  # nothing listens there: loopback only, never the internet
    p = docker(daemon, "search", f"127.0.0.1:{port}/busybox", check=False)
    url = f"http://127.0.0.1:{port}/v1/search?q=busybox&n=25"
    assert p.returncode != 0 and f'Get "{url}": ' in p.stderr, p.stderr
    with pytest.raises(ApiError) as info:
        daemon.client().get_json("/images/search", {"term": "busybox", "limit": "101"})
    assert (info.value.status, info.value.message) == (400, "limit 101 is outside the range "
                                                            "of [1, 100]")


def test_distribution_inspect_resolves_through_the_registry(daemon) -> None:
    with LocalRegistry.running() as reg:
        target = f"{reg.domain}/dist/busybox:v1"
        docker(daemon, "tag", "busybox", target)
        pushed = docker(daemon, "push", target).stdout
        digest = pushed.split("digest: ")[1].split()[0]
        doc = daemon.client().get_json(f"/distribution/{target}/json")
        assert doc["Descriptor"]["digest"] == digest
        assert doc["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        with pytest.raises(ApiError) as info:
            daemon.client().get_json(f"/distribution/{reg.domain}/dist/busybox:nope/json")
        assert info.value.status == 404
        docker(daemon, "rmi", target)
    private = LocalRegistry.make(users={"alice": "s3cret"})
    try:
        private.start()
        with pytest.raises(ApiError) as info:
            daemon.client().get_json(f"/distribution/{private.domain}/x/y:1/json")
        assert info.value.status == 500
        assert info.value.message.endswith("no basic auth credentials")
    finally:
        private.cleanup()


def test_a_network_create_that_fails_half_way_leaves_no_network(daemon) -> None:
    daemon.stop()
    daemon.start(failpoints="net.after_network_setup=error")
    p = docker(daemon, "network", "create", "half", check=False)
    assert p.returncode != 0 and "failpoint net.after_network_setup" in p.stderr
    assert docker(daemon, "network", "ls", "--format", "{{.Name}}").stdout.split() == ["bridge"]
    types = _event_types(daemon)
    assert types[-2:] == ["OperationFailed", "NetworkRemoved"], types
    daemon.stop()
    daemon.start()
    docker(daemon, "network", "create", "half")  # the name is free again
    docker(daemon, "network", "rm", "half")


