"""Volumes seam: named/anonymous volumes, fd-safe binds, seeding from the image.

Rule: kernel I/O; imports only core, events and other drivers.
"""
