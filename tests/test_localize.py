"""Each localisation step on hand-built traces, and the whole method against a direct,
loop-by-loop scikit-learn computation."""

from __future__ import annotations

import warnings

import localize_oracle as oracle
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from audiomoment import LocalizeConfig, localize, localize_trace, localize_traces
from audiomoment.method.localize import candidate_masks
from audiomoment.method.mixture import MixtureFit, posterior
from audiomoment.method.moments import Runs, frame_runs, peak_run, runs_to_windows, score_runs
from audiomoment.method.traces import contrast_trace, neutral_embedding, similarity_trace


def one_row(starts_stops: list[list[int]]) -> Runs:
    """Runs [first, last + 1] of a one-row block."""
    runs = np.array(starts_stops, dtype=np.int64).reshape(-1, 2)
    return Runs(np.zeros(len(runs), dtype=np.int64), runs[:, 0], runs[:, 1])


def run_list(runs: Runs, row: int = 0) -> list[list[int]]:
    """The runs of one row of a block as [[first, last + 1], ...]."""
    sel = runs.rows == row
    return np.stack([runs.starts[sel], runs.stops[sel]], axis=1).tolist()


def test_frame_runs_hand_cases():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    expected = [[1, 3], [5, 6], [7, 10]]
    assert oracle.frame_runs(mask).tolist() == expected
    assert oracle.frame_runs(np.zeros(4, bool)).shape == (0, 2)
    assert oracle.frame_runs(np.ones(3, bool)).tolist() == [[0, 3]]
    assert run_list(frame_runs(mask[None])) == expected
    assert len(frame_runs(np.zeros((1, 4), bool)).rows) == 0
    assert run_list(frame_runs(np.ones((1, 3), bool))) == [[0, 3]]
    # a block: rows do not leak into each other, runs come by row then time
    block = np.stack([mask, ~mask, np.zeros(10, bool), np.ones(10, bool)])
    runs = frame_runs(block)
    assert runs.rows.tolist() == [0, 0, 0, 1, 1, 1, 3]
    assert run_list(runs, 1) == [[0, 1], [3, 5], [6, 7]]
    assert run_list(runs, 2) == [] and run_list(runs, 3) == [[0, 10]]


def test_score_runs_hand_case():
    post = np.array([0.1, 0.5, 0.9, 0.2, 0.6, 0.8, 1.0])
    sm = np.array([0.0, 0.2, 0.4, 0.1, 0.3, 0.7, 0.5])
    # run [1,3): mean(0.5, 0.9) = 0.7, max sm = 0.4 -> 0.7 + 0.3 * 0.4 = 0.82
    # run [4,7): mean(0.6, 0.8, 1.0) = 0.8, max sm = 0.7 -> 0.8 + 0.21 = 1.01
    runs = [[1, 3], [4, 7]]
    np.testing.assert_allclose(
        score_runs(one_row(runs), post[None], sm[None], 0.3), [0.82, 1.01], rtol=1e-12
    )
    np.testing.assert_allclose(
        oracle.score_runs(np.array(runs), post, sm, 0.3), [0.82, 1.01], rtol=1e-12
    )
    # the second row of a block: the same runs score the same
    two = Runs(np.array([1, 1]), np.array([1, 4]), np.array([3, 7]))
    block_post, block_sm = np.stack([post[::-1], post]), np.stack([sm[::-1], sm])
    np.testing.assert_allclose(
        score_runs(two, block_post, block_sm, 0.3), [0.82, 1.01], rtol=1e-12
    )


@pytest.mark.parametrize("fallback_run", [peak_run, oracle.peak_run], ids=["package", "oracle"])
def test_peak_run_fallback_rule(fallback_run):
    sm = np.array([0.0, 0.1, 0.5, 0.9, 0.6, 0.2, 0.0, 0.8])
    # max 0.9, median of sorted [0,0,0.1,0.2,0.5,0.6,0.8,0.9] = (0.2+0.5)/2 = 0.35
    # level (0.9 + 0.35)/2 = 0.625: frames 2 (0.5) and 4 (0.6) fall below -> run [3, 4)
    assert fallback_run(sm).tolist() == [[3, 4]]
    sm2 = np.array([0.0, 0.7, 0.8, 0.9, 0.7, 0.0])
    # median = (0.7 + 0.7)/2 = 0.7, level 0.8: frames 2..3 -> [2, 4)
    assert fallback_run(sm2).tolist() == [[2, 4]]
    assert fallback_run(np.full(5, 0.3)).tolist() == [[0, 5]]


