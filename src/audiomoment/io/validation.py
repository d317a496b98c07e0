"""Checks shared by every reader of user files: is this JSON value a finite number?

JSON numbers arrive as ``int`` or ``float`` (``NaN`` and ``Infinity`` too, which Python's
``json`` accepts); ``true``/``false`` arrive as ``bool``, a subclass of ``int`` that is not a
number here.
"""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) else None


def is_finite_number(value: Any) -> bool:
    """True when ``value`` is a finite int or float (not a bool)."""
    return finite_number(value) is not None


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the stem of a file inside a folder (``<folder>/<name>.npz``),
    or None: it is empty, ``.`` or ``..``, or holds ``/`` or a NUL character (a qid or vid
    that would reach outside its folder, or that no file system accepts)."""
    if name in ("", ".", ".."):
        return "is not a usable file name"
    if "/" in name:
        return "contains '/'"
    if "\x00" in name:
        return "contains a NUL character"
    return None
