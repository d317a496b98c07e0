"""The localisation method written plainly, one trace at a time: the tests' oracle.

Each function follows one step of the method for a single trace, with loops where a loop is
the obvious form. The package computes the same results on (N, T) blocks; the tests hold it
to these functions bit for bit. Where bit-identity pins the arithmetic (the posterior in
scikit-learn's form, the mean posterior of a run as a difference of running sums), the
oracle writes that arithmetic out; everything else is plain Python.

The mixtures themselves come from the package's engines (``fit_fast`` / ``fit_reference``),
which ``tests/test_em_fast.py`` holds to scikit-learn; a trace's fit does not depend on the
other traces, so they are fitted in one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.special import logsumexp

from audiomoment.config import LocalizeConfig
from audiomoment.method.em_fast import fit_fast
from audiomoment.method.localize import LocalizationResult
from audiomoment.method.mixture import fit_reference

Runs = NDArray[np.int64]  # (R, 2) rows [first, last + 1]


def smooth(trace: NDArray[np.float64], sigma_frames: float) -> NDArray[np.float64]:
    """Gaussian smoothing of one trace (T,): ``gaussian_filter1d``, reflect, truncate 4."""
    if sigma_frames == 0:
        return trace.copy()
    return gaussian_filter1d(trace, sigma_frames, mode="reflect", truncate=4.0)


def is_constant(trace: NDArray[np.float64]) -> bool:
    """All values equal (spread at most 1e-12 of the largest magnitude, or of 1)."""
    return bool(np.ptp(trace) <= 1e-12 * max(1.0, float(np.abs(trace).max())))


def posterior(
    x: NDArray[np.float64],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    variances: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Posterior of component 0 per frame of one trace (T,), parameters (2,).

    log pi_k N(x_t | mu_k, var_k) in scikit-learn's form (through the precision's Cholesky
    factor), normalised with SciPy's ``logsumexp``.
    """
    prec_chol = 1.0 / np.sqrt(variances)
    y = x[:, None] * prec_chol[None, :] - (means * prec_chol)[None, :]
    log_density = -0.5 * (np.log(2 * np.pi) + y**2) + np.log(prec_chol)[None, :]
    weighted = log_density + np.log(weights)[None, :]
    return np.exp(weighted[:, 0] - logsumexp(weighted, axis=1))


def frame_runs(mask: NDArray[np.bool_]) -> Runs:
    """Maximal runs of True in one mask (T,), in time order: (R, 2)."""
    runs = []
    t = 0
    while t < len(mask):
        if mask[t]:
            first = t
            while t < len(mask) and mask[t]:
                t += 1
            runs.append((first, t))
        else:
            t += 1
    return np.array(runs, dtype=np.int64).reshape(-1, 2)


def peak_run(smoothed: NDArray[np.float64]) -> Runs:
    """From the peak, extend while the trace stays >= (max + median) / 2: (1, 2)."""
    peak = int(np.argmax(smoothed))
    level = (smoothed[peak] + np.median(smoothed)) / 2.0
    first = peak
    while first > 0 and smoothed[first - 1] >= level:
        first -= 1
    stop = peak + 1
    while stop < len(smoothed) and smoothed[stop] >= level:
        stop += 1
    return np.array([[first, stop]], dtype=np.int64)


def candidate_runs(
    post: NDArray[np.float64], smoothed: NDArray[np.float64], threshold: float
) -> tuple[Runs, bool]:
    """Runs of frames with posterior >= threshold, or the peak run when none or every frame
    reaches it; and whether the fallback gave them."""
    above = post >= threshold
    if not above.any() or above.all():
        return peak_run(smoothed), True
    return frame_runs(above), False


def score_runs(
    runs: Runs, post: NDArray[np.float64], smoothed: NDArray[np.float64], peak_weight: float
) -> NDArray[np.float64]:
    """mean(post over the run) + peak_weight * max(smoothed over the run), per run: (R,)."""
    running = np.concatenate(([0.0], np.cumsum(post)))
    scores = []
    for first, stop in runs.tolist():
        mean_post = (running[stop] - running[first]) / (stop - first)
        scores.append(mean_post + peak_weight * smoothed[first:stop].max())
    return np.array(scores, dtype=np.float64)


