"""Benchmark `pull` from a local registry into fresh storage: shipslog side by side with
`docker pull`, `podman pull` and `skopeo copy` (to an OCI directory: download and
verification only, no unpack) in one run (issue 4).

    python3 -m tools.bench.pull            # 3 pulls per engine
    python3 -m tools.bench.pull --quick    # 1 pull per engine
    python3 -m tools.bench.pull -n 5 --skip podman
    python3 -m tools.bench.pull --skip-image synthetic   # only the real-content image
    python3 -m tools.bench.pull --daemon-before DIR      # + shipslogd from an older tree

Two images, each the busybox layer plus one big layer: `synthetic`, ~170 MB uncompressed (a
tree of ~2,000 files of mixed sizes, part random, part text-like, so gzip does real work), and
`real` (issue 17), ~180 MB of files this machine already has (/usr/lib/python3*,
/usr/share/doc: ~10,000 files, as many small files as a python base image); Docker schema 2 with
gzip layers, pushed once to Debian's `docker-registry` on 127.0.0.1 (plain HTTP, as every
engine allows for loopback). Every pull starts from empty storage: a fresh shipslogd root
(started outside the timing), `rmi` + `image prune -a` for Docker and Podman, a fresh
directory for skopeo. The engines take turns pull by pull (round-robin), so a change in the
load of a shared machine falls on all of them alike. Timed: the client command's wall
time, until the image is usable (for skopeo: until the OCI directory is complete). Median and
min per engine, and ratios of our CLI's median to each. `shipslog_docker_cli` is the docker
CLI against shipslogd: the same daemon work without our CLI's start-up. `--daemon-before DIR`
(`git archive OLD engine events projections | tar -x -C DIR`) adds `shipslog_before`: our CLI
against a shipslogd run from that tree, taking its turn with the others (before and after a
daemon change, in one run).

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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from engine.testing.daemon import DaemonProcess
from engine.testing.localreg import LocalRegistry
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
REAL_REPO_NAME = "bench/real"
TAG = "v1"
BIG_LAYER_BYTES = 170 << 20
# Real distribution content (issue 17): what a python base image holds is a standard library
# and a documentation tree -- ~10,000 small files, not ~2,000 large ones.
REAL_SOURCES = ("/usr/lib/python3", "/usr/lib/python3.11", "/usr/share/doc")
REAL_LAYER_BYTES = 180 << 20


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


def _real_sources() -> list[Path]:
    found = [Path(p) for p in REAL_SOURCES if Path(p).is_dir()]
    if not found:
        raise Unavailable(f"none of {', '.join(REAL_SOURCES)} exists here")
    return found


def _real_layer_tar() -> bytes:
    """A layer of files this machine already has (sorted walk, stops at REAL_LAYER_BYTES).

    Owners are kept as they are (root), mtimes too; sockets and devices are left out (tarfile
    skips sockets; there are no devices under these trees)."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for top in _real_sources():
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                if total >= REAL_LAYER_BYTES:
                    break
                tf.add(dirpath, arcname=dirpath.lstrip("/"), recursive=False)
                for name in sorted(filenames):
                    if total >= REAL_LAYER_BYTES:
                        break
                    path = os.path.join(dirpath, name)
                    try:
                        tf.add(path, arcname=path.lstrip("/"), recursive=False)
                        total += os.lstat(path).st_size
                    except OSError:
                        continue  # vanished or unreadable: not part of the image
    return out.getvalue()


def _busybox_layer(busybox_tar: Path) -> bytes:
    with tarfile.open(busybox_tar) as t:
        f = t.extractfile("manifest.json")
        assert f is not None
        layer = json.load(f)[0]["Layers"][0]
        blob = t.extractfile(layer)
        assert blob is not None
        return blob.read()


