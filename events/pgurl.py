"""How a PostgreSQL URL is shown to people (`info`, errors, logs): never its password, never
its query string (which may name a key file: `sslkey=…`).

I/O: none.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["display_url"]


def display_url(url: str) -> str:
    """`postgresql://user@host:port/db`: the URL without its password or query string."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
