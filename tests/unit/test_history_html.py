"""`history NAME --html FILE` (issue 18), pure part: the page's bars, bands and marks are the
events' runs, health verdicts and operations; nothing is fetched from anywhere; text from the
log stays text. The page in a real browser: tests/integration/test_history_html_browser.py.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from tests.unit.test_history import CID, Log
from tests.unit.test_log_readers import NOBODY, ROOT, FileLog, cli

EVIL = "<script>alert(1)</script>"


def flaky_log(path: Path, stopper: Actor = NOBODY) -> Log:
    """A container that exits 1, restarts by policy twice (the second run OOM killed), is
    renamed, turns unhealthy, and is stopped: five runs' worth of story."""
    from engine.core import containers as cc

    log = FileLog(path)
    log.load_image()
    name = "flaky"
    log.create(CID, name, restart="on-failure")
    op = log.decide(cc.decide_start(log.state, CID, op_id=log.op()), actor=ROOT)
    log.started(CID, op, pid=100, actor=ROOT)
    c = stream_of("container", CID)
    log.append([Pending(stream=c, event=v.ContainerHealthChanged(
        container_id=CID, status="healthy"))], "health-1", SYSTEM_ACTOR, after_ms=300)
    log.exit(CID, 1, ran_ms=1500)
    log.restart_by_policy(CID, 1, pid=101)
    log.exit(CID, 137, ran_ms=900, oom=True)
    log.restart_by_policy(CID, 2, pid=102)
    log.append([Pending(stream=c, event=v.ContainerRenamed(
        container_id=CID, old_name=name, new_name="steady"))], log.op(), NOBODY)
    log.append([Pending(stream=c, event=v.ContainerHealthChanged(
        container_id=CID, status="unhealthy", failing_streak=3, exit_code=1))],
        "health-2", SYSTEM_ACTOR, after_ms=700)
    op = log.decide(cc.decide_stop(log.state, CID, op_id=log.op(), timeout=3, signal=None),
                    actor=stopper)
    log.append([Pending(stream=c, event=v.ContainerExited(container_id=CID, exit_code=143)),
                Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
               op, SYSTEM_ACTOR, after_ms=400)
    log.store.close()
    return log


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


@pytest.fixture
def page(tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    flaky_log(tmp_path / "events.db")
    out = tmp_path / "flaky.html"
    _, err = cli(tmp_path, "history", CID[:12], "--html", str(out))
    assert "3 runs" in err
    tl = json.loads(cli(tmp_path, "history", CID[:12], "--format", "json")[0])
    return out, tl


def test_bars_bands_and_marks_are_the_events(page: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, tl = page
    p = Elements()
    p.feed(out.read_text())
    runs = [a for t, a in p.found if t == "rect" and "run" in (a.get("class") or "").split()]
    assert [(int(a["data-start"]), int(a["data-end"]), a["data-exit"]) for a in runs] == [
        (r["started_at"], r["ended_at"], str(r["exit_code"])) for r in tl["runs"]]
    assert [a["class"] for a in runs] == ["run failed", "run oom", "run failed"]
    # Each bar starts where its run started and is as long as the run, on one scale.
    xs = [(float(a["x"]), float(a["width"])) for a in runs]
    assert xs == sorted(xs) and all(w > 0 for _, w in xs)
    spans = [r["ended_at"] - r["started_at"] for r in tl["runs"]]
    ratios = [w / s for (_, w), s in zip(xs, spans, strict=True)]
    assert max(ratios) - min(ratios) < 0.01 * max(ratios)
    health = [a["class"] for t, a in p.found if t == "rect" and "health" in (a.get("class") or "")]
    assert health == ["health healthy", "health unhealthy"]
    ops = [a["data-op"] for t, a in p.found if t == "circle"]
    assert ops == [o["op_id"] for o in tl["ops"]]
    assert "renamed" in out.read_text() or "name: flaky → steady" in out.read_text()


def test_the_page_fetches_nothing(page: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, _ = page
    text = out.read_text()
    p = Elements()
    p.feed(text)
    for tag, attrs in p.found:
        assert not {"src", "href"} & set(attrs), (tag, attrs)
    assert "url(" not in text and "@import" not in text and "fetch(" not in text
    assert "default-src 'none'" in text  # and the browser is told so


def test_text_from_the_log_stays_text(tmp_path: Path) -> None:
    """A caller's command line is whatever they typed: it reaches the page as text."""
    flaky_log(tmp_path / "events.db", stopper=Actor(uid=0, gid=0, pid=9, via="api",
                                                   command=("sh", "-c", EVIL)))
    out = tmp_path / "evil.html"
    cli(tmp_path, "history", CID[:12], "--html", str(out))
    text = out.read_text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    p = Elements()
    p.feed(text)
    assert sum(1 for t, _ in p.found if t == "script") == 2  # our data block and our code


def test_several_objects_share_one_time_scale(tmp_path: Path) -> None:
    from tests.unit.test_history import OTHER
    from tests.unit.test_log_readers import FileLog as Log2

    log = Log2(tmp_path / "events.db")
    log.load_image()
    log.create(CID, "web")
    log.create(OTHER, "db")
    log.start(CID, pid=100)
    log.start(OTHER, pid=200)
    log.exit(OTHER, 1, ran_ms=500)
    log.exit(CID, 0, ran_ms=300)  # none left running: the page's end is the log's, not now
    log.store.close()
    out = tmp_path / "two.html"
    _, err = cli(tmp_path, "history", "web", "db", "--html", str(out))
    assert "container web (1 runs" in err and "container db (1 runs" in err
    p = Elements()
    p.feed(out.read_text())
    svgs = [a for t, a in p.found if t == "svg"]
    assert [a["data-index"] for a in svgs] == ["0", "1"]
    runs = [a for t, a in p.found if t == "rect" and "run" in (a.get("class") or "")]
    web, db = (json.loads(cli(tmp_path, "history", n, "--format", "json")[0])["runs"][0]
               for n in ("web", "db"))
    assert [int(a["data-start"]) for a in runs] == [web["started_at"], db["started_at"]]
    # One scale: x grows with the start time across both timelines.
    assert float(runs[0]["x"]) < float(runs[1]["x"])
    _, err = cli(tmp_path, "history", "web", "db", code=125)
    assert "several objects, --since and --until only with --html" in err


def test_a_time_range_is_drawn_across_the_whole_width(page: tuple[Path, dict],  # type: ignore[type-arg]
                                                      tmp_path: Path) -> None:
    _, tl = page
    second = tl["runs"][1]
    lo, hi = second["started_at"], second["ended_at"]
    out = tmp_path / "range.html"
    cli(tmp_path, "history", CID[:12], "--html", str(out), "--since",
        f"{lo // 10**9}.{lo % 10**9:09d}", "--until", f"{hi // 10**9}.{hi % 10**9:09d}")
    p = Elements()
    p.feed(out.read_text())
    runs = {a["data-run"]: a for t, a in p.found if t == "rect" and "run" in (a.get("class") or "")}
    # The second run fills the range; the first ends at its left edge, the third is past it.
    assert (float(runs["2"]["x"]), float(runs["2"]["width"])) == (110.0, 970.0)
    assert float(runs["1"]["x"]) == 110.0 and float(runs["1"]["width"]) <= 2.0
    assert float(runs["3"]["x"]) == 1080.0
