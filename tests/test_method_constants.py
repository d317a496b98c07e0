"""The method's literal constants and boundary cases, against hand-computed expectations.

The report fixes: smoothing sigma 1.5 frames, posterior threshold 0.45 (a frame *reaching*
it belongs to a candidate), peak weight 0.3 in the score, five EM initialisations, the three
neutral phrases; the fallback level is (max + median) / 2 with frames *at* the level inside
the run. Every expected value below is worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

from audiomoment import NEUTRAL_PHRASES
from audiomoment.config import LocalizeConfig
from audiomoment.method.localize import (
    candidate_masks,
    is_constant,
    smooth,
    windows_with_fallback,
)
from audiomoment.method.moments import (
    Runs,
    frame_runs,
    peak_run,
    peak_run_mask,
    runs_to_windows,
    score_runs,
)


def test_the_reports_constants_are_the_defaults() -> None:
    c = LocalizeConfig()
    assert (c.sigma_frames, c.threshold, c.peak_weight) == (1.5, 0.45, 0.3)
    assert (c.n_init, c.random_state, c.max_windows, c.hop_s) == (5, 42, 10, 1.0)
    # scikit-learn GaussianMixture's defaults, which the report keeps
    assert (c.tol, c.max_iter, c.reg_covar) == (1e-3, 100, 1e-6)
    assert c.engine == "fast"


def test_the_neutral_phrases_are_the_reports() -> None:
    assert NEUTRAL_PHRASES == ("background sound", "ambient noise", "background audio")


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("sigma_frames", -0.1, 0.0),
        ("n_init", 0, 1),
        ("tol", 0.0, 1e-12),
        ("max_iter", 0, 1),
        ("reg_covar", -1e-9, 0.0),
        ("threshold", 0.0, 1e-9),
        ("threshold", 1.0, 1 - 1e-9),
        ("max_windows", 0, 1),
        ("engine", "slow", "reference"),
        ("hop_s", 0.0, 1e-3),
    ],
)
def test_config_bounds_are_exact(field: str, bad: object, good: object) -> None:
    with pytest.raises(ValueError, match=field):
        LocalizeConfig(**{field: bad})
    assert getattr(LocalizeConfig(**{field: good}), field) == good
    assert getattr(LocalizeConfig().with_(**{field: good}), field) == good
    with pytest.raises(ValueError, match=field):
        LocalizeConfig().with_(**{field: bad})


def test_a_frame_at_the_threshold_is_a_candidate() -> None:
    post = np.array([[0.1, 0.45, 0.45, 0.2, 0.9, 0.44999999]])
    smoothed = np.zeros_like(post)
    mask, fallback = candidate_masks(post, smoothed, 0.45)
    assert mask.tolist() == [[False, True, True, False, True, False]]
    assert fallback.tolist() == [False]


def test_every_frame_at_the_threshold_takes_the_fallback() -> None:
    # all frames reach 0.45: no split, so the peak-centred run of the smoothed trace
    post = np.full((1, 5), 0.45)
    smoothed = np.array([[0.0, 0.0, 4.0, 2.0, 0.0]])  # median 0, level 2: frames 2..3
    mask, fallback = candidate_masks(post.copy(), smoothed, 0.45)
    assert fallback.tolist() == [True]
    assert mask.tolist() == [[False, False, True, True, False]]


def test_windows_with_the_default_threshold_and_peak_weight() -> None:
    # runs [1, 3) and [4, 5); scores mean(post) + 0.3 * max(smoothed)
    post = np.array([[0.1, 0.45, 0.5, 0.2, 0.9]])
    smoothed = np.array([[0.0, 1.0, 2.0, 0.0, 0.5]])
    windows, fallback = windows_with_fallback(post, smoothed, np.array([np.inf]),
                                              LocalizeConfig())
    assert fallback.tolist() == [False]
    expected = [[1.0, 3.0, 0.475 + 0.3 * 2.0], [4.0, 5.0, 0.9 + 0.3 * 0.5]]
    np.testing.assert_allclose(windows[0], expected, rtol=0, atol=1e-15)


def test_runs_past_the_end_take_the_fallback() -> None:
    # the only run [3, 5) starts at 3 s, at the 3-s duration: it vanishes; the fallback
    # run around the peak (frame 4, level (5 + 0) / 2) is [3, 5), clipped to [3, 3) ... also
    # gone, so the windows come out empty but flagged.
    post = np.array([[0.0, 0.0, 0.0, 0.9, 0.9]])
    smoothed = np.array([[0.0, 0.0, 0.0, 3.0, 5.0]])
    windows, fallback = windows_with_fallback(post, smoothed, np.array([3.0]),
                                              LocalizeConfig())
    assert fallback.tolist() == [True]
    assert windows[0].shape == (0, 3)
    # with 3.5 s the candidate run survives, clipped to [3, 3.5)
    windows, fallback = windows_with_fallback(post, smoothed, np.array([3.5]),
                                              LocalizeConfig())
    assert fallback.tolist() == [False]
    np.testing.assert_allclose(windows[0], [[3.0, 3.5, 0.9 + 0.3 * 5.0]], rtol=0, atol=1e-15)


def test_fallback_level_is_max_plus_median_over_two() -> None:
    # max 10, median 0 -> level 5: frames 5..7 (6, 10, 7) -> [5, 8).
    # (The mean, 23 / 11, would give level 6.05 and the run [6, 8).)
    s = np.array([0, 0, 0, 0, 0, 6, 10, 7, 0, 0, 0], dtype=float)
    assert peak_run(s).tolist() == [[5, 8]]


def test_fallback_run_keeps_frames_at_the_level() -> None:
    # max 10, median 0 -> level exactly 5: frame 5 (5.0) stays in, frame 8 (4.9) does not
    s = np.array([0, 0, 0, 0, 0, 5, 10, 7, 4.9, 0, 0], dtype=float)
    assert peak_run(s).tolist() == [[5, 8]]
    # odd one out: the median is the middle value, not the mean (max 8, median 2, level 5)
    s = np.array([2, 2, 2, 8, 6, 5, 4, 2, 2], dtype=float)
    assert peak_run(s).tolist() == [[3, 6]]
    # the run reaches both ends
    assert peak_run(np.array([9.0, 9.0, 9.0, 1.0])).tolist() == [[0, 3]]
    assert peak_run(np.array([1.0, 9.0, 9.0, 9.0])).tolist() == [[1, 4]]
    # the first maximum is the peak
    assert peak_run(np.array([0.0, 4.0, 0.0, 0.0, 4.0, 0.0, 0.0])).tolist() == [[1, 2]]


def test_peak_run_mask_row_by_row() -> None:
    s = np.array([[0, 0, 0, 0, 0, 5, 10, 7, 4.9, 0, 0], [3.0] * 11])
    mask = peak_run_mask(s)
    assert mask.astype(int).tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0], [1] * 11]
    assert mask.dtype == np.bool_


def test_frame_runs_by_hand() -> None:
    mask = np.array([[1, 1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
                    dtype=bool)
    runs = frame_runs(mask)
    assert runs.rows.tolist() == [0, 0, 0, 2]
    assert runs.starts.tolist() == [0, 3, 6, 0]
    assert runs.stops.tolist() == [2, 4, 7, 7]


def test_score_runs_by_hand() -> None:
    post = np.array([[0.2, 0.6, 1.0, 0.0], [0.5, 0.5, 0.7, 0.9]])
    smoothed = np.array([[1.0, 3.0, 2.0, 9.0], [-1.0, -2.0, -0.5, -3.0]])
    runs = Runs(np.array([0, 0, 1]), np.array([0, 3, 1]), np.array([3, 4, 4]))
    scores = score_runs(runs, post, smoothed, 0.3)
    expected = [0.6 + 0.3 * 3.0, 0.0 + 0.3 * 9.0, 0.7 + 0.3 * -0.5]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-15)
    assert score_runs(Runs(*(np.empty(0, dtype=np.int64),) * 3), post, smoothed, 0.3).shape \
        == (0,)


def test_runs_to_windows_ranks_clips_and_cuts() -> None:
    runs = Runs(np.array([0, 0, 0, 1]), np.array([0, 4, 8, 2]), np.array([2, 6, 10, 3]))
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    # row 0 lasts 9 s: [8, 10) becomes [8, 9); ties (0.5) in time order; hop 0.5 s
    w = runs_to_windows(runs, scores, np.array([4.5, np.inf]), hop_s=0.5, max_windows=2)
    assert w[0].tolist() == [[2.0, 3.0, 0.9], [0.0, 1.0, 0.5]]
    assert w[1].tolist() == [[1.0, 1.5, 0.1]]
    w = runs_to_windows(runs, scores, np.array([4.2, 1.0]), hop_s=0.5, max_windows=10)
    assert w[0].tolist() == [[2.0, 3.0, 0.9], [0.0, 1.0, 0.5], [4.0, 4.2, 0.5]]
    assert w[1].tolist() == []  # starts at 1.0 s, the duration: vanished
    assert w[1].shape == (0, 3)


def test_smoothing_width_is_sigma_1_5_by_default() -> None:
    # an impulse smoothed with sigma 1.5, truncate 4 (radius int(6.5) = 6): the kernel itself
    x = np.zeros(31)
    x[15] = 1.0
    k = np.exp(-0.5 * (np.arange(-6, 7) / 1.5) ** 2)
    for smoothed in (smooth(x), smooth(x, LocalizeConfig().sigma_frames)):
        np.testing.assert_allclose(smoothed[9:22], k / k.sum(), rtol=1e-14, atol=0)
    assert smooth(x, 0).tolist() == x.tolist()
    # integers come back as float64, smoothed or not
    assert smooth(np.array([1, 2, 3]), 0).dtype == np.float64
    assert smooth(np.array([1, 2, 3])).dtype == np.float64


def test_constant_means_a_spread_within_1e_12_of_the_largest_magnitude() -> None:
    rows = np.array([
        [0.5, 0.5 + 1.5e-12],  # spread 1.5e-12 > 1e-12 * max(1, 0.5): not constant
        [0.0, 2.0 ** -40],  # spread 9.09e-13 <= 1e-12: constant
        [1e6, 1e6 + 2.0 ** -24],  # spread 5.96e-8 <= 1e-12 * 1e6: constant
        [0.0, 2.0 ** -20],  # spread 9.5e-7: not constant, whatever the other rows hold
        [3.0, 3.0],
    ])
    assert is_constant(rows).tolist() == [False, True, True, False, True]
    # at the bound exactly: 1e-12 = 1e-12 * max(1, 1e-12)
    assert is_constant(np.array([[0.0, 1e-12], [1e-12, 0.0]])).tolist() == [True, True]


def test_runs_to_windows_keeps_ten_by_default() -> None:
    runs = Runs(np.zeros(12, dtype=np.int64), np.arange(0, 24, 2), np.arange(1, 25, 2))
    scores = np.arange(12, dtype=float)
    (w,) = runs_to_windows(runs, scores, np.array([np.inf]))
    assert w[:, 2].tolist() == [11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0]
    assert w[0, :2].tolist() == [22.0, 23.0]  # hop 1 s by default
