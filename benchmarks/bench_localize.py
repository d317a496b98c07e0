"""Localisation stage, reference engine vs fast engine, on CLAP-like simulated traces.

For each workload (a CASTELLA-sized set: 1,347 queries with the durations and ground-truth
windows of ``castella_test_release.jsonl``; a Clotho-Moment-sized set: 6,649 queries of 60 s
from ``clotho_moment_test_release.jsonl``) this script builds one System 2-style trace per
query (slow background + noise + raised segments over the ground-truth windows, values in
about 0.0-0.4), runs ``localize_traces`` with ``engine="reference"`` once and with
``engine="fast"`` several times, and prints the times (fast: median), their ratio, the share
of queries with the same top window, the headline metrics of both and their differences, and
the peak resident memory (VmHWM, else ``resource.getrusage``).

Options:

``--sensitivity``  also print the effect of full convergence (tol 1e-8 against 1e-3) and of
                   another seed on top-window agreement and headline metrics.
``--reference-threads N`` run the reference's k-means with N OpenMP threads (on a busy
                   machine its two-thread default waits on its threads; 1 is fastest there).
``--memory-check`` fit 1,000,000 traces of 60 frames with the fast engine in a fresh process
                   and print its time and peak resident memory (``--memory-queries`` to change
                   the count).

Usage::

    python benchmarks/bench_localize.py [--sets clotho castella] [--limit N] [--repeats 5]
        [--sensitivity] [--memory-check] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from audiomoment.config import LocalizeConfig
from audiomoment.evaluation.metrics import HEADLINE_KEYS, evaluate
from audiomoment.method.em_fast import fit_fast
from audiomoment.method.localize import LocalizationResult, localize_traces
from audiomoment.testing.simulate import clap_like_trace

ANNOTATIONS = {
    "castella": "castella/castella_test_release.jsonl",
    "clotho": "clotho_moment/clotho_moment_test_release.jsonl",
}
HEADLINE = tuple(HEADLINE_KEYS.values())


def default_data_dir() -> Path:
    env = os.environ.get("AUDIOMOMENT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def workload(
    name: str, data_dir: Path, seed: int, limit: int | None
) -> tuple[list[NDArray[np.float64]], list[float], list[dict]]:
    """Traces, durations and ground-truth rows for one annotation file."""
    rows = read_rows(data_dir / ANNOTATIONS[name])
    if limit is not None:
        rows = rows[:limit]
    rng = np.random.default_rng(seed)
    traces = [clap_like_trace(rng, r["duration"], r["relevant_windows"]) for r in rows]
    durations = [float(r["duration"]) for r in rows]
    gt = [{"qid": r["qid"], "relevant_windows": r["relevant_windows"]} for r in rows]
    return traces, durations, gt


def prediction_rows(gt: list[dict], results: list[LocalizationResult]) -> list[dict]:
    return [
        {"qid": g["qid"], "pred_relevant_windows": r.windows.tolist()}
        for g, r in zip(gt, results, strict=True)
    ]


def headline(gt: list[dict], results: list[LocalizationResult]) -> dict[str, float]:
    brief = evaluate(gt, prediction_rows(gt, results))["brief"]
    return {k: float(brief[k]) for k in HEADLINE}


def top_agreement(a: list[LocalizationResult], b: list[LocalizationResult]) -> float:
    """Share of queries whose first window [start, end] is the same."""
    same = [np.array_equal(x.windows[:1, :2], y.windows[:1, :2]) for x, y in zip(a, b, strict=True)]
    return float(np.mean(same))


@contextlib.contextmanager
def reference_threads(n: int | None) -> Iterator[None]:
    """Limit the OpenMP threads of scikit-learn's k-means to ``n`` (None: leave as is)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    # Load the OpenMP runtime of scikit-learn's k-means first: only loaded ones are limited.
    importlib.import_module("sklearn.cluster._k_means_lloyd")

    with threadpool_limits(limits=n, user_api="openmp"):
        yield


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    ``VmHWM`` from /proc where there is one (it starts afresh at exec); otherwise
    ``getrusage``'s ``ru_maxrss``, which on Linux carries over the parent's peak into a
    freshly started child.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def print_metrics(
    label: str, left: dict[str, float], right: dict[str, float], left_label: str = "reference"
) -> float:
    worst = 0.0
    print(f"  {'metric':<18} {left_label:>10} {label:>10} {'delta':>8}")
    for k in HEADLINE:
        d = right[k] - left[k]
        worst = max(worst, abs(d))
        print(f"  {k:<18} {left[k]:>10.2f} {right[k]:>10.2f} {d:>+8.2f}")
    return worst


