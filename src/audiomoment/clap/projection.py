"""The MS-CLAP projection heads: encoder outputs (768-d) -> the 1024-d joint space.

Arrays in, arrays out. The arithmetic runs on torch's CPU kernels (torch is already the
model's dependency), which evaluate the exact GELU and the LayerNorm multi-threaded and
fused: projecting the windows of a whole dataset is dominated by them otherwise
(``benchmarks/bench_projection.py`` compares this with a NumPy/SciPy formulation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.clap.checkpoint import ProjectionHead

if TYPE_CHECKING:
    import torch


def project(x: ArrayLike, head: ProjectionHead, normalize: bool = True) -> NDArray[np.float32]:
    """Apply a projection head (inference: dropout off), then L2-normalise.

    e1 = x W1^T; out = LayerNorm(e1 + gelu(e1) W2^T) (exact GELU, biased variance).
    ``x``: (N, in_dim) or (in_dim,). Returns (N, out_dim) or (out_dim,) float32.

    One row (a query) runs on one thread: splitting a 1 x 768 product costs more in
    synchronisation than it saves, and on a machine busy with other work far more (0.5 ms
    instead of 4-8 ms per query, measured at load average 5). The values are the same
    (``tests/test_projection.py``; every prediction file is byte-identical).
    """
    import torch

    arr = np.asarray(x, dtype=np.float32)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != head.in_dim:
        raise ValueError(f"expected {head.in_dim}-d inputs, got {arr.shape[-1]}-d")
    threads = torch.get_num_threads()
    one_thread = arr.shape[0] == 1 and threads > 1
    if one_thread:
        torch.set_num_threads(1)
    try:
        result = _apply_head(arr, head, normalize)
    finally:
        if one_thread:
            torch.set_num_threads(threads)
    return result[0] if single else result


def _tensor(a: NDArray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _apply_head(arr: NDArray[np.float32], head: ProjectionHead,
                normalize: bool) -> NDArray[np.float32]:
    """(N, in_dim) float32 -> (N, out_dim) float32 with torch's kernels."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        e1 = _tensor(arr) @ _tensor(head.linear1).T
        e2 = F.gelu(e1) @ _tensor(head.linear2).T
        out = F.layer_norm(e1 + e2, (head.out_dim,), _tensor(head.ln_weight),
                           _tensor(head.ln_bias), float(head.ln_eps))
        if normalize:
            out = out / torch.linalg.vector_norm(out, dim=-1, keepdim=True)
        return out.numpy()
