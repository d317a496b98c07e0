"""Reading and writing MS-CLAP 2023 checkpoints, and their projection heads.

The official file ``CLAP_weights_2023.pth`` is a torch pickle holding ``{"model": state_dict}``
with the names of :mod:`audiomoment.clap.keys`. The simulator writes checkpoints that hold
only the two projection heads (:func:`head_state`, :func:`save_checkpoint`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.clap.keys import HEAD_KEYS, MODALITIES, Modality, head_prefix
from audiomoment.clap.weights import check_tensor
from audiomoment.errors import InputError

ENCODER_DIM = 768
JOINT_DIM = 1024


@dataclass(frozen=True)
class ProjectionHead:
    """One projection head: e1 = W1 x; out = LayerNorm(e1 + W2 gelu(e1)).

    ``linear1``: (out_dim, in_dim); ``linear2``: (out_dim, out_dim); ``ln_weight``,
    ``ln_bias``: (out_dim,); float32. ``ln_eps`` is torch's LayerNorm default.
    """

    linear1: NDArray[np.float32]
    linear2: NDArray[np.float32]
    ln_weight: NDArray[np.float32]
    ln_bias: NDArray[np.float32]
    ln_eps: float = 1e-5

    @property
    def in_dim(self) -> int:
        return int(self.linear1.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.linear1.shape[0])


def load_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The state dict of a checkpoint file, memory-mapped where torch allows it.

    Accepts ``{"model": state_dict}`` (the official layout) or a bare state dict.
    Raises :class:`InputError` naming the file when it is missing or not a checkpoint.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: checkpoint file not found")
    try:
        with warnings.catch_warnings():  # e.g. a pickle protocol torch did not write
            warnings.simplefilter("ignore")
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{p}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise InputError(f"{p}: expected a state dict or {{'model': state_dict}}")
    return obj


def head_from_state(
    state: Mapping[str, Any], modality: Modality, source: str = "checkpoint"
) -> ProjectionHead:
    """Build one projection head from a state dict, checking keys and shapes."""
    prefix = head_prefix(modality)
    missing = [prefix + k for k in HEAD_KEYS if prefix + k not in state]
    if missing:
        raise InputError(f"{source}: missing key {missing[0]} (not an MS-CLAP 2023 checkpoint?)")
    for k in HEAD_KEYS:
        check_tensor(state[prefix + k], prefix + k, source)
    arrays = [np.asarray(state[prefix + k].detach().cpu().float().numpy()) for k in HEAD_KEYS]
    w1, w2, g, b = arrays
    out_dim = w1.shape[0] if w1.ndim == 2 else -1
    if (
        w1.ndim != 2
        or w2.shape != (out_dim, out_dim)
        or g.shape != (out_dim,)
        or b.shape != (out_dim,)
    ):
        raise InputError(
            f"{source}: {prefix.rstrip('.')} has inconsistent shapes "
            f"{[tuple(a.shape) for a in arrays]} for linear1, linear2, layer_norm weight, bias"
        )
    return ProjectionHead(w1, w2, g, b)


def load_projection_heads(path: str | os.PathLike[str]) -> dict[str, ProjectionHead]:
    """The audio and text projection heads of an MS-CLAP 2023 checkpoint file."""
    state = load_state_dict(path)
    return {m: head_from_state(state, m, str(path)) for m in MODALITIES}


def head_state(head: ProjectionHead, modality: Modality) -> dict[str, Any]:
    """The state-dict entries (torch tensors) of one head under its official key names."""
    import torch

    prefix = head_prefix(modality)
    values = (head.linear1, head.linear2, head.ln_weight, head.ln_bias)
    return {prefix + k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in zip(HEAD_KEYS, values, strict=True)}


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Save ``{"model": state}`` with ``torch.save``, atomically."""
    import torch

    from audiomoment.io.atomic import atomic_path

    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"model": dict(state)}, tmp)

