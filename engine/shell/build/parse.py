"""Parse a Dockerfile with the `dockerfile` package (PyPI), which wraps moby/buildkit's own Go
parser: line continuations, `# escape`/`# syntax` directives, JSON forms and heredocs behave
exactly as under Docker, and we write no parser of our own (DESIGN.md "Builds").

I/O: none (the Dockerfile arrives as text).
"""

from __future__ import annotations

import dockerfile

from engine.core.build import BuildError, Instruction


def _unquote(word: str) -> str:
    """ENV/LABEL values keep their quotes from the parser; Docker's shell lexer drops them."""
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        inner = word[1:-1]
        return inner.replace('\\"', '"') if word[0] == '"' else inner
    return word


def parse_dockerfile(text: str) -> list[Instruction]:
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise BuildError(f"dockerfile parse error: {str(exc).strip()}",
                         hint="check the Dockerfile's syntax") from None
    out = []
    for c in commands:
        cmd = c.cmd.lower()
        value = tuple(c.value)
        if cmd in ("env", "label", "arg"):
            value = tuple(_unquote(w) for w in value)
        if cmd == "run" and c.heredocs and not c.json:
            # `RUN <<EOF … EOF`: the heredoc is the script the shell runs (BuildKit semantics).
            value = tuple(h.content for h in c.heredocs)
        if cmd == "onbuild" and c.sub_cmd:
            value = (c.sub_cmd, *value)
        out.append(Instruction(cmd=cmd, value=value, original=c.original, line=c.start_line,
                               json=bool(c.json), flags=tuple(c.flags)))
    if not out:
        raise BuildError("the Dockerfile cannot be empty", hint="start it with FROM IMAGE")
    return out
