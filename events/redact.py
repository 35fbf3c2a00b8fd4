"""Keeping secrets out of the log: environment values become keyed digests, and so do the
secret-bearing values of a caller's command line (`redact_argv`).

I/O: none (pure). The HMAC key is passed in (`engine/drivers/secrets/store.py` keeps it outside the
database). The log then says "DB_PASSWORD was set" and, to someone holding the key, whether
two containers had the same value, but never the value itself (RELIABILITY S-08; the
CVE-2019-13509 / CVE-2021-21334 family: secrets leaking into logs and inspect output).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from urllib.parse import quote, unquote

from events.values import EnvEntry

__all__ = ["REDACTED", "RedactError", "check_env", "keyed_digest", "redact_argv", "redact_env",
           "redact_target", "scrub_text"]

# Real NUL, LF and CR bytes (not the two characters `\n`) smuggle extra lines into the files
# generated from env and user fields (/etc/passwd, /etc/hosts): CVE-2022-4318, RELIABILITY I-03.
# Values may hold LF and CR as Docker's do (PEM keys passed with -e): only HOME's value goes
# into a generated file. NUL is refused everywhere: execve cannot carry it.
_FORBIDDEN = {"\x00": "NUL", "\n": "LF", "\r": "CR"}
_FILED_VALUES = ("HOME",)


class RedactError(ValueError):
    """An environment entry the engine refuses to record or pass on."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def keyed_digest(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of `value` under `key`."""
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def check_env(entry: str) -> tuple[str, str | None]:
    """Split `K=V` (or a bare `K`); refuse NUL bytes, CR/LF in keys and in HOME's value,
    and empty keys."""
    name, sep, value = entry.partition("=")
    for char, label in _FORBIDDEN.items():
        in_value = char in value and (char == "\x00" or name in _FILED_VALUES)
        if char in name or in_value:
            where = "key" if char in name else "value"
            raise RedactError(
                f"environment variable {name[:64]!r} has a {label} byte in its {where}",
                "remove control characters from environment variables",
            )
    if not name:
        raise RedactError(f"environment entry {entry[:64]!r} has an empty name", "use KEY=VALUE")
    return name, (value if sep else None)


def redact_env(key: bytes, env: Iterable[str]) -> tuple[EnvEntry, ...]:
    """`["K=V", "K2"]` -> `(EnvEntry("K", hmac(V)), EnvEntry("K2", ""))`, input order kept."""
    entries = []
    for item in env:
        name, value = check_env(item)
        entries.append(EnvEntry(name, "" if value is None else keyed_digest(key, value)))
    return tuple(entries)


# --------------------------------------------------------------------------- command lines
#
# The actor of every event carries the API caller's argv (engine/api/server/peercred.py), and
# callers
# put secrets there: `docker run -e DB_PASSWORD=…`, `docker login -p …`, `--build-arg`, a
# proxy or registry URL with `user:pass@`, a mount's `volume-opt=o=…,password=…`. The log is
# append-only and hash-chained, so a value that reaches it can never be taken out (issue 15).
# `redact_argv` is the one rule for what a recorded command line may keep; it runs where the
# actor is built, before anything is appended, and again when old events are rendered.

REDACTED = "<redacted>"  # a value hidden without the key (old events, rendered)
USERINFO_MASK = "xxxxx:xxxxx"  # moby's spelling for a URL's credentials (TestDaemonProxy)

# Flags whose value is `KEY=VALUE` (or a bare KEY, taken from the caller's environment).
_ENV_FLAGS = frozenset({"--env", "--build-arg"})
# Long options whose whole value is a secret. `--password-stdin` and `--*-file` carry none.
_SECRET_OPTION = re.compile(r"--[\w-]*(?:password|passwd|token|credential|api-?key)[\w-]*",
                            re.IGNORECASE)
