"""The DCASE 2026 Task 6 submission package: validated outputs and metadata, zipped.

One entry per system, labelled ``<Lastname>_<Institute>_task6_<k>`` as DCASE labels
submissions: k = 1 is System 1 (GMM + background contrast), k = 2 System 2 (GMM simple).
The zip holds::

    task6/<label>/<label>.output.jsonl   one prediction row per evaluation query
    task6/<label>/<label>.meta.yaml      the system's description (Table IV hyperparameters)
    task6/<Lastname>_<Institute>_task6.technical_report.pdf   (when given)

The metadata follows the general layout of DCASE meta files (``submission``: label, name,
abbreviation, authors; ``system``: description, complexity, external resources; ``results``)
and states what the report states: frozen MS-CLAP 2023 embeddings as the only external
resource and no training data. Compare it with the task's official template before uploading.

Before anything is written every output is validated against the annotation file: each
annotated qid present exactly once and no other, at least one window per query, every window
three finite numbers with 0 <= start < end <= duration, scores in non-increasing order.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audiomoment.config import NEUTRAL_PHRASES, LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.annotations import qid_key
from audiomoment.io.atomic import atomic_path

TASK = "task6"
#: Seconds covered by one feature window of the task's MS-CLAP features.
FEATURE_WINDOW_S = 1.0
#: Submission index -> (name, abbreviation of at most 10 characters, uses background contrast).
SYSTEMS: dict[int, tuple[str, str, bool]] = {
    1: ("Training-free GMM localisation with background contrast", "GMM+BC", True),
    2: ("Training-free GMM localisation, simple", "GMM", False),
}
#: Slack on the duration bound, for durations written with few decimals.
DURATION_TOLERANCE_S = 1e-6
#: Fixed timestamp of every zip entry, so that equal inputs give identical packages.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Author:
    """A submission author (the first one listed is the corresponding author)."""

    lastname: str
    firstname: str = ""
    email: str = ""
    institute: str = ""
    abbreviation: str = ""
    department: str = ""
    location: str = ""


@dataclass(frozen=True)
class PackagedSystem:
    """What was packaged for one system: its label, archive members and row count."""

    index: int
    label: str
    output: str
    meta: str
    n_rows: int


def _label_part(text: str, what: str) -> str:
    part = re.sub(r"\s+", "", text)
    if not re.fullmatch(r"[A-Za-z0-9-]+", part):
        raise InputError(f"{what} must be letters, digits or '-' for the submission label, "
                         f"got {text!r}")
    return part


def submission_label(lastname: str, institute_abbreviation: str, index: int) -> str:
    """``<Lastname>_<Institute>_task6_<index>``; spaces are dropped, index in 1..4."""
    if not 1 <= index <= 4:
        raise InputError(f"submission index must be 1..4, got {index}")
    return (f"{_label_part(lastname, 'last name')}_"
            f"{_label_part(institute_abbreviation, 'institute abbreviation')}_{TASK}_{index}")


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def submission_problems(
    annotations: Sequence[Mapping], rows: Sequence[Any], source: str = "predictions"
) -> list[str]:
    """Every problem that keeps ``rows`` from being a valid output for ``annotations``."""
    durations = {qid_key(a["qid"]): float(a["duration"]) for a in annotations}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=1):
        where = f"{source}:{line}"
        if not isinstance(row, Mapping) or "qid" not in row:
            problems.append(f"{where}: not an object with a 'qid'")
            continue
        key = qid_key(row["qid"])
        if key in seen:
            problems.append(f"{where}: qid {row['qid']!r} repeated (first on line {seen[key]})")
            continue
        seen[key] = line
        if key not in durations:
            problems.append(f"{where}: qid {row['qid']!r} is not in the annotations")
            continue
        windows = row.get("pred_relevant_windows")
        if not isinstance(windows, list) or not windows:
            problems.append(f"{where}: qid {row['qid']!r} has no window")
            continue
        duration = durations[key]
        previous = math.inf
        for k, w in enumerate(windows, start=1):
            if not (isinstance(w, list) and len(w) == 3 and all(_finite(v) for v in w)):
                problems.append(f"{where}: window {k} is not [start, end, score]: {w!r}")
                break
            start, end, score = (float(v) for v in w)
            if not 0 <= start < end <= duration + DURATION_TOLERANCE_S:
                problems.append(f"{where}: window {k} {w!r} is not inside [0, {duration:g}] "
                                "with start < end")
                break
            if score > previous:
                problems.append(f"{where}: scores are not sorted best first (window {k})")
                break
            previous = score
    missing = [q for q in durations if q not in seen]
    if missing:
        problems.append(f"{source}: {len(missing)} annotated queries have no row "
                        f"(first: {', '.join(missing[:3])})")
    return problems


def validate_submission(
    annotations: Sequence[Mapping], rows: Sequence[Any], source: str = "predictions"
) -> None:
    """Raise :class:`InputError` listing the first problems when ``rows`` are not valid."""
    problems = submission_problems(annotations, rows, source)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(f"{source}: not a valid submission: {shown}{more}")


def output_rows(
    annotations: Sequence[Mapping], rows: Sequence[Mapping], top_k: int
) -> list[dict]:
    """Validated rows in annotation order, standard fields only, first ``top_k`` windows."""
    by_key = {qid_key(r["qid"]): r for r in rows}
    out = []
    for a in annotations:
        row = by_key[qid_key(a["qid"])]
        out.append({
            "qid": a["qid"],
            "query": a["query"],
            "vid": a["vid"],
            "pred_relevant_windows": [[float(v) for v in w]
                                      for w in row["pred_relevant_windows"][:top_k]],
        })
    return out


def hyperparameters(config: LocalizeConfig, top_k: int, contrast: bool) -> dict[str, Any]:
    """The report's Table IV for one system, from the configuration actually used."""
    table: dict[str, Any] = {
        "embedding_model": "MS-CLAP 2023 (frozen)",
        "feature_window_s": FEATURE_WINDOW_S,
        "feature_hop_s": config.hop_s,
        "trace": "(q - n) . a_t (background contrast)" if contrast else "q . a_t (similarity)",
        "smoothing": "Gaussian",
        "smoothing_sigma_frames": config.sigma_frames,
        "gmm_components": 2,
        "gmm_n_init": config.n_init,
        "gmm_random_state": config.random_state,
        "gmm_tol": config.tol,
        "gmm_max_iter": config.max_iter,
        "gmm_reg_covar": config.reg_covar,
        "posterior_threshold": config.threshold,
        "moment_score": f"mean posterior + {config.peak_weight:g} * max smoothed trace",
        "windows_submitted_per_query": top_k,
    }
    if contrast:
        table["neutral_phrases"] = list(NEUTRAL_PHRASES)
    return table