def _put_blob(base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as resp:
        loc = resp.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    req = urllib.request.Request(f"{loc}{'&' if '?' in loc else '?'}digest={digest}",
                                 data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def push_image(reg: LocalRegistry, work: Path, busybox_tar: Path, *,
               real: bool = False) -> dict[str, Any]:
    """Build the two-layer image (busybox + synthetic or `real` content) and push it; return
    its reference and sizes."""
    base = f"http://{reg.domain}"
    repo = REAL_REPO_NAME if real else REPO_NAME
    raw_layers = [_busybox_layer(busybox_tar), _real_layer_tar() if real else _big_layer_tar()]
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
                            "digest": _put_blob(base, repo, blob), "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": _put_blob(base, repo, config), "size": len(config)},
        "layers": layer_descs}).encode()
    req = urllib.request.Request(
        f"{base}/v2/{repo}/manifests/{TAG}", data=manifest, method="PUT",
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    urllib.request.urlopen(req).close()
    files = 0
    with tarfile.open(fileobj=io.BytesIO(raw_layers[1])) as tf:
        files = sum(1 for m in tf if m.isfile())
    return {"ref": f"{reg.domain}/{repo}:{TAG}",
            "uncompressed_mb": sum(len(t) for t in raw_layers) / 1e6,
            "compressed_mb": sum(len(b) for b in blobs) / 1e6, "layers": len(blobs),
            "files": files}


# ----------------------------------------------------------------------------- engines


def _timed(argv: list[str], env: dict[str, str], timeout: float = 600) -> float:
    t0 = time.monotonic()
    run(argv, env=env, timeout=timeout)
    return time.monotonic() - t0


class PullEngine:
    """One engine as the benchmark drives it: `setup` (untimed), `pull_once` (timed, then
    storage emptied again, untimed), `cleanup`. Engines take turns pull by pull, so a change
    in the machine's load (it is shared) falls on every engine alike."""

    name = ""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def setup(self) -> None:
        pass

    def pull_once(self, i: int) -> float:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class ShipslogPull(PullEngine):
    """Our CLI, or (`docker_cli`) the docker CLI against shipslogd: the same daemon work
    without our CLI's start-up. A fresh daemon and root per pull (started outside the timing)."""

    def __init__(self, ref: str, *, docker_cli: bool = False, tree: Path | None = None) -> None:
        super().__init__(ref)
        self.docker_cli = docker_cli
        self.tree = tree  # another source tree for the daemon (--daemon-before)
        self.name = ("shipslog_docker_cli" if docker_cli else
                     "shipslog_before" if tree is not None else "shipslog")

    def setup(self) -> None:
        if self.docker_cli and shutil.which("docker") is None:
            raise Unavailable("`docker` is not installed")

    def pull_once(self, i: int) -> float:
        d = DaemonProcess.make()
        if self.tree is not None:
            # `env -C` makes that tree the daemon's working dir, which `-m` puts first on
            # sys.path (as tools.bench.run's --daemon-before).
            tree = str(self.tree.resolve())
            d.wrap = ["env", "-C", tree, f"PYTHONPATH={tree}"]
        try:
            d.start()
            env = dict(d.cli_env(), PYTHONPATH=str(REPO))
            argv = (["docker", "pull", "-q", self.ref] if self.docker_cli else
                    [sys.executable, "-m", "engine.cli.main", "pull", "-q", self.ref])
            t = _timed(argv, env)
            images = d.client().get_json("/images/json")
            assert images and images[0]["RepoTags"] == [self.ref], images
            return t
        finally:
            d.cleanup()


class DockerPull(PullEngine):
    name = "docker"

    def __init__(self, ref: str, base: Path) -> None:
        super().__init__(ref)
        self.dockerd = Dockerd(base)

    def setup(self) -> None:
        self.dockerd.start()

    def pull_once(self, i: int) -> float:
        env = self.dockerd.env
        t = _timed(["docker", "pull", "-q", self.ref], env)
        run(["docker", "rmi", self.ref], env=env)
        run(["docker", "image", "prune", "-af"], env=env)
        return t

    def cleanup(self) -> None:
        self.dockerd.stop()


class PodmanPull(PullEngine):
    name = "podman"

    def __init__(self, ref: str, base: Path) -> None:
        super().__init__(ref)
        self.podman = Podman(base)

    def setup(self) -> None:
        self.podman.setup()

    def pull_once(self, i: int) -> float:
        p = self.podman
        t = _timed([*p.prefix, "pull", "-q", "--tls-verify=false", self.ref], p.env)
        run([*p.prefix, "rmi", "-af"], env=p.env)
        return t

    def cleanup(self) -> None:
        self.podman.cleanup()


class SkopeoPull(PullEngine):
    name = "skopeo"

    def __init__(self, ref: str, base: Path) -> None:
        super().__init__(ref)
        self.base = base

    def setup(self) -> None:
        if shutil.which("skopeo") is None:
            raise Unavailable("`skopeo` is not installed")

    def pull_once(self, i: int) -> float:
        dest = self.base / f"skopeo-{i}"
        try:
            return _timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                           f"docker://{self.ref}", f"oci:{dest}:{TAG}"], dict(os.environ))
        finally:
            shutil.rmtree(dest, ignore_errors=True)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m tools.bench.pull", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one pull per engine")
    p.add_argument("-n", "--runs", type=int, default=0, help="pulls per engine (default 3)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["shipslog_docker_cli", "docker", "podman", "skopeo"],
                   help="leave an engine out")
    p.add_argument("--daemon-before", type=Path, default=None, metavar="DIR",
                   help="also pull with a shipslogd run from this older source tree")
    p.add_argument("--skip-image", action="append", default=[], choices=list(IMAGES),
                   help="leave an image out (synthetic: ~2,000 generated files; real: "
                        "~10,000 files of this machine's python and docs)")
    return p.parse_args(argv)


ENGINES = ("shipslog", "shipslog_before", "shipslog_docker_cli", "docker", "podman", "skopeo")
IMAGES = ("synthetic", "real")


