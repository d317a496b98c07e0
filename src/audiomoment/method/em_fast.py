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
from audiomoment.method.mixture import MixtureFit

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
    n_q = xc.shape[1]
    cols = np.arange(n_q)[:, None]
    x3 = xc[:, :, None]
    x3_sq = x3 * x3
    mask3 = None if valid is None else valid[:, :, None]

    c0 = xc[first, cols]
    closest = expanded_sq_distances(c0, x3, x3_sq)
    if mask3 is not None:
        closest *= mask3
    width = xc.shape[0]
    potential = time_sums(closest.reshape(width, -1)).reshape(closest.shape[1:])
    cumulative = np.cumsum(closest, axis=0)
    last = (lengths - 1)[:, None]

    best_pot = None
    best_idx = None
    for trial in range(trial_draws.shape[1]):
        target = trial_draws[None, :, trial] * potential
        idx = np.minimum(np.count_nonzero(cumulative < target, axis=0), last)
        d = expanded_sq_distances(xc[idx, cols], x3, x3_sq)
        np.minimum(closest, d, out=d)
        if mask3 is not None:
            d *= mask3
        pot = time_sums(d.reshape(width, -1)).reshape(d.shape[1:])
        if best_pot is None:
            best_pot, best_idx = pot, idx
        else:
            better = pot < best_pot
            best_pot = np.where(better, pot, best_pot)
            best_idx = np.where(better, idx, best_idx)
    return c0, xc[best_idx, cols]


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
    heaviest one. Returns the two new centres.
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
    act = np.arange(xc.shape[1])
    live = np.ones(len(act), dtype=bool)
    x, v, n, tl = xc, valid, lengths, tol
    old: Bool | None = None
    for it in range(LLOYD_MAX_ITER):
        labels = assign_labels(x, c0, c1)
        if v is not None:
            labels &= v
        if old is None:
            strict = np.zeros(len(act), dtype=bool)
        else:
            strict = live & (labels == old).all(axis=0)
        new0, new1 = lloyd_update(x, labels, n, c0, c1)
        shift0 = np.sqrt((new0 - c0) * (new0 - c0))
        shift1 = np.sqrt((new1 - c1) * (new1 - c1))
        by_tol = live & ~strict
        if it < LLOYD_MAX_ITER - 1:
            by_tol &= shift0 * shift0 + shift1 * shift1 <= tl
        if strict.any():
            out[:, act[strict]] = take_columns(labels, strict)
        if by_tol.any():
            relabel = assign_labels(take_columns(x, by_tol), new0[by_tol], new1[by_tol])
            if v is not None:
                relabel &= take_columns(v, by_tol)
            out[:, act[by_tol]] = relabel
        live &= ~(strict | by_tol)
        n_live = np.count_nonzero(live)
        if n_live == 0:
            break
        old, c0, c1 = labels, new0, new1
        if n_live > (1.0 - COMPACT_SHARE) * len(live):
            continue
        act = act[live]
        x, n, tl = take_columns(x, live), n[live], tl[live]
        v = None if v is None else take_columns(v, live)
        old, c0, c1 = take_columns(old, live), c0[live], c1[live]
        live = np.ones(len(act), dtype=bool)
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


def log_sum_exp_pair(a: Float) -> Float:
    """log(exp(a[0]) + exp(a[1])) as scikit-learn's ``_logsumexp`` computes it: (2, ...) -> (...).

    Finite inputs take the short form ``log1p(exp(min - max)) + max`` (equal to the
    reference's, bit for bit, including ties); anything else the reference's general form.
    """
    top = np.maximum(a[0], a[1])
    if np.all(np.isfinite(top)):
        out = np.minimum(a[0], a[1])
        out -= top
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += top
        return out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        is_top = a == top
        count = is_top.sum(axis=0).astype(np.float64)
        shift = np.where(np.isfinite(top), top, 0.0)
        e = np.where(is_top, 0.0, np.exp(np.where(is_top, -np.inf, a) - shift))
        s = e[0] + e[1]
        s = np.where(s == 0, s, s / count)
        return np.log1p(s) + np.log(count) + top


