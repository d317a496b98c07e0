"""Similarity traces between a query and the window embeddings of one recording.

All embeddings live in the 1024-d MS-CLAP joint space and are L2-normalised here,
so dot products are cosine similarities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.errors import InputError


def l2_normalize(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """Divide ``x`` by its L2 norm along ``axis``; raises ValueError on a zero vector."""
    arr = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(arr, axis=axis, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("cannot normalise a zero vector")
    return arr / norm


def neutral_embedding(phrase_embeddings: ArrayLike) -> NDArray[np.float64]:
    """The neutral direction n: the L2-normalised mean of L2-normalised phrase embeddings.

    ``phrase_embeddings``: (P, D), one row per phrase (the report uses three). Returns (D,).
    """
    emb = np.atleast_2d(np.asarray(phrase_embeddings, dtype=np.float64))
    return l2_normalize(l2_normalize(emb).mean(axis=0))


def similarity_trace(audio_emb: ArrayLike, query_emb: ArrayLike) -> NDArray[np.float64]:
    """s_t = q . a_t for every window: (T, D) and (D,) -> (T,)."""
    a = l2_normalize(np.atleast_2d(audio_emb))
    q = l2_normalize(query_emb)
    return a @ q


def contrast_trace(
    audio_emb: ArrayLike, query_emb: ArrayLike, neutral_emb: ArrayLike
) -> NDArray[np.float64]:
    """System 1's background-contrast trace c_t = (q - n) . a_t: (T, D), (D,), (D,) -> (T,)."""
    a = l2_normalize(np.atleast_2d(audio_emb))
    q = l2_normalize(query_emb)
    n = l2_normalize(neutral_emb)
    return a @ (q - n)


def query_trace(
    audio_emb: ArrayLike, query_emb: ArrayLike, neutral_emb: ArrayLike | None = None
) -> NDArray[np.float64]:
    """The trace a system localises: contrast when ``neutral_emb`` is given (System 1),
    plain similarity otherwise (System 2)."""
    if neutral_emb is None:
        return similarity_trace(audio_emb, query_emb)
    return contrast_trace(audio_emb, query_emb, neutral_emb)


#: Largest magnitude a trace value may have. Traces of embeddings lie in [-2, 2]; far
#: beyond this bound the mixture's squared deviations and their sums overflow float64.
MAX_TRACE_MAGNITUDE = 1e100


def _too_large(block: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Rows of a finite (N, T) block (or one (T,) trace) with a value beyond
    :data:`MAX_TRACE_MAGNITUDE` (reductions only: no temporary copy of the block)."""
    return (block.max(axis=-1) > MAX_TRACE_MAGNITUDE) | (
        block.min(axis=-1) < -MAX_TRACE_MAGNITUDE)


def check_traces(
    traces: Sequence[ArrayLike] | NDArray[np.float64],
) -> list[NDArray[np.float64]] | NDArray[np.float64]:
    """The traces as float64, checked: each 1-D, at least 2 frames, every value finite and
    at most :data:`MAX_TRACE_MAGNITUDE` in magnitude.

    ``traces``: N arrays (T_i,), or one (N, T) array of equal-length traces (returned as
    one (N, T) float64 array; anything else comes back as a list of N arrays (T_i,)).
    Raises InputError naming the first bad trace (by position) and what is wrong with it.
    """
    if isinstance(traces, np.ndarray) and traces.ndim == 2:
        block = np.asarray(traces, dtype=np.float64)
        if len(block) and block.shape[1] < 2:
            raise InputError(f"trace 0: needs at least 2 frames, got {block.shape[1]}")
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if len(bad):
            raise InputError(f"trace {bad[0]}: contains NaN or infinite values")
        huge = np.flatnonzero(_too_large(block))
        if len(huge):
            raise InputError(f"trace {huge[0]}: {_magnitude_problem(block[huge[0]])}")
        return block
    arrays = [np.asarray(t, dtype=np.float64) for t in traces]
    for i, trace in enumerate(arrays):
        if trace.ndim != 1:
            raise InputError(f"trace {i}: expected a 1-D array, got shape {trace.shape}")
        if trace.shape[0] < 2:
            raise InputError(f"trace {i}: needs at least 2 frames, got {trace.shape[0]}")
        if not np.isfinite(trace).all():
            raise InputError(f"trace {i}: contains NaN or infinite values")
        if _too_large(trace):
            raise InputError(f"trace {i}: {_magnitude_problem(trace)}")
    return arrays


def _magnitude_problem(trace: NDArray[np.float64]) -> str:
    return (f"values up to {np.abs(trace).max():.3g} in magnitude; a trace must stay within "
            f"+-{MAX_TRACE_MAGNITUDE:g} (similarities lie in [-2, 2])")
