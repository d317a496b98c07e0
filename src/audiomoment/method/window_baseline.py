"""Sliding-window clip retrieval: a training-free reference for moment retrieval.

The clip-level baseline of the original audio moment retrieval paper, applied to the same
similarity trace the GMM systems use (System 2's plain trace ``q . a_t``):

1. candidates: every window of each length in ``lengths_s`` (default 2, 4, 8, 16 and 32 s),
   sliding over the frames with a stride of half its length (at least one frame), plus one
   window flush with the last frame so the end of the recording is covered. A length longer
   than the recording becomes the whole recording (duplicates are dropped);
2. score: the mean trace value over the window's frames;
3. greedy temporal non-maximum suppression: best first (equal scores: the longer window, then
   the earlier), a window is dropped when its IoU with a window already kept exceeds
   ``nms_iou`` (0.5);
4. the first ``max_windows`` kept windows, best first, clipped to the recording's duration.

The stride of half the length keeps the number of candidates near 2 * T / L per length
(about 580 for a 300-s recording); ``stride_s`` sets a fixed stride instead.

The suppression is written here rather than taken from a library: the candidates are 1-D
intervals, a few hundred per query, and the common NMS routines (torchvision's, for one)
work on 2-D boxes in another package; the greedy loop below is a handful of NumPy lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.method.frames import frames_covering, frames_to_time, time_to_frames

#: Window lengths in seconds scored by default.
DEFAULT_LENGTHS_S: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
#: IoU above which a lower-scored window is suppressed.
DEFAULT_NMS_IOU = 0.5


def candidate_windows(
    n_frames: int, lengths_frames: Sequence[int], strides_frames: Sequence[int]
) -> NDArray[np.int64]:
    """All sliding windows as half-open frame ranges.

    Parameters
    ----------
    n_frames : frames available, >= 1.
    lengths_frames : window lengths in frames, each >= 1; lengths above ``n_frames`` become
        ``n_frames``.
    strides_frames : one stride (>= 1 frame) per length.

    Returns
    -------
    (C, 2) int64 rows [first, last + 1], unique, longest windows first, then by start (so
    that, among windows of equal score, a stable ranking prefers the longer, then the earlier).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if len(lengths_frames) != len(strides_frames):
        raise ValueError("give one stride per window length")
    blocks = []
    pairs = sorted(zip(lengths_frames, strides_frames, strict=True), key=lambda p: -p[0])
    for length, stride in pairs:
        if length < 1 or stride < 1:
            raise ValueError(f"window length and stride must be >= 1 frame, got {length}, {stride}")
        length = min(int(length), n_frames)
        starts = np.arange(0, n_frames - length + 1, int(stride), dtype=np.int64)
        if starts[-1] != n_frames - length:
            starts = np.append(starts, n_frames - length)
        blocks.append(np.stack([starts, starts + length], axis=1))
    windows = np.concatenate(blocks)
    _, first = np.unique(windows, axis=0, return_index=True)
    return windows[np.sort(first)]


def window_means(trace: NDArray[np.float64], windows: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mean of ``trace`` (T,) over each frame range of ``windows`` (C, 2) -> (C,)."""
    csum = np.concatenate(([0.0], np.cumsum(trace, dtype=np.float64)))
    return (csum[windows[:, 1]] - csum[windows[:, 0]]) / (windows[:, 1] - windows[:, 0])


def interval_iou(one: NDArray[np.float64], many: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of one interval (2,) with each of ``many`` (N, 2): (N,) float64.

    Intervals are [start, end] with start <= end. Where the union is > 0 the value is the plain
    quotient ``inter / union``; where it is 0 (both intervals empty at the same instant) the
    intersection, clipped at 0, is 0 and is divided by 1: IoU 0, so such an interval never
    suppresses another.
    """
    inter = np.clip(np.minimum(one[1], many[:, 1]) - np.maximum(one[0], many[:, 0]), 0.0, None)
    union = (one[1] - one[0]) + (many[:, 1] - many[:, 0]) - inter
    return inter / np.where(union > 0, union, 1.0)


def temporal_nms(
    windows: NDArray[np.float64],
    iou_threshold: float = DEFAULT_NMS_IOU,
    max_keep: int | None = None,
) -> NDArray[np.float64]:
    """Greedy non-maximum suppression of scored intervals.

    ``windows``: (N, 3) rows [start, end, score]. Visiting rows by descending score (ties in
    row order), a row is kept unless its IoU with a row kept before it exceeds
    ``iou_threshold``. Stops after ``max_keep`` rows (None: no limit). Returns (K, 3), best
    first.
    """
    rows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(-rows[:, 2], kind="stable")
    remaining = rows[order]
    kept = []
    limit = len(rows) if max_keep is None else max_keep
    while len(remaining) and len(kept) < limit:
        best = remaining[0]
        kept.append(best)
        rest = remaining[1:]
        remaining = rest[interval_iou(best[:2], rest[:, :2]) <= iou_threshold]
    return np.array(kept, dtype=np.float64).reshape(-1, 3)


def sliding_window_moments(
    trace: ArrayLike,
    duration_s: float | None = None,
    *,
    lengths_s: Sequence[float] = DEFAULT_LENGTHS_S,
    stride_s: float | None = None,
    hop_s: float = 1.0,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_windows: int = 10,
) -> NDArray[np.float64]:
    """Ranked moments of one recording by sliding-window clip retrieval.

    Parameters
    ----------
    trace : (T,) similarity of each frame with the query (frame t covers
        [t * hop_s, (t + 1) * hop_s) seconds), finite, T >= 1.
    duration_s : recording length; frames starting at or after it are ignored and windows are
        clipped to it (None: all T frames).
    lengths_s : window lengths in seconds (rounded to whole frames, at least one).
    stride_s : fixed stride in seconds; None: half of each window's length (at least a frame).
    hop_s : seconds per frame.
    nms_iou : suppression threshold of :func:`temporal_nms`.
    max_windows : number of windows returned.

    Returns
    -------
    (K, 3) float64 rows [start_s, end_s, score], best first, K <= max_windows, score = mean
    trace value over the window.
    """
    x = np.asarray(trace, dtype=np.float64)
    if x.ndim != 1 or len(x) < 1:
        raise ValueError(f"trace must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("trace contains NaN or infinite values")
    if not hop_s > 0:
        raise ValueError(f"hop_s must be > 0, got {hop_s}")
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    if not lengths_s or any(not length > 0 for length in lengths_s):
        raise ValueError(f"window lengths must be > 0 s, got {list(lengths_s)}")
    if stride_s is not None and not stride_s > 0:
        raise ValueError(f"stride_s must be > 0, got {stride_s}")
    n_frames = len(x)
    if duration_s is not None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n_frames = min(n_frames, frames_covering(duration_s, hop_s))
    lengths = [max(1, time_to_frames(length, hop_s)) for length in lengths_s]
    if stride_s is None:
        strides = [max(1, length // 2) for length in lengths]
    else:
        strides = [max(1, time_to_frames(stride_s, hop_s))] * len(lengths)
    frames = candidate_windows(n_frames, lengths, strides)
    scores = window_means(x[:n_frames], frames)
    seconds = frames_to_time(frames, hop_s)
    if duration_s is not None:
        seconds = np.minimum(seconds, duration_s)
    rows = np.column_stack([seconds, scores])
    return temporal_nms(rows, nms_iou, max_windows)
