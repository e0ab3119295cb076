"""`python -m agent` is the `cityedge` command."""

from agent.entry import main

main()
