"""Localisation: trace -> smoothing -> two-component GMM -> posterior -> ranked windows.

This is the method of both systems once the trace is built (see ``audiomoment.method.traces``):

1. smooth the trace with a Gaussian kernel (``sigma_frames``, reflect mode, truncate 4);
2. fit a two-component 1-D Gaussian mixture by EM (``n_init`` seeded initialisations, the
   maximum-likelihood fit kept); the higher-mean component is "relevant";
3. posterior of the relevant component per frame;
4. candidates = maximal runs with posterior >= ``threshold``, scored by mean posterior +
   ``peak_weight`` * max smoothed trace, ranked;
5. fallback when the posterior gives no usable split (no frame reaches the threshold, or
   every frame does): the run around the smoothed trace's peak where it stays at or above
   (max + median) / 2, scored the same way. The report names only "a peak-centred
   fallback for flat traces"; this rule is this project's choice. A constant trace (no
   mixture can be fitted) takes the same fallback, which then covers the whole recording,
   and is flagged ``degenerate``.

:func:`localize_each` follows these steps trace by trace; :func:`localize_traces` computes
the same results, bit for bit, on blocks of equal-length traces at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d

from audiomoment.config import LocalizeConfig
from audiomoment.method.mixture import MixtureFit, fit_reference, posterior, posterior_rows
from audiomoment.method.moments import (
    frame_runs,
    peak_run,
    rank_row_windows,
    row_runs,
    runs_to_windows,
    score_row_runs,
    score_runs,
)
from audiomoment.method.traces import query_trace

DEFAULT_CONFIG = LocalizeConfig()
#: Most frames (traces x length) processed as one block; results do not depend on it.
BLOCK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class LocalizationResult:
    """What localisation found for one query.

    Attributes
    ----------
    windows : (K, 3) ranked rows [start_s, end_s, score], best first, K <= max_windows.
    trace : (T,) the trace localised (contrast for System 1, similarity for System 2).
    smoothed : (T,) the trace after Gaussian smoothing.
    posterior : (T,) posterior probability of the relevant component per frame.
    weights, means, variances : (2,) mixture parameters, [relevant, background].
    delta : |mu_relevant - mu_background|, the report's signal-quality measure.
    fallback : True when the windows came from the peak-centred fallback.
    degenerate : True when the trace was constant (no mixture fitted; NaN parameters).
    """

    windows: NDArray[np.float64]
    trace: NDArray[np.float64]
    smoothed: NDArray[np.float64]
    posterior: NDArray[np.float64]
    weights: NDArray[np.float64]
    means: NDArray[np.float64]
    variances: NDArray[np.float64]
    delta: float
    fallback: bool
    degenerate: bool


def smooth(trace: ArrayLike, sigma_frames: float = 1.5) -> NDArray[np.float64]:
    """Gaussian smoothing as ``scipy.ndimage.gaussian_filter1d`` with its defaults: (T,) -> (T,)."""
    x = np.asarray(trace, dtype=np.float64)
    if sigma_frames == 0:
        return x.copy()
    return gaussian_filter1d(x, sigma_frames, mode="reflect", truncate=4.0)


def fit_mixtures(
    smoothed: Sequence[NDArray[np.float64]] | NDArray[np.float64], config: LocalizeConfig
) -> MixtureFit:
    """Fit one two-component mixture per trace with the configured engine.

    ``smoothed``: N arrays (T_i,), or one (N, T) array of equal-length traces.
    """
    if config.engine == "fast":
        from audiomoment.method.em_fast import fit_fast

        return fit_fast(smoothed, config)
    return fit_reference(list(smoothed), config)


def _check_trace(trace: NDArray[np.float64], index: int) -> None:
    if trace.ndim != 1:
        raise ValueError(f"trace {index}: expected a 1-D array, got shape {trace.shape}")
    if trace.shape[0] < 2:
        raise ValueError(f"trace {index}: needs at least 2 frames, got {trace.shape[0]}")
    if not np.all(np.isfinite(trace)):
        raise ValueError(f"trace {index}: contains NaN or infinite values")


def is_constant(x: NDArray[np.float64]) -> bool:
    """True when a trace carries no variation a mixture could split (all values equal)."""
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())))


def localize_each(
    traces: Sequence[ArrayLike],
    durations_s: Sequence[float | None] | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> list[LocalizationResult]:
    """Localise N traces one by one after fitting their mixtures together.

    The plain form of the method, step by step for each trace with the functions of this
    module; :func:`localize_traces` computes the same results, bit for bit, on blocks of
    equal-length traces. ``traces``: N arrays (T_i,), T_i >= 2, finite. ``durations_s``:
    recording durations for clipping windows (None: no clipping beyond the last frame).
    """
    arrays = [np.asarray(t, dtype=np.float64) for t in traces]
    for i, t in enumerate(arrays):
        _check_trace(t, i)
    if durations_s is None:
        durations_s = [None] * len(arrays)
    if len(durations_s) != len(arrays):
        raise ValueError(f"got {len(arrays)} traces but {len(durations_s)} durations")

    smoothed = [smooth(t, config.sigma_frames) for t in arrays]
    constant = [is_constant(s) for s in smoothed]
    fit_idx = [i for i, c in enumerate(constant) if not c]
    fits = fit_mixtures([smoothed[i] for i in fit_idx], config).relevant_first()
    slot = {i: k for k, i in enumerate(fit_idx)}

    results = []
    for i, (trace, sm, duration) in enumerate(zip(arrays, smoothed, durations_s, strict=True)):
        if constant[i]:
            results.append(_degenerate(trace, sm, duration, config))
            continue
        k = slot[i]
        w, mu, var = fits.weights[k], fits.means[k], fits.variances[k]
        post = posterior(sm, w, mu, var, component=0)
        results.append(_from_posterior(trace, sm, post, w, mu, var, duration, config))
    return results


def _degenerate(
    trace: NDArray[np.float64],
    sm: NDArray[np.float64],
    duration: float | None,
    config: LocalizeConfig,
) -> LocalizationResult:
    """The result for a constant trace: no mixture, the fallback run over the whole trace."""
    nan2 = np.full(2, np.nan)
    post = np.zeros_like(sm)
    runs = peak_run(sm)
    return LocalizationResult(
        windows=_windows(runs, post, sm, duration, config),
        trace=trace, smoothed=sm, posterior=post,
        weights=nan2, means=nan2.copy(), variances=nan2.copy(),
        delta=0.0, fallback=True, degenerate=True,
    )


def _windows(
    runs: NDArray[np.int64],
    post: NDArray[np.float64],
    sm: NDArray[np.float64],
    duration: float | None,
    config: LocalizeConfig,
) -> NDArray[np.float64]:
    scores = score_runs(runs, post, sm, config.peak_weight)
    return runs_to_windows(runs, scores, duration, config.hop_s, config.max_windows)


def candidate_runs(
    post: NDArray[np.float64], smoothed: NDArray[np.float64], threshold: float
) -> tuple[NDArray[np.int64], bool]:
    """Candidate frame runs [first, last + 1) and whether the fallback produced them.

    Maximal runs with ``post >= threshold``; when no frame or every frame reaches the
    threshold, the peak-centred run of ``smoothed`` (:func:`~audiomoment.method.moments.peak_run`).
    """
    above = post >= threshold
    if not above.any() or above.all():
        return peak_run(smoothed), True
    return frame_runs(above), False


def _from_posterior(
    trace: NDArray[np.float64],
    sm: NDArray[np.float64],
    post: NDArray[np.float64],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    variances: NDArray[np.float64],
    duration: float | None,
    config: LocalizeConfig,
) -> LocalizationResult:
    runs, fallback = candidate_runs(post, sm, config.threshold)
    windows = _windows(runs, post, sm, duration, config)
    if len(windows) == 0 and not fallback:  # every run lay past the recording's end
        fallback = True
        windows = _windows(peak_run(sm), post, sm, duration, config)
    return LocalizationResult(
        windows=windows, trace=trace, smoothed=sm, posterior=post,
        weights=weights.copy(), means=means.copy(), variances=variances.copy(),
        delta=float(abs(means[0] - means[1])), fallback=fallback, degenerate=False,
    )


# --------------------------------------------------------------------------------------------
# The same method on blocks of equal-length traces (N, T), row by row bit-identical to the
# per-trace functions above.


def localize_traces(
    traces: Sequence[ArrayLike],
    durations_s: Sequence[float | None] | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> list[LocalizationResult]:
    """Localise N traces at once: the results of :func:`localize_each`, computed faster.

    ``traces``: N arrays (T_i,), T_i >= 2, finite. ``durations_s``: recording durations
    for clipping windows (None: no clipping beyond the last frame). Traces of equal length
    are smoothed, scored and windowed together as (n, T) blocks; the mixtures of all of
    them are fitted in one call (one batch with the fast engine). Results are independent
    of batch size and order.
    """
    arrays = [np.asarray(t, dtype=np.float64) for t in traces]
    blocks = smoothed_blocks(arrays, config.sigma_frames)
    limits = duration_limits(durations_s, len(arrays))

    # Each trace's fit depends on that trace alone: fit them in block order.
    fit_order = np.concatenate([b.index[~b.constant] for b in blocks] + [np.empty(0, np.int64)])
    fits = fit_mixtures(fit_inputs(blocks), config).relevant_first()
    slot = np.full(len(arrays), -1, dtype=np.int64)
    slot[fit_order] = np.arange(len(fit_order))

    results: list[LocalizationResult | None] = [None] * len(arrays)
    for block in blocks:
        for j in np.flatnonzero(block.constant).tolist():
            i = int(block.index[j])
            duration = None if np.isinf(limits[i]) else float(limits[i])
            results[i] = _degenerate(arrays[i], block.smoothed[j], duration, config)
        fitted = ~block.constant
        if not fitted.any():
            continue
        index = block.index[fitted]
        k = slot[index]
        block_results = localize_block(
            [arrays[i] for i in index.tolist()],
            block.smoothed[fitted],
            fits.weights[k],
            fits.means[k],
            fits.variances[k],
            limits[index],
            config,
        )
        for i, res in zip(index.tolist(), block_results, strict=True):
            results[i] = res
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class SmoothedBlock:
    """Equal-length traces after smoothing.

    Attributes
    ----------
    index : (n,) positions of the traces in the input, ascending.
    smoothed : (n, T) the smoothed traces.
    constant : (n,) which of them are constant (:func:`is_constant`).
    """

    index: NDArray[np.int64]
    smoothed: NDArray[np.float64]
    constant: NDArray[np.bool_]


def fit_inputs(
    blocks: Sequence[SmoothedBlock],
) -> list[NDArray[np.float64]] | NDArray[np.float64]:
    """The non-constant smoothed traces of the blocks, in block order, for the mixture fits.

    One (n, T) array when they all have the same length, else n arrays (T_i,).
    """
    parts = [b.smoothed[~b.constant] for b in blocks]
    parts = [p for p in parts if len(p)]
    if len({p.shape[1] for p in parts}) == 1:
        return np.concatenate(parts)
    return [row for p in parts for row in p]


def length_blocks(
    lengths: NDArray[np.int64], block_elements: int
) -> Iterator[NDArray[np.int64]]:
    """Positions of equal-length traces, in blocks of at most ``block_elements`` frames.

    ``lengths``: (N,). Yields index arrays (n,), ascending within a block; every block
    holds at least one trace.
    """
    if len(lengths) == 0:
        return
    order = np.argsort(lengths, kind="stable")
    edges = np.flatnonzero(np.diff(lengths[order])) + 1
    for group in np.split(order, edges):
        rows = max(1, block_elements // int(lengths[group[0]]))
        for a in range(0, len(group), rows):
            yield group[a : a + rows]


def shape_error(trace: NDArray[np.float64], index: int) -> str | None:
    """What is wrong with a trace's shape (not 1-D, fewer than 2 frames), or None."""
    if trace.ndim != 1:
        return f"trace {index}: expected a 1-D array, got shape {trace.shape}"
    if trace.shape[0] < 2:
        return f"trace {index}: needs at least 2 frames, got {trace.shape[0]}"
    return None


