"""`python -m blameset.cli`: the same command as `blameset`."""

from .app import main

main()
