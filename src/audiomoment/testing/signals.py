"""Small building blocks of the simulators: unit vectors, slow walks, AR(1) noise, window
presence, synthetic windows, and 1-D SIMULATED similarity traces for tests of the mixture
engines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter


def unit(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """``x`` divided by its L2 norm along ``axis``."""
    return x / np.linalg.norm(x, axis=axis, keepdims=True)



def slow_walk(rng: np.random.Generator, n: int, timescale: float) -> NDArray[np.float64]:
    """A stationary, slowly varying Gaussian process of unit variance: (n,).

    White noise smoothed with a Gaussian of width ``timescale`` frames (padded so the ends
    are not special), divided by the filter's theoretical standard deviation.
    """
    pad = math.ceil(4 * timescale)
    white = rng.standard_normal(n + 2 * pad)
    smooth = gaussian_filter1d(white, timescale, mode="wrap", truncate=4.0)[pad : pad + n]
    x = np.arange(-pad, pad + 1)
    kernel = np.exp(-0.5 * (x / timescale) ** 2)
    kernel /= kernel.sum()
    return smooth / math.sqrt(float(np.sum(kernel**2)))


def ar1_noise(rng: np.random.Generator, n: int, dim: int, rho: float) -> NDArray[np.float64]:
    """AR(1) vectors over frames, stationary, expected squared norm 1: (n, dim)."""
    burn = 20 if rho > 0 else 0
    white = rng.standard_normal((n + burn, dim)) / math.sqrt(dim)
    out = lfilter([math.sqrt(1.0 - rho * rho)], [1.0, -rho], white, axis=0)
    return out[burn:]


def presence(windows: NDArray[np.float64], n_frames: int) -> NDArray[np.float64]:
    """Overlap of each 1-s frame [t, t + 1) with each window: (K, 2) -> (K, T) in [0, 1]."""
    t = np.arange(n_frames, dtype=np.float64)
    start, end = windows[:, :1], windows[:, 1:]
    return np.clip(np.minimum(end, t + 1.0) - np.maximum(start, t), 0.0, 1.0)


def draw_windows(
    rng: np.random.Generator,
    duration: float,
    windows_per_query: tuple[int, int] = (1, 6),
    window_length_s: tuple[float, float] = (1.0, 30.0),
) -> NDArray[np.float64]:
    """Synthetic ground-truth windows: disjoint, in seconds, inside ``[0, duration]``.

    Lengths are log-uniform in ``window_length_s`` (at most a third of the duration, at least
    1 s when the duration allows); edges are rounded to 0.1 s. Returns (K, 2) sorted by start.
    """
    n = int(rng.integers(windows_per_query[0], windows_per_query[1] + 1))
    lo_len = min(window_length_s[0], duration)
    hi_len = max(lo_len, min(window_length_s[1], duration / 3.0))
    windows: list[tuple[float, float]] = []
    for _ in range(20 * n):
        if len(windows) == n:
            break
        length = float(np.exp(rng.uniform(np.log(lo_len), np.log(hi_len))))
        start = round(float(rng.uniform(0.0, duration - length)), 1)
        end = round(min(start + length, duration), 1)
        if end <= start:
            continue
        if all(end <= s or start >= e for s, e in windows):
            windows.append((start, end))
    if not windows:  # duration too short for the draws: one window over the middle third
        windows.append((round(duration / 3, 1), round(2 * duration / 3, 1)))
    return np.array(sorted(windows), dtype=np.float64).reshape(-1, 2)


def simulate_traces(
    n_queries: int,
    durations: Sequence[float] | None = None,
    seed: int = 0,
    snr: float = 2.0,
    drift: float = 1.0,
    noise_correlation: float = 0.5,
    windows_per_query: tuple[int, int] = (1, 3),
    window_length_s: tuple[float, float] = (3.0, 30.0),
    duration_range_s: tuple[float, float] = (60.0, 300.0),
) -> tuple[list[NDArray[np.float64]], list[float], list[NDArray[np.float64]]]:
    """SIMULATED 1-D similarity traces with known windows, for tests of the mixture engines.

    Each trace is ``drift * slow walk + snr * presence + AR(1) noise`` (noise of unit
    variance), one value per 1-s frame, T = floor(duration). Nothing is projected or written.

    Parameters
    ----------
    n_queries : number of traces.
    durations : (n_queries,) durations in seconds (>= 2); None: integers drawn from
        ``duration_range_s``.
    seed : seed of every draw.
    snr : height of the event plateau over the noise's standard deviation.
    drift : standard deviation of the slowly varying baseline (timescale 20 frames).
    noise_correlation : AR(1) correlation of the frame noise.

    Returns
    -------
    traces : n_queries arrays (T_i,) float64.
    durations : n_queries durations in seconds.
    gt_windows : n_queries arrays (K_i, 2) of [start_s, end_s].
    """
    rng = np.random.default_rng([seed, 7])
    if durations is None:
        lo, hi = duration_range_s
        durations = [float(d) for d in rng.integers(math.ceil(lo), math.floor(hi) + 1, n_queries)]
    durations = [float(d) for d in durations]
    if len(durations) != n_queries:
        raise ValueError(f"got {len(durations)} durations for {n_queries} queries")
    if any(d < 2 for d in durations):
        raise ValueError("every duration must be >= 2 s")
    traces, windows = [], []
    for d in durations:
        n = math.floor(d)
        w = draw_windows(rng, d, windows_per_query, window_length_s)
        level = presence(w, n).max(axis=0)
        noise = ar1_noise(rng, n, 1, noise_correlation)[:, 0]
        traces.append(drift * slow_walk(rng, n, 20.0) + snr * level + noise)
        windows.append(w)
    return traces, durations, windows


def clap_like_trace(
    rng: np.random.Generator, duration_s: float, windows: Sequence[Sequence[float]]
) -> NDArray[np.float64]:
    """One CLAP-like similarity trace (T,), T = round(duration_s), events over ``windows``.

    Background level 0.05-0.25 with a slow drift, frame noise, and a raised plateau of small
    contrast (0.01-0.12, jittered per window) over each window, weighted by frame overlap;
    sometimes a distracting bump elsewhere.
    """
    n = max(2, round(duration_s))
    t = np.arange(n)
    drift = gaussian_filter1d(rng.normal(size=n), rng.uniform(4, 15), mode="reflect")
    drift *= rng.uniform(0.005, 0.04) / max(float(np.std(drift)), 1e-12)
    x = rng.uniform(0.05, 0.25) + drift + rng.uniform(0.01, 0.035) * rng.normal(size=n)
    contrast = rng.uniform(0.01, 0.12)
    for start, end in windows:
        overlap = np.clip(np.minimum(t + 1, end) - np.maximum(t, start), 0, 1)
        x += contrast * rng.uniform(0.7, 1.3) * overlap
    if rng.random() < 0.3:
        a = int(rng.integers(0, n))
        width = int(rng.integers(1, max(2, n // 8)))
        x[a : a + width] += contrast * rng.uniform(0.3, 1.0)
    return x
