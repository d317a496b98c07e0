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
from audiomoment.io.predictions import write_predictions
from audiomoment.io.run_settings import write_run_settings
from audiomoment.pipelines.dataset import predict_dataset, run_settings
from audiomoment.pipelines.neutral import neutral_for_run


def run_demo(out_dir: Path, seed: int = 0, config: LocalizeConfig | None = None) -> str:
    """Simulate, predict with both systems, evaluate; return the printed report.

    Each system's predictions are written with their settings beside them
    (``predictions_system<k>.settings.json``), as ``audiomoment predict`` writes them.
    """
    from audiomoment.reporting.tables import evaluate_with_breakdown
    from audiomoment.reporting.text import format_delta_breakdown, format_table
    from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

    config = config or LocalizeConfig()
    dataset = simulate(SimulationConfig.castella_like(seed=seed))
    paths = write_dataset(dataset, out_dir)
    annotations = read_annotations(paths["annotations"], require_windows=True)
    heads = load_projection_heads(paths["checkpoint"])
    neutral, neutral_source = neutral_for_run(1, neutral_file=paths["neutral"])
    cache = out_dir / "cache"
    table = {}
    breakdowns = []
    for system in (1, 2):
        run = predict_dataset(
            annotations, paths["audio_features"].parent, system=system, heads=heads,
            neutral=neutral, config=config, cache_dir=cache,
        )
        predictions = out_dir / f"predictions_system{system}.jsonl"
        write_predictions(predictions, run.rows)
        write_run_settings(predictions, run_settings(
            system, config, neutral_source=neutral_source, checkpoint=paths["checkpoint"],
            cache_dir=cache,
        ))
        metrics = evaluate_with_breakdown(annotations, run.rows)
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
