#!/usr/bin/env python3
"""A runc that misbehaves on request, for fault tests (RELIABILITY F-09, F-11; containerd's
`runc-fp`). Point the daemon at it with `SHIPSLOG_RUNC=/path/to/tools/runc_shim.py`.

I/O: reads a plan file, appends one JSON line per call to a call log, and either fails,
hangs, kills the container's init after a real `runc create`, or `exec`s the real runc.

The plan is `<exec-root>/runc-shim.json` (the parent of runc's `--root`), or the file named
by `SHIPSLOG_RUNC_SHIM_PLAN`. A file, not only the environment: conmon runs `runc create`
with an environment of PATH alone. The plan maps a runc sub-command to a fault:

    {"create": {"action": "fail", "stderr": "...", "times": 1},
     "start":  {"action": "hang", "seconds": 3600},
     "delete": {"action": "fail"}}

actions: `fail` (print `stderr` and exit 1), `hang` (sleep), `kill-init` (run the real
`runc create`, then SIGKILL the init process it left). `times` (optional) counts down in
the file; at 0 the fault is spent. Every call, faulted or not, is logged to
`<exec-root>/runc-shim.log` with its pid, so a test can find and stop a hung call.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# runc's global flags that take a value (`runc --help`).
VALUED = {"--root", "--log", "--log-format", "--criu", "--rootless"}
DEFAULT_STDERR = "runc-shim: injected failure"


def real_runc() -> str:
    found = os.environ.get("SHIPSLOG_REAL_RUNC") or shutil.which("runc") or "/usr/sbin/runc"
    return found


def parse(argv: list[str]) -> tuple[str, str, list[str]]:
    """(runc --root, sub-command, the sub-command's arguments) from runc's command line."""
    root, i = "/run/runc", 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            if name == "--root":
                root = value
        elif arg in VALUED:
            if arg == "--root" and i + 1 < len(argv):
                root = argv[i + 1]
            i += 1
        elif not arg.startswith("-"):
            return root, arg, argv[i + 1:]
        i += 1
    return root, "", []


def take_fault(plan_file: Path, cmd: str) -> dict[str, Any] | None:
    """The fault planned for `cmd`, counting a limited one down (under a lock: conmon and
    the daemon call runc concurrently)."""
    try:
        fd = os.open(plan_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "r+") as f:
            try:
                plan = json.load(f)
            except ValueError:
                return None
            fault = plan.get(cmd)
            if not isinstance(fault, dict):
                return None
            times = fault.get("times")
            if times is not None:
                if times <= 0:
                    return None
                fault["times"] = times - 1
                f.seek(0)
                f.truncate()
                json.dump(plan, f)
            return fault
    finally:
        os.close(fd)


def log_call(log_file: Path, cmd: str, args: list[str], action: str) -> None:
    line = json.dumps({"pid": os.getpid(), "cmd": cmd, "args": args, "action": action})
    with open(log_file, "a") as f:
        f.write(line + "\n")


def pid_file_of(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg == "--pid-file" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--pid-file="):
            return arg.split("=", 1)[1]
    return ""


def main(argv: list[str]) -> int:
    root, cmd, args = parse(argv)
    exec_root = Path(root).parent
    plan_file = Path(os.environ.get("SHIPSLOG_RUNC_SHIM_PLAN") or exec_root / "runc-shim.json")
    fault = take_fault(plan_file, cmd) if cmd else None
    action = str(fault.get("action", "")) if fault else "exec"
    try:
        log_call(exec_root / "runc-shim.log", cmd, args, action)
    except OSError:
        pass  # the exec root may be gone (a reboot simulation): never fail because of the log
    runc = real_runc()
    if fault is None:
        os.execv(runc, [runc, *argv])
    assert fault is not None
    if action == "fail":
        print(fault.get("stderr") or DEFAULT_STDERR, file=sys.stderr)
        return int(fault.get("code", 1))
    if action == "hang":
        time.sleep(float(fault.get("seconds", 3600)))
        return 1
    if action == "kill-init" and cmd == "create":
        # conmon reads runc's exit status and the pid file: let both look like success.
        rc = subprocess.run([runc, *argv], check=False).returncode
        pid_file = pid_file_of(args)
        if rc == 0 and pid_file:
            os.kill(int(Path(pid_file).read_text().strip()), signal.SIGKILL)
        return rc
    print(f"runc-shim: unknown action {action!r} for {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
