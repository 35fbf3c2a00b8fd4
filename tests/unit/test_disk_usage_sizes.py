"""The pure and filesystem parts of `system df`: tree sizes (no symlink followed, a
hard-linked inode counted once) and Docker's summary arithmetic."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.cli.diskusage import summary_rows
from engine.drivers.host.diskusage import tree_size


def test_tree_size_counts_files_once_and_never_follows_links(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 1000)
    (tmp_path / "d" / "e" / "b").write_bytes(b"y" * 24)
    os.link(tmp_path / "d" / "a", tmp_path / "d" / "a2")  # same inode: once
    outside = tmp_path / "outside"
    outside.write_bytes(b"z" * 5000)
    (tmp_path / "d" / "l").symlink_to(outside)  # the link's own size, not the target's
    (tmp_path / "d" / "ldir").symlink_to(tmp_path)  # a loop if it were followed
    link_sizes = len(str(outside)) + len(str(tmp_path))
    assert tree_size(tmp_path / "d") == 1000 + 24 + link_sizes
    assert tree_size(tmp_path / "missing") == 0
    assert tree_size(outside) == 5000


def _df(images: list[tuple[int, int, int]], containers: list[tuple[str, int]],
        volumes: list[tuple[int, int]], layers: int) -> dict[str, object]:
    return {
        "LayersSize": layers,
        "Images": [{"Id": f"sha256:{i}", "Size": s, "SharedSize": sh, "Containers": n}
                   for i, (s, sh, n) in enumerate(images)],
        "Containers": [{"Id": str(i), "State": st_, "SizeRw": rw}
                       for i, (st_, rw) in enumerate(containers)],
        "Volumes": [{"Name": str(i), "UsageData": {"Size": s, "RefCount": r}}
                    for i, (s, r) in enumerate(volumes)],
    }


def test_summary_rows_follow_dockers_arithmetic() -> None:
    df = _df(images=[(1000, 400, 2), (700, 400, 0)],
             containers=[("running", 10), ("exited", 2000)],
             volumes=[(5000, 1), (3000, 0)], layers=1300)
    rows = {r["Type"]: r for r in summary_rows(df)}
    assert rows["Images"] == {"Type": "Images", "TotalCount": 2, "Active": 1,
                              "Size": "1.3kB", "Reclaimable": "700B (53%)"}
    assert rows["Containers"]["Active"] == 1 and rows["Containers"]["Size"] == "2.01kB"
    assert rows["Containers"]["Reclaimable"] == "2kB (99%)"
    assert rows["Local Volumes"]["Active"] == 1
    assert rows["Local Volumes"]["Reclaimable"] == "3kB (37%)"
    empty = {r["Type"]: r for r in summary_rows({})}
    assert empty["Images"]["Reclaimable"] == "0B" and empty["Build Cache"]["Size"] == "0B"


@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 3)),
                max_size=6),
       st.lists(st.tuples(st.sampled_from(["running", "exited", "created", "paused"]),
                          st.integers(0, 10**9)), max_size=6))
def test_reclaimable_never_exceeds_the_total(images: list[tuple[int, int, int]],
                                             containers: list[tuple[str, int]]) -> None:
    images = [(s, min(sh, s), n) for s, sh, n in images]
    layers = sum(s for s, _, _ in images)
    rows = {r["Type"]: r for r in summary_rows(_df(images, containers, [], layers))}
    for kind in ("Images", "Containers"):
        text = rows[kind]["Reclaimable"]
        if "(" in text:
            assert 0 <= int(text.split("(")[1].rstrip("%)")) <= 100
