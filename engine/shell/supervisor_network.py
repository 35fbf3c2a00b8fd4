"""The supervisor's network steps: a container's endpoints attached at start and released
at exit, failed start and removal, through the networking shell (engine/shell/network.py).

I/O: none of its own; the networking shell does the kernel work through the network seam and
records it. A collaborator the supervisor holds (`Supervisor.network`) and calls, not a
mixin: it sees only the journal's state and the networking shell.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.core.errors import ShipslogError
from engine.core.net_plan import dns_server
from engine.shell.journal import Journal
from engine.shell.outcomes import error_message
from events.envelope import Actor
from events.store import StoreError
from projections.state import ContainerView

log = logging.getLogger("shipslog.supervisor")


class NetworkSteps:
    """`ops`: the networking shell (engine.shell.network.NetworkOps), or None on an engine
    without networking (the engine-on-fakes tests that leave it out)."""

    def __init__(self, journal: Journal, ops: Any) -> None:
        self.journal = journal
        self.ops = ops

    async def attach(self, c: ContainerView, op_id: str, actor: Actor
                     ) -> tuple[str | None, list[str], str, str]:
        """(netns path, addresses, embedded DNS server, hostname taken from a joined
        container — "" for the container's own)."""
        if self.ops is None:
            return None, [], "", ""
        if c.config.network_mode.startswith("container:"):
            # Docker's container mode: the other container's namespace, no endpoint of our
            # own; its addresses, DNS server and hostname go into our hosts, resolv.conf and
            # hostname.
            joined = self.ops.joined_namespace(c)
            dns = dns_server(joined.dns_network.driver, joined.dns_network.gateway) \
                if joined.dns_network is not None else ""
            return joined.path, joined.addresses, dns, joined.hostname
        path = await self.ops.attach(c, op_id, actor)
        now = self.journal.state.containers[c.id]
        # both families in /etc/hosts, as Docker writes them (issue 13)
        addresses = [a for ep in now.networks.values() for a in (ep.ip, ep.ip6) if a]
        nets = [self.journal.state.networks.get(nid) for nid in now.networks]
        dns = next((dns_server(n.driver, n.gateway) for n in nets
                    if n is not None and n.name != "bridge"), "")
        return path, addresses, dns, ""

    async def release(self, cid: str, op_id: str, *, strict: bool = False) -> None:
        """Take down the container's endpoints and record it. `strict` (rm): a failure is
        the caller's error, so the removal is not reported done while the log still holds
        the endpoints; otherwise (exits, failed starts) it is logged and reconcile retries."""
        c = self.journal.state.containers.get(cid)
        if self.ops is None or (c is not None and c.config.network_mode in (
                "none", "host") and not c.networks and not c.ports):
            return  # nothing was attached: no kernel calls on the hot path
        try:
            await self.ops.detach(cid, op_id)
        except (ShipslogError, OSError, StoreError) as exc:
            if strict:
                raise
            log.warning("network teardown of %s failed: %s", cid[:12], error_message(exc))