def run_set(name: str, args: argparse.Namespace) -> None:
    traces, durations, gt = workload(name, args.data_dir, args.seed, args.limit)
    lengths = np.array([len(t) for t in traces])
    print(f"\n== {name}: {len(traces)} queries, {lengths.min()}-{lengths.max()} frames")
    print(f"  load average at start     : {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ref_cfg = LocalizeConfig(engine="reference")
    fast_cfg = LocalizeConfig(engine="fast")

    fast_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fast = localize_traces(traces, durations, fast_cfg)
        fast_times.append(time.perf_counter() - t0)
    t_fast = statistics.median(fast_times)
    smoothed = [r.smoothed for r in fast]
    em_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit_fast(smoothed, fast_cfg)
        em_times.append(time.perf_counter() - t0)
    t_em = statistics.median(em_times)

    with reference_threads(args.reference_threads):
        t0 = time.perf_counter()
        ref = localize_traces(traces, durations, ref_cfg)
        t_ref = time.perf_counter() - t0

    print(
        f"  reference localize_traces : {t_ref:9.3f} s  ({1e3 * t_ref / len(traces):.2f} ms/query)"
    )
    print(
        f"  fast localize_traces      : {t_fast:9.3f} s  (median of {args.repeats}; "
        f"min {min(fast_times):.3f} s; {1e6 * t_fast / len(traces):.0f} us/query)"
    )
    print(f"  speed-up (localisation)   : {t_ref / t_fast:9.1f}x")
    share = t_em / t_fast
    print(f"  fast EM alone (fit_fast)  : {t_em:9.3f} s  (median; {share:.0%} of the fast stage)")
    print(f"  top window identical      : {top_agreement(ref, fast):.4%}")
    worst = print_metrics("fast", headline(gt, ref), headline(gt, fast))
    print(f"  largest |delta|           : {worst:.2f} points")
    print(f"  peak RSS so far           : {peak_rss_mib():.0f} MiB")

    if args.sensitivity:
        base = headline(gt, fast)
        for label, cfg in (
            ("tol=1e-8", fast_cfg.with_(tol=1e-8)),
            ("seed=0", fast_cfg.with_(random_state=0)),
            ("seed=7", fast_cfg.with_(random_state=7)),
        ):
            other = localize_traces(traces, durations, cfg)
            print(f"  -- {label} against the default (tol=1e-3, seed=42), fast engine")
            print(f"     top window identical  : {top_agreement(fast, other):.4%}")
            worst = print_metrics(label, base, headline(gt, other), "default")
            print(f"     largest |delta|       : {worst:.2f} points")


def memory_child(n_queries: int, frames: int, seed: int) -> None:
    """Fit ``n_queries`` CLAP-like traces of ``frames`` frames; print time and peak RSS."""
    rss0 = peak_rss_mib()
    rng = np.random.default_rng(seed)
    traces = np.empty((n_queries, frames))
    block = 50_000
    t = np.arange(frames)
    for a in range(0, n_queries, block):
        b = min(n_queries, a + block)
        x = rng.uniform(0.05, 0.25, (b - a, 1)) + 0.02 * rng.normal(size=(b - a, frames))
        start = rng.integers(0, frames - 5, (b - a, 1))
        width = rng.integers(3, frames // 2, (b - a, 1))
        x += rng.uniform(0.01, 0.12, (b - a, 1)) * ((t >= start) & (t < start + width))
        traces[a:b] = gaussian_filter1d(x, 1.5, axis=1, mode="reflect", truncate=4.0)
    rss1 = peak_rss_mib()
    t0 = time.perf_counter()
    fit = fit_fast(traces, LocalizeConfig(engine="fast"))
    elapsed = time.perf_counter() - t0
    print(f"  traces: {n_queries} x {frames} ({traces.nbytes / 2**20:.0f} MiB)")
    print(f"  fit_fast: {elapsed:.1f} s ({1e6 * elapsed / n_queries:.1f} us/query)")
    print(
        f"  peak RSS: start {rss0:.0f} MiB, after building traces {rss1:.0f} MiB, "
        f"after fitting {peak_rss_mib():.0f} MiB"
    )
    print(f"  finite results: {bool(np.isfinite(fit.lower_bound).all())}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sets", nargs="+", choices=sorted(ANNOTATIONS), default=["clotho", "castella"]
    )
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--limit", type=int, default=None, help="first N queries of each set")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated traces")
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=None,
        help="OpenMP threads for the reference's k-means (default: scikit-learn's choice); "
        "1 is its fastest setting on a busy machine",
    )
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--memory-check", action="store_true")
    parser.add_argument("--memory-queries", type=int, default=1_000_000)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        memory_child(args.memory_queries, 60, args.seed)
        return 0
    for name in args.sets:
        run_set(name, args)
    if args.memory_check:
        print(
            f"\n== memory: fast engine on {args.memory_queries} traces x 60 frames (fresh process)"
        )
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            "--memory-queries",
            str(args.memory_queries),
            "--seed",
            str(args.seed),
        ]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
