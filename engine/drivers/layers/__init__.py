"""Layers seam: the content store (blobs by digest) and the confined layer unpacker.

Rule: file I/O; imports only core, events and other drivers.
"""