def e_step(x: Float, valid: Bool | None, mix: Mixtures) -> tuple[Float, Float]:
    """Responsibilities and summed log-likelihood.

    ``x`` (T, R), ``valid`` (T, R) or None. Returns ``resp`` (2, T, R) (zero on padded
    frames) and the sum over each column's frames of ``log p(x_t)`` (R,).
    """
    prec = 1.0 / np.sqrt(mix.variances)
    log_prec = np.log(prec)
    log_w = np.log(mix.weights)
    a = np.empty((2, *x.shape))
    for j in range(2):
        y = np.multiply(x, prec[j], out=a[j])
        y -= mix.means[j] * prec[j]
        np.square(y, out=y)
        y += LOG_2PI
        y *= -0.5
        y += log_prec[j]
        y += log_w[j]
    log_norm = log_sum_exp_pair(a)
    a -= log_norm
    resp = np.exp(a, out=a)
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
    n_rows = x.shape[1]
    out_w = np.empty((2, n_rows))
    out_mu = np.empty((2, n_rows))
    out_var = np.empty((2, n_rows))
    out_lb = np.empty(n_rows)
    act = np.arange(n_rows)
    live = np.ones(n_rows, dtype=bool)
    mix, n = start, lengths.astype(np.float64)
    bound = np.full(n_rows, -np.inf)
    for it in range(1, max_iter + 1):
        prev = bound
        with np.errstate(invalid="ignore", divide="ignore"):  # stopped columns only
            resp, log_lik = e_step(x, valid, mix)
            bound = log_lik / n
            mix = m_step(x, resp, reg_covar)
            done = live & ((np.abs(bound - prev) < tol) | (it == max_iter))
        check_variances(mix.variances[:, live])
        if not done.any():
            continue
        rows = act[done]
        out_w[:, rows] = mix.weights[:, done]
        out_mu[:, rows] = mix.means[:, done]
        out_var[:, rows] = mix.variances[:, done]
        out_lb[rows] = bound[done]
        live &= ~done
        n_live = np.count_nonzero(live)
        if n_live == 0:
            break
        if n_live > (1.0 - COMPACT_SHARE) * len(live):
            continue
        act = act[live]
        x, n, bound = take_columns(x, live), n[live], bound[live]
        valid = None if valid is None else take_columns(valid, live)
        mix = Mixtures(mix.weights[:, live], mix.means[:, live], mix.variances[:, live])
        live = np.ones(len(act), dtype=bool)
    return Mixtures(out_w, out_mu, out_var), out_lb


# --------------------------------------------------------------------------------------------
# Initialisations: duplicates and selection


def duplicate_sources(labels: Bool, valid: Bool | None, n_q: int, n_init: int) -> tuple[Int, Bool]:
    """For each (trace, initialisation), the first initialisation with the same partition.

    ``labels``, ``valid`` (T, Q * I) (``valid`` None: nothing padded), columns ordered
    trace-major. Two labellings are the same partition when equal or equal after swapping
    the clusters; the EM arithmetic treats both components alike, so such initialisations
    reach the same bound, bit for bit. Returns ``source`` (Q, I) (an index in 0..I-1,
    ``source[q, i] <= i``) and ``flipped`` (Q, I): whether frame 0 is in cluster 1.
    """
    flipped = labels[0].reshape(n_q, n_init).copy()
    canonical = labels ^ labels[0]
    if valid is not None:
        canonical &= valid
    packed = np.packbits(canonical, axis=0).T.reshape(n_q, n_init, -1)
    source = np.tile(np.arange(n_init), (n_q, 1))
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
    n_q, n_init = bounds.shape
    best = np.zeros(n_q, dtype=np.int64)
    top = np.full(n_q, -np.inf)
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
    n_q = x.shape[1]
    n_init = draws.shape[0]
    mean, var = trace_statistics(x, lengths)
    xc = x - mean
    if valid is not None:
        xc *= valid
    first = np.empty((n_q, n_init), dtype=np.int64)
    for length, cols in length_groups(lengths):
        first[cols] = first_centre_indices(length, draws[:, 0])
    c0, c1 = kmeans_plusplus(xc, valid, lengths, first, draws[:, 1:])
    rows_q = np.repeat(np.arange(n_q), n_init)
    xr = take_columns(xc, rows_q)
    vr = None if valid is None else take_columns(valid, rows_q)
    tol = (var * LLOYD_TOL)[rows_q]
    return lloyd(xr, vr, lengths[rows_q], c0.ravel(), c1.ravel(), tol)


