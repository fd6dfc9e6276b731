"""`python -m ltxkit` runs the CLI."""

from ltxkit.cli import main

main()
