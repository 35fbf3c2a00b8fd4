"""Pure planners for container networking: names, MACs, veth and bridge plans, the nftables
ruleset text, and the generated /etc files. I/O: none; `engine/drivers/` executes the plans."""
