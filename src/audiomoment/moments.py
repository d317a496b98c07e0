"""From a per-frame posterior to ranked time windows.

Frame t covers [t * hop_s, (t + 1) * hop_s) seconds. A candidate is a maximal run of
consecutive frames whose posterior reaches the threshold; its score is
``mean(posterior over the run) + peak_weight * max(smoothed trace over the run)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def frame_runs(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Maximal runs of True in a 1-D boolean mask as half-open frame ranges.

    (T,) -> (R, 2) rows [first, last + 1], in time order; (0, 2) when there is none.
    """
    m = np.asarray(mask, dtype=bool)
    padded = np.concatenate(([False], m, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges.reshape(-1, 2).astype(np.int64)


def score_runs(
    runs: NDArray[np.int64],
    posterior: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    peak_weight: float,
) -> NDArray[np.float64]:
    """Score of each run [a, b): mean(posterior[a:b]) + peak_weight * max(smoothed[a:b]).

    ``runs``: (R, 2), disjoint and in time order; ``posterior``, ``smoothed``: (T,).
    Returns (R,).
    """
    if len(runs) == 0:
        return np.empty(0)
    starts, stops = runs[:, 0], runs[:, 1]
    csum = np.concatenate(([0.0], np.cumsum(posterior)))
    mean_post = (csum[stops] - csum[starts]) / (stops - starts)
    # Runs are disjoint and in time order: hide the frames outside them, then one
    # reduceat from each start to the next gives each run's maximum.
    inside = np.zeros(len(smoothed) + 1, dtype=np.int64)
    np.add.at(inside, starts, 1)
    np.add.at(inside, stops, -1)
    masked = np.where(np.cumsum(inside[:-1]) > 0, smoothed, -np.inf)
    peak = np.maximum.reduceat(masked, starts)
    return mean_post + peak_weight * peak


def peak_run(smoothed: NDArray[np.float64]) -> NDArray[np.int64]:
    """The fallback run: around argmax of ``smoothed``, where it stays >= (max + median) / 2.

    (T,) -> (1, 2) [first, last + 1]. On a constant trace this is the whole trace.
    """
    s = np.asarray(smoothed, dtype=np.float64)
    peak = int(np.argmax(s))
    level = (s[peak] + np.median(s)) / 2.0
    below = s < level
    left = np.flatnonzero(below[:peak])
    right = np.flatnonzero(below[peak + 1 :])
    first = int(left[-1]) + 1 if len(left) else 0
    stop = peak + 1 + int(right[0]) if len(right) else len(s)
    return np.array([[first, stop]], dtype=np.int64)


def runs_to_windows(
    runs: NDArray[np.int64],
    scores: NDArray[np.float64],
    duration_s: float | None,
    hop_s: float = 1.0,
    max_windows: int = 10,
) -> NDArray[np.float64]:
    """Rank runs by score into [start_s, end_s, score] rows, clipped to the duration.

    Runs that start at or after ``duration_s`` vanish. Ties in score keep time order.
    Returns (K, 3) with K <= ``max_windows``.
    """
    start = runs[:, 0] * hop_s
    end = runs[:, 1] * hop_s
    if duration_s is not None:
        start = np.minimum(start, duration_s)
        end = np.minimum(end, duration_s)
    keep = end > start
    start, end, sc = start[keep], end[keep], np.asarray(scores, dtype=np.float64)[keep]
    order = np.argsort(-sc, kind="stable")[:max_windows]
    return np.stack([start[order], end[order], sc[order]], axis=1).reshape(-1, 3)
