"""`python -m cairn ...`: the `cairn` command (how the distributed topology spawns children)."""

from cairn.cli import main

main()
