"""The batched EM engine against scikit-learn's path (``method.mixture.fit_reference``)."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.evaluation.metrics import HEADLINE_KEYS, evaluate
from audiomoment.method.em_fast import (
    N_LOCAL_TRIALS,
    duplicate_sources,
    first_centre_indices,
    fit_fast,
    initialisation_draws,
    kmeans_initialisations,
    lloyd_update,
    pad_time_major,
    plan_chunks,
    relocate_and_average,
    select_initialisation,
    time_sums,
)
from audiomoment.method.localize import localize_traces
from audiomoment.method.mixture import MixtureFit, fit_reference, log_sum_exp_pair
from audiomoment.testing.simulate import clap_like_trace

FAST = LocalizeConfig(engine="fast")
REFERENCE = LocalizeConfig(engine="reference")
HEADLINE = tuple(HEADLINE_KEYS.values())


# ---------------------------------------------------------------------------------------------
# Trace generators


def random_windows(rng: np.random.Generator, duration_s: float) -> list[list[float]]:
    out = []
    for _ in range(int(rng.integers(1, 4))):
        length = float(rng.uniform(1, max(1.5, duration_s / 4)))
        start = float(rng.uniform(0, duration_s - length))
        out.append([start, start + length])
    return out


def smoothed_clap_traces(seed: int, n: int, lo: int = 2, hi: int = 300) -> list[NDArray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = int(rng.integers(lo, hi + 1))
        out.append(gaussian_filter1d(clap_like_trace(rng, d, random_windows(rng, d)), 1.5))
    return out


AWKWARD_KINDS = ("quantised", "integers", "repeated", "two-level", "heavy-tailed", "near-constant")


def awkward_trace(rng: np.random.Generator, kind: str, n: int) -> NDArray[np.float64]:
    """Traces with ties, repeated values, outliers or almost no spread."""
    if kind == "quantised":
        x = np.round(rng.normal(0.2, 0.05, n), 2)
    elif kind == "integers":
        x = rng.integers(0, 4, n).astype(float)
    elif kind == "repeated":
        x = np.resize(np.repeat(rng.normal(size=n // 5 + 1), 5), n)
    elif kind == "two-level":
        x = np.where(rng.random(n) < 0.3, 0.4, 0.1)
    elif kind == "heavy-tailed":
        x = rng.normal(size=n) ** 3
    else:
        x = 0.3 + 1e-9 * rng.normal(size=n)
    if np.ptp(x) == 0:
        x[-1] += 1.0
    return x


def awkward_traces(seed: int, n: int) -> tuple[list[NDArray], list[str]]:
    rng = np.random.default_rng(seed)
    kinds = [AWKWARD_KINDS[int(k)] for k in rng.integers(0, len(AWKWARD_KINDS), n)]
    return [awkward_trace(rng, k, int(rng.integers(2, 301))) for k in kinds], kinds


# ---------------------------------------------------------------------------------------------
# Comparison helpers


def agreeing(fast: MixtureFit, ref: MixtureFit, rtol: float = 1e-10) -> NDArray[np.bool_]:
    """Per trace: every parameter within ``rtol`` (relative; 1e-12 absolute near zero)."""

    def close(a: NDArray, b: NDArray) -> NDArray[np.bool_]:
        ok = np.abs(a - b) <= rtol * np.abs(b) + 1e-12
        return ok.all(axis=1) if ok.ndim == 2 else ok

    return (
        close(fast.weights, ref.weights)
        & close(fast.means, ref.means)
        & close(fast.variances, ref.variances)
        & close(fast.lower_bound, ref.lower_bound)
    )


def assert_identical(a: MixtureFit, b: MixtureFit) -> None:
    for name in ("weights", "means", "variances", "lower_bound"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@contextlib.contextmanager
def openmp_threads(n: int | None) -> Iterator[None]:
    """Limit scikit-learn's OpenMP threads to ``n`` (None: leave them as they are)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    importlib.import_module("sklearn.cluster._k_means_lloyd")  # only loaded runtimes are limited
    with threadpool_limits(limits=n, user_api="openmp"):
        yield


def short_enough_for_one_thread(trace: NDArray) -> bool:
    """Up to 256 frames scikit-learn's Lloyd step runs one block on one thread anyway.

    Only its inertia (unused with one k-means initialisation) would use more threads, so
    one thread gives the same labels, and is much faster on a busy machine.
    """
    return len(trace) <= 256


