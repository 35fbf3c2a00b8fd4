"""Benchmark `pull` from a local registry into fresh storage: shipslog side by side with
`docker pull`, `podman pull` and `skopeo copy` (to an OCI directory: download and
verification only, no unpack) in one run (issue 4).

    python3 -m tools.bench.pull            # 3 pulls per engine
    python3 -m tools.bench.pull --quick    # 1 pull per engine
    python3 -m tools.bench.pull -n 5 --skip podman

The image: the busybox layer plus one layer of ~170 MB uncompressed (a tree of ~2,000 files
of mixed sizes, part random, part text-like, so gzip does real work), Docker schema 2 with
gzip layers, pushed once to Debian's `docker-registry` on 127.0.0.1 (plain HTTP, as every
engine allows for loopback). Every pull starts from empty storage: a fresh shipslogd root
(started outside the timing), `rmi` + `image prune -a` for Docker and Podman, a fresh
directory for skopeo. Timed: the client command's wall time, until the image is usable (for
skopeo: until the OCI directory is complete). Median and min per engine, and ratios of our
CLI's median to each. `shipslog_docker_cli` is the docker CLI against shipslogd: the same
daemon work without our CLI's start-up.

Prints progress on stderr, a readable table on stdout, and as the LAST stdout line one JSON
object (null for whatever could not be measured here).

I/O: builds the image under /tmp/engine-bench-*, starts docker-registry, shipslogd, a private
dockerd and podman on that dir, runs their CLIs; stops what it started by pid and removes
its temp dirs on exit (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from engine.registry.localreg import LocalRegistry
from engine.testing.daemon import DaemonProcess
from tools.bench.common import (
    REPO,
    CommandFailed,
    Dockerd,
    HostTraces,
    Podman,
    Unavailable,
    build_busybox_tar,
    cgroup_paths,
    fmt_ratio,
    fmt_s,
    format_table,
    interrupts_unwind,
    json_line,
    log,
    make_workdir,
    median,
    ratio,
    remove_tree,
    run,
    shield_cleanup,
)

REPO_NAME = "bench/big"
TAG = "v1"
BIG_LAYER_BYTES = 170 << 20


# ----------------------------------------------------------------------------- the image


def _big_layer_tar(seed: int = 4) -> bytes:
    rnd = random.Random(seed)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 10)))
             for _ in range(5000)]
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        i = 0
        while total < BIG_LAYER_BYTES:
            d = f"usr/share/bench/d{i // 100:03d}"
            if i % 100 == 0:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1704067200
                tf.addfile(ti)
            size = min(int(rnd.paretovariate(1.2) * 20_000), 8 << 20)
            if i % 3 == 0:
                data = rnd.randbytes(size)
            else:
                data = b" ".join(rnd.choices(words, k=size // 6 + 1))[:size]
            ti = tarfile.TarInfo(f"{d}/f{i:05d}.bin")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
            tf.addfile(ti, io.BytesIO(data))
            total += len(data)
            i += 1
    return out.getvalue()


def _busybox_layer(busybox_tar: Path) -> bytes:
    with tarfile.open(busybox_tar) as t:
        f = t.extractfile("manifest.json")
        assert f is not None
        layer = json.load(f)[0]["Layers"][0]
        blob = t.extractfile(layer)
        assert blob is not None
        return blob.read()


def _put_blob(base: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{REPO_NAME}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as resp:
        loc = resp.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    req = urllib.request.Request(f"{loc}{'&' if '?' in loc else '?'}digest={digest}",
                                 data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def push_image(reg: LocalRegistry, work: Path, busybox_tar: Path) -> dict[str, Any]:
    """Build the two-layer image and push it; return sizes."""
    base = f"http://{reg.domain}"
    raw_layers = [_busybox_layer(busybox_tar), _big_layer_tar()]
    if raw_layers[0][:2] == b"\x1f\x8b":
        raw_layers[0] = gzip.decompress(raw_layers[0])
    blobs = [gzip.compress(t, compresslevel=6, mtime=0) for t in raw_layers]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in raw_layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    layer_descs = []
    for blob in blobs:
        layer_descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "digest": _put_blob(base, blob), "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": _put_blob(base, config), "size": len(config)},
        "layers": layer_descs}).encode()
    req = urllib.request.Request(
        f"{base}/v2/{REPO_NAME}/manifests/{TAG}", data=manifest, method="PUT",
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    urllib.request.urlopen(req).close()
    return {"uncompressed_mb": sum(len(t) for t in raw_layers) / 1e6,
            "compressed_mb": sum(len(b) for b in blobs) / 1e6, "layers": len(blobs)}


# ----------------------------------------------------------------------------- engines


def _timed(argv: list[str], env: dict[str, str], timeout: float = 600) -> float:
    t0 = time.monotonic()
    run(argv, env=env, timeout=timeout)
    return time.monotonic() - t0


def bench_shipslog(ref: str, n: int, *, docker_cli: bool = False) -> list[float]:
    """Our CLI, or (`docker_cli`) the docker CLI against shipslogd: the same daemon work
    without our CLI's start-up."""
    if docker_cli and shutil.which("docker") is None:
        raise Unavailable("`docker` is not installed")
    out = []
    for _ in range(n):
        d = DaemonProcess.make()
        try:
            d.start()
            env = dict(d.cli_env(), PYTHONPATH=str(REPO))
            argv = (["docker", "pull", "-q", ref] if docker_cli else
                    [sys.executable, "-m", "engine.cli.main", "pull", "-q", ref])
            out.append(_timed(argv, env))
            images = d.client().get_json("/images/json")
            assert images and images[0]["RepoTags"] == [ref], images
        finally:
            d.cleanup()
    return out


