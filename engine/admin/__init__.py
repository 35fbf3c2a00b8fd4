"""Admin verbs on a state root, with the daemon up or down: check, reset, debug.

Rule: may use the shell and the drivers; only the daemon, the routes and the CLI import admin.
"""