def fit_chunk(
    x: Float, valid: Bool | None, lengths: Int, draws: Float, config: LocalizeConfig
) -> tuple[Float, Float, Float, Float]:
    """Fit the traces of one chunk: x (T, Q), valid (T, Q) or None, lengths (Q,) sorted.

    Returns weights (Q, 2), means (Q, 2), variances (Q, 2), lower bounds (Q,).
    """
    n_q = x.shape[1]
    n_init = draws.shape[0]
    labels = kmeans_initialisations(x, valid, lengths, draws)
    rows_q = np.repeat(np.arange(n_q), n_init)
    vr = None if valid is None else take_columns(valid, rows_q)
    source, flipped = duplicate_sources(labels, vr, n_q, n_init)
    uniq = np.flatnonzero((source == np.arange(n_init)).ravel())
    uq = rows_q[uniq]
    xu = take_columns(x, uq)
    vu = None if valid is None else take_columns(valid, uq)
    start = initial_mixtures(xu, take_columns(labels, uniq), vu, lengths[uq], config.reg_covar)
    del labels
    mix, bound_u = run_em(xu, vu, lengths[uq], start, config.tol, config.max_iter, config.reg_covar)
    return kept_parameters(mix, bound_u, uniq, source, flipped)


def kept_parameters(
    mix: Mixtures, bounds_u: Float, uniq: Int, source: Int, flipped: Bool
) -> tuple[Float, Float, Float, Float]:
    """Each trace's kept initialisation, from the EM results of the distinct partitions.

    ``mix`` (2, U), ``bounds_u`` (U,): results of the columns ``uniq`` (U,) of the (Q * I)
    initialisations; ``source``, ``flipped`` (Q, I) from :func:`duplicate_sources`. An
    initialisation takes its source's results, components swapped when its clusters are.
    Returns weights, means, variances (Q, 2) and lower bounds (Q,).
    """
    n_q, n_init = source.shape
    slot = np.full(n_q * n_init, -1, dtype=np.int64)
    slot[uniq] = np.arange(len(uniq))
    src_slot = slot[(np.arange(n_q)[:, None] * n_init + source).ravel()].reshape(n_q, n_init)
    bounds = bounds_u[src_slot]
    best = select_initialisation(bounds)
    qi = np.arange(n_q)
    k = src_slot[qi, best]
    swap = flipped[qi, best] != flipped[qi, source[qi, best]]
    order = np.where(swap[:, None], [1, 0], [0, 1])
    take = np.take_along_axis
    weights = take(mix.weights[:, k].T, order, axis=1)
    means = take(mix.means[:, k].T, order, axis=1)
    variances = take(mix.variances[:, k].T, order, axis=1)
    return weights, means, variances, bounds[qi, best]


def _as_traces(traces: Sequence[Float] | Float) -> tuple[list[Float] | Float, Int]:
    if isinstance(traces, np.ndarray) and traces.ndim == 2:
        arr = np.asarray(traces, dtype=np.float64)
        if arr.shape[1] < 2:
            raise ValueError(f"traces need at least 2 frames, got {arr.shape[1]}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("traces contain NaN or infinite values")
        return arr, np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
    arrays = [np.asarray(t, dtype=np.float64) for t in traces]
    for i, t in enumerate(arrays):
        if t.ndim != 1:
            raise ValueError(f"trace {i}: expected a 1-D array, got shape {t.shape}")
        if t.shape[0] < 2:
            raise ValueError(f"trace {i}: needs at least 2 frames, got {t.shape[0]}")
        if not np.all(np.isfinite(t)):
            raise ValueError(f"trace {i}: contains NaN or infinite values")
    return arrays, np.array([len(t) for t in arrays], dtype=np.int64)


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
    data, lengths = _as_traces(traces)
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
        idx = order[part]
        if isinstance(data, np.ndarray):
            x = np.ascontiguousarray(data[idx].T)
            valid = None
        else:
            x, valid = pad_time_major([data[i] for i in idx], sorted_lengths[part])
        w, mu, var, lb = fit_chunk(x, valid, sorted_lengths[part], draws, config)
        weights[idx], means[idx], variances[idx], lower[idx] = w, mu, var, lb
    return MixtureFit(weights, means, variances, lower)
