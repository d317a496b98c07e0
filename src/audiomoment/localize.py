"""Localisation: trace -> smoothing -> two-component GMM -> posterior -> ranked windows.

This is the method of both systems once the trace is built (see ``audiomoment.traces``):

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d

from audiomoment.config import LocalizeConfig
from audiomoment.mixture import MixtureFit, fit_reference, posterior
from audiomoment.moments import frame_runs, peak_run, runs_to_windows, score_runs
from audiomoment.traces import query_trace

DEFAULT_CONFIG = LocalizeConfig()


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


def fit_mixtures(smoothed: Sequence[NDArray[np.float64]], config: LocalizeConfig) -> MixtureFit:
    """Fit one two-component mixture per trace with the configured engine."""
    if config.engine == "fast":
        from audiomoment.em_fast import fit_fast

        return fit_fast(smoothed, config)
    return fit_reference(smoothed, config)


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


def localize_traces(
    traces: Sequence[ArrayLike],
    durations_s: Sequence[float | None] | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> list[LocalizationResult]:
    """Localise N traces at once (the fast engine fits their mixtures in one batch).

    ``traces``: N arrays (T_i,), T_i >= 2, finite. ``durations_s``: recording durations
    for clipping windows (None: no clipping beyond the last frame). Results are
    independent of batch size and order.
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
            nan2 = np.full(2, np.nan)
            post = np.zeros_like(sm)
            runs = peak_run(sm)
            results.append(
                LocalizationResult(
                    windows=_windows(runs, post, sm, duration, config),
                    trace=trace, smoothed=sm, posterior=post,
                    weights=nan2, means=nan2.copy(), variances=nan2.copy(),
                    delta=0.0, fallback=True, degenerate=True,
                )
            )
            continue
        k = slot[i]
        w, mu, var = fits.weights[k], fits.means[k], fits.variances[k]
        post = posterior(sm, w, mu, var, component=0)
        results.append(_from_posterior(trace, sm, post, w, mu, var, duration, config))
    return results


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
    threshold, the peak-centred run of ``smoothed`` (:func:`~audiomoment.moments.peak_run`).
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


def localize_trace(
    trace: ArrayLike,
    duration_s: float | None = None,
    config: LocalizeConfig = DEFAULT_CONFIG,
) -> LocalizationResult:
    """Localise one trace (T,) -> :class:`LocalizationResult`."""
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
