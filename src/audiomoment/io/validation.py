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