def bench_docker(work: Path, ref: str, n: int, stack: ExitStack) -> list[float]:
    dockerd = Dockerd(work / "docker")
    stack.callback(dockerd.stop)
    dockerd.start()
    out = []
    for _ in range(n):
        out.append(_timed(["docker", "pull", "-q", ref], dockerd.env))
        run(["docker", "rmi", ref], env=dockerd.env)
        run(["docker", "image", "prune", "-af"], env=dockerd.env)
    return out


def bench_podman(work: Path, ref: str, n: int, stack: ExitStack) -> list[float]:
    podman = Podman(work / "podman")
    stack.callback(podman.cleanup)
    podman.setup()
    out = []
    for _ in range(n):
        out.append(_timed([*podman.prefix, "pull", "-q", "--tls-verify=false", ref],
                          podman.env))
        run([*podman.prefix, "rmi", "-af"], env=podman.env)
    return out


def bench_skopeo(work: Path, ref: str, n: int) -> list[float]:
    if shutil.which("skopeo") is None:
        raise Unavailable("`skopeo` is not installed")
    out = []
    for i in range(n):
        dest = work / f"skopeo-{i}"
        out.append(_timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                           f"docker://{ref}", f"oci:{dest}:{TAG}"], dict(os.environ)))
        shutil.rmtree(dest, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.pull", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one pull per engine")
    p.add_argument("-n", "--runs", type=int, default=0, help="pulls per engine (default 3)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["shipslog_docker_cli", "docker", "podman", "skopeo"],
                   help="leave an engine out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.runs or (1 if args.quick else 3)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, mounts)", file=sys.stderr)
        return 2
    interrupts_unwind()
    samples: dict[str, list[float]] = {}
    why: dict[str, str] = {}
    image: dict[str, Any] = {}
    with ExitStack() as stack:
        work = make_workdir()
        stack.callback(remove_tree, work)
        traces = HostTraces([*Dockerd.host_traces(), *Podman.host_traces(),
                             *cgroup_paths("shipslog")])
        stack.callback(traces.restore)
        try:
            reg = LocalRegistry(base=work / "registry")
            reg.base.mkdir()
            stack.callback(reg.stop)
            reg.start()
            log(f"registry on {reg.domain}; building and pushing the image")
            image = push_image(reg, work, build_busybox_tar(work / "busybox.tar"))
            ref = f"{reg.domain}/{REPO_NAME}:{TAG}"
            log(f"image {ref}: {image['uncompressed_mb']:.0f} MB in {image['layers']} layers "
                f"({image['compressed_mb']:.0f} MB gzip)")
            runs: dict[str, Callable[[], list[float]]] = {
                "shipslog": lambda: bench_shipslog(ref, n),
                "shipslog_docker_cli": lambda: bench_shipslog(ref, n, docker_cli=True),
                "docker": lambda: bench_docker(work, ref, n, stack),
                "podman": lambda: bench_podman(work, ref, n, stack),
                "skopeo": lambda: bench_skopeo(work, ref, n),
            }
            for name, fn in runs.items():
                if name in args.skip:
                    why[name] = "skipped (--skip)"
                    continue
                log(f"{name}: {n} pull(s)")
                try:
                    samples[name] = fn()
                except (Unavailable, CommandFailed, OSError, AssertionError) as e:
                    why[name] = str(e)[:300]
                    log(f"{name}: not measured: {why[name]}")
        except KeyboardInterrupt:
            log("interrupted; cleaning up")
            shield_cleanup()
            raise
        finally:
            shield_cleanup()
    ours = median(samples.get("shipslog", []))
    rows = []
    result: dict[str, Any] = {"image": image, "runs": n, "median_s": {}, "min_s": {},
                              "shipslog_ratio": {}}
    for name in ("shipslog", "shipslog_docker_cli", "docker", "podman", "skopeo"):
        xs = samples.get(name, [])
        med = median(xs)
        result["median_s"][name] = med
        result["min_s"][name] = min(xs) if xs else None
        mine = name.startswith("shipslog")
        r = None if mine else ratio(ours, med)
        if not mine:
            result["shipslog_ratio"][name] = r
        rows.append([name, fmt_s(med), fmt_s(min(xs) if xs else None),
                     "" if mine else fmt_ratio(r),
                     why.get(name, "")])
    print(format_table(["engine", "median", "min", "shipslog/x", "note"], rows))
    print(json_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