def reference(traces: list[NDArray], config: LocalizeConfig) -> MixtureFit:
    """``fit_reference``, with one OpenMP thread where that changes nothing but the time."""
    short = np.array([short_enough_for_one_thread(t) for t in traces], dtype=bool)
    n = len(traces)
    out = MixtureFit(np.empty((n, 2)), np.empty((n, 2)), np.empty((n, 2)), np.empty(n))
    for mask, threads in ((short, 1), (~short, None)):
        index = np.flatnonzero(mask)
        if len(index) == 0:
            continue
        with openmp_threads(threads):
            fit = fit_reference([traces[i] for i in index], config)
        out.weights[index], out.means[index] = fit.weights, fit.means
        out.variances[index], out.lower_bound[index] = fit.variances, fit.lower_bound
    return out


def subset(fit: MixtureFit, index: NDArray) -> MixtureFit:
    return MixtureFit(
        fit.weights[index], fit.means[index], fit.variances[index], fit.lower_bound[index]
    )


def sklearn_kmeans_labels(trace: NDArray, config: LocalizeConfig) -> list[NDArray]:
    """Labels of each initialisation as ``GaussianMixture.fit`` obtains them."""
    from sklearn.cluster import KMeans

    stream = np.random.RandomState(config.random_state)
    out = []
    threads = 1 if short_enough_for_one_thread(trace) else None
    with warnings.catch_warnings(), openmp_threads(threads):
        warnings.simplefilter("ignore")
        for _ in range(config.n_init):
            km = KMeans(n_clusters=2, n_init=1, random_state=stream)
            out.append(km.fit(trace.reshape(-1, 1)).labels_.astype(bool))
    return out


# ---------------------------------------------------------------------------------------------
# Building blocks


def test_draws_are_the_reference_stream() -> None:
    for seed in (0, 42, 2024):
        draws = initialisation_draws(4, seed)
        assert draws.shape == (4, 1 + N_LOCAL_TRIALS)
        for n in (2, 3, 7, 60, 257, 300):
            stream = np.random.RandomState(seed)
            for i in range(4):
                index = stream.choice(n, p=np.ones(n) / n)
                trials = stream.uniform(size=N_LOCAL_TRIALS)
                assert first_centre_indices(n, draws[i : i + 1, 0])[0] == index
                np.testing.assert_array_equal(draws[i, 1:], trials)


@pytest.mark.parametrize("shape", [(9, 1), (60, 2), (300, 7), (61, 4099), (2, 25, 1), (2, 130, 3)])
def test_time_sums_add_frames_in_order(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape) * 10.0 ** rng.uniform(-8, 8, size=shape)
    expected = a[..., 0, :].copy()
    for t in range(1, shape[-2]):
        expected = expected + a[..., t, :]
    np.testing.assert_array_equal(time_sums(a), expected)
    # A column's sum does not depend on the memory layout or on its neighbours.
    np.testing.assert_array_equal(time_sums(np.asfortranarray(a)), expected)
    np.testing.assert_array_equal(time_sums(a[..., :1]), expected[..., :1])


def test_log_sum_exp_pair_is_one_formula() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 50, 40)) * 30.0
    a[1, :10] = a[0, :10]  # ties
    a[1, 10:20] = a[0, 10:20] + 1e-15
    short = log_sum_exp_pair(a[0], a[1])
    with_inf = a.copy()
    with_inf[:, 0, 0] = [-np.inf, -np.inf]  # forces the general form on the whole array
    general = log_sum_exp_pair(with_inf[0], with_inf[1])
    assert general[0, 0] == -np.inf
    general[0, 0] = short[0, 0]
    np.testing.assert_array_equal(short, general)
    # the value, whatever scikit-learn offers: log(exp(a0) + exp(a1)) to rounding
    np.testing.assert_allclose(short, np.logaddexp(a[0], a[1]), rtol=1e-14, atol=0)
    try:
        from sklearn.utils._array_api import _logsumexp as reference
    except ImportError:
        reference = None
    if reference is not None:  # scikit-learn's own (private) function, where it exists
        np.testing.assert_array_equal(short.ravel(), reference(a.reshape(2, -1).T, axis=1))


def test_plan_chunks_covers_everything_within_budget() -> None:
    lengths = np.sort(np.random.default_rng(2).integers(2, 301, 500))
    parts = list(plan_chunks(lengths, 5, 20_000))
    assert parts[0].start == 0 and parts[-1].stop == 500
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
    for p in parts:
        assert p.stop - p.start == 1 or lengths[p.stop - 1] * 5 * (p.stop - p.start) <= 20_000


