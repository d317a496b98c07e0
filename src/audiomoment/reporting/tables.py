"""The report's tables as data: main results, results per signal-quality bin, contrast effect.

* Table II: R1@0.5, R1@0.7, mAP, mAP@0.5 and mAP@0.75 per system per dataset, from the
  standard evaluation (:func:`audiomoment.evaluation.metrics.evaluate`). Any predictions file in the
  standard layout can be a row: Systems 1 and 2, the sliding-window baseline, or another
  toolkit's output (a DETR model's predictions from lighthouse, for one).
* Table III: count and mean top-1 IoU (percent) per signal-quality bin, Low delta < 0.030,
  Mid 0.030-0.070, High delta > 0.070. By default each system is binned by its own ``delta``
  (systems without one have no row); ``bin_by`` bins every system of a dataset by one
  system's per-query delta instead, so that all rows cover the same queries in each bin.
* Contrast effect: over the queries that a System 1 (with contrast) and a System 2 (without)
  predictions file both carry a delta for, the share whose delta grows with the contrast and
  the mean delta without and with it.

Values computed on SIMULATED data carry that label wherever they are shown.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.evaluation.metrics import (
    DELTA_BINS,
    HEADLINE_KEYS,
    delta_breakdown,
    evaluate,
    score_queries,
)
from audiomoment.io.annotations import qid_key
from audiomoment.io.atomic import write_text

#: Table II's columns, in the report's order.
METRIC_COLUMNS: tuple[str, ...] = ("R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75")
#: The word that marks values computed on simulated data.
SIMULATED = "SIMULATED"
#: File written by ``audiomoment.testing.simulate`` beside a simulated dataset's annotations.
SIMULATION_MARKER = "simulation.json"


@dataclass(frozen=True)
class SystemPredictions:
    """One system's prediction rows on one dataset.

    name : the row label in the tables; rows : prediction rows in the standard layout;
    source : where the rows came from (a file path), for the record.
    """

    name: str
    rows: list[dict]
    source: str = ""


@dataclass(frozen=True)
class DatasetPredictions:
    """A dataset's annotations and every system's predictions on it."""

    name: str
    annotations: list[dict]
    systems: tuple[SystemPredictions, ...]
    simulated: bool = False
    source: str = ""

    @property
    def label(self) -> str:
        """The dataset name, with " (SIMULATED)" appended for simulated data."""
        return f"{self.name} ({SIMULATED})" if self.simulated else self.name


@dataclass(frozen=True)
class ContrastEffect:
    """How background contrast changes the fitted mixture's separation delta.

    n_queries : queries with a finite delta in both files; n_grows : those whose delta is
    larger with contrast; share_grows : n_grows / n_queries; mean_delta_without /
    mean_delta_with : mean delta of System 2 / System 1 over those queries.
    """

    dataset: str
    with_contrast: str
    without_contrast: str
    n_queries: int
    n_grows: int
    share_grows: float
    mean_delta_without: float
    mean_delta_with: float
    simulated: bool = False

    def sentence(self) -> str:
        """One line for a reader, e.g. "delta grows with contrast for 66.0% of ..."."""
        tag = f" [{SIMULATED}]" if self.simulated else ""
        return (
            f"{self.dataset}{tag}: delta grows with contrast for {100 * self.share_grows:.1f}% "
            f"of {self.n_queries} queries ({self.n_grows}); mean delta "
            f"{self.mean_delta_without:.3f} without -> {self.mean_delta_with:.3f} with "
            f"({self.without_contrast} -> {self.with_contrast})"
        )


@dataclass
class ReportTables:
    """Everything the tables show, as data.

    main : Table II rows (one per dataset and system): dataset, system, simulated,
        n_queries and the five metric columns (percent, None when not computable).
    quality : Table III rows (one per dataset, system and bin): dataset, system, binned_by,
        bin, range, n, mean_iou (percent, None for an empty bin).
    contrast : one :class:`ContrastEffect` per dataset where a pair was found.
    metrics : dataset label -> system name -> the full :func:`evaluate` output.
    notes : remarks for the reader (systems left out of a table and why).
    """

    main: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    contrast: list[ContrastEffect]
    metrics: dict[str, dict[str, dict]]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def is_simulated_dataset(annotations_path: str | os.PathLike[str]) -> bool:
    """True when the annotation file's folder holds a simulator marker saying so."""
    marker = Path(annotations_path).parent / SIMULATION_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("simulated", False))
    except (OSError, ValueError, AttributeError):
        return False


