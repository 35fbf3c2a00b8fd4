"""The secrets canary (issue 15, RELIABILITY S-08): one random value, passed in every way a user
can hand the engine a secret — through `shipslog` and through Docker's own CLI, in commands
that succeed and in commands that fail — must be found nowhere the engine keeps or answers:
the event log (database, -wal, -shm), the compaction archive, the rest of the state root
except the secret store itself, every `--format json` answer, a `debug export` bundle, and
the daemon's log at debug level."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import secrets
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from engine.cli.client import ApiError
from engine.cli.main import run
from engine.testing.daemon import DaemonProcess
from engine.testing.dockercli import needs_docker
from events.store import EventStore
from projections.engine import EngineProjection
from tests.integration.conftest import loaded_daemon

pytestmark = [pytest.mark.kernel, needs_docker]

REPO = Path(__file__).resolve().parents[2]
NOWHERE = "127.0.0.1:1"  # no registry listens there: logins and pulls fail, and still count


def shipslog(d: DaemonProcess, *argv: str, stdin: str | None = None) -> Ran:
    """Our CLI as its own process, so that its argv is what the daemon reads from /proc."""
    env = dict(d.cli_env(), HOME=str(d.base), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "engine.cli", *argv], env=env, cwd=REPO,
                       input=stdin, capture_output=True, text=True, timeout=120)
    return Ran(p)


def docker(d: DaemonProcess, *argv: str, stdin: str | None = None) -> Ran:
    env = dict(d.cli_env(), HOME=str(d.base), DOCKER_BUILDKIT="0")
    p = subprocess.run(["docker", *argv], env=env, input=stdin, capture_output=True,
                       text=True, timeout=120)
    return Ran(p)


class Ran:
    """A finished command, compared with an exit code (`== 0`, `!= 0`); its stderr shows in
    the assertion message when the comparison fails."""

    def __init__(self, p: subprocess.CompletedProcess[str]) -> None:
        self.code, self.stderr = p.returncode, p.stderr

    def __eq__(self, other: object) -> bool:
        return self.code == other

    def __ne__(self, other: object) -> bool:
        return self.code != other

    def __repr__(self) -> str:
        return f"exit {self.code}: {self.stderr.strip()[-300:]}"


def answer(d: DaemonProcess, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ={"SHIPSLOG_HOST": d.host, "HOME": str(d.base)},
               stdout=out, stderr=err)
    assert code == 0, f"shipslog {' '.join(argv)} -> {code}: {err.getvalue()}"
    return out.getvalue()


def give_the_secret(d: DaemonProcess, canary: str) -> None:
    envfile = d.base / "env.list"
    envfile.write_text(f"FROM_FILE={canary}\n")
    (d.base / "ctx").mkdir()
    # issue 12: a RUN sees the build arg (its step container gets it as env), and the log,
    # the image config and its history must still not hold the value
    (d.base / "ctx" / "Dockerfile").write_text("FROM busybox\nARG K\nRUN test -n \"$K\"\n")
    mount = (f'type=volume,src=v1,dst=/d,volume-opt=type=cifs,'
             f'"volume-opt=o=addr=1.2.3.4,username=u,password={canary}"')  # Docker's CSV
    url_mount = f"type=volume,src=v2,dst=/e,volume-opt=device=//me:{canary}@host/share"
    # Ours: -e in four spellings, --env-file, a proxy URL, mount options; a container kept
    # running (exec -e) and one removed (compaction archives its events).
    assert shipslog(d, "run", "-d", "--name", "kept", "-e", f"A={canary}",
                    "--env", f"B={canary}", f"-eC={canary}", f"--env=D={canary}",
                    "--env-file", str(envfile), "-e", f"HTTP_PROXY=http://u:{canary}@proxy",
                    "--mount", mount, "--mount", url_mount,
                    "busybox", "sleep", "60") == 0
    assert shipslog(d, "exec", "-e", f"E={canary}", "kept", "true") == 0
    assert shipslog(d, "run", "--rm", "-ie", f"F={canary}", "busybox", "true") == 0
    assert shipslog(d, "build", "--build-arg", f"K={canary}", str(d.base / "ctx")) == 0
    assert shipslog(d, "login", "-u", "me", "-p", canary, NOWHERE) != 0
    assert shipslog(d, "login", "-u", "me", f"--password={canary}", NOWHERE) != 0
    assert shipslog(d, "login", "-u", "me", "--password-stdin", NOWHERE, stdin=canary) != 0
    assert shipslog(d, "login", f"me:{canary}@{NOWHERE}") != 0
    assert shipslog(d, "pull", f"me:{canary}@{NOWHERE}/busybox") != 0
    assert shipslog(d, "volume", "create", "--opt", "type=cifs", "--opt", "device=//h/s",
                    "--opt", f"o=username=u,password={canary}", "v3") != 0
    # Docker's CLI: the same, as Docker users type it.
    assert docker(d, "run", "-d", "--name", "dkept", "-e", f"G={canary}", "--env-file",
                  str(envfile), "busybox", "sleep", "60") == 0
    assert docker(d, "exec", "-e", f"H={canary}", "dkept", "true") == 0
    assert docker(d, "run", "--rm", "-e", f"HTTPS_PROXY=http://u:{canary}@proxy",
                  "busybox", "true") == 0
    assert docker(d, "build", "--build-arg", f"K={canary}", str(d.base / "ctx")) == 0
    assert docker(d, "login", "-u", "me", "-p", canary, NOWHERE) != 0
    assert docker(d, "login", "-u", "me", "--password-stdin", NOWHERE, stdin=canary) != 0
    assert docker(d, "volume", "create", "-o", "type=cifs", "-o", "device=//h/s",
                  "-o", f"o=password={canary}", "v4") != 0
    # Requests the daemon refuses, with the value in their bodies (Docker's CLI refuses
    # `-e =V` itself; ours and a raw API call reach the daemon).
    assert shipslog(d, "run", "--rm", "-e", f"=bad{canary}", "busybox", "true") != 0
    for env in ([f"=bad{canary}"], [f"A=x\n{canary}"], f"A={canary}"):
        with pytest.raises(ApiError) as refused:
            d.client().post_json("/containers/create", {"Image": "busybox", "Env": env})
        assert refused.value.status == 400
    assert docker(d, "rm", "-f", "dkept") == 0  # its events go to the archive


def needles(canary: str) -> list[bytes]:
    """The canary as bytes, and as it reads inside base64 at each of the three alignments
    (the compaction archive keeps actors and payloads base64-encoded)."""
    raw = canary.encode()
    out = [raw]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw)
            # Drop the characters that mix in the padding bytes or the end's `=` padding.
            start = (shift * 8 + 5) // 6
            end = (len(b"\0" * shift + raw) * 8) // 6
            out.append(text[start:end])
    return out


def hits(canary: str, files: list[Path]) -> list[str]:
    wanted = needles(canary)
    return [str(f) for f in files if any(n in f.read_bytes() for n in wanted)]


def snapshot_hits(canary: str, db: Path) -> list[str]:
    """Take a projection snapshot of the stopped daemon's log and search it (snapshots are
    zlib-compressed, so a search of the file's bytes would not see into them)."""
    with EventStore.open(str(db), projection=EngineProjection()) as store:
        assert store.snapshot() is not None
    with contextlib.closing(sqlite3.connect(db)) as conn:
        blobs = [zlib.decompress(row[0]) for row in
                 conn.execute("SELECT state FROM projection_snapshots")]
    assert blobs
    return [f"snapshot {i}" for i, blob in enumerate(blobs)
            if any(n in blob for n in needles(canary))]