_NO_VALUE_OPTION = re.compile(r"--[\w-]*-(?:stdin|file)", re.IGNORECASE)
# `name=value` inside option lists (`--mount …,volume-opt=o=username=u,password=…`,
# `--opt o=…`, `--log-opt token=…`): a sensitive name hides its value up to the next comma.
_SECRET_PAIR = re.compile(
    r"(?<![\w.-])([\w.-]*(?:password|passwd|pwd|secret|token|credential|creds|auth|api[_-]?key"
    r"|access[_-]?key|private[_-]?key)[\w.-]*|pass)=([^,]*)",
    re.IGNORECASE)
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "cred", "auth", "key")  # a cheap prefilter
# Credentials in a URL: `scheme://user:pass@host` or `//user:pass@host/share` (up to the last
# @ of the authority, as Go's url.Parse reads it), and a scheme-less `user:pass@host/…` where a
# registry or proxy is named.
_URL_USERINFO = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)([^/?#]*)@")
_BARE_USERINFO = re.compile(r"(^|[=,\s/])([^\s/:@=,]+:[^\s/]*)@")
_MASK = re.compile(r"<redacted>|<hmac:[0-9a-f]{64}>")


def _mask(key: bytes | None, value: str) -> str:
    if not value or _MASK.fullmatch(value):
        return value  # nothing to hide, or hidden already (render-time redaction runs twice)
    return REDACTED if key is None else f"<hmac:{keyed_digest(key, value)}>"


def _mask_env(key: bytes | None, entry: str) -> str:
    name, sep, value = entry.partition("=")
    return name + sep + _mask(key, value) if sep else entry


def scrub_text(key: bytes | None, text: str) -> str:
    """Hide URL credentials and sensitive `name=value` pairs anywhere inside `text`."""
    # The cheap tests first: most tokens have neither `@` nor `=` (a hot path when old
    # events are rendered: `events --all` of a whole log).
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: m.group(1) + USERINFO_MASK + "@", text)
        text = _BARE_USERINFO.sub(lambda m: m.group(1) + USERINFO_MASK + "@", text)
    if "=" in text and any(word in text.lower() for word in _SECRET_WORDS):
        text = _SECRET_PAIR.sub(lambda m: m.group(1) + "=" + _mask(key, m.group(2)), text)
    return text


_Consume = Callable[[str], str] | None


def _read_token(key: bytes | None, tok: str, login: bool) -> tuple[str, _Consume]:
    """(what `tok` may show, how to show the token after it when `tok` is a flag taking one)."""
    if not tok.startswith("-") and "=" not in tok and "@" not in tok:
        return tok, None  # most words of a command line: nothing to look at
    name, eq, value = tok.partition("=")
    if tok.startswith("--"):
        if name in _ENV_FLAGS:
            if eq:
                return name + "=" + _mask_env(key, value), None
            return tok, partial(_mask_env, key)
        if _SECRET_OPTION.fullmatch(name) and not _NO_VALUE_OPTION.fullmatch(name):
            if eq:
                return name + "=" + _mask(key, value), None
            return tok, partial(_mask, key)
        return scrub_text(key, tok), None
    if tok.startswith("-"):
        # A cluster of one-letter flags: the first that takes a value takes the rest of the
        # token, or the next token (pflag and argparse read `-ieK=V` and `-ie K=V` alike).
        # Two take a secret: `-e`, and `-p` after `login` (elsewhere `-p` publishes a port).
        for at, letter in enumerate(tok[1:], start=2):
            hide = _mask_env if letter == "e" else _mask if letter == "p" and login else None
            if hide is not None:
                rest = tok[at:]
                return (tok[:at] + hide(key, rest), None) if rest else (tok, partial(hide, key))
            if not ("a" <= letter.lower() <= "z"):
                break
    return scrub_text(key, tok), None


def redact_argv(argv: Sequence[str], key: bytes | None = None) -> tuple[str, ...]:
    """`argv` with every known secret-bearing value replaced, one output token per input token.

    With `key`, a hidden value becomes `<hmac:HEX>` (the keyed digest env entries get, so the
    key's holder can tell whether two commands passed the same value); without it, `<redacted>`.
    Flags are recognised anywhere, in the container's own command too: better to hide a value
    that was not a secret than to keep one that was.
    """
    login_at = next((i for i, tok in enumerate(argv) if tok == "login"), len(argv))
    out: list[str] = []
    consume: _Consume = None
    for i, tok in enumerate(argv):
        shown, then = _read_token(key, tok, i > login_at)
        if consume is not None:
            # The value of the flag before. One that starts with a dash may have been read
            # as a flag instead (`--env -e K=V`): what follows it is hidden as that flag's
            # value too, and the token shows whichever reading hides something.
            as_value = consume(tok)
            shown = as_value if as_value != tok else shown
            then = then if tok.startswith("-") else None
        out.append(shown)
        consume = then
    return tuple(out)


def redact_target(target: str) -> str:
    """An HTTP request target fit for the daemon's log: the path with URL credentials hidden,
    the query's names without their values (`/build?buildargs=…` carries build args, an image
    reference can carry `user:pass@`; the log keeps no request data, at any level)."""
    path, sep, query = target.partition("?")
    path = _loggable(scrub_text(None, unquote(path)))
    if not sep:
        return path
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return path + "?" + "&".join(_loggable(scrub_text(None, unquote(n))) + "=…" for n in names)


def _loggable(text: str) -> str:
    # Decoded for the scrub, encoded again for the log: a `%0a` must not start a forged line.
    return quote(text, safe="/:@=,;+$!*'()~<>-._")
