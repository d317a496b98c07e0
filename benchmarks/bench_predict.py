"""End-to-end `predict` by stage on a SIMULATED dataset, reference vs fast engine.

Writes a simulated Clotho-Moment-sized dataset (6,649 queries over 60-s recordings; use
--scale for a smaller one), then runs the dataset runner four ways in one process:
reference engine (cold projection cache), fast engine (cold cache), fast engine (warm cache),
and prints seconds per stage (loading features, projection, traces, localisation, writing),
the totals and the ratios.

    .venv/bin/python benchmarks/bench_predict.py [--scale 1.0] [--preset clotho]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from audiomoment.clap.checkpoint import load_projection_heads
from audiomoment.config import LocalizeConfig
from audiomoment.io.annotations import read_annotations
from audiomoment.io.features import load_neutral_embedding
from audiomoment.io.predictions import write_predictions
from audiomoment.pipelines.dataset import predict_dataset
from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

STAGES = ("load", "projection", "traces", "localisation", "writing")


def run_once(paths: dict, engine: str, cache: Path | None, out: Path) -> dict[str, float]:
    annotations = read_annotations(paths["annotations"])
    heads = load_projection_heads(paths["checkpoint"])
    neutral = load_neutral_embedding(paths["neutral"])
    run = predict_dataset(
        annotations, paths["audio_features"].parent, system=1, heads=heads, neutral=neutral,
        config=LocalizeConfig(engine=engine), cache_dir=cache, progress=False,
    )
    t0 = time.perf_counter()
    write_predictions(out, run.rows)
    timings = dict(run.timings_s)
    timings["writing"] = time.perf_counter() - t0
    timings["total"] = sum(timings[s] for s in STAGES)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["clotho", "castella"], default="clotho")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        make = SimulationConfig.clotho_like if args.preset == "clotho" else (
            SimulationConfig.castella_like)
        t0 = time.perf_counter()
        paths = write_dataset(simulate(make(seed=args.seed, scale=args.scale)), work / "data")
        n = len(read_annotations(paths["annotations"]))
        print(f"SIMULATED {args.preset}-like set: {n} queries "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        cache = work / "cache"
        runs: dict[str, dict[str, float]] = {}
        if not args.skip_reference:
            runs["reference"] = run_once(paths, "reference", None, work / "ref.jsonl")
        runs["fast, cold cache"] = run_once(paths, "fast", cache, work / "fast.jsonl")
        runs["fast, warm cache"] = run_once(paths, "fast", cache, work / "fast2.jsonl")

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
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
