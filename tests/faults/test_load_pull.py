"""Load, L-01: 50 concurrent `run`s of an image that is not pulled yet, served by a real
registry (Debian's `docker-registry`) on 127.0.0.1, ten names asked for twice. Forty go the
way the docker CLI goes (create → 404 "No such image" → pull → create → start) and ten are our
own `shipslog run -d`, which does the same. Expected: one GET per blob at the registry
(single-flight in the puller; counted from the registry's own request log), exactly one
winner per name with a 409 "already in use" for the other, no "database is locked", every
other run succeeds, and the log, the projection and the kernel agree.

I/O: a registry and a daemon (subprocesses, stopped by pid), skopeo to fill the registry,
API calls and CLI runs from threads. Only loopback traffic.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.cli.client import ApiError, Client
from engine.testing.daemon import REPO, DaemonProcess
from engine.testing.localreg import LocalRegistry
from tests.faults.conftest import finish, oracle
from tests.faults.test_load import one_winner_per_name

SKOPEO = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")

RUNS, NAMES, CLI_RUNS = 50, 40, 10
BLOB_GET = re.compile(r'http\.request\.method=GET .*http\.request\.uri="/v2/[^"]+/blobs/'
                      r'(sha256:[0-9a-f]{64})"')


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry.running(log_level="info") as reg:  # info: one line per request it answered
        yield reg


@pytest.fixture
def fresh_daemon() -> Iterator[DaemonProcess]:
    """A daemon with no image at all."""
    d = DaemonProcess.make()
    try:
        d.start()
        yield d
    finally:
        finish(d)


def publish(tar: Path, registry: LocalRegistry, repo: str) -> None:
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                    f"docker-archive:{tar}", f"docker://{registry.domain}/{repo}"],
                   check=True, capture_output=True, timeout=120)


def blob_gets(registry: LocalRegistry) -> Counter[str]:
    text = (registry.base / "registry.log").read_text(errors="replace")
    return Counter(m.group(1) for line in text.splitlines()
                   if '"response completed"' in line and (m := BLOB_GET.search(line)))


def docker_style_run(d: DaemonProcess, image: str, name: str) -> tuple[str, str]:
    """What `docker run -d --name NAME IMAGE sleep 600` sends: ("ok", id) or ("error", why)."""
    c = Client(d.host, timeout=300)
    body = {"Image": image, "Cmd": ["sleep", "600"]}
    try:
        try:
            cid = c.post_json("/containers/create", {"name": name}, body)["Id"]
        except ApiError as exc:
            if exc.status != 404 or "no such image" not in exc.message.lower():
                raise
            repo, _, tag = image.rpartition(":")
            with c.stream("POST", "/images/create", {"fromImage": repo, "tag": tag}) as chunks:
                progress = b"".join(chunks)
            failed = [m for m in map(json.loads, filter(None, progress.splitlines()))
                      if "error" in m]
            if failed:
                return "error", f"pull: {failed[0]['error']}"
            cid = c.post_json("/containers/create", {"name": name}, body)["Id"]
        c.post_json(f"/containers/{cid}/start")
    except ApiError as exc:
        return "error", f"{exc.status} {exc.message}"
    return "ok", cid


def cli_run(d: DaemonProcess, image: str, name: str) -> tuple[str, str]:
    env = dict(d.cli_env(), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "engine.cli.main", "run", "-d", "-q",
                          "--name", name, image, "sleep", "600"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    if out.returncode == 0:
        return "ok", out.stdout.strip().splitlines()[-1]
    return "error", f"cli {out.returncode}: {out.stderr.strip()}"


@pytest.mark.kernel
@pytest.mark.slow
@SKOPEO
def test_50_concurrent_runs_of_an_unpulled_image(fresh_daemon: DaemonProcess,
                                                 registry: LocalRegistry,
                                                 busybox_tar: Path) -> None:
    d = fresh_daemon
    publish(busybox_tar, registry, "load/busybox:v1")
    image = f"{registry.domain}/load/busybox:v1"
    published = blob_gets(registry)  # skopeo reads nothing back; normally empty
    names = [f"l01-{i % NAMES}" for i in range(RUNS)]  # ten names asked for twice

    def one(i: int) -> tuple[str, str, str]:
        run = cli_run if i % (RUNS // CLI_RUNS) == 0 else docker_style_run
        return (names[i], *run(d, image, names[i]))

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        results = list(pool.map(one, range(RUNS)))

    winners = one_winner_per_name(results, names, error_prefixes=("409 ", "cli "))

    # One download per blob: the config and the layer, each fetched once by 50 runs.
    gets = blob_gets(registry) - published
    assert gets and all(n == 1 for n in gets.values()), gets
    pulls = [line for line in (registry.base / "registry.log").read_text().splitlines()
             if '"response completed"' in line and "/manifests/" in line]
    assert pulls  # the manifest is asked for per pull; that is not a blob download

    c = d.client()
    images = c.get_json("/images/json")
    assert [img["RepoTags"] for img in images] == [[image]]
    running = {ids[0] for ids in winners.values()}
    assert {c.get_json(f"/containers/{n}/json")["Id"] for n in winners} == running
    assert oracle(d) == dict.fromkeys(running, "running")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda cid: Client(d.host).delete(f"/containers/{cid}",
                                                        {"force": True}), running))
    assert oracle(d) == {}

