"""The one-command demo: a SIMULATED CASTELLA-sized benchmark, Systems 1 and 2, scored.

Real MS-CLAP features cannot be shipped; the demo writes a simulated dataset in the
lighthouse layout (``audiomoment.testing.simulate``) and runs the real pipeline on it, reading the
files back exactly as ``audiomoment predict`` does. Its numbers are simulated, not the
report's.
"""

from __future__ import annotations

from pathlib import Path

from audiomoment.clap.checkpoint import load_projection_heads
from audiomoment.config import LocalizeConfig
from audiomoment.io.annotations import read_annotations
from audiomoment.io.features import load_neutral_embedding
from audiomoment.io.predictions import write_predictions
from audiomoment.pipelines.dataset import predict_dataset


def run_demo(out_dir: Path, seed: int = 0, config: LocalizeConfig | None = None) -> str:
    """Simulate, predict with both systems, evaluate; return the printed report."""
    from audiomoment.evaluation.metrics import evaluate, format_delta_breakdown, format_table
    from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

    config = config or LocalizeConfig()
    dataset = simulate(SimulationConfig.castella_like(seed=seed))
    paths = write_dataset(dataset, out_dir)
    annotations = read_annotations(paths["annotations"], require_windows=True)
    heads = load_projection_heads(paths["checkpoint"])
    neutral = load_neutral_embedding(paths["neutral"])
    table = {}
    breakdowns = []
    for system in (1, 2):
        run = predict_dataset(
            annotations, paths["audio_features"].parent, system=system, heads=heads,
            neutral=neutral, config=config, cache_dir=out_dir / "cache",
        )
        write_predictions(out_dir / f"predictions_system{system}.jsonl", run.rows)
        metrics = evaluate(annotations, run.rows)
        name = f"System {system}"
        table[name] = metrics
        if "delta_breakdown" in metrics:
            breakdowns.append(f"{name}\n{format_delta_breakdown(metrics)}")
    lines = [
        f"SIMULATED CASTELLA-sized benchmark (seed {seed}; {len(annotations)} queries) — "
        "simulated data, not the report's results",
        f"durations and windows: {dataset.source}"
        + ("" if dataset.source.startswith("real") else
           " (the CASTELLA annotations were not found: set AUDIOMOMENT_SHARED_DATA to the "
           "folder holding castella/ for the README's figures)"),
        f"data and predictions in {out_dir}",
        "",
        format_table(table),
        "",
        *breakdowns,
    ]
    return "\n".join(lines).rstrip()