def test_select_initialisation_follows_the_reference_rule() -> None:
    bounds = np.array(
        [
            [1.0, 1.0, 1.0],  # ties: first wins
            [1.0, 2.0, 2.0],
            [-np.inf, -np.inf, 0.5],  # -inf is replaced by anything
            [-np.inf, 3.0, 1.0],
            [np.nan, 5.0, 6.0],  # a NaN bound, once kept, is never beaten
            [0.0, np.nan, -1.0],
        ]
    )
    np.testing.assert_array_equal(select_initialisation(bounds), [0, 1, 2, 1, 0, 0])


def test_duplicate_sources_sees_swapped_clusters() -> None:
    a = np.array([0, 1, 1, 0, 0], dtype=bool)
    b = np.array([1, 1, 0, 0, 0], dtype=bool)
    labels = np.stack([a, ~a, b, a, ~b], axis=1)  # one trace, five initialisations
    labels = np.concatenate([labels, np.zeros((2, 5), dtype=bool)])  # two padded frames
    valid = np.arange(7)[:, None] < 5
    source, flipped = duplicate_sources(labels, np.repeat(valid, 5, axis=1), 1, 5)
    np.testing.assert_array_equal(source, [[0, 0, 2, 0, 2]])
    np.testing.assert_array_equal(flipped, [[False, True, True, False, False]])


# ---------------------------------------------------------------------------------------------
# The exact path


def test_kmeans_labels_are_scikit_learns() -> None:
    traces = smoothed_clap_traces(3, 40) + awkward_traces(4, 60)[0]
    traces = [t for t in traces if len(t) <= 300]
    lengths = np.array([len(t) for t in traces])
    order = np.argsort(lengths, kind="stable")
    x, valid = pad_time_major([traces[i] for i in order], lengths[order])
    draws = initialisation_draws(FAST.n_init, FAST.random_state)
    labels = kmeans_initialisations(x, valid, lengths[order], draws)
    same = []
    for k, i in enumerate(order):
        expected = sklearn_kmeans_labels(traces[i], FAST)
        for j, lab in enumerate(expected):
            same.append(np.array_equal(labels[: lengths[i], k * FAST.n_init + j], lab))
    print(f"k-means labels identical to scikit-learn's: {np.mean(same):.2%} of {len(same)}")
    assert all(same)


def test_parameters_match_the_reference_on_clap_like_traces() -> None:
    traces = smoothed_clap_traces(5, 200)
    ok = agreeing(fit_fast(traces, FAST), reference(traces, REFERENCE))
    print(f"CLAP-like traces agreeing to 1e-10: {ok.mean():.2%} of {len(ok)}")
    assert ok.all()


def test_parameters_match_the_reference_on_awkward_traces() -> None:
    traces, kinds = awkward_traces(6, 180)
    ok = agreeing(fit_fast(traces, FAST), reference(traces, REFERENCE))
    kinds_arr = np.array(kinds)
    for kind in AWKWARD_KINDS:
        sel = kinds_arr == kind
        print(f"{kind:>13}: {ok[sel].mean():.2%} of {sel.sum()} agree to 1e-10")
    print(f"all awkward traces: {ok.mean():.2%}")
    # Near-constant traces are ill-posed (partitions whose bounds tie up to rounding could
    # swap places), yet at this seed they too follow the path exactly, like the others.
    assert ok.all()


@pytest.mark.parametrize(
    "changes",
    [
        {"n_init": 1},
        {"n_init": 3, "random_state": 0},
        {"tol": 1e-8},
        {"max_iter": 3},
        {"reg_covar": 1e-3},
    ],
)
def test_settings_are_followed(changes: dict) -> None:
    traces = smoothed_clap_traces(7, 25, 20, 120)
    ok = agreeing(
        fit_fast(traces, FAST.with_(**changes)), reference(traces, REFERENCE.with_(**changes))
    )
    assert ok.all(), ok.mean()


def test_tiny_and_tied_traces_match() -> None:
    traces = [
        np.array([0.1, 0.2]),
        np.array([0.2, 0.1]),
        np.array([0.0, 1.0, 2.0]),
        np.array([1.0, 1.0, 1.0, 5.0]),
        np.array([3.0, 3.0, 0.0, 0.0, 0.0, 0.0]),
        np.array([0.25] * 9),  # constant: the reference relocates nothing
        np.tile([0.1, 0.3], 40),
        np.arange(17, dtype=float) % 4,
    ]
    fast, ref = fit_fast(traces, FAST), reference(traces, REFERENCE)
    assert agreeing(fast, ref).all()


