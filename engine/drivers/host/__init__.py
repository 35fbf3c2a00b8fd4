"""Host seam: mount helpers, host facts, disk usage, failpoints.

Rule: kernel I/O; imports only core and events.
"""