def windows_of_one_row(runs, scores, duration_s, hop_s=1.0, max_windows=10):
    """The package's ranking for a one-row block, as the oracle's signature."""
    limit = np.array([np.inf if duration_s is None else duration_s])
    (out,) = runs_to_windows(one_row(runs.tolist()), scores, limit, hop_s, max_windows)
    return out


@pytest.mark.parametrize(
    "ranking", [windows_of_one_row, oracle.runs_to_windows], ids=["package", "oracle"]
)
def test_runs_to_windows_ranks_and_clips(ranking):
    runs = np.array([[0, 2], [5, 8], [58, 60]])
    scores = np.array([0.5, 0.9, 0.7])
    w = ranking(runs, scores, duration_s=59.5, hop_s=1.0, max_windows=10)
    assert w.tolist() == [[5.0, 8.0, 0.9], [58.0, 59.5, 0.7], [0.0, 2.0, 0.5]]
    # a run starting at or after the duration vanishes
    w = ranking(runs, scores, duration_s=57.0)
    assert w[:, :2].tolist() == [[5.0, 8.0], [0.0, 2.0]]
    assert ranking(runs, scores, None, max_windows=1).tolist() == [[5.0, 8.0, 0.9]]
    # ties keep time order
    tied = ranking(runs, np.array([0.5, 0.5, 0.5]), None)
    assert tied[:, 0].tolist() == [0.0, 5.0, 58.0]
    # frames of half a second
    assert ranking(runs, scores, None, hop_s=0.5)[:, :2].tolist() == [
        [2.5, 4.0], [29.0, 30.0], [0.0, 1.0]
    ]


def test_runs_to_windows_keeps_rows_apart():
    runs = Runs(np.array([0, 0, 2]), np.array([0, 5, 1]), np.array([2, 8, 3]))
    out = runs_to_windows(runs, np.array([0.5, 0.9, 0.7]), np.array([6.0, 10.0, np.inf]))
    assert [w.tolist() for w in out] == [[[5.0, 6.0, 0.9], [0.0, 2.0, 0.5]], [], [[1.0, 3.0, 0.7]]]


def test_relevant_component_is_the_higher_mean():
    fit = MixtureFit(
        weights=np.array([[0.8, 0.2], [0.3, 0.7]]),
        means=np.array([[0.1, 0.5], [0.4, -0.2]]),
        variances=np.array([[0.01, 0.02], [0.03, 0.04]]),
        lower_bound=np.zeros(2),
    )
    rel = fit.relevant_first()
    assert rel.means.tolist() == [[0.5, 0.1], [0.4, -0.2]]
    assert rel.weights.tolist() == [[0.2, 0.8], [0.3, 0.7]]
    assert rel.variances.tolist() == [[0.02, 0.01], [0.03, 0.04]]


def test_posterior_matches_bayes_rule():
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    w, mu, var = np.array([0.3, 0.7]), np.array([1.0, 0.0]), np.array([0.5, 2.0])

    def pdf(v, m, s2):
        return np.exp(-((v - m) ** 2) / (2 * s2)) / np.sqrt(2 * np.pi * s2)

    num = 0.3 * pdf(x, 1.0, 0.5)
    expected = num / (num + 0.7 * pdf(x, 0.0, 2.0))
    np.testing.assert_allclose(posterior(x, w, mu, var), expected, rtol=1e-12)
    np.testing.assert_allclose(oracle.posterior(x, w, mu, var), expected, rtol=1e-12)
    # a block of two: the second row's parameters swapped give 1 - gamma
    block = posterior(np.stack([x, x]), np.stack([w, w[::-1]]), np.stack([mu, mu[::-1]]),
                      np.stack([var, var[::-1]]))
    np.testing.assert_allclose(block[0], expected, rtol=1e-12)
    np.testing.assert_allclose(block[1], 1 - expected, rtol=1e-12)
    assert posterior(x, w, mu, var, component=1) == pytest.approx(1 - expected, rel=1e-12)


