"""Secrets seam: the 0600 store of values that never enter the log.

Rule: file I/O; imports only core, events and other drivers.
"""
