"""The real network seam: the `NetworkKernel` a daemon runs on.

I/O: kernel (rtnetlink, network namespaces, nftables, iptables, /proc), sockets (free port,
DNS and proxies) — all in the modules this one wires together. The driver registry is
here: `network create -d NAME` finds its driver under NAME.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.fwd_plan import FirewallFacts
from engine.core.hostfiles import ResolvConf
from engine.drivers.network import netns
from engine.drivers.network.bridge import BridgeDriver
from engine.drivers.network.dns import run_dns
from engine.drivers.network.host import free_port, host_routes, is_namespace
from engine.drivers.network.hostfiles import read_host_resolv_conf
from engine.drivers.network.hostfw import HostForward, observe
from engine.drivers.network.netlink import Netlink
from engine.drivers.network.nft import IP6_FORWARD, IP_FORWARD, Nft, enable_ip_forward, run_proxy
from engine.drivers.network.seam import NetworkDriver, NetworkKernel
from engine.drivers.network.sublink import SubLinkDriver


class NamespaceDir:
    """Sandboxes as named network namespaces under `<exec root>/netns`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(self, name: str) -> str:
        return netns.create_netns(self.directory, name)

    def delete(self, name: str) -> None:
        netns.delete_netns(self.directory, name)

    def list(self) -> list[str]:
        return netns.list_netns(self.directory)

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def exists(self, name: str) -> bool:
        return is_namespace(self.directory / name)


class LinuxHost:
    def __init__(self, netlink: Netlink) -> None:
        self.netlink = netlink

    def host_routes(self) -> list[str]:
        return host_routes()

    def links(self) -> dict[str, str]:
        return self.netlink.link_kinds()

    def free_port(self, host_ip: str, proto: str) -> int:
        return free_port(host_ip, proto)

    def firewall_facts(self) -> FirewallFacts:
        return observe()

    def enable_ip_forward(self, family: int) -> None:
        enable_ip_forward(IP6_FORWARD if family == 6 else IP_FORWARD)

    def resolv_conf(self) -> ResolvConf:
        return read_host_resolv_conf()


def registry(netlink: Netlink) -> dict[str, NetworkDriver]:
    """The network drivers by the name `network create -d` gives."""
    return {"bridge": BridgeDriver(netlink), "macvlan": SubLinkDriver(netlink, "macvlan"),
            "ipvlan": SubLinkDriver(netlink, "ipvlan")}


def linux_network(exec_root: Path) -> NetworkKernel:
    netlink = Netlink(owner=str(exec_root))  # its link groups (batched deletions)
    return NetworkKernel(drivers=registry(netlink), sandboxes=NamespaceDir(exec_root / "netns"),
                         nft=Nft(), hostfw=HostForward(), hostfw6=HostForward(6),
                         host=LinuxHost(netlink), run_dns=run_dns, run_proxy=run_proxy)
