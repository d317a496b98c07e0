"""Whole-process `audiomoment predict`: per-file reading against the feature store.

Runs the command line as a user would (a fresh process each time, imports included),
side by side on one dataset: the per-file path (``--no-store``: every feature file read,
the projection cache read per file, every query projected) and the feature store (the
default). Each path runs once cold (the first run on the cache folder: the per-file path
fills the projection cache, the store ingests), then ``--repeats`` warm runs, the two
paths alternating so that both see the same machine load. Prints the seconds of each run,
the medians, the ratio (per-file / store) and the peak RSS, and checks that the two
prediction files are byte-identical. Exit status 1 when they differ or when the ratio is
below ``--min-ratio``.

    .venv/bin/python benchmarks/bench_predict.py --data /tmp/base/sim_clotho
    .venv/bin/python benchmarks/bench_predict.py            # simulates a Clotho-sized set

``--data``: a folder as ``audiomoment simulate`` writes it (annotations.jsonl, FEATURES/,
CLAP_weights_2023.pth, neutral.npy). ``--cache-dir``: the cache folder for both paths
(default: a fresh temporary one, removed at the end; a given one is kept and may already
be warm).

``--stages`` runs the former in-process benchmark instead: the dataset runner by stage
(loading, projection, traces, localisation, writing) with the reference and the fast EM
engines, cold and warm projection cache, on a SIMULATED set written for the purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("load", "projection", "traces", "localisation", "writing")
PATHS = ("per-file", "store")


# ---------------------------------------------------------------------------------------------
# Whole process, per-file against the store
# ---------------------------------------------------------------------------------------------


def predict_command(data: Path, system: str, out: Path, cache: Path, store: bool) -> list[str]:
    """The `audiomoment predict` command line of one run."""
    exe = Path(sys.executable).with_name("audiomoment")
    cmd = [str(exe) if exe.is_file() else sys.executable, *([] if exe.is_file() else
                                                             ["-m", "audiomoment"]),
           "predict", "--annotations", str(data / "annotations.jsonl"),
           "--features", str(data / "FEATURES"),
           "--checkpoint", str(data / "CLAP_weights_2023.pth"),
           "--neutral-embedding", str(data / "neutral.npy"),
           "--system", system, "--out", str(out), "--cache-dir", str(cache)]
    return cmd if store else [*cmd, "--no-store"]


def timed_run(cmd: list[str], work: Path) -> tuple[float, float]:
    """Run a command to completion: (wall seconds, peak RSS of the process in MiB).

    The peak RSS comes from GNU time when there is one: Linux counts, in the peak of a
    process started by exec, the memory of the process it was forked from, so a child of
    this (possibly large) process would report at least this process's size.
    """
    gnu_time = Path("/usr/bin/time")
    rss_file = work / "rss.txt"
    prefix = [str(gnu_time), "-f", "%M", "-o", str(rss_file)] if gnu_time.is_file() else []
    t0 = time.perf_counter()
    proc = subprocess.Popen([*prefix, *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()}")
    peak_kib = float(rss_file.read_text().split()[-1]) if prefix else usage.ru_maxrss
    return wall, peak_kib / 1024


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(data: Path, system: str, cache: Path, work: Path, repeats: int,
            min_ratio: float) -> int:
    outs = {name: work / f"{name}.jsonl" for name in PATHS}
    cmds = {name: predict_command(data, system, outs[name], cache, name == "store")
            for name in PATHS}
    print(f"data {data}, System {system}, cache {cache}")
    print("command (store):   " + " ".join(cmds["store"]))
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in PATHS}
    for name in PATHS:
        runs[name].append(timed_run(cmds[name], work))
        print(f"  {name:<9s} cold  {runs[name][-1][0]:8.2f} s  "
              f"peak RSS {runs[name][-1][1]:6.0f} MiB", flush=True)
    for i in range(repeats):
        for name in PATHS:
            runs[name].append(timed_run(cmds[name], work))
            print(f"  {name:<9s} warm{i + 1} {runs[name][-1][0]:8.2f} s  "
                  f"peak RSS {runs[name][-1][1]:6.0f} MiB", flush=True)
    medians = {name: statistics.median(w for w, _ in runs[name][1:]) for name in PATHS}
    print(f"{'path':<10s}{'cold s':>9s}{'warm median s':>15s}{'warm runs s':>32s}"
          f"{'peak RSS MiB':>14s}")
    for name in PATHS:
        warm = " ".join(f"{w:.2f}" for w, _ in runs[name][1:])
        peak = max(r for _, r in runs[name])
        print(f"{name:<10s}{runs[name][0][0]:9.2f}{medians[name]:15.2f}{warm:>32s}{peak:14.0f}")
    ratio = medians["per-file"] / medians["store"]
    digests = {name: sha256(outs[name]) for name in PATHS}
    same = outs["per-file"].read_bytes() == outs["store"].read_bytes()
    print(f"warm ratio per-file / store: {ratio:.1f}x (bar {min_ratio:.0f}x: "
          f"{'met' if ratio >= min_ratio else 'NOT met'})")
    for name in PATHS:
        print(f"  {name:<9s} predictions sha256 {digests[name]}")
    print(f"predictions byte-identical: {'yes' if same else 'NO'}")
    return 0 if same and ratio >= min_ratio else 1


# ---------------------------------------------------------------------------------------------
# In process, by stage (--stages)
# ---------------------------------------------------------------------------------------------


def run_stages_once(paths: dict, engine: str, cache: Path | None, out: Path) -> dict[str, float]:
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.config import LocalizeConfig
    from audiomoment.io.annotations import read_annotations
    from audiomoment.io.features import load_neutral_embedding
    from audiomoment.io.predictions import write_predictions
    from audiomoment.pipelines.dataset import predict_dataset

    annotations = read_annotations(paths["annotations"])
    heads = load_projection_heads(paths["checkpoint"])
    neutral = load_neutral_embedding(paths["neutral"])
    run = predict_dataset(
        annotations, paths["audio_features"].parent, system=1, heads=heads, neutral=neutral,
        config=LocalizeConfig(engine=engine), cache_dir=cache, progress=False,
        feature_store=False,
    )
    t0 = time.perf_counter()
    write_predictions(out, run.rows)
    timings = dict(run.timings_s)
    timings["writing"] = time.perf_counter() - t0
    timings["total"] = sum(timings[s] for s in STAGES)
    return timings


def stages(work: Path, preset: str, scale: float, seed: int, skip_reference: bool) -> None:
    from audiomoment.io.annotations import read_annotations
    from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

    make = SimulationConfig.clotho_like if preset == "clotho" else (
        SimulationConfig.castella_like)
    t0 = time.perf_counter()
    paths = write_dataset(simulate(make(seed=seed, scale=scale)), work / "data")
    n = len(read_annotations(paths["annotations"]))
    print(f"SIMULATED {preset}-like set: {n} queries "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    cache = work / "cache"
    runs: dict[str, dict[str, float]] = {}
    if not skip_reference:
        runs["reference"] = run_stages_once(paths, "reference", None, work / "ref.jsonl")
    runs["fast, cold cache"] = run_stages_once(paths, "fast", cache, work / "fast.jsonl")
    runs["fast, warm cache"] = run_stages_once(paths, "fast", cache, work / "fast2.jsonl")

    header = f"{'stage':<14s}" + "".join(f"{name:>20s}" for name in runs)
    print(header)
    for stage in (*STAGES, "total"):
        print(f"{stage:<14s}" + "".join(f"{r[stage]:>18.2f} s" for r in runs.values()))
    if "reference" in runs:
        ref = runs["reference"]
        for name in ("fast, cold cache", "fast, warm cache"):
            r = runs[name]
            print(f"reference / {name}: total {ref['total'] / r['total']:.1f}x, "
                  f"localisation {ref['localisation'] / r['localisation']:.1f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="a simulated set (default: simulate a Clotho-sized one)")
    parser.add_argument("--system", default="1", choices=["1", "2", "window"])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of each path")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default: a fresh one)")
    parser.add_argument("--min-ratio", type=float, default=5.0)
    parser.add_argument("--stages", action="store_true",
                        help="the in-process benchmark by stage and EM engine instead")
    parser.add_argument("--preset", choices=["clotho", "castella"], default="clotho")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        if args.stages:
            stages(work, args.preset, args.scale, args.seed, args.skip_reference)
            return
        data = args.data
        if data is None:
            from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

            make = SimulationConfig.clotho_like if args.preset == "clotho" else (
                SimulationConfig.castella_like)
            paths = write_dataset(simulate(make(seed=args.seed, scale=args.scale)),
                                  work / "data")
            data = paths["annotations"].parent
            print(f"SIMULATED {args.preset}-like set in {data}")
        cache = args.cache_dir or work / "cache"
        rc = compare(data.resolve(), args.system, cache, work, args.repeats, args.min_ratio)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
