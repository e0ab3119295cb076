"""`python -m cityedge.cli` is the `cityedge` command."""

from cityedge.cli.entry import main

main()
