"""The one exception type for a user's bad input: the CLI prints its message on one line."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a missing file, a wrong shape, an invalid value.

    The message names the file (and line or field) and what is wrong, on one line.
    """
