"""The k-means steps of the batched engine, one by one, against scikit-learn's own functions.

Each building block of :mod:`audiomoment.method.em_fast`'s k-means (the first centre's draw,
the k-means++ candidates, the clamped squared distances, Lloyd's loop and its stopping rules,
the centre update with its empty-cluster relocation) is called directly, with inputs crafted
to sit on the boundaries where a rule decides (a draw equal to a cumulative sum, a centre
shift equal to the tolerance, a cluster left empty), and compared with scikit-learn's
private k-means functions or with NumPy's ``RandomState.choice`` fed the same variate.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.cluster._kmeans import _kmeans_plusplus, _kmeans_single_lloyd
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.mixture import GaussianMixture

from audiomoment.config import LocalizeConfig
from audiomoment.method import em_fast
from audiomoment.method.em_fast import (
    assign_labels,
    check_variances,
    expanded_sq_distances,
    first_centre_indices,
    fit_fast,
    kmeans_plusplus,
    length_groups,
    lloyd,
    lloyd_update,
    pad_time_major,
    relocate_and_average,
)

Float = NDArray[np.float64]


# ---------------------------------------------------------------------------------------------
# Oracles


class FixedVariates(np.random.RandomState):
    """A RandomState whose uniform variates are given: ``choice`` then maps them to indices
    with NumPy's own code."""

    def __init__(self, variates: Float) -> None:
        super().__init__(0)
        self.variates = np.asarray(variates, dtype=np.float64)

    def random_sample(self, size: object = None) -> Float | float:  # type: ignore[override]
        return self.variates.copy() if size is not None else float(self.variates[0])


class GivenDraws:
    """Stands in for scikit-learn's random state in ``_kmeans_plusplus``: the first centre's
    index and the candidates' uniform variates are given."""

    def __init__(self, first: int, uniform: Float) -> None:
        self.first = first
        self.variates = np.asarray(uniform, dtype=np.float64)

    def choice(self, n: int, p: Float) -> int:
        return self.first

    def uniform(self, size: int) -> Float:
        assert size == len(self.variates)
        return self.variates.copy()


def sklearn_lloyd(
    x: Float, c0: float, c1: float, max_iter: int, tol: float
) -> tuple[NDArray[np.bool_], Float, int]:
    """scikit-learn's Lloyd on one trace (up to 256 frames: one block, one thread).

    Returns the labels (True: cluster 1), the two centres and the number of iterations.
    """
    assert len(x) <= 256
    labels, _, centres, n_iter = _kmeans_single_lloyd(
        np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 1),
        np.ones(len(x)),
        np.array([[c0], [c1]]),
        max_iter=max_iter,
        tol=tol,
        n_threads=1,
    )
    return labels.astype(bool), centres[:, 0], int(n_iter)


def squared_shift(old: Float, new: Float) -> float:
    """scikit-learn's convergence measure: per centre sqrt((new - old)^2), squared, summed."""
    shift = np.sqrt((new - old) * (new - old))
    return float((shift**2).sum())


def slow_traces() -> list[tuple[Float, float, float]]:
    """Traces with both initial centres at one end: the boundary between the clusters
    creeps, and the labels change at every iteration for a while (7 to 12 iterations)."""
    rng = np.random.default_rng(0)
    return [
        (np.linspace(0.0, 1.0, 200), 0.0, 0.02),
        (np.sort(rng.uniform(0.0, 1.0, 150)), 0.0, 0.01),
        (rng.exponential(1.0, 120), 0.0, 0.05),
        (rng.normal(0.0, 1.0, 256), -3.0, -2.9),
    ]


def run_lloyd(columns: list[tuple[Float, float, float, float]]) -> NDArray[np.bool_]:
    """``lloyd`` on a ragged batch of (trace, c0, c1, tol) columns; labels (T, R)."""
    lengths = np.array([len(c[0]) for c in columns], dtype=np.int64)
    x, valid = pad_time_major([c[0] for c in columns], lengths)
    c0 = np.array([c[1] for c in columns])
    c1 = np.array([c[2] for c in columns])
    tol = np.array([c[3] for c in columns])
    return lloyd(x, valid, lengths, c0, c1, tol)


