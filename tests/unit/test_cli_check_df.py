"""The CLI's words for issue 15: `system check` prints outcomes still waiting to be recorded
and "could not check …" findings (never "no damage found" then, exit 1), `--restore` asks
the API to restore, and `system df` shows the unattributed row only when there is some.

I/O: none (a recording fake of the API client).
"""

from __future__ import annotations

from typing import Any

from tests.unit.test_cli_fakeclient import FakeClient, cli

WAITING = ("1 outcome waiting to be recorded: ContainerExited for " + "c" * 64
           + ", retrying: database or disk is full")


def _report(**kw: Any) -> dict[str, Any]:
    return {"Findings": [], "NeedsCleanup": [], "Waiting": [], "Integrity": "ok",
            "Repaired": False, **kw}


def test_check_prints_waiting_outcomes_instead_of_no_damage() -> None:
    fake = FakeClient({("POST", "/shipslog/system/check"): _report(Waiting=[WAITING])})
    r = cli(fake, "system", "check")
    assert WAITING in r.out and "no damage found" not in r.out


def test_check_prints_could_not_check_and_fails_even_with_repair() -> None:
    unsure = {"Kind": "layer", "Subject": "sha256:" + "a" * 64, "Action": "", "Path": "/x",
              "Uncertain": True,
              "Problem": "could not check layer sha256:" + "a" * 64 + ": no space left on device"}
    fake = FakeClient({("POST", "/shipslog/system/check"): _report(Findings=[unsure])})
    r = cli(fake, "system", "check", "--repair")
    assert r.out == unsure["Problem"] + "\n"
    assert r.code == 1 and "nothing was moved on uncertain evidence" in r.err
    assert fake.calls[-1].params == {"repair": 1}


def test_restore_asks_the_api_and_says_what_came_back() -> None:
    fake = FakeClient({("POST", "/shipslog/system/check"): _report(Restored=[
        {"Kind": "layer", "Subject": "sha256:ab", "Path": "/r/layers/ab",
         "Quarantined": "/r/quarantine/layer/ab.1234", "Problem": ""}])})
    r = cli(fake, "system", "check", "--restore")
    assert fake.calls[-1].params == {"restore": 1}
    assert r.out.splitlines()[0] == "layer sha256:ab: restored to /r/layers/ab"


def test_df_shows_unattributed_bytes_only_when_there_are_some() -> None:
    df = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
    fake = FakeClient({("GET", "/system/df"): {**df, "Unattributed": {
        "Size": 205_000_000, "Items": [{"Path": "/r/ingest/x", "Size": 205_000_000}]}}})
    out = cli(fake, "system", "df").out.splitlines()
    assert out[-1].split()[:3] == ["Unattributed", "1", "0"] and "205MB" in out[-1]
    fake = FakeClient({("GET", "/system/df"): {**df, "Unattributed": {"Size": 0,
                                                                       "Items": []}}})
    assert "Unattributed" not in cli(fake, "system", "df").out
