"""The pure parts of cp/diff/stats: the copy-path split (engine/core/fs_plan.py), the change
classification of an overlay upper dir, Go file modes, and the stats parsers and shaping
(engine/core/stats_shape.py)."""

from __future__ import annotations

import posixpath
import stat

from hypothesis import given
from hypothesis import strategies as st

from engine.core.fs_plan import (
    CHANGE_ADDED,
    CHANGE_DELETED,
    CHANGE_MODIFIED,
    INIT_PATHS,
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_SETUID,
    MODE_SYMLINK,
    UpperEntry,
    classify_changes,
    go_file_mode,
    mount_covering,
    plan_copy_path,
)
from engine.core.stats_shape import (
    StatsSample,
    parse_blkio,
    parse_key_values,
    parse_net_dev,
    parse_proc_stat_cpu,
    shape_stats,
    stats_row,
)

COMPONENT = st.sampled_from(["a", "b", "etc", "..", ".", "", "x y", "link", "ü"])
PATHS = st.lists(COMPONENT, min_size=1, max_size=8).map("/".join)


@given(PATHS)
def test_copy_path_never_leaves_the_root_lexically(path: str) -> None:
    if not path:
        return
    plan = plan_copy_path(path)
    assert plan.parent.startswith("/")
    assert ".." not in plan.parent.split("/")
    assert posixpath.normpath(plan.parent) == plan.parent
    if plan.entry is not None:
        assert "/" not in plan.entry and plan.entry not in ("", ".", "..")
        assert plan.name == plan.rebase == plan.entry
    assert "/" not in plan.rebase


def test_copy_path_follows_docker_resolve_path() -> None:
    p = plan_copy_path("/etc/passwd")
    assert (p.parent, p.entry, p.name) == ("/etc", "passwd", "passwd")
    # a trailing slash or "/." means the directory itself: its last symlink is followed
    p = plan_copy_path("/tmp/link/")
    assert (p.parent, p.entry, p.rebase) == ("/tmp/link", None, "link")
    p = plan_copy_path("/tmp/dir/.")
    assert (p.parent, p.entry, p.name, p.rebase) == ("/tmp/dir", None, ".", ".")
    p = plan_copy_path("relative/x")
    assert (p.parent, p.entry) == ("/relative", "x")
    p = plan_copy_path("/../../etc/shadow")
    assert (p.parent, p.entry) == ("/etc", "shadow")
    assert plan_copy_path("/").parent == "/" and plan_copy_path("/").entry is None


def test_copy_path_refuses_nul_and_empty() -> None:
    for bad in ("", "/etc/\x00x", "/" + "a" * 5000):
        try:
            plan_copy_path(bad)
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "status", 0) == 400
        else:
            raise AssertionError(f"{bad[:20]!r} accepted")


def test_mount_covering_finds_the_deepest_mount_at_or_above() -> None:
    targets = ["/data", "/data/cache", "/etc/hosts", "/"]
    assert mount_covering("/data", targets) == "/data"
    assert mount_covering("/data/x/y", targets) == "/data"
    assert mount_covering("/data/cache/z", targets) == "/data/cache"
    assert mount_covering("/database", targets) is None
    assert mount_covering("/etc/hosts", targets) == "/etc/hosts"
    assert mount_covering("/etc", targets) is None  # a parent of a mount is not inside it
    assert mount_covering("/tmp", []) is None


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == MODE_DIR | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == MODE_SYMLINK | 0o777
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == MODE_SETUID | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o600) == MODE_DEVICE | MODE_CHAR_DEVICE | 0o600
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644


ENTRY = st.builds(
    UpperEntry,
    path=st.lists(st.sampled_from(["etc", "tmp", "a", "b", "hosts"]), min_size=1,
                  max_size=4).map(lambda parts: "/" + "/".join(parts)),
    kind=st.sampled_from(["whiteout", "opaque", "dir", "file"]),
    in_lower=st.booleans(),
    meta_changed=st.booleans(),
)


@given(st.lists(ENTRY, max_size=30))
def test_changes_are_sorted_and_ancestors_are_reported(entries: list[UpperEntry]) -> None:
    changes = classify_changes(entries)
    paths = [p for p, _ in changes]
    assert paths == sorted(set(paths))
    reported = dict(changes)
    for path, _ in changes:
        # runc's mount points show only as the parent of something that really changed
        assert path not in INIT_PATHS or any(e.path.startswith(path + "/") for e in entries)
        parent = posixpath.dirname(path)
        while parent != "/":
            assert parent in reported, (path, parent)
            parent = posixpath.dirname(parent)
    for e in entries:
        if e.path in INIT_PATHS:
            continue
        if e.kind == "whiteout":
            assert reported[e.path] == CHANGE_DELETED or any(
                o.path == e.path and o.kind != "whiteout" for o in entries)
        elif e.kind == "file" and not e.in_lower:
            assert e.path in reported


