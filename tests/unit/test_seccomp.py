"""Translation of Docker's seccomp profile into the OCI `linux.seccomp` form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import seccomp
from engine.core.oci_spec import DEFAULT_CAPABILITIES

SHARED = Path(__file__).resolve().parents[3] / "shared" / "spec" / "docker-default-seccomp.json"


def allowed(profile: dict) -> set[str]:
    return {
        n
        for r in profile["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
        for n in r["names"]
    }


def test_bundled_copy_matches_shared_spec_when_present() -> None:
    if not SHARED.exists():
        pytest.skip("shared/ not beside the repo")
    assert seccomp.load_default_profile() == json.loads(SHARED.read_text())


def test_amd64_arches_and_defaults() -> None:
    out = seccomp.translate(seccomp.load_default_profile(), capabilities=DEFAULT_CAPABILITIES)
    assert out["defaultAction"] == "SCMP_ACT_ERRNO"
    assert out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in out["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}


def test_arch_conditions() -> None:
    p = seccomp.load_default_profile()
    amd = allowed(seccomp.translate(p, capabilities=(), goarch="amd64"))
    arm = allowed(seccomp.translate(p, capabilities=(), goarch="arm64"))
    assert "arch_prctl" in amd and "arch_prctl" not in arm
    assert "arm_fadvise64_64" in arm and "arm_fadvise64_64" not in amd
    assert seccomp.translate(p, capabilities=(), goarch="arm64")["architectures"] == [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]
    with pytest.raises(ValueError):
        seccomp.translate(p, capabilities=(), goarch="vax")


def test_capability_conditions() -> None:
    p = seccomp.load_default_profile()
    plain = seccomp.translate(p, capabilities=DEFAULT_CAPABILITIES)
    admin = seccomp.translate(p, capabilities=(*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert "mount" not in allowed(plain) and "mount" in allowed(admin)
    assert "bpf" not in allowed(plain)
    # Without CAP_SYS_ADMIN: clone only with a flags mask (no new namespaces), clone3 → ENOSYS.
    clones = [r for r in plain["syscalls"] if "clone" in r["names"]]
    assert clones and all("args" in r for r in clones)
    clone3 = [r for r in plain["syscalls"] if "clone3" in r["names"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    # With it, the excluded-by-cap rules vanish and clone is allowed outright.
    assert not [r for r in admin["syscalls"] if "clone3" in r["names"] and "errnoRet" in r]
    assert "clone" in allowed(admin)


def test_min_kernel_condition() -> None:
    p = seccomp.load_default_profile()
    old = allowed(seccomp.translate(p, capabilities=(), kernel=(4, 4)))
    new = allowed(seccomp.translate(p, capabilities=(), kernel=(4, 8)))
    assert "ptrace" not in old and "ptrace" in new


def test_argument_filters_are_kept() -> None:
    p = seccomp.load_default_profile()
    out = seccomp.translate(p, capabilities=())
    personality = [r for r in out["syscalls"] if r["names"] == ["personality"]]
    values = sorted(r["args"][0]["value"] for r in personality)
    assert values == [0, 8, 131072, 131080, 4294967295]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in personality)


def test_native_only_lists_one_architecture() -> None:
    out = seccomp.translate(seccomp.load_default_profile(), capabilities=(), native_only=True)
    assert out["architectures"] == ["SCMP_ARCH_X86_64"]