# ---------------------------------------------------------------------------------------------
# Independence from batching


def test_results_do_not_depend_on_batching() -> None:
    traces = smoothed_clap_traces(8, 120) + awkward_traces(9, 60)[0]
    whole = fit_fast(traces, FAST)
    assert_identical(fit_fast(traces, FAST, chunk_elements=3_000), whole)
    assert_identical(fit_fast(traces, FAST, chunk_elements=1 << 24), whole)
    perm = np.random.default_rng(0).permutation(len(traces))
    assert_identical(fit_fast([traces[i] for i in perm], FAST), subset(whole, perm))
    for i in range(0, len(traces), 9):
        assert_identical(fit_fast([traces[i]], FAST), subset(whole, np.array([i])))
    doubled = fit_fast(traces + traces[:30], FAST)
    assert_identical(subset(doubled, np.arange(len(traces))), whole)
    assert_identical(
        subset(doubled, np.arange(len(traces), len(traces) + 30)), subset(whole, np.arange(30))
    )


def test_equal_length_array_matches_list() -> None:
    traces = smoothed_clap_traces(10, 50, 60, 60)
    assert_identical(fit_fast(np.stack(traces), FAST), fit_fast(traces, FAST))


def test_rejects_what_the_reference_rejects() -> None:
    block = np.ones((2, 4))
    block[1, 2] = np.inf
    bad_inputs = [
        ([np.array([1.0])], "trace 0: needs at least 2 frames"),
        ([np.ones(3), np.array([1.0, np.nan, 2.0])], "trace 1: contains NaN"),
        ([np.ones((3, 2))], "trace 0: expected a 1-D array"),
        (np.ones((3, 1)), "trace 0: needs at least 2 frames"),  # (N, T) one-frame traces
        (block, "trace 1: contains NaN"),
    ]
    # one check of the traces, the same for both engines
    for traces, message in bad_inputs:
        with pytest.raises(InputError, match=message):
            fit_fast(traces, FAST)
        with pytest.raises(InputError, match=message):
            fit_reference(traces, REFERENCE)
    collapsed = [np.array([0.0, 0.0, 0.0, 1.0])]  # a single-point cluster and no floor
    with pytest.raises(ValueError):
        fit_reference(collapsed, REFERENCE.with_(reg_covar=0.0))
    with pytest.raises(ValueError):
        fit_fast(collapsed, FAST.with_(reg_covar=0.0))
    empty = fit_fast([], FAST)
    assert len(empty) == 0


# ---------------------------------------------------------------------------------------------
# Localisation end to end: top windows and headline metrics


def annotated_workload(path: Path, limit: int | None, seed: int) -> tuple[list, list, list]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[:limit]
    rng = np.random.default_rng(seed)
    traces = [clap_like_trace(rng, r["duration"], r["relevant_windows"]) for r in rows]
    gt = [{"qid": r["qid"], "relevant_windows": r["relevant_windows"]} for r in rows]
    return traces, [float(r["duration"]) for r in rows], gt


def headline(gt: list[dict], results: list) -> dict[str, float]:
    preds = [
        {"qid": g["qid"], "pred_relevant_windows": r.windows.tolist()}
        for g, r in zip(gt, results, strict=True)
    ]
    brief = evaluate(gt, preds)["brief"]
    return {k: float(brief[k]) for k in HEADLINE}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "relpath", "limit"),
    [
        ("CASTELLA (all 1,347 queries)", "castella/castella_test_release.jsonl", None),
        (
            "Clotho-Moment (first 2,000 of 6,649)",
            "clotho_moment/clotho_moment_test_release.jsonl",
            2000,
        ),
    ],
)
def test_localisation_agrees_with_the_reference(
    shared_data: Path, name: str, relpath: str, limit: int | None
) -> None:
    """Top windows and headline metrics of both engines on a real-sized workload.

    The reference's k-means runs on one OpenMP thread here: on a busy machine its default
    two threads mostly wait for each other. One thread changes the order of its centre sums
    only for traces over 256 frames, which could matter only for a frame exactly midway
    between two centres.
    """
    traces, durations, gt = annotated_workload(shared_data / relpath, limit, seed=11)
    with openmp_threads(1):
        ref = localize_traces(traces, durations, REFERENCE)
    fast = localize_traces(traces, durations, FAST)
    same_top = np.mean(
        [
            np.array_equal(a.windows[:1, :2], b.windows[:1, :2])
            for a, b in zip(ref, fast, strict=True)
        ]
    )
    m_ref, m_fast = headline(gt, ref), headline(gt, fast)
    deltas = {k: m_fast[k] - m_ref[k] for k in HEADLINE}
    print(f"{name}: top window identical {same_top:.3%}; metric deltas {deltas}")
    assert same_top == 1.0
    assert all(d == 0.0 for d in deltas.values())


