"""What a recorded command line may keep (issue 15): every way a caller can put a secret on
its command line — `-e K=V` in four spellings, `--build-arg`, `login -p` and `--password`,
`user:pass@` in a registry or proxy URL, mount and volume options naming a password — is
hidden by `redact_argv`, whatever surrounds it, and nothing else changes shape."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from events.redact import REDACTED, keyed_digest, redact_argv, redact_target

KEY = b"k" * 32

# A secret is recognisable in any output: it starts with `CANARY`, and nothing else the
# strategies make has an upper-case C (hex digests, `xxxxx`, fillers are lower case).
_ANY = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0xD7FF), max_size=12)
_URL_SAFE = st.text(alphabet=string.ascii_letters + string.digits + "-_.~!$&'()*+;", max_size=12)
# Keys of env entries: upper case, but never forming CANARY (no C).
_ENV_KEY = st.text(alphabet="ABDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=10)
# Harmless tokens around the secrets: no flag that takes a value (it would swallow the next
# token, which is a different command line), no upper-case C.
_FILLER = st.one_of(
    st.sampled_from(["shipslog", "docker", "/usr/bin/python3", "-m", "engine.cli", "run",
                     "exec", "create", "build", "pull", "-d", "--rm", "-i", "-t", "-it",
                     "busybox", "sh", "-c", "echo hi", "--env-file", "env.list",
                     "--password-stdin", "volume", "--", ".", "registry:5000/img",
                     "busybox@sha256:" + "a" * 64, "localhost:5000/x:1"]),
    st.text(alphabet=string.ascii_lowercase + string.digits + "-=:/.,@ ", max_size=20),
)


def _forms(secret: str, url_secret: str, key: str) -> list[list[str]]:
    return [
        ["-e", f"{key}={secret}"], [f"-e{key}={secret}"], ["--env", f"{key}={secret}"],
        [f"--env={key}={secret}"], ["-ie", f"{key}={secret}"], [f"-ite{key}={secret}"],
        ["--build-arg", f"{key}={secret}"], [f"--build-arg={key}={secret}"],
        ["-e", f"HTTP_PROXY=http://u:{secret}@proxy:3128"],
        ["login", "-u", "me", "-p", secret], ["login", f"-p{secret}"],
        ["--password", secret], [f"--password={secret}"],
        ["login", f"me:{url_secret}@registry.example:5000"],
        ["pull", f"me:{url_secret}@registry.example:5000/img:1"],
        [f"http://u:{url_secret}@proxy:3128"], [f"https://{url_secret}@registry.example/v2/"],
        ["--mount", "type=volume,src=v,dst=/d,volume-opt=type=cifs,"
                    f"volume-opt=o=addr=1.2.3.4,username=u,password={url_secret},uid=0"],
        [f"--mount=type=volume,dst=/d,volume-opt=o=pass={url_secret}"],
        ["volume", "create", "--opt", f"o=username=u,password={url_secret}"],
        ["-o", f"device=//me:{url_secret}@host/share"], ["--log-opt", f"token={url_secret}"],
    ]


@st.composite
def argv_with_secret(draw: st.DrawFn) -> tuple[list[str], str]:
    secret = "CANARY" + draw(_ANY)
    url_secret = "CANARY" + draw(_URL_SAFE)
    key = draw(_ENV_KEY)
    forms = _forms(secret, url_secret, key)
    argv: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        argv += draw(st.lists(_FILLER, max_size=3))
        form = forms[draw(st.integers(0, len(forms) - 1))]
        argv += form
    argv += draw(st.lists(_FILLER, max_size=3))
    return argv, "CANARY"


@settings(max_examples=400)
@given(argv_with_secret(), st.sampled_from([KEY, None]))
def test_no_argv_yields_its_secret(case: tuple[list[str], str], key: bytes | None) -> None:
    argv, marker = case
    out = redact_argv(argv, key)
    assert marker not in "\0".join(out), (argv, out)
    assert len(out) == len(argv)  # one token for one token: positions stay readable
    assert redact_argv(out, key) == out  # render-time redaction of new events changes nothing
    assert redact_argv(out, None) == out


@given(st.lists(_FILLER, max_size=8))
def test_harmless_command_lines_are_kept(argv: list[str]) -> None:
    clean = [a for a in argv if "@" not in a and "=" not in a]
    assert redact_argv(clean, KEY) == tuple(clean)


def test_the_forms_read_as_documented() -> None:
    d = keyed_digest(KEY, "s3cret")
    argv = ["docker", "run", "-e", "DB_PASSWORD=s3cret", "-eA=s3cret", "--env=B=s3cret",
            "-e", "FROM_CALLER", "-p", "8080:80", "--mount",
            "type=volume,dst=/d,volume-opt=o=addr=h,password=s3cret", "busybox"]
    assert redact_argv(argv, KEY) == (
        "docker", "run", "-e", f"DB_PASSWORD=<hmac:{d}>", f"-eA=<hmac:{d}>",
        f"--env=B=<hmac:{d}>", "-e", "FROM_CALLER", "-p", "8080:80", "--mount",
        f"type=volume,dst=/d,volume-opt=o=addr=h,password=<hmac:{d}>", "busybox")
    assert redact_argv(["docker", "login", "-u", "me", "-p", "s3cret", "reg:5000"]) == (
        "docker", "login", "-u", "me", "-p", REDACTED, "reg:5000")
    # moby's spelling for a proxy URL's credentials (TestDaemonProxy "reload sanitized")
    assert redact_argv(["x", "--registry", "http://u:s3cret@proxy:3128/p"]) == (
        "x", "--registry", "http://xxxxx:xxxxx@proxy:3128/p")
    assert redact_argv(["shipslog", "pull", "me:s3cret@reg:5000/img"]) == (
        "shipslog", "pull", "xxxxx:xxxxx@reg:5000/img")


def test_request_targets_keep_no_values() -> None:
    target = "/v1.43/build?buildargs=%7B%22K%22%3A%22s3cret%22%7D&t=img"
    assert redact_target(target) == "/v1.43/build?buildargs=…&t=…"
    assert "s3cret" not in redact_target("/v1.43/images/me%3As3cret%40reg%2Fimg/json")
    assert redact_target("/v1.43/containers/x%0aforged/json") == \
        "/v1.43/containers/x%0Aforged/json"
    assert redact_target("/v1.43/containers/web/json") == "/v1.43/containers/web/json"


def test_a_command_line_cut_mid_word_drops_the_partial_word(tmp_path: Path) -> None:
    """/proc/PID/cmdline is read up to MAX_CMDLINE bytes: the cut may fall inside a URL's
    credentials, where the rest no longer looks like a URL."""
    from engine.api.server.peercred import MAX_CMDLINE, read_cmdline

    head = b"docker\0run\0--label\0" + b"x" * (MAX_CMDLINE - 40) + b"\0"
    word = b"http://u:CANARYsecret@proxy:3128"
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cmdline").write_bytes(head + word + b"\0busybox\0")
    argv = read_cmdline(7, proc=str(tmp_path))
    assert argv is not None and argv[:3] == ("docker", "run", "--label")
    assert argv[-1] == "…" and "CANARY" not in "".join(redact_argv(argv, KEY))
    (tmp_path / "7" / "cmdline").write_bytes(b"docker\0ps\0")
    assert read_cmdline(7, proc=str(tmp_path)) == ("docker", "ps")
