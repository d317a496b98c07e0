"""Localisation: trace -> smoothing -> two-component GMM -> posterior -> ranked windows.

This is the method of both systems once the trace is built (see ``audiomoment.method.traces``):

1. smooth the trace with a Gaussian kernel (``sigma_frames``, reflect mode, truncate 4);
2. fit a two-component 1-D Gaussian mixture by EM (``n_init`` seeded initialisations, the
   maximum-likelihood fit kept); the higher-mean component is "relevant";
3. posterior of the relevant component per frame;
4. candidates = maximal runs with posterior >= ``threshold``, scored by mean posterior +
   ``peak_weight`` * max smoothed trace, ranked;
5. fallback when the posterior gives no usable split (no frame reaches the threshold, or
   every frame does, or every run lies past the recording's end): the run around the
   smoothed trace's peak where it stays at or above (max + median) / 2, scored the same
   way. The report names only "a peak-centred fallback for flat traces"; this rule is this
   project's choice. A constant trace (no mixture can be fitted) takes the same fallback,
   which then covers the whole recording, and is flagged ``degenerate``.

:func:`localize_traces` runs these steps on blocks of equal-length traces at once (each
trace's result depends on that trace alone); :func:`localize_trace` and :func:`localize`
are the same path with one trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.method.em_fast import fit_fast
from audiomoment.method.mixture import MixtureFit, fit_reference, posterior
from audiomoment.method.moments import (
    frame_runs,
    peak_run_mask,
    runs_to_windows,
    score_runs,
)
from audiomoment.method.smoothing import smooth_gaussian
from audiomoment.method.traces import check_traces, query_trace

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


def smooth(traces: ArrayLike, sigma_frames: float = 1.5) -> NDArray[np.float64]:
    """Gaussian smoothing along time, bit for bit as ``scipy.ndimage.gaussian_filter1d`` with
    its defaults (reflect, truncate 4): (T,) -> (T,), or (N, T) -> (N, T) row by row (see
    :mod:`audiomoment.method.smoothing`)."""
    x = np.asarray(traces, dtype=np.float64)
    if sigma_frames == 0:
        return x.copy()
    return smooth_gaussian(x, sigma_frames)


def is_constant(block: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which rows carry no variation a mixture could split (all values equal, to 1e-12
    relative): (N, T) -> (N,)."""
    return np.ptp(block, axis=-1) <= 1e-12 * np.maximum(1.0, np.abs(block).max(axis=-1))


def fit_mixtures(
    smoothed: Sequence[NDArray[np.float64]] | NDArray[np.float64], config: LocalizeConfig
) -> MixtureFit:
    """Fit one two-component mixture per trace with the configured engine.

    ``smoothed``: N arrays (T_i,), or one (N, T) array of equal-length traces.
    """
    if config.engine == "fast":
        return fit_fast(smoothed, config)
    return fit_reference(smoothed, config)


