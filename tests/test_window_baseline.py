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


# ------------------------------------------------------------------ boundaries, by hand


def test_candidate_windows_boundaries_by_hand() -> None:
    # one frame, windows of one frame: the single window [0, 1)
    assert candidate_windows(1, [1], [1]).tolist() == [[0, 1]]
    # longest first whatever the strides say: lengths 2 (stride 2) and 3 (stride 1) on 4
    assert candidate_windows(4, [2, 3], [2, 1]).tolist() == [[0, 3], [1, 4], [0, 2], [2, 4]]
    # a stride that misses the end still ends with the window flush with the end
    assert candidate_windows(5, [2], [2]).tolist() == [[0, 2], [2, 4], [3, 5]]
    assert candidate_windows(5, [2], [2]).dtype == np.int64
    with pytest.raises(ValueError, match=r"^n_frames must be >= 1, got 0$"):
        candidate_windows(0, [1], [1])
    with pytest.raises(ValueError, match=r"^give one stride per window length$"):
        candidate_windows(4, [1, 2], [1])
    for length, stride in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match=rf"^window length and stride must be >= 1 "
                                             rf"frame, got {length}, {stride}$"):
            candidate_windows(4, [length], [stride])


def test_window_means_accumulate_in_float64() -> None:
    # float32 sums would lose the 1: (1e8 + 1 - 1e8) / 3
    trace = np.array([1e8, 1.0, -1e8], dtype=np.float32)
    np.testing.assert_allclose(window_means(trace, np.array([[0, 3], [1, 2]])), [1 / 3, 1.0])


def test_interval_iou_of_disjoint_and_empty_intervals() -> None:
    many = np.array([[5.0, 6.0], [0.0, 2.0], [2.0, 2.0], [1.0, 3.0]])
    np.testing.assert_allclose(interval_iou(np.array([0.0, 2.0]), many),
                               [0.0, 1.0, 0.0, 1 / 3])
    # both empty at the same instant: union 0 -> IoU 0
    np.testing.assert_array_equal(interval_iou(np.array([2.0, 2.0]), many[2:3]), [0.0])


