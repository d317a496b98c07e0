"""What ``--bf16`` costs: its deviation on real audio, and its effect on benchmark metrics.

1. Deviation (measured): random weights in the official layout (seed 0); the 50 windows of
   the real recording ``shared/data/audio/1a-ODBWMUAE.wav`` plus generated windows (tones,
   noise, silence) through the float32 and the bfloat16 encoder. Printed: the relative error
   ``|f_bf16 - f| / |f|`` of each 768-d feature vector (median, 95th percentile, max), and the
   max abs difference of the joint (projected, L2-normalised) embeddings.
2. Effect on metrics (SIMULATED data, MODELLED error): the demo's CASTELLA-sized simulated
   benchmark (seed 0), whose audio features are 768-d encoder outputs. Each feature vector
   gets an error of the largest relative size measured in step 1 (random direction, norm =
   that size times the vector's norm), three times with different error seeds; Systems 1 and
   2 are run and scored on the clean and on each perturbed set. Random-weight activations are
   not those of the real checkpoint, so this estimates the size of the effect; it is not a
   measurement on real data.

    .venv/bin/python tools/bf16_effect.py

Measured on the project's 2-core machine (torch 2.13.0 CPU, AVX-512 with bfloat16):

    relative error of 768-d features over 56 windows: median 8.9e-03, 95th pct 9.7e-03,
    max 1.0e-02; joint embeddings max abs 1.2e-03

    SIMULATED benchmark (1,347 queries), error 1.0e-02 x |f|, 3 error seeds; change from clean
    (R1@0.5, R1@0.7, mAP@0.5, mAP@0.75, mAP):
    System 1 (clean 39.57 28.80 32.15 18.76 19.19): seed 0 +0.15 -0.07 +0.14 -0.15 -0.01,
        seed 1 -0.30 -0.22 -0.01 -0.10 +0.00, seed 2 -0.30 -0.59 -0.15 -0.37 -0.16
    System 2 (clean 14.25 9.58 13.50 6.97 7.45): seed 0 +0.00 +0.00 -0.01 -0.03 -0.01,
        seed 1 +0.08 +0.07 -0.06 -0.04 -0.05, seed 2 -0.07 -0.15 -0.03 -0.05 -0.02
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def encoders(seed: int = 0):
    """(float32 encoder, bfloat16 encoder) with the same random weights."""
    from audiomoment.clap.model import audio_encoder_from_state
    from audiomoment.testing.random_clap import random_state_dict

    state = random_state_dict(seed=seed, text=False)
    return (audio_encoder_from_state(state, "random", "float32"),
            audio_encoder_from_state(state, "random", "bfloat16"))


def sample_windows(recording: Path | None) -> np.ndarray:
    """The recording's 1-s windows at 44.1 kHz (when given) plus tones, noise and silence."""
    from audiomoment.io.audio import load_windows

    rng = np.random.default_rng(1)
    t = np.arange(44100) / 44100
    made = [0.3 * np.sin(2 * np.pi * f * t) for f in (220, 1000, 5000)]
    made += [0.1 * rng.standard_normal(44100) for _ in range(2)] + [np.zeros(44100)]
    windows = [np.stack(made).astype(np.float32)]
    if recording is not None and recording.is_file():
        windows.insert(0, load_windows(recording))
    return np.concatenate(windows)


def deviation(args: argparse.Namespace) -> float:
    """Print the bf16 deviation; return the largest relative error of a feature vector."""
    from audiomoment.clap.projection import project

    f32, bf16 = encoders()
    x = sample_windows(args.recording)
    a, b = f32.features(x), bf16.features(x)
    norms = np.linalg.norm(a, axis=1)
    rel = np.linalg.norm(b - a, axis=1) / np.where(norms > 0, norms, 1.0)
    joint = np.max(np.abs(project(b, f32.head) - project(a, f32.head)))
    print(f"relative error of 768-d features over {len(x)} windows: median "
          f"{np.median(rel):.1e}, 95th pct {np.percentile(rel, 95):.1e}, max {rel.max():.1e}; "
          f"joint embeddings max abs {joint:.1e}")
    return float(rel.max())


def perturbed(features: dict[str, np.ndarray], size: float, seed: int) -> dict[str, np.ndarray]:
    """Each (T, D) array with an error of norm ``size`` x each row's norm, random direction."""
    rng = np.random.default_rng(seed)
    out = {}
    for vid, f in features.items():
        noise = rng.standard_normal(f.shape)
        noise *= (size * np.linalg.norm(f, axis=1, keepdims=True)
                  / np.linalg.norm(noise, axis=1, keepdims=True))
        out[vid] = (f + noise).astype(np.float32)
    return out


def metrics_effect(size: float, seeds: int) -> None:
    from dataclasses import replace

    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.evaluation.metrics import HEADLINE_KEYS, evaluate
    from audiomoment.io.annotations import read_annotations
    from audiomoment.io.features import load_neutral_embedding
    from audiomoment.pipelines.dataset import predict_dataset
    from audiomoment.reporting.text import headline
    from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

    clean = simulate(SimulationConfig.castella_like(seed=0))
    print(f"\nSIMULATED benchmark ({len(clean.annotations)} queries), error {size:.1e} x |f|, "
          f"{seeds} error seeds")
    variants = [("clean", clean)] + [
        (f"error seed {s}", replace(clean, audio_features=perturbed(clean.audio_features,
                                                                     size, s)))
        for s in range(seeds)
    ]
    scores: dict[int, dict[str, dict[str, float]]] = {1: {}, 2: {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in variants:
            folder = Path(tmp) / name.replace(" ", "_")
            paths = write_dataset(data, folder)
            annotations = read_annotations(paths["annotations"], require_windows=True)
            heads = load_projection_heads(paths["checkpoint"])
            neutral = load_neutral_embedding(paths["neutral"])
            for system in (1, 2):
                run = predict_dataset(annotations, paths["audio_features"].parent,
                                      system=system, heads=heads, neutral=neutral,
                                      cache_dir=None)
                scores[system][name] = headline(evaluate(annotations, run.rows))
    for system, rows in scores.items():
        base = rows["clean"]
        print(f"System {system}")
        for name, values in rows.items():
            cells = "  ".join(f"{k} {values[k]:6.2f}" for k in HEADLINE_KEYS)
            change = "" if name == "clean" else "   change " + "  ".join(
                f"{values[k] - base[k]:+.2f}" for k in HEADLINE_KEYS)
            print(f"  {name:<13s} {cells}{change}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path,
                        default=REPO.parent / "shared" / "data" / "audio" / "1a-ODBWMUAE.wav")
    parser.add_argument("--seeds", type=int, default=3, help="error seeds on the benchmark")
    args = parser.parse_args(argv)
    size = deviation(args)
    metrics_effect(size, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
