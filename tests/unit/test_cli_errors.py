"""Every failure is two lines on stderr (`shipslog: …`, `hint: …`) and Docker's exit code;
never a traceback unless --debug; Ctrl-C exits 130 quietly; `--root` plumbing."""

from __future__ import annotations

import io
import pathlib

import pytest

from engine.cli.client import ApiError, DaemonUnreachable
from engine.cli.errors import (
    CliError,
    UsageError,
    from_api,
    report,
    start_exit_code,
    translate,
)
from engine.cli.main import run
from engine.core.errors import Conflict
from tests.unit.test_cli_fakeclient import FakeClient, cli


def two_lines(err: str) -> tuple[str, str]:
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("shipslog: ")
    assert lines[1].startswith("hint: ")
    return lines[0], lines[1]


@pytest.mark.parametrize(("message", "code"), [
    ('exec: "x": executable file not found in $PATH', 127),
    ("open /bin/x: no such file or directory", 127),
    ("exec /bin/x: permission denied", 126),
    ("container init failed", 125),
])
def test_start_error_exit_codes(message: str, code: int) -> None:
    assert start_exit_code(message) == code


def test_api_errors_become_docker_lines_with_hints() -> None:
    err = from_api(404, "No such container: web")
    assert err.message == "Error response from daemon: No such container: web"
    assert err.hint == "list containers with 'shipslog ps -a'"
    assert err.exit_code == 125
    assert "unpause" in from_api(409, "Container web is paused").hint
    assert from_api(500, "boom").hint.startswith("the daemon failed")


def test_a_daemon_error_with_its_own_hint_keeps_it() -> None:
    # The event store's 503 (issue 19) says what to do; the generic 503 hint would mislead.
    err = from_api(503, "the event store is unavailable: PostgreSQL at db:5432 cannot be "
                        "reached (connection refused) (hint: start PostgreSQL)")
    assert err.message == ("Error response from daemon: the event store is unavailable: "
                           "PostgreSQL at db:5432 cannot be reached (connection refused)")
    assert err.hint == "start PostgreSQL"


def test_translate_known_exceptions() -> None:
    assert translate(ApiError(409, "name in use")).exit_code == 125
    unreachable = translate(DaemonUnreachable("cannot connect to the daemon at unix:///x.sock"))
    assert "unix:///x.sock" in unreachable.message and "shipslogd" in unreachable.hint
    conflict = translate(Conflict("already paused", "unpause it"))
    assert (conflict.message, conflict.hint) == ("already paused", "unpause it")
    missing = translate(FileNotFoundError(2, "No such file or directory", "/x/env"))
    assert missing.message == "No such file or directory: /x/env"
    weird = translate(RuntimeError("x"))
    assert weird.message == "unexpected error: RuntimeError: x"
    usage = UsageError("bad", "ps")
    assert translate(usage) is usage


def test_report_flattens_to_one_line_each() -> None:
    stream = io.StringIO()
    report(CliError("two\nlines  here", "do\tthis"), stream)
    assert stream.getvalue() == "shipslog: two lines here\nhint: do this\n"


def test_daemon_unreachable_exit_125_and_names_socket(tmp_path: pathlib.Path) -> None:
    sock = tmp_path / "none.sock"
    out, err = io.StringIO(), io.StringIO()
    code = run(["-H", f"unix://{sock}", "ps"], environ={}, stdout=out, stderr=err)
    assert code == 125
    line, hint = two_lines(err.getvalue())
    assert str(sock) in line
    assert "shipslogd" in hint


def test_host_from_environment(tmp_path: pathlib.Path) -> None:
    sock = tmp_path / "env.sock"
    err = io.StringIO()
    code = run(["ps"], environ={"SHIPSLOG_HOST": f"unix://{sock}"}, stdout=io.StringIO(),
               stderr=err)
    assert code == 125 and str(sock) in err.getvalue()


def test_usage_errors_exit_125_with_help_hint() -> None:
    r = cli(FakeClient(), "ps", "--bogus")
    assert r.code == 125
    assert two_lines(r.err) == ("shipslog: unknown flag: --bogus",
                                "hint: see 'shipslog ps --help'")
    r = cli(FakeClient(), "nosuchverb")
    assert r.code == 125
    assert two_lines(r.err) == ("shipslog: 'nosuchverb' is not a shipslog command",
                                "hint: see 'shipslog --help'")
    r = cli(FakeClient(), "stop")
    assert r.code == 125 and "required" in r.err