def python_iou(a: list[float], b: list[float]) -> float:
    """IoU of two intervals with Python floats: inter / (len_a + len_b - inter), 0 where the
    union is 0."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def test_interval_iou_is_the_plain_quotient_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for _ in range(40):
        # a coarse grid (touching, nested, identical, empty intervals) and random reals
        if rng.random() < 0.5:
            many = np.sort(rng.integers(0, 6, (300, 2)), axis=1) / 2.0
            one = np.sort(rng.integers(0, 6, 2)) / 2.0
        else:
            many = np.sort(rng.random((300, 2)) * rng.choice([1.0, 40.0]), axis=1)
            one = np.sort(rng.random(2)) * rng.choice([1.0, 40.0])
        got = interval_iou(one, many)
        assert got.dtype == np.float64 and got.shape == (300,)
        expected = [python_iou(one.tolist(), row) for row in many.tolist()]
        assert got.tobytes() == np.array(expected).tobytes()
        # the former np.divide(..., where=union > 0) formula, to the bit
        inter = np.clip(np.minimum(one[1], many[:, 1]) - np.maximum(one[0], many[:, 0]), 0, None)
        union = (one[1] - one[0]) + (many[:, 1] - many[:, 0]) - inter
        former = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        assert got.tobytes() == former.tobytes()


def test_empty_intervals_at_one_instant_have_iou_zero_and_both_stay() -> None:
    for _ in range(3):  # fresh arrays each time: no value may come from leftover memory
        np.full(64, np.nan)
        got = interval_iou(np.array([2.0, 2.0]), np.array([[2.0, 2.0], [2.0, 2.0], [1.5, 2.5]]))
        assert got.tobytes() == np.zeros(3).tobytes()  # +0.0, not -0.0 or NaN
    # a union under 1 s keeps its quotient: [0, 0.5] and [0.25, 0.75] -> 0.25 / 0.75
    assert interval_iou(np.array([0.0, 0.5]), np.array([[0.25, 0.75]])).tolist() == [0.25 / 0.75]
    # IoU 0 <= 0.5: the empty interval at the same instant is not suppressed
    rows = np.array([[2.0, 2.0, 0.9], [2.0, 2.0, 0.5]])
    np.testing.assert_array_equal(temporal_nms(rows), rows)


def test_nms_keeps_ties_in_row_order_and_returns_floats() -> None:
    # 40 disjoint windows of equal score: kept in row order (a stable sort)
    rows = np.array([[2.0 * i, 2.0 * i + 1, 0.5] for i in range(40)])
    np.testing.assert_array_equal(temporal_nms(rows)[:, 0], rows[:, 0])
    shuffled = rows[np.random.default_rng(0).permutation(40)]
    np.testing.assert_array_equal(temporal_nms(shuffled), shuffled)
    # 300 disjoint windows with three score levels: each level in row order
    rng = np.random.default_rng(1)
    many = np.array([[2.0 * i, 2.0 * i + 1, float(rng.integers(0, 3))] for i in range(300)])
    expected = np.concatenate([many[many[:, 2] == level] for level in (2.0, 1.0, 0.0)])
    np.testing.assert_array_equal(temporal_nms(many), expected)
    # integer rows are suppressed by their true IoU (4/5 > 0.5), not an integer division
    assert temporal_nms(np.array([[0, 5, 1], [1, 5, 2]])).tolist() == [[1.0, 5.0, 2.0]]
    out = temporal_nms(np.array([[0, 2, 1], [1, 3, 2]]))  # integers in, float64 out
    assert out.dtype == np.float64
    # IoU 1/3 <= 0.5: both kept, best first
    assert out.tolist() == [[1.0, 3.0, 2.0], [0.0, 2.0, 1.0]]


def test_sliding_window_moments_boundaries_by_hand() -> None:
    # a trace of one frame: one window of one frame
    np.testing.assert_array_equal(sliding_window_moments([0.25], lengths_s=(1.0,)),
                                  [[0.0, 1.0, 0.25]])
    trace = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # one window returned when one is asked for
    assert sliding_window_moments(trace, lengths_s=(1.0,), max_windows=1).tolist() == [
        [1.0, 2.0, 1.0]]
    # windows of one frame (1 s, and 0.4 s rounded up to one frame): every frame a window
    for length in (1.0, 0.4):
        got = sliding_window_moments(trace, lengths_s=(length,), max_windows=10)
        assert sorted(got[:, 0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # the default stride is half the length: 4-frame windows start at 0 and 2
    got = sliding_window_moments(trace, lengths_s=(4.0,), nms_iou=1.0, max_windows=10)
    assert sorted(got[:, 0].tolist()) == [0.0, 2.0]
    # a 1-frame length keeps a 1-frame stride
    got = sliding_window_moments(trace, lengths_s=(1.0,), nms_iou=1.0, max_windows=10)
    assert len(got) == 6
    # a duration under a frame: the first frame only, clipped to the duration
    assert sliding_window_moments(trace, duration_s=0.5, lengths_s=(2.0,)).tolist() == [
        [0.0, 0.5, 0.0]]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"trace": np.zeros((2, 2))}, r"^trace must be a non-empty 1-D array, got shape \(2, 2\)$"),
    ({"trace": np.array([])}, r"^trace must be a non-empty 1-D array, got shape \(0,\)$"),
    ({"trace": np.array([0.0, np.nan])}, r"^trace contains NaN or infinite values$"),
    ({"hop_s": 0.0}, r"^hop_s must be > 0, got 0.0$"),
    ({"max_windows": 0}, r"^max_windows must be >= 1, got 0$"),
    ({"lengths_s": (2.0, 0.0)}, r"^window lengths must be > 0 s, got \[2.0, 0.0\]$"),
    ({"lengths_s": ()}, r"^window lengths must be > 0 s, got \[\]$"),
    ({"stride_s": -1.0}, r"^stride_s must be > 0, got -1.0$"),
    ({"duration_s": 0.0}, r"^duration_s must be > 0, got 0.0$"),
])
def test_sliding_window_moments_refuses_with_its_reason(kwargs: dict, message: str) -> None:
    args = {"trace": np.zeros(4), **kwargs}
    with pytest.raises(ValueError, match=message):
        sliding_window_moments(**args)