def localize_traces(
    traces: Sequence[ArrayLike] | NDArray[np.float64],
    durations_s: Sequence[float | None] | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> list[LocalizationResult]:
    """Localise N traces: one :class:`LocalizationResult` each, in input order.

    ``traces``: N arrays (T_i,), T_i >= 2, finite (or one (N, T) array). ``durations_s``:
    recording durations for clipping windows (None: no clipping beyond the last frame).
    Traces of equal length are smoothed, scored and windowed together as (n, T) blocks; the
    mixtures of all of them are fitted in one call (one batch with the fast engine). Results
    are independent of batch size and order. Raises InputError for the first bad trace.
    """
    arrays = check_traces(traces)
    if isinstance(arrays, np.ndarray):
        arrays = list(arrays)
    limits = duration_limits(durations_s, len(arrays))
    blocks = smoothed_blocks(arrays, config.sigma_frames)
    # Each trace's fit depends on that trace alone: fit them all, in block order.
    fits = fit_mixtures(fit_inputs(blocks), config).relevant_first()

    results: list[LocalizationResult | None] = [None] * len(arrays)
    first = 0
    for block in blocks:
        fitted = slice(first, first + int(np.count_nonzero(~block.constant)))
        first = fitted.stop
        block_results = localize_block(
            [arrays[i] for i in block.index.tolist()],
            block,
            fits.weights[fitted],
            fits.means[fitted],
            fits.variances[fitted],
            limits[block.index],
            config,
        )
        for i, res in zip(block.index.tolist(), block_results, strict=True):
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


def smoothed_blocks(
    arrays: Sequence[NDArray[np.float64]], sigma_frames: float
) -> list[SmoothedBlock]:
    """Group N checked traces (T_i,) by length and smooth each block."""
    lengths = np.array([len(t) for t in arrays], dtype=np.int64)
    blocks = []
    for index in length_blocks(lengths, BLOCK_ELEMENTS):
        sm = smooth(np.stack([arrays[i] for i in index.tolist()]), sigma_frames)
        blocks.append(SmoothedBlock(index, sm, is_constant(sm)))
    return blocks


def duration_limits(durations_s: Sequence[float | None] | None, n: int) -> NDArray[np.float64]:
    """Durations as (N,) clipping limits, ``inf`` where there is none."""
    if durations_s is None:
        return np.full(n, np.inf)
    if len(durations_s) != n:
        raise ValueError(f"got {n} traces but {len(durations_s)} durations")
    return np.array([np.inf if d is None else d for d in durations_s], dtype=np.float64)


def candidate_masks(
    post: NDArray[np.float64], smoothed: NDArray[np.float64], threshold: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The frames of each row's candidate runs, and which rows took the fallback.

    ``post``, ``smoothed``: (n, T). A row's candidates are its frames with
    ``post >= threshold``; when none or all of them reach it, the row falls back to the
    peak-centred run of ``smoothed`` (:func:`~audiomoment.method.moments.peak_run`).
    Returns masks (n, T) and fallback flags (n,).
    """
    mask = post >= threshold
    fallback = ~mask.any(axis=1) | mask.all(axis=1)
    if fallback.any():
        mask[fallback] = peak_run_mask(smoothed[fallback])
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
    runs = frame_runs(mask)
    scores = score_runs(runs, post, smoothed, config.peak_weight)
    return runs_to_windows(runs, scores, limits, config.hop_s, config.max_windows)


def windows_with_fallback(
    post: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    limits: NDArray[np.float64],
    config: LocalizeConfig,
) -> tuple[list[NDArray[np.float64]], NDArray[np.bool_]]:
    """Windows (n arrays (K_i, 3)) and fallback flags (n,) of a block.

    Rows whose runs all lie past the recording's end take the peak-centred fallback.
    """
    mask, fallback = candidate_masks(post, smoothed, config.threshold)
    windows = block_windows(post, smoothed, mask, limits, config)
    empty = np.array([len(w) == 0 for w in windows], dtype=bool)
    vanished = np.flatnonzero(empty & ~fallback)
    if len(vanished):
        sm = smoothed[vanished]
        again = block_windows(post[vanished], sm, peak_run_mask(sm), limits[vanished], config)
        for r, w in zip(vanished.tolist(), again, strict=True):
            windows[r] = w
        fallback[vanished] = True
    return windows, fallback


def localize_block(
    traces: Sequence[NDArray[np.float64]],
    block: SmoothedBlock,
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    variances: NDArray[np.float64],
    limits: NDArray[np.float64],
    config: LocalizeConfig,
) -> list[LocalizationResult]:
    """Results of the n traces of a block from the mixtures of its non-constant rows.

    ``traces``: n arrays (T,), the block's traces before smoothing; ``weights``,
    ``means``, ``variances``: (m, 2) for the m non-constant rows in order, relevant
    component first; ``limits``: (n,) durations (``inf``: none).

    A constant row has no mixture (NaN parameters, ``delta`` 0) and a posterior of 0 on
    every frame, below any threshold (thresholds lie in (0, 1)): it takes the peak-centred
    fallback, which on a constant trace covers the whole trace.
    """
    smoothed, constant = block.smoothed, block.constant
    if constant.any():
        fitted = ~constant
        post = np.zeros_like(smoothed)
        post[fitted] = posterior(smoothed[fitted], weights, means, variances, component=0)
        parameters = np.full((3, len(smoothed), 2), np.nan)
        for k, values in enumerate((weights, means, variances)):
            parameters[k, fitted] = values
        weights, means, variances = parameters
    else:
        post = posterior(smoothed, weights, means, variances, component=0)
    windows, fallback = windows_with_fallback(post, smoothed, limits, config)
    delta = np.where(constant, 0.0, np.abs(means[:, 0] - means[:, 1])).tolist()
    flags = fallback.tolist()
    degenerate = constant.tolist()
    return [
        LocalizationResult(
            windows=windows[r], trace=traces[r], smoothed=smoothed[r], posterior=post[r],
            weights=weights[r], means=means[r], variances=variances[r],
            delta=delta[r], fallback=flags[r], degenerate=degenerate[r],
        )
        for r in range(len(traces))
    ]


def localize_trace(
    trace: ArrayLike,
    duration_s: float | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> LocalizationResult:
    """Localise one trace (T,) -> :class:`LocalizationResult` (a batch of one)."""
    return localize_traces([trace], [duration_s], config)[0]


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
