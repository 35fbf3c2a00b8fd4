"""Our bridges' accept rules in the host's iptables `filter FORWARD` chain, and what the host's
other firewall managers do to forwarded traffic.

I/O: kernel — runs the `iptables` and `iptables-restore` binaries on PATH (the ones dockerd
uses, iptables-nft or legacy; `-w` waits for the legacy xtables lock), `nft -j list chains`;
reads /proc/sys/net/bridge, /etc/ufw/ufw.conf and /proc/*/comm. The rule text comes from the
pure planner `engine.core.fwd_plan`; this module only runs it and reads it back.

Every write is one `iptables-restore --noflush` transaction and idempotent: a network's rules
are replaced only when they differ, deleting an owner with no rules does nothing. When the
host has no `iptables` at all there is no iptables FORWARD policy to get past, and every
call does nothing. `HostForward(6)` does the same in ip6tables for networks with IPv6
(issue 13): the rules match interfaces only, so both families get the same text.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from engine.core.errors import KernelError
from engine.core.fwd_plan import (
    CHAIN,
    JUMP,
    FirewallFacts,
    ForwardRule,
    base_transaction,
    delete_transaction,
    foreign_forward_drops,
    network_rules,
    parse_chain,
    remove_transaction,
    replace_transaction,
)

log = logging.getLogger("shipslog.network")
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
UFW_CONF = Path("/etc/ufw/ufw.conf")
_TIMEOUT = 30
_ATTEMPTS = 3  # iptables-nft refuses a transaction when another writer raced it; try again
# Every read-then-write of FORWARD and our chain holds this lock, across all shipslog daemons on
# the host: two daemons that both saw no jump would each insert one (iptables-restore cannot
# make an insert conditional). xtables' own lock covers one command, not our read and write.
HOST_LOCK = Path(os.environ.get("SHIPSLOG_FORWARD_LOCK", "/run/shipslog-forward.lock"))


@contextlib.contextmanager
def _host_locked() -> Iterator[None]:
    try:
        fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:  # no writable /run: this daemon's own lock still orders its writes
        log.debug("no host-wide forward lock at %s: %s", HOST_LOCK, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class HostForward:
    """The SHIPSLOG-FORWARD chain of the host's iptables filter table."""

    def __init__(self, family: int = 4) -> None:
        self._lock = threading.Lock()
        self._bin = "ip6tables" if family == 6 else "iptables"
        self.available = shutil.which(self._bin) is not None \
            and shutil.which(self._bin + "-restore") is not None

    # -- running ----------------------------------------------------------------------------

    def _table(self) -> list[str]:
        """`iptables -S` of the filter table. (Not `-S CHAIN`: iptables-nft 1.8.9 calls a
        chain that does not exist "incompatible", like one it cannot parse.)"""
        p = subprocess.run([self._bin, "-w", "-t", "filter", "-S"], capture_output=True,
                           text=True, timeout=_TIMEOUT, check=False)
        if p.returncode != 0:
            raise KernelError(f"cannot list the {self._bin} filter table: {p.stderr.strip()}",
                              hint=f"check `{self._bin} -S FORWARD`")
        return p.stdout.splitlines()

    def _list(self, chain: str) -> list[str] | None:
        """The `-A` lines of one chain; None when the chain does not exist."""
        lines = self._table()
        rules = [line for line in lines if line.startswith(f"-A {chain} ")]
        exists = chain == "FORWARD" or f"-N {chain}" in (line.strip() for line in lines)
        return rules if exists or rules else None

    def _restore(self, text: str) -> None:
        err = ""
        for _ in range(_ATTEMPTS):
            p = subprocess.run([self._bin + "-restore", "-w", "--noflush"], input=text,
                               capture_output=True, text=True, timeout=_TIMEOUT, check=False)
            if p.returncode == 0:
                return
            err = p.stderr.strip()
        raise KernelError(f"{self._bin} refused the forward rules: {err}",
                          hint=f"check `{self._bin} -S {CHAIN}`")

    def _present(self) -> list[ForwardRule]:
        return parse_chain(self._list(CHAIN) or [])

    # -- reading ----------------------------------------------------------------------------

    def owners(self) -> set[str]:
        """Networks that have rules in our chain."""
        if not self.available:
            return set()
        with self._lock:
            return {r.owner for r in self._present() if r.owner}

    def jump_present(self) -> bool:
        if not self.available:
            return True
        with self._lock:
            return JUMP in (line.strip() for line in self._list("FORWARD") or [])

    # -- writing ----------------------------------------------------------------------------

    def ensure_base(self) -> bool:
        """Our chain and FORWARD's jump into it; True when something was missing."""
        if not self.available:
            return False
        with self._lock, _host_locked():
            text = base_transaction(self._list("FORWARD") or [], self._list(CHAIN) is not None)
            if text is not None:
                self._restore(text)
        return text is not None

    def apply_network(self, network_id: str, bridge: str, internal: bool) -> bool:
        """Accept the network's traffic past FORWARD; True when rules were (re)written."""
        if not self.available:
            return False
        want = network_rules(network_id, bridge, internal=internal)
        with self._lock, _host_locked():
            text = base_transaction(self._list("FORWARD") or [], self._list(CHAIN) is not None)
            if text is not None:
                self._restore(text)
            text = replace_transaction(self._present(), network_id, want)
            if text is not None:
                self._restore(text)
        return text is not None

    def delete_rules_of(self, owner: str) -> None:
        if not self.available:
            return
        with self._lock, _host_locked():
            text = delete_transaction(self._present(), owner)
            if text is not None:
                self._restore(text)

    def remove_if_unused(self) -> bool:
        """Take our chain and its jump away once no network has a rule there."""
        if not self.available:
            return False
        with self._lock, _host_locked():
            present = self._list(CHAIN)
            if present is None:
                return False
            text = remove_transaction(parse_chain(present), self._list("FORWARD") or [])
            if text is None:
                return False
            try:
                self._restore(text)
            except KernelError as exc:  # another daemon's network arrived meanwhile
                log.info("kept %s: %s", CHAIN, exc)
                return False
        return True


