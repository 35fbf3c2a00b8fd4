"""Network seam: netlink (pyroute2), named netns, nftables, DNS, host firewall, /etc files.

Rule: kernel I/O; imports only core, events and other drivers.
"""
