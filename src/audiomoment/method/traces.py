"""Similarity traces between a query and the window embeddings of one recording.

All embeddings live in the 1024-d MS-CLAP joint space and are L2-normalised here,
so dot products are cosine similarities.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


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
