"""Scoring every window of an index against a few vectors: one pass over the mapped segments.

The products are SimSIMD's dot-product kernels on the stored rows as they are (float16 or
float32; no float32 copy of the archive), accumulated in float32 or wider, using every core:
a pass reads each byte once and is bound by memory bandwidth. The vectors are rounded to the
rows' type first (a float16 query moves a trace value by about 1e-5); the error against exact
products of the stored rows is otherwise of the order of float32 rounding. The benchmark
prints it (``benchmarks/bench_index_search.py``).

Why SimSIMD and not NumPy or torch: NumPy has no float16 matrix kernels (it converts at about
1 GB/s), and torch's float16 ``linear`` returns float16 products (ten times the error of the
stored rows) at a third of this speed here, and costs a second or more to import.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.store import Snapshot

#: Rows multiplied per call (bounds the output and keeps the threads' work in cache).
CHUNK_ROWS = 1 << 16


def _dot_rows(rows: NDArray[np.floating], vectors: NDArray[np.floating]) -> NDArray[np.float64]:
    """(n, dim) stored rows . (k, dim) vectors -> (n, k) float64, in chunks."""
    import simsimd

    out = np.empty((rows.shape[0], vectors.shape[0]), dtype=np.float64)
    vecs = np.ascontiguousarray(vectors, dtype=rows.dtype)
    threads = os.cpu_count() or 1
    for a in range(0, rows.shape[0], CHUNK_ROWS):
        block = np.ascontiguousarray(rows[a : a + CHUNK_ROWS])
        out[a : a + len(block)] = np.asarray(
            simsimd.cdist(block, vecs, metric="dot", threads=threads)
        )
    return out


def window_scores(
    snapshot: Snapshot, vectors: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Dot products of every window of every recording with each vector.

    ``vectors``: (k, dim). Returns ``scores`` (N, k) float64, the recordings' windows one
    after the other in snapshot order, and ``starts`` (R + 1,): recording r owns rows
    ``starts[r]:starts[r + 1]``.
    """
    vecs = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if vecs.shape[1] != snapshot.spec.dim:
        raise ValueError(f"vectors of dimension {vecs.shape[1]}, the index holds "
                         f"{snapshot.spec.dim}")
    counts = np.array([r.n_windows for r in snapshot.recordings], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    scores = np.empty((int(starts[-1]), vecs.shape[0]), dtype=np.float64)
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
