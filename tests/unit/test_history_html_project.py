"""`history project:NAME --html FILE` and `compose history NAME --html FILE` (issue 18), pure
part: a two-service Compose project's page, built through the real CLI from a file log written
the way the daemon writes it, has one row per container the project ever had (the one a
recreate removed too), labelled by service, whose bars are that container's runs, and one
mark per Compose command with its actor. The page in a real browser:
tests/integration/test_history_html_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core import containers as cc
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from events.values import ContainerConfig
from projections import compose as pc
from tests.unit.test_history_html import EVIL, Elements
from tests.unit.test_log_readers import FileLog, cli

DB, WEB, WEB2, OTHER = ("a1" * 32), ("b2" * 32), ("c3" * 32), ("d4" * 32)
UP = Actor(uid=0, gid=0, pid=501, command=("docker-compose", "up", "-d"), via="api")
RECREATE = Actor(uid=0, gid=0, pid=502, command=("docker-compose", "up", "-d"), via="api")
DOWN = Actor(uid=65534, gid=65534, pid=503, command=("docker-compose", "down"), via="api")


class ProjectLog(FileLog):
    """Compose's API calls, as the log records them: labelled creates, starts, removes."""

    def compose_create(self, cid: str, service: str, actor: Actor, config_hash: str = "h1",
                       project: str = "shop", name: str = "") -> None:
        labels = {pc.PROJECT: project, pc.SERVICE: service, pc.NUMBER: "1",
                  pc.CONFIG_HASH: config_hash}
        config = ContainerConfig(image="busybox", image_id="", cmd=("sh",), labels=labels)
        create = cc.CreateContainer(name=name or f"{project}-{service}-1", config=config)
        op = self.decide(cc.decide_create(self.state, create, op_id=self.op(),
                                          container_id=cid), actor=actor)
        self.append([Pending(stream=stream_of("container", cid),
                             event=v.ContainerCreated(container_id=cid)),
                     Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
                    op, actor, after_ms=5)

    def compose_start(self, cid: str, pid: int, actor: Actor) -> None:
        op = self.decide(cc.decide_start(self.state, cid, op_id=self.op()), actor=actor)
        self.started(cid, op, pid, actor=actor)

    def compose_remove(self, cid: str, actor: Actor) -> None:
        name = self.state.containers[cid].name
        op = self.decide(cc.decide_remove(self.state, cid, op_id=self.op(), force=True,
                                          remove_volumes=False), actor=actor)
        self.append([Pending(stream=stream_of("container", cid),
                             event=v.ContainerRemoved(container_id=cid)),
                     Pending(stream=stream_of("name", name),
                             event=v.NameReleased(name=name, container_id=cid)),
                     Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
                    op, actor)


def shop_log(path: Path) -> None:
    """`up` (db, then web), db healthy, web exits 1, a recreate of web (its config hash
    changed), web's new container exits 0, `down` by another user; and an unrelated
    container that must not join the page."""
    log = ProjectLog(path)
    log.load_image()
    log.compose_create(DB, "db", UP)
    log.compose_start(DB, 100, UP)
    log.compose_create(WEB, "web", UP)
    log.compose_start(WEB, 101, UP)
    log.append([Pending(stream=stream_of("container", DB), event=v.ContainerHealthChanged(
        container_id=DB, status="healthy"))], "health-1", SYSTEM_ACTOR, after_ms=300)
    log.create(OTHER, "loner")
    log.start(OTHER, pid=300)
    log.exit(WEB, 1, ran_ms=800)
    log.compose_remove(WEB, RECREATE)
    log.compose_create(WEB2, "web", RECREATE, config_hash="h2")
    log.compose_start(WEB2, 102, RECREATE)
    log.exit(WEB2, 0, ran_ms=600)
    log.exit(DB, 143, ran_ms=200)
    log.compose_remove(WEB2, DOWN)
    log.compose_remove(DB, DOWN)
    log.store.close()


def test_a_project_page_has_a_row_per_container_whose_bars_are_its_runs(
        tmp_path: Path) -> None:
    shop_log(tmp_path / "events.db")
    out = tmp_path / "shop.html"
    _, err = cli(tmp_path, "history", "project:shop", "--html", str(out))
    assert "Compose project shop (3 containers, 3 runs, 3 Compose commands)" in err
    p = Elements()
    p.feed(out.read_text())
    rows = [a for t, a in p.found if t == "g" and a.get("class") == "member"]
    # Every container the project had, removed ones included, by service: none other.
    assert [(a["data-service"], a["data-id"]) for a in rows] == [
        ("db", DB), ("web", WEB), ("web", WEB2)]
    bars = [(int(a["data-start"]), int(a["data-end"]), a["data-exit"]) for t, a in p.found
            if t == "rect" and "run" in (a.get("class") or "").split()]
    want = []
    for cid in (DB, WEB, WEB2):
        tl = json.loads(cli(tmp_path, "history", cid, "--format", "json")[0])
        want += [(r["started_at"], r["ended_at"], str(r["exit_code"])) for r in tl["runs"]]
    assert bars == want and len(want) == 3
    # Bars sit on their container's row: db's row first, the recreated web's last.
    ys = [float(a["y"]) for t, a in p.found if t == "rect" and "run" in (a.get("class") or "")]
    assert ys == sorted(ys) and len(set(ys)) == 3
    # The click panel tells the recreated web from its predecessor, which had its name.
    data = json.loads(p.scripts[0])
    assert [o["name"] for o in data["objects"]] == [
        "shop-db-1", f"shop-web-1 ({WEB[:12]})", f"shop-web-1 ({WEB2[:12]})"]
    assert [o["removed"] for o in data["objects"]] == [True, True, True]
    marks = [a for t, a in p.found if t == "g" and (a.get("class") or "").startswith("entry")]
    assert [a["data-kind"] for a in marks] == ["up", "recreate", "down"]
    text = out.read_text()
    # The marks carry who ran each command (the host's passwd names uid 65534 nobody).
    assert "down at " in text and "nobody (uid 65534, pid 503) running `docker-compose " \
        "down`" in text
    assert "web recreated bbbbbbbbbbbb" not in text and \
        f"web recreated {WEB[:12]} → {WEB2[:12]} (config hash changed)" in text
    assert "loner" not in text and OTHER[:12] not in text


def test_compose_history_html_draws_the_same_page(tmp_path: Path) -> None:
    shop_log(tmp_path / "events.db")
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    cli(tmp_path, "history", "project:shop", "--html", str(a))
    cli(tmp_path, "compose", "history", "shop", "--html", str(b))
    assert a.read_text() == b.read_text()


def test_a_project_is_one_clear_error_when_it_cannot_be_drawn(tmp_path: Path) -> None:
    shop_log(tmp_path / "events.db")
    _, err = cli(tmp_path, "history", "project:nope", "--html", str(tmp_path / "x.html"),
                 code=125)
    assert "no such Compose project: nope" in err and "Traceback" not in err
    assert "--filter project=NAME" in err
    assert not (tmp_path / "x.html").exists()
    _, err = cli(tmp_path, "history", "project:shop", code=125)
    assert "only with --html FILE" in err and "compose history shop" in err
    _, err = cli(tmp_path, "history", "project:shop", "web", "--html", "y.html", code=125)
    assert "give one project:NAME and no other object" in err


def test_service_names_from_the_log_stay_text(tmp_path: Path) -> None:
    log = ProjectLog(tmp_path / "events.db")
    log.load_image()
    log.compose_create(DB, EVIL, UP, project="evil", name="evil-1")  # a label is any text
    log.store.close()
    out = tmp_path / "evil.html"
    cli(tmp_path, "history", "project:evil", "--html", str(out))
    text = out.read_text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


def test_a_project_page_draws_a_time_range(tmp_path: Path) -> None:
    shop_log(tmp_path / "events.db")
    run = json.loads(cli(tmp_path, "history", WEB2, "--format", "json")[0])["runs"][0]
    lo, hi = run["started_at"], run["ended_at"]
    out = tmp_path / "range.html"
    cli(tmp_path, "history", "project:shop", "--html", str(out), "--since",
        f"{lo // 10**9}.{lo % 10**9:09d}", "--until", f"{hi // 10**9}.{hi % 10**9:09d}")
    p = Elements()
    p.feed(out.read_text())
    bars = {int(a["data-start"]): a for t, a in p.found
            if t == "rect" and "run" in (a.get("class") or "")}
    # The recreated web's run fills the range; its predecessor's ended before it.
    assert (float(bars[lo]["x"]), float(bars[lo]["width"])) == (110.0, 970.0)
    web = json.loads(cli(tmp_path, "history", WEB, "--format", "json")[0])["runs"][0]
    assert float(bars[web["started_at"]]["x"]) == 110.0
    assert float(bars[web["started_at"]]["width"]) <= 2.0