# ---------------------------------------------------------------------------------------------
# k-means++: the first centre, the candidates, the distances


@pytest.mark.parametrize("length", [2, 3, 4, 7, 10, 49, 60, 100, 257, 300])
def test_first_centre_is_randomstate_choice_on_boundary_draws(length: int) -> None:
    """Draws equal to (or one ulp either side of) a cumulative probability, or of k / n,
    give the index ``RandomState.choice(n, p=ones / n)`` gives for the same variate."""
    cdf = np.cumsum(np.ones(length) / length)
    cdf /= cdf[-1]
    points = np.concatenate([cdf, np.arange(1, length + 1) / length, [0.0]])
    draws = np.concatenate([points, np.nextafter(points, 0.0), np.nextafter(points, 1.0)])
    draws = np.unique(draws[(draws >= 0.0) & (draws < 1.0)])
    expected = FixedVariates(draws).choice(length, size=len(draws), p=np.ones(length) / length)
    np.testing.assert_array_equal(first_centre_indices(length, draws), expected)
    # by hand, for four frames: a draw of exactly 0.5 falls in the third quarter
    if length == 4:
        assert first_centre_indices(4, np.array([0.25, 0.5, 0.75])).tolist() == [1, 2, 3]


def kmeans_plusplus_one(x: Float, first: int, uniform: Float) -> tuple[float, float]:
    """Our k-means++ on one unpadded trace."""
    xc = x.reshape(-1, 1)
    c0, c1 = kmeans_plusplus(
        xc, None, np.array([len(x)]), np.array([[first]]), np.asarray(uniform)[None, :]
    )
    return float(c0[0, 0]), float(c1[0, 0])


def sklearn_plusplus(x: Float, first: int, uniform: Float) -> tuple[float, float]:
    X = x.reshape(-1, 1)
    centres, _ = _kmeans_plusplus(
        X, 2, (X * X)[:, 0], np.ones(len(x)), GivenDraws(first, uniform)
    )
    return float(centres[0, 0]), float(centres[1, 0])


