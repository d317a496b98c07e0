"""From a per-frame posterior to ranked time windows.

Frame t covers [t * hop_s, (t + 1) * hop_s) seconds. A candidate is a maximal run of
consecutive frames whose posterior reaches the threshold; its score is
``mean(posterior over the run) + peak_weight * max(smoothed trace over the run)``.
"""

from __future__ import annotations

import itertools

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


# --------------------------------------------------------------------------------------------
# The same steps for a block of equal-length traces at once, row by row bit-identical to the
# functions above.


def row_runs(
    mask: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Maximal runs of True in each row of an (N, T) boolean mask.

    Returns ``rows``, ``starts``, ``stops``, each (R,): run r covers frames
    [starts[r], stops[r]) of row rows[r]; ordered by row, then time. Row by row the same
    runs as :func:`frame_runs`.
    """
    m = np.asarray(mask, dtype=bool)
    n, t = m.shape
    padded = np.zeros((n, t + 2), dtype=bool)
    padded[:, 1:-1] = m
    row, col = np.nonzero(padded[:, 1:] != padded[:, :-1])
    row = row.astype(np.int64)
    col = col.astype(np.int64)
    return row[0::2], col[0::2], col[1::2]


def score_row_runs(
    rows: NDArray[np.int64],
    starts: NDArray[np.int64],
    stops: NDArray[np.int64],
    posterior: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    peak_weight: float,
) -> NDArray[np.float64]:
    """:func:`score_runs` for runs in the rows of a block: (R,) runs -> (R,) scores.

    ``rows``, ``starts``, ``stops``: (R,) as :func:`row_runs` gives them (ordered by row
    then time, disjoint within a row); ``posterior``, ``smoothed``: (N, T). The posterior's
    running sums go along each row in time order, as the one-trace cumulative sum does.
    """
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


def rank_row_windows(
    rows: NDArray[np.int64],
    starts: NDArray[np.int64],
    stops: NDArray[np.int64],
    scores: NDArray[np.float64],
    durations_s: NDArray[np.float64],
    hop_s: float = 1.0,
    max_windows: int = 10,
) -> list[NDArray[np.float64]]:
    """:func:`runs_to_windows` for the runs of every row of a block.

    ``rows``, ``starts``, ``stops``, ``scores``: (R,), ordered by row then time;
    ``durations_s``: (N,) one per row, ``inf`` for no clipping. Returns N arrays (K_i, 3)
    of [start_s, end_s, score] rows, best first (ties in time order), K_i <= ``max_windows``.
    """
    n = len(durations_s)
    limit = durations_s[rows]
    start = np.minimum(starts * hop_s, limit)
    end = np.minimum(stops * hop_s, limit)
    keep = end > start
    rows, start, end = rows[keep], start[keep], end[keep]
    sc = np.asarray(scores, dtype=np.float64)[keep]
    order = np.lexsort((start, -sc, rows))
    rows = rows[order]
    counts = np.bincount(rows, minlength=n)
    first = np.cumsum(counts) - counts
    take = order[np.arange(len(rows)) - first[rows] < max_windows]
    windows = np.stack([start[take], end[take], sc[take]], axis=1).reshape(-1, 3)
    bounds = np.concatenate(([0], np.cumsum(np.minimum(counts, max_windows)))).tolist()
    return [windows[a:b] for a, b in itertools.pairwise(bounds)]