def test_engine_error_has_no_traceback_unless_debug() -> None:
    fake = FakeClient({("GET", "/containers/json"): RuntimeError("kaboom")})
    r = cli(fake, "ps")
    assert r.code == 125
    assert "Traceback" not in r.err
    two_lines(r.err)
    r = cli(fake, "--debug", "ps")
    assert "Traceback" in r.err and "kaboom" in r.err
    assert r.err.rstrip().splitlines()[-1].startswith("hint: ")


def test_ctrl_c_exits_130_quietly() -> None:
    fake = FakeClient({("GET", "/containers/json"): KeyboardInterrupt()})
    r = cli(fake, "ps")
    assert (r.code, r.err) == (130, "")


def test_bad_template_is_one_line() -> None:
    fake = FakeClient({("GET", "/containers/json"): [{"Id": "x", "Names": ["/a"]}]})
    r = cli(fake, "ps", "--format", "{{.Names")
    assert r.code == 125
    assert two_lines(r.err)[0] == "shipslog: template: unclosed action"


def test_root_refuses_writes_and_reports_unsupported_reads(tmp_path: pathlib.Path) -> None:
    r = cli(FakeClient(), "--root", str(tmp_path), "run", "busybox")
    assert r.code == 125 and "needs the daemon" in two_lines(r.err)[0]
    r = cli(FakeClient(), "--root", str(tmp_path), "ps")
    assert "no event database" in two_lines(r.err)[0]
    (tmp_path / "events.db").write_bytes(b"")  # a file that is no event log
    fake = FakeClient()
    r = cli(fake, "--root", str(tmp_path), "ps")
    assert r.code == 125 and "events.db" in two_lines(r.err)[0]
    assert fake.calls == []  # the daemon was never asked


def test_management_commands_alias_the_verbs(tmp_path: pathlib.Path) -> None:
    fake = FakeClient({("GET", "/containers/json"): [], ("DELETE", "/images/x"): []})
    assert cli(fake, "container", "ls", "-a").code == 0
    assert fake.calls[-1].params == {"all": True}
    assert cli(fake, "image", "rm", "x").code == 0
    assert fake.calls[-1].path == "/images/x"
    (tmp_path / "events.db").write_bytes(b"")
    before = len(fake.calls)
    r = cli(fake, "--root", str(tmp_path), "container", "ls")  # read from the file, as `ps`
    assert r.code == 125 and "events.db" in two_lines(r.err)[0] and len(fake.calls) == before
    r = cli(fake, "--root", str(tmp_path), "container", "rm", "x")
    assert "'rm' changes state" in r.err


def test_version_flag_and_module_entry() -> None:
    r = cli(FakeClient(), "--version")
    assert r.code == 0 and r.out.startswith("shipslog version ")


def test_a_reader_that_leaves_ends_the_command_quietly() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    fake = FakeClient({("GET", "/containers/json"): []})
    err = io.StringIO()
    code = run(["ps"], environ={}, stdout=Closed(), stderr=err, make_client=lambda: fake)
    assert (code, err.getvalue()) == (141, "")


def test_missing_endpoint_hint() -> None:
    assert "does not serve that endpoint" in from_api(404, "page not found").hint


def test_the_verb_list_matches_the_parser_and_partial_parsers_agree() -> None:
    from engine.cli.main import VERBS, build_parser, verb_hint

    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "verb")
    assert set(sub.choices) == VERBS  # type: ignore[attr-defined]
    argv = ["-H", "unix:///x", "run", "-dit", "--name", "a", "busybox", "sh"]
    assert verb_hint(argv) == "run"
    assert verb_hint(["--debug", "--root", "/r", "container", "ls"]) == "container"
    assert verb_hint(["--version"]) is None
    for line in (argv, ["ps", "-aq"], ["image", "rm", "-f", "x"], ["exec", "-it", "c", "ls"]):
        assert vars(build_parser(verb_hint(line)).parse_args(line)) == vars(
            full.parse_args(line))


def test_each_verb_builds_with_only_its_own_module() -> None:
    # The CLI imports only the module of the verb being run; this table must stay right.
    from engine.cli.main import MODULE_VERBS, VERBS, build_parser

    groups = {"container", "image", "system"}
    assert set().union(*MODULE_VERBS.values()) | groups == set(VERBS)
    for verb in sorted(VERBS):
        parser = build_parser(verb)
        sub = next(a for a in parser._actions if a.dest == "verb")
        assert verb in sub.choices, verb  # type: ignore[attr-defined]
