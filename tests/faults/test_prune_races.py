"""Load, L-07: `rmi -f` and `image prune -a` racing `create`+`start` and `pull`, through a real
daemon.

An image in use, or being pulled, is never removed: every racing operation either succeeds
or fails cleanly (409 "in use"/"being pulled" for the removal, 404 "No such image" for a
create that came second), never a 5xx; and afterwards every image the daemon lists has its
layers (a container made from it runs) and every running container's image is still listed
(a created container whose image `rmi -f` took refuses to start with a 404, as designed). Rounds
start the two sides with different offsets so that each window (decide, append, collect) is
hit in some round.

I/O: a daemon, a registry (subprocesses), API calls from two threads per round.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError, Client
from engine.testing.daemon import DaemonProcess
from engine.testing.localreg import LocalRegistry
from tests.faults.conftest import load_busybox, oracle
from tests.faults.test_load_pull import SKOPEO, publish
from tests.faults.test_load_pull import registry as registry  # noqa: F401 - the fixture

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

OFFSETS = (0.0, 0.002, 0.01, 0.03, 0.08)  # seconds the second side starts after the first
ROUNDS = 2 * len(OFFSETS)
SLEEPER = ["sleep", "600"]


def outcome(fn: Callable[[], Any]) -> str:
    """"ok", or the API error as "STATUS message"."""
    try:
        fn()
    except ApiError as exc:
        return f"{exc.status} {exc.message}"
    return "ok"


def race(first: Callable[[], Any], second: Callable[[], Any], offset: float) -> tuple[str, str]:
    results: dict[int, str] = {}

    def side(i: int, fn: Callable[[], Any], delay: float) -> None:
        time.sleep(delay)
        results[i] = outcome(fn)

    threads = [threading.Thread(target=side, args=(0, first, 0.0)),
               threading.Thread(target=side, args=(1, second, offset))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results[0], results[1]


def run_container(d: DaemonProcess, image: str) -> str:
    c = Client(d.host, timeout=120)
    cid = str(c.post_json("/containers/create", None, {"Image": image, "Cmd": SLEEPER})["Id"])
    c.post_json(f"/containers/{cid}/start")
    return cid


def remove_image(d: DaemonProcess, image: str) -> None:
    Client(d.host, timeout=120).delete(f"/images/{image}", {"force": True})


def prune_all(d: DaemonProcess) -> None:
    Client(d.host, timeout=120).post_json(
        "/images/prune", {"filters": json.dumps({"dangling": ["false"]})})


def pull(d: DaemonProcess, image: str) -> None:
    repo, _, tag = image.rpartition(":")
    with Client(d.host, timeout=120).stream("POST", "/images/create",
                                            {"fromImage": repo, "tag": tag}) as chunks:
        progress = b"".join(chunks)
    failed = [m for m in map(json.loads, filter(None, progress.splitlines())) if "error" in m]
    if failed:
        raise ApiError(500, f"pull stream: {failed[0]['error']}")


def consistent(d: DaemonProcess) -> None:
    """Every listed image runs (its layers are on disk); every container's image is listed;
    the log, the projection and the kernel agree."""
    c = d.client()
    listed = {img["Id"] for img in c.get_json("/images/json")}
    for ctr in c.get_json("/containers/json"):  # running ones; `rmi -f` may orphan others
        assert c.get_json(f"/containers/{ctr['Id']}/json")["Image"] in listed, ctr
        assert c.post_json(f"/containers/{ctr['Id']}/exec", None, {"Cmd": ["true"]})["Id"]
    for iid in listed:
        cid = run_container(d, iid)
        assert c.get_json(f"/containers/{cid}/json")["State"]["Running"]
        c.delete(f"/containers/{cid}", {"force": True})
    oracle(d)


def clean_removal(result: str) -> bool:
    """Removed; refused as in use; or nothing to remove (a pull has not recorded the image
    again yet after the previous round took it)."""
    return result == "ok" or result.startswith("409 ") and (
        "is using" in result or "being pulled" in result or "being started" in result
    ) or result.startswith("404 No such image")


def test_rmi_and_prune_racing_create(daemon: DaemonProcess, busybox_tar: Path) -> None:
    d = daemon
    seen: set[tuple[str, str]] = set()
    for i in range(ROUNDS):
        offset = OFFSETS[i % len(OFFSETS)]
        remover = (lambda: remove_image(d, "busybox")) if i % 2 else (lambda: prune_all(d))
        created, removed = race(lambda: run_container(d, "busybox"), remover, offset)
        seen.add((created[:3], removed[:3]))
        # Second to the removal: no such image at create, or (after `rmi -f` took the image
        # of the created, not yet started container) at start; both clean 404s.
        assert created == "ok" or created.startswith("404 ") and (
            "no such image" in created.lower() or "image of container" in created), created
        assert clean_removal(removed), removed
        consistent(d)
        d.remove_all_containers()
        if not any("busybox:latest" in (img["RepoTags"] or [])
                   for img in d.client().get_json("/images/json")):
            load_busybox(d, busybox_tar)
    print("create/remove outcomes seen:", sorted(seen))


@SKOPEO
def test_rmi_and_prune_racing_pull(daemon: DaemonProcess, registry: LocalRegistry,
                                   busybox_tar: Path) -> None:
    d = daemon
    publish(busybox_tar, registry, "race/busybox:v1")
    image = f"{registry.domain}/race/busybox:v1"
    pull(d, image)
    seen: set[tuple[str, str]] = set()
    for i in range(ROUNDS):
        offset = OFFSETS[i % len(OFFSETS)]
        remover = (lambda: remove_image(d, image)) if i % 2 else (lambda: prune_all(d))
        pulled, removed = race(lambda: pull(d, image), remover, offset)
        seen.add((pulled[:3], removed[:3]))
        assert pulled == "ok", pulled
        assert clean_removal(removed), removed
        consistent(d)
    print("pull/remove outcomes seen:", sorted(seen))
