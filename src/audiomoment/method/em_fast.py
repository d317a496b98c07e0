"""Batched two-component EM for many 1-D traces at once, on scikit-learn's path.

:func:`fit_fast` returns what :func:`audiomoment.method.mixture.fit_reference` returns (one
``GaussianMixture(n_components=2)`` per trace, k-means initialisation, full covariance), but
fits every trace and every initialisation of a chunk together with vectorised NumPy.

The path followed, per trace ``x`` of length ``n`` and per initialisation:

1. k-means on the centred copy ``x - mean(x)``: k-means++ seeding (first centre by
   ``RandomState.choice`` with uniform weights, then ``2 + int(log 2) = 2`` candidates drawn
   by ``uniform * potential`` against the cumulative squared distances, the candidate with
   the smaller potential kept), then Lloyd iterations (at most 300; stop when the labels
   repeat, or when the squared centre shift is at most ``1e-4 * var(x)``; in the latter case
   and after 300 iterations the labels are recomputed from the final centres). Distances are
   computed in the expanded form ``c^2 - 2 x c`` as the reference does, ties go to cluster 0,
   centre sums run in time order in blocks of 256 frames, and empty clusters are relocated
   as the reference does.
2. The labels become one-hot responsibilities; weights, means and variances (plus
   ``reg_covar``) follow; EM runs until the lower bound (mean log-likelihood) changes by
   less than ``tol`` or ``max_iter`` iterations have run.
3. The initialisation with the highest lower bound is kept (the first one on ties).

Every random draw of the reference comes from one ``RandomState(random_state)`` per trace,
and each initialisation consumes the same three doubles whatever the data, so the draws are
made once per call and shared by all traces. A trace's result does not depend on the other
traces, on their order or on the chunking.

Initialisations whose k-means labels coincide (also with the two clusters swapped) follow the
same EM path, so EM runs once for each distinct labelling.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.method.mixture import MixtureFit, log_sum_exp_pair
from audiomoment.method.traces import check_traces

Float = NDArray[np.float64]
Bool = NDArray[np.bool_]
Int = NDArray[np.int64]

#: ``log(2 pi)`` as scikit-learn adds it in the Gaussian log-density.
LOG_2PI = math.log(2 * math.pi)
#: Added to every component's summed responsibility in the M-step.
NK_FLOOR = 10 * float(np.finfo(np.float64).eps)
#: Candidates per k-means++ centre after the first (scikit-learn: ``2 + int(log(k))``).
N_LOCAL_TRIALS = 2 + int(np.log(2))
LLOYD_MAX_ITER = 300
LLOYD_TOL = 1e-4
#: Frames per block of the Lloyd centre sums (each block summed in time order, then added).
LLOYD_BLOCK = 256
#: Share of stopped columns at which the iterating arrays are compacted.
COMPACT_SHARE = 0.25
#: Default work per chunk: padded frames x traces x initialisations.
DEFAULT_CHUNK_ELEMENTS = 1 << 19


# --------------------------------------------------------------------------------------------
# Summation order and column selection


def time_sums(values: Float) -> Float:
    """Sums over the time axis (second to last), frame after frame in time order.

    (..., T, R) -> (..., R). NumPy reduces a C-contiguous array over a non-last axis by
    adding whole rows in order; with a single column, or another memory layout, it would
    switch to pairwise summation. Both cases are brought back to the sequential order here,
    so a column's sum never depends on the other columns or on the layout.
    """
    values = np.ascontiguousarray(values)
    if values.shape[-1] == 1:
        return np.cumsum(values, axis=-2)[..., -1, :]
    return np.add.reduce(values, axis=-2)


def take_columns(values: NDArray, index: NDArray) -> NDArray:
    """Columns (last axis) by integer index or boolean mask, as a C-contiguous copy."""
    if index.dtype == np.bool_:
        return np.compress(index, values, axis=-1)
    return np.take(values, index, axis=-1)


# --------------------------------------------------------------------------------------------
# Random draws and chunking


def initialisation_draws(n_init: int, random_state: int) -> Float:
    """The reference's random draws, shared by every trace: (n_init, 1 + N_LOCAL_TRIALS).

    Row i holds, for initialisation i, the uniform variate behind k-means++'s first centre
    (``RandomState.choice``) and the variates that scale the potential for the candidates
    of the second centre, in the order the reference draws them from one stream.
    """
    stream = np.random.RandomState(random_state)
    draws = np.empty((n_init, 1 + N_LOCAL_TRIALS))
    for i in range(n_init):
        draws[i, 0] = stream.random_sample()
        draws[i, 1:] = stream.uniform(size=N_LOCAL_TRIALS)
    return draws


def first_centre_indices(length: int, first_draws: Float) -> Int:
    """Index of k-means++'s first centre for a trace of ``length`` frames: (I,) -> (I,).

    ``RandomState.choice(length, p=ones/length)`` turns its variate ``u`` into an index by a
    right-sided search in the normalised cumulative sum of ``p``.
    """
    p = np.ones(length) / float(length)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, first_draws, side="right").astype(np.int64)


def plan_chunks(sorted_lengths: Int, n_init: int, chunk_elements: int) -> Iterator[slice]:
    """Consecutive slices of length-sorted traces, each holding about ``chunk_elements``.

    ``sorted_lengths``: (N,) ascending. A chunk's size is (its longest length) x (traces) x
    ``n_init``; every chunk holds at least one trace.
    """
    n = len(sorted_lengths)
    start = 0
    while start < n:
        # The chunk's cost grows with its size (lengths ascend): largest size within budget.
        lo, hi = 1, n - start
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(sorted_lengths[start + mid - 1]) * n_init * mid <= chunk_elements:
                lo = mid
            else:
                hi = mid - 1
        yield slice(start, start + lo)
        start += lo


def pad_time_major(traces: Sequence[Float], lengths: Int) -> tuple[Float, Bool | None]:
    """Stack traces as columns: N arrays (T_i,) -> x (T, N) zero-padded, valid (T, N).

    ``valid`` is None when every trace has the full length T.
    """
    width = int(lengths.max())
    x = np.zeros((width, len(traces)))
    for j, trace in enumerate(traces):
        x[: len(trace), j] = trace
    if int(lengths.min()) == width:
        return x, None
    valid = np.arange(width)[:, None] < lengths[None, :]
    return x, valid


def length_groups(lengths: Int) -> Iterator[tuple[int, slice]]:
    """(length, columns) for each run of equal lengths in a length-sorted (N,) array."""
    edges = np.flatnonzero(np.diff(lengths)) + 1
    bounds = np.concatenate(([0], edges, [len(lengths)]))
    for a, b in itertools.pairwise(bounds):
        yield int(lengths[a]), slice(int(a), int(b))


def trace_statistics(x: Float, lengths: Int) -> tuple[Float, Float]:
    """Per-trace mean and (population) variance: x (T, N), lengths (N,) sorted -> (N,), (N,).

    Computed by NumPy over each trace's own frames, as ``X.mean(axis=0)`` and
    ``np.var(X, axis=0)`` compute them for one ``(n, 1)`` trace (same summation tree).
    """
    mean = np.empty(x.shape[1])
    var = np.empty(x.shape[1])
    for length, cols in length_groups(lengths):
        block = np.ascontiguousarray(x[:length, cols].T)
        mean[cols] = block.mean(axis=1)
        var[cols] = block.var(axis=1)
    return mean, var


# --------------------------------------------------------------------------------------------
# k-means++ seeding


def expanded_sq_distances(centre: Float, xc: Float, xc_sq: Float) -> Float:
    """Squared distances the way the reference's k-means++ computes them.

    ``max((-2 * (c * x) + c * c) + x * x, 0)``; ``centre`` (Q, I), ``xc``/``xc_sq`` (T, Q, 1)
    -> (T, Q, I).
    """
    d = centre * xc
    d *= -2.0
    d += centre * centre
    d += xc_sq
    np.maximum(d, 0.0, out=d)
    return d


def kmeans_plusplus(
    xc: Float, valid: Bool | None, lengths: Int, first: Int, trial_draws: Float
) -> tuple[Float, Float]:
    """k-means++ seeding of two centres for every trace and initialisation.

    Parameters
    ----------
    xc : (T, Q) centred traces, zero-padded.
    valid : (T, Q) frame mask, or None when nothing is padded.
    lengths : (Q,) trace lengths.
    first : (Q, I) index of the first centre of each initialisation.
    trial_draws : (I, L) uniform variates scaling the potential for the L candidates.

    Returns
    -------
    c0, c1 : (Q, I) the two centres (values of ``xc``).
    """
    n_traces = xc.shape[1]
    trace_col = np.arange(n_traces)[:, None]
    frames = xc[:, :, None]  # (T, Q, 1): broadcasts against the I initialisations
    frames_sq = frames * frames
    valid_frames = None if valid is None else valid[:, :, None]

    c0 = xc[first, trace_col]
    closest = expanded_sq_distances(c0, frames, frames_sq)
    if valid_frames is not None:
        closest *= valid_frames
    width = xc.shape[0]
    potential = time_sums(closest.reshape(width, -1)).reshape(closest.shape[1:])
    cumulative = np.cumsum(closest, axis=0)
    last_frame = (lengths - 1)[:, None]

    best_potential = None
    best_frame = None
    for trial in range(trial_draws.shape[1]):
        target = trial_draws[None, :, trial] * potential
        candidate = np.minimum(np.count_nonzero(cumulative < target, axis=0), last_frame)
        dist = expanded_sq_distances(xc[candidate, trace_col], frames, frames_sq)
        np.minimum(closest, dist, out=dist)
        if valid_frames is not None:
            dist *= valid_frames
        candidate_potential = time_sums(dist.reshape(width, -1)).reshape(dist.shape[1:])
        if best_potential is None:
            best_potential, best_frame = candidate_potential, candidate
        else:
            better = candidate_potential < best_potential
            best_potential = np.where(better, candidate_potential, best_potential)
            best_frame = np.where(better, candidate, best_frame)
    return c0, xc[best_frame, trace_col]


# --------------------------------------------------------------------------------------------
# Lloyd iterations


def assign_labels(xc: Float, c0: Float, c1: Float) -> Bool:
    """True where frame goes to centre 1: ``c1^2 - 2 x c1 < c0^2 - 2 x c0`` (ties -> 0).

    ``xc`` (T, R), ``c0``/``c1`` (R,) -> (T, R). ``x * (-2 c)`` equals ``-2 * (x * c)``
    exactly (scaling by 2 is exact), so this is the reference's expanded distance.
    """
    d0 = xc * (-2.0 * c0)
    d0 += c0 * c0
    d1 = xc * (-2.0 * c1)
    d1 += c1 * c1
    return np.less(d1, d0)


def block_sums(values: Float) -> Float:
    """Column sums in time order within blocks of LLOYD_BLOCK frames, blocks added in order.

    (T, R) -> (R,).
    """
    total = time_sums(values[:LLOYD_BLOCK])
    for start in range(LLOYD_BLOCK, values.shape[0], LLOYD_BLOCK):
        total = total + time_sums(values[start : start + LLOYD_BLOCK])
    return total


def lloyd_update(
    xc: Float, labels: Bool, lengths: Int, c0: Float, c1: Float
) -> tuple[Float, Float]:
    """New centres from labels: xc, labels (T, R); lengths, old centres c0, c1 (R,).

    Each centre is its cluster's sum (in :func:`block_sums` order) times ``1 / count``;
    columns with an empty cluster go through :func:`relocate_and_average`. Returns the new
    centres (R,), (R,).
    """
    in1 = xc * labels
    s1 = block_sums(in1)
    s0 = block_sums(np.subtract(xc, in1, out=in1))  # x - x = 0 and x - 0 = x, exactly
    n1 = np.count_nonzero(labels, axis=0)
    n0 = lengths - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        new0 = s0 * (1.0 / n0)
        new1 = s1 * (1.0 / n1)
    empty = np.flatnonzero((n0 == 0) | (n1 == 0))
    for r in empty:
        n = int(lengths[r])
        new0[r], new1[r] = relocate_and_average(
            xc[:n, r],
            labels[:n, r],
            np.array([c0[r], c1[r]]),
            np.array([s0[r], s1[r]]),
            np.array([float(n0[r]), float(n1[r])]),
        )
    return new0, new1


def relocate_and_average(
    x: Float, labels: Bool, old_centres: Float, sums: Float, weights: Float
) -> tuple[float, float]:
    """The reference's empty-cluster relocation and centre averaging for one trace.

    ``x`` (n,) centred trace, ``labels`` (n,), ``old_centres``/``sums``/``weights`` (2,).
    The farthest frame from its centre (as ``np.argpartition`` picks it) moves to the empty
    cluster, unless every frame sits on its centre; an empty cluster left over copies the
    heaviest one's current value. Clusters are averaged in order, so an empty cluster 0
    copies cluster 1's sum before that sum is divided by its count: the reference's
    ``_average_centers`` does exactly this, and so does this function. (The engine never
    gets there: its centres start on frames of the trace, so frames that all sit on centre
    1 make a constant trace, both centres equal it, and ties go to cluster 0.) Returns the
    two new centres.
    """
    lab = labels.astype(np.intp)
    sums = sums.copy()
    weights = weights.copy()
    empty = np.flatnonzero(weights == 0)
    if len(empty):
        distances = (x - old_centres[lab]) ** 2
        far = np.argpartition(distances, -len(empty))[: -len(empty) - 1 : -1]
        if np.max(distances) != 0:
            for k, new in enumerate(empty):
                f = int(far[k])
                old = int(lab[f])
                sums[old] -= x[f]
                sums[new] = x[f]
                weights[new] = 1.0
                weights[old] -= 1.0
    heaviest = int(np.argmax(weights))
    for j in range(2):
        if weights[j] > 0:
            sums[j] *= 1.0 / weights[j]
        else:
            sums[j] = sums[heaviest]
    return float(sums[0]), float(sums[1])


def lloyd(xc: Float, valid: Bool | None, lengths: Int, c0: Float, c1: Float, tol: Float) -> Bool:
    """Lloyd's k-means with two clusters for R columns at once; final labels (T, R).

    ``xc`` (T, R) centred, zero-padded; ``valid`` (T, R) or None; ``lengths``, ``c0``,
    ``c1``, ``tol`` (R,). Labels of padded frames are False. Stopped columns are recorded
    at once and dropped from the arrays now and then, as in :func:`run_em`.
    """
    out = np.zeros(xc.shape, dtype=bool)
    # The iterating arrays hold the columns ``origin`` of the input; ``live`` marks those
    # still iterating.
    origin = np.arange(xc.shape[1])
    live = np.ones(len(origin), dtype=bool)
    old_labels: Bool | None = None
    for it in range(LLOYD_MAX_ITER):
        labels = assign_labels(xc, c0, c1)
        if valid is not None:
            labels &= valid
        if old_labels is None:
            repeated = np.zeros(len(origin), dtype=bool)
        else:
            repeated = live & (labels == old_labels).all(axis=0)
        new0, new1 = lloyd_update(xc, labels, lengths, c0, c1)
        shift0 = np.sqrt((new0 - c0) * (new0 - c0))
        shift1 = np.sqrt((new1 - c1) * (new1 - c1))
        settled = live & ~repeated
        if it < LLOYD_MAX_ITER - 1:
            settled &= shift0 * shift0 + shift1 * shift1 <= tol
        if repeated.any():
            out[:, origin[repeated]] = take_columns(labels, repeated)
        if settled.any():
            relabel = assign_labels(take_columns(xc, settled), new0[settled], new1[settled])
            if valid is not None:
                relabel &= take_columns(valid, settled)
            out[:, origin[settled]] = relabel
        live &= ~(repeated | settled)
        n_live = np.count_nonzero(live)
        if n_live == 0:
            break
        old_labels, c0, c1 = labels, new0, new1
        if n_live > (1.0 - COMPACT_SHARE) * len(live):
            continue
        origin = origin[live]
        xc, lengths, tol = take_columns(xc, live), lengths[live], tol[live]
        valid = None if valid is None else take_columns(valid, live)
        old_labels, c0, c1 = take_columns(old_labels, live), c0[live], c1[live]
        live = np.ones(len(origin), dtype=bool)
    return out


# --------------------------------------------------------------------------------------------
# EM


@dataclass(frozen=True)
class Mixtures:
    """Parameters of R two-component mixtures, component axis first: each (2, R)."""

    weights: Float
    means: Float
    variances: Float


def gaussian_parameters(x: Float, resp: Float, reg_covar: float) -> tuple[Float, Float, Float]:
    """Summed responsibilities, means and variances from responsibilities.

    ``x`` (T, R); ``resp`` (2, T, R), zero on padded frames. Returns ``nk`` (2, R) (with
    the reference's ``10 * eps``), means (2, R), variances (2, R) (``reg_covar`` added).
    """
    nk = time_sums(resp) + NK_FLOOR
    weighted = resp * x
    means = time_sums(weighted) / nk
    diff = np.subtract(x, means[:, None, :], out=weighted)
    sq = resp * diff
    sq *= diff
    variances = time_sums(sq) / nk
    variances += reg_covar
    return nk, means, variances


def check_variances(variances: Float) -> None:
    """Raise as the reference does when a variance admits no Cholesky factor."""
    if not np.all(variances > 0):
        raise ValueError(
            "Fitting the mixture model failed because some components have ill-defined "
            "empirical covariance (for instance caused by singleton or collapsed samples). "
            "Try to decrease the number of components, increase reg_covar, or scale the "
            "input data."
        )


def initial_mixtures(
    x: Float, labels: Bool, valid: Bool | None, lengths: Int, reg_covar: float
) -> Mixtures:
    """Mixtures from hard k-means labels: x, labels, valid (T, R); lengths (R,)."""
    resp = np.empty((2, *x.shape))
    np.logical_not(labels, out=resp[0], casting="unsafe")
    if valid is not None:
        resp[0] *= valid
    resp[1] = labels
    nk, means, variances = gaussian_parameters(x, resp, reg_covar)
    check_variances(variances)
    return Mixtures(nk / lengths, means, variances)


def e_step(x: Float, valid: Bool | None, mix: Mixtures) -> tuple[Float, Float]:
    """Responsibilities and summed log-likelihood.

    ``x`` (T, R), ``valid`` (T, R) or None. Returns ``resp`` (2, T, R) (zero on padded
    frames) and the sum over each column's frames of ``log p(x_t)`` (R,).
    """
    prec_chol = 1.0 / np.sqrt(mix.variances)
    log_prec_chol = np.log(prec_chol)
    log_weights = np.log(mix.weights)
    # log(pi_k N(x_t | mu_k, var_k)), written as scikit-learn writes it
    weighted = np.empty((2, *x.shape))
    for k in range(2):
        scaled = np.multiply(x, prec_chol[k], out=weighted[k])
        scaled -= mix.means[k] * prec_chol[k]
        np.square(scaled, out=scaled)
        scaled += LOG_2PI
        scaled *= -0.5
        scaled += log_prec_chol[k]
        scaled += log_weights[k]
    log_norm = log_sum_exp_pair(weighted[0], weighted[1])
    weighted -= log_norm
    resp = np.exp(weighted, out=weighted)
    if valid is not None:
        resp *= valid
        log_norm *= valid
    return resp, time_sums(log_norm)


def m_step(x: Float, resp: Float, reg_covar: float) -> Mixtures:
    """M-step from responsibilities (2, T, R) over x (T, R); weights normalised to sum 1."""
    nk, means, variances = gaussian_parameters(x, resp, reg_covar)
    return Mixtures(nk / (nk[0] + nk[1]), means, variances)


def run_em(
    x: Float,
    valid: Bool | None,
    lengths: Int,
    start: Mixtures,
    tol: float,
    max_iter: int,
    reg_covar: float,
) -> tuple[Mixtures, Float]:
    """EM from ``start`` for R columns; each stops on its own. Returns mixtures and bounds.

    ``x`` (T, R), ``valid`` (T, R) or None, ``lengths`` (R,). The bound (R,) is the mean
    log-likelihood of the last E-step; the mixtures are those of the last M-step. Columns
    that have stopped are recorded at once and dropped from the arrays now and then
    (:data:`COMPACT_SHARE`); until then their further iterations are ignored.
    """
    n_columns = x.shape[1]
    out_weights = np.empty((2, n_columns))
    out_means = np.empty((2, n_columns))
    out_variances = np.empty((2, n_columns))
    out_bound = np.empty(n_columns)
    # The iterating arrays hold the columns ``origin`` of the input; ``live`` marks those
    # still iterating.
    origin = np.arange(n_columns)
    live = np.ones(n_columns, dtype=bool)
    mix, n_frames = start, lengths.astype(np.float64)
    bound = np.full(n_columns, -np.inf)
    for it in range(1, max_iter + 1):
        previous = bound
        with np.errstate(invalid="ignore", divide="ignore"):  # stopped columns only
            resp, log_lik = e_step(x, valid, mix)
            bound = log_lik / n_frames
            mix = m_step(x, resp, reg_covar)
            done = live & ((np.abs(bound - previous) < tol) | (it == max_iter))
        check_variances(mix.variances[:, live])
        if not done.any():
            continue
        columns = origin[done]
        out_weights[:, columns] = mix.weights[:, done]
        out_means[:, columns] = mix.means[:, done]
        out_variances[:, columns] = mix.variances[:, done]
        out_bound[columns] = bound[done]
        live &= ~done
        n_live = np.count_nonzero(live)
        if n_live == 0:
            break
        if n_live > (1.0 - COMPACT_SHARE) * len(live):
            continue
        origin = origin[live]
        x, n_frames, bound = take_columns(x, live), n_frames[live], bound[live]
        valid = None if valid is None else take_columns(valid, live)
        mix = Mixtures(mix.weights[:, live], mix.means[:, live], mix.variances[:, live])
        live = np.ones(len(origin), dtype=bool)
    return Mixtures(out_weights, out_means, out_variances), out_bound


# --------------------------------------------------------------------------------------------
# Initialisations: duplicates and selection


def duplicate_sources(
    labels: Bool, valid: Bool | None, n_traces: int, n_init: int
) -> tuple[Int, Bool]:
    """For each (trace, initialisation), the first initialisation with the same partition.

    ``labels``, ``valid`` (T, Q * I) (``valid`` None: nothing padded), columns ordered
    trace-major. Two labellings are the same partition when equal or equal after swapping
    the clusters; the EM arithmetic treats both components alike, so such initialisations
    reach the same bound, bit for bit. Returns ``source`` (Q, I) (an index in 0..I-1,
    ``source[q, i] <= i``) and ``flipped`` (Q, I): whether frame 0 is in cluster 1.
    """
    flipped = labels[0].reshape(n_traces, n_init).copy()
    canonical = labels ^ labels[0]
    if valid is not None:
        canonical &= valid
    packed = np.packbits(canonical, axis=0).T.reshape(n_traces, n_init, -1)
    source = np.tile(np.arange(n_init), (n_traces, 1))
    for i in range(1, n_init):
        for j in range(i - 1, -1, -1):
            same = (packed[:, i] == packed[:, j]).all(axis=1)
            source[same, i] = source[same, j]
    return source, flipped


def select_initialisation(bounds: Float) -> Int:
    """Index of the kept initialisation per trace: (Q, I) -> (Q,).

    The reference's rule: initialisation i replaces the current best when its bound is
    strictly higher, or while the best bound is still ``-inf``.
    """
    n_traces, n_init = bounds.shape
    best = np.zeros(n_traces, dtype=np.int64)
    top = np.full(n_traces, -np.inf)
    for i in range(n_init):
        take = (bounds[:, i] > top) | (top == -np.inf)
        best[take] = i
        top[take] = bounds[take, i]
    return best


# --------------------------------------------------------------------------------------------
# Driver


def kmeans_initialisations(x: Float, valid: Bool | None, lengths: Int, draws: Float) -> Bool:
    """k-means labels of every initialisation of every trace of a chunk.

    Parameters
    ----------
    x : (T, Q) traces, zero-padded.
    valid : (T, Q) frame mask, or None when nothing is padded.
    lengths : (Q,) trace lengths, ascending.
    draws : (I, 1 + N_LOCAL_TRIALS) from :func:`initialisation_draws`.

    Returns
    -------
    (T, Q * I) labels (True: cluster 1), column ``q * I + i`` for trace q and
    initialisation i; False on padded frames.
    """
    n_traces = x.shape[1]
    n_init = draws.shape[0]
    mean, var = trace_statistics(x, lengths)
    xc = x - mean
    if valid is not None:
        xc *= valid
    first = np.empty((n_traces, n_init), dtype=np.int64)
    for length, cols in length_groups(lengths):
        first[cols] = first_centre_indices(length, draws[:, 0])
    c0, c1 = kmeans_plusplus(xc, valid, lengths, first, draws[:, 1:])
    # one column per (trace, initialisation), trace-major
    trace_of_column = np.repeat(np.arange(n_traces), n_init)
    xc_per_init = take_columns(xc, trace_of_column)
    valid_per_init = None if valid is None else take_columns(valid, trace_of_column)
    tol = (var * LLOYD_TOL)[trace_of_column]
    return lloyd(
        xc_per_init, valid_per_init, lengths[trace_of_column], c0.ravel(), c1.ravel(), tol
    )


def fit_chunk(
    x: Float, valid: Bool | None, lengths: Int, draws: Float, config: LocalizeConfig
) -> tuple[Float, Float, Float, Float]:
    """Fit the traces of one chunk: x (T, Q), valid (T, Q) or None, lengths (Q,) sorted.

    Returns weights (Q, 2), means (Q, 2), variances (Q, 2), lower bounds (Q,).
    """
    n_traces = x.shape[1]
    n_init = draws.shape[0]
    labels = kmeans_initialisations(x, valid, lengths, draws)
    trace_of_column = np.repeat(np.arange(n_traces), n_init)
    valid_per_init = None if valid is None else take_columns(valid, trace_of_column)
    source, flipped = duplicate_sources(labels, valid_per_init, n_traces, n_init)
    # EM runs once per distinct partition: the columns that are their own source
    distinct = np.flatnonzero((source == np.arange(n_init)).ravel())
    trace_of_distinct = trace_of_column[distinct]
    x_distinct = take_columns(x, trace_of_distinct)
    valid_distinct = None if valid is None else take_columns(valid, trace_of_distinct)
    lengths_distinct = lengths[trace_of_distinct]
    start = initial_mixtures(
        x_distinct,
        take_columns(labels, distinct),
        valid_distinct,
        lengths_distinct,
        config.reg_covar,
    )
    del labels
    mix, bounds_distinct = run_em(
        x_distinct,
        valid_distinct,
        lengths_distinct,
        start,
        config.tol,
        config.max_iter,
        config.reg_covar,
    )
    return kept_parameters(mix, bounds_distinct, distinct, source, flipped)


def kept_parameters(
    mix: Mixtures, bounds_distinct: Float, distinct: Int, source: Int, flipped: Bool
) -> tuple[Float, Float, Float, Float]:
    """Each trace's kept initialisation, from the EM results of the distinct partitions.

    ``mix`` (2, U), ``bounds_distinct`` (U,): results of the columns ``distinct`` (U,) of
    the (Q * I) initialisations; ``source``, ``flipped`` (Q, I) from
    :func:`duplicate_sources`. An initialisation takes its source's results, components
    swapped when its clusters are. Returns weights, means, variances (Q, 2) and lower
    bounds (Q,).
    """
    n_traces, n_init = source.shape
    result_of_column = np.full(n_traces * n_init, -1, dtype=np.int64)
    result_of_column[distinct] = np.arange(len(distinct))
    source_column = np.arange(n_traces)[:, None] * n_init + source
    result_of_init = result_of_column[source_column.ravel()].reshape(n_traces, n_init)
    bounds = bounds_distinct[result_of_init]
    best = select_initialisation(bounds)
    traces = np.arange(n_traces)
    kept = result_of_init[traces, best]
    swap = flipped[traces, best] != flipped[traces, source[traces, best]]
    order = np.where(swap[:, None], [1, 0], [0, 1])
    take = np.take_along_axis
    weights = take(mix.weights[:, kept].T, order, axis=1)
    means = take(mix.means[:, kept].T, order, axis=1)
    variances = take(mix.variances[:, kept].T, order, axis=1)
    return weights, means, variances, bounds[traces, best]


def fit_fast(
    traces: Sequence[Float] | Float,
    config: LocalizeConfig,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> MixtureFit:
    """Fit a two-component mixture to each trace, as :func:`~.mixture.fit_reference`.

    Parameters
    ----------
    traces : N arrays (T_i,), T_i >= 2, finite; or one (N, T) array of equal-length traces.
    config : uses ``n_init``, ``random_state``, ``tol``, ``max_iter``, ``reg_covar``.
    chunk_elements : work per chunk (padded frames x traces x initialisations); bounds the
        memory. Results do not depend on it.

    Returns
    -------
    MixtureFit with weights, means, variances (N, 2) in the reference's component order and
    lower bounds (N,).
    """
    data = check_traces(traces)
    if isinstance(data, np.ndarray):
        lengths = np.full(data.shape[0], data.shape[1], dtype=np.int64)
    else:
        lengths = np.array([len(t) for t in data], dtype=np.int64)
    n = len(lengths)
    weights = np.empty((n, 2))
    means = np.empty((n, 2))
    variances = np.empty((n, 2))
    lower = np.empty(n)
    if n == 0:
        return MixtureFit(weights, means, variances, lower)
    draws = initialisation_draws(config.n_init, config.random_state)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    for part in plan_chunks(sorted_lengths, config.n_init, chunk_elements):
        positions = order[part]
        if isinstance(data, np.ndarray):
            x = np.ascontiguousarray(data[positions].T)
            valid = None
        else:
            x, valid = pad_time_major([data[i] for i in positions], sorted_lengths[part])
        fitted = fit_chunk(x, valid, sorted_lengths[part], draws, config)
        weights[positions], means[positions], variances[positions], lower[positions] = fitted
    return MixtureFit(weights, means, variances, lower)
