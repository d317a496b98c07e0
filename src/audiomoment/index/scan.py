"""Scoring every window of an index against a few vectors: one pass over the segments.

The products are SimSIMD's dot-product kernels on the stored rows as they are (float16 or
float32; no float32 copy of the archive), accumulated in float32 or wider, using every core:
a pass reads each byte once and is bound by memory bandwidth.

A snapshot's first scan reads the rows from the segment files with ``preadv`` into a small
buffer per thread (half a MiB: it stays in the core's cache while the kernel multiplies it),
not through the snapshot's memory maps. Touching every page of a mapping costs a process one
page-table entry per 4 KiB, set up on the first touch and torn down at exit: for 6.9 GiB that
was 0.4 s of a 1.1 s command, more than the copy into the buffer costs. A snapshot scanned
again belongs to a process that keeps it (the search page's server): its later scans use the
maps, which stay set up, and skip the copy (0.65 s -> 0.33 s a search at 1,000 h).
Segments are never modified and their names are never reused, so the file under a snapshot's
segment name holds the mapped rows; a segment deleted since the snapshot was taken is read
through its mapping.

The vectors are rounded to the rows' type first (a float16 query moves a trace value by about
1e-5); the error against exact products of the stored rows is otherwise of the order of
float32 rounding. The benchmark prints it (``benchmarks/bench_index_search.py``).

Why SimSIMD and not NumPy or torch: NumPy has no float16 matrix kernels (it converts at about
1 GB/s), and torch's float16 ``linear`` returns float16 products (ten times the error of the
stored rows) at a third of this speed here, and costs a second or more to import.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.store import Snapshot

#: Rows multiplied per call (bounds the output and keeps the threads' work in cache).
CHUNK_ROWS = 1 << 16
#: Rows a thread reads per ``preadv`` into its own buffer (256 x 1024 float16 = 512 KiB).
READ_ROWS = 256
#: Rows per unit of work handed to a thread.
JOB_ROWS = 1 << 13


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


def _segment_file(seg: NDArray[np.floating], rows: int) -> tuple[int, int] | None:
    """(open descriptor, byte offset of row 0) of a mapped segment's file, or None when the
    file is gone or does not hold the mapped rows (then the mapping is read)."""
    filename = getattr(seg, "filename", None)
    offset = getattr(seg, "offset", None)
    if filename is None or offset is None:
        return None
    try:
        fd = os.open(Path(filename), os.O_RDONLY)
    except OSError:
        return None
    if os.fstat(fd).st_size < offset + rows * seg.strides[0]:
        os.close(fd)
        return None
    return fd, int(offset)


def _dot_segments_pread(
    jobs: list[tuple[int, int, int, NDArray[np.float64]]], vectors: NDArray[np.floating],
    dtype: np.dtype, dim: int,
) -> None:
    """Run ``jobs`` (fd, byte offset, rows, out) on every core: each thread reads ``rows``
    rows at ``byte offset`` in ``READ_ROWS`` pieces and writes their products into ``out``
    (rows, k)."""
    import simsimd

    work: queue.SimpleQueue[tuple[int, int, int, NDArray[np.float64]]] = queue.SimpleQueue()
    for job in jobs:
        work.put(job)
    row_bytes = dim * dtype.itemsize
    errors: list[BaseException] = []

    def worker() -> None:
        buf = np.empty((READ_ROWS, dim), dtype=dtype)
        view = memoryview(buf).cast("B")
        try:
            while True:
                try:
                    fd, offset, rows, out = work.get_nowait()
                except queue.Empty:
                    return
                done = 0
                while done < rows:
                    n = min(READ_ROWS, rows - done)
                    got = os.preadv(fd, [view[: n * row_bytes]], offset + done * row_bytes)
                    if got != n * row_bytes:
                        raise OSError(f"short read of a segment ({got} of {n * row_bytes} "
                                      "bytes)")
                    out[done : done + n] = np.asarray(
                        simsimd.cdist(buf[:n], vectors, metric="dot")
                    )
                    done += n
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(min(os.cpu_count() or 1, max(1, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def window_scores(
    snapshot: Snapshot, vectors: NDArray[np.floating], read: str = "auto"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Dot products of every window of every recording with each vector.

    ``vectors``: (k, dim). ``read``: "files" (``preadv``), "maps" (the snapshot's memory
    maps) or "auto" (files on the snapshot's first scan, maps afterwards); the scores are the
    same bits either way. Returns ``scores`` (N, k) float64, the recordings' windows one
    after the other in snapshot order, and ``starts`` (R + 1,): recording r owns rows
    ``starts[r]:starts[r + 1]``.
    """
    if read not in ("auto", "files", "maps"):
        raise ValueError(f"read must be auto, files or maps, got {read!r}")
    use_files = read == "files" or (read == "auto" and snapshot.scans == 0)
    snapshot.scans += 1
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
    parts: list[tuple[list[int], int, NDArray[np.float64]]] = []
    jobs: list[tuple[int, int, int, NDArray[np.float64]]] = []
    fds: list[int] = []
    dtype = np.dtype(snapshot.spec.dtype)
    try:
        for name, members in by_segment.items():
            seg = snapshot.segments[name]
            lo = min(snapshot.recordings[i].row_offset for i in members)
            hi = max(snapshot.recordings[i].row_offset + snapshot.recordings[i].n_windows
                     for i in members)
            opened = _segment_file(seg, hi) if use_files and seg.dtype == dtype else None
            if opened is None:
                part = _dot_rows(seg[lo:hi], vecs)
            else:
                fd, offset = opened
                fds.append(fd)
                part = np.empty((hi - lo, vecs.shape[0]), dtype=np.float64)
                row_bytes = seg.strides[0]
                for a in range(0, hi - lo, JOB_ROWS):
                    n = min(JOB_ROWS, hi - lo - a)
                    jobs.append((fd, offset + (lo + a) * row_bytes, n, part[a : a + n]))
            parts.append((members, lo, part))
        if jobs:
            _dot_segments_pread(jobs, np.ascontiguousarray(vecs, dtype=dtype), dtype,
                                snapshot.spec.dim)
    finally:
        for fd in fds:
            os.close(fd)
    for members, lo, part in parts:
        for i in members:
            rec = snapshot.recordings[i]
            a = rec.row_offset - lo
            scores[starts[i] : starts[i + 1]] = part[a : a + rec.n_windows]
    return scores, starts