def test_traces_hand_case():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    q = np.array([1.0, 0.0])
    n = np.array([0.0, 3.0])
    np.testing.assert_allclose(similarity_trace(a, q), [1.0, 0.0, 1 / np.sqrt(2)])
    # (q - n) with n normalised = (1, -1)
    np.testing.assert_allclose(contrast_trace(a, q, n), [1.0, -1.0, 0.0], atol=1e-15)
    phrases = np.array([[2.0, 0.0], [0.0, 5.0], [3.0, 0.0]])
    # normalised rows: (1,0),(0,1),(1,0) -> mean (2/3, 1/3) -> normalised (2, 1)/sqrt(5)
    np.testing.assert_allclose(neutral_embedding(phrases), np.array([2.0, 1.0]) / np.sqrt(5))


def test_clear_event_is_found_and_clipped():
    rng = np.random.default_rng(3)
    trace = rng.normal(0.0, 0.01, 60)
    trace[20:30] += 0.3
    result = localize_trace(trace, duration_s=60)
    top = result.windows[0]
    # smoothing (sigma 1.5 frames) spreads the step edges over a few frames
    assert 16 <= top[0] <= 20 and 30 <= top[1] <= 34
    assert result.means[0] > result.means[1]
    assert result.delta == pytest.approx(result.means[0] - result.means[1])
    assert not result.fallback
    # an event at the very end is clipped to a non-integer duration
    trace2 = rng.normal(0.0, 0.01, 60)
    trace2[52:] += 0.3
    end = localize_trace(trace2, duration_s=59.4).windows[0]
    assert end[1] == pytest.approx(59.4)


def test_candidate_runs_and_fallback_triggers():
    sm = np.array([0.0, 0.1, 0.5, 0.9, 0.6, 0.2, 0.0, 0.8])
    mixed = np.array([0.1, 0.2, 0.5, 0.9, 0.44, 0.46, 0.1, 0.0])
    posts = [mixed, np.full(8, 0.44), np.full(8, 0.45), np.ones(8)]
    runs, fb = oracle.candidate_runs(mixed, sm, 0.45)
    assert runs.tolist() == [[2, 4], [5, 6]] and not fb
    for post in posts[1:]:
        runs, fb = oracle.candidate_runs(post, sm, 0.45)
        assert fb and runs.tolist() == [[3, 4]]  # peak-centred run (see the peak_run test)
    # the package, all four rows as one block
    mask, fallback = candidate_masks(np.stack(posts), np.stack([sm] * 4), 0.45)
    assert fallback.tolist() == [False, True, True, True]
    runs = frame_runs(mask)
    assert run_list(runs, 0) == [[2, 4], [5, 6]]
    assert all(run_list(runs, r) == [[3, 4]] for r in (1, 2, 3))


def test_fallback_end_to_end_scores_the_peak_run():
    rng = np.random.default_rng(5)
    trace = rng.normal(0.0, 0.05, 40)
    cfg = LocalizeConfig(threshold=1 - 1e-15)  # nothing reaches it
    res = localize_trace(trace, 40, cfg)
    assert res.fallback and not res.degenerate
    # the expected run from the oracle's rule on SciPy's smoothing (not the package's)
    smoothed = oracle.smooth(trace, 1.5)
    ((a, b),) = oracle.peak_run(smoothed).tolist()
    level = (smoothed.max() + np.median(smoothed)) / 2
    assert smoothed[a:b].min() >= level and a < int(np.argmax(smoothed)) + 1 <= b
    assert (a == 0 or smoothed[a - 1] < level) and (b == 40 or smoothed[b] < level)
    expected_score = res.posterior[a:b].mean() + 0.3 * smoothed[a:b].max()
    assert res.windows.tolist() == [[float(a), float(b), pytest.approx(expected_score)]]


def test_constant_trace_is_degenerate_fallback_over_everything():
    res = localize_trace(np.full(30, 0.2), duration_s=29.5)
    assert res.degenerate and res.fallback
    assert res.windows[:, :2].tolist() == [[0.0, 29.5]]


def test_bad_traces_raise():
    with pytest.raises(ValueError, match="at least 2 frames"):
        localize_trace(np.array([0.3]))
    with pytest.raises(ValueError, match="NaN"):
        localize_trace(np.array([0.3, np.nan, 0.1]))


