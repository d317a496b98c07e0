"""The one exception type for a user's bad input: the CLI prints its message on one line."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a missing file, a wrong shape, an invalid value.

    The message names the file (and line or field) and what is wrong, on one line.
    """


def one_line(message: str, limit: int = 1000) -> str:
    """``message`` fit for one line of a terminal: line breaks and other control characters
    escaped (a file name may hold them), and the middle of a very long message (a huge
    value quoted from a file) replaced by ``...`` so that at most ``limit`` characters
    remain."""
    text = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in message)
    if len(text) <= limit:
        return text
    head = limit * 3 // 4
    return f"{text[:head]} ... {text[len(text) - (limit - head - 5):]}"