def smooth_rows(block: NDArray[np.float64], sigma_frames: float) -> NDArray[np.float64]:
    """:func:`smooth` applied to each row: (n, T) -> (n, T), bit-identical per row."""
    if sigma_frames == 0:
        return block.copy()
    return gaussian_filter1d(block, sigma_frames, axis=1, mode="reflect", truncate=4.0)


def constant_rows(block: NDArray[np.float64]) -> NDArray[np.bool_]:
    """:func:`is_constant` for each row: (n, T) -> (n,)."""
    return np.ptp(block, axis=1) <= 1e-12 * np.maximum(1.0, np.abs(block).max(axis=1))


def smoothed_blocks(
    arrays: Sequence[NDArray[np.float64]], sigma_frames: float
) -> list[SmoothedBlock]:
    """Check N traces, group them by length and smooth each block.

    Raises ValueError for the first bad trace (as :func:`localize_each` checks them:
    1-D, at least 2 frames, finite).
    """
    errors = {i: e for i, t in enumerate(arrays) if (e := shape_error(t, i)) is not None}
    good = np.array([i for i in range(len(arrays)) if i not in errors], dtype=np.int64)
    lengths = np.array([arrays[i].shape[0] for i in good.tolist()], dtype=np.int64)
    raw = []
    for part in length_blocks(lengths, BLOCK_ELEMENTS):
        index = good[part]
        x = np.stack([arrays[i] for i in index.tolist()])
        for i in index[~np.isfinite(x).all(axis=1)].tolist():
            errors[i] = f"trace {i}: contains NaN or infinite values"
        raw.append((index, x))
    if errors:
        raise ValueError(errors[min(errors)])
    blocks = []
    for index, x in raw:
        sm = smooth_rows(x, sigma_frames)
        blocks.append(SmoothedBlock(index, sm, constant_rows(sm)))
    return blocks