def state_files(root: Path) -> list[Path]:
    """Every regular file of the state root but the secret store."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [n for n in dirnames if n != "secrets"]
        out += [Path(dirpath, n) for n in filenames if Path(dirpath, n).is_file()
                and not Path(dirpath, n).is_symlink()]
    return out


def test_a_secret_given_every_way_is_recorded_nowhere(busybox_tar: Path) -> None:
    canary = "canary" + secrets.token_hex(12)
    with loaded_daemon(busybox_tar, ["--debug"]) as d:
        give_the_secret(d, canary)
        assert answer(d, "system", "compact", "--before", "0s")  # removed containers' events
        assert list((d.root / "archive").iterdir()), "the compaction archived nothing"
        head = f"seq:{d.client().get_json('/shipslog/audit/head')['seq']}"
        answers = {
            "history": answer(d, "history", "kept", "--format", "json"),
            "history (removed, archived)": answer(d, "history", "dkept", "--format", "json"),
            "audit who": answer(d, "audit", "who", "--format", "json"),
            "events --all": answer(d, "events", "--all", "--since", "seq:1", "--until", head,
                                   "--format", "json"),
            "events": answer(d, "events", "--since", "seq:1", "--until", head,
                             "--format", "json"),
            "inspect": answer(d, "inspect", "kept", "--format", "json"),
            "ps": answer(d, "ps", "-a", "--format", "json"),
        }
        bundle = d.base / "bundle.jsonl"
        answer(d, "debug", "export", str(bundle))
        assert all(answers.values()) and bundle.stat().st_size > 0
        files = state_files(d.root)
        db = {d.root / "events.db", d.root / "events.db-wal", d.root / "events.db-shm"}
        assert db <= set(files), sorted(map(str, files))  # the daemon is up: all three exist
        found = hits(canary, [*files, bundle])
        found += [what for what, text in answers.items()
                  if any(n in text.encode() for n in needles(canary))]
        d.stop()
        found += hits(canary, [d.base / "daemon.log", *state_files(d.root)])
        found += snapshot_hits(canary, d.root / "events.db")
        assert "DEBUG" in (d.base / "daemon.log").read_text()  # the debug level was on
        assert not found, f"{canary} found in {sorted(set(found))}"
        # The containers still got their values: the secret store did its job.
        assert canary.encode() in b"".join(p.read_bytes() for p in (d.root / "secrets").iterdir())
