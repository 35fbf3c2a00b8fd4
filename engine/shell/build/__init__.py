"""Dockerfile builds: parsing (the official BuildKit parser), the build context, layer diffs and
the builder that runs each step through the engine's runtime, snapshots and content store."""