def test_localize_from_embeddings_equals_trace_path():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(50, 16))
    q, n = rng.normal(size=16), rng.normal(size=16)
    r1 = localize(audio, q, n, duration_s=50)
    r2 = localize_trace(contrast_trace(audio, q, n), 50)
    np.testing.assert_array_equal(r1.windows, r2.windows)
    # the traces written out: unit rows a_t, c_t = a_t . (q/|q| - n/|n|), s_t = a_t . q/|q|
    unit = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    contrast = unit @ (q / np.linalg.norm(q) - n / np.linalg.norm(n))
    plain = unit @ (q / np.linalg.norm(q))
    np.testing.assert_allclose(r1.trace, contrast, rtol=1e-12, atol=1e-14)
    # without a neutral embedding: System 2, the plain similarity trace
    s2 = localize(audio, q, None, duration_s=50)
    np.testing.assert_allclose(s2.trace, plain, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(s2.windows, localize_trace(s2.trace, 50).windows)


# ---- the whole method, written out directly with scikit-learn -------------------------


def direct_windows(trace: np.ndarray, duration: float, max_windows: int = 10) -> list:
    """The method as the report describes it, step by step, with plain loops."""
    sm = gaussian_filter1d(trace, 1.5)
    gm = GaussianMixture(n_components=2, n_init=5, random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(sm.reshape(-1, 1))
    rel = int(np.argmax(gm.means_[:, 0]))
    gamma = gm.predict_proba(sm.reshape(-1, 1))[:, rel]
    above = [g >= 0.45 for g in gamma]
    runs = []
    t = 0
    while t < len(above):
        if above[t]:
            s = t
            while t < len(above) and above[t]:
                t += 1
            runs.append((s, t))
        else:
            t += 1
    if not runs or all(above):
        peak = int(np.argmax(sm))
        level = (sm.max() + np.median(sm)) / 2
        a = peak
        while a > 0 and sm[a - 1] >= level:
            a -= 1
        b = peak + 1
        while b < len(sm) and sm[b] >= level:
            b += 1
        runs = [(a, b)]
    cands = []
    for a, b in runs:
        start, end = min(a, duration), min(b, duration)
        if end > start:
            score = float(np.mean(gamma[a:b]) + 0.3 * np.max(sm[a:b]))
            cands.append((start, end, score))
    cands.sort(key=lambda c: -c[2])
    return cands[:max_windows]


def clap_like_traces(n: int, seed: int) -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(seed)
    traces, durations = [], []
    for _ in range(n):
        duration = float(rng.choice([rng.integers(5, 300), rng.uniform(10, 120)]))
        t_len = max(2, int(np.floor(duration)))
        base = 0.1 + 0.02 * np.cumsum(rng.normal(0, 0.3, t_len)) / np.sqrt(t_len)
        trace = base + rng.normal(0, 0.03, t_len)
        for _ in range(rng.integers(0, 4)):
            a = rng.integers(0, t_len)
            trace[a : a + rng.integers(1, 15)] += rng.uniform(0.02, 0.2)
        traces.append(trace)
        durations.append(duration)
    return traces, durations


def test_matches_direct_scikit_learn_computation_on_random_traces():
    traces, durations = clap_like_traces(80, seed=11)
    results = localize_traces(traces, durations, LocalizeConfig(engine="reference"))
    for trace, duration, res in zip(traces, durations, results, strict=True):
        expected = direct_windows(trace, duration)
        assert len(res.windows) == len(expected)
        for got, exp in zip(res.windows, expected, strict=True):
            assert got[0] == exp[0] and got[1] == exp[1]
            assert got[2] == pytest.approx(exp[2], rel=1e-9, abs=1e-12)


def test_localize_passes_the_duration_and_the_configuration():
    # 12 windows; the query matches windows 9..11 (cosine 1), the rest are orthogonal to it
    audio = np.zeros((12, 4))
    audio[:, 1] = 1.0
    audio[9:, 0] = 1.0
    audio[9:, 1] = 0.0
    query = np.array([1.0, 0.0, 0.0, 0.0])
    cfg = LocalizeConfig(max_windows=1, sigma_frames=0)
    res = localize(audio, query, config=cfg, duration_s=10.5)
    # trace 0 x 9, 1 x 3: no smoothing; the run [9, 12) is clipped to the 10.5-s duration
    assert res.trace.tolist() == [0.0] * 9 + [1.0] * 3
    assert res.smoothed.tolist() == res.trace.tolist()
    assert res.windows[:, :2].tolist() == [[9.0, 10.5]]
    assert localize(audio, query, config=cfg).windows[:, :2].tolist() == [[9.0, 12.0]]