def _bench_image(kind: str, ref: str, n: int, work: Path, stack: ExitStack, skip: list[str],
                 samples: dict[str, list[float]], why: dict[str, str],
                 before: Path | None = None) -> None:
    """Every engine pulls `ref` n times, taking turns (round-robin); fills samples/why."""
    base = work / kind[0]  # short: podman refuses a runroot path over 50 characters
    base.mkdir()
    engines: list[PullEngine] = [ShipslogPull(ref)]
    if before is not None:
        engines.append(ShipslogPull(ref, tree=before))
    engines += [ShipslogPull(ref, docker_cli=True), DockerPull(ref, base / "docker"),
                PodmanPull(ref, base / "podman"), SkopeoPull(ref, base)]
    ready: list[PullEngine] = []
    for e in engines:
        if e.name in skip:
            why[e.name] = "skipped (--skip)"
            continue
        stack.callback(e.cleanup)
        try:
            e.setup()
        except (Unavailable, CommandFailed, OSError) as err:
            why[e.name] = str(err)[:300]
            log(f"{e.name}: not measured: {why[e.name]}")
            continue
        ready.append(e)
        samples[e.name] = []
    for i in range(n):
        log(f"{kind} image, round {i + 1}/{n}: {', '.join(e.name for e in ready)}")
        for e in list(ready):
            try:
                samples[e.name].append(e.pull_once(i))
            except (Unavailable, CommandFailed, OSError, AssertionError) as err:
                why[e.name] = str(err)[:300]
                log(f"{e.name}: not measured: {why[e.name]}")
                samples.pop(e.name)
                ready.remove(e)
    for e in ready:
        e.cleanup()


def create_floor(where: Path, count: int = 1000) -> float:
    """Seconds to create one empty file in `where` (open O_CREAT|O_EXCL, close), the median
    of `count`: what every engine pays per file of a layer on this filesystem under this
    load, whatever its unpacker does (issue 17: ~0.5 ms per file on a busy shared host)."""
    d = where / "create-floor"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    times = []
    try:
        for i in range(count):
            t = time.perf_counter()
            os.close(os.open(f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o644, dir_fd=fd))
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        shutil.rmtree(d)
    return median(times) or 0.0


def _report(kind: str, n: int, image: dict[str, Any], samples: dict[str, list[float]],
            why: dict[str, str]) -> tuple[str, dict[str, Any]]:
    ours = median(samples.get("shipslog", []))
    rows = []
    result: dict[str, Any] = {"image": image, "runs": n, "median_s": {}, "min_s": {},
                              "shipslog_ratio": {}}
    for name in ENGINES:
        if name == "shipslog_before" and name not in samples and name not in why:
            continue  # no --daemon-before: not a row
        xs = samples.get(name, [])
        med = median(xs)
        result["median_s"][name] = med
        result["min_s"][name] = min(xs) if xs else None
        mine = name in ("shipslog", "shipslog_docker_cli")  # shipslog_before gets a ratio
        r = None if mine else ratio(ours, med)
        if not mine:
            result["shipslog_ratio"][name] = r
        rows.append([name, fmt_s(med), fmt_s(min(xs) if xs else None),
                     "" if mine else fmt_ratio(r),
                     why.get(name, "")])
    title = (f"{kind} image: {image.get('uncompressed_mb', 0):.0f} MB, "
             f"{image.get('files', 0)} files in the big layer")
    load = image.get("loadavg")
    if load:
        result["loadavg"] = load
        title += f"; load average {load[0]:.1f} before, {load[1]:.1f} after (the host is shared)"
    floor = image.get("create_floor_ms_per_file")
    if floor is not None:
        result["create_floor_s"] = floor * image.get("files", 0) / 1000
        title += (f"; creating one file here took {floor:.3f} ms (median, right after the "
                  f"pulls): {result['create_floor_s']:.2f} s for the layer's files alone")
    return title + "\n" + format_table(["engine", "median", "min", "shipslog/x", "note"],
                                        rows), result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.runs or (1 if args.quick else 3)
    if os.geteuid() != 0:
        print("the benchmark needs root (daemons, mounts)", file=sys.stderr)
        return 2
    interrupts_unwind()
    kinds = [k for k in IMAGES if k not in args.skip_image]
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    why: dict[str, dict[str, str]] = {k: {} for k in kinds}
    images: dict[str, dict[str, Any]] = {}
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
            busybox = build_busybox_tar(work / "busybox.tar")
            for kind in kinds:
                log(f"registry on {reg.domain}; building and pushing the {kind} image")
                image = images[kind] = push_image(reg, work, busybox, real=kind == "real")
                log(f"image {image['ref']}: {image['uncompressed_mb']:.0f} MB in "
                    f"{image['layers']} layers ({image['compressed_mb']:.0f} MB gzip, "
                    f"{image['files']} files in the big layer)")
                load_before = os.getloadavg()[0]
                _bench_image(kind, image["ref"], n, work, stack, args.skip,
                             samples[kind], why[kind], args.daemon_before)
                image["loadavg"] = [load_before, os.getloadavg()[0]]
                image["create_floor_ms_per_file"] = create_floor(work) * 1000
        except KeyboardInterrupt:
            log("interrupted; cleaning up")
            shield_cleanup()
            raise
        finally:
            shield_cleanup()
    result: dict[str, Any] = {}
    for kind in kinds:
        text, result[kind] = _report(kind, n, images.get(kind, {}), samples[kind], why[kind])
        print(text)
        print()
    print(json_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