# ---------------------------------------------------------------------------------------------
# Empty-cluster relocation and the EM stopping rule, by hand


def test_an_empty_cluster_takes_the_farthest_frame() -> None:
    x = np.array([0.0, 1.0, 5.0])
    # cluster 1 empty; distances to centre 0 (2.0): 4, 1, 9 -> frame 2 (5.0) moves:
    # cluster 0 keeps 0 and 1 (mean 0.5), cluster 1 gets 5
    got = relocate_and_average(x, np.zeros(3, dtype=bool), np.array([2.0, 2.0]),
                               np.array([6.0, 0.0]), np.array([3.0, 0.0]))
    assert got == (0.5, 5.0)
    # cluster 0 empty; distances to centre 1 (1.0): 1, 0, 16 -> frame 2 moves
    got = relocate_and_average(x, np.ones(3, dtype=bool), np.array([9.0, 1.0]),
                               np.array([0.0, 6.0]), np.array([0.0, 3.0]))
    assert got == (5.0, 0.5)
    # every frame on its centre: nothing moves, the empty cluster copies the other
    got = relocate_and_average(np.full(3, 2.0), np.zeros(3, dtype=bool), np.array([2.0, 7.0]),
                               np.array([6.0, 0.0]), np.array([3.0, 0.0]))
    assert got == (2.0, 2.0)


def test_lloyd_update_relocates_only_the_columns_with_an_empty_cluster() -> None:
    xc = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [0.0, 0.0]])
    labels = np.array([[False, False], [False, False], [False, True], [False, False]])
    # column 0: cluster 1 empty (frame 3 is padding); column 1: plain means
    new0, new1 = lloyd_update(xc, labels, np.array([3, 4]), np.array([2.0, 0.0]),
                              np.array([2.0, 5.0]))
    assert new0.tolist() == [0.5, 1.0 / 3.0]
    assert new1.tolist() == [5.0, 5.0]


def test_em_stops_when_the_bound_changes_by_less_than_tol() -> None:
    """scikit-learn's rule: stop once |bound - previous bound| < tol, strictly.

    With ``tol`` set to exactly the change of iteration k (and the changes decreasing),
    EM must not stop at k but at the next iteration, and give the reference's parameters
    after that many iterations.
    """
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, 40), rng.normal(2.0, 1.0, 20)])
    base = LocalizeConfig(n_init=1, tol=1e-300)
    bounds = [-np.inf] + [fit_fast([x], base.with_(max_iter=k)).lower_bound[0]
                          for k in range(1, 10)]
    changes = np.abs(np.diff(bounds))  # changes[k - 1]: change of iteration k
    assert np.all(np.diff(changes[1:]) < 0)  # decreasing from iteration 2 on
    for k in (3, 5, 7):
        tol = float(changes[k - 1])
        stop = next(j for j in range(1, 10) if changes[j - 1] < tol)
        assert stop == k + 1
        fast = fit_fast([x], base.with_(tol=tol, max_iter=100))
        assert_identical(fast, fit_fast([x], base.with_(max_iter=stop)))
        assert agreeing(fast, reference([x], base.with_(max_iter=stop))).all()
        assert not agreeing(fast, reference([x], base.with_(max_iter=k))).any()


def test_log_sum_exp_pair_with_infinities_and_nan_is_scipys_without_warnings() -> None:
    import warnings

    from scipy.special import logsumexp

    inf, nan = np.inf, np.nan
    pairs = [(-inf, -inf), (-inf, 0.5), (2.0, -inf), (inf, 1000.0), (1000.0, inf), (inf, inf),
             (inf, -inf), (nan, 1.0), (1.0, nan), (nan, nan), (nan, inf), (3.0, 3.0),
             (0.0, -745.2), (710.0, 709.0)]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NumPy either
        got = log_sum_exp_pair(a, b)
    expected = np.array([logsumexp([x, y]) for x, y in pairs])
    np.testing.assert_array_equal(got, expected)
    # by hand: both -inf -> -inf; an inf -> inf; a NaN -> NaN; a tie -> value + log 2
    assert got[0] == -inf and got[1] == 0.5 and got[3] == inf and got[6] == inf
    assert np.isnan(got[7:11]).all() and got[11] == 3.0 + np.log(2.0)


