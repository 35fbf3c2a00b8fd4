"""Docker credential helpers: `docker-credential-<name> get`, run as Docker's CLI runs them.

I/O: starts the helper program (server URL on stdin, JSON on stdout), with a timeout.
"""

from __future__ import annotations

import subprocess

HELPER_TIMEOUT = 20.0


def helper_get(helper: str, server: str) -> bytes | None:
    """The helper's answer for `server`, or None when it cannot be run, times out or finds
    nothing ("credentials not found in native keychain"). `helper` must be a plain name."""
    if not helper or not all(c.isalnum() or c in "-_." for c in helper):
        return None
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(),
                             capture_output=True, timeout=HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None
