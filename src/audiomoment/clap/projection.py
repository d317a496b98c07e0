"""The MS-CLAP projection heads: encoder outputs (768-d) -> the 1024-d joint space.

Arrays in, arrays out. The arithmetic runs on torch's CPU kernels (torch is already the
model's dependency), which evaluate the exact GELU and the LayerNorm multi-threaded and
fused: projecting the windows of a whole dataset is dominated by them otherwise
(``benchmarks/bench_projection.py`` compares this with a NumPy/SciPy formulation).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.clap.checkpoint import ProjectionHead


def project(x: ArrayLike, head: ProjectionHead, normalize: bool = True) -> NDArray[np.float32]:
    """Apply a projection head (inference: dropout off), then L2-normalise.

    e1 = x W1^T; out = LayerNorm(e1 + gelu(e1) W2^T) (exact GELU, biased variance).
    ``x``: (N, in_dim) or (in_dim,). Returns (N, out_dim) or (out_dim,) float32.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(x, dtype=np.float32)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != head.in_dim:
        raise ValueError(f"expected {head.in_dim}-d inputs, got {arr.shape[-1]}-d")

    def tensor(a: NDArray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    with torch.inference_mode():
        e1 = tensor(arr) @ tensor(head.linear1).T
        e2 = F.gelu(e1) @ tensor(head.linear2).T
        out = F.layer_norm(e1 + e2, (head.out_dim,), tensor(head.ln_weight),
                           tensor(head.ln_bias), float(head.ln_eps))
        if normalize:
            out = out / torch.linalg.vector_norm(out, dim=-1, keepdim=True)
        result = out.numpy()
    return result[0] if single else result
