"""The ``audiomoment`` command line: a thin layer over the Python API.

User mistakes (``InputError``) are printed on one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError, one_line

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from audiomoment.io.run_settings import RunSettings


def _config_from(args: argparse.Namespace) -> LocalizeConfig:
    try:
        return LocalizeConfig(
            max_windows=args.max_windows, engine=args.engine, tol=args.tol, n_init=args.n_init
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _system(value: str) -> int | str:
    return value if value == "window" else int(value) if value.isdigit() else value


def _add_localize_options(p: argparse.ArgumentParser) -> None:
    defaults = LocalizeConfig()
    p.add_argument("--max-windows", type=int, default=defaults.max_windows,
                   help="ranked windows per query (1 = the report's submitted top window)")
    p.add_argument("--engine", choices=["reference", "fast"], default=defaults.engine,
                   help="EM engine: scikit-learn per query, or batched NumPy")
    p.add_argument("--tol", type=float, default=defaults.tol, help="EM convergence tolerance")
    p.add_argument("--n-init", type=int, default=defaults.n_init, help="EM initialisations")


def _cmd_predict(args: argparse.Namespace) -> int:
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.io.annotations import read_annotations
    from audiomoment.io.atomic import together
    from audiomoment.io.cache import default_cache_dir, usable_cache_dir
    from audiomoment.io.predictions import write_predictions
    from audiomoment.io.run_settings import write_run_settings
    from audiomoment.pipelines.dataset import (
        CheckpointHeads,
        MissingProjection,
        predict_dataset,
        run_settings,
    )

    config = _config_from(args)
    annotations = read_annotations(args.annotations)
    if not Path(args.features).is_dir():
        raise InputError(f"{args.features}: features folder not found")
    cache = usable_cache_dir(None if args.no_cache else (args.cache_dir or default_cache_dir()),
                             lambda message: print(f"note: {message}", file=sys.stderr))
    store = cache is not None and not args.no_store
    heads = None if not args.checkpoint else (
        CheckpointHeads(args.checkpoint, cache) if store
        else load_projection_heads(args.checkpoint))
    neutral, neutral_source = _neutral(args, cache)
    settings = run_settings(args.system, config, neutral_source=neutral_source,
                            checkpoint=args.checkpoint, cache_dir=cache)
    try:
        run = predict_dataset(
            annotations, args.features, system=args.system, heads=heads, neutral=neutral,
            config=config, cache_dir=cache, feature_store=store,
        )
    except MissingProjection as exc:
        raise InputError(f"{exc}: pass --checkpoint CLAP_weights_2023.pth") from None
    with together():  # both files, or neither
        write_predictions(args.out, run.rows)
        settings_file = write_run_settings(args.out, settings)
    print(f"wrote {len(run.rows)} predictions to {args.out} "
          f"(System {args.system}, engine {config.engine}; settings in {settings_file.name})")
    if run.n_fallback:
        print(f"note: {run.n_fallback} queries used the peak-centred fallback "
              f"({run.n_degenerate} of them had a constant trace)", file=sys.stderr)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    if run.n_past_duration:
        print(f"note: {run.n_past_duration} recordings have more windows than their duration; "
              "windows were clipped to the duration", file=sys.stderr)
    if args.timings:
        for stage, seconds in run.timings_s.items():
            print(f"  {stage:<13s}{seconds:8.2f} s")
    return 0


def _neutral(
    args: argparse.Namespace, cache: str | Path | None
) -> tuple[NDArray[np.float64] | None, str | None]:
    """System 1's neutral embedding and its source; the flags to give when it is missing."""
    from audiomoment.pipelines.neutral import neutral_for_run

    try:
        return neutral_for_run(
            args.system, neutral_file=args.neutral_embedding, checkpoint=args.checkpoint,
            tokenizer=args.tokenizer, cache_dir=cache,
        )
    except InputError as exc:
        if args.neutral_embedding:
            raise
        hint = "--neutral-embedding N.npy" if args.checkpoint else (
            "--neutral-embedding N.npy, or --checkpoint with a text encoder")
        raise InputError(f"{exc} (pass {hint})") from None


