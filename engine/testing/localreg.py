"""A local registry process (Debian's `docker-registry`, distribution 2.8) for tests and the
pull benchmark, on 127.0.0.1 only.

I/O: writes a config and storage under a temp dir whose path contains `shipslog`, starts
`/usr/bin/docker-registry serve CONFIG` and stops it by its pid; optionally writes an htpasswd
file (bcrypt) or points the registry at a token issuer (`auth.token`).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRegistry:
    base: Path
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)  # htpasswd basic auth when given
    token: dict[str, str] = field(default_factory=dict)  # realm, service, issuer, rootcert
    log_level: str = "warn"  # "info" logs every request ("response completed ... method=")
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def make(cls, **kw: object) -> LocalRegistry:
        base = Path(tempfile.mkdtemp(prefix="shipslog-registry-"))
        return cls(base=base, **kw)  # type: ignore[arg-type]

    @classmethod
    @contextlib.contextmanager
    def running(cls, **kw: object) -> Iterator[LocalRegistry]:
        """A started registry, stopped and removed on exit."""
        reg = cls.make(**kw)
        try:
            reg.start()
            yield reg
        finally:
            reg.cleanup()

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = ["version: 0.1", "log:", f"  level: {self.log_level}", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.base / 'storage'}", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{self.port}", "  secret: shipslog-test-secret"]
        if self.users:
            import bcrypt

            path = self.base / "htpasswd"
            path.write_text("".join(
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: shipslog-test", f"    path: {path}"]
        elif self.token:
            t = self.token
            lines += ["auth:", "  token:", f"    realm: {t['realm']}",
                      f"    service: {t['service']}",
                      f"    issuer: {t['issuer']}", f"    rootcertbundle: {t['rootcert']}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> None:
        if not self.port:
            self.port = free_port()
        cfg = self.base / "config.yml"
        cfg.write_text(self._config())
        log = open(self.base / "registry.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" + self.log_text())
            try:
                urllib.request.urlopen(f"http://{self.domain}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401: up, with auth
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not come up:\n" + self.log_text())

    def log_text(self) -> str:
        try:
            return (self.base / "registry.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