def system_key(name: str) -> str:
    """A name reduced to lower-case letters and digits ("System 1" -> "system1")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_contrast_pair(names: Sequence[str]) -> tuple[str, str] | None:
    """(System 1 name, System 2 name) recognised among ``names``, or None.

    A name is System 1 when its :func:`system_key` contains "system1" (or "task61"), System
    2 likewise with "system2" ("task62"); each must be recognised exactly once.
    """

    def only(tags: tuple[str, ...]) -> str | None:
        found = [n for n in names if any(t in system_key(n) for t in tags)]
        return found[0] if len(found) == 1 else None

    with_name, without_name = only(("system1", "task61")), only(("system2", "task62"))
    if with_name is None or without_name is None or with_name == without_name:
        return None
    return with_name, without_name


# --------------------------------------------------------------------------- Table II


def metric_values(metrics: Mapping) -> dict[str, float | None]:
    """The five Table II values of one :func:`evaluate` output, in column order."""
    brief = metrics.get("brief", {})
    return {column: brief.get(HEADLINE_KEYS[column]) for column in METRIC_COLUMNS}


def main_table(
    datasets: Sequence[DatasetPredictions],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, dict]]]:
    """Table II rows and the full metrics behind them (dataset label -> system -> metrics)."""
    rows: list[dict[str, Any]] = []
    metrics: dict[str, dict[str, dict]] = {}
    for dataset in datasets:
        per_system = metrics.setdefault(dataset.label, {})
        for system in dataset.systems:
            try:
                result = evaluate(dataset.annotations, system.rows)
            except InputError as exc:
                raise InputError(f"{dataset.name} / {system.name}: {exc}") from None
            per_system[system.name] = result
            rows.append({
                "dataset": dataset.name,
                "system": system.name,
                "simulated": dataset.simulated,
                "n_queries": result["audiomoment"]["n_queries"],
                **metric_values(result),
            })
    return rows, metrics


# --------------------------------------------------------------------------- Table III


def _deltas_by_qid(rows: Sequence[Mapping]) -> dict[str, float]:
    """Finite numeric deltas of prediction rows, keyed by :func:`qid_key`."""
    found = {}
    for row in rows:
        d = row.get("delta")
        if not isinstance(d, bool) and isinstance(d, int | float) and math.isfinite(d):
            found[qid_key(row["qid"])] = float(d)
    return found


def binned_iou(
    annotations: Sequence[Mapping],
    rows: Sequence[Mapping],
    deltas: Mapping[str, float],
) -> tuple[dict[str, dict[str, Any]], int]:
    """Count and mean top-1 IoU per delta bin of one system, binned by ``deltas``.

    ``deltas`` maps qid keys to the delta used for binning; scored queries without one are
    left out and counted. Returns ({bin: {"n", "mean_iou"}}, number left out).
    """
    scores = score_queries(annotations, rows)
    keys = [qid_key(q) for q in scores.qids]
    has = np.array([k in deltas for k in keys], dtype=bool)
    values: NDArray[np.float64] = np.array([deltas[k] for k in keys if k in deltas], dtype=float)
    breakdown = delta_breakdown(values, scores.top_iou[has])
    return breakdown, int((~has).sum())


def quality_table(
    datasets: Sequence[DatasetPredictions], bin_by: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Table III rows and notes.

    ``bin_by``: a system name; every system of a dataset that has that system is binned by its
    per-query delta. Otherwise (or where the dataset lacks it) each system is binned by its own
    delta, and systems whose rows carry no delta are left out with a note.
    """
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for dataset in datasets:
        reference = next((s for s in dataset.systems if s.name == bin_by), None)
        if bin_by is not None and reference is None:
            notes.append(f"{dataset.label}: no system named {bin_by!r} to bin by; each system "
                         "is binned by its own delta")
        ref_deltas = _deltas_by_qid(reference.rows) if reference is not None else None
        if reference is not None and not ref_deltas:
            raise InputError(f"{dataset.name} / {bin_by}: its predictions carry no 'delta' to "
                             "bin by")
        for system in dataset.systems:
            deltas = ref_deltas if ref_deltas is not None else _deltas_by_qid(system.rows)
            if not deltas:
                notes.append(f"{dataset.label}: {system.name} has no per-query delta (no "
                             "mixture fitted), so it has no Table III row")
                continue
            breakdown, left_out = binned_iou(dataset.annotations, system.rows, deltas)
            if left_out:
                notes.append(f"{dataset.label}: {left_out} scored queries of {system.name} "
                             "have no delta and are not binned")
            for name, label in DELTA_BINS.items():
                rows.append({
                    "dataset": dataset.name,
                    "system": system.name,
                    "simulated": dataset.simulated,
                    "binned_by": reference.name if reference is not None else system.name,
                    "bin": name,
                    "range": label,
                    "n": breakdown[name]["n"],
                    "mean_iou": breakdown[name]["mean_iou"],
                })
    return rows, notes


