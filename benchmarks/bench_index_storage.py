"""Index storage side by side: our store (float16 .npy segments + SQLite manifest) vs LanceDB.

Figures (SIMULATED archive, seed 0; the 2-core development machine at load average ~7,
shared with other jobs)::

    $ .venv/bin/python benchmarks/bench_index_storage.py --hours 100
    100 h: 318 recordings, 359,841 windows (float16 rows 702.8 MiB); LanceDB 0.40.0
                                        ours      LanceDB   LanceDB/ours
    write                            3.1-5.0 s   3.0-4.0 s   0.8-0.95x  (+ scalar index 0.05 s)
    size on disk                     702.9 MiB   704.1 MiB   1.00x
    score every window (open+scan)  0.24-0.31 s 0.60-0.86 s  2.5-2.8x  (reading the vector
                                                                       column alone 0.39-0.52 s)
    LanceDB's own search, k = all        -       3.8-4.0 s   12-17x
    fetch one recording (2,191 rows)  0.16 ms     4.3 ms     26x
    open + fetch one recording        2.4 ms      6.6 ms     2.8x

The same windows — ``--hours`` of a SIMULATED archive
(:func:`audiomoment.testing.archive.simulate_archive`), converted once to float16 and held
in memory, so that no figure includes the simulation — are written

* to our store with :func:`audiomoment.index.index_embeddings` (float16 rows, one segment
  file per ``--commit-every`` recordings, fsync'd; a SHA-256 per recording), and
* to LanceDB (``pip install lancedb``; the ``bench`` extra): a ``windows`` table
  (recording int32, t int32, vector fixed_size_list<halffloat>[1024]) and a ``recordings``
  table (id, name, duration_s, n_windows), plus a BTree scalar index on
  ``windows.recording`` for fetching one recording (built after the write, timed apart).

and measured in one run:

* write time and size on disk (allocated blocks and apparent size);
* scoring every window against one query vector, the full scan a search needs (all scores,
  not a top K): ours = open a snapshot + :func:`audiomoment.index.scan.window_scores`;
  LanceDB = open the table + read the vector column into NumPy (zero copy from Arrow) + the
  same float16 product, and LanceDB's own brute-force search (dot product, k = all rows);
  medians of ``--repeats``, page cache warm;
* fetching one recording's rows (three recordings, median of ``--repeats``, per recording;
  then opening + fetching one): ours = a snapshot's mapped rows copied out; LanceDB = a
  filtered scan on the recording column (with its scalar index) of an opened table.

It checks that both stores give back bit-identical rows and scores before printing figures.

Usage::

    .venv/bin/python benchmarks/bench_index_storage.py [--hours 100] [--repeats 5]
        [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.index import ArchiveIndex, ModelSpec, index_embeddings
from audiomoment.index.scan import _dot_rows, window_scores
from audiomoment.testing.archive import archive_space

GIB = 1024.0**3
MIB = 1024.0**2
DIM = 1024


def median_time(fn: Callable[[], object], repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def disk(path: Path) -> tuple[int, int]:
    """(allocated bytes, apparent bytes) of every file under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return (sum(p.stat().st_blocks * 512 for p in files), sum(p.stat().st_size for p in files))


def simulate(hours: float, seed: int) -> list[tuple[str, NDArray[np.float16], float]]:
    """(name, (T, 1024) float16 rows, duration_s) of every recording."""
    return [(r.recording_id, r.embeddings.astype(np.float16), r.duration_s)
            for r in archive_space(seed).recordings(hours)]


# ---------------------------------------------------------------------------- LanceDB


