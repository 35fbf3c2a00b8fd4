"""A request's query string read as Docker's Go server reads it (`r.Form.Get`: the first
value; its words for false; an integer or a 400): one reader for the HTTP server's `Request`
and for local mode, which answers the same GETs without a server.

Pure: no I/O.
"""

from __future__ import annotations

import builtins

from engine.core.errors import InvalidArgument

FALSE_WORDS = frozenset({"", "0", "no", "false", "none"})


class QueryArgs:
    """The query's values by name (`query` as `urllib.parse.parse_qs` gives it)."""

    query: dict[str, list[str]]

    def __init__(self, query: dict[str, list[str]]) -> None:
        self.query = query

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter, as Go's `r.Form.Get` returns it."""
        values = self.query.get(name)
        return values[0] if values else default

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        return value.strip().lower() not in FALSE_WORDS

    def int(self, name: str, default: builtins.int | None = None) -> builtins.int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return builtins.int(value)
        except ValueError:
            raise InvalidArgument(
                f"invalid value for {name!r}: {value!r} is not an integer") from None
