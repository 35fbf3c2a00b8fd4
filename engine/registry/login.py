"""`POST /auth`: check credentials against a registry, as `docker login` asks the daemon to.

I/O: network (through `RegistryClient`). The daemon only checks; the CLI keeps the
credentials (`~/.shipslog/config.json`, 0600) and sends them with each pull or push as
`X-Registry-Auth`. Nothing here is logged: a password never enters the event log.
"""

from __future__ import annotations

from engine.registry.challenge import parse_challenge
from engine.registry.client import RegistryClient, RegistryUnauthorized


async def check_login(client: RegistryClient) -> None:
    """Raise RegistryUnauthorized unless the registry accepts `client`'s credentials."""
    resp = await client.request("GET", "/v2/", scope="", ok=(200, 401))
    await resp.aclose()
    if resp.status_code == 200:
        return  # an open registry: nothing to check, as Docker
    ch = parse_challenge(resp.headers.get("www-authenticate", ""))
    if ch is None:
        raise RegistryUnauthorized("unauthorized: the registry sent no challenge")
    if client.creds is None:
        raise RegistryUnauthorized("unauthorized: username and password are required")
    # A token fetched with the credentials proves them (the token service checks them);
    # for basic auth the registry itself does.
    resp = await client.request("GET", "/v2/", scope="", ok=(200,))
    await resp.aclose()
