"""The network seam: what `engine/shell/network.py` asks of the kernel, as Protocols.

I/O: none here. The Container Network Model's driver interface (`NetworkDriver`: network
create/delete, endpoint create/join/leave/delete) has one implementation per driver name —
`bridge.py`, `sublink.py` (macvlan, ipvlan) — looked up in `NetworkKernel.drivers`; IPAM is
not a driver's business, it stays events decided in `engine/core`. Beside the drivers sit the
other kernel parts a network needs: sandboxes (named network namespaces), the nft table, the
iptables FORWARD accept rules, host facts, and the DNS and port-proxy servers. `linux.py`
builds the real set, `engine/testing/fakes.py` a recording one, and
`tests/contracts/test_network_driver.py` runs one contract over both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from engine.core.errors import NotFound
from engine.core.fwd_plan import FirewallFacts
from engine.core.hostfiles import ResolvConf
from engine.core.net_plan import BridgePlan, ParentPlan, VethPlan
from engine.core.nft_plan import NetworkRules, OwnedRule, Publish

NetworkPlan = BridgePlan | ParentPlan


@dataclass(frozen=True)
class LinkInfo:
    """A link in the host namespace, as the reconciler reads it."""

    name: str
    kind: str  # "bridge", "veth", "vlan", "dummy", …
    master: str  # bridge a port is enslaved to, or ""
    up: bool
    alias: str = ""  # IFLA_IFALIAS: "shipslog:<network id>" on parents we made (issue 20)


OWNED_ALIAS = "shipslog:"


class NetworkDriver(Protocol):
    """One CNM network driver. Every call is idempotent (the supervisor runs a step again
    after a crash) and blocking (called from worker threads)."""

    def create_network(self, plan: NetworkPlan) -> None:
        """The network's own kernel objects (a bridge; a VLAN or dummy parent)."""

    def delete_network(self, plan: NetworkPlan) -> None:
        """Remove what `create_network` made; a missing object is fine."""

    def create_endpoint(self, plan: VethPlan) -> str:
        """The endpoint's interface, already inside the sandbox at `plan.netns_path` under
        its final name; returns the endpoint id the `NetworkConnected` event records."""

    def join(self, plan: VethPlan) -> None:
        """Configure the endpoint in its sandbox: up, addresses, default route."""

    def leave(self, sandbox: str, endpoint_id: str) -> None:
        """Undo `join` (the interface stays until `delete_endpoint`)."""

    def delete_endpoint(self, sandbox: str, endpoint_id: str) -> None:
        """Remove the endpoint's interface; a missing one (or sandbox) is fine."""

    def list_links(self) -> list[LinkInfo]:
        """The host-namespace links this driver makes, for reconciliation."""


class Sandboxes(Protocol):
    """Named network namespaces under the exec root, one per container."""

    def create(self, name: str) -> str:
        """Make (or keep) the namespace; return its path."""

    def delete(self, name: str) -> None: ...

    def list(self) -> list[str]: ...

    def path(self, name: str) -> str: ...

    def exists(self, name: str) -> bool:
        """A bind-mounted namespace is at `path(name)` (not just a file of that name)."""


class Firewall(Protocol):
    """Our nft table (engine/drivers/network/nft.py)."""

    def ensure_base(self) -> None: ...

    def apply(self, text: str) -> None: ...

    def apply_network(self, net: NetworkRules) -> None: ...

    def publish(self, container_id: str, publishes: list[Publish]) -> None: ...

    def delete_rules_of(self, owner: str) -> None: ...

    def list_rules(self) -> list[OwnedRule]: ...


class ForwardRules(Protocol):
    """Accept rules in the host's iptables FORWARD chain (engine/drivers/network/hostfw.py)."""

    available: bool

    def owners(self) -> set[str]: ...

    def jump_present(self) -> bool: ...

    def apply_network(self, network_id: str, bridge: str, internal: bool) -> bool: ...

    def delete_rules_of(self, owner: str) -> None: ...

    def remove_if_unused(self) -> bool: ...


class HostFacts(Protocol):
    """What the shell asks the host before it plans, and host-wide switches."""

    def host_routes(self) -> list[str]: ...

    def links(self) -> dict[str, str]:
        """Every link in the host namespace: name -> kind ("" when it has none)."""

    def free_port(self, host_ip: str, proto: str) -> int: ...

    def firewall_facts(self) -> FirewallFacts: ...

    def enable_ip_forward(self, family: int) -> None: ...

    def resolv_conf(self) -> ResolvConf: ...


DnsServer = Callable[..., Awaitable[None]]  # run_dns(network_id, listen_ip, lookup, upstreams)
ProxyServer = Callable[..., Awaitable[None]]  # run_proxy(host, port, ip, port, proto)


@dataclass
class NetworkKernel:
    """Everything networking touches in the kernel, behind the seam's Protocols."""

    drivers: dict[str, NetworkDriver]
    sandboxes: Sandboxes
    nft: Firewall
    hostfw: ForwardRules
    hostfw6: ForwardRules
    host: HostFacts
    run_dns: DnsServer
    run_proxy: ProxyServer

    def driver(self, name: str) -> NetworkDriver:
        found = self.drivers.get(name)
        if found is None:  # the core refused it at create; an old log's unknown driver
            raise NotFound(f"plugin \"{name}\" not found",
                           hint=f"shipslog has the {', '.join(sorted(self.drivers))} drivers")
        return found


def all_links(kernel: NetworkKernel) -> list[LinkInfo]:
    """The links every driver reports, each once."""
    seen: dict[str, LinkInfo] = {}
    for d in kernel.drivers.values():
        for link in d.list_links():
            seen.setdefault(link.name, link)
    return sorted(seen.values(), key=lambda li: li.name)
