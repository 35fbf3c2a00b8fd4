"""`docker cp / diff / export / stats` and `shipslog cp / diff / export / stats` against a real
shipslogd on the real kernel: copies in and out of running and stopped containers (also one
whose rootfs is not mounted, which is mounted for the copy and unmounted after), symlinks
that point out of the container, hostile archives PUT straight at the API, and the audit
trail (`shipslog history`, `docker events`)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import run
from engine.drivers.snapshots.overlay import Snapshotter

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]

SECRET = b"host secret\n"


def docker(daemon: Any, *args: str, check: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(["docker", *args], capture_output=True, env=daemon.cli_env(),
                       input=input, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}: {p.stderr!r}")
    return p


def cli(daemon: Any, *argv: str, code: int = 0) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    got = run(list(argv), environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
              stdout=out, stderr=err)
    assert got == code, f"shipslog {' '.join(argv)} -> {got}: {err.getvalue()}"
    return out.getvalue(), err.getvalue()


def _sleeper(daemon: Any, name: str, script: str = "") -> str:
    cid = docker(daemon, "run", "-d", "--name", name, "busybox", "sh", "-c",
                 f"{script} touch /tmp/ready; sleep 1000").stdout.decode().strip()
    deadline = time.monotonic() + 10
    while docker(daemon, "exec", name, "test", "-e", "/tmp/ready", check=False).returncode:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    return cid


def _local(daemon: Any) -> tuple[Path, Path]:
    """A scratch dir for local files, and a host sentinel that must stay untouched."""
    work = daemon.base / "work"
    (work / "src" / "d").mkdir(parents=True)
    (work / "src" / "d" / "a").write_text("hello\n")
    (work / "src" / "file").write_text("one file\n")
    (work / "out").mkdir()
    sentinel = daemon.base / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_bytes(SECRET)
    return work, sentinel


def test_docker_cp_in_and_out_running_and_stopped(daemon: Any) -> None:
    work, _ = _local(daemon)
    src, out = work / "src", work / "out"
    cid = _sleeper(daemon, "files")
    docker(daemon, "cp", str(src / "file"), "files:/tmp/")
    docker(daemon, "cp", str(src / "d"), "files:/tmp/newdir")  # a new name: renamed
    docker(daemon, "cp", str(src / "d"), "files:/root/")  # into a directory: its own name
    listing = docker(daemon, "exec", "files", "sh", "-c",
                     "cat /tmp/file /tmp/newdir/a /root/d/a").stdout
    assert listing == b"one file\nhello\nhello\n"
    docker(daemon, "cp", "files:/etc/passwd", str(out))
    docker(daemon, "cp", "files:/tmp/newdir", str(out / "back"))
    assert (out / "passwd").read_text().startswith("root:")
    assert (out / "back" / "a").read_text() == "hello\n"
    p = docker(daemon, "cp", "files:/no/such", str(out), check=False)
    assert p.returncode != 0 and b"Could not find the file /no/such" in p.stderr
    p = docker(daemon, "cp", str(src / "file"), "files:/etc/passwd/x", check=False)
    assert p.returncode != 0 and b"not a directory" in p.stderr
    (work / "passwd").mkdir()  # the CLI asks noOverwriteDirNonDir: no dir over /etc/passwd
    p = docker(daemon, "cp", str(work / "passwd"), "files:/etc/", check=False)
    assert p.returncode != 0 and b"cannot overwrite non-directory" in p.stderr, p.stderr
    _, err = cli(daemon, "cp", str(work / "passwd"), "files:/etc/", code=125)
    assert "cannot overwrite non-directory" in err
    assert docker(daemon, "exec", "files", "test", "-f", "/etc/passwd", check=False
                  ).returncode == 0

    docker(daemon, "stop", "-t", "1", "files")
    # After a daemon restart a stopped container's rootfs is not mounted: copy anyway.
    snapshots = Snapshotter(daemon.root)
    snapshots.unmount(cid)
    assert not snapshots.is_mounted(cid)
    docker(daemon, "cp", str(src / "file"), "files:/stopped.txt")
    docker(daemon, "cp", "files:/stopped.txt", str(out / "stopped"))
    assert (out / "stopped").read_text() == "one file\n"
    # mounted for the copy only (the unmount follows the end of the response: poll for it)
    deadline = time.monotonic() + 10
    while snapshots.is_mounted(cid):
        assert time.monotonic() < deadline, "the rootfs mounted for a copy stayed mounted"
        time.sleep(0.05)
    docker(daemon, "start", "files")  # and the container still starts afterwards
    assert docker(daemon, "exec", "files", "cat", "/stopped.txt").stdout == b"one file\n"
    docker(daemon, "rm", "-f", "files")


def test_symlinks_pointing_out_never_reach_the_host(daemon: Any) -> None:
    work, sentinel = _local(daemon)
    out = work / "out"
    _sleeper(daemon, "links", f"ln -s / /tmp/rootlink; ln -s {sentinel} /tmp/hostlink;"
                              f" ln -s {sentinel}/secret /tmp/secretlink;")
    # out: a symlink is copied as a symlink, its target is not followed on the host
    docker(daemon, "cp", "links:/tmp/secretlink", str(out))
    assert (out / "secretlink").is_symlink()
    p = docker(daemon, "cp", "links:/tmp/hostlink/secret", str(out / "x"), check=False)
    assert p.returncode != 0 and not (out / "x").exists()
    p = docker(daemon, "cp", "links:/tmp/secretlink", "-")
    assert SECRET not in p.stdout
    p = docker(daemon, "cp", "-L", "links:/tmp/secretlink", str(out / "y"), check=False)
    assert p.returncode != 0 and not (out / "y").exists()
    # in: a destination through a symlink lands inside the container
    docker(daemon, "cp", str(work / "src" / "file"), "links:/tmp/rootlink/dropped")
    assert docker(daemon, "exec", "links", "cat", "/dropped").stdout == b"one file\n"
    p = docker(daemon, "cp", str(work / "src" / "file"), "links:/tmp/hostlink/", check=False)
    assert p.returncode != 0
    assert sorted(x.name for x in sentinel.iterdir()) == ["secret"]
    assert (sentinel / "secret").read_bytes() == SECRET
    docker(daemon, "rm", "-f", "links")


def test_copies_in_mounts_never_leave_them(daemon: Any) -> None:
    # Volumes and binds are reached in their host directories (RELIABILITY S-04/S-05): a
    # symlink in one that climbs or jumps out resolves inside the mount, never on the host;
    # tmpfs (its files exist only inside the container) is refused with a hint.
    work, sentinel = _local(daemon)
    bind = daemon.base / "bind"
    bind.mkdir()
    docker(daemon, "run", "-d", "--name", "vol", "-v", "cpvol:/data", "-v", f"{bind}:/bind",
           "--tmpfs", "/scratch", "busybox", "sh", "-c",
           "ln -s .. /bind/up; ln -s / /bind/abs; ln -s ../../.. /data/up; sleep 1000")
    deadline = time.monotonic() + 10
    while not (bind / "abs").is_symlink():
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    out = work / "out"
    for path in ("/bind/up/sentinel/secret", "/bind/abs" + str(sentinel / "secret"),
                 "/data/up" + str(sentinel / "secret")):
        p = docker(daemon, "cp", f"vol:{path}", "-", check=False)
        assert p.returncode != 0 and SECRET not in p.stdout, path
        assert b"Could not find the file" in p.stderr, p.stderr
    for dest in ("vol:/bind/up/sentinel/", "vol:/bind/abs" + str(sentinel) + "/"):
        p = docker(daemon, "cp", str(work / "src" / "file"), dest, check=False)
        assert p.returncode != 0
    docker(daemon, "cp", str(work / "src" / "file"), "vol:/bind/up/")  # lands in the bind
    assert (bind / "file").read_text() == "one file\n"
    assert sorted(x.name for x in sentinel.iterdir()) == ["secret"]
    assert (sentinel / "secret").read_bytes() == SECRET
    assert not (daemon.base / "file").exists()
    p = docker(daemon, "cp", str(work / "src" / "file"), "vol:/scratch/", check=False)
    assert p.returncode != 0 and b"inside the tmpfs mount at /scratch" in p.stderr, p.stderr
    _, err = cli(daemon, "cp", "vol:/scratch", str(out / "s"), code=125)
    assert "tmpfs mount at /scratch" in err and "exec" in err
    docker(daemon, "rm", "-f", "-v", "vol")
    docker(daemon, "volume", "rm", "cpvol")


def test_running_container_dev_and_volume_both_reached(daemon: Any) -> None:
    # The merge of issue 15 item 9 (a running container's files through its own mount
    # namespace, so /dev is the runtime's tmpfs) and issue 13 (volumes and binds reached in
    # their host directories): one running container with a volume has both, and what is on
    # neither (/dev/shm) is still refused.
    work, _ = _local(daemon)
    docker(daemon, "run", "-d", "--name", "both", "-v", "bothvol:/data", "busybox", "sh",
           "-c", "ln -s /data /link; touch /tmp/ready; sleep 1000")
    deadline = time.monotonic() + 10
    while docker(daemon, "exec", "both", "test", "-e", "/tmp/ready", check=False).returncode:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    src = work / "src"
    docker(daemon, "cp", str(src / "file"), "both:/dev/")
    docker(daemon, "cp", str(src / "file"), "both:/data/")
    docker(daemon, "cp", str(src / "d"), "both:/link/")  # a rootfs symlink into the volume
    for path, text in (("/dev/file", b"one file\n"), ("/data/file", b"one file\n"),
                       ("/data/d/a", b"hello\n")):
        assert docker(daemon, "exec", "both", "cat", path).stdout == text, path
    assert docker(daemon, "cp", "both:/data/d/a", "-").returncode == 0
    p = docker(daemon, "cp", str(src / "file"), "both:/dev/shm/", check=False)
    assert p.returncode != 0 and b"another mount" in p.stderr, p.stderr
    docker(daemon, "rm", "-f", "-v", "both")
    docker(daemon, "volume", "rm", "bothvol")


def test_runtime_files_of_a_running_container_copy_out(daemon: Any, tmp_path: Path) -> None:
    # /etc/hosts, /etc/hostname and /etc/resolv.conf are the runtime's bind mounts; through
    # the running container's own root they sit on another mount, yet Docker's cp reads them
    # as the container sees them (a refusal here came with the live root of issue 15 item 9).
    docker(daemon, "run", "-d", "--name", "files", "--hostname", "filesbox", "busybox",
           "sleep", "1000")
    for path in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        out = tmp_path / path.rsplit("/", 1)[1]
        docker(daemon, "cp", f"files:{path}", str(out))
        seen = docker(daemon, "exec", "files", "cat", path).stdout
        assert out.read_bytes() == seen, path
    assert b"filesbox" in (tmp_path / "hostname").read_bytes()
    p = docker(daemon, "cp", "files:/dev/shm", str(tmp_path / "shm"), check=False)
    assert p.returncode != 0 and b"another mount" in p.stderr, p.stderr
    docker(daemon, "rm", "-f", "files")


def _put(daemon: Any, container: str, path: str, members: list[tuple[tarfile.TarInfo, bytes]]
         ) -> Any:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return daemon.client().request("PUT", f"/containers/{container}/archive", {"path": path},
                                   buf.getvalue(), {"Content-Type": "application/x-tar"})


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def test_hostile_archives_put_at_the_api(daemon: Any) -> None:
    _, sentinel = _local(daemon)
    _sleeper(daemon, "target")
    host_rel = str(sentinel).lstrip("/")
    attacks = [
        [(_info("../../../../../../" + host_rel + "/pwned"), b"x")],
        [(_info("evil", tarfile.SYMTYPE, str(sentinel)), b""), (_info("evil/pwned"), b"x")],
        [(_info("up", tarfile.SYMTYPE, "../../../../../../.."), b""),
         (_info("up/" + host_rel + "/pwned"), b"x")],
        [(_info("hard", tarfile.LNKTYPE, "../../../../../" + host_rel + "/secret"), b"")],
        [(_info(".wh.passwd"), b"")],
    ]
    for members in attacks:
        resp = _put(daemon, "target", "/tmp", members)
        assert resp.status == 400, (members[0][0].name, resp.status, resp.body)
        assert b"invalid archive" in resp.body
    dev = _info("kmem", tarfile.CHRTYPE)
    dev.devmajor, dev.devminor = 1, 2
    resp = _put(daemon, "target", "/tmp", [(dev, b""), (_info("ok"), b"fine")])
    assert resp.status == 200
    ls = docker(daemon, "exec", "target", "ls", "/tmp").stdout.split()
    assert b"kmem" not in ls and b"ok" in ls
    assert sorted(x.name for x in sentinel.iterdir()) == ["secret"]
    assert (sentinel / "secret").read_bytes() == SECRET
    assert docker(daemon, "exec", "target", "cat", "/etc/passwd").stdout.startswith(b"root:")
    history, _ = cli(daemon, "history", "target")
    assert "refused: invalid archive" in history
    assert "1 device nodes skipped" in history
    docker(daemon, "create", "--read-only", "--name", "ro", "busybox")
    resp = _put(daemon, "ro", "/tmp", [(_info("x"), b"x")])
    assert resp.status == 403 and b"read-only" in resp.body
    docker(daemon, "rm", "-f", "target", "ro")


def test_diff_export_and_the_audit_trail(daemon: Any) -> None:
    work, _ = _local(daemon)
    _sleeper(daemon, "changed", "echo hi > /tmp/made; rm /etc/group; mkdir -p /root/sub;")
    diff = docker(daemon, "diff", "changed").stdout.decode().splitlines()
    for line in ("C /etc", "D /etc/group", "C /tmp", "A /tmp/made", "C /root", "A /root/sub"):
        assert line in diff, (line, diff)
    assert not any(line.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"))
                   for line in diff)  # runc's mount points are not the container's changes
    ours, _ = cli(daemon, "diff", "changed")
    assert ours.splitlines() == diff
    rows = json.loads("[" + ",".join(cli(daemon, "diff", "--format", "json",
                                         "changed")[0].splitlines()) + "]")
    assert {"Kind": "D", "Path": "/etc/group"} in rows

    exported = docker(daemon, "export", "changed").stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
        names = {m.name.rstrip("/") for m in tf.getmembers()}
    assert {"bin/busybox", "etc/passwd", "tmp/made", "root/sub"} <= names
    assert "etc/group" not in names
    cli(daemon, "export", "-o", str(work / "rootfs.tar"), "changed")
    with tarfile.open(work / "rootfs.tar") as tf:
        assert "tmp/made" in tf.getnames()

    cli(daemon, "cp", str(work / "src" / "d"), "changed:/tmp/viacli")
    cli(daemon, "cp", "changed:/tmp/viacli/a", str(work / "out" / "a"))
    assert (work / "out" / "a").read_text() == "hello\n"
    history, _ = cli(daemon, "history", "changed")
    for words in ("copied in to /tmp", "copied out: /tmp/viacli/a", "exported"):
        assert words in history, (words, history)
    assert "(docker export changed)" in history  # the actor: who ran what
    events = docker(daemon, "events", "--since", "0", "--until", f"{time.time():.9f}",
                    "--filter", "container=changed", "--format", "{{.Action}}").stdout.split()
    assert {b"archive-path", b"extract-to-dir", b"export"} <= set(events)
    docker(daemon, "rm", "-f", "changed")


@pytest.mark.slow
def test_stats(daemon: Any) -> None:
    _sleeper(daemon, "busy")
    p = docker(daemon, "stats", "--no-stream", "--format",
               "{{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}", "busy")
    name, mem, pids, cpu = p.stdout.decode().strip().split("|")
    assert name == "busy" and pids == "1" and cpu.endswith("%")
    used = mem.split(" / ")[0]
    assert used[0].isdigit() and not used.startswith("0B"), mem
    raw = daemon.client().get_json("/containers/busy/stats", {"stream": 0})
    for key in ("read", "preread", "pids_stats", "blkio_stats", "cpu_stats", "precpu_stats",
                "memory_stats", "networks", "name", "id"):
        assert key in raw
    assert raw["memory_stats"]["usage"] > 0 and raw["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert raw["precpu_stats"]["system_cpu_usage"] > 0  # two readings: a CPU % is possible
    ours, _ = cli(daemon, "stats", "--no-stream", "--format", "json", "busy")
    row = json.loads(ours)
    assert row["Name"] == "busy" and row["PIDs"] == "1"
    table, _ = cli(daemon, "stats", "--no-stream")
    assert table.splitlines()[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert "busy" in table
    docker(daemon, "stop", "-t", "1", "busy")
    stopped = docker(daemon, "stats", "--no-stream", "--format", "{{.MemUsage}}", "busy")
    assert stopped.stdout.decode().startswith("0B")
    docker(daemon, "rm", "busy")
