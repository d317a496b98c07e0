"""Load: 24 simulated hours and 100,000 queries through one `predict`; concurrent searches of
the 1,000-h archive. Peak memory and time of each.

Figures: see the README's "Hardening" section (the command and the machine's load are
printed with them).

What it does
------------
``--predict`` (the default part):

1. Simulates (once; reused when complete) a SIMULATED dataset of ``--hours`` hours of
   recordings (``--recording-s`` seconds each) and ``--queries`` queries in the
   lighthouse/DCASE layout (:class:`audiomoment.testing.sim_config.SimulationConfig`,
   ``preset="custom"``, seed ``--seed``) under ``--workdir``.
2. Runs the whole command ``audiomoment predict --system 1`` on growing shares of the queries
   (``--steps``, e.g. 25,000 / 50,000 / 100,000 of them, every recording kept), each time
   cold (an empty cache folder: every feature file read, projected and stored) and then warm
   (the same cache), as a subprocess: wall seconds, peak RSS (the kernel's, from
   ``wait4``) and the largest sampled anonymous (RssAnon) and file-backed (RssFile: touched
   pages of the memory-mapped feature store, reclaimable page cache) parts. Checks
   that the output holds one valid row per query, and that the warm output equals the cold
   one byte for byte. Memory per query is the slope of peak RSS over the steps.

``--search DB`` (a 1,000-h index built by ``bench_index_search.py``):

3. Runs P = ``--processes`` (e.g. 1, 2, 4) concurrent processes, each making ``--calls``
   whole ``audiomoment search --db DB --query-embedding q.npy --json`` calls one after the
   other (distinct queries of the archive's caption pool, Systems 1 and 2 alternating):
   per-call latency (median, 95th percentile, max), the wall time of the whole round,
   queries per second, the largest peak RSS of a call (``wait4``), failures, and
   whether every answer equals the answer of the same query made alone.

Usage::

    .venv/bin/python benchmarks/bench_load.py [--workdir /tmp/am_load] [--hours 24]
        [--queries 100000] [--steps 25000 50000 100000]
    .venv/bin/python benchmarks/bench_load.py --search /tmp/am_idx1000 --processes 1 2 4
        [--calls 6]

The simulated dataset takes about 1 GB of disk and some minutes to write.
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
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DONE = "bench-load-complete.json"


def audiomoment_exe() -> str:
    return str(Path(sys.executable).with_name("audiomoment"))


def _rss_parts(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) of a running process, KiB (0, 0 once it is gone)."""
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return anon, file


