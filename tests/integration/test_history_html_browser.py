"""`history NAME --html FILE` in a real browser (issue 18): Debian's chromium, headless, loads
the page from a file with the network off, runs its script with no console error, and the DOM
it ends with has one bar per run of the log; a moment linked as `#at=NS` shows what `ps --at`
showed for the container then. A screenshot is kept at /tmp/shipslog-history-timeline.png.

I/O: runs chromium (a subprocess we start and wait for) on a page and a fresh profile under
the test's tmp dir.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_history import CID
from tests.unit.test_history_html import flaky_log
from tests.unit.test_log_readers import cli

CHROMIUM = shutil.which("chromium")
SCREENSHOT = Path("/tmp/shipslog-history-timeline.png")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium "
                                 "(tools/setup.sh --test installs it)")]


def chromium(tmp_path: Path, url: str, *what: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--window-size=1180,520", *what, url],
        capture_output=True, text=True, timeout=120, check=False)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
            or "Refused to" in line]


def test_timeline_renders_in_chromium_and_its_bars_are_the_runs(tmp_path: Path) -> None:
    flaky_log(tmp_path / "events.db")
    page = tmp_path / "flaky.html"
    cli(tmp_path, "history", CID[:12], "--html", str(page))
    tl = json.loads(cli(tmp_path, "history", CID[:12], "--format", "json")[0])

    dom = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    # The script ran to its end and counted the bars it found.
    assert f'data-ready="{len(tl["runs"])}"' in dom.stdout
    bars = re.findall(r'<rect class="run (\w+)" data-run="(\d+)" data-start="(\d+)" '
                      r'data-end="(\d+)" data-exit="(-?\d*)"', dom.stdout)
    assert [(int(n), int(s), int(e), int(x)) for _, n, s, e, x in bars] == [
        (r["number"], r["started_at"], r["ended_at"], r["exit_code"]) for r in tl["runs"]]

    # A moment in the second run, one between its OOM kill and the restart, and one after
    # the stop: what `ps --at` said then.
    second, third, last = tl["runs"][1], tl["runs"][2], tl["runs"][-1]
    inside = second["started_at"] + 100_000_000
    between = (second["ended_at"] + third["started_at"]) // 2
    for at, want in ((inside, "Up Less than a second (run 2, pid 101)"),
                     (between, "Exited (137) Less than a second ago, OOM killed"),
                     (last["ended_at"] + 2_000_000_000, "Exited (143) 2 seconds ago")):
        shown = chromium(tmp_path, f"{page.as_uri()}#at={at}", "--dump-dom")
        assert console_errors(shown.stderr) == []
        assert want in shown.stdout, shown.stdout[-1500:]
        assert "shipslog ps -a --at " in shown.stdout

    shot = chromium(tmp_path, f"{page.as_uri()}#at={inside}", f"--screenshot={SCREENSHOT}")
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 10_000, shot.stderr[-2000:]


def test_project_page_renders_in_chromium_with_a_row_per_container(tmp_path: Path) -> None:
    """`history project:shop --html`: the script runs with no console error over the project
    page; its bars are every container's runs (the recreated web's too) and a linked moment
    shows each container's `ps --at` line."""
    from tests.unit.test_history_html_project import DB, WEB, WEB2, shop_log

    shop_log(tmp_path / "events.db")
    page = tmp_path / "shop.html"
    cli(tmp_path, "history", "project:shop", "--html", str(page))
    runs = {cid: json.loads(cli(tmp_path, "history", cid, "--format", "json")[0])["runs"]
            for cid in (DB, WEB, WEB2)}

    dom = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    assert 'data-ready="3"' in dom.stdout
    bars = re.findall(r'<rect class="run \w+" data-run="\d+" data-start="(\d+)"', dom.stdout)
    assert [int(s) for s in bars] == [r["started_at"] for c in (DB, WEB, WEB2)
                                      for r in runs[c]]
    assert dom.stdout.count('class="member"') == 3

    # While web's first container ran, its successor did not exist yet.
    first = runs[WEB][0]
    at = first["started_at"] + 100_000_000
    shown = chromium(tmp_path, f"{page.as_uri()}#at={at}", "--dump-dom")
    assert console_errors(shown.stderr) == []
    for want in (r"shop-db-1 . Up ",
                 rf"shop-web-1 \({WEB[:12]}\) . Up Less than a second \(run 1, pid 101\)",
                 rf"shop-web-1 \({WEB2[:12]}\) . did not exist yet"):
        assert re.search(want, shown.stdout), shown.stdout[-1500:]
    shot = chromium(tmp_path, f"{page.as_uri()}#at={at}",
                    "--screenshot=/tmp/shipslog-history-project.png")
    assert shot.returncode == 0, shot.stderr[-2000:]
