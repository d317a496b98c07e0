"""Scoring every window of an index against a few vectors: one pass over the mapped segments.

The archive's rows are float16; torch's CPU kernels multiply float16 matrices directly (no
float32 copy of the archive), so a pass reads each byte once and is bound by memory
bandwidth. Results are float32; their error against exact products of the stored rows is of
the order of float16 rounding (the benchmark prints it).
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.store import Snapshot

#: Rows multiplied per call (bounds the float32 output and temporaries).
CHUNK_ROWS = 1 << 18


def _dot_rows(rows: NDArray[np.floating], vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """(n, dim) stored rows . (k, dim) vectors -> (n, k) float32, in chunks."""
    import torch

    out = np.empty((rows.shape[0], vectors.shape[0]), dtype=np.float32)
    dtype = torch.float16 if rows.dtype == np.float16 else torch.float32
    weight = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(dtype)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", UserWarning)  # read-only memory maps
        for a in range(0, rows.shape[0], CHUNK_ROWS):
            block = torch.from_numpy(np.asarray(rows[a : a + CHUNK_ROWS]))
            # NumPy's float16 -> float32 cast on assignment is exact (the same values as
            # .float()) and spares torch a parallel region per chunk (slow on a busy machine)
            out[a : a + len(block)] = torch.nn.functional.linear(block, weight).numpy()
    return out


def window_scores(
    snapshot: Snapshot, vectors: NDArray[np.floating]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Dot products of every window of every recording with each vector.

    ``vectors``: (k, dim). Returns ``scores`` (N, k) float32, the recordings' windows one
    after the other in snapshot order, and ``starts`` (R + 1,): recording r owns rows
    ``starts[r]:starts[r + 1]``.
    """
    vecs = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if vecs.shape[1] != snapshot.spec.dim:
        raise ValueError(f"vectors of dimension {vecs.shape[1]}, the index holds "
                         f"{snapshot.spec.dim}")
    counts = np.array([r.n_windows for r in snapshot.recordings], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    scores = np.empty((int(starts[-1]), vecs.shape[0]), dtype=np.float32)
    by_segment: dict[str, list[int]] = {}
    for i, rec in enumerate(snapshot.recordings):
        by_segment.setdefault(rec.segment, []).append(i)
    for name, members in by_segment.items():
        seg = snapshot.segments[name]
        lo = min(snapshot.recordings[i].row_offset for i in members)
        hi = max(snapshot.recordings[i].row_offset + snapshot.recordings[i].n_windows
                 for i in members)
        part = _dot_rows(seg[lo:hi], vecs)
        for i in members:
            rec = snapshot.recordings[i]
            a = rec.row_offset - lo
            scores[starts[i] : starts[i + 1]] = part[a : a + rec.n_windows]
    return scores, starts
