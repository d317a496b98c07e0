"""Localisation on blocks of equal-length traces against the per-trace oracle
(``tests/localize_oracle.py``), bit for bit."""

from __future__ import annotations

import importlib

import localize_oracle as oracle
import numpy as np
import pytest
from localize_oracle import candidate_runs, localize_each
from scipy.special import logsumexp

from audiomoment import LocalizeConfig, localize, localize_trace, localize_traces
from audiomoment.errors import InputError
from audiomoment.method.localize import LocalizationResult, is_constant, smooth
from audiomoment.method.mixture import log_sum_exp_pair, posterior
from audiomoment.method.moments import Runs, frame_runs, runs_to_windows, score_runs
from audiomoment.method.traces import contrast_trace

FAST = LocalizeConfig(engine="fast")
# The package exports a function of the same name: reach the module itself.
localize_module = importlib.import_module("audiomoment.method.localize")


def mixed_traces(n: int, seed: int) -> tuple[list[np.ndarray], list[float | None]]:
    """Traces of 2-300 frames: noise, events (some at the very end), constants, ties."""
    rng = np.random.default_rng(seed)
    traces: list[np.ndarray] = []
    durations: list[float | None] = []
    # few distinct lengths, so that blocks hold several traces
    lengths = rng.choice([2, 3, 5, 17, 60, 61, 120, 300], size=n)
    for i, t_len in enumerate(lengths.tolist()):
        kind = i % 8
        x = 0.1 + rng.normal(0.0, 0.03, t_len)
        duration: float | None = float(t_len)
        if kind == 0:  # one clear event
            a = int(rng.integers(0, t_len))
            x[a : a + int(rng.integers(1, 15))] += rng.uniform(0.05, 0.3)
        elif kind == 1:  # event at the end, fractional duration
            x[max(0, t_len - int(rng.integers(1, 8))) :] += 0.3
            duration = t_len - float(rng.uniform(0.05, 0.95))
        elif kind == 2:  # every run past a short recording's end
            x[t_len // 2 :] += 0.3
            duration = float(rng.uniform(0.0, t_len / 2))
        elif kind == 3:  # constant
            x = np.full(t_len, float(rng.choice([0.0, 0.2, -3.0])))
        elif kind == 4:  # repeated values (ties in the posterior and the scores)
            x = np.repeat(rng.normal(0.0, 1.0, 3), t_len)[:t_len].copy()
        elif kind == 5:  # no duration
            duration = None
        elif kind == 6:  # several events, duration a little longer than the frames
            for _ in range(int(rng.integers(1, 5))):
                a = int(rng.integers(0, t_len))
                x[a : a + int(rng.integers(1, 6))] += rng.uniform(0.02, 0.2)
            duration = t_len + float(rng.uniform(0.0, 0.9))
        traces.append(x)
        durations.append(duration)
    return traces, durations


def assert_same(got: list[LocalizationResult], want: list[LocalizationResult]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        for field in ("windows", "trace", "smoothed", "posterior"):
            a, b = getattr(g, field), getattr(w, field)
            assert a.shape == b.shape and np.array_equal(a, b), (i, field)
        for field in ("weights", "means", "variances"):
            assert np.array_equal(getattr(g, field), getattr(w, field), equal_nan=True), (i, field)
        assert g.delta == w.delta, i
        assert (g.fallback, g.degenerate) == (w.fallback, w.degenerate), i


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"max_windows": 1},
        {"threshold": 0.9999},  # many rows fall back
        {"threshold": 1e-300},  # every frame above: every fitted row falls back
        {"sigma_frames": 0.0, "hop_s": 0.5},
    ],
)
def test_blocks_equal_per_trace_path(changes: dict) -> None:
    traces, durations = mixed_traces(320, seed=1)
    config = FAST.with_(**changes)
    got = localize_traces(traces, durations, config)
    assert_same(got, localize_each(traces, durations, config))
    fitted = [r for r in got if not r.degenerate]
    assert any(r.fallback for r in fitted) and any(r.degenerate for r in got)
    if changes.get("threshold") != 1e-300:
        assert any(not r.fallback for r in fitted)
    # rows whose runs all lay past the recording's end, then fell back
    threshold = config.threshold
    past_end = [
        r
        for r in fitted
        if r.fallback and not candidate_runs(r.posterior, r.smoothed, threshold)[1]
    ]
    assert past_end or changes.get("threshold") == 1e-300
    assert max(len(r.windows) for r in got) <= config.max_windows


