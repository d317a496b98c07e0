"""Command line of the report and the submission package: ``report``, ``package-submission``.

``audiomoment report --annotations A.jsonl --predictions P1.jsonl [P2.jsonl ...] --out DIR``
writes into DIR:

* ``table2.md`` / ``table2.csv``: R1@0.5, R1@0.7, mAP, mAP@0.5, mAP@0.75 per system per dataset;
* ``table3.md`` / ``table3.csv``: count and mean top-1 IoU per signal-quality bin per system;
* ``contrast_effect.md`` / ``contrast_effect.csv``: share of queries whose delta grows with
  background contrast, mean delta without and with it (needs a System 1 and a System 2 file);
* ``figure3.png``: grouped bars per metric and system;
* ``figure2_<dataset>_<qid>.png``: per chosen or sampled query, the trace, windows and posterior
  over the histogram with the two fitted Gaussians. Traces are not in predictions files, so this
  needs ``--features`` (and ``--checkpoint`` for 768-d features, ``--neutral-embedding`` for
  System 1): the chosen queries are localised again through ``predict_dataset``. Without
  features the figure is left out and the report says so;
* ``metrics.json`` (every number), ``figures.json`` (what each figure shows), ``report.md``;
* ``report.html``: one self-contained page with all of it, and with ``--search-results`` a
  player per recording and a play button per retrieved moment.

Several datasets: repeat ``--annotations`` and give one ``--predictions`` group (and one
``--names`` group) per dataset, in the same order. Datasets are labelled SIMULATED when
``--simulated`` is given or a ``simulation.json`` marker lies beside the annotation file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiomoment.errors import InputError

SEARCH_FIELDS = ("audio", "query", "pred_relevant_windows")


@dataclass(frozen=True)
class TraceExample:
    """One Figure 2 panel: a query's localisation and its ground truth.

    dataset : the dataset's label (with SIMULATED where it applies); file_stem : a short name
    for the figure's file; system : 1 or 2; gt_windows : (G, 2) seconds; result : the query's
    :class:`~audiomoment.method.localize.LocalizationResult`.
    """

    dataset: str
    file_stem: str
    qid: str
    query: str
    vid: str
    system: int
    gt_windows: list[list[float]]
    result: Any  # LocalizationResult


# --------------------------------------------------------------------------- reading


def _dataset_name(path: Path) -> str:
    """The file stem, or the folder's name for a generic ``annotations.jsonl``."""
    return path.parent.name if path.stem == "annotations" and path.parent.name else path.stem


def _groups(values: Sequence[Sequence[str]] | None, n: int, what: str) -> list[list[str]] | None:
    if values is None:
        return None
    if len(values) != n:
        raise InputError(f"give one {what} group per --annotations ({n}), got {len(values)}")
    return [list(v) for v in values]


def _per_dataset(values: Sequence[str] | None, n: int, what: str) -> list[str | None]:
    """0 values: None each; 1 value: shared; n values: one each."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise InputError(f"give {what} once, or once per --annotations ({n}), got {len(values)}")
    return list(values)


def read_datasets(
    annotation_paths: Sequence[str],
    prediction_groups: Sequence[Sequence[str]],
    name_groups: Sequence[Sequence[str]] | None = None,
    dataset_names: Sequence[str] | None = None,
    simulated: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Any]:
    """Read and validate every dataset's annotations and predictions files."""
    from audiomoment.evaluation.metrics import read_predictions
    from audiomoment.io.annotations import by_qid, read_annotations
    from audiomoment.reporting.tables import (
        DatasetPredictions,
        SystemPredictions,
        is_simulated_dataset,
    )

    n = len(annotation_paths)
    if n == 1:  # one dataset: repeated --predictions / --names simply add up
        prediction_groups = [[f for group in prediction_groups for f in group]]
        if name_groups is not None:
            name_groups = [[x for group in name_groups for x in group]]
    if len(prediction_groups) != n:
        raise InputError(f"give one --predictions group per --annotations ({n}), "
                         f"got {len(prediction_groups)}")
    names = _groups(name_groups, n, "--names")
    if dataset_names is not None and len(dataset_names) != n:
        raise InputError(f"give one --dataset-names entry per --annotations ({n})")
    datasets = []
    for i, path in enumerate(annotation_paths):
        annotations = read_annotations(path, require_windows=True)
        lookup = by_qid(annotations)
        files = list(prediction_groups[i])
        labels = names[i] if names else [Path(f).stem for f in files]
        if len(labels) != len(files):
            raise InputError(f"--names: {len(labels)} names for {len(files)} predictions files")
        systems = tuple(
            SystemPredictions(label, read_predictions(f, lookup, on_warning=warn), str(f))
            for label, f in zip(labels, files, strict=True)
        )
        datasets.append(DatasetPredictions(
            name=dataset_names[i] if dataset_names else _dataset_name(Path(path)),
            annotations=annotations,
            systems=systems,
            simulated=simulated or is_simulated_dataset(path),
            source=str(path),
        ))
    return datasets