# --------------------------------------------------------------------------- contrast effect


def contrast_effect(
    with_rows: Sequence[Mapping],
    without_rows: Sequence[Mapping],
    *,
    dataset: str = "",
    with_name: str = "System 1",
    without_name: str = "System 2",
    simulated: bool = False,
) -> ContrastEffect:
    """Per-query delta with contrast (System 1) against without (System 2).

    Queries are matched by qid; only those with a finite delta on both sides count. Raises
    :class:`InputError` when no query is shared.
    """
    with_d, without_d = _deltas_by_qid(with_rows), _deltas_by_qid(without_rows)
    shared = [k for k in with_d if k in without_d]
    if not shared:
        raise InputError(f"{dataset or 'contrast effect'}: {with_name} and {without_name} share "
                         "no query with a numeric delta")
    a = np.array([with_d[k] for k in shared])
    b = np.array([without_d[k] for k in shared])
    grows = int((a > b).sum())
    return ContrastEffect(
        dataset=dataset, with_contrast=with_name, without_contrast=without_name,
        n_queries=len(shared), n_grows=grows, share_grows=grows / len(shared),
        mean_delta_without=float(b.mean()), mean_delta_with=float(a.mean()), simulated=simulated,
    )


def contrast_effects(
    datasets: Sequence[DatasetPredictions], pair: tuple[str, str] | None = None
) -> tuple[list[ContrastEffect], list[str]]:
    """The contrast effect of each dataset where a (with, without) system pair is found.

    ``pair``: the two system names; None: recognised with :func:`find_contrast_pair`.
    """
    effects, notes = [], []
    for dataset in datasets:
        by_name = {s.name: s for s in dataset.systems}
        chosen = pair or find_contrast_pair(list(by_name))
        if chosen is None or chosen[0] not in by_name or chosen[1] not in by_name:
            notes.append(f"{dataset.label}: contrast effect not computed (needs a System 1 and a "
                         "System 2 predictions file; name them, or pass --contrast WITH WITHOUT)")
            continue
        effects.append(contrast_effect(
            by_name[chosen[0]].rows, by_name[chosen[1]].rows, dataset=dataset.name,
            with_name=chosen[0], without_name=chosen[1], simulated=dataset.simulated,
        ))
    return effects, notes