def test_reference_engine_blocks_equal_per_trace_path() -> None:
    from threadpoolctl import threadpool_limits

    traces, durations = mixed_traces(60, seed=2)
    # up to 256 frames scikit-learn's k-means runs on one thread anyway: pin it there
    short = [i for i, t in enumerate(traces) if len(t) <= 256][:24]
    traces, durations = [traces[i] for i in short], [durations[i] for i in short]
    config = LocalizeConfig(engine="reference")
    importlib.import_module("sklearn.cluster._k_means_lloyd")  # only loaded runtimes are limited
    with threadpool_limits(limits=1, user_api="openmp"):
        got = localize_traces(traces, durations, config)
        want = localize_each(traces, durations, config)
    assert_same(got, want)
    assert any(r.degenerate for r in got) and any(not r.fallback for r in got)


def test_results_do_not_depend_on_batch_order_or_block_size(monkeypatch) -> None:
    traces, durations = mixed_traces(200, seed=3)
    whole = localize_traces(traces, durations, FAST)
    perm = np.random.default_rng(0).permutation(len(traces)).tolist()
    shuffled = localize_traces([traces[i] for i in perm], [durations[i] for i in perm], FAST)
    assert_same(shuffled, [whole[i] for i in perm])
    assert_same(localize_traces(traces[50:90], durations[50:90], FAST), whole[50:90])
    monkeypatch.setattr(localize_module, "BLOCK_ELEMENTS", 100)
    assert_same(localize_traces(traces, durations, FAST), whole)


def test_empty_batch_and_no_durations() -> None:
    assert localize_traces([], None, FAST) == []
    traces, _ = mixed_traces(30, seed=4)
    assert_same(localize_traces(traces, None, FAST), localize_each(traces, None, FAST))


def test_one_trace_is_a_batch_of_one() -> None:
    traces, durations = mixed_traces(24, seed=8)
    whole = localize_traces(traces, durations, FAST)
    for i, (trace, duration) in enumerate(zip(traces, durations, strict=True)):
        one = localize_trace(trace, duration, FAST)
        assert_same([one], [whole[i]])
        assert_same([one], localize_each([trace], [duration], FAST))
    # from embeddings: the trace built, then the same path
    rng = np.random.default_rng(9)
    audio, q, n = rng.normal(size=(40, 8)), rng.normal(size=8), rng.normal(size=8)
    assert_same(
        [localize(audio, q, n, FAST, duration_s=39.5)],
        localize_each([contrast_trace(audio, q, n)], [39.5], FAST),
    )


def test_an_equal_length_array_is_a_list_of_its_rows() -> None:
    rng = np.random.default_rng(10)
    block = 0.1 + rng.normal(0.0, 0.03, (12, 50))
    block[:, 20:26] += 0.2
    block[4] = 0.3  # constant
    assert_same(localize_traces(block, None, FAST), localize_each(list(block), None, FAST))


def test_bad_traces_report_the_first_one() -> None:
    ok = np.linspace(0.0, 1.0, 10)
    with pytest.raises(InputError, match="trace 1: contains NaN"):
        localize_traces([ok, np.array([0.1, np.inf, 0.3]), np.ones((2, 3))])
    with pytest.raises(InputError, match="trace 1: expected a 1-D array"):
        localize_traces([ok, np.ones((2, 3)), np.array([0.1, np.nan, 0.3])])
    with pytest.raises(InputError, match="trace 0: needs at least 2 frames"):
        localize_traces([np.array([0.2]), ok])
    with pytest.raises(InputError, match="trace 2: contains NaN"):
        localize_traces(np.stack([ok, ok, np.where(ok > 0.5, np.nan, ok)]))
    with pytest.raises(InputError, match="trace 0: needs at least 2 frames"):
        localize_traces(np.ones((3, 1)))
    with pytest.raises(ValueError, match="got 2 traces but 1 durations"):
        localize_traces([ok, ok], [10.0])