def run_measured(cmd: Sequence[str], every_s: float = 0.01) -> tuple[float, dict[str, float],
                                                                       str]:
    """Run ``cmd``: (wall seconds, memory MiB, stdout). Memory: ``peak`` (the kernel's
    maximum resident set size of the process, from wait4), and the largest sampled
    ``anon`` (RssAnon: what the process allocated) and ``file`` (RssFile: pages of mapped
    files it touched, page cache that the kernel can reclaim). Exits on failure."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=err)
            anon = file = 0
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                a, f = _rss_parts(proc.pid)
                anon, file = max(anon, a), max(file, f)
                time.sleep(every_s)
            wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {code}):\n"
                             f"{err_path.read_text(errors='replace')[-2000:]}")
        memory = {"peak": usage.ru_maxrss / 1024.0, "anon": anon / 1024.0,
                  "file": file / 1024.0}
        return wall, memory, out_path.read_text()


# ---------------------------------------------------------------------------- predict


def make_dataset(workdir: Path, hours: float, recording_s: float, queries: int,
                 seed: int) -> dict[str, Path]:
    """Simulate and write the dataset unless a complete one with these parameters is there."""
    from audiomoment.testing.sim_config import SimulationConfig
    from audiomoment.testing.simulate import simulate, write_dataset

    params = {"hours": hours, "recording_s": recording_s, "queries": queries, "seed": seed}
    root = workdir / "dataset"
    paths = {
        "annotations": root / "annotations.jsonl",
        "features": root / "FEATURES",
        "checkpoint": root / "CLAP_weights_2023.pth",
        "neutral": root / "neutral.npy",
    }
    done = workdir / DONE
    if done.is_file() and json.loads(done.read_text())["params"] == params:
        print(f"reusing the simulated dataset in {root}")
        return paths
    if root.exists():
        shutil.rmtree(root)
    n_recordings = round(hours * 3600 / recording_s)
    per_recording = -(-queries // n_recordings)
    config = SimulationConfig(
        seed=seed, preset="custom", n_recordings=n_recordings, n_queries=queries,
        duration_range_s=(recording_s, recording_s), fractional_duration_share=0.0,
        events_per_recording=(1, per_recording + 1), text_length_range=(1, 3),
        use_real_annotations=False,
    )
    t0 = time.perf_counter()
    dataset = simulate(config)
    t1 = time.perf_counter()
    write_dataset(dataset, root, progress=False)
    t2 = time.perf_counter()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"simulated {n_recordings} recordings x {recording_s:.0f} s = "
          f"{n_recordings * recording_s / 3600:.1f} h and {len(dataset.annotations)} queries "
          f"in {t1 - t0:.0f} s, written in {t2 - t1:.0f} s ({size / 2**30:.2f} GiB, "
          f"{len(dataset.audio_features) + len(dataset.text_features)} feature files)")
    done.write_text(json.dumps({"params": params}) + "\n")
    return paths


def check_predictions(path: Path, annotations: Sequence[dict]) -> None:
    """One valid row per query (the project's own validator, durations checked); exits
    otherwise."""
    from audiomoment.io.predictions import inspect_predictions

    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    if sorted(str(r["qid"]) for r in rows) != sorted(str(a["qid"]) for a in annotations):
        raise SystemExit(f"{path}: {len(rows)} rows for {len(annotations)} queries")
    check = inspect_predictions(rows, str(path), {str(a["qid"]): a for a in annotations},
                                require_scores=True)
    if check.errors:
        raise SystemExit(f"{path}: {len(check.errors)} invalid rows, first: "
                         f"{next(iter(check.errors.values()))}")


def predict_load(args: argparse.Namespace) -> None:
    paths = make_dataset(args.workdir, args.hours, args.recording_s, args.queries, args.seed)
    with paths["annotations"].open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    steps = sorted({min(s, len(rows)) for s in args.steps})
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'queries':>8} {'run':>5} {'wall s':>8} {'queries/s':>10} {'peak RSS MiB':>13} "
          f"{'anon MiB':>9} {'file MiB':>9}")
    peaks = []
    for n in steps:
        sub = args.workdir / f"annotations_{n}.jsonl"
        # every recording keeps queries: take every k-th row when fewer are asked for
        chosen = rows if n == len(rows) else [rows[i] for i in
                                              np.linspace(0, len(rows) - 1, n).astype(int)]
        sub.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
        cache = args.workdir / f"cache_{n}"
        shutil.rmtree(cache, ignore_errors=True)
        outs = {}
        for run in ("cold", "warm"):
            out = args.workdir / f"pred_{n}_{run}.jsonl"
            cmd = [audiomoment_exe(), "predict", "--annotations", str(sub),
                   "--features", str(paths["features"]), "--checkpoint",
                   str(paths["checkpoint"]), "--neutral-embedding", str(paths["neutral"]),
                   "--system", "1", "--out", str(out), "--cache-dir", str(cache)]
            wall, mem, _ = run_measured(cmd)
            check_predictions(out, chosen)
            outs[run] = out.read_bytes()
            print(f"{n:>8} {run:>5} {wall:>8.1f} {n / wall:>10.0f} {mem['peak']:>13.0f} "
                  f"{mem['anon']:>9.0f} {mem['file']:>9.0f}")
            if run == "warm":
                peaks.append((n, mem["peak"]))
        if outs["cold"] != outs["warm"]:
            raise SystemExit(f"{n} queries: the warm predictions differ from the cold ones")
    if len(peaks) >= 2:
        (n0, r0), (n1, r1) = peaks[0], peaks[-1]
        print(f"warm peak RSS grows by {(r1 - r0) / (n1 - n0) * 1000:.1f} MiB per 1,000 "
              f"queries ({n0} -> {n1}); cold and warm predictions identical at every step")


# ---------------------------------------------------------------------------- search


def search_load(args: argparse.Namespace) -> None:
    from audiomoment.testing.archive import archive_space

    db = args.search
    space = archive_space(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(len(space.captions)).tolist()
    n_queries = max(args.processes) * args.calls
    with tempfile.TemporaryDirectory(prefix="bench-load-q-") as tmp:
        qfiles = []
        for i in order:
            caption = space.captions[i]
            if not space.concepts(caption):
                continue
            qfiles.append(Path(tmp) / f"q{len(qfiles)}.npy")
            np.save(qfiles[-1], space.query_embedding(caption))
            if len(qfiles) == n_queries:
                break

        def command(i: int) -> list[str]:
            return [audiomoment_exe(), "search", "--db", str(db), "--query-embedding",
                    str(qfiles[i]), "--system", str(1 + i % 2), "--json"]

        # warm the page cache and take each query's answer alone
        alone = {}
        for i in range(n_queries):
            _, _, out = run_measured(command(i))
            alone[i] = json.loads(out)["moments"]
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
              f"index {db}; {n_queries} distinct queries, each answered alone first")
        print(f"{'processes':>9} {'calls':>6} {'wall s':>7} {'queries/s':>9} {'p50 s':>6} "
              f"{'p95 s':>6} {'max s':>6} {'max RSS MiB':>12} {'failed':>6} {'same':>5}")
        for p in args.processes:
            latencies: list[float] = []
            rss: list[float] = []
            failures: list[str] = []
            same = [True]
            lock = threading.Lock()

            def worker(k: int, p: int = p, latencies: list[float] = latencies,
                       rss: list[float] = rss, failures: list[str] = failures,
                       same: list[bool] = same, lock: threading.Lock = lock) -> None:
                for c in range(args.calls):
                    i = k * args.calls + c
                    try:
                        wall, mem, out = run_measured(command(i))
                        peak = mem["peak"]
                    except SystemExit as exc:
                        with lock:
                            failures.append(str(exc))
                        continue
                    with lock:
                        latencies.append(wall)
                        rss.append(peak)
                        if json.loads(out)["moments"] != alone[i]:
                            same[0] = False

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(p)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            done = len(latencies)
            p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
            print(f"{p:>9} {p * args.calls:>6} {wall:>7.1f} {done / wall:>9.2f} "
                  f"{statistics.median(latencies):>6.2f} {p95:>6.2f} {max(latencies):>6.2f} "
                  f"{max(rss):>12.0f} {len(failures):>6} {'yes' if same[0] else 'NO':>5}")
            for f in failures[:3]:
                print(f"  failure: {f.splitlines()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/am_load"))
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--recording-s", type=float, default=300.0)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--steps", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search", type=Path, default=None, metavar="DB",
                        help="run the concurrent-search part on this index instead")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--calls", type=int, default=6, help="calls per process")
    args = parser.parse_args()
    if args.search is not None:
        search_load(args)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        predict_load(args)


if __name__ == "__main__":
    main()
