"""The report: tables, figures, ``report.md`` and one self-contained ``report.html``.

:func:`write_report` writes into one folder:

* ``table2.md`` / ``table2.csv``: R1@0.5, R1@0.7, mAP, mAP@0.5, mAP@0.75 per system per dataset;
* ``table3.md`` / ``table3.csv``: Table III as the report lays it out (queries binned once by
  System 1's delta; every system's mean top-1 IoU on the same queries and System 1's
  advantage), and ``table3_per_system.csv``, the per-system view (see
  :mod:`audiomoment.reporting.tables`);
* ``contrast_effect.md`` / ``contrast_effect.csv``: share of queries whose delta grows with
  background contrast, mean delta without and with it (needs a System 1 and a System 2 file);
* ``figure3.png``: grouped bars per metric and system;
* ``figure2_<dataset>_<qid>.png``: per chosen query, the trace, windows and posterior over
  the histogram with the two fitted Gaussians (:class:`~audiomoment.reporting.inputs.TraceExample`);
* ``metrics.json`` (every number), ``figures.json`` (what each figure shows, Figure 2's
  configuration and where it came from included), ``report.md``;
* ``report.html``: all of it on one page, with players for search results when given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from audiomoment.reporting.inputs import TraceExample
from audiomoment.reporting.tables import DatasetPredictions

#: Figure 2's note when no trace could be drawn and the caller gave no reason.
FIGURE2_OMITTED = ("Figure 2 omitted: traces are not stored in predictions files; pass "
                   "--features (with --checkpoint and --neutral-embedding as needed).")


def _config_words(example: TraceExample) -> str:
    """How a Figure 2 panel was configured, for its caption."""
    c = example.config
    where = (f"settings of {Path(example.settings_from).name}" if example.settings_from
             else "default configuration: no run settings recorded")
    return (f"EM tol {c.tol:g}, {c.n_init} initialisations, seed {c.random_state}, "
            f"sigma {c.sigma_frames:g} frames, threshold {c.threshold:g}, engine {c.engine} "
            f"({where})")


def figure2_record(example: TraceExample, file_name: str) -> dict[str, Any]:
    """The ``figures.json`` entry of one Figure 2 panel: what it shows and how it was made."""
    result = example.result
    settings = example.settings
    return {
        "figure": "figure2", "file": file_name, "dataset": example.dataset, "qid": example.qid,
        "query": example.query, "vid": example.vid, "system": example.system,
        "n_ground_truth": len(example.gt_windows),
        "n_predicted": min(3, len(result.windows)),
        "predicted_windows": np.asarray(result.windows)[:3].tolist(),
        "delta": result.delta, "fallback": result.fallback,
        "n_frames": len(result.smoothed),
        "config": asdict(example.config),
        "config_source": "run settings" if settings is not None else "defaults",
        "settings_file": example.settings_from,
        "neutral_source": settings.neutral_source if settings is not None else None,
        "checkpoint_sha256": settings.checkpoint_sha256 if settings is not None else None,
    }


def write_report(
    datasets: Sequence[DatasetPredictions],
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

    ``examples``: Figure 2 panels; ``moments``: search results to play in the page
    (:class:`~audiomoment.reporting.html.AudioMoments`); ``bin_by``: the system whose deltas
    bin Table III (default: System 1); ``contrast_pair``: (System 1, System 2) names for the
    contrast effect (default: recognised from the names); ``figure2_note``: a remark on
    Figure 2 (why it is missing when ``examples`` is empty). Returns every written path by key.
    """
    from audiomoment.io.atomic import write_text
    from audiomoment.reporting.figures import metric_bars_figure, save_png, trace_figure
    from audiomoment.reporting.html import Image, Paragraph, Section, Table, render_html, write_html
    from audiomoment.reporting.tables import (
        METRIC_COLUMNS,
        SIMULATED,
        build_tables,
        comparison_grid,
        comparison_markdown,
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
                   + (", peak-centred fallback" if ex.result.fallback else "")
                   + f"; {_config_words(ex)}")
        fig = trace_figure(ex.result, gt, title=f"{ex.query} [{ex.qid}]")
        key = f"figure2_{k}"
        paths[key] = out / f"figure2_{ex.file_stem}.png"
        png = save_png(fig, paths[key])
        fig2_images.append(Image(caption, png, alt=f"trace of query {ex.qid}"))
        figure_log.append(figure2_record(ex, paths[key].name))
    if not examples and figure2_note is None:
        figure2_note = FIGURE2_OMITTED
    defaults = list(dict.fromkeys(ex.dataset for ex in examples if ex.settings is None))
    if defaults and figure2_note is None:
        figure2_note = (f"Figure 2 ({', '.join(defaults)}): no run settings were saved beside "
                        "the predictions of the system drawn, so its queries were re-localised "
                        "with the default configuration.")
    paths["figures_json"] = out / "figures.json"
    write_text(paths["figures_json"], json.dumps(
        {"figures": figure_log, "figure2_note": figure2_note}, indent=2) + "\n")

    # report.md
    md = [f"# {title}", ""]
    if banner:
        md += [f"**{banner}**", ""]
    md += [main_table_markdown(tables.main), comparison_markdown(tables.comparison),
           quality_table_markdown(tables.quality), contrast_markdown(tables.contrast),
           f"![Figure 3]({paths['figure3'].name})", ""]
    for i, ex in enumerate(examples):
        md += [f"![Figure 2 {i}]({paths[f'figure2_{i}'].name})",
               f"Figure 2 {i}: System {ex.system}, qid {ex.qid}; {_config_words(ex)}.", ""]
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
        h, b = comparison_grid(tables.comparison, label)
        if b:
            quality_blocks.append(Table(
                f"Mean top-1 IoU (percent) per delta bin of {h[3]}, every system on the same "
                f"queries, with {h[3]}'s advantage; {label}", h, b))
    for label in values:
        if any((f"{r['dataset']} ({SIMULATED})" if r["simulated"] else r["dataset"]) == label
               for r in tables.quality):
            h, b = quality_table_grid(tables.quality, label)
            quality_blocks.append(Table(
                f"Per system: mean top-1 IoU (percent) per delta bin, {label}", h, b))
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
    figure2_blocks: list[Any] = list(fig2_images)
    if figure2_note:
        figure2_blocks.append(Paragraph(figure2_note, "note"))
    sections.append(Section("figure2", "Figure 2: traces and fitted mixtures", figure2_blocks))
    if moments:
        sections.append(Section("moments", "Retrieved moments", list(moments)))
    if tables.notes:
        sections.append(Section("notes", "Notes", [Paragraph(n, "note") for n in tables.notes]))
    paths["report_html"] = write_html(out / "report.html",
                                      render_html(title, sections, banner=banner))
    return paths