def _settings_line(settings: RunSettings) -> str:
    """One line naming every setting of a run."""
    system = "window baseline" if settings.system == "window" else f"System {settings.system}"
    config = ", ".join(f"{k} {v}" for k, v in asdict(settings.config).items())
    parts = [system, config]
    if settings.neutral_source:
        parts.append(f"neutral: {settings.neutral_source}")
    parts.append(f"checkpoint sha256 {settings.checkpoint_sha256}"
                 if settings.checkpoint_sha256 else "no checkpoint")
    parts.append(f"audiomoment {settings.package_version or 'version unknown'}")
    return "; ".join(parts)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from audiomoment.io.annotations import by_qid, read_annotations
    from audiomoment.io.atomic import write_text
    from audiomoment.io.predictions import read_predictions
    from audiomoment.io.run_settings import read_run_settings, settings_path
    from audiomoment.reporting.tables import evaluate_with_breakdown
    from audiomoment.reporting.text import format_delta_breakdown, format_table

    annotations = read_annotations(args.annotations, require_windows=True)
    lookup = by_qid(annotations)
    predictions = read_predictions(
        args.predictions, lookup, on_warning=lambda w: print(f"warning: {w}", file=sys.stderr)
    )
    settings = read_run_settings(args.predictions)
    scored = {str(p["qid"]) for p in predictions}
    missing = len(lookup) - len(scored & lookup.keys())
    if missing:
        print(f"warning: {missing} annotated queries have no prediction; the standard "
              "evaluation scores only the queries that have one", file=sys.stderr)
    metrics = evaluate_with_breakdown(annotations, predictions)
    metrics["audiomoment"]["run_settings"] = settings.to_json() if settings else None
    if not metrics["audiomoment"]["windows_scored"]:
        print(f"note: {args.predictions}: the windows are [start, end] without a score; R1 is "
              "computed, mAP is unavailable (n/a)", file=sys.stderr)
    if settings is not None:
        print(f"settings ({settings_path(args.predictions).name}): {_settings_line(settings)}")
    print(format_table({Path(args.predictions).stem: metrics}))
    if "delta_breakdown" in metrics:
        print()
        print(format_delta_breakdown(metrics))
    if args.json:
        write_text(args.json, json.dumps(metrics, indent=4) + "\n")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from audiomoment.testing.simulate import SimulationConfig, simulate, write_dataset

    sim = {"clotho": SimulationConfig.clotho_like,
           "castella-corpus": SimulationConfig.castella_corpus}.get(
        args.preset, SimulationConfig.castella_like)(seed=args.seed)
    paths = write_dataset(simulate(sim), args.out)
    print(f"wrote a SIMULATED {args.preset}-like dataset to {args.out}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from audiomoment.pipelines.demo import run_demo

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="audiomoment-demo-"))
    print(run_demo(out, seed=args.seed, config=_config_from(args), corpus=not args.no_corpus))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiomoment",
        description="Find the moments in long audio that match a text query (training-free).",
    )
    from audiomoment import __version__

    parser.add_argument("--version", action="version", version=f"audiomoment {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "predict", help="run System 1 or 2 over a dataset in the lighthouse layout",
        epilog="example:\n  audiomoment predict --annotations castella_test_release.jsonl "
               "--features FEATURES --checkpoint CLAP_weights_2023.pth --system 1 "
               "--out system1.jsonl", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, help="annotation JSON Lines file")
    p.add_argument("--features", required=True, help="folder holding clap/ and clap_text/")
    p.add_argument("--checkpoint", help="CLAP_weights_2023.pth (needed for 768-d features)")
    p.add_argument("--system", type=_system, choices=[1, 2, "window"], default=1,
                   help="1: GMM + background contrast; 2: GMM on the similarity trace; "
                   "window: sliding-window clip retrieval baseline")
    p.add_argument("--neutral-embedding", help="1024-d neutral embedding (.npy) for System 1 "
                   "(default: computed with the checkpoint's text encoder)")
    p.add_argument("--tokenizer", help="GPT-2 tokenizer folder for that (default: the Hugging "
                   "Face cache, else download)")
    p.add_argument("--out", required=True, help="predictions JSON Lines file to write")
    p.add_argument("--cache-dir", help="projected-feature cache (default ~/.cache/audiomoment)")
    p.add_argument("--no-cache", action="store_true", help="do not cache projected features")
    p.add_argument("--no-store", action="store_true", help="read every feature file instead "
                   "of the feature store in the cache folder (same predictions, slower)")
    p.add_argument("--timings", action="store_true", help="print seconds per stage")
    _add_localize_options(p)
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "evaluate", help="standard moment-retrieval metrics of a predictions file",
        epilog="example:\n  audiomoment evaluate --annotations castella_test_release.jsonl "
               "--predictions system1.jsonl --json metrics.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, help="annotation JSON Lines with windows")
    p.add_argument("--predictions", required=True, help="predictions JSON Lines")
    p.add_argument("--json", help="write all metrics as JSON (standard evaluation layout)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "simulate", help="write a SIMULATED dataset in the lighthouse layout",
        epilog="example:\n  audiomoment simulate --preset castella-corpus --seed 0 --out SIM",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--preset", choices=["castella", "clotho", "castella-corpus"],
                   default="castella", help="castella-corpus: CASTELLA-sized with sound "
                   "concepts shared across recordings (a corpus to search across)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_cmd_simulate)

    p = sub.add_parser(
        "demo", help="simulate a CASTELLA-sized set, run Systems 1 and 2, score",
        epilog="example:\n  audiomoment demo --out demo/ --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for the simulated data and predictions (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-corpus", action="store_true",
                   help="leave out the corpus table (searching a SIMULATED archive; minutes)")
    _add_localize_options(p)
    p.set_defaults(handler=_cmd_demo)

    from audiomoment.cli.report import add_report_commands

    add_report_commands(sub)
    from audiomoment.cli.model import add_model_commands

    add_model_commands(sub)
    from audiomoment.cli.index import add_index_command

    add_index_command(sub)
    from audiomoment.cli.serve import add_serve_command

    add_serve_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except InputError as exc:
        print(f"audiomoment: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"audiomoment: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiomoment: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