def duration_limits(durations_s: Sequence[float | None] | None, n: int) -> NDArray[np.float64]:
    """Durations as (N,) clipping limits, ``inf`` where there is none."""
    if durations_s is None:
        return np.full(n, np.inf)
    if len(durations_s) != n:
        raise ValueError(f"got {n} traces but {len(durations_s)} durations")
    return np.array([np.inf if d is None else d for d in durations_s], dtype=np.float64)


def peak_run_masks(smoothed: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The frames of each row's :func:`~audiomoment.method.moments.peak_run`: (n, T) -> (n, T)."""
    mask = np.zeros(smoothed.shape, dtype=bool)
    for r, row in enumerate(smoothed):
        ((first, stop),) = peak_run(row).tolist()
        mask[r, first:stop] = True
    return mask


def candidate_masks(
    post: NDArray[np.float64], smoothed: NDArray[np.float64], threshold: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """:func:`candidate_runs` for each row of a block, as frame masks.

    ``post``, ``smoothed``: (n, T). Returns the frames of the candidate runs (n, T) and
    which rows took the fallback (n,).
    """
    mask = post >= threshold
    fallback = ~mask.any(axis=1) | mask.all(axis=1)
    if fallback.any():
        mask[fallback] = peak_run_masks(smoothed[fallback])
    return mask, fallback


def block_windows(
    post: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    mask: NDArray[np.bool_],
    limits: NDArray[np.float64],
    config: LocalizeConfig,
) -> list[NDArray[np.float64]]:
    """Ranked windows of each row from its candidate frames.

    ``post``, ``smoothed``, ``mask``: (n, T); ``limits``: (n,) durations (``inf``: none).
    Returns n arrays (K_i, 3) [start_s, end_s, score].
    """
    rows, starts, stops = row_runs(mask)
    scores = score_row_runs(rows, starts, stops, post, smoothed, config.peak_weight)
    return rank_row_windows(
        rows, starts, stops, scores, limits, config.hop_s, config.max_windows
    )


def windows_with_fallback(
    post: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    limits: NDArray[np.float64],
    config: LocalizeConfig,
) -> tuple[list[NDArray[np.float64]], NDArray[np.bool_]]:
    """Windows (n arrays (K_i, 3)) and fallback flags (n,) of a block, as per trace.

    Rows whose runs all lie past the recording's end take the peak-centred fallback.
    """
    mask, fallback = candidate_masks(post, smoothed, config.threshold)
    windows = block_windows(post, smoothed, mask, limits, config)
    empty = np.array([len(w) == 0 for w in windows], dtype=bool)
    vanished = np.flatnonzero(empty & ~fallback)
    if len(vanished):
        sm = smoothed[vanished]
        again = block_windows(post[vanished], sm, peak_run_masks(sm), limits[vanished], config)
        for r, w in zip(vanished.tolist(), again, strict=True):
            windows[r] = w
        fallback[vanished] = True
    return windows, fallback


def localize_block(
    traces: Sequence[NDArray[np.float64]],
    smoothed: NDArray[np.float64],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    variances: NDArray[np.float64],
    limits: NDArray[np.float64],
    config: LocalizeConfig,
) -> list[LocalizationResult]:
    """Results of n non-constant traces of equal length from their fitted mixtures.

    ``traces``: n arrays (T,); ``smoothed``: (n, T); ``weights``, ``means``,
    ``variances``: (n, 2), relevant component first; ``limits``: (n,) durations
    (``inf``: none).
    """
    post = posterior_rows(smoothed, weights, means, variances, component=0)
    windows, fallback = windows_with_fallback(post, smoothed, limits, config)
    delta = np.abs(means[:, 0] - means[:, 1]).tolist()
    flags = fallback.tolist()
    return [
        LocalizationResult(
            windows=windows[r], trace=traces[r], smoothed=smoothed[r], posterior=post[r],
            weights=weights[r], means=means[r], variances=variances[r],
            delta=delta[r], fallback=flags[r], degenerate=False,
        )
        for r in range(len(traces))
    ]


def localize_trace(
    trace: ArrayLike,
    duration_s: float | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> LocalizationResult:
    """Localise one trace (T,) -> :class:`LocalizationResult`."""
    return localize_each([trace], [duration_s], config)[0]


def localize(
    audio_emb: ArrayLike,
    query_emb: ArrayLike,
    neutral_emb: ArrayLike | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
    duration_s: float | None = None,
) -> LocalizationResult:
    """Find the moments of one recording that match one query.

    ``audio_emb``: (T, D) window embeddings in the joint space (one per ``hop_s``);
    ``query_emb``: (D,); ``neutral_emb``: (D,) for System 1 (background contrast), None
    for System 2. ``duration_s`` clips the windows to the recording's length.
    """
    trace = query_trace(audio_emb, query_emb, neutral_emb)
    return localize_trace(trace, duration_s, config)
