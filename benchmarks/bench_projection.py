"""Projection-head speed: audiomoment's ``project`` against a NumPy/SciPy formulation.

Both compute e1 = x W1^T; out = LayerNorm(e1 + gelu(e1) W2^T), L2-normalised, in float32,
on random 768-d rows with a random head; the median of ``--repeats`` runs of each is
printed with their ratio and the largest difference. ``predict`` projects every window of
a dataset once (then caches it), so this is its cold-cache projection stage.

    .venv/bin/python benchmarks/bench_projection.py
    .venv/bin/python benchmarks/bench_projection.py --rows 200000 --repeats 3

Measured on the project's 2-core machine (AMD EPYC; torch 2.13.0 CPU, numpy 2.4, scipy):

    50000 rows x 768 -> 1024, median of 5
      numpy/scipy   3.05 s   (16,371 rows/s)
      audiomoment   1.54 s   (32,417 rows/s)
      ratio 2.0x; max abs difference 1.3e-07

The two matrix products are 3.7 MFLOP per row, about 1 s of this CPU's float32 rate for
50,000 rows, so the remaining gap is the element-wise work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.special import erf

from audiomoment.clap.checkpoint import ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.testing.random_clap import random_projection_head


def project_numpy(x: np.ndarray, head: ProjectionHead) -> np.ndarray:
    """The same head in NumPy and SciPy (single-threaded erf, several passes)."""
    e1 = x @ head.linear1.T
    g = 0.5 * e1 * (1.0 + erf(e1 / np.sqrt(2.0)).astype(np.float32))
    h = e1 + g @ head.linear2.T
    centred = h - h.mean(axis=-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    out = (centred / np.sqrt(var + head.ln_eps) * head.ln_weight + head.ln_bias)
    out = out.astype(np.float32)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    head = random_projection_head(rng)
    x = rng.standard_normal((args.rows, head.in_dim)).astype(np.float32)
    diff = float(np.max(np.abs(project(x[:2000], head) - project_numpy(x[:2000], head))))
    slow = median_seconds(lambda: project_numpy(x, head), args.repeats)
    fast = median_seconds(lambda: project(x, head), args.repeats)
    print(f"{args.rows} rows x {head.in_dim} -> {head.out_dim}, median of {args.repeats}")
    print(f"  numpy/scipy   {slow:.2f} s   ({args.rows / slow:,.0f} rows/s)")
    print(f"  audiomoment   {fast:.2f} s   ({args.rows / fast:,.0f} rows/s)")
    print(f"  ratio {slow / fast:.1f}x; max abs difference {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