def test_row_steps_equal_their_one_trace_forms() -> None:
    rng = np.random.default_rng(5)
    block = rng.normal(0.0, 1.0, (50, 33))
    block[3] = 0.7
    block[7] = np.repeat([0.1, 0.4, 0.2], 11)
    for sigma in (0.0, 0.5, 1.5, 7.0):
        rows = smooth(block, sigma)
        assert all(
            np.array_equal(r, oracle.smooth(b, sigma)) for r, b in zip(rows, block, strict=True)
        )
        assert all(np.array_equal(smooth(b, sigma), oracle.smooth(b, sigma)) for b in block)
    flags = is_constant(block)
    assert flags.tolist() == [oracle.is_constant(b) for b in block]
    assert flags[3] and not flags[7]

    mask = rng.random((50, 33)) < 0.4
    mask[0] = False
    mask[1] = True
    runs = frame_runs(mask)
    post = rng.random((50, 33))
    scores = score_runs(runs, post, block, 0.3)
    durations = rng.choice([np.inf, 10.5, 33.0, 0.0, 20.0], size=50)
    windows = runs_to_windows(runs, scores, durations, 0.5, 3)
    for r in range(50):
        expected_runs = oracle.frame_runs(mask[r])
        mine = np.stack([runs.starts[runs.rows == r], runs.stops[runs.rows == r]], axis=1)
        assert np.array_equal(mine, expected_runs)
        expected_scores = oracle.score_runs(expected_runs, post[r], block[r], 0.3)
        assert np.array_equal(scores[runs.rows == r], expected_scores)
        limit = None if np.isinf(durations[r]) else float(durations[r])
        expected = oracle.runs_to_windows(expected_runs, expected_scores, limit, 0.5, 3)
        assert np.array_equal(windows[r], expected)


def test_row_ranking_keeps_time_order_on_ties() -> None:
    runs = Runs(np.array([0, 0, 0, 1, 1]), np.array([0, 4, 8, 1, 5]), np.array([2, 6, 9, 3, 7]))
    scores = np.array([0.5, 0.9, 0.5, 0.2, 0.2])
    out = runs_to_windows(runs, scores, np.array([np.inf, 6.0]), 1.0, 2)
    assert out[0].tolist() == [[4.0, 6.0, 0.9], [0.0, 2.0, 0.5]]
    assert out[1].tolist() == [[1.0, 3.0, 0.2], [5.0, 6.0, 0.2]]


def test_block_posterior_equals_scipy_posterior() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 1.0, (40, 25))
    means = rng.normal(0.0, 1.0, (40, 2))
    variances = rng.uniform(1e-6, 2.0, (40, 2))
    weights = rng.dirichlet([1.0, 1.0], 40)
    means[5] = [0.3, 0.3]  # equal components: both log densities tie
    variances[5] = [0.1, 0.1]
    weights[5] = [0.5, 0.5]
    weights[6] = [1.0, 0.0]  # a zero weight: log 0 = -inf on one side
    with np.errstate(divide="ignore"):
        block = posterior(x, weights, means, variances)
        for r in range(40):
            one = oracle.posterior(x[r], weights[r], means[r], variances[r])
            assert np.array_equal(block[r], one), r
            # one trace is a block of one
            assert np.array_equal(posterior(x[r], weights[r], means[r], variances[r]), one), r
    np.testing.assert_allclose(block[5], 0.5, rtol=1e-12)
    assert np.all(block[6] == 1.0)


def test_log_sum_exp_pair_equals_scipy() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 1.0, (20000, 2)) * rng.choice([1e-8, 1.0, 40.0, 700.0], (20000, 1))
    a[::5, 1] = a[::5, 0]  # ties
    a[1::7, 0] = -np.inf  # one side -inf, the other finite
    assert np.array_equal(log_sum_exp_pair(a[:, 0], a[:, 1]), logsumexp(a, axis=-1))
    b = a.copy()
    b[2, :] = -np.inf
    b[3] = [np.inf, 1.0]
    b[4] = [np.nan, 0.0]
    b[5] = [np.inf, np.inf]
    b[6] = [-np.inf, np.inf]
    assert np.array_equal(
        log_sum_exp_pair(b[:, 0], b[:, 1]), logsumexp(b, axis=-1), equal_nan=True
    )


def test_length_blocks_by_hand() -> None:
    from audiomoment.method.localize import length_blocks

    def blocks(lengths: list[int], budget: int) -> list[list[int]]:
        return [b.tolist() for b in length_blocks(np.array(lengths, dtype=np.int64), budget)]

    # shortest first; equal lengths keep input order; rows per block = budget // length
    assert blocks([4, 4, 4, 4, 4], 8) == [[0, 1], [2, 3], [4]]
    assert blocks([6, 3, 6, 3], 100) == [[1, 3], [0, 2]]
    # a trace longer than the budget still gets a block, alone
    assert blocks([10, 10, 10], 5) == [[0], [1], [2]]
    assert blocks([], 5) == []
    # many equal lengths: each block ascending (a stable sort)
    lengths = [5] * 100 + [3] * 100
    assert blocks(lengths, 10**6) == [list(range(100, 200)), list(range(100))]