def lance_write(path: Path, recs: list[tuple[str, NDArray[np.float16], float]]) -> object:
    """Write the ``windows`` and ``recordings`` tables; returns the windows table."""
    import lancedb
    import pyarrow as pa

    schema = pa.schema([("recording", pa.int32()), ("t", pa.int32()),
                        ("vector", pa.list_(pa.float16(), DIM))])

    def batches() -> Iterator[pa.RecordBatch]:
        for i, (_, emb, _) in enumerate(recs):
            n = len(emb)
            vec = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM)
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.full(n, i, np.int32)), pa.array(np.arange(n, dtype=np.int32)),
                 vec], schema=schema)

    db = lancedb.connect(str(path))
    table = db.create_table("windows", data=batches(), schema=schema)
    db.create_table("recordings", data=pa.table({
        "id": pa.array(np.arange(len(recs), dtype=np.int32)),
        "name": pa.array([name for name, _, _ in recs]),
        "duration_s": pa.array([d for _, _, d in recs], pa.float64()),
        "n_windows": pa.array([len(e) for _, e, _ in recs], pa.int32()),
    }))
    return table


def lance_open(path: Path) -> object:
    import lancedb

    return lancedb.connect(str(path)).open_table("windows")


def lance_vectors(table: object) -> NDArray[np.float16]:
    """The whole vector column as an (N, 1024) float16 array (row order)."""
    col = table.search().select(["vector"]).limit(None).to_arrow().column("vector")  # type: ignore[attr-defined]
    flat = col.combine_chunks().flatten()
    return flat.to_numpy(zero_copy_only=False).reshape(-1, DIM)


def lance_scores(path: Path, q: NDArray[np.float32]) -> NDArray[np.float32]:
    """Open + read the vector column + the float16 product: (N,) scores in row order."""
    return _dot_rows(lance_vectors(lance_open(path)), q[None, :])[:, 0]


def lance_search_all(table: object, q: NDArray[np.float32], n: int) -> object:
    """LanceDB's brute-force search, dot product, every row returned."""
    return (table.search(q).distance_type("dot")  # type: ignore[attr-defined]
            .select(["recording", "t", "_distance"]).limit(n).to_arrow())


def lance_fetch(table: object, rec: int) -> NDArray[np.float16]:
    """One recording's rows, (T, 1024) float16, in window order."""
    out = (table.search().where(f"recording = {rec}")  # type: ignore[attr-defined]
           .select(["t", "vector"]).limit(None).to_arrow())
    order = np.argsort(out.column("t").to_numpy(), kind="stable")
    rows = out.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rows.reshape(-1, DIM)[order]


