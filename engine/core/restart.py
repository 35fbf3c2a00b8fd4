"""Restart policies: what happens when a container's process exits.

I/O: none. Docker's rules (moby `restartmanager`): `no` never restarts; `always` restarts
unless the user stopped the container; `unless-stopped` likewise, and also stays down across
a daemon restart once stopped; `on-failure[:N]` restarts on a non-zero exit, at most N times.
A `kill` by the user counts as a stop (`kill_stops_restart`), whatever the policy.
Back-off starts at 100 ms and doubles up to 1 min; a container that ran for 10 s or more
starts again from 100 ms.
"""

from __future__ import annotations

import signal as signal_names

from projections.state import ContainerView

BACKOFF_START_MS = 100
BACKOFF_MAX_MS = 60_000
BACKOFF_RESET_AFTER_NS = 10 * 1_000_000_000


def restart_delay_ms(c: ContainerView, *, now_ns: int) -> int | None:
    """The delay before restarting `c` after its exit, or None when it stays down."""
    policy = c.config.restart_policy
    if c.manually_stopped or c.config.auto_remove:
        return None
    if policy.name == "no" or not policy.name:
        return None
    if policy.name == "on-failure":
        if c.exit_code == 0:
            return None
        if policy.maximum_retry_count and c.restart_count >= policy.maximum_retry_count:
            return None
    ran_ns = now_ns - c.started_at if c.started_at else 0
    if c.restart_delay_ms == 0 or ran_ns >= BACKOFF_RESET_AFTER_NS:
        return BACKOFF_START_MS
    return min(c.restart_delay_ms * 2, BACKOFF_MAX_MS)


def restart_on_daemon_start(c: ContainerView) -> bool:
    """Containers the daemon starts again when it comes up (after a reboot or crash)."""
    policy = c.config.restart_policy.name
    if policy == "always":
        return not c.manually_stopped
    if policy == "unless-stopped":
        return not c.manually_stopped
    return False


def kill_stops_restart(c: ContainerView, signal: str) -> bool:
    """Whether a user's `kill -s signal` means the container stays down when it exits.

    moby `killWithSignal`: a SIGKILL, the container's own stop signal, or any signal when it
    has none configured calls `ExitOnNext`, which cancels its restart manager: a kill by the
    user is not a failure to restart from. (Another signal to a container with a stop signal
    configured is a message to the process, and its exit is treated as any other.)
    Create fills an unset stop signal with SIGTERM (engine/api/docker/translate.py), so SIGTERM
    counts as "none configured" here, as it is for Docker's containers that set none.
    """
    stop_signal = _signame(c.config.stop_signal or "SIGTERM")
    return signal == "SIGKILL" or stop_signal in ("SIGTERM", signal)


def _signame(sig: str) -> str:
    """SIGTERM for "SIGTERM", "TERM" or "15" (create keeps numbers as given)."""
    s = sig.upper()
    if s.isdigit():
        try:
            return signal_names.Signals(int(s)).name
        except ValueError:
            return s
    return s if s.startswith("SIG") else "SIG" + s