def build_tables(
    datasets: Sequence[DatasetPredictions],
    *,
    bin_by: str | None = None,
    contrast_pair: tuple[str, str] | None = None,
) -> ReportTables:
    """Tables II and III, the contrast effect and the notes, for every dataset."""
    if not datasets:
        raise InputError("report: no dataset given")
    for dataset in datasets:
        names = [s.name for s in dataset.systems]
        if not names:
            raise InputError(f"{dataset.name}: no predictions given")
        if len(set(names)) != len(names):
            raise InputError(f"{dataset.name}: system names must be distinct, got {names}")
    main, metrics = main_table(datasets)
    quality, notes = quality_table(datasets, bin_by)
    contrast, contrast_notes = contrast_effects(datasets, contrast_pair)
    return ReportTables(main, quality, contrast, metrics, notes + contrast_notes)


# --------------------------------------------------------------------------- rendering


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]], right_from: int = 1) -> str:
    align = [":--" if i < right_from else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _dataset_labels(rows: Sequence[Mapping]) -> list[str]:
    labels: list[str] = []
    for row in rows:
        label = f"{row['dataset']} ({SIMULATED})" if row["simulated"] else row["dataset"]
        if label not in labels:
            labels.append(label)
    return labels


def _label(row: Mapping) -> str:
    return f"{row['dataset']} ({SIMULATED})" if row["simulated"] else row["dataset"]


def main_table_grid(rows: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    """Table II in the report's layout: one line per system, five columns per dataset."""
    datasets = _dataset_labels(rows)
    systems = list(dict.fromkeys(row["system"] for row in rows))
    one = len(datasets) == 1
    header = ["System"] + [
        column if one else f"{dataset} {column}"
        for dataset in datasets
        for column in METRIC_COLUMNS
    ]
    lookup = {(_label(r), r["system"]): r for r in rows}
    body = []
    for system in systems:
        cells = [system]
        for dataset in datasets:
            row = lookup.get((dataset, system), {})
            cells += [_cell(row.get(column)) for column in METRIC_COLUMNS]
        body.append(cells)
    return header, body


def main_table_markdown(rows: Sequence[Mapping]) -> str:
    """Table II as Markdown, with its caption (and the SIMULATED label where it applies)."""
    datasets = _dataset_labels(rows)
    header, body = main_table_grid(rows)
    caption = ("Table II. Moment retrieval on " + ", ".join(datasets) +
               " (percent; R1 = recall of the top window at IoU 0.5 / 0.7, mAP over IoU "
               "0.5:0.05:0.95).")
    return f"{caption}\n\n{_markdown(header, body)}\n"


def quality_table_grid(rows: Sequence[Mapping], dataset: str) -> tuple[list[str], list[list[str]]]:
    """Table III of one dataset label: one line per bin, (n, mean IoU) per system."""
    mine = [r for r in rows if _label(r) == dataset]
    systems = list(dict.fromkeys(r["system"] for r in mine))
    header = ["Bin", "delta"]
    for system in systems:
        header += [f"{system} n", f"{system} mean IoU"]
    lookup = {(r["system"], r["bin"]): r for r in mine}
    body = []
    for name, label in DELTA_BINS.items():
        cells = [name, label]
        for system in systems:
            row = lookup[(system, name)]
            cells += [_cell(row["n"]), _cell(row["mean_iou"])]
        body.append(cells)
    return header, body


def quality_table_markdown(rows: Sequence[Mapping]) -> str:
    """Table III as Markdown, one table per dataset."""
    if not rows:
        return "Table III. No system carries a per-query delta: nothing to bin.\n"
    parts = []
    for dataset in _dataset_labels(rows):
        binned = {r["binned_by"] for r in rows if _label(r) == dataset}
        by = ("each system's own delta" if all(
            r["binned_by"] == r["system"] for r in rows if _label(r) == dataset)
            else f"the delta of {', '.join(sorted(binned))}")
        header, body = quality_table_grid(rows, dataset)
        parts.append(
            f"Table III. Mean top-1 IoU (percent) per signal-quality bin on {dataset}, binned "
            f"by {by}.\n\n{_markdown(header, body, right_from=2)}\n"
        )
    return "\n".join(parts)


def contrast_markdown(effects: Sequence[ContrastEffect]) -> str:
    """The contrast effect as Markdown (a table and one sentence per dataset)."""
    if not effects:
        return "Contrast effect: not computed (no System 1 / System 2 pair).\n"
    header = ["Dataset", "with contrast", "without", "n", "delta grows", "mean delta without",
              "mean delta with"]
    body = [
        [f"{e.dataset} ({SIMULATED})" if e.simulated else e.dataset, e.with_contrast,
         e.without_contrast, str(e.n_queries), f"{100 * e.share_grows:.1f}%",
         f"{e.mean_delta_without:.3f}", f"{e.mean_delta_with:.3f}"]
        for e in effects
    ]
    sentences = "\n".join(f"- {e.sentence()}" for e in effects)
    return ("Contrast effect: the mixture's separation delta with background contrast "
            f"(System 1) and without it (System 2), same queries.\n\n"
            f"{_markdown(header, body, right_from=3)}\n\n{sentences}\n")


def csv_text(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """Rows as CSV text with a header line; None is written as an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()


MAIN_CSV_COLUMNS = ("dataset", "system", "simulated", "n_queries", *METRIC_COLUMNS)
QUALITY_CSV_COLUMNS = ("dataset", "system", "simulated", "binned_by", "bin", "range", "n",
                       "mean_iou")
CONTRAST_CSV_COLUMNS = ("dataset", "with_contrast", "without_contrast", "simulated", "n_queries",
                        "n_grows", "share_grows", "mean_delta_without", "mean_delta_with")


def write_tables(tables: ReportTables, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write Tables II and III and the contrast effect as Markdown and CSV, atomically.

    Returns the paths under the keys table2_md, table2_csv, table3_md, table3_csv,
    contrast_md, contrast_csv, metrics_json.
    """
    out = Path(out_dir)
    paths = {
        "table2_md": out / "table2.md",
        "table2_csv": out / "table2.csv",
        "table3_md": out / "table3.md",
        "table3_csv": out / "table3.csv",
        "contrast_md": out / "contrast_effect.md",
        "contrast_csv": out / "contrast_effect.csv",
        "metrics_json": out / "metrics.json",
    }
    write_text(paths["table2_md"], main_table_markdown(tables.main))
    write_text(paths["table2_csv"], csv_text(tables.main, MAIN_CSV_COLUMNS))
    write_text(paths["table3_md"], quality_table_markdown(tables.quality))
    write_text(paths["table3_csv"], csv_text(tables.quality, QUALITY_CSV_COLUMNS))
    write_text(paths["contrast_md"], contrast_markdown(tables.contrast))
    write_text(paths["contrast_csv"],
               csv_text([asdict(e) for e in tables.contrast], CONTRAST_CSV_COLUMNS))
    summary = {
        "table2": tables.main,
        "table3": tables.quality,
        "contrast_effect": [asdict(e) for e in tables.contrast],
        "notes": tables.notes,
        "metrics": tables.metrics,
    }
    write_text(paths["metrics_json"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return paths


# --------------------------------------------------------------------------- queries to draw


def sample_qids(
    annotations: Sequence[Mapping], n: int, seed: int = 0, chosen: Sequence[str] | None = None
) -> list[str]:
    """Qid keys of the queries to draw.

    ``chosen``: these (each must be annotated); otherwise ``n`` drawn without replacement
    (seeded) among the queries with at least one ground-truth window, in annotation order.
    """
    keys = [qid_key(r["qid"]) for r in annotations]
    if chosen:
        missing = [q for q in chosen if q not in set(keys)]
        if missing:
            raise InputError(f"figure queries not in the annotations: {', '.join(missing[:5])}")
        return list(dict.fromkeys(chosen))
    pool = [i for i, r in enumerate(annotations) if r.get("relevant_windows")] or list(
        range(len(annotations)))
    if n <= 0 or not pool:
        return []
    picked = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [keys[pool[i]] for i in sorted(picked)]