def ours_open_fetch(db: Path, name: str) -> NDArray[np.floating]:
    """Open a snapshot and copy one recording's rows out: (T, 1024)."""
    snapshot = ArchiveIndex(db).snapshot()
    return np.array(snapshot.embeddings(snapshot.recording(name)))


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--commit-every", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    try:
        import lancedb
        import pyarrow
    except ImportError:
        raise SystemExit("LanceDB is not installed: .venv/bin/pip install -e '.[bench]'") from None
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    t0 = time.perf_counter()
    recs = simulate(args.hours, args.seed)
    n_rows = sum(len(e) for _, e, _ in recs)
    print(f"SIMULATED archive: {args.hours:g} h, {len(recs)} recordings, {n_rows} windows "
          f"(float16: {n_rows * DIM * 2 / GIB:.3f} GiB; simulated in "
          f"{time.perf_counter() - t0:.1f} s); LanceDB {lancedb.__version__}, "
          f"pyarrow {pyarrow.__version__}")
    space = archive_space(args.seed)
    q = next(space.query_embedding(c) for c in space.captions if space.concepts(c))

    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=args.workdir) as tmp:
        ours_db, lance_db = Path(tmp) / "ours", Path(tmp) / "lance"
        fig: dict[str, dict[str, float]] = {"ours": {}, "lancedb": {}}

        t0 = time.perf_counter()
        index_embeddings(recs, ours_db, ModelSpec(dtype="float16"),
                         commit_every=args.commit_every)
        fig["ours"]["write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = lance_write(lance_db, recs)
        fig["lancedb"]["write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        table.create_scalar_index("recording")  # type: ignore[attr-defined]
        fig["lancedb"]["scalar index"] = time.perf_counter() - t0
        for name, path in (("ours", ours_db), ("lancedb", lance_db)):
            fig[name]["disk"], fig[name]["apparent"] = disk(path)

        # correctness: the same rows and the same scores from both
        snapshot = ArchiveIndex(ours_db).snapshot()
        ours_scores = window_scores(snapshot, q[None, :])[0][:, 0]
        theirs = lance_scores(lance_db, q)
        if not np.array_equal(ours_scores, theirs):
            raise SystemExit("the two stores give different scores")
        mid = len(recs) // 2
        if not np.array_equal(lance_fetch(table, mid), recs[mid][1]):
            raise SystemExit("LanceDB gave back other rows for one recording")
        hits = lance_search_all(table, q, n_rows)
        dot = 1.0 - hits.column("_distance").to_numpy()  # type: ignore[attr-defined]
        starts = np.concatenate(([0], np.cumsum([len(e) for _, e, _ in recs])))
        rows = (starts[hits.column("recording").to_numpy()]  # type: ignore[attr-defined]
                + hits.column("t").to_numpy())  # type: ignore[attr-defined]
        search_diff = float(np.abs(dot - ours_scores[rows]).max())
        assert hits.num_rows == n_rows  # type: ignore[attr-defined]

        # full scan: every window's score (page cache warm: both were just read)
        fig["ours"]["scan"] = median_time(lambda: window_scores(
            ArchiveIndex(ours_db).snapshot(), q[None, :]), args.repeats)
        fig["lancedb"]["scan"] = median_time(lambda: lance_scores(lance_db, q), args.repeats)
        fig["lancedb"]["read column"] = median_time(
            lambda: lance_vectors(lance_open(lance_db)), args.repeats)
        fig["lancedb"]["own search, k = all"] = median_time(
            lambda: lance_search_all(lance_open(lance_db), q, n_rows), args.repeats)

        # one recording's rows
        picks = [len(recs) // 4, len(recs) // 2, 3 * len(recs) // 4]
        names = [recs[i][0] for i in picks]

        def ours_fetch() -> None:
            for name in names:
                np.array(snapshot.embeddings(snapshot.recording(name)))

        opened = lance_open(lance_db)

        def lance_fetch_all() -> None:
            for i in picks:
                lance_fetch(opened, i)

        mean_rows = float(np.mean([len(recs[i][1]) for i in picks]))
        fig["ours"]["fetch"] = median_time(ours_fetch, args.repeats) / len(picks)
        fig["ours"]["open + fetch"] = median_time(
            lambda: ours_open_fetch(ours_db, names[1]), args.repeats)
        fig["lancedb"]["fetch"] = median_time(lance_fetch_all, args.repeats) / len(picks)
        fig["lancedb"]["open + fetch"] = median_time(
            lambda: lance_fetch(lance_open(lance_db), picks[1]), args.repeats)

    o, la = fig["ours"], fig["lancedb"]
    print(f"checks: identical rows and scores from both stores; LanceDB's own search agrees "
          f"with the scan to {search_diff:.1e}")
    print(f"{'':34s}{'ours':>14s}{'LanceDB':>14s}{'LanceDB/ours':>14s}")

    def row(label: str, a: float, b: float, unit: str, scale: float = 1.0) -> None:
        print(f"{label:34s}{a / scale:>11.3f} {unit:2s}{b / scale:>11.3f} {unit:2s}"
              f"{b / a:>13.2f}x")

    row("write", o["write"], la["write"], "s")
    print(f"{'  + scalar index on recording':34s}{'':>14s}{la['scalar index']:>11.3f} s")
    row("size on disk (allocated)", o["disk"], la["disk"], "MiB", MIB)
    row("size on disk (apparent)", o["apparent"], la["apparent"], "MiB", MIB)
    row("score every window (open + scan)", o["scan"], la["scan"], "s")
    print(f"{'  LanceDB: read the vector column':34s}{'':>14s}{la['read column']:>11.3f} s")
    row("  LanceDB own search, k = all rows", o["scan"], la["own search, k = all"], "s")
    row(f"fetch one recording ({mean_rows:.0f} rows)", o["fetch"] * 1000, la["fetch"] * 1000,
        "ms")
    row("  open + fetch one recording", o["open + fetch"] * 1000,
        la["open + fetch"] * 1000, "ms")
    print(f"raw float16 rows: {n_rows * DIM * 2 / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