def runs_to_windows(
    runs: Runs,
    scores: NDArray[np.float64],
    duration_s: float | None,
    hop_s: float = 1.0,
    max_windows: int = 10,
) -> NDArray[np.float64]:
    """[start_s, end_s, score] per run, clipped to the duration (runs starting at or after
    it vanish), best first with ties in time order, at most ``max_windows``: (K, 3)."""
    rows = []
    for (first, stop), score in zip(runs.tolist(), scores.tolist(), strict=True):
        start, end = first * hop_s, stop * hop_s
        if duration_s is not None:
            start, end = min(start, duration_s), min(end, duration_s)
        if end > start:
            rows.append((start, end, score))
    rows.sort(key=lambda row: -row[2])  # a stable sort: ties keep time order
    return np.array(rows[:max_windows], dtype=np.float64).reshape(-1, 3)


def windows(
    runs: Runs,
    post: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    duration_s: float | None,
    config: LocalizeConfig,
) -> NDArray[np.float64]:
    scores = score_runs(runs, post, smoothed, config.peak_weight)
    return runs_to_windows(runs, scores, duration_s, config.hop_s, config.max_windows)


def localize_one(
    trace: NDArray[np.float64],
    smoothed: NDArray[np.float64],
    fit: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None,
    duration_s: float | None,
    config: LocalizeConfig,
) -> LocalizationResult:
    """The result for one trace from its smoothed form and its mixture (None: constant)."""
    if fit is None:  # no mixture: the peak run, which is the whole (constant) trace
        nan = np.full(2, np.nan)
        post = np.zeros_like(smoothed)
        return LocalizationResult(
            windows=windows(peak_run(smoothed), post, smoothed, duration_s, config),
            trace=trace, smoothed=smoothed, posterior=post,
            weights=nan, means=nan.copy(), variances=nan.copy(),
            delta=0.0, fallback=True, degenerate=True,
        )
    weights, means, variances = fit
    if means[1] > means[0]:  # the relevant (higher-mean) component first; ties keep order
        weights, means, variances = weights[::-1], means[::-1], variances[::-1]
    post = posterior(smoothed, weights, means, variances)
    runs, fallback = candidate_runs(post, smoothed, config.threshold)
    found = windows(runs, post, smoothed, duration_s, config)
    if len(found) == 0 and not fallback:  # every run lay past the recording's end
        fallback = True
        found = windows(peak_run(smoothed), post, smoothed, duration_s, config)
    return LocalizationResult(
        windows=found, trace=trace, smoothed=smoothed, posterior=post,
        weights=weights.copy(), means=means.copy(), variances=variances.copy(),
        delta=float(abs(means[0] - means[1])), fallback=fallback, degenerate=False,
    )


def localize_each(
    traces: Sequence[ArrayLike],
    durations_s: Sequence[float | None] | None,
    config: LocalizeConfig,
) -> list[LocalizationResult]:
    """Localise N valid traces (T_i,), T_i >= 2, one by one."""
    arrays = [np.asarray(t, dtype=np.float64) for t in traces]
    if durations_s is None:
        durations_s = [None] * len(arrays)
    smoothed = [smooth(t, config.sigma_frames) for t in arrays]
    to_fit = [i for i, s in enumerate(smoothed) if not is_constant(s)]
    engine = fit_fast if config.engine == "fast" else fit_reference
    fits = engine([smoothed[i] for i in to_fit], config)
    fit_of = {
        i: (fits.weights[k], fits.means[k], fits.variances[k]) for k, i in enumerate(to_fit)
    }
    return [
        localize_one(trace, sm, fit_of.get(i), duration, config)
        for i, (trace, sm, duration) in enumerate(zip(arrays, smoothed, durations_s, strict=True))
    ]
