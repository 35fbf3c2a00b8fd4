"""Health checks, the pure part: Docker's defaults, how a container's check merges with its
image's, the probe's command line, and the verdict after each probe.

I/O: none. The shell (`engine/shell/health.py`) runs the probes and records verdict changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from engine.core.errors import InvalidArgument
from events.values import HealthCheck

SECOND = 1_000_000_000
DEFAULT_INTERVAL_NS = 30 * SECOND  # moby container/health.go defaultProbeInterval
DEFAULT_TIMEOUT_NS = 30 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION_NS = SECOND // 1000  # Docker refuses intervals and timeouts under 1 ms
MAX_OUTPUT = 4096  # bytes of probe output kept, as Docker keeps


@dataclass(frozen=True)
class Probe:
    """A check with Docker's defaults filled in."""

    argv: tuple[str, ...]
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float


def validate(check: HealthCheck) -> HealthCheck:
    """Refuse what Docker refuses (a 400 at create, before anything is recorded)."""
    if check.test and check.test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"invalid healthcheck test {check.test[0]!r}",
                              hint="start it with CMD, CMD-SHELL or NONE")
    if check.test and check.test[0] == "CMD-SHELL" and len(check.test) != 2:
        raise InvalidArgument("a CMD-SHELL healthcheck takes exactly one command string")
    if check.test and check.test[0] == "CMD" and len(check.test) < 2:
        raise InvalidArgument("a CMD healthcheck needs a command")
    for what, value in (("interval", check.interval_ns), ("timeout", check.timeout_ns),
                        ("start period", check.start_period_ns)):
        if value < 0 or 0 < value < MIN_DURATION_NS:
            raise InvalidArgument(f"healthcheck {what} must be 0 (the default) or at least 1ms")
    if check.retries < 0:
        raise InvalidArgument("healthcheck retries must not be negative")
    return check


def merge(container: HealthCheck | None, image: HealthCheck | None) -> HealthCheck | None:
    """Docker's merge: the container's check wins field by field; an empty test takes the
    image's. `["NONE"]` switches the image's check off."""
    if container is None:
        return image
    if image is None:
        return container
    return HealthCheck(
        test=container.test or image.test,
        interval_ns=container.interval_ns or image.interval_ns,
        timeout_ns=container.timeout_ns or image.timeout_ns,
        retries=container.retries or image.retries,
        start_period_ns=container.start_period_ns or image.start_period_ns,
    )


def probe_of(check: HealthCheck | None) -> Probe | None:
    """What to run and how often; None when there is no check to run."""
    if check is None or not check.enabled:
        return None
    kind, *rest = check.test
    argv = ("/bin/sh", "-c", rest[0]) if kind == "CMD-SHELL" else tuple(rest)
    return Probe(
        argv=argv,
        interval_s=(check.interval_ns or DEFAULT_INTERVAL_NS) / SECOND,
        timeout_s=(check.timeout_ns or DEFAULT_TIMEOUT_NS) / SECOND,
        retries=check.retries or DEFAULT_RETRIES,
        start_period_s=check.start_period_ns / SECOND,
    )


class Verdict(msgspec.Struct, frozen=True):
    status: str
    failing_streak: int


def after_probe(status: str, failing_streak: int, *, passed: bool, in_start_period: bool,
                retries: int) -> Verdict:
    """moby's handleProbeResult: a pass makes it healthy and clears the streak; a failure
    during the start period does not count while it is still starting; otherwise the streak
    grows, and reaching `retries` makes it unhealthy."""
    if passed:
        return Verdict("healthy", 0)
    if in_start_period and status == "starting":
        return Verdict(status, failing_streak)
    streak = failing_streak + 1
    return Verdict("unhealthy" if streak >= retries else status, streak)
