"""The sliding-window clip-retrieval baseline: candidates, window means, suppression, ranking."""

from __future__ import annotations

import numpy as np
import pytest

from audiomoment.method.frames import frames_covering, frames_to_time, time_to_frames
from audiomoment.method.window_baseline import (
    candidate_windows,
    interval_iou,
    sliding_window_moments,
    temporal_nms,
    window_means,
)


def brute_nms(rows: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression written the slow, obvious way."""
    order = sorted(range(len(rows)), key=lambda i: (-rows[i, 2], i))
    kept: list[np.ndarray] = []
    for i in order:
        s, e = rows[i, :2]
        ok = True
        for k in kept:
            inter = max(0.0, min(e, k[1]) - max(s, k[0]))
            union = (e - s) + (k[1] - k[0]) - inter
            if union > 0 and inter / union > threshold:
                ok = False
                break
        if ok:
            kept.append(rows[i])
    return np.array(kept).reshape(-1, 3)


def test_candidates_cover_every_stride_and_the_end():
    got = candidate_windows(10, [2, 4], [1, 2]).tolist()
    fours = [[0, 4], [2, 6], [4, 8], [6, 10]]
    twos = [[s, s + 2] for s in range(9)]
    assert got == fours + twos  # longest first, then by start
    # a stride that does not land on the end adds a window flush with the last frame
    assert candidate_windows(10, [4], [4]).tolist() == [[0, 4], [4, 8], [6, 10]]


def test_lengths_longer_than_the_recording_become_the_whole_recording():
    got = candidate_windows(3, [2, 8, 16], [1, 4, 8]).tolist()
    assert got == [[0, 3], [0, 2], [1, 3]]  # 8 and 16 both collapse to [0, 3), kept once


def test_window_means_match_a_loop():
    rng = np.random.default_rng(0)
    trace = rng.normal(size=37)
    windows = candidate_windows(37, [2, 5, 8], [1, 2, 4])
    expected = [trace[a:b].mean() for a, b in windows]
    np.testing.assert_allclose(window_means(trace, windows), expected, rtol=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_the_greedy_definition(threshold):
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 50, size=80).astype(float)
    rows = np.column_stack([starts, starts + rng.integers(1, 20, size=80), rng.random(80)])
    rows[5, 2] = rows[9, 2]  # a tie: row order decides
    np.testing.assert_array_equal(temporal_nms(rows, threshold), brute_nms(rows, threshold))
    assert len(temporal_nms(rows, threshold, max_keep=3)) == 3


def test_interval_iou_handles_zero_length_unions():
    assert interval_iou(np.array([2.0, 2.0]), np.array([[2.0, 2.0], [0.0, 4.0]])).tolist() == [0, 0]


def test_a_planted_plateau_is_the_top_window():
    trace = np.zeros(60)
    trace[8:16] = 1.0
    windows = sliding_window_moments(trace, 60.0)
    assert windows[0].tolist() == [8.0, 16.0, 1.0]
    assert np.all(np.diff(windows[:, 2]) <= 0)
    assert len(windows) == 10
    for i in range(len(windows)):
        others = np.delete(windows, i, axis=0)
        assert np.all(interval_iou(windows[i, :2], others[:, :2]) <= 0.5)


def test_windows_stay_inside_a_fractional_duration():
    rng = np.random.default_rng(2)
    trace = rng.normal(size=45)
    trace[38:] += 5.0  # the strongest frames lie at and past the end of the recording
    windows = sliding_window_moments(trace, 40.5, max_windows=50)
    assert np.all(windows[:, 0] >= 0) and np.all(windows[:, 1] <= 40.5)
    assert np.all(windows[:, 0] < windows[:, 1])
    assert windows[:, 1].max() == 40.5


def test_fixed_stride_and_short_recordings():
    trace = np.arange(5, dtype=float)
    windows = sliding_window_moments(trace, 5.0, lengths_s=[2, 32], stride_s=1.0, nms_iou=1.0,
                                     max_windows=100)
    # 4 windows of 2 s and the whole recording
    assert len(windows) == 5
    assert windows[0].tolist() == [3.0, 5.0, 3.5]
    assert [0.0, 5.0, 2.0] in windows.tolist()


def test_hop_scales_seconds():
    trace = np.zeros(20)
    trace[4:8] = 1.0
    windows = sliding_window_moments(trace, hop_s=0.5, lengths_s=[2.0])
    assert windows[0].tolist() == [2.0, 4.0, 1.0]


@pytest.mark.parametrize(
    ("trace", "kwargs"),
    [
        ([], {}),
        ([[1.0, 2.0]], {}),
        ([1.0, np.nan], {}),
        ([1.0, 2.0], {"max_windows": 0}),
        ([1.0, 2.0], {"lengths_s": []}),
        ([1.0, 2.0], {"lengths_s": [0.0]}),
        ([1.0, 2.0], {"stride_s": 0.0}),
        ([1.0, 2.0], {"hop_s": 0.0}),
        ([1.0, 2.0], {"duration_s": 0.0}),
    ],
)
def test_bad_input_raises(trace, kwargs):
    with pytest.raises(ValueError):
        sliding_window_moments(np.asarray(trace, dtype=float), **kwargs)


def test_prediction_row_has_no_delta():
    from audiomoment.io.predictions import make_row

    row = make_row({"qid": 3, "query": "q", "vid": "v", "duration": 9.0},
                   np.array([[1.0, 3.0, 0.5]]))
    assert row == {"qid": 3, "query": "q", "vid": "v", "pred_relevant_windows": [[1.0, 3.0, 0.5]]}


def test_frame_time_conversions():
    assert frames_to_time(3, 0.5) == 1.5
    assert frames_to_time(np.array([0, 1, 7]), 1.0).tolist() == [0.0, 1.0, 7.0]
    assert frames_to_time(np.array([[2, 5]]), 0.25).tolist() == [[0.5, 1.25]]
    # nearest frame, halves to even (as Python's round)
    assert [time_to_frames(s, 1.0) for s in (2.0, 2.4, 2.5, 3.5, 0.49)] == [2, 2, 2, 4, 0]
    assert time_to_frames(np.array([1.0, 1.5, 2.6]), 0.5).tolist() == [2, 3, 5]
    assert isinstance(time_to_frames(4.0, 2.0), int)
    # frames that start before the duration: ceil(duration / hop)
    assert frames_covering(60.0, 1.0) == 60
    assert frames_covering(59.4, 1.0) == 60
    assert frames_covering(0.3, 0.1) == 3  # 0.3 / 0.1 = 3.0000000000000004 in floats
    assert frames_covering(10.0 + 1e-12, 1.0) == 10  # a hair past a boundary ends on it
    assert frames_covering(10.001, 1.0) == 11
    assert frames_covering(4.5, 0.5) == 9 and frames_covering(4.6, 0.5) == 10