def test_relevant_first_puts_the_higher_mean_first_and_keeps_ties() -> None:
    fit = MixtureFit(
        weights=np.array([[0.3, 0.7], [0.6, 0.4], [0.2, 0.8]]),
        means=np.array([[0.1, 0.5], [0.9, 0.2], [0.4, 0.4]]),
        variances=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        lower_bound=np.array([-1.0, -2.0, -3.0]),
    )
    rel = fit.relevant_first()
    assert rel.means.tolist() == [[0.5, 0.1], [0.9, 0.2], [0.4, 0.4]]
    assert rel.weights.tolist() == [[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]]  # tie: kept
    assert rel.variances.tolist() == [[2.0, 1.0], [3.0, 4.0], [5.0, 6.0]]
    assert rel.lower_bound.tolist() == [-1.0, -2.0, -3.0]
    assert len(rel) == 3


def test_the_farthest_frame_by_squared_distance_moves() -> None:
    # centre 1.0: squared distances 36, 1, 9, 4, 0.25, 16 -> frame 0 (-5) is the farthest,
    # though frame 5 (5) is the farthest above the centre
    x = np.array([-5.0, 0.0, 4.0, 3.0, 1.5, 5.0])
    got = relocate_and_average(x, np.zeros(6, dtype=bool), np.array([1.0, 1.0]),
                               np.array([8.5, 0.0]), np.array([6.0, 0.0]))
    assert got == ((8.5 + 5.0) / 5.0, -5.0)


def test_zero_variance_is_refused_as_the_reference_refuses_it() -> None:
    trace = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two clusters of identical values
    config = FAST.with_(reg_covar=0.0)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        fit_reference([trace], config)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        fit_fast([trace], config)


def test_no_traces_give_empty_fits() -> None:
    fit = fit_fast([], FAST)
    assert fit.weights.shape == fit.means.shape == fit.variances.shape == (0, 2)
    assert fit.lower_bound.shape == (0,)


def test_a_trace_over_the_chunk_budget_is_a_chunk_alone() -> None:
    # 10 frames x 5 initialisations = 50 > 40: one trace per chunk
    chunks = list(plan_chunks(np.array([10, 10, 10]), 5, 40))
    assert [(c.start, c.stop) for c in chunks] == [(0, 1), (1, 2), (2, 3)]
    # 2 x 10 x 5 = 100 <= 120 < 150: two, then one
    chunks = list(plan_chunks(np.array([10, 10, 10]), 5, 120))
    assert [(c.start, c.stop) for c in chunks] == [(0, 2), (2, 3)]


def test_chunk_plans_take_the_largest_chunk_within_the_budget() -> None:
    """Oracle: from each start, the most traces m with (longest length) x n_init x m within
    the budget (at least one), found by trying every m."""
    from audiomoment.method.em_fast import plan_chunks

    def oracle(lengths: list[int], n_init: int, budget: int) -> list[tuple[int, int]]:
        out, start = [], 0
        while start < len(lengths):
            m = max([1] + [k for k in range(1, len(lengths) - start + 1)
                           if lengths[start + k - 1] * n_init * k <= budget])
            out.append((start, start + m))
            start += m
        return out

    rng = np.random.default_rng(5)
    cases = [([2, 2, 3, 5], 1, 6), ([2, 2], 1, 4), ([2, 2], 1, 3), ([4] * 9, 2, 64)]
    cases += [(sorted(rng.integers(2, 40, size=int(rng.integers(1, 30))).tolist()),
               int(rng.integers(1, 6)), int(rng.integers(1, 3000))) for _ in range(200)]
    for lengths, n_init, budget in cases:
        got = [(s.start, s.stop) for s in plan_chunks(np.array(lengths), n_init, budget)]
        assert got == oracle(lengths, n_init, budget), (lengths, n_init, budget)
    # by hand: budget 6 on lengths 2, 2, 3, 5 -> [0, 2) (2 x 2 = 4), [2, 3), [3, 4)
    assert [(s.start, s.stop) for s in plan_chunks(np.array([2, 2, 3, 5]), 1, 6)] == [
        (0, 2), (2, 3), (3, 4)]
