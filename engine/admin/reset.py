"""`system reset`: stop everything a state root runs and remove all of its state, as podman's
`system reset` does — the way out when the log is too damaged to start on (RELIABILITY F-15).

Runs with the daemon stopped (it takes the daemon's own lock on the root, so it cannot run
beside one). Works on damaged state: a step that fails is reported as a warning and the
rest goes on; only what is surely this root's is touched — runtime containers under its
exec root, monitors whose pid files live there, mounts under either directory, cgroups named
by its container ids, and the bridges and nft rules of networks its log names (when the log
can be read; otherwise a warning says what may be left).

I/O: through drivers/host (runc, signals to monitor pids, umount, cgroupfs: `teardown.py`;
the root's lock: `statelock.py`) and drivers/network (netlink and nftables), and the removal
of everything under the root and the exec root.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from engine.core.errors import Conflict
from engine.core.net_plan import LINK_DRIVERS, ParentPlan
from engine.drivers.host.statelock import AlreadyRunning, take_lock
from engine.drivers.host.teardown import remove_cgroups, stop_runtime, unmount_all_under
from engine.shell.paths import Paths


def reset(paths: Paths) -> list[str]:
    """Remove everything of `paths`; returns warnings (what could not be done)."""
    warnings: list[str] = []
    lock = _lock(paths)
    try:
        ids = stop_runtime(paths.exec_root / "runc", paths.exec_root, warnings)
        ids |= _container_dirs(paths)
        ids |= _networks(paths, warnings)
        unmount_all_under(paths.root, paths.exec_root, warnings=warnings)
        remove_cgroups(ids, warnings)
        for top in (paths.root, paths.exec_root):
            for child in sorted(top.iterdir()) if top.is_dir() else []:
                if child == paths.lock:
                    continue
                try:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                except OSError as exc:
                    warnings.append(f"cannot remove {child}: {exc.strerror}")
    finally:
        os.close(lock)
        paths.lock.unlink(missing_ok=True)
    return warnings


def _lock(paths: Paths) -> int:
    paths.root.mkdir(parents=True, exist_ok=True)
    try:
        return take_lock(paths)
    except AlreadyRunning as exc:
        holder = exc.message.rsplit("(pid ", 1)[-1].rstrip(")")
        raise Conflict(f"the daemon (pid {holder}) runs on {paths.root}; it cannot be reset "
                       "under it", hint="stop shipslogd first, then run the reset again") from None


def _container_dirs(paths: Paths) -> set[str]:
    root = paths.containers_root
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def _networks(paths: Paths, warnings: list[str]) -> set[str]:
    """Bridges and nft rules of the networks the log names; the container ids it names."""
    if not paths.db.exists():
        return set()
    found = _log_facts(paths.db, warnings)
    if found is None:
        return set()
    networks, containers, owners = found
    # A macvlan/ipvlan network's `bridge` is its parent: often the user's own NIC (issue 20).
    # Only bridges go by name; a parent goes only if it carries our mark (a VLAN we made).
    parents = [name for driver, name in networks if driver in LINK_DRIVERS]
    from engine.drivers.network.hostfw import HostForward
    from engine.drivers.network.netlink import Netlink
    from engine.drivers.network.nft import Nft

    netlink, nft, hostfw = Netlink(), Nft(), HostForward()
    try:
        for owner in owners:
            nft.delete_rules_of(owner)
            hostfw.delete_rules_of(owner)
        for driver, bridge in networks:
            if driver == "bridge":
                netlink.delete_bridge(bridge)
        for parent in parents:
            netlink.delete_parent(ParentPlan(driver="macvlan", network_id="", parent=parent,
                                             mode="", make="vlan"))
        nft.remove_if_unused()
        hostfw.remove_if_unused()
    except Exception as exc:  # noqa: BLE001 - a reset goes on; the user reads what is left
        warnings.append(f"network cleanup failed: {exc}")
    finally:
        netlink.close()
    return containers


def _log_facts(db: Path, warnings: list[str]
               ) -> tuple[list[tuple[str, str]], set[str], list[str]] | None:
    """((driver, bridge) of each network, container ids, owners of nft rules) from the folded
    log; when the events
    cannot be folded (a damaged page), from the projection tables, which often can."""
    from engine.admin.check import fold_log
    from events.store import StoreError

    try:
        state = fold_log(db)
        return ([(n.driver, n.bridge) for n in state.networks.values()], set(state.containers),
                [*state.networks, *(c.id for c in state.containers.values() if c.ports)])
    except (sqlite3.Error, StoreError, ValueError) as exc:
        reason = exc
    try:
        from projections.engine import decode_row

        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            nets = [decode_row("networks", r[0]) for r in
                    conn.execute("SELECT doc FROM proj_networks")]
            ctrs = [decode_row("containers", r[0]) for r in
                    conn.execute("SELECT doc FROM proj_containers")]
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        warnings.append(f"the log cannot be read ({reason}): bridges and nft rules of this "
                        "root's networks, if any, are left (see `ip link` and `nft list "
                        "ruleset`)")
        return None
    return ([(n.driver, n.bridge) for n in nets],  # type: ignore[attr-defined]
            {c.id for c in ctrs},  # type: ignore[attr-defined]
            [*(n.id for n in nets), *(c.id for c in ctrs if c.ports)])  # type: ignore[attr-defined]
