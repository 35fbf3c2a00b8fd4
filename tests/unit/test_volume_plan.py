"""The pure mount planner: validation before any disk access, order, anonymous volumes,
OCI entries, tmpfs and local-driver options (RELIABILITY S-03, I-02, I-13)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.core import volume_plan as plan_mod
from engine.core.errors import InvalidArgument
from engine.core.volume_plan import (
    LocalOptions,
    anonymous_needed,
    merge_tmpfs_options,
    parse_local_options,
    plan_mounts,
)
from events.values import ImageConfig, MountSpec

A1 = "a" * 64
A2 = "b" * 64


def vol(target: str, source: str = "", **kw: object) -> MountSpec:
    return MountSpec(type="volume", target=target, source=source, **kw)  # type: ignore[arg-type]


def bind(source: str, target: str, **kw: object) -> MountSpec:
    return MountSpec(type="bind", target=target, source=source, **kw)  # type: ignore[arg-type]


def tmpfs(target: str, **kw: object) -> MountSpec:
    return MountSpec(type="tmpfs", target=target, **kw)  # type: ignore[arg-type]


def test_planner_is_pure() -> None:
    tree = ast.parse(Path(plan_mod.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"os", "subprocess", "trio", "socket", "sqlite3", "shutil", "ctypes"}


def test_named_bind_tmpfs_in_parent_first_order() -> None:
    p = plan_mounts([tmpfs("/data/cache", tmpfs_size=1 << 20),
                     bind("/srv/x", "/data/x", read_only=True), vol("/data", "db")],
                    known_volumes=())
    assert [m.target for m in p.mounts] == ["/data", "/data/cache", "/data/x"]
    assert p.create == (plan_mod.VolumeToCreate(name="db", anonymous=False),)
    assert p.volumes == ("db",)
    v, t, b = p.mounts
    assert v.seed and v.oci("/var/lib/x/_data") == {
        "destination": "/data", "type": "bind", "source": "/var/lib/x/_data",
        "options": ["rbind", "rprivate"]}
    assert t.oci() == {"destination": "/data/cache", "type": "tmpfs", "source": "tmpfs",
                       "options": ["noexec", "nosuid", "nodev", "size=1048576"]}
    assert b.oci("/run/stage/2", "/resolved/x") == {
        "destination": "/resolved/x", "type": "bind", "source": "/run/stage/2",
        "options": ["rbind", "rprivate", "ro"]}
    with pytest.raises(ValueError):
        b.oci()  # a bind without its staged source is a bug, not a mount of ""


def test_existing_named_volume_is_not_created_again() -> None:
    p = plan_mounts([vol("/a", "shared"), vol("/b", "shared")], known_volumes={"shared"})
    assert p.create == () and p.volumes == ("shared",)


def test_anonymous_volumes_take_the_ids_given_and_image_volumes_join() -> None:
    image = ImageConfig(volumes=("/var/lib/db", "/data/"))
    mounts = [vol("/data"), bind("/srv", "/srv")]
    assert anonymous_needed(mounts, image) == 3  # an upper bound: /data is asked twice
    p = plan_mounts(mounts, image, anonymous_ids=[A1, A2, "c" * 64])
    by_target = {m.target: m for m in p.mounts}
    assert by_target["/data"].source == A1 and by_target["/var/lib/db"].source == A2
    assert {c.name for c in p.create} == {A1, A2} and all(c.anonymous for c in p.create)
    # The stored specs carry the names, so the next start re-plans to the same volumes.
    again = plan_mounts(p.specs, image, known_volumes={A1, A2})
    assert [(m.target, m.source) for m in again.mounts] == [
        (m.target, m.source) for m in p.mounts]
    assert again.create == ()
    # ... or the caller says which anonymous volume belongs where.
    assigned = plan_mounts(mounts, image, known_volumes={A1, A2},
                           assigned={"/data": A1, "/var/lib/db": A2})
    assert {m.target: m.source for m in assigned.mounts}["/var/lib/db"] == A2


def test_anonymous_ids_must_be_64_hex_and_enough() -> None:
    with pytest.raises(ValueError):
        plan_mounts([vol("/data")], anonymous_ids=["../../etc"])
    with pytest.raises(ValueError):
        plan_mounts([vol("/data")], anonymous_ids=[])


def test_image_volume_gives_way_to_the_users_mount() -> None:
    p = plan_mounts([bind("/srv/data", "/data")], ImageConfig(volumes=("/data",)))
    assert [(m.kind, m.target) for m in p.mounts] == [("bind", "/data")]
    assert p.create == ()


def test_duplicate_targets_are_refused_after_cleaning() -> None:
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /data"):
        plan_mounts([vol("/data", "a1"), bind("/srv", "/data//")])
    with pytest.raises(InvalidArgument, match="Duplicate mount point"):
        plan_mounts([tmpfs("/x"), tmpfs("/./x")])


@pytest.mark.parametrize("source", ["../x", ".", "a/", "./data", "data/../..", "~/x", "x/y"])
def test_relative_bind_sources_are_refused(source: str) -> None:
    with pytest.raises(InvalidArgument, match="absolute") as exc:
        plan_mounts([bind(source, "/mnt")])
    assert "S-03" in exc.value.hint


@pytest.mark.parametrize("source", ["/srv/../etc", "/..", "/a/b/.."])
def test_dotdot_in_bind_sources_is_refused(source: str) -> None:
    with pytest.raises(InvalidArgument, match=r"'\.\.'"):
        plan_mounts([bind(source, "/mnt")])


BAD_NAMES = ["../x", ".", "..", "a/", "a.", "x" * 10_000, "a\x00b", "a\nb", "a\rb", "/abs", "-x",
             "é", "a b"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
def test_traversal_volume_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        plan_mounts([vol("/data", name)])
    assert len(str(exc.value)) < 200  # a 10 kB name is not echoed back whole


@pytest.mark.parametrize("target", ["relative", "", "/", "//", "/a/../b", "/../../etc",
                                    "/a\x00b", "/a\nb", "/a\rb", "/" + "x" * 5000])
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidArgument):
        plan_mounts([tmpfs(target)])
    with pytest.raises(InvalidArgument):
        plan_mounts([bind("/srv", target)])


def test_hostile_image_volume_is_refused() -> None:  # RELIABILITY I-13
    with pytest.raises(InvalidArgument, match="image VOLUME"):
        plan_mounts([], ImageConfig(volumes=("/../../etc",)), anonymous_ids=[A1])


def test_harmless_spellings_are_cleaned() -> None:
    p = plan_mounts([tmpfs("//run//x/./"), bind("//srv//a/", "/b/")])
    assert [(m.target, m.source) for m in p.mounts] == [("/b", "/srv/a"), ("/run/x", "")]


def test_other_bad_requests() -> None:
    with pytest.raises(InvalidArgument, match="mount type"):
        plan_mounts([MountSpec(type="npipe", target="/x")])
    with pytest.raises(InvalidArgument, match="propagation"):
        plan_mounts([vol("/x", "v1", propagation="rshared")])
    with pytest.raises(InvalidArgument, match="propagation"):
        plan_mounts([bind("/srv", "/x", propagation="weird")])
    with pytest.raises(InvalidArgument, match="needs a source"):
        plan_mounts([bind("", "/x")])
    with pytest.raises(InvalidArgument, match="no source"):
        plan_mounts([MountSpec(type="tmpfs", target="/x", source="/etc")])
    with pytest.raises(InvalidArgument, match="negative"):
        plan_mounts([tmpfs("/x", tmpfs_size=-1)])
    with pytest.raises(InvalidArgument, match="unknown option"):
        plan_mounts([vol("/x", "v1", options=("exec",))])


def test_nocopy_turns_seeding_off_and_propagation_sets_the_root() -> None:
    p = plan_mounts([vol("/x", "v1", options=("nocopy",)),
                     bind("/srv", "/y", propagation="rshared")])
    assert not p.mounts[0].seed
    assert p.rootfs_propagation == "shared"
    assert plan_mounts([bind("/srv", "/y", propagation="slave")]).rootfs_propagation == "rslave"
    assert plan_mounts([bind("/srv", "/y")]).rootfs_propagation == ""
    assert plan_mounts([bind("/srv", "/y", propagation="rslave")]).mounts[0].oci("/s")[
        "options"] == ["rbind", "rslave"]


def test_tmpfs_options_merge_like_moby() -> None:
    p = plan_mounts([tmpfs("/t", options=("exec", "mode=1777", "uid=1000"), tmpfs_size=65536,
                           read_only=True)])
    assert p.mounts[0].options == ("nosuid", "nodev", "exec", "mode=1777", "uid=1000",
                                   "size=65536", "ro")
    assert merge_tmpfs_options(["size=1k", "noexec", "size=2m", "exec"]) == ("size=2m", "exec")


@pytest.mark.parametrize("opt", ["size=1k,uid=0", "size=abc", "mode=999", "bogus", "uid=-1",
                                 "mode=0755\n", "context=x", "=1"])
def test_bad_tmpfs_options_are_refused(opt: str) -> None:
    with pytest.raises(InvalidArgument):
        plan_mounts([tmpfs("/t", options=(opt,))])


def test_local_driver_options() -> None:
    assert parse_local_options({}) == LocalOptions()
    assert parse_local_options({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}) \
        == LocalOptions(kind="tmpfs", device="tmpfs", options=("size=1m", "uid=1000"))
    b = parse_local_options({"type": "none", "o": "bind,ro", "device": "/srv/data/"})
    assert (b.kind, b.device, b.options) == ("bind", "/srv/data", ("ro",))


@pytest.mark.parametrize("opts,match", [
    ({"size": "1g"}, "invalid option key"),
    ({"type": "tmpfs"}, "missing required option"),
    ({"device": "/x"}, "missing required option"),
    ({"o": "bind"}, "missing required option"),
    ({"type": "none", "o": "bind", "device": "relative/dir"}, "absolute"),
    ({"type": "none", "o": "bind", "device": "/srv/../etc"}, r"'\.\.'"),
    ({"type": "none", "o": "bind", "device": "/srv\n"}, "NUL, CR or LF"),
    ({"type": "none", "o": "bind,exec", "device": "/srv"}, "bind volume options"),
    ({"type": "tmpfs", "o": "size=1m,context=x", "device": "tmpfs"}, "tmpfs option"),
    ({"type": "tmpfs", "o": "", "device": "/dev/sda"}, "tmpfs device"),
    ({"type": "ext4", "o": "", "device": "/dev/sda1"}, "not supported"),
])
def test_bad_local_driver_options(opts: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        parse_local_options(opts)
