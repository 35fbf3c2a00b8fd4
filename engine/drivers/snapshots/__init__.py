"""Snapshots seam: overlayfs rootfs mounts and confined access to them.

Rule: kernel I/O; imports only core, events and other drivers.
"""