def test_kmeans_plusplus_candidates_on_boundary_draws() -> None:
    """A target equal to a cumulative sum picks the frame that reaches it (a left-sided
    search, as ``np.searchsorted`` does for scikit-learn); a target past the total (which
    ``uniform`` never gives) is clamped to the last frame, as scikit-learn's ``np.clip``
    does."""
    x = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 5.0])
    # first centre 0.0: squared distances 0, 1, 1, 4, 9, 25; cumulative 0, 1, 2, 6, 15, 40
    first = 0
    for u, expected_c1 in [
        (0.15, 2.0),  # target 6 == cumulative[3]: frame 3 (2.0), not frame 4
        (0.05, 1.0),  # target 2 == cumulative[2]: frame 2 (1.0), not frame 3
        (0.375, 3.0),  # target 15 == cumulative[4]: frame 4 (3.0), not frame 5
        (1.0, 5.0),  # target 40 == the total: the last frame
        (1.5, 5.0),  # past the total: clamped to the last frame
    ]:
        uniform = np.array([u, u])
        assert u * 40.0 in (6.0, 2.0, 15.0, 40.0, 60.0)  # the targets are exact
        got = kmeans_plusplus_one(x, first, uniform)
        assert got == sklearn_plusplus(x, first, uniform) == (0.0, expected_c1), u
    # every cumulative sum hit exactly, on random integer traces, and padded columns
    rng = np.random.default_rng(4)
    traces = [rng.integers(-5, 6, int(n)).astype(float) for n in rng.integers(3, 40, 30)]
    for trace in traces:
        if np.ptp(trace) == 0:
            trace[-1] += 1.0
    lengths = np.array([len(t) for t in traces], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    traces = [traces[i] for i in order]
    lengths = lengths[order]
    x_pad, valid = pad_time_major(traces, lengths)
    first = np.array([[int(rng.integers(0, n))] for n in lengths])
    for trial in range(12):
        uniform = np.empty((1, 2))
        for q, trace in enumerate(traces):
            d = (trace - trace[first[q, 0]]) ** 2
            cum = np.cumsum(d)
            k = int(rng.integers(0, len(trace)))
            # a draw u with u * total == cum[k] exactly, where one exists
            u = cum[k] / cum[-1]
            if u * cum[-1] != cum[k]:
                u = float(rng.uniform())
            uniform[0] = [u, 1.0 - u if trial % 2 else u]
            c0, c1 = kmeans_plusplus(
                x_pad[:, q : q + 1], None if valid is None else valid[:, q : q + 1],
                lengths[q : q + 1], first[q : q + 1], uniform,
            )
            assert (float(c0[0, 0]), float(c1[0, 0])) == sklearn_plusplus(
                trace, int(first[q, 0]), uniform[0]
            )


def test_squared_distances_are_clamped_at_zero_as_scikit_learn_does() -> None:
    # centre c[i] and frame x[i] so close that (-2 c x + c^2) + x^2 rounds below zero
    c = np.array([-0.12055599140567749, -0.45264929211044586, -2.019986129147251,
                  -0.1828389745977349])
    x = np.array([-0.12055599152709258, -0.4526492920128559, -2.0199861286787506,
                  -0.18283897469656396])
    raw = (-2.0 * (c * x) + c * c) + x * x
    assert (raw < 0).all()
    frames = np.concatenate([x, [0.0, 1.5]])
    for ci in c:
        got = expanded_sq_distances(
            np.array([[ci]]), frames[:, None, None], (frames * frames)[:, None, None]
        )[:, 0, 0]
        expected = euclidean_distances(
            np.array([[ci]]), frames[:, None], Y_norm_squared=frames * frames, squared=True
        )[0]
        np.testing.assert_array_equal(got, expected)
    assert (got >= 0).all()


# ---------------------------------------------------------------------------------------------
# Lloyd's loop: when it stops


@pytest.mark.parametrize("max_iter", [1, 2, 3, 5, em_fast.LLOYD_MAX_ITER])
def test_lloyd_stops_where_scikit_learns_lloyd_stops(
    monkeypatch: pytest.MonkeyPatch, max_iter: int
) -> None:
    """Sixteen ragged columns, each with its own tolerance: the labels after the loop (by
    repeated labels, by the centre shift, or by the iteration limit) are scikit-learn's.

    The columns stop at different iterations, so stopped columns sit in the arrays while
    the others go on, and some run to the limit.
    """
    monkeypatch.setattr(em_fast, "LLOYD_MAX_ITER", max_iter)
    columns = []
    for x, c0, c1 in slow_traces():
        _, centres_1, _ = sklearn_lloyd(x, c0, c1, 1, -1.0)
        _, centres_2, _ = sklearn_lloyd(x, c0, c1, 2, -1.0)
        shift_2 = squared_shift(centres_1, centres_2)
        # labels only; a shift of 0 at most; the second iteration's shift; any shift
        for tol in (-1.0, 0.0, shift_2, 1.0):
            columns.append((x, c0, c1, tol))
    got = run_lloyd(columns)
    stops = set()
    for r, (x, c0, c1, tol) in enumerate(columns):
        expected, _, n_iter = sklearn_lloyd(x, c0, c1, max_iter, tol)
        stops.add(n_iter)
        np.testing.assert_array_equal(got[: len(x), r], expected, err_msg=f"column {r}")
        assert not got[len(x) :, r].any()
    if max_iter > 12:
        assert len(stops) >= 4  # the columns do stop at different iterations


def test_a_shift_equal_to_tol_stops_lloyd() -> None:
    """scikit-learn stops once the squared centre shift is at most ``tol``: with ``tol``
    equal to the shift of iteration k, to the last bit, Lloyd stops at k; one ulp less and
    it goes on, to other labels."""
    differing = 0
    for x, c0, c1 in slow_traces():
        _, _, n_iter = sklearn_lloyd(x, c0, c1, 300, -1.0)
        centres = [np.array([c0, c1])]
        for k in range(1, n_iter + 1):
            centres.append(sklearn_lloyd(x, c0, c1, k, -1.0)[1])
        shifts = [squared_shift(a, b) for a, b in itertools.pairwise(centres)]
        for k in range(1, n_iter - 1):
            tol = shifts[k - 1]
            if any(s <= tol for s in shifts[: k - 1]):
                continue  # an earlier shift is no larger: Lloyd would stop there
            at, _, stop = sklearn_lloyd(x, c0, c1, 300, tol)
            assert stop == k
            below, _, later = sklearn_lloyd(x, c0, c1, 300, float(np.nextafter(tol, -1.0)))
            assert later > k
            differing += not np.array_equal(at, below)
            got = run_lloyd([(x, c0, c1, tol), (x, c0, c1, float(np.nextafter(tol, -1.0)))])
            np.testing.assert_array_equal(got[:, 0], at)
            np.testing.assert_array_equal(got[:, 1], below)
    assert differing >= 10


def counting_lloyd_update(
    monkeypatch: pytest.MonkeyPatch,
) -> list[int]:
    """Record the number of columns of every call of ``lloyd_update``."""
    widths: list[int] = []
    inner: Callable = em_fast.lloyd_update

    def spy(xc: Float, *args: object) -> tuple[Float, Float]:
        widths.append(xc.shape[1])
        return inner(xc, *args)

    monkeypatch.setattr(em_fast, "lloyd_update", spy)
    return widths


def test_lloyd_runs_as_many_iterations_as_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shift rule off (``tol < 0``), Lloyd stops when the labels repeat (the
    "strict convergence"), after as many iterations as scikit-learn reports.

    With at most three columns a stopped column leaves the arrays at once (it is more
    than :data:`~audiomoment.method.em_fast.COMPACT_SHARE` of them), so the width of
    each update counts the columns still iterating.
    """
    assert em_fast.COMPACT_SHARE <= 1.0 / 3.0
    traces = slow_traces()
    n_iters = []
    for x, c0, c1 in traces:
        widths = counting_lloyd_update(monkeypatch)
        got = run_lloyd([(x, c0, c1, -1.0)])
        expected, _, n_iter = sklearn_lloyd(x, c0, c1, 300, -1.0)
        np.testing.assert_array_equal(got[:, 0], expected)
        assert len(widths) == n_iter
        n_iters.append(n_iter)
        monkeypatch.undo()
    assert len(set(n_iters)) >= 3
    for trio in ([0, 1, 2], [3, 2, 0], [1, 3, 2]):
        widths = counting_lloyd_update(monkeypatch)
        got = run_lloyd([(*traces[i], -1.0) for i in trio])
        for r, i in enumerate(trio):
            x = traces[i][0]
            np.testing.assert_array_equal(got[: len(x), r], sklearn_lloyd(*traces[i], 300, -1.0)[0])
        chosen = [n_iters[i] for i in trio]
        expected_widths = [sum(n >= j for n in chosen) for j in range(1, max(chosen) + 1)]
        assert widths == expected_widths
        monkeypatch.undo()


# ---------------------------------------------------------------------------------------------
# The centre update and the empty-cluster relocation


def one_update(
    columns: list[tuple[Float, float, float]],
) -> tuple[Float, Float]:
    """``lloyd_update`` on a ragged batch after labelling with the given centres."""
    lengths = np.array([len(c[0]) for c in columns], dtype=np.int64)
    x, valid = pad_time_major([c[0] for c in columns], lengths)
    c0 = np.array([c[1] for c in columns])
    c1 = np.array([c[2] for c in columns])
    labels = assign_labels(x, c0, c1)
    if valid is not None:
        labels &= valid
    return lloyd_update(x, labels, lengths, c0, c1)


def test_the_update_is_scikit_learns_first_iteration() -> None:
    """New centres from crafted initial centres, scikit-learn's after one iteration: a
    column with cluster 1 empty, one with cluster 0 empty, one whose frames all sit on
    the centre of cluster 1 (nothing to relocate: scikit-learn then copies cluster 1's
    undivided sum into cluster 0), one with no empty cluster, padded to different lengths."""
    columns = [
        (np.array([1.0, 2.0, 4.0]), 2.0, 100.0),  # every frame nearer centre 0
        (np.array([0.0, 1.0, 2.0, 3.5]), 100.0, 1.0),  # every frame nearer centre 1
        (np.full(3, 2.0), 5.0, 2.0),  # constant, on centre 1
        (np.array([0.0, 0.5, 3.0, 4.0, 4.5]), 0.0, 4.0),  # both clusters occupied
        (np.array([-1.0, 1.0]), -7.0, -1.0),  # cluster 0 empty, two frames
    ]
    new0, new1 = one_update(columns)
    for r, (x, c0, c1) in enumerate(columns):
        _, centres, _ = sklearn_lloyd(x, c0, c1, 1, -1.0)
        assert (new0[r], new1[r]) == (centres[0], centres[1]), r
    # by hand: the farthest frame moves into the empty cluster
    assert (new0[0], new1[0]) == (1.5, 4.0)  # from centre 2: distances 1, 0, 4
    assert (new0[1], new1[1]) == (3.5, 1.0)  # from centre 1: distances 1, 0, 1, 6.25
    assert (new0[2], new1[2]) == (6.0, 2.0)  # the sum 3 x 2 copied before dividing
    assert (new0[3], new1[3]) == (0.25, 11.5 * (1.0 / 3.0))  # sum times 1 / count
    assert (new0[4], new1[4]) == (1.0, -1.0)  # from centre -1: distances 0, 4


def test_a_padded_frame_never_moves_into_an_empty_cluster() -> None:
    """A column shorter than the batch, with cluster 1 empty: the zero padding lies farther
    from the centre (6) than any real frame, yet the farthest real frame (8) moves."""
    columns = [
        (np.array([5.0, 6.0, 8.0]), 6.0, 50.0),  # distances 1, 0, 4; the padding's 36
        (np.array([5.0, 6.0, 7.0, 9.0, 10.0, 11.0]), 6.0, 10.0),
    ]
    new0, new1 = one_update(columns)
    assert (new0[0], new1[0]) == (5.5, 8.0)
    for r, (x, c0, c1) in enumerate(columns):
        _, centres, _ = sklearn_lloyd(x, c0, c1, 1, -1.0)
        assert (new0[r], new1[r]) == (centres[0], centres[1]), r


def test_relocation_when_the_largest_squared_distance_is_one() -> None:
    # centre 0: distances 0, 0.25, 1 -> frame 2 (1.0) moves to the empty cluster 1
    x = np.array([0.0, 0.5, 1.0])
    got = relocate_and_average(
        x, np.zeros(3, dtype=bool), np.array([0.0, 9.0]), np.array([1.5, 0.0]),
        np.array([3.0, 0.0]),
    )
    assert got == (0.25, 1.0)
    _, centres, _ = sklearn_lloyd(x, 0.0, 9.0, 1, -1.0)
    assert got == (centres[0], centres[1])


@pytest.mark.parametrize("case", ["257 frames", "4 frames"])
def test_relocation_takes_the_largest_distance_wherever_argpartition_leaves_it(case: str) -> None:
    """The farthest frame moves, whatever order ``np.argpartition`` leaves the others in.

    In both arrays a selection of the two smallest (kth=1) does not leave the largest
    last. NumPy selects with x86-simd-sort where the CPU allows (AVX-512 or AVX2) and with
    its generic introselect otherwise; the 257-frame trace separates the two with each of
    the three (checked with ``NPY_DISABLE_CPU_FEATURES``), the four-frame trace with the
    generic one, which moves the front element into the middle.
    """
    if case == "257 frames":
        x = np.random.default_rng(0).permutation(257).astype(float)
    else:
        x = np.array([9.0, 0.0, 1.0, 2.0])
    n = len(x)
    farthest = float(x.max())
    got = relocate_and_average(
        x, np.zeros(n, dtype=bool), np.array([0.0, 1e6]), np.array([x.sum(), 0.0]),
        np.array([float(n), 0.0]),
    )
    assert got == ((x.sum() - farthest) * (1.0 / (n - 1)), farthest)


def test_relocation_with_cluster_zero_empty_copies_as_scikit_learn_does() -> None:
    """Cluster 0 empty and every frame on centre 1: nothing moves, and cluster 0 takes
    cluster 1's sum before it is divided, as scikit-learn's ``_average_centers`` does
    (clusters are visited in order, the empty one copying the heaviest's current value)."""
    x = np.full(4, 3.0)
    got = relocate_and_average(
        x, np.ones(4, dtype=bool), np.array([-1.0, 3.0]), np.array([0.0, 12.0]),
        np.array([0.0, 4.0]),
    )
    _, centres, _ = sklearn_lloyd(x, -1.0, 3.0, 1, -1.0)
    assert got == (centres[0], centres[1]) == (12.0, 3.0)
    # cluster 1 empty: cluster 0 is divided first, so the copy is the centre
    got = relocate_and_average(
        x, np.zeros(4, dtype=bool), np.array([3.0, 8.0]), np.array([12.0, 0.0]),
        np.array([4.0, 0.0]),
    )
    assert got == tuple(sklearn_lloyd(x, 3.0, 8.0, 1, -1.0)[1]) == (3.0, 3.0)


def test_length_groups_are_the_runs_of_equal_lengths() -> None:
    groups = list(length_groups(np.array([2, 2, 3, 5, 5, 5, 9])))
    assert groups == [(2, slice(0, 2)), (3, slice(2, 3)), (5, slice(3, 6)), (9, slice(6, 7))]
    assert list(length_groups(np.array([4]))) == [(4, slice(0, 1))]


# ---------------------------------------------------------------------------------------------
# Refusals and warnings


def test_a_zero_variance_is_refused_with_scikit_learns_sentence() -> None:
    collapsed = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]).reshape(-1, 1)
    with pytest.raises(ValueError) as reference:
        GaussianMixture(n_components=2, reg_covar=0.0, random_state=0).fit(collapsed)
    sentence = str(reference.value)
    assert "ill-defined empirical covariance" in sentence
    for variances in ([[1.0], [0.0]], [[0.0, 2.0], [3.0, 4.0]], [[-1e-300], [1.0]]):
        with pytest.raises(ValueError) as ours:
            check_variances(np.array(variances))
        assert str(ours.value) == sentence
    check_variances(np.array([[1e-300], [5.0]]))  # positive: accepted


def test_the_engine_runs_without_floating_point_warnings() -> None:
    """Empty clusters (a constant trace, crafted centres) divide by zero counts inside the
    update; the engine handles those columns itself and stays silent."""
    columns = [
        (np.array([1.0, 2.0, 4.0]), 2.0, 100.0),
        (np.array([0.0, 1.0, 2.0, 3.5]), 100.0, 1.0),
        (np.full(3, 2.0), 2.0, 2.0),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_update(columns)
        fit = fit_fast([np.full(9, 0.25), np.array([0.0, 1.0, 1.0, 5.0])], LocalizeConfig())
    assert np.isfinite(fit.lower_bound).all()
