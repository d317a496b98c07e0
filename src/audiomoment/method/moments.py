"""From per-frame posteriors to ranked time windows, for a block of equal-length traces.

Frame t covers [t * hop_s, (t + 1) * hop_s) seconds (:mod:`audiomoment.method.frames`). A
candidate is a maximal run of consecutive frames whose posterior reaches the threshold; its
score is ``mean(posterior over the run) + peak_weight * max(smoothed trace over the run)``.
Every function works on (N, T) blocks, row by row: a row's result does not depend on the
other rows, and one trace is a block of one row.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from audiomoment.method.frames import frames_to_time


class Runs(NamedTuple):
    """Frame runs in the rows of a block, ordered by row, then time; each field (R,).

    Run r covers frames [starts[r], stops[r]) of row rows[r]; runs of a row are disjoint.
    """

    rows: NDArray[np.int64]
    starts: NDArray[np.int64]
    stops: NDArray[np.int64]


def frame_runs(mask: NDArray[np.bool_]) -> Runs:
    """Maximal runs of True in each row of an (N, T) boolean mask."""
    m = np.asarray(mask, dtype=bool)
    n, t = m.shape
    padded = np.zeros((n, t + 2), dtype=bool)
    padded[:, 1:-1] = m
    row, col = np.nonzero(padded[:, 1:] != padded[:, :-1])
    row = row.astype(np.int64)
    col = col.astype(np.int64)
    return Runs(row[0::2], col[0::2], col[1::2])


def peak_run(smoothed: NDArray[np.float64]) -> NDArray[np.int64]:
    """The fallback run of one row: around argmax of ``smoothed``, where it stays >=
    (max + median) / 2.

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


def peak_run_mask(smoothed: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The frames of each row's :func:`peak_run`: (N, T) -> (N, T)."""
    mask = np.zeros(smoothed.shape, dtype=bool)
    for r, row in enumerate(smoothed):
        ((first, stop),) = peak_run(row).tolist()
        mask[r, first:stop] = True
    return mask


def score_runs(
    runs: Runs,
    posterior: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    peak_weight: float,
) -> NDArray[np.float64]:
    """Score of each run [a, b) of row r: mean(posterior[r, a:b]) + peak_weight *
    max(smoothed[r, a:b]).

    ``runs``: as :func:`frame_runs` gives them; ``posterior``, ``smoothed``: (N, T).
    Returns (R,). The mean is a difference of running sums along the row, in time order.
    """
    rows, starts, stops = runs
    if len(rows) == 0:
        return np.empty(0)
    n, t = posterior.shape
    csum = np.concatenate((np.zeros((n, 1)), np.cumsum(posterior, axis=1)), axis=1)
    mean_post = (csum[rows, stops] - csum[rows, starts]) / (stops - starts)
    # Hide the frames outside the runs; one reduceat over the flattened block from each
    # run's first frame to the next run's first frame then gives each run's maximum.
    inside = np.zeros((n, t + 1), dtype=np.int64)
    np.add.at(inside, (rows, starts), 1)
    np.add.at(inside, (rows, stops), -1)
    masked = np.where(np.cumsum(inside[:, :-1], axis=1) > 0, smoothed, -np.inf)
    peak = np.maximum.reduceat(masked.ravel(), rows * t + starts)
    return mean_post + peak_weight * peak


def runs_to_windows(
    runs: Runs,
    scores: NDArray[np.float64],
    durations_s: NDArray[np.float64],
    hop_s: float = 1.0,
    max_windows: int = 10,
) -> list[NDArray[np.float64]]:
    """Rank each row's runs by score into [start_s, end_s, score] rows, clipped to its duration.

    ``runs``, ``scores`` (R,): as :func:`frame_runs` and :func:`score_runs` give them;
    ``durations_s``: (N,) one per row, ``inf`` for no clipping. Runs that start at or after
    their row's duration vanish. Returns N arrays (K_i, 3), best first (ties in time
    order), K_i <= ``max_windows``.
    """
    n = len(durations_s)
    limit = durations_s[runs.rows]
    start = np.minimum(frames_to_time(runs.starts, hop_s), limit)
    end = np.minimum(frames_to_time(runs.stops, hop_s), limit)
    keep = end > start
    rows, start, end = runs.rows[keep], start[keep], end[keep]
    sc = np.asarray(scores, dtype=np.float64)[keep]
    order = np.lexsort((start, -sc, rows))
    rows = rows[order]
    counts = np.bincount(rows, minlength=n)
    first = np.cumsum(counts) - counts
    take = order[np.arange(len(rows)) - first[rows] < max_windows]
    windows = np.stack([start[take], end[take], sc[take]], axis=1).reshape(-1, 3)
    bounds = np.concatenate(([0], np.cumsum(np.minimum(counts, max_windows)))).tolist()
    return [windows[a:b] for a, b in itertools.pairwise(bounds)]