def test_changes_as_docker_diff_shows_them() -> None:
    entries = [
        UpperEntry("/etc", "dir", True),
        UpperEntry("/etc/group", "whiteout", True),
        UpperEntry("/etc/hosts", "file", True),  # runc's mount point: never shown
        UpperEntry("/etc/hostname", "file", False),
        UpperEntry("/root", "dir", True),
        UpperEntry("/root/new", "file", False),
        UpperEntry("/bin/sh", "file", True),
        UpperEntry("/usr", "dir", True, meta_changed=True),
    ]
    assert classify_changes(entries) == [
        ("/bin", CHANGE_MODIFIED), ("/bin/sh", CHANGE_MODIFIED),
        ("/etc", CHANGE_MODIFIED), ("/etc/group", CHANGE_DELETED),
        ("/root", CHANGE_MODIFIED), ("/root/new", CHANGE_ADDED),
        ("/usr", CHANGE_MODIFIED),
    ]
    # a directory copied up only for runc's mount points leaves no trace
    assert classify_changes([UpperEntry("/etc", "dir", True),
                             UpperEntry("/etc/resolv.conf", "file", False)]) == []


# -- stats ----------------------------------------------------------------------------------


def test_parsers_read_kernel_text() -> None:
    assert parse_key_values("cache 10\nrss 20\nbad\ntotal_inactive_file 4\n") == {
        "cache": 10, "rss": 20, "total_inactive_file": 4}
    assert parse_blkio("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n") == (
        (8, 0, "Read", 4096), (8, 0, "Write", 512), (8, 0, "Total", 4608))
    net = ("Inter-|   Receive  |  Transmit\n face |bytes packets errs drop fifo frame "
           "compressed multicast|bytes packets errs drop fifo colls carrier compressed\n"
           "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
           "  eth0: 5338 36 1 2 0 0 0 0 648 8 3 4 0 0 0 0\n")
    assert parse_net_dev(net) == {"eth0": {
        "rx_bytes": 5338, "rx_packets": 36, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 648, "tx_packets": 8, "tx_errors": 3, "tx_dropped": 4}}
    assert parse_proc_stat_cpu("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1\n", 100) == 10 ** 10


@given(st.text(max_size=300))
def test_parsers_never_raise(text: str) -> None:
    parse_key_values(text)
    parse_blkio(text)
    parse_net_dev(text)
    parse_proc_stat_cpu(text, 100)


def _ns(ns: int) -> str:
    return f"t{ns}"


@given(st.integers(0, 10**12), st.integers(1, 10**12), st.integers(1, 10**13),
       st.integers(1, 10**13), st.integers(1, 64))
def test_cpu_percent_is_docker_formula(before: int, delta: int, sys_before: int,
                                       sys_delta: int, cpus: int) -> None:
    first = StatsSample(read_ns=1, cpu_total_ns=before, system_cpu_ns=sys_before,
                        online_cpus=cpus)
    second = StatsSample(read_ns=2, cpu_total_ns=before + delta,
                         system_cpu_ns=sys_before + sys_delta, online_cpus=cpus)
    shaped = shape_stats(second, first, container_id="c", name="n", host_memory=0,
                         rfc3339=_ns)
    row = stats_row(shaped)
    assert abs(row.cpu_percent - delta / sys_delta * cpus * 100.0) < 1e-6 * max(
        1.0, row.cpu_percent)


def test_shape_has_dockers_keys_and_caps_an_unlimited_limit() -> None:
    sample = StatsSample(read_ns=5, memory_usage=3000, memory_limit=(1 << 63) - 4096,
                         memory_stat={"total_inactive_file": 1000}, pids_current=2,
                         networks={"eth0": {"rx_bytes": 7, "tx_bytes": 9}},
                         blkio_bytes=((8, 0, "Read", 11), (8, 0, "Write", 13)))
    shaped = shape_stats(sample, None, container_id="abc", name="web",
                         host_memory=8 << 30, rfc3339=_ns)
    for key in ("read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
                "cpu_stats", "precpu_stats", "memory_stats", "name", "id", "networks"):
        assert key in shaped
    assert shaped["name"] == "/web" and shaped["memory_stats"]["limit"] == 8 << 30
    row = stats_row(shaped)
    assert (row.memory_used, row.net_rx, row.net_tx, row.block_read, row.block_write,
            row.pids) == (2000, 7, 9, 11, 13, 2)
    assert row.cpu_percent == 0.0  # one reading: no CPU percentage yet
