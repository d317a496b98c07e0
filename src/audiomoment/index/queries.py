"""Query vectors for an archive search: by text, by an example clip, by a moment already in
the index, or a stored joint-space embedding. Each is one L2-normalised (dim,) vector.

By example, the query is the normalised mean of the example's window embeddings: a moment
of the index needs no re-encoding (its rows are read from the index), a clip is embedded
with the index's model.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.index.store import Snapshot

if TYPE_CHECKING:
    from audiomoment.clap.model import ClapModel


def _unit_mean(rows: NDArray[np.floating], what: str) -> NDArray[np.float32]:
    mean = np.asarray(rows, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not np.all(np.isfinite(mean)) or norm == 0:
        raise InputError(f"{what}: its embeddings average to zero or are not finite")
    return (mean / norm).astype(np.float32)


def frame_range(start_s: float | None, end_s: float | None, hop_s: float,
                n_frames: int, what: str) -> tuple[int, int]:
    """Frames [first, stop) that overlap [start_s, end_s) seconds (None: from the start /
    to the end); InputError when the range is empty or outside the recording."""
    start = 0.0 if start_s is None else float(start_s)
    end = n_frames * hop_s if end_s is None else float(end_s)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise InputError(f"{what}: need 0 <= start < end, got start {start}, end {end}")
    first = math.floor(start / hop_s + 1e-9)
    stop = min(n_frames, math.ceil(end / hop_s - 1e-9))
    if first >= stop:
        raise InputError(f"{what}: [{start}, {end}) s lies outside its {n_frames} windows")
    return first, stop


def moment_query(
    snapshot: Snapshot, recording: int | str, start_s: float | None = None,
    end_s: float | None = None,
) -> NDArray[np.float32]:
    """The query of a moment already in the index (no re-encoding)."""
    try:
        rec = snapshot.recording(recording)
    except KeyError:
        raise InputError(f"{snapshot.root}: no recording {recording!r} in the index") from None
    rows = snapshot.embeddings(rec)
    first, stop = frame_range(start_s, end_s, snapshot.spec.hop_s, len(rows),
                              f"recording {rec.name}")
    return _unit_mean(rows[first:stop], f"recording {rec.name}")


def clip_query(
    model: ClapModel, path: str | os.PathLike[str], start_s: float | None = None,
    end_s: float | None = None, batch_size: int = 8,
) -> NDArray[np.float32]:
    """The query of an example clip (optionally a part of it), embedded with ``model``."""
    from audiomoment.clap.model import file_features
    from audiomoment.clap.projection import project

    feats = file_features(model.require_audio(), path, batch_size, progress=False)
    first, stop = frame_range(start_s, end_s, 1.0, len(feats), str(path))
    return _unit_mean(project(feats[first:stop], model.heads["audio"]), str(path))


def text_queries(model: ClapModel, texts: list[str]) -> NDArray[np.float32]:
    """(Q, dim) text query vectors (the model's text encoder and projection head)."""
    for t in texts:
        if not t.strip():
            raise InputError("a query is empty")
    return np.asarray(model.text_embeddings(texts), dtype=np.float32)


def embedding_query(path: str | os.PathLike[str], dim: int) -> NDArray[np.float32]:
    """A stored joint-space query vector: an .npy file with ``dim`` finite values."""
    from audiomoment.io.features import load_vector

    vec = load_vector(path, dim, "query embedding", f"{dim} values (the index's dimension)")
    return _unit_mean(vec[None, :], str(path))
