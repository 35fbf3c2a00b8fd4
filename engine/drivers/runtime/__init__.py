"""Runtime seam: runc + conmon, exec I/O, cgroups, stats, logs.

Rule: kernel I/O; imports only core, events and other drivers.
"""
