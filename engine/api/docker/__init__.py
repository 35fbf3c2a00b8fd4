"""The Docker translation layer: Docker's JSON shapes to and from ours.

Rule: pure (I/O: none); imports core, events and projections only.
"""
