"""The one-command demo: a SIMULATED CASTELLA-sized benchmark, Systems 1 and 2, scored.

Real MS-CLAP features cannot be shipped; the demo writes a simulated dataset in the
lighthouse layout (``audiomoment.testing.simulate``) and runs the real pipeline on it,
reading the files back exactly as ``audiomoment predict`` does. Its numbers are simulated,
not the report's.

Then the corpus table: a second SIMULATED CASTELLA-sized set whose events share sound
concepts across recordings (``SimulationConfig.castella_corpus``) becomes one archive index
of 566 recordings; every query is searched across all of it (Systems 1 and 2, the report's
per-recording score and the calibrated cross-recording score as rankings) and scored with
corpus R@K (:mod:`audiomoment.evaluation.corpus`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiomoment.clap.checkpoint import load_projection_heads
from audiomoment.config import LocalizeConfig
from audiomoment.io.annotations import read_annotations
from audiomoment.io.predictions import write_predictions
from audiomoment.io.run_settings import write_run_settings
from audiomoment.pipelines.dataset import predict_dataset, run_settings
from audiomoment.pipelines.neutral import neutral_for_run


def _simulated(sim: Any, out_dir: Path) -> tuple[Any, dict[str, Path], list[dict],
                                                  dict[str, Any], tuple[Any, str | None]]:
    """Simulate, write in the lighthouse layout and read back as ``predict`` reads it: the
    dataset, its paths, annotations, projection heads and (neutral embedding, source)."""
    from audiomoment.testing.simulate import simulate, write_dataset

    dataset = simulate(sim)
    paths = write_dataset(dataset, out_dir)
    annotations = read_annotations(paths["annotations"], require_windows=True)
    heads = load_projection_heads(paths["checkpoint"])
    return dataset, paths, annotations, heads, neutral_for_run(1, neutral_file=paths["neutral"])


def run_demo(
    out_dir: Path, seed: int = 0, config: LocalizeConfig | None = None, corpus: bool = True
) -> str:
    """Simulate, predict with both systems, evaluate; return the printed report.

    ``corpus``: add the corpus table (:func:`corpus_table`; a few minutes).

    Each system's predictions are written with their settings beside them
    (``predictions_system<k>.settings.json``), as ``audiomoment predict`` writes them.
    """
    from audiomoment.reporting.tables import evaluate_with_breakdown
    from audiomoment.reporting.text import format_delta_breakdown, format_table
    from audiomoment.testing.simulate import SimulationConfig

    config = config or LocalizeConfig()
    dataset, paths, annotations, heads, (neutral, neutral_source) = _simulated(
        SimulationConfig.castella_like(seed=seed), out_dir)
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
    if corpus:
        lines += ["", corpus_table(out_dir / "corpus", seed, config)]
    return "\n".join(lines).rstrip()


#: Corpus metrics shown in the demo's table, in order.
CORPUS_COLUMNS = ("R@1 IoU=0.5", "R@10 IoU=0.5", "R@100 IoU=0.5", "R@10 IoU=0.7",
                  "recording R@1", "recording R@10")


def corpus_table(out_dir: Path, seed: int = 0, config: LocalizeConfig | None = None) -> str:
    """The SIMULATED corpus benchmark: index the concept-sharing CASTELLA-sized set, search
    every query across it, return the corpus R@K table (and write ``corpus_metrics.json``)."""
    import json

    from audiomoment.clap.projection import project
    from audiomoment.index.ingest import index_features
    from audiomoment.index.store import ArchiveIndex, ModelSpec
    from audiomoment.io.atomic import write_text
    from audiomoment.pipelines.corpus import evaluate_corpus, query_vectors_from_features
    from audiomoment.testing.simulate import SimulationConfig, overlap_summary, query_difficulty

    dataset, paths, annotations, heads, (neutral, _) = _simulated(
        SimulationConfig.castella_corpus(seed=seed), out_dir)
    db = out_dir / "index"
    index_features(
        paths["audio_features"].parent, db, lambda x: project(x, heads["audio"]), ModelSpec(),
        durations_s={r["vid"]: float(r["duration"]) for r in annotations}, neutral=neutral,
    )
    snapshot = ArchiveIndex(db).snapshot()
    queries = query_vectors_from_features(annotations, paths["audio_features"].parent,
                                          heads["text"])
    metrics: dict[str, dict[str, float]] = {}
    for system in (1, 2):
        found = evaluate_corpus(snapshot, annotations, queries, system=system, config=config)
        for ranking, names in (("report", "report's score (naive)"),
                               ("calibrated", "calibrated peak")):
            metrics[f"System {system}, {names}"] = found[ranking]
    difficulty = overlap_summary(query_difficulty(dataset))
    write_text(out_dir / "corpus_metrics.json",
               json.dumps({"metrics": metrics, "difficulty": difficulty}, indent=2) + "\n")
    quartiles = difficulty.get("other_recordings", {})
    width = max(len(k) for k in metrics)
    lines = [
        f"SIMULATED corpus: {len(snapshot)} recordings ({snapshot.hours:.1f} h), "
        f"{len(annotations)} queries searched across all of them (seed {seed}; events share "
        "concepts from the captions' words)",
        f"difficulty: per query, other recordings holding an event that shares a concept: "
        f"median {quartiles.get('median', 0):g} (quartiles {quartiles.get('q25', 0):g}-"
        f"{quartiles.get('q75', 0):g})",
        "",
        f"{'ranking':<{width}}  " + "  ".join(f"{c:>13}" for c in CORPUS_COLUMNS),
    ]
    for name, row in metrics.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[c]:13.2f}" for c in CORPUS_COLUMNS))
    return "\n".join(lines)
