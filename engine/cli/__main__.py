"""`python3 -m engine.cli`: the same entry point as the `shipslog` command. I/O: see main."""

from engine.cli.main import main

main()
