"""Images on disk: reference parsing (pure) and docker-archive / OCI-layout reading and writing.

I/O: `reference` does none; `archive` reads and writes tar files and the content store.
"""
