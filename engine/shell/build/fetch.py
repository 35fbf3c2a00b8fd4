"""`ADD http(s)://…` sources, fetched as moby's classic builder fetches them
(builder/dockerfile/copy.go `downloadSource`): one GET (redirects followed) at every build, the
file named after the URL's last path component (else Content-Disposition's filename), written
0600, its mtime taken from Last-Modified; never unpacked, even when it is an archive. The cache
key takes the file's name, mode, owner and bytes, not its mtime (Docker's rule: "mtime isn't
included in the determination of whether or not the file has changed").

I/O: network (one HTTP request per URL); writes the file under the build's work dir.
"""

from __future__ import annotations

import email.utils
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import trio

from engine.core.build import BuildError

TIMEOUT = httpx.Timeout(30.0, connect=15.0)


def is_url(source: str) -> bool:
    """moby's urlutil.IsURL: only http:// and https:// sources are fetched."""
    return source.startswith(("http://", "https://"))


def _filename(url: str, disposition: str | None) -> str:
    path = unquote(urlsplit(url).path)
    if path and not path.endswith("/"):
        return posixpath.basename(path)
    m = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition or "")
    return posixpath.basename(unquote(m.group(1))) if m else ""


async def fetch(url: str, into: Path, *, line: int, limit: int) -> Path:
    """Download `url` into the directory `into`; return the file. Errors are BuildErrors in
    Docker's words (`failed to GET URL with status 404 Not Found: BODY`)."""
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT) as client, \
                client.stream("GET", url) as resp:
            if resp.status_code >= 400:
                body = (await resp.aread())[:200].decode(errors="replace").strip()
                raise BuildError(f"failed to GET {url} with status {resp.status_code} "
                                 f"{resp.reason_phrase}: {body}",
                                 hint=f"line {line}: check the URL and that the server serves it")
            name = _filename(url, resp.headers.get("content-disposition"))
            if not name or name in (".", ".."):
                raise BuildError(f"cannot determine filename from url: {url}",
                                 hint=f"line {line}: end the URL with the file's name")
            path = into / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in resp.aiter_bytes(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise BuildError(f"ADD {url}: the file is larger than {limit} bytes",
                                         hint="download it into the context instead")
                    await trio.to_thread.run_sync(out.write, chunk)
            os.chmod(path, 0o600)  # whatever the umask: Docker's mode for a URL's file
            modified = resp.headers.get("last-modified")
    except httpx.HTTPError as exc:
        raise BuildError(f'Get "{url}": {exc}',
                         hint=f"line {line}: the builder could not download it") from None
    if modified:
        try:
            when = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (when, when), follow_symlinks=False)
        except (TypeError, ValueError, OverflowError):
            pass  # an unreadable Last-Modified leaves the download time, as moby does
    return path
