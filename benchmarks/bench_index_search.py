"""Archive search at scale: a SIMULATED 1,000-h index, the whole `search --db` call, memory.

Figures (SIMULATED archive, seed 0; the 2-core development machine at load average 0.7-1.2;
shared with other jobs, so times move between runs)::

    $ .venv/bin/python benchmarks/bench_index_search.py --hours 1000 --db /tmp/am_idx1000 \
          --skip-f16
    1,000 h: 3,185 recordings, 3,598,420 windows; built in 158 s (index_embeddings, float16,
      64 recordings per segment)
    on disk: segments 6.863 GiB in 50 files = 2 B x 1024 x 3,598,420 exactly (npy headers
      negligible) + manifest 0.60 MiB
    whole `audiomoment search --db /tmp/am_idx1000 --query-embedding q.npy --system S --json`,
      index in the page cache, median of 5 runs x 3 queries: System 1 0.858 s, System 2
      0.810 s; peak RSS 93 MiB (RssAnon 75 MiB, RssFile 21 MiB)
    a bare read of every segment file in a fresh interpreter 0.292 s: whole call / bare read
      2.94
    stages of one call (System 1): interpreter + exit 0.035 s, imports + parsing 0.091 s,
      snapshot 0.015 s, scan 0.475 s, localise 0.170 s; total 0.793 s
    in process: bare read of the matrix 0.238 s (sum of uint64 views); search_archive
      System 1 0.632 s = 2.66 x bare read (scan 0.474 s), System 2 0.606 s = 2.55 x
    float16 vs float32 index of the same 20 h (an earlier run, without --skip-f16; 2 queries,
      top 10): identical moments 100% in both systems; max |trace f16 - f32| 4.4e-5

What it does
------------
1. Builds (once; reused when present) an index of ``--hours`` hours of SIMULATED joint-space
   window embeddings (:func:`audiomoment.testing.archive.simulate_archive`, seed
   ``--seed``) with :func:`audiomoment.index.index_embeddings` (float16 rows) and the
   archive's neutral embedding; prints the build time and the size on disk against
   2 bytes x 1024 x windows plus the manifest.
2. Reads every segment file once (page cache warm), then times the WHOLE command
   ``audiomoment search --db INDEX --query-embedding q.npy --json --system S`` as a
   subprocess (interpreter start, imports, snapshot, scan, localisation, printing): median
   of ``--repeats`` runs for each of ``--queries`` query embeddings (captions of the archive,
   ``ArchiveSpace.query_embedding``), Systems 1 and 2; and the stages of one call (the
   CLI's own ``main`` in a fresh interpreter with clocks around snapshot, scan and search),
   and a bare read of every segment file in a fresh interpreter (``preadv`` into small
   buffers on every core, nothing computed): whole call / bare read.
3. Peak memory of that subprocess: ``/usr/bin/time``'s maximum resident set size, and from a
   run sampled through /proc/<pid>/status every few milliseconds the peaks of RssAnon
   (anonymous memory: what the search allocates) and RssFile (touched pages of mapped
   files: page cache, shared and reclaimable).
4. In-process: :func:`audiomoment.index.search_archive` (median; its scan and localisation
   parts), a bare read of the embedding matrix (the mapped segments summed as uint64 views,
   and copied segment by segment into one buffer; median) and the ratio search / bare read;
   its stages (scan, trace, smoothing, the rest of the localisation). ``--profile``: a
   cProfile of one whole call.
5. float16 effect on results: a ``--f16-hours`` archive indexed twice (float16 and float32,
   the same embeddings): share of identical top-10 moments and largest absolute difference of
   the trace values, per system.

Usage::

    .venv/bin/python benchmarks/bench_index_search.py --hours 1000 --db /tmp/am_idx1000
        [--repeats 5] [--queries 3] [--f16-hours 20] [--commit-every 64] [--skip-f16]
        [--profile]

The 1,000-h index takes about 7.4 GB of disk (``df -h`` first) and some minutes to build;
``--build-only`` builds and stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.index import ArchiveIndex, ModelSpec, index_embeddings, search_archive
from audiomoment.index.scan import window_scores
from audiomoment.index.search import query_matrix, recording_peaks
from audiomoment.index.store import MANIFEST, SEGMENTS, Snapshot
from audiomoment.testing.archive import ArchiveSpace, archive_space

GIB = 1024.0**3
MIB = 1024.0**2
DONE = "bench-complete.json"


# ---------------------------------------------------------------------------- building


def _items(space: ArchiveSpace, hours: float) -> Iterator[tuple[str, NDArray[np.float32], float]]:
    for rec in space.recordings(hours):
        yield rec.recording_id, rec.embeddings, rec.duration_s


def build_index(db: Path, hours: float, seed: int, commit_every: int,
                dtype: str = "float16") -> dict[str, float] | None:
    """Index ``hours`` of the simulated archive of ``seed`` at ``db`` unless a complete one
    built with the same parameters is there. Returns build figures (None when reused)."""
    params = {"hours": hours, "seed": seed, "dtype": dtype}
    done = db / DONE
    if done.is_file():
        if json.loads(done.read_text())["params"] == params:
            return None
        raise SystemExit(f"{db}: holds an index built with other parameters "
                         f"({done.read_text().strip()}); give another --db")
    if db.exists():
        if not (db / MANIFEST).is_file():
            raise SystemExit(f"{db}: exists and is not an index; give another --db")
        print(f"{db}: an incomplete index (interrupted build); building it afresh")
        shutil.rmtree(db)
    space = archive_space(seed)
    t0 = time.perf_counter()
    n = index_embeddings(_items(space, hours), db, ModelSpec(dtype=dtype),
                         neutral=space.neutral, commit_every=commit_every)
    seconds = time.perf_counter() - t0
    figures = {"seconds": seconds, "recordings": n}
    done.write_text(json.dumps({"params": params, "build": figures}) + "\n")
    return figures


def disk_usage(db: Path) -> dict[str, int]:
    """Bytes on disk: segment files (apparent size and allocated blocks) and manifest files."""
    seg = [p for p in (db / SEGMENTS).iterdir() if p.suffix == ".npy"]
    manifest = [p for p in db.iterdir() if p.name.startswith(MANIFEST)]
    return {
        "segments": sum(p.stat().st_size for p in seg),
        "segments_allocated": sum(p.stat().st_blocks * 512 for p in seg),
        "segment_files": len(seg),
        "manifest": sum(p.stat().st_size for p in manifest),
    }


def warm_page_cache(db: Path, chunk: int = 64 << 20) -> tuple[int, float]:
    """Read every segment file once with read() into one reused buffer (no mapping, so this
    process's resident memory stays small). Returns (bytes, seconds)."""
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for p in sorted((db / SEGMENTS).glob("*.npy")):
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total, time.perf_counter() - t0


def resident_share(db: Path) -> float | None:
    """Share of the segment files' bytes in the page cache (util-linux ``fincore``; None
    without it)."""
    if shutil.which("fincore") is None:
        return None
    files = [str(p) for p in sorted((db / SEGMENTS).glob("*.npy"))]
    out = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES,SIZE", *files],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    res = size = 0
    for line in out.stdout.splitlines():
        r, z = line.split()[:2]
        res, size = res + int(r), size + int(z)
    return res / size if size else None


def cache_note(db: Path) -> str:
    share = resident_share(db)
    load = os.getloadavg()[0]
    return (f"load average {load:.1f}" + ("" if share is None else
                                          f", index {share:.1%} in the page cache"))


# ---------------------------------------------------------------------------- queries


def pick_queries(space: ArchiveSpace, n: int, seed: int) -> list[tuple[str, NDArray[np.float32]]]:
    """``n`` distinct captions of the archive's pool that hold concepts, with their query
    embeddings."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, NDArray[np.float32]]] = []
    seen: set[tuple[str, ...]] = set()
    for i in rng.permutation(len(space.captions)).tolist():
        caption = space.captions[i]
        concepts = space.concepts(caption)
        if not concepts or concepts in seen:
            continue
        seen.add(concepts)
        out.append((caption, space.query_embedding(caption)))
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------------------- the CLI call


def cli_command(db: Path, query_file: Path, system: int) -> list[str]:
    exe = Path(sys.executable).with_name("audiomoment")
    return [str(exe), "search", "--db", str(db), "--query-embedding", str(query_file),
            "--system", str(system), "--json"]


def time_cli(cmd: Sequence[str], repeats: int) -> tuple[list[float], list[float], str]:
    """Wall seconds of ``repeats`` runs of ``cmd``, their peak RSS (MiB, /usr/bin/time) and
    the last run's output."""
    walls, peaks = [], []
    out = ""
    with tempfile.TemporaryDirectory(prefix="bench-time-") as tmp:
        rss_file = Path(tmp) / "rss"
        for _ in range(repeats):
            full = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd]
            t0 = time.perf_counter()
            proc = subprocess.run(full, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
            peaks.append(int(rss_file.read_text().split()[-1]) / 1024.0)
            out = proc.stdout
    return walls, peaks, out


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(rest.split()[0])  # kB
    return fields


def sample_memory(cmd: Sequence[str], every_s: float = 0.002) -> dict[str, float]:
    """Run ``cmd`` once and sample /proc/<pid>/status until it exits: peak VmRSS, RssAnon,
    RssFile and the last VmHWM seen, MiB."""
    peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        try:
            st = _status(proc.pid)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        for k in peaks:
            peaks[k] = max(peaks[k], st.get(k, 0))
        time.sleep(every_s)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return {k: v / 1024.0 for k, v in peaks.items()}


def python_startup(code: str, repeats: int) -> float:
    """Median wall seconds of ``python -c code`` (interpreter start + what it imports)."""
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


ANATOMY = """
import json, sys, time
marks = {"start": time.perf_counter()}
import audiomoment.index.search as search_mod
from audiomoment.index.store import ArchiveIndex

def clocked(name, fn):
    def wrapper(*args, **kwargs):
        marks.setdefault(name + " in", time.perf_counter())
        out = fn(*args, **kwargs)
        marks[name + " out"] = time.perf_counter()
        return out
    return wrapper

ArchiveIndex.snapshot = clocked("snapshot", ArchiveIndex.snapshot)
search_mod.window_scores = clocked("scan", search_mod.window_scores)
search_mod.search_archive = clocked("search", search_mod.search_archive)
from audiomoment.cli import main
sys.argv = ["audiomoment", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
marks["end"] = time.perf_counter()
print(json.dumps({
    "imports + parsing": marks["snapshot in"] - marks["start"],
    "snapshot": marks["snapshot out"] - marks["snapshot in"],
    "scan": marks["scan out"] - marks["scan in"],
    "localise": marks["search out"] - marks["scan out"],
    "printing + unmapping": marks["end"] - marks["search out"],
    "in_process": marks["end"] - marks["start"],
}), file=sys.stderr)
"""


def call_anatomy(cmd: Sequence[str], repeats: int) -> dict[str, float]:
    """Where a whole call's time goes: ``cmd`` (an ``audiomoment search --db`` command) run
    through the CLI's own ``main`` in a fresh interpreter, with clocks around the snapshot,
    the scan and the search;
    'printing + unmapping' ends when ``main`` returns (the snapshot's maps are closed on the
    way); 'interpreter + exit' is the wall time outside ``main`` (start, and the teardown at
    exit). Medians, seconds."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", ANATOMY, *cmd[1:]], capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"the clocked call failed:\n{proc.stderr}")
        parts = json.loads(proc.stderr.strip().splitlines()[-1])
        parts["interpreter + exit"] = wall - parts.pop("in_process")
        parts["total"] = wall
        runs.append(parts)
    keys = ("interpreter + exit", "imports + parsing", "snapshot", "scan", "localise",
            "printing + unmapping", "total")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


FRESH_READ = """
import os, threading, glob
files = sorted(glob.glob({segments!r} + "/*.npy"))
def reader(names):
    buf = memoryview(bytearray(1 << 19))
    for name in names:
        fd = os.open(name, os.O_RDONLY)
        offset = 0
        while os.preadv(fd, [buf], offset):
            offset += len(buf)
        os.close(fd)
n = os.cpu_count() or 1
threads = [threading.Thread(target=reader, args=(files[i::n],)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


# ---------------------------------------------------------------------------- in process


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), walls


def sum_segments(snapshot: Snapshot) -> int:
    """Sum of every mapped segment viewed as uint64 (reads each byte once)."""
    total = 0
    for seg in snapshot.segments.values():
        total += int(np.asarray(seg).reshape(-1).view(np.uint64).sum(dtype=np.uint64))
    return total


def copy_segments(snapshot: Snapshot, rows: int = 1 << 15) -> None:
    """Copy every mapped segment, in blocks of ``rows``, into one reused buffer."""
    dim = snapshot.spec.dim
    buf = np.empty((rows, dim), dtype=np.dtype(snapshot.spec.dtype))
    for seg in snapshot.segments.values():
        for a in range(0, len(seg), rows):
            part = seg[a : a + rows]
            np.copyto(buf[: len(part)], part)


def stage_times(snapshot: Snapshot, query: NDArray[np.float32], system: int,
                repeats: int) -> dict[str, float]:
    """Median seconds of the stages of one search: query vectors + scan, trace, smoothing
    (each recording's smoothed peak), the rest of the localisation (search_archive's
    'localise' less the smoothing)."""
    from audiomoment.config import LocalizeConfig

    config = LocalizeConfig()
    vectors = query_matrix(snapshot, query[None, :], system)
    scan, _ = median_time(lambda: window_scores(snapshot, vectors), repeats)
    scores, starts = window_scores(snapshot, vectors)

    def trace() -> NDArray[np.float64]:
        return scores[:, 0].copy()  # q . a_t, or (q - n) . a_t for System 1

    tr_s, _ = median_time(trace, repeats)
    tr = trace()
    smooth_s, _ = median_time(lambda: recording_peaks(tr, starts, config.sigma_frames), repeats)
    found = [search_archive(snapshot, query, system=system) for _ in range(repeats)]
    localise = statistics.median(f.seconds["localise"] for f in found)
    return {"scan": scan, "trace": tr_s, "smoothing": smooth_s,
            "localisation": localise - smooth_s, "localise (search_archive)": localise}


# ---------------------------------------------------------------------------- float16 effect


def moments_key(found: object) -> list[tuple[int, float, float]]:
    return [(m.recording_id, round(m.start_s, 4), round(m.end_s, 4))
            for m in found.moments]  # type: ignore[attr-defined]


def float16_effect(hours: float, seed: int, queries: Sequence[tuple[str, NDArray[np.float32]]],
                   commit_every: int) -> None:
    """Top-10 moments and traces of a float16 index against a float32 index of the same
    embeddings."""
    print(f"\nfloat16 effect: {hours:g} h archive, float16 index vs float32 index of the same "
          f"embeddings, {len(queries)} queries")
    with tempfile.TemporaryDirectory(prefix="bench-f16-", dir="/tmp") as tmp:
        snaps = {}
        for dtype in ("float16", "float32"):
            db = Path(tmp) / dtype
            build_index(db, hours, seed, commit_every, dtype=dtype)
            snaps[dtype] = ArchiveIndex(db).snapshot()
        f16, f32 = snaps["float16"], snaps["float32"]
        print(f"  {len(f16)} recordings, {f16.n_windows} windows")
        for system in (1, 2):
            same_set, same_rank, trace_diff, z_diff, stored_diff = [], [], 0.0, 0.0, 0.0
            for _, q in queries:
                a = search_archive(f16, q, system=system, top=10)
                b = search_archive(f32, q, system=system, top=10)
                ka, kb = moments_key(a), moments_key(b)
                same_set.append(len(set(ka) & set(kb)) / len(kb))
                same_rank.append(sum(x == y for x, y in zip(ka, kb, strict=False)) / len(kb))
                matched = {k: m.z for k, m in zip(kb, b.moments, strict=True)}
                for k, m in zip(ka, a.moments, strict=True):
                    if k in matched:
                        z_diff = max(z_diff, abs(m.z - matched[k]))
                traces = []
                for snap in (f16, f32):
                    s, _ = window_scores(snap, query_matrix(snap, q[None, :], system))
                    traces.append(s[:, 0])  # q . a_t, or (q - n) . a_t for System 1
                trace_diff = max(trace_diff, float(np.abs(traces[0] - traces[1]).max()))
                exact = exact_trace(f16, query_matrix(f16, q[None, :], system), system)
                stored_diff = max(stored_diff, float(np.abs(exact - traces[1]).max()))
            print(f"  System {system}: identical top-10 moments {np.mean(same_set):.1%} "
                  f"(same rank {np.mean(same_rank):.1%}); max |trace f16 - f32| "
                  f"{trace_diff:.2e} (float16 rows with exact products: {stored_diff:.2e}); "
                  f"max |z f16 - f32| of shared moments {z_diff:.2e}")


def exact_trace(snapshot: Snapshot, vectors: NDArray[np.float32], system: int,
                rows: int = 1 << 14) -> NDArray[np.float64]:
    """The trace from exact (float64) products of the stored rows: (N,), snapshot order."""
    parts = []
    v = vectors.astype(np.float64).T
    for rec in snapshot.recordings:
        emb = snapshot.embeddings(rec)
        for a in range(0, len(emb), rows):
            s = np.asarray(emb[a : a + rows], dtype=np.float64) @ v
            parts.append(s[:, 0])
    return np.concatenate(parts)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1000.0)
    parser.add_argument("--db", type=Path, default=Path("/tmp/am_idx1000"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commit-every", type=int, default=64,
                        help="recordings per commit (one segment each) while building")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--f16-hours", type=float, default=20.0)
    parser.add_argument("--skip-f16", action="store_true")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of one whole call (top functions)")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; SIMULATED "
          f"archive, seed {args.seed}")
    built = build_index(args.db, args.hours, args.seed, args.commit_every)
    index_snap = ArchiveIndex(args.db).snapshot()
    windows = index_snap.n_windows
    if built is not None:
        print(f"built {args.db}: {built['recordings']:.0f} recordings, {windows} windows, "
              f"{index_snap.hours:.1f} h in {built['seconds']:.1f} s "
              f"({index_snap.hours / built['seconds'] * 3600:.0f} h of archive per hour)")
    else:
        print(f"reusing {args.db}: {len(index_snap)} recordings, {windows} windows, "
              f"{index_snap.hours:.1f} h")
    disk = disk_usage(args.db)
    raw = 2 * index_snap.spec.dim * windows
    print(f"size on disk: segments {disk['segments'] / GIB:.3f} GiB in {disk['segment_files']} "
          f"files ({disk['segments_allocated'] / GIB:.3f} GiB allocated), manifest "
          f"{disk['manifest'] / MIB:.2f} MiB; 2 B x {index_snap.spec.dim} x {windows} windows = "
          f"{raw / GIB:.3f} GiB; overhead (npy headers + manifest) "
          f"{(disk['segments'] + disk['manifest'] - raw) / MIB:.2f} MiB")
    del index_snap
    if args.build_only:
        return

    nbytes, secs = warm_page_cache(args.db)
    print(f"page cache: read {nbytes / GIB:.2f} GiB in {secs:.1f} s "
          f"({nbytes / GIB / secs:.2f} GiB/s); {cache_note(args.db)}")
    space = archive_space(args.seed)
    queries = pick_queries(space, args.queries, args.seed)

    with tempfile.TemporaryDirectory(prefix="bench-q-") as tmp:
        qfiles = []
        for i, (_, vec) in enumerate(queries):
            qfiles.append(Path(tmp) / f"q{i}.npy")
            np.save(qfiles[-1], vec)
        print(f"\nwhole call, {args.repeats} runs per query (medians), queries:")
        for caption, _ in queries:
            print(f"  {caption!r}")
        cmd0 = cli_command(args.db, qfiles[0], 1)
        print("  $ " + " ".join(cmd0))
        whole_median = 0.0
        for system in (1, 2):
            medians, rss = [], []
            for qf in qfiles:
                walls, peaks, out = time_cli(cli_command(args.db, qf, system), args.repeats)
                medians.append(statistics.median(walls))
                rss += peaks
            first = json.loads(out.splitlines()[0])["moments"][0]
            if system == 1:
                whole_median = statistics.median(medians)
            print(f"  [{cache_note(args.db)}]")
            print(f"  System {system}: whole call median {statistics.median(medians):.3f} s "
                  f"(per query: {', '.join(f'{m:.3f}' for m in medians)}); peak RSS "
                  f"(/usr/bin/time) max {max(rss):.0f} MiB; last query's best moment "
                  f"{first['recording']} {first['start']}-{first['end']} s")
        mem = sample_memory(cli_command(args.db, qfiles[0], 1))
        print(f"  memory of one System 1 call (sampled /proc every 2 ms): peak VmRSS "
              f"{mem['VmRSS']:.0f} MiB (VmHWM {mem['VmHWM']:.0f}), of which anonymous "
              f"(RssAnon) peak {mem['RssAnon']:.0f} MiB and mapped-file pages (RssFile) peak "
              f"{mem['RssFile']:.0f} MiB; the index is {disk['segments'] / MIB:.0f} MiB")
        bare_s = python_startup("pass", args.repeats)
        read_s = python_startup(FRESH_READ.format(segments=str(args.db / "segments")),
                                args.repeats)
        print(f"  fresh interpreter (medians): python -c pass {bare_s:.3f} s; a bare read of "
              f"every segment file in a fresh interpreter (preadv into small buffers, all "
              f"cores, nothing computed) {read_s:.3f} s; "
              f"whole System 1 search call / this bare read: {whole_median / read_s:.2f}")
        for system in (1, 2):
            print(f"  [{cache_note(args.db)}]")
            parts = call_anatomy(cli_command(args.db, qfiles[0], system), args.repeats)
            print(f"  System {system}, stages of a whole call in a fresh process (median of "
                  f"{args.repeats}): " + "; ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
        if args.profile:
            profile_call(cmd0)

    in_process(args.db, queries, args.repeats)

    print(f"load average now {os.getloadavg()[0]:.1f}")
    if not args.skip_f16:
        float16_effect(args.f16_hours, args.seed, queries, args.commit_every)


def in_process(db: Path, queries: Sequence[tuple[str, NDArray[np.float32]]],
               repeats: int) -> None:
    """search_archive, its stages and a bare read of the matrix, in this process."""
    print(f"\n[{cache_note(db)}]")
    snapshot_s, _ = median_time(lambda: ArchiveIndex(db).snapshot(), repeats)
    snapshot = ArchiveIndex(db).snapshot()
    print(f"in process ({snapshot.n_windows} windows, {len(snapshot)} recordings, "
          f"{len(snapshot.segments)} segments): snapshot open {snapshot_s * 1000:.1f} ms")
    search_archive(snapshot, queries[0][1])  # warm-up: torch is imported on the first scan
    sum_s, _ = median_time(lambda: sum_segments(snapshot), repeats)
    copy_s, _ = median_time(lambda: copy_segments(snapshot), repeats)
    bare = min(sum_s, copy_s)
    nbytes = sum(int(s.nbytes) for s in snapshot.segments.values())
    print(f"  bare read of the {nbytes / GIB:.2f} GiB matrix: sum as uint64 {sum_s:.3f} s, "
          f"copy by segment {copy_s:.3f} s ({nbytes / GIB / bare:.1f} GiB/s)")
    for system in (1, 2):
        q = queries[0][1]
        search_s, _ = median_time(lambda q=q, system=system: search_archive(
            snapshot, q, system=system), repeats)
        stages = stage_times(snapshot, q, system, repeats)
        print(f"  System {system}: search_archive median {search_s:.3f} s = "
              f"{search_s / bare:.2f} x bare read; stages: " + "; ".join(
                  f"{k} {v:.3f} s" for k, v in stages.items()) +
              f"; scan / bare read {stages['scan'] / bare:.2f}")


def profile_call(cmd: Sequence[str]) -> None:
    """cProfile one whole call in a fresh process (imports included): top functions by
    cumulative time."""
    code = (
        "import cProfile, pstats, sys\n"
        f"sys.argv = {['audiomoment', *cmd[1:]]!r}\n"
        "pr = cProfile.Profile(); pr.enable()\n"
        "from audiomoment.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "pr.disable()\n"
        "pstats.Stats(pr, stream=sys.stderr).sort_stats('cumulative').print_stats(25)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    print("  cProfile of one whole call (cumulative):")
    keep = [ln for ln in proc.stderr.splitlines() if ln.strip()][:40]
    print("\n".join("    " + ln for ln in keep))


if __name__ == "__main__":
    main()
