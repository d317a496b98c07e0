"""The ``audiomoment`` command line: argument parsing and printing over the library."""

from audiomoment.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
