"""nftables for shipslog networks, and the userland proxy for loopback-published ports.

I/O: kernel (nftables through libnftables — the library `nft` itself is built on — loaded with
ctypes, or `nft -f -` when the library is missing; each call is one atomic transaction),
/proc/sys (ip_forward), network (the proxy's sockets). The ruleset text comes from the pure
planner `engine.core.nft_plan`; this module only runs it and reads handles back.

Every operation is idempotent: `apply_network` and `publish` replace whatever rules the same
owner had in one transaction, `delete_rules_of` on an owner with no rules does nothing, and
`remove_all` on a missing table does nothing.

Why a proxy: DNAT in the output hook cannot send locally generated 127.0.0.1 traffic to a
container without `route_localnet=1`, which would open the S-07 hole for every interface. So a
port published on 127.0.0.1 (or on every address) is also served by `run_proxy`, which forwards
loopback connections to the container and keeps the host port taken, as docker-proxy does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import trio

from engine.core.errors import KernelError
from engine.core.nft_plan import (
    FAMILY,
    TABLE,
    NetworkRules,
    OwnedRule,
    Publish,
    base_in_place,
    base_ruleset,
    delete_table,
    network_rules,
    parse_owner,
    publish_rules,
    replace_transaction,
)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IP6_FORWARD = Path("/proc/sys/net/ipv6/conf/all/forwarding")
_OUTPUT_HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE, libnftables.h
_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON


class _LibNft:
    """The three libnftables calls we need; one context, used under a lock."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, text: str, *, json_out: bool) -> tuple[int, str, str]:
        flags = (_OUTPUT_JSON | _OUTPUT_HANDLE) if json_out else 0
        self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc, out.decode(errors="replace"), err.decode(errors="replace")


def _load_lib() -> _LibNft | None:
    for name in ("libnftables.so.1", ctypes.util.find_library("nftables")):
        if not name:
            continue
        try:
            return _LibNft(name)
        except OSError:
            continue
    return None


class Nft:
    """The shipslog table: base chains, per-network and per-container rules."""

    def __init__(self, *, use_library: bool = True) -> None:
        self._lock = threading.Lock()
        self._lib = _load_lib() if use_library else None

    # -- running text -------------------------------------------------------------------

    def _run(self, text: str, *, json_out: bool = False) -> tuple[int, str, str]:
        if self._lib is not None:
            return self._lib.run(text, json_out=json_out)
        args = ["nft", "-j", "-a", "-f", "-"] if json_out else ["nft", "-f", "-"]
        p = subprocess.run(args, input=text, capture_output=True, text=True, check=False)
        return p.returncode, p.stdout, p.stderr

    def apply(self, text: str) -> None:
        """Run a ruleset text as one transaction; raise KernelError if nft refuses it."""
        with self._lock:
            rc, _, err = self._run(text)
        if rc != 0:
            raise KernelError(f"nftables refused the ruleset: {err.strip()}",
                              hint="check `nft list table inet shipslog`")

    def _table_json(self) -> list[dict[str, Any]]:
        rc, out, err = self._run(f"list table {FAMILY} {TABLE}", json_out=True)
        if rc != 0:
            if "No such file" in err or "does not exist" in err:
                return []
            raise KernelError(f"cannot list nftables table: {err.strip()}")
        return list(json.loads(out or "{}").get("nftables", []))

    def table_exists(self) -> bool:
        with self._lock:
            return bool(self._table_json())

    # -- reading --------------------------------------------------------------------------

    def list_rules(self) -> list[OwnedRule]:
        """Every owned rule in our table, with its owner and handle (for reconciliation)."""
        with self._lock:
            items = self._table_json()
        rules = []
        for item in items:
            rule = item.get("rule")
            if not rule:
                continue
            owner = parse_owner(rule.get("comment", ""))
            if owner:
                rules.append(OwnedRule(kind=owner[0], owner=owner[1], chain=rule["chain"],
                                       handle=int(rule["handle"])))
        return rules

    def guard_drops(self) -> int:
        """Packets the S-07 loopback guard has dropped so far (its counter)."""
        with self._lock:
            items = self._table_json()
        for item in items:
            rule = item.get("rule")
            if rule and rule.get("comment") == "slg:base:loopback-guard":
                for expr in rule.get("expr", []):
                    if "counter" in expr:
                        return int(expr["counter"]["packets"])
        return 0

    # -- writing --------------------------------------------------------------------------

    def ensure_base(self) -> None:
        """Create the table and chains if missing and (re)write the fixed base rules, unless
        they are already exactly in place (`base_in_place`: a rewrite would reset the S-07
        guard's counter under every other daemon on the host)."""
        with self._lock:
            if base_in_place(self._table_json()):
                return
        self.apply(base_ruleset())

    def _replace(self, kind: str, owner: str, add: list[str]) -> None:
        with self._lock:
            stale = [r for r in self._owned_locked() if (r.kind, r.owner) == (kind, owner)]
            text = replace_transaction(stale, add)
            rc, _, err = self._run(text)
        if rc != 0:
            raise KernelError(f"nftables refused the rules of {kind}:{owner[:12]}: "
                              f"{err.strip()}", hint="check `nft list table inet shipslog`")

    def _owned_locked(self) -> list[OwnedRule]:
        rules = []
        for item in self._table_json():
            rule = item.get("rule")
            owner = parse_owner(rule.get("comment", "")) if rule else None
            if rule and owner:
                rules.append(OwnedRule(kind=owner[0], owner=owner[1], chain=rule["chain"],
                                       handle=int(rule["handle"])))
        return rules

    def apply_network(self, net: NetworkRules) -> None:
        """Masquerade, isolation and the direct-routing guard of one network."""
        self._replace("net", net.network_id, network_rules(net))

    def publish(self, container_id: str, publishes: list[Publish]) -> None:
        """DNAT rules for all of a container's published ports (replaces earlier ones)."""
        self._replace("ctr", container_id, publish_rules(container_id, publishes))

    def delete_rules_of(self, owner: str) -> None:
        """Remove every rule a network or container owns (either kind)."""
        with self._lock:
            stale = [r for r in self._owned_locked() if r.owner == owner]
            if not stale:
                return
            rc, _, err = self._run(replace_transaction(stale, []))
        if rc != 0:
            raise KernelError(f"cannot delete the rules of {owner[:12]}: {err.strip()}")

    def remove_all(self) -> None:
        """Delete the whole table (engine uninstall)."""
        self.apply(delete_table())

    def remove_if_unused(self) -> bool:
        """Delete the table once no network or container owns a rule in it (the last
        network went away); True when it was deleted."""
        with self._lock:
            items = self._table_json()
            if not items:
                return False
            for item in items:
                rule = item.get("rule")
                if rule and parse_owner(rule.get("comment", "")):
                    return False
            rc, _, err = self._run(delete_table())
        if rc != 0:
            raise KernelError(f"cannot delete the shipslog table: {err.strip()}")
        return True


