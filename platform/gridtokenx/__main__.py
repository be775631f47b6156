"""`python -m gridtokenx` is the `gridtokenx` command."""

from gridtokenx.cli import main

main()