# -- what else is on the host --------------------------------------------------------------


def _forward_policy() -> tuple[str, frozenset[str], bool]:
    p = subprocess.run(["iptables", "-w", "-t", "filter", "-S"], capture_output=True, text=True,
                       timeout=_TIMEOUT, check=False)
    policy, chains, jump = "", set(), False
    for line in p.stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["-P", "FORWARD"] and len(parts) > 2:
            policy = parts[2]
        elif parts[:1] == ["-N"] and len(parts) > 1:
            chains.add(parts[1])
        elif line.strip() == JUMP:
            jump = True
    return policy, frozenset(chains), jump


def _running(name: str) -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                return True
        except OSError:
            continue
    return False


def _ufw_enabled() -> bool:
    try:
        return any(line.strip().upper() == "ENABLED=YES"
                   for line in UFW_CONF.read_text().splitlines())
    except OSError:
        return False


def _nft_chains() -> list[dict[str, object]]:
    try:
        p = subprocess.run(["nft", "-j", "list", "chains"], capture_output=True, text=True,
                           timeout=_TIMEOUT, check=False)
        return list(json.loads(p.stdout or "{}").get("nftables", [])) if p.returncode == 0 \
            else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []


def observe() -> FirewallFacts:
    """Everything `fwdplan.findings` judges, read from this host (network namespace)."""
    version, policy, chains, jump = "", "", frozenset[str](), False
    if shutil.which("iptables"):
        v = subprocess.run(["iptables", "--version"], capture_output=True, text=True,
                           timeout=_TIMEOUT, check=False)
        version = v.stdout.strip()
        policy, chains, jump = _forward_policy()
    try:
        bridge_nf: bool | None = BRIDGE_NF.read_text().strip() == "1"
    except OSError:
        bridge_nf = None
    return FirewallFacts(
        iptables=version, forward_policy=policy, iptables_chains=chains,
        bridge_nf_call_iptables=bridge_nf, firewalld=_running("firewalld"),
        ufw=_ufw_enabled() or "ufw-before-forward" in chains, dockerd=_running("dockerd"),
        nft_forward_drops=foreign_forward_drops(_nft_chains()), our_jump=jump)
