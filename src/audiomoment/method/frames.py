"""Frames and seconds: the one place where a frame index becomes a time and back.

Frame t covers [t * hop_s, (t + 1) * hop_s) seconds (``hop_s``: the features' window hop,
1 s for the MS-CLAP windows of this project).
"""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import NDArray

#: Slack (in frames) below which a duration is taken to end exactly on a frame boundary,
#: so that rounding in ``duration_s / hop_s`` (e.g. 0.3 / 0.1 = 3.0000000000000004) does not
#: count a frame the duration does not reach.
BOUNDARY_SLACK = 1e-9


@overload
def frames_to_time(frames: int, hop_s: float) -> float: ...
@overload
def frames_to_time(frames: NDArray, hop_s: float) -> NDArray[np.float64]: ...
def frames_to_time(frames: int | NDArray, hop_s: float) -> float | NDArray[np.float64]:
    """Start time in seconds of frame ``frames`` (an index, or an array of them).

    Also the end time of the frame before, so a half-open frame range [a, b) spans
    [frames_to_time(a), frames_to_time(b)) seconds. Shape is kept.
    """
    return frames * float(hop_s)


@overload
def time_to_frames(seconds: float, hop_s: float) -> int: ...
@overload
def time_to_frames(seconds: NDArray, hop_s: float) -> NDArray[np.int64]: ...
def time_to_frames(seconds: float | NDArray, hop_s: float) -> int | NDArray[np.int64]:
    """A length (or time) in seconds as the nearest whole number of frames.

    Halves round to even, as Python's ``round`` and ``np.rint`` do. Shape is kept.
    """
    if isinstance(seconds, np.ndarray):
        return np.rint(seconds / hop_s).astype(np.int64)
    return round(seconds / hop_s)


def frames_covering(duration_s: float, hop_s: float) -> int:
    """Number of frames that start before ``duration_s``: ceil(duration_s / hop_s).

    A duration a hair (``BOUNDARY_SLACK`` frames) past a frame boundary counts as ending
    on it.
    """
    return int(np.ceil(duration_s / hop_s - BOUNDARY_SLACK))


def seconds_to_clock(seconds: float, hours: bool = False) -> str:
    """A time as M:SS.s, or H:MM:SS.s when ``hours`` (rounded to a tenth of a second)."""
    tenths = round(float(seconds) * 10)
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = f"{rest // 10:02d}.{rest % 10}"
    return f"{h}:{m:02d}:{s}" if hours or h else f"{m}:{s}"
