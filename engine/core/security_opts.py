"""`--security-opt` (`HostConfig.SecurityOpt`): which options are accepted, and what each
one does to the OCI spec.

I/O: none. The options are kept as given (inspect shows them as Docker does; a seccomp
profile arrives inline: the docker CLI, and ours, read the file and send its contents).
Applied here:
    no-new-privileges[=true|false]   the process's noNewPrivileges
    seccomp=unconfined               no seccomp filter
    seccomp=builtin                  the default profile (as with no option)
    seccomp=<profile JSON>           that profile, resolved like the default one
    systempaths=unconfined           no masked or read-only /proc and /sys paths
Accepted and not applied, with a warning: `apparmor=PROFILE` and `label=…` (shipslog sets no
AppArmor profile or SELinux label at all, so `apparmor=unconfined` and `label=disable`
are what every container already gets). Anything else is refused, in Docker's words.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.core.errors import InvalidArgument

__all__ = ["SYSTEMPATHS_UNCONFINED", "SecurityOptions", "parse_security_opts"]

SYSTEMPATHS_UNCONFINED = "systempaths=unconfined"


class SecurityOptions:
    """What a container's security options ask for."""

    def __init__(self, *, no_new_privileges: bool = False, seccomp: str = "",
                 profile: dict[str, Any] | None = None,
                 unconfined_paths: bool = False) -> None:
        self.no_new_privileges = no_new_privileges
        self.seccomp = seccomp  # "" (the default profile), "unconfined" or "custom"
        self.profile = profile  # the custom profile (Docker's format)
        self.unconfined_paths = unconfined_paths


def _split(opt: str) -> tuple[str, str, str]:
    """Docker accepts `key=value` and the older `key:value`."""
    eq, colon = opt.find("="), opt.find(":")
    if colon != -1 and (eq == -1 or colon < eq):
        return opt.partition(":")
    return opt.partition("=")


def parse_security_opts(opts: Sequence[str],
                        warnings: list[str] | None = None) -> SecurityOptions:
    out = SecurityOptions()
    for opt in opts:
        key, sep, value = _split(opt)
        if key == "no-new-privileges":
            if sep and value not in ("true", "false"):
                raise InvalidArgument(f"invalid --security-opt {opt!r}: expected true or false",
                                      hint="no-new-privileges, or =true / =false")
            out.no_new_privileges = not sep or value == "true"
        elif key == "seccomp" and sep:
            if value == "unconfined":
                out.seccomp, out.profile = "unconfined", None
            elif value == "builtin":
                out.seccomp, out.profile = "", None
            else:
                out.seccomp, out.profile = "custom", _profile(value)
        elif key == "systempaths" and sep:
            if value != "unconfined":
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"',
                                      hint="systempaths=unconfined is the only value")
            out.unconfined_paths = True
        elif key in ("apparmor", "label") and sep:
            if warnings is not None and (key, value) not in (("apparmor", "unconfined"),
                                                            ("label", "disable")):
                warnings.append(f"security option {opt!r} was recorded but not applied: "
                                "shipslog sets no AppArmor profile or SELinux label")
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{_short(opt)}"',
                                  hint="give no-new-privileges, seccomp=…, systempaths=…, "
                                       "apparmor=… or label=…")
    return out


def _short(opt: str) -> str:
    return opt if len(opt) <= 80 else opt[:77] + "..."


def _profile(text: str) -> dict[str, Any]:
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"Decoding seccomp profile failed: {exc}",
                              hint="--security-opt seccomp=PATH reads a JSON profile file "
                                   "(Docker's format), or use seccomp=unconfined") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise InvalidArgument("Decoding seccomp profile failed: no defaultAction",
                              hint="a profile in Docker's format names its defaultAction")
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str) or not (
                rule.get("names") or rule.get("name")):
            raise InvalidArgument("Decoding seccomp profile failed: a syscall rule needs "
                                  "names and an action", hint="check the profile's syscalls")
    return profile
