"""The MS-CLAP projection heads: encoder outputs (768-d) -> the 1024-d joint space."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from audiomoment.checkpoint import ProjectionHead


def gelu(x: NDArray[np.floating]) -> NDArray[np.floating]:
    """Exact GELU, x * Phi(x) (torch's default ``approximate="none"``)."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)).astype(x.dtype))


def layer_norm(
    x: NDArray[np.floating], weight: NDArray[np.floating], bias: NDArray[np.floating], eps: float
) -> NDArray[np.floating]:
    """LayerNorm over the last axis (biased variance, as torch)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


def project(x: ArrayLike, head: ProjectionHead, normalize: bool = True) -> NDArray[np.float32]:
    """Apply a projection head (inference: dropout off), then L2-normalise.

    ``x``: (N, in_dim) or (in_dim,). Returns (N, out_dim) or (out_dim,) float32.
    """
    arr = np.asarray(x, dtype=np.float32)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != head.in_dim:
        raise ValueError(f"expected {head.in_dim}-d inputs, got {arr.shape[-1]}-d")
    e1 = arr @ head.linear1.T
    e2 = gelu(e1) @ head.linear2.T
    out = layer_norm(e1 + e2, head.ln_weight, head.ln_bias, head.ln_eps).astype(np.float32)
    if normalize:
        out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return out[0] if single else out
