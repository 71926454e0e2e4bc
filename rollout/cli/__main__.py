"""`python -m rollout.cli` runs the `rollout` command."""

from rollout.cli import main

main()
