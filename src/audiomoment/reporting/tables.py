"""The report's tables as data: main results, results per signal-quality bin, contrast effect.

* Table II: R1@0.5, R1@0.7, mAP, mAP@0.5 and mAP@0.75 per system per dataset, from the
  standard evaluation (:func:`audiomoment.evaluation.metrics.evaluate`). Any predictions file in the
  standard layout can be a row: Systems 1 and 2, the sliding-window baseline, or another
  toolkit's output (a DETR model's predictions from lighthouse, for one).
* Table III, as the report lays it out: the queries are binned once, by System 1's
  per-query ``delta`` (Low delta < 0.030, Mid 0.030-0.070, High delta > 0.070); each bin
  gives its count, every system's mean top-1 IoU (percent) on those same queries, and System
  1's advantage over each other system (System 1 minus that system, in points). Any
  predictions file can be a comparator, with or without a delta of its own. System 1 is the
  system named with ``bin_by``, else the one recognised as System 1 (its run settings say
  so, or its name does: "System 1", "system1", "task6_1"), else the first with deltas.
* Table III per system (the second view): each system binned by its own ``delta`` (systems
  without one have no row), or, with ``bin_by``, every system by that system's delta.
* Contrast effect: over the queries that a System 1 (with contrast) and a System 2 (without)
  predictions file both carry a delta for, the share whose delta grows with the contrast and
  the mean delta without and with it.

The delta bins are the project's own signal-quality analysis, not part of the standard
evaluation: :func:`evaluate_with_breakdown` adds them to an evaluation's output.

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
from audiomoment.evaluation.metrics import HEADLINE_KEYS, evaluate, score_queries
from audiomoment.io.annotations import qid_key
from audiomoment.io.atomic import write_text
from audiomoment.io.run_settings import RunSettings

#: Table II's columns, in the report's order.
METRIC_COLUMNS: tuple[str, ...] = ("R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75")
#: The word that marks values computed on simulated data.
SIMULATED = "SIMULATED"
#: File written by ``audiomoment.testing.simulate`` beside a simulated dataset's annotations.
SIMULATION_MARKER = "simulation.json"
#: Signal-quality bins of the fitted mixture's separation delta: Low < DELTA_LOW <= Mid <=
#: DELTA_HIGH < High.
DELTA_LOW = 0.030
DELTA_HIGH = 0.070
DELTA_BINS: dict[str, str] = {
    "Low": f"delta < {DELTA_LOW:.3f}",
    "Mid": f"{DELTA_LOW:.3f} <= delta <= {DELTA_HIGH:.3f}",
    "High": f"delta > {DELTA_HIGH:.3f}",
}


@dataclass(frozen=True)
class SystemPredictions:
    """One system's prediction rows on one dataset.

    name : the row label in the tables; rows : prediction rows in the standard layout;
    source : where the rows came from (a file path), for the record; settings : the run
    settings saved beside that file (None for other tools' predictions).
    """

    name: str
    rows: list[dict]
    source: str = ""
    settings: RunSettings | None = None


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
    comparison : Table III rows as the report lays it out (one per dataset, bin and system):
        dataset, simulated, binned_by (System 1's name), bin, range, n (queries in the bin,
        the same for every system), system, mean_iou (percent, None for an empty bin) and
        advantage (System 1's mean IoU minus this system's, in points; None for System 1
        itself and for an empty bin).
    quality : Table III per system (one row per dataset, system and bin): dataset, system,
        binned_by, bin, range, n, mean_iou (percent, None for an empty bin).
    contrast : one :class:`ContrastEffect` per dataset where a pair was found.
    metrics : dataset label -> system name -> the full :func:`evaluate_with_breakdown` output.
    notes : remarks for the reader (systems left out of a table and why).
    """

    main: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    contrast: list[ContrastEffect]
    metrics: dict[str, dict[str, dict]]
    notes: list[str] = field(default_factory=list)
    comparison: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def is_simulated_dataset(annotations_path: str | os.PathLike[str]) -> bool:
    """True when the annotation file's folder holds a simulator marker saying so."""
    marker = Path(annotations_path).parent / SIMULATION_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("simulated", False))
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def system_key(name: str) -> str:
    """A name reduced to lower-case letters and digits ("System 1" -> "system1")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _recognised(names: Sequence[str], tags: tuple[str, ...]) -> str | None:
    """The one name whose :func:`system_key` contains one of ``tags``, else None."""
    found = [n for n in names if any(t in system_key(n) for t in tags)]
    return found[0] if len(found) == 1 else None


SYSTEM1_TAGS = ("system1", "task61")
SYSTEM2_TAGS = ("system2", "task62")


def find_contrast_pair(names: Sequence[str]) -> tuple[str, str] | None:
    """(System 1 name, System 2 name) recognised among ``names``, or None.

    A name is System 1 when its :func:`system_key` contains "system1" (or "task61"), System
    2 likewise with "system2" ("task62"); each must be recognised exactly once.
    """
    with_name, without_name = _recognised(names, SYSTEM1_TAGS), _recognised(names, SYSTEM2_TAGS)
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
                result = evaluate_with_breakdown(dataset.annotations, system.rows)
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


def _percent(value: float) -> float:
    """A fraction as a percentage rounded to 2 decimals, as the evaluation prints them."""
    return float(f"{100 * value:.2f}")


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def delta_masks(deltas: NDArray[np.float64]) -> dict[str, NDArray[np.bool_]]:
    """Membership of each delta in the Low, Mid and High bins. ``deltas``: (Q,) -> (Q,) each."""
    return {
        "Low": deltas < DELTA_LOW,
        "Mid": (deltas >= DELTA_LOW) & (deltas <= DELTA_HIGH),
        "High": deltas > DELTA_HIGH,
    }


def delta_breakdown(
    deltas: NDArray[np.float64], top_iou: NDArray[np.float64]
) -> dict[str, dict[str, float | int | None]]:
    """Count and mean top-1 IoU (percent, 2 decimals; None if empty) per signal-quality bin.

    ``deltas``, ``top_iou``: (Q,). Bins: Low delta < 0.030, Mid 0.030 <= delta <= 0.070,
    High delta > 0.070.
    """
    return {
        name: {
            "n": int(member.sum()),
            "mean_iou": _percent(np.mean(top_iou[member])) if member.any() else None,
        }
        for name, member in delta_masks(deltas).items()
    }


def evaluate_with_breakdown(
    ground_truth: Sequence[Mapping],
    predictions: Sequence[Mapping],
    *,
    length_blocks: bool = False,
) -> dict:
    """:func:`~audiomoment.evaluation.metrics.evaluate`, plus the ``"delta_breakdown"`` block.

    The block (see :func:`delta_breakdown`) is added when every scored prediction row of the
    ``"full"`` block carries a finite numeric ``delta``; it goes last, after ``"audiomoment"``.
    """
    metrics = evaluate(ground_truth, predictions, length_blocks=length_blocks)
    scores = score_queries(ground_truth, predictions)
    deltas = [predictions[i].get("delta") for i in scores.index]
    if all(_finite_number(d) for d in deltas):
        metrics["delta_breakdown"] = delta_breakdown(
            np.array(deltas, dtype=np.float64), scores.top_iou
        )
    return metrics


def _deltas_by_qid(rows: Sequence[Mapping]) -> dict[str, float]:
    """Finite numeric deltas of prediction rows, keyed by :func:`qid_key`."""
    return {qid_key(row["qid"]): float(row["delta"]) for row in rows
            if _finite_number(row.get("delta"))}


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


def system_one(dataset: DatasetPredictions, bin_by: str | None = None) -> SystemPredictions | None:
    """The system whose deltas bin Table III: System 1 of the dataset.

    ``bin_by`` names it; otherwise the one system whose run settings say System 1, else the
    one name recognised as System 1 (:data:`SYSTEM1_TAGS`), else the first system whose rows
    carry deltas. None when no system carries a delta (or ``bin_by`` is not a system here).
    """
    if bin_by is not None:
        return next((s for s in dataset.systems if s.name == bin_by), None)
    with_deltas = [s for s in dataset.systems if _deltas_by_qid(s.rows)]
    by_settings = [s for s in with_deltas if s.settings is not None and s.settings.system == 1]
    if len(by_settings) == 1:
        return by_settings[0]
    named = _recognised([s.name for s in with_deltas], SYSTEM1_TAGS)
    if named is not None:
        return next(s for s in with_deltas if s.name == named)
    return with_deltas[0] if with_deltas else None


def comparison_table(
    datasets: Sequence[DatasetPredictions], bin_by: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Table III as the report lays it out, and notes.

    Per dataset, the queries that System 1 (:func:`system_one`) carries a finite delta for
    and that every system scores are binned once by that delta; each system's mean top-1 IoU
    over a bin's queries is given with System 1's advantage over it (the difference of the
    unrounded means, in points, rounded to 2 decimals).
    """
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for dataset in datasets:
        reference = system_one(dataset, bin_by)
        if reference is None:
            notes.append(f"{dataset.label}: " + (
                f"no system named {bin_by!r} to bin by" if bin_by is not None and not any(
                    s.name == bin_by for s in dataset.systems)
                else "no system carries a per-query delta") + ", so Table III is not computed")
            continue
        deltas = _deltas_by_qid(reference.rows)
        if not deltas:
            raise InputError(f"{dataset.name} / {reference.name}: its predictions carry no "
                             "'delta' to bin by")
        ious: dict[str, dict[str, float]] = {}
        for system in dataset.systems:
            scores = score_queries(dataset.annotations, system.rows)
            ious[system.name] = {qid_key(q): float(v)
                                 for q, v in zip(scores.qids, scores.top_iou, strict=True)}
        keys = [qid_key(a["qid"]) for a in dataset.annotations]
        scored_by_all = [k for k in keys if all(k in ious[s.name] for s in dataset.systems)]
        common = [k for k in scored_by_all if k in deltas]
        if len(common) < len(ious[reference.name]):
            notes.append(f"{dataset.label}: Table III covers {len(common)} of the "
                         f"{len(ious[reference.name])} queries scored for {reference.name} "
                         "(the others have no delta or are not scored for every system)")
        masks = delta_masks(np.array([deltas[k] for k in common], dtype=np.float64))
        per_system = {name: np.array([v[k] for k in common], dtype=np.float64)
                      for name, v in ious.items()}
        for bin_name, label in DELTA_BINS.items():
            member = masks[bin_name]
            n = int(member.sum())
            ref_mean = float(np.mean(per_system[reference.name][member])) if n else None
            ordered = [reference, *(s for s in dataset.systems if s is not reference)]
            for system in ordered:
                mean = float(np.mean(per_system[system.name][member])) if n else None
                advantage = (None if system is reference or mean is None or ref_mean is None
                             else _percent(ref_mean - mean))
                rows.append({
                    "dataset": dataset.name,
                    "simulated": dataset.simulated,
                    "binned_by": reference.name,
                    "bin": bin_name,
                    "range": label,
                    "n": n,
                    "system": system.name,
                    "mean_iou": None if mean is None else _percent(mean),
                    "advantage": advantage,
                })
    return rows, notes


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
    """Tables II and III (both views), the contrast effect and the notes, for every dataset.

    ``bin_by``: the system whose deltas bin Table III (default: System 1, see
    :func:`system_one`); in the per-system view, every system is then binned by it too.
    """
    if not datasets:
        raise InputError("report: no dataset given")
    for dataset in datasets:
        names = [s.name for s in dataset.systems]
        if not names:
            raise InputError(f"{dataset.name}: no predictions given")
        if len(set(names)) != len(names):
            raise InputError(f"{dataset.name}: system names must be distinct, got {names}")
    main, metrics = main_table(datasets)
    comparison, comparison_notes = comparison_table(datasets, bin_by)
    quality, notes = quality_table(datasets, bin_by)
    contrast, contrast_notes = contrast_effects(datasets, contrast_pair)
    return ReportTables(main, quality, contrast, metrics,
                        comparison_notes + notes + contrast_notes, comparison)


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


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def comparison_grid(rows: Sequence[Mapping], dataset: str) -> tuple[list[str], list[list[str]]]:
    """Table III of one dataset label as the report lays it out.

    One line per bin: bin, delta range, n, System 1's mean IoU, then for each other system
    its mean IoU and System 1's advantage over it ("System 1 - other", signed points).
    """
    mine = [r for r in rows if _label(r) == dataset]
    if not mine:
        return ["Bin", "delta", "n"], []
    reference = mine[0]["binned_by"]
    others = [s for s in dict.fromkeys(r["system"] for r in mine) if s != reference]
    header = ["Bin", "delta", "n", reference]
    for other in others:
        header += [other, f"{reference} − {other}"]
    lookup = {(r["system"], r["bin"]): r for r in mine}
    body = []
    for name, label in DELTA_BINS.items():
        ref = lookup[(reference, name)]
        cells = [name, label, _cell(ref["n"]), _cell(ref["mean_iou"])]
        for other in others:
            row = lookup[(other, name)]
            cells += [_cell(row["mean_iou"]), _signed(row["advantage"])]
        body.append(cells)
    return header, body


