"""Reading (and, for tests and simulations, writing) MS-CLAP 2023 checkpoints.

The official file ``CLAP_weights_2023.pth`` is a torch pickle holding ``{"model": state_dict}``.
Its projection heads live under ``audio_encoder.projection.*`` and
``caption_encoder.projection.*`` with the keys ``linear1.weight`` (1024 x 768),
``linear2.weight`` (1024 x 1024), ``layer_norm.weight`` and ``layer_norm.bias`` (1024).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError

Modality = Literal["audio", "text"]

#: State-dict prefix of each projection head in the official checkpoint.
HEAD_PREFIX: dict[str, str] = {
    "audio": "audio_encoder.projection",
    "text": "caption_encoder.projection",
}
HEAD_KEYS = ("linear1.weight", "linear2.weight", "layer_norm.weight", "layer_norm.bias")
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
    prefix = HEAD_PREFIX[modality]
    missing = [f"{prefix}.{k}" for k in HEAD_KEYS if f"{prefix}.{k}" not in state]
    if missing:
        raise InputError(f"{source}: missing key {missing[0]} (not an MS-CLAP 2023 checkpoint?)")
    arrays = [np.asarray(state[f"{prefix}.{k}"].detach().cpu().float().numpy()) for k in HEAD_KEYS]
    w1, w2, g, b = arrays
    out_dim = w1.shape[0] if w1.ndim == 2 else -1
    if (
        w1.ndim != 2
        or w2.shape != (out_dim, out_dim)
        or g.shape != (out_dim,)
        or b.shape != (out_dim,)
    ):
        raise InputError(
            f"{source}: {prefix} has inconsistent shapes "
            f"{[tuple(a.shape) for a in arrays]} for linear1, linear2, layer_norm weight, bias"
        )
    return ProjectionHead(w1, w2, g, b)


def load_projection_heads(path: str | os.PathLike[str]) -> dict[str, ProjectionHead]:
    """The audio and text projection heads of an MS-CLAP 2023 checkpoint file."""
    state = load_state_dict(path)
    return {m: head_from_state(state, m, str(path)) for m in ("audio", "text")}  # type: ignore[misc]


def head_state(head: ProjectionHead, modality: Modality) -> dict[str, Any]:
    """The state-dict entries (torch tensors) of one head under its official key names."""
    import torch

    prefix = HEAD_PREFIX[modality]
    values = (head.linear1, head.linear2, head.ln_weight, head.ln_bias)
    return {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
            for k, v in zip(HEAD_KEYS, values, strict=True)}


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Save ``{"model": state}`` with ``torch.save``, atomically."""
    import torch

    from audiomoment.io.atomic import atomic_path

    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"model": dict(state)}, tmp)


def random_projection_head(
    rng: np.random.Generator, in_dim: int = ENCODER_DIM, out_dim: int = JOINT_DIM
) -> ProjectionHead:
    """A randomly initialised head (for tests and simulations), torch-like scales."""
    bound1 = 1.0 / np.sqrt(in_dim)
    bound2 = 1.0 / np.sqrt(out_dim)
    return ProjectionHead(
        linear1=rng.uniform(-bound1, bound1, (out_dim, in_dim)).astype(np.float32),
        linear2=rng.uniform(-bound2, bound2, (out_dim, out_dim)).astype(np.float32),
        ln_weight=(1.0 + 0.1 * rng.standard_normal(out_dim)).astype(np.float32),
        ln_bias=(0.05 * rng.standard_normal(out_dim)).astype(np.float32),
    )


def file_digest(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex), for cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