def system_metadata(
    index: int,
    label: str,
    authors: Sequence[Author],
    config: LocalizeConfig,
    top_k: int,
    dev_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The meta-file content of submission ``index`` (1: with contrast, 2: without)."""
    if index not in SYSTEMS:
        raise InputError(f"no system for submission index {index}")
    name, abbreviation, contrast = SYSTEMS[index]
    meta: dict[str, Any] = {
        "submission": {
            "label": label,
            "name": name,
            "abbreviation": abbreviation,
            "authors": [
                {
                    "lastname": a.lastname,
                    "firstname": a.firstname,
                    "email": a.email,
                    "corresponding": i == 0,
                    "affiliation": {
                        "abbreviation": a.abbreviation,
                        "institute": a.institute,
                        "department": a.department,
                        "location": a.location,
                    },
                }
                for i, a in enumerate(authors)
            ],
        },
        "system": {
            "description": {
                "method": (
                    "Training-free: per query, a similarity trace between the query's text "
                    "embedding and the recording's window embeddings"
                    + (", minus the similarity to a neutral background embedding" if contrast
                       else "")
                    + "; Gaussian smoothing; a two-component 1-D Gaussian mixture fitted per "
                    "query; frames whose posterior of the higher-mean component reaches the "
                    "threshold form the candidate moments, ranked by score."
                ),
                "input_features": "the task's MS-CLAP 2023 window embeddings",
                "background_contrast": contrast,
                "training": "none",
                "hyperparameters": hyperparameters(config, top_k, contrast),
            },
            "complexity": {"trainable_parameters": 0},
            "external_resources": [
                {
                    "name": "MS-CLAP 2023",
                    "type": "pre-trained audio-text model",
                    "usage": "frozen audio and text embeddings; nothing is fine-tuned",
                },
            ],
            "training_data": "none",
        },
    }
    if dev_metrics:
        meta["results"] = {"development_dataset": dict(dev_metrics)}
    return meta


def metadata_yaml(meta: Mapping[str, Any]) -> str:
    """YAML text of a meta file (keys in the order given)."""
    header = "# DCASE 2026 Task 6 system meta information (written by audiomoment)\n"
    return header + yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, width=100)


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def package_submission(
    out_zip: str | os.PathLike[str],
    annotations: Sequence[Mapping],
    predictions: Mapping[int, Sequence[Any]],
    authors: Sequence[Author],
    *,
    config: LocalizeConfig | None = None,
    top_k: int = 1,
    dev_metrics: Mapping[int, Mapping[str, Any]] | None = None,
    technical_report: str | os.PathLike[str] | None = None,
    sources: Mapping[int, str] | None = None,
) -> list[PackagedSystem]:
    """Validate every system's rows, then write the zip atomically.

    Parameters
    ----------
    out_zip : the package to write.
    annotations : the evaluation set's annotation rows (qid, query, vid, duration).
    predictions : submission index (1 or 2) -> that system's prediction rows.
    authors : at least one; the first is the corresponding author and gives the label.
    config : the localisation configuration used (default: the report's).
    top_k : windows kept per query (the report submits the top one).
    dev_metrics : index -> development-set metrics to record under ``results``.
    technical_report : a PDF to include.
    sources : index -> where the rows came from, for error messages.
    """
    config = config or LocalizeConfig()
    if Path(out_zip).suffix.lower() != ".zip" or Path(out_zip).is_dir():
        raise InputError(f"{out_zip}: the package to write must be a file name ending in .zip")
    if not predictions:
        raise InputError("package-submission: give at least one system's predictions")
    if not authors:
        raise InputError("package-submission: give at least the corresponding author")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    report_path = Path(technical_report) if technical_report is not None else None
    if report_path is not None and not report_path.is_file():
        raise InputError(f"{report_path}: technical report not found")
    sources = sources or {}
    for index, rows in sorted(predictions.items()):
        if index not in SYSTEMS:
            raise InputError(f"no system for submission index {index} (use 1 or 2)")
        validate_submission(annotations, rows, sources.get(index, f"system {index}"))

    first = authors[0]
    packaged = []
    with atomic_path(out_zip, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for index, rows in sorted(predictions.items()):
            label = submission_label(first.lastname, first.abbreviation, index)
            kept = output_rows(annotations, rows, top_k)
            output = f"{TASK}/{label}/{label}.output.jsonl"
            meta = f"{TASK}/{label}/{label}.meta.yaml"
            text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
            _add(archive, output, text.encode("utf-8"))
            content = system_metadata(index, label, authors, config, top_k,
                                      (dev_metrics or {}).get(index))
            _add(archive, meta, metadata_yaml(content).encode("utf-8"))
            packaged.append(PackagedSystem(index, label, output, meta, len(kept)))
        if report_path is not None:
            stem = submission_label(first.lastname, first.abbreviation, 1).rsplit("_", 1)[0]
            _add(archive, f"{TASK}/{stem}.technical_report.pdf", report_path.read_bytes())
    return packaged