def read_search_results(path: str | Path) -> list[Any]:
    """Search results as :class:`~audiomoment.reporting.html.AudioMoments`, one per audio file.

    JSON Lines rows ``{"audio": path, "query": text, "pred_relevant_windows": [[s, e, score],
    ...]}``; relative audio paths are taken from the results file's folder.
    """
    from audiomoment.io.annotations import iter_jsonl
    from audiomoment.reporting.html import AudioMoments, audio_data_uri

    base = Path(path).parent
    by_audio: dict[Path, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for number, row in iter_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict) or any(k not in row for k in SEARCH_FIELDS):
            raise InputError(f"{where}: a search result needs {', '.join(SEARCH_FIELDS)}")
        try:
            windows = np.asarray(row["pred_relevant_windows"], dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise InputError(f"{where}: pred_relevant_windows must be [[start, end, score], ...]"
                             ) from None
        if not np.all(np.isfinite(windows)) or np.any(windows[:, 0] >= windows[:, 1]):
            raise InputError(f"{where}: every window needs finite start < end")
        audio = Path(row["audio"])
        by_audio[audio if audio.is_absolute() else base / audio].append(
            (str(row["query"]), windows))
    blocks = []
    for audio, queries in by_audio.items():
        uri, duration = audio_data_uri(audio)
        blocks.append(AudioMoments(audio.name, uri, duration, queries))
    return blocks


# --------------------------------------------------------------------------- Figure 2 inputs


def trace_examples(
    dataset: Any,
    features: str,
    qids: Sequence[str],
    *,
    system: int,
    checkpoint: str | None,
    neutral_path: str | None,
) -> list[TraceExample]:
    """Localise the chosen queries of one dataset again, keeping their full results."""
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.io.annotations import qid_key
    from audiomoment.io.features import load_neutral_embedding
    from audiomoment.pipelines.dataset import predict_dataset

    if not Path(features).is_dir():
        raise InputError(f"{features}: features folder not found")
    if system == 1 and neutral_path is None:
        raise InputError("Figure 2 of System 1 needs --neutral-embedding (or --figure-system 2)")
    wanted = set(qids)
    subset = [a for a in dataset.annotations if qid_key(a["qid"]) in wanted]
    if not subset:
        return []
    heads = load_projection_heads(checkpoint) if checkpoint else None
    neutral = load_neutral_embedding(neutral_path) if (system == 1 and neutral_path) else None
    run = predict_dataset(subset, features, system=system, heads=heads, neutral=neutral,
                          cache_dir=None, progress=False, keep_results=True)
    return [
        TraceExample(dataset.label, f"{_safe(dataset.name)}_{_safe(qid_key(a['qid']))}",
                     qid_key(a["qid"]), a["query"], a["vid"], system,
                     [list(map(float, w)) for w in a.get("relevant_windows", [])],
                     run.results[qid_key(a["qid"])])
        for a in subset
    ]


# --------------------------------------------------------------------------- writing


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def write_report(
    datasets: Sequence[Any],
    out_dir: str | Path,
    *,
    examples: Sequence[TraceExample] = (),
    moments: Sequence[Any] = (),
    bin_by: str | None = None,
    contrast_pair: tuple[str, str] | None = None,
    title: str = "Audio moment retrieval report",
    figure2_note: str | None = None,
) -> dict[str, Path]:
    """Write the tables, figures, ``report.md`` and ``report.html`` into ``out_dir``.

    ``examples``: Figure 2 panels; ``moments``: search results to play in the page;
    ``figure2_note``: why Figure 2 is missing, when ``examples`` is empty.
    Returns every written path by key.
    """
    from audiomoment.io.atomic import write_text
    from audiomoment.reporting.figures import metric_bars_figure, save_png, trace_figure
    from audiomoment.reporting.html import Image, Paragraph, Section, Table, render_html, write_html
    from audiomoment.reporting.tables import (
        METRIC_COLUMNS,
        SIMULATED,
        build_tables,
        contrast_markdown,
        main_table_grid,
        main_table_markdown,
        quality_table_grid,
        quality_table_markdown,
        write_tables,
    )

    out = Path(out_dir)
    tables = build_tables(datasets, bin_by=bin_by, contrast_pair=contrast_pair)
    paths = write_tables(tables, out)
    any_simulated = any(d.simulated for d in datasets)
    banner = (f"{SIMULATED} data: the values below come from simulated features, not from the "
              "report's datasets." if any_simulated else None)

    # Figure 3
    values: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in tables.main:
        label = f"{row['dataset']} ({SIMULATED})" if row["simulated"] else row["dataset"]
        values.setdefault(label, {})[row["system"]] = {m: row[m] for m in METRIC_COLUMNS}
    fig3 = metric_bars_figure(values, METRIC_COLUMNS)
    paths["figure3"] = out / "figure3.png"
    fig3_png = save_png(fig3, paths["figure3"])
    figure_log: list[dict[str, Any]] = [{
        "figure": "figure3", "file": paths["figure3"].name, "datasets": list(values),
        "systems": list(dict.fromkeys(s for d in values.values() for s in d)),
        "metrics": list(METRIC_COLUMNS),
        "n_bars": sum(v is not None for d in values.values() for s in d.values()
                      for v in s.values()),
    }]

    # Figure 2
    fig2_images = []
    for k, ex in enumerate(examples):
        gt = np.asarray(ex.gt_windows, dtype=np.float64).reshape(-1, 2)
        caption = (f"Figure 2 ({ex.dataset}, System {ex.system}): qid {ex.qid}, "
                   f"\u201c{ex.query}\u201d in {ex.vid}; delta = {ex.result.delta:.3f}"
                   + (", peak-centred fallback" if ex.result.fallback else ""))
        fig = trace_figure(ex.result, gt, title=f"{ex.query} [{ex.qid}]")
        key = f"figure2_{k}"
        paths[key] = out / f"figure2_{ex.file_stem}.png"
        png = save_png(fig, paths[key])
        fig2_images.append(Image(caption, png, alt=f"trace of query {ex.qid}"))
        figure_log.append({
            "figure": "figure2", "file": paths[key].name, "dataset": ex.dataset, "qid": ex.qid,
            "query": ex.query, "vid": ex.vid, "system": ex.system,
            "n_ground_truth": len(gt),
            "n_predicted": min(3, len(ex.result.windows)),
            "predicted_windows": np.asarray(ex.result.windows)[:3].tolist(),
            "delta": ex.result.delta, "fallback": ex.result.fallback,
            "n_frames": len(ex.result.smoothed),
        })
    if not examples and figure2_note is None:
        figure2_note = ("Figure 2 omitted: traces are not stored in predictions files; pass "
                        "--features (with --checkpoint and --neutral-embedding as needed).")
    paths["figures_json"] = out / "figures.json"
    write_text(paths["figures_json"], json.dumps(
        {"figures": figure_log, "figure2_note": figure2_note}, indent=2) + "\n")

    # report.md
    md = [f"# {title}", ""]
    if banner:
        md += [f"**{banner}**", ""]
    md += [main_table_markdown(tables.main), quality_table_markdown(tables.quality),
           contrast_markdown(tables.contrast), f"![Figure 3]({paths['figure3'].name})", ""]
    md += [f"![Figure 2 {i}]({paths[f'figure2_{i}'].name})" for i in range(len(examples))]
    if figure2_note:
        md.append(figure2_note)
    if tables.notes:
        md += ["", "Notes:", *(f"- {n}" for n in tables.notes)]
    paths["report_md"] = out / "report.md"
    write_text(paths["report_md"], "\n".join(md).rstrip() + "\n")

    # report.html
    header, body = main_table_grid(tables.main)
    sections = [Section("table2", "Table II: moment retrieval", [
        Table("R1@0.5, R1@0.7, mAP, mAP@0.5, mAP@0.75 (percent) per system; datasets: "
              + ", ".join(values), header, body)])]
    quality_blocks: list[Any] = []
    for label in values:
        if any((f"{r['dataset']} ({SIMULATED})" if r["simulated"] else r["dataset"]) == label
               for r in tables.quality):
            h, b = quality_table_grid(tables.quality, label)
            quality_blocks.append(Table(f"Mean top-1 IoU (percent) per delta bin, {label}", h, b))
    if not quality_blocks:
        quality_blocks.append(Paragraph("No system carries a per-query delta.", "note"))
    sections.append(Section("table3", "Table III: signal quality", quality_blocks))
    contrast_blocks: list[Any] = [Paragraph(e.sentence()) for e in tables.contrast]
    if not contrast_blocks:
        contrast_blocks.append(Paragraph("Not computed: needs a System 1 and a System 2 "
                                         "predictions file of the same queries.", "note"))
    sections.append(Section("contrast", "Contrast effect", contrast_blocks))
    sections.append(Section("figure3", "Figure 3: metrics per system", [
        Image("Figure 3: R1 and mAP per system" + (f" ({SIMULATED})" if any_simulated else ""),
              fig3_png)]))
    sections.append(Section("figure2", "Figure 2: traces and fitted mixtures",
                            fig2_images or [Paragraph(figure2_note or "", "note")]))
    if moments:
        sections.append(Section("moments", "Retrieved moments", list(moments)))
    if tables.notes:
        sections.append(Section("notes", "Notes", [Paragraph(n, "note") for n in tables.notes]))
    paths["report_html"] = write_html(out / "report.html",
                                      render_html(title, sections, banner=banner))
    return paths


# --------------------------------------------------------------------------- commands


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    from audiomoment.reporting.tables import sample_qids

    datasets = read_datasets(args.annotations, args.predictions, args.names, args.dataset_names,
                             args.simulated, warn=_warn)
    n = len(datasets)
    features = _per_dataset(args.features, n, "--features")
    checkpoints = _per_dataset(args.checkpoint, n, "--checkpoint")
    neutrals = _per_dataset(args.neutral_embedding, n, "--neutral-embedding")
    system = args.figure_system or (1 if any(neutrals) else 2)
    examples: list[TraceExample] = []
    chosen = args.figure_queries or []
    found: set[str] = set()
    for i, dataset in enumerate(datasets):
        if features[i] is None:
            continue
        keys = {str(a["qid"]) for a in dataset.annotations}
        mine = [q for q in chosen if q in keys]
        found.update(mine)
        if chosen and not mine:
            continue
        qids = sample_qids(dataset.annotations, args.n_figure_queries, args.seed, mine or None)
        examples += trace_examples(dataset, features[i], qids, system=system,
                                   checkpoint=checkpoints[i], neutral_path=neutrals[i])
    if chosen and set(chosen) - found:
        raise InputError("--figure-queries not found in any dataset with --features: "
                         + ", ".join(sorted(set(chosen) - found)[:5]))
    moments = read_search_results(args.search_results) if args.search_results else []
    contrast = tuple(args.contrast) if args.contrast else None
    paths = write_report(datasets, args.out, examples=examples, moments=moments,
                         bin_by=args.bin_by, contrast_pair=contrast, title=args.title)
    print(f"wrote the report to {args.out}: {paths['report_html'].name}, {paths['report_md'].name},"
          f" tables as Markdown and CSV, {1 + len(examples)} figure(s)")
    if not examples:
        print("note: Figure 2 omitted (pass --features to draw traces)", file=sys.stderr)
    return 0


def _read_metrics(path: str | None) -> Mapping[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: metrics file not found")
    try:
        metrics = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise InputError(f"{p}: expected a JSON object of metrics")
    if isinstance(metrics.get("brief"), dict):  # the output of `audiomoment evaluate --json`
        from audiomoment.reporting.tables import metric_values

        return metric_values(metrics)
    return metrics


def _cmd_package(args: argparse.Namespace) -> int:
    from audiomoment.io.annotations import iter_jsonl, read_annotations
    from audiomoment.reporting.submission import Author, package_submission

    annotations = read_annotations(args.annotations)
    predictions, sources, metrics = {}, {}, {}
    for index, path, metrics_path in ((1, args.system1, args.dev_metrics1),
                                      (2, args.system2, args.dev_metrics2)):
        if path is None:
            continue
        predictions[index] = [row for _, row in iter_jsonl(path)]
        sources[index] = str(path)
        if (found := _read_metrics(metrics_path)) is not None:
            metrics[index] = found
    if not predictions:
        raise InputError("package-submission: give --system1 and/or --system2")
    author = Author(lastname=args.lastname, firstname=args.firstname or "", email=args.email or "",
                    institute=args.institute or "", abbreviation=args.institute_abbreviation,
                    department=args.department or "", location=args.location or "")
    packaged = package_submission(
        args.out, annotations, predictions, [author], top_k=args.top_k, dev_metrics=metrics,
        technical_report=args.technical_report, sources=sources,
    )
    print(f"wrote {args.out}")
    for p in packaged:
        print(f"  {p.label}: {p.n_rows} queries, top {args.top_k} window(s) -> {p.output}")
    if args.technical_report is None:
        print("note: no --technical-report given; DCASE expects one in the package",
              file=sys.stderr)
    return 0


def add_report_commands(subparsers: Any) -> None:
    """Register ``report`` and ``package-submission`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="tables, figures and a self-contained HTML page from predictions files")
    p.add_argument("--annotations", action="append", required=True,
                   help="annotation JSON Lines with windows; repeat for several datasets")
    p.add_argument("--predictions", action="append", nargs="+", required=True,
                   help="predictions JSON Lines, one group per --annotations (any system in "
                        "the standard layout)")
    p.add_argument("--names", action="append", nargs="+",
                   help="system names, one group per --predictions group (default: file stems)")
    p.add_argument("--dataset-names", nargs="+", help="one name per --annotations")
    p.add_argument("--simulated", action="store_true",
                   help="label every dataset SIMULATED (automatic with a simulation.json marker)")
    p.add_argument("--bin-by", help="bin every system of Table III by this system's delta")
    p.add_argument("--contrast", nargs=2, metavar=("WITH", "WITHOUT"),
                   help="system names of System 1 and System 2 for the contrast effect "
                        "(default: names containing 'system 1' / 'system 2')")
    p.add_argument("--features", action="append",
                   help="features folder (clap/, clap_text/) to draw Figure 2; once per dataset")
    p.add_argument("--checkpoint", action="append",
                   help="CLAP_weights_2023.pth for 768-d features (once, or once per dataset)")
    p.add_argument("--neutral-embedding", action="append",
                   help="neutral embedding .npy for System 1 traces (once, or once per dataset)")
    p.add_argument("--figure-system", type=int, choices=[1, 2],
                   help="system whose traces Figure 2 shows (default: 1 with a neutral "
                        "embedding, else 2)")
    p.add_argument("--figure-queries", nargs="+", metavar="QID", help="qids to draw")
    p.add_argument("--n-figure-queries", type=int, default=4,
                   help="queries sampled for Figure 2 when none are chosen (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    p.add_argument("--search-results",
                   help="JSON Lines of {audio, query, pred_relevant_windows}: players in the page")
    p.add_argument("--title", default="Audio moment retrieval report")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(handler=_cmd_report)

    p = subparsers.add_parser(
        "package-submission", help="validate and zip the DCASE Task 6 submission (task6_1/2)")
    p.add_argument("--annotations", required=True,
                   help="the evaluation set's annotation file (qids and durations)")
    p.add_argument("--system1", help="System 1 predictions (GMM + contrast), labelled task6_1")
    p.add_argument("--system2", help="System 2 predictions (GMM simple), labelled task6_2")
    p.add_argument("--lastname", required=True, help="corresponding author's last name")
    p.add_argument("--institute-abbreviation", required=True,
                   help="institute abbreviation used in the label")
    p.add_argument("--firstname")
    p.add_argument("--email")
    p.add_argument("--institute")
    p.add_argument("--department")
    p.add_argument("--location")
    p.add_argument("--technical-report", help="the technical report PDF to include")
    p.add_argument("--top-k", type=int, default=1,
                   help="windows kept per query (default 1, as the report submits)")
    p.add_argument("--dev-metrics1", help="metrics JSON (audiomoment evaluate --json) of System "
                                          "1 on the development set, for the meta file")
    p.add_argument("--dev-metrics2", help="the same for System 2")
    p.add_argument("--out", required=True, help="zip file to write")
    p.set_defaults(handler=_cmd_package)