def comparison_markdown(rows: Sequence[Mapping]) -> str:
    """Table III as the report lays it out, as Markdown, one table per dataset."""
    if not rows:
        return "Table III. No system carries a per-query delta: nothing to bin.\n"
    parts = []
    for dataset in _dataset_labels(rows):
        header, body = comparison_grid(rows, dataset)
        reference = header[3]
        parts.append(
            f"Table III. Mean top-1 IoU (percent) per signal-quality bin on {dataset}: the "
            f"queries binned once by the delta of {reference}, every system scored on the "
            f"same queries; \"{reference} − X\" is {reference}'s advantage in points."
            f"\n\n{_markdown(header, body, right_from=2)}\n"
        )
    return "\n".join(parts)


def quality_table_grid(rows: Sequence[Mapping], dataset: str) -> tuple[list[str], list[list[str]]]:
    """Table III per system, of one dataset label: one line per bin, (n, mean IoU) per system."""
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
    """Table III per system as Markdown, one table per dataset."""
    if not rows:
        return "Table III per system. No system carries a per-query delta: nothing to bin.\n"
    parts = []
    for dataset in _dataset_labels(rows):
        binned = {r["binned_by"] for r in rows if _label(r) == dataset}
        by = ("each system's own delta" if all(
            r["binned_by"] == r["system"] for r in rows if _label(r) == dataset)
            else f"the delta of {', '.join(sorted(binned))}")
        header, body = quality_table_grid(rows, dataset)
        parts.append(
            f"Table III per system. Mean top-1 IoU (percent) per signal-quality bin on "
            f"{dataset}, binned by {by}.\n\n{_markdown(header, body, right_from=2)}\n"
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
COMPARISON_CSV_COLUMNS = ("dataset", "simulated", "binned_by", "bin", "range", "n", "system",
                          "mean_iou", "advantage")
CONTRAST_CSV_COLUMNS = ("dataset", "with_contrast", "without_contrast", "simulated", "n_queries",
                        "n_grows", "share_grows", "mean_delta_without", "mean_delta_with")


def write_tables(tables: ReportTables, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write Tables II and III and the contrast effect as Markdown and CSV, atomically.

    ``table3.md`` holds both views of Table III (as the report lays it out, then per
    system); ``table3.csv`` the first, ``table3_per_system.csv`` the second. Returns the
    paths under the keys table2_md, table2_csv, table3_md, table3_csv, table3_per_system_csv,
    contrast_md, contrast_csv, metrics_json.
    """
    out = Path(out_dir)
    paths = {
        "table2_md": out / "table2.md",
        "table2_csv": out / "table2.csv",
        "table3_md": out / "table3.md",
        "table3_csv": out / "table3.csv",
        "table3_per_system_csv": out / "table3_per_system.csv",
        "contrast_md": out / "contrast_effect.md",
        "contrast_csv": out / "contrast_effect.csv",
        "metrics_json": out / "metrics.json",
    }
    write_text(paths["table2_md"], main_table_markdown(tables.main))
    write_text(paths["table2_csv"], csv_text(tables.main, MAIN_CSV_COLUMNS))
    write_text(paths["table3_md"], comparison_markdown(tables.comparison) + "\n"
               + quality_table_markdown(tables.quality))
    write_text(paths["table3_csv"], csv_text(tables.comparison, COMPARISON_CSV_COLUMNS))
    write_text(paths["table3_per_system_csv"], csv_text(tables.quality, QUALITY_CSV_COLUMNS))
    write_text(paths["contrast_md"], contrast_markdown(tables.contrast))
    write_text(paths["contrast_csv"],
               csv_text([asdict(e) for e in tables.contrast], CONTRAST_CSV_COLUMNS))
    summary = {
        "table2": tables.main,
        "table3": tables.comparison,
        "table3_per_system": tables.quality,
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
