"""`events --to syslog`: each event of shipslog's full stream as one RFC 5424 syslog message
with its seq and hash (and the hash before it), so that the receiver can check the chain
(issue 18).

I/O: one datagram socket to the syslog address: `unix:///dev/log` (default), `unix:///PATH`
or `udp://HOST:PORT`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from engine.cli.errors import CliError

FACILITY_DAEMON = 3
SD_ID = "shipslog@32473"  # 32473: the example enterprise number RFC 5612 reserves for docs
_FAILURES = ("OperationFailed", "ContainerStartFailed", "ContainerLost")


def open_syslog(address: str) -> tuple[socket.socket, Any]:
    """A connected datagram socket and its address, or one clear error."""
    try:
        if address.startswith("udp://"):
            host, _, port = address[6:].rpartition(":")
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            target: Any = (host.strip("[]"), int(port))
        elif address.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target = address[7:]
        else:
            raise ValueError(address)
        sock.connect(target)
    except (ValueError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad address"
        raise CliError(f"cannot reach syslog at {address}: {detail}",
                       "give --syslog-address unix:///dev/log, unix:///PATH or "
                       "udp://HOST:PORT") from None
    return sock, target


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def message(event: Mapping[str, Any], text: str, prev_hash: str, hostname: str,
            pid: int) -> bytes:
    """One RFC 5424 message: `<PRI>1 TIME HOST shipslog PID TYPE [shipslog@… seq= hash=
    prev= op= uid=] TEXT`."""
    severity = 4 if event.get("type") in _FAILURES else 6
    actor = event.get("actor") or {}
    params = {"seq": str(event["seq"]), "hash": event.get("hash", ""), "prev": prev_hash,
              "op": event.get("op_id", ""), "stream": event.get("stream", ""),
              "uid": "daemon" if actor.get("via") == "daemon" else str(actor.get("uid"))}
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    head = (f"<{FACILITY_DAEMON * 8 + severity}>1 {event['time']} {hostname or '-'} shipslog "
            f"{pid} {event.get('type') or '-'} {sd} ")
    return head.encode() + text.encode("utf-8", "replace")