def enable_ip_forward(path: Path = IP_FORWARD) -> bool:
    """Turn IPv4 forwarding on (`IP6_FORWARD`: IPv6, as Docker's bridge driver does for a
    network with --ipv6); True when we changed it, so the caller can record that."""
    if path.read_text().strip() == "1":
        return False
    path.write_text("1\n")
    return True


# -- userland proxy ------------------------------------------------------------------------

_UDP_IDLE_SECONDS = 60.0
_BUFSIZE = 65535


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(_BUFSIZE):
            await dst.send_all(data)
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _serve_tcp(client: trio.SocketStream, target_ip: str, target_port: int) -> None:
    async with client:
        try:
            upstream = await trio.open_tcp_stream(target_ip, target_port)
        except OSError:
            return
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream)
            nursery.start_soon(_pump, upstream, client)


async def _udp_session(listener: trio.socket.SocketType, client: Any,
                       upstream: trio.socket.SocketType, sessions: dict[Any, Any]) -> None:
    try:
        while True:
            with trio.move_on_after(_UDP_IDLE_SECONDS) as scope:
                data = await upstream.recv(_BUFSIZE)
            if scope.cancelled_caught:
                return
            await listener.sendto(data, client)
    except OSError:
        return
    finally:
        sessions.pop(client, None)
        upstream.close()


async def run_proxy(host_ip: str, host_port: int, target_ip: str, target_port: int,
                    proto: str = "tcp", *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Forward host_ip:host_port to target_ip:target_port until cancelled (TCP or UDP)."""
    bind_ip = host_ip or "0.0.0.0"
    if proto == "tcp":
        listeners = await trio.open_tcp_listeners(host_port, host=bind_ip)
        task_status.started()

        async def handler(stream: trio.SocketStream) -> None:
            await _serve_tcp(stream, target_ip, target_port)

        await trio.serve_listeners(handler, listeners)
        return
    if proto != "udp":
        raise KernelError(f"the userland proxy cannot forward {proto}")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((bind_ip, host_port))
        sessions: dict[Any, trio.socket.SocketType] = {}
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                data, client = await sock.recvfrom(_BUFSIZE)
                upstream = sessions.get(client)
                if upstream is None:
                    upstream = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                    await upstream.connect((target_ip, target_port))
                    sessions[client] = upstream
                    nursery.start_soon(_udp_session, sock, client, upstream, sessions)
                try:
                    await upstream.send(data)
                except OSError:
                    continue
