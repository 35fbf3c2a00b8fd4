"""Registries: the OCI distribution API client, credentials, manifests, pull, push and login.

I/O: network (the client, on trio through httpx/anyio), files (credentials, the content and
layer stores) and the event log (through the journal). Pure parts: `challenge.py` (auth
challenges, credential scoping, endpoints) and `manifest.py` (documents, platform choice).
"""
