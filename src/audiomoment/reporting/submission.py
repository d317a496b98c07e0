"""The DCASE 2026 Task 6 submission package: system outputs, meta files and the report, zipped.

Where the format comes from: the task organisers' baseline repository
(``awkrail/dcase2026_task6_baseline``: its ``src/create_submission.py`` writes the system
output, its ``src/standalone_eval/README.md`` describes the rows), the Task 6 meta-information
template (as participants fill it in, e.g. ``docs/metadata.yaml`` of a participant's
repository) and the DCASE challenge's general package layout. What is written here is this
project's own code following those descriptions; ``tests/data/dcase2026_task6/`` holds a
small example of the format in this project's words.

The zip holds, for up to four systems labelled ``<Lastname>_<Institute>_task6_<k>``::

    task6/<Lastname>_<Institute>_task6.technical_report.pdf
    task6/<label>/<label>.output.jsonl   one row per evaluation query
    task6/<label>/<label>.meta.yaml      the system's meta information

* System output, as the baseline writes it: JSON Lines, one object per query with ``qid``,
  ``query``, ``vid`` and ``pred_relevant_windows``: the ranked windows best first (up to 10,
  the baseline's number of moment queries), each ``[start, end]`` in whole seconds (rounded
  half to even, as the baseline's post-processing rounds to multiples of its 1-s clip
  length), scores dropped.
* Meta file, in the template's layout: ``submission`` (label, name, abbreviation of at most
  10 characters, authors with their affiliation, one marked corresponding), ``system``
  (``model``: audio_models, text_models, LLMs, trainable_parameters, freezed_parameters,
  loss_function; ``dataset``: data_augmentation, external_data_resources, audio_captions;
  ``ensemble``) and ``results.development_testing`` (``Recall1@0.7``, ``Recall1@0.5``).
  This project adds ``system.description``: the method, its hyperparameters and the run's
  recorded settings (every :class:`~audiomoment.config.LocalizeConfig` field, the neutral
  embedding's source, the checkpoint's digest).

Before anything is written every output is checked against the evaluation set's annotation
file: the rows as any prediction reader checks them
(:func:`audiomoment.io.predictions.inspect_predictions`; ``[start, end]`` windows without a
score are accepted, zero-length windows are scored as the standard evaluation scores them),
and the package's own rules: every annotated qid exactly once, at least one window per
query, 0 <= start <= end <= duration, scores (when given) best first.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audiomoment.config import NEUTRAL_PHRASES, LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.annotations import by_qid, qid_key
from audiomoment.io.atomic import atomic_path
from audiomoment.io.run_settings import RunSettings

TASK = "task6"
#: Systems a participant may submit per task.
MAX_SYSTEMS = 4
#: Windows kept per query: the baseline's number of ranked moments.
WINDOWS_PER_QUERY = 10
#: Seconds the submitted window bounds are multiples of (the baseline's clip length).
TIME_STEP_S = 1.0
#: Seconds covered by one feature window of the task's MS-CLAP features.
FEATURE_WINDOW_S = 1.0
#: Slack on the duration bound, for durations written with few decimals.
DURATION_TOLERANCE_S = 1e-6
#: Fixed timestamp of every zip entry, so that equal inputs give identical packages.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
#: Weights of MS-CLAP 2023 that the systems use, all frozen: the HTS-AT audio encoder
#: (28,617,944), the GPT-2 text encoder (124,439,808) and the two projection heads
#: (2 x 1,837,056). Checked against the model definitions by the tests.
FROZEN_PARAMETERS = 156_731_864
#: The template's names of the development-testing results, and the evaluation's keys.
RESULT_KEYS: dict[str, str] = {"Recall1@0.7": "MR-full-R1@0.7", "Recall1@0.5": "MR-full-R1@0.5"}


@dataclass(frozen=True)
class SystemKind:
    """How a system of this project is named and described in a meta file."""

    name: str
    abbreviation: str
    contrast: bool
    method: str


_GMM_METHOD = (
    "Training-free: per query, a similarity trace between the query's text embedding and the "
    "recording's 1-s window embeddings{contrast}; Gaussian smoothing; a two-component 1-D "
    "Gaussian mixture fitted per query by EM; frames whose posterior of the higher-mean "
    "component reaches the threshold form the candidate moments, ranked by score."
)
#: The systems of this project, by the ``system`` of their run settings.
SYSTEMS: dict[int | str, SystemKind] = {
    1: SystemKind("Training-free GMM localisation with background contrast", "GMM+BC", True,
                  _GMM_METHOD.format(contrast=", minus the similarity to a neutral background "
                                     "embedding")),
    2: SystemKind("Training-free GMM localisation, simple", "GMM", False,
                  _GMM_METHOD.format(contrast="")),
    "window": SystemKind(
        "Training-free sliding-window clip retrieval", "SlideWin", False,
        "Training-free: windows of several lengths slide over the recording's similarity "
        "trace with its query; each is scored by its mean similarity, overlapping windows "
        "are suppressed greedily, the best are returned."),
}


@dataclass(frozen=True)
class Author:
    """A submission author, with the affiliation fields of the meta template."""

    lastname: str
    firstname: str = ""
    email: str = ""
    institute: str = ""
    abbreviation: str = ""
    department: str = ""
    location: str = ""
    corresponding: bool = False


@dataclass(frozen=True)
class SystemEntry:
    """One system to package.

    index : its submission index, 1..4 (the label's last number). rows : its prediction rows
    on the evaluation set. source : where they came from (for messages and the meta file).
    settings : the run settings saved beside them (None: not recorded). dev_results : its
    development-testing results, ``{"Recall1@0.7": .., "Recall1@0.5": ..}`` (percent), or None.
    dev_source : where those results came from.
    """

    index: int
    rows: Sequence[Any]
    source: str = ""
    settings: RunSettings | None = None
    dev_results: Mapping[str, float] | None = None
    dev_source: str = ""


@dataclass(frozen=True)
class PackagedSystem:
    """What was packaged for one system: its label, archive members and row count."""

    index: int
    label: str
    output: str
    meta: str
    n_rows: int


# --------------------------------------------------------------------------- names


def _label_part(text: str, what: str) -> str:
    part = re.sub(r"\s+", "", text)
    if not re.fullmatch(r"[A-Za-z0-9-]+", part):
        raise InputError(f"{what} must be letters, digits or '-' for the submission label, "
                         f"got {text!r}")
    return part


def submission_stem(lastname: str, institute_abbreviation: str) -> str:
    """``<Lastname>_<Institute>_task6``; spaces are dropped."""
    return (f"{_label_part(lastname, 'last name')}_"
            f"{_label_part(institute_abbreviation, 'institute abbreviation')}_{TASK}")


def submission_label(lastname: str, institute_abbreviation: str, index: int) -> str:
    """``<Lastname>_<Institute>_task6_<index>``; spaces are dropped, index in 1..4."""
    if not 1 <= index <= MAX_SYSTEMS:
        raise InputError(f"submission index must be 1..{MAX_SYSTEMS}, got {index}")
    return f"{submission_stem(lastname, institute_abbreviation)}_{index}"


def report_member(lastname: str, institute_abbreviation: str) -> str:
    """The technical report's name in the package: ``task6/<stem>.technical_report.pdf``."""
    return f"{TASK}/{submission_stem(lastname, institute_abbreviation)}.technical_report.pdf"


# --------------------------------------------------------------------------- validation


def submission_problems(
    annotations: Sequence[Mapping], rows: Sequence[Any], source: str = "predictions"
) -> list[str]:
    """Every problem that keeps ``rows`` from being a valid output for ``annotations``.

    ``annotations``: the evaluation set's rows (qid, duration). Rows refused by
    :func:`~audiomoment.io.predictions.inspect_predictions` give its message; the package's
    own rules are then checked on the others (see the module docstring).
    """
    from audiomoment.io.predictions import inspect_predictions

    lookup = by_qid(annotations)
    check = inspect_predictions(rows, source, lookup)
    problems = list(check.errors.values())
    seen: set[str] = set()
    for line, row in enumerate(rows, start=1):
        if line - 1 in check.errors:
            if isinstance(row, Mapping) and isinstance(row.get("qid"), str | int):
                seen.add(qid_key(row["qid"]))
            continue
        where = f"{source}:{line}"
        key = qid_key(row["qid"])
        seen.add(key)
        windows = row["pred_relevant_windows"]
        if not windows:
            problems.append(f"{where}: qid {row['qid']!r} has no window")
            continue
        duration = float(lookup[key]["duration"])
        previous = math.inf
        for k, w in enumerate(windows, start=1):
            start, end = float(w[0]), float(w[1])
            if not 0 <= start <= end <= duration + DURATION_TOLERANCE_S:
                problems.append(f"{where}: window {k} {w!r} is not inside [0, {duration:g}]")
                break
            if len(w) == 3:
                if float(w[2]) > previous:
                    problems.append(f"{where}: scores are not sorted best first (window {k})")
                    break
                previous = float(w[2])
    missing = [q for q in lookup if q not in seen]
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


# --------------------------------------------------------------------------- outputs


def submitted_windows(windows: Sequence[Sequence[float]], top_k: int) -> list[list[float]]:
    """The first ``top_k`` windows as submitted: ``[start, end]`` in whole seconds.

    ``windows``: ranked [start, end(, score)] rows in seconds. Bounds are rounded half to
    even to multiples of :data:`TIME_STEP_S` (``numpy.round``, as the baseline rounds);
    a window may become zero-length. Returns (K, 2) as lists of floats, K <= ``top_k``.
    """
    kept = np.asarray([w[:2] for w in windows[:top_k]], dtype=np.float64).reshape(-1, 2)
    rounded = np.round(kept / TIME_STEP_S) * TIME_STEP_S
    return [[float(s), float(e)] for s, e in rounded]


def output_rows(
    annotations: Sequence[Mapping], rows: Sequence[Mapping], top_k: int = WINDOWS_PER_QUERY
) -> list[dict]:
    """Validated rows in annotation order, as submitted: qid, query, vid and the first
    ``top_k`` windows (:func:`submitted_windows`)."""
    by_key = {qid_key(r["qid"]): r for r in rows}
    return [
        {
            "qid": a["qid"],
            "query": a["query"],
            "vid": a["vid"],
            "pred_relevant_windows": submitted_windows(
                by_key[qid_key(a["qid"])]["pred_relevant_windows"], top_k),
        }
        for a in annotations
    ]


def development_results(metrics: Mapping[str, Any], source: str = "metrics") -> dict[str, float]:
    """``{"Recall1@0.7", "Recall1@0.5"}`` (percent) from an evaluation's output (its
    ``"brief"`` block) or from a flat mapping with those keys or ``"R1@0.7"`` / ``"R1@0.5"``."""
    brief = metrics.get("brief")
    found: dict[str, float] = {}
    for name, key in RESULT_KEYS.items():
        short = name.replace("Recall1", "R1")
        value = (brief.get(key) if isinstance(brief, Mapping)
                 else metrics.get(name, metrics.get(short)))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise InputError(f"{source}: no numeric {name} (R1@{name.split('@')[1]}) in it")
        found[name] = float(value)
    return found


def evaluate_development(
    annotations: Sequence[Mapping], rows: Sequence[Mapping], top_k: int = WINDOWS_PER_QUERY
) -> dict[str, float]:
    """Development-testing results of rows as they would be submitted.

    The rows' first ``top_k`` windows are rounded as :func:`submitted_windows` rounds them,
    their rank kept as a descending score, and scored with the standard evaluation against
    ``annotations`` (which need ``relevant_windows``). Returns Recall1@0.7 and Recall1@0.5.
    """
    from audiomoment.evaluation.metrics import evaluate

    submitted = []
    for row in rows:
        windows = submitted_windows(row["pred_relevant_windows"], top_k)
        submitted.append({"qid": row["qid"], "pred_relevant_windows": [
            [s, e, float(len(windows) - rank)] for rank, (s, e) in enumerate(windows)]})
    return development_results(evaluate(annotations, submitted))


# --------------------------------------------------------------------------- meta file


def hyperparameters(config: LocalizeConfig, top_k: int, system: int | str) -> dict[str, Any]:
    """The report's Table IV for one system, from the configuration actually used."""
    if system == "window":
        return {
            "embedding_model": "MS-CLAP 2023 (frozen)",
            "feature_window_s": FEATURE_WINDOW_S,
            "feature_hop_s": config.hop_s,
            "trace": "q . a_t (similarity)",
            "windows_submitted_per_query": top_k,
        }
    contrast = SYSTEMS[system].contrast
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


def _millions(n: int) -> str:
    return "0 M" if n == 0 else f"{n / 1e6:.1f} M"


def resolved_settings(entry: SystemEntry) -> tuple[RunSettings, str]:
    """The settings a system is described with, and where they come from.

    Recorded settings are used as they are. Without them, submissions 1 and 2 are taken to
    be Systems 1 and 2 with the default configuration (and the meta file says so); others
    are refused, as nothing says what produced them.
    """
    if entry.settings is not None:
        if entry.settings.system not in SYSTEMS:
            raise InputError(f"{entry.source}: unknown system {entry.settings.system!r}")
        return entry.settings, "recorded beside the predictions"
    if entry.index in (1, 2):
        return (RunSettings(entry.index, LocalizeConfig()),
                f"not recorded: System {entry.index} with the default configuration assumed")
    raise InputError(f"{entry.source or f'system {entry.index}'}: no run settings beside it "
                     f"(written by `audiomoment predict`), so submission {entry.index} cannot "
                     "say which system produced it")


def system_metadata(
    entry: SystemEntry, label: str, authors: Sequence[Author], top_k: int = WINDOWS_PER_QUERY
) -> dict[str, Any]:
    """The meta-file content of one system, in the template's layout (module docstring)."""
    settings, settings_origin = resolved_settings(entry)
    kind = SYSTEMS[settings.system]
    corresponding = corresponding_author(authors)
    people = []
    for a in authors:
        person: dict[str, Any] = {"lastname": a.lastname, "firstname": a.firstname,
                                  "email": a.email}
        if a is corresponding:
            person["corresponding"] = True
        person["affiliation"] = {"abbreviation": a.abbreviation, "institute": a.institute,
                                 "department": a.department, "location": a.location}
        people.append(person)
    recorded = {
        "origin": settings_origin,
        "system": settings.system,
        "config": asdict(settings.config),
        "neutral_source": settings.neutral_source,
        "checkpoint_sha256": settings.checkpoint_sha256,
        "package_version": settings.package_version or None,
    }
    results = dict.fromkeys(RESULT_KEYS)
    if entry.dev_results is not None:
        results.update({k: float(entry.dev_results[k]) for k in RESULT_KEYS})
    return {
        "submission": {
            "label": label,
            "name": kind.name,
            "abbreviation": kind.abbreviation,
            "authors": people,
        },
        "system": {
            "model": {
                "audio_models": ["MS-CLAP 2023 (HTS-AT audio encoder, frozen)"],
                "text_models": ["MS-CLAP 2023 (GPT-2 text encoder, frozen)"],
                "LLMs": [],
                "trainable_parameters": _millions(0),
                "freezed_parameters": _millions(FROZEN_PARAMETERS),
                "loss_function": [],
            },
            "dataset": {
                "data_augmentation": None,
                "external_data_resources": [],
                "audio_captions": 0,
            },
            "ensemble": False,
            "description": {
                "method": kind.method,
                "background_contrast": kind.contrast,
                "training": "none",
                "hyperparameters": hyperparameters(settings.config, top_k, settings.system),
                "run_settings": recorded,
                "output": {
                    "windows_per_query": top_k,
                    "time_step_s": TIME_STEP_S,
                    "rounding": "half to even",
                    "source": entry.source or None,
                },
                "development_results_from": entry.dev_source or None,
            },
        },
        "results": {"development_testing": results},
    }


def metadata_yaml(meta: Mapping[str, Any]) -> str:
    """YAML text of a meta file (keys in the order given)."""
    header = "# DCASE 2026 Task 6 system meta information (written by audiomoment)\n"
    return header + yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------- authors


_REQUIRED_AUTHOR_FIELDS = ("lastname", "firstname", "email", "institute", "abbreviation")


def check_authors(authors: Sequence[Author]) -> None:
    """Refuse an empty list, an empty required field (last and first name, email, institute
    and its abbreviation), an email without "@", or more than one corresponding author."""
    if not authors:
        raise InputError("package-submission: give at least the corresponding author")
    for i, a in enumerate(authors, start=1):
        for name in _REQUIRED_AUTHOR_FIELDS:
            if not str(getattr(a, name)).strip():
                raise InputError(f"author {i} ({a.lastname or '?'}): {name} is empty; the meta "
                                 "file needs it")
        if "@" not in a.email:
            raise InputError(f"author {i} ({a.lastname}): {a.email!r} is not an email address")
    if sum(a.corresponding for a in authors) > 1:
        raise InputError("package-submission: mark only one corresponding author")


def corresponding_author(authors: Sequence[Author]) -> Author:
    """The author marked corresponding, else the first."""
    return next((a for a in authors if a.corresponding), authors[0])


def read_authors(path: str | os.PathLike[str]) -> list[Author]:
    """Authors from a YAML file: a list (or ``{"authors": [...]}``) of entries in the meta
    template's layout (lastname, firstname, email, corresponding, affiliation: abbreviation,
    institute, department, location)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: authors file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise InputError(f"{p}: not valid YAML ({type(exc).__name__})") from None
    if isinstance(data, Mapping):
        data = data.get("authors")
    if not isinstance(data, list) or not data:
        raise InputError(f"{p}: expected a list of authors")
    authors = []
    for i, entry in enumerate(data, start=1):
        affiliation = entry.get("affiliation", {}) if isinstance(entry, Mapping) else None
        if not isinstance(entry, Mapping) or not isinstance(affiliation, Mapping):
            raise InputError(f"{p}: author {i} must be a mapping with an 'affiliation' mapping")

        def text(source: Mapping, key: str) -> str:
            value = source.get(key, "")
            return "" if value is None else str(value)

        authors.append(Author(
            lastname=text(entry, "lastname"), firstname=text(entry, "firstname"),
            email=text(entry, "email"), institute=text(affiliation, "institute"),
            abbreviation=text(affiliation, "abbreviation"),
            department=text(affiliation, "department"), location=text(affiliation, "location"),
            corresponding=entry.get("corresponding") is True,
        ))
    return authors


# --------------------------------------------------------------------------- the package


def check_report_pdf(path: str | os.PathLike[str]) -> Path:
    """The technical report's path, refused unless it is a readable PDF file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: technical report not found")
    with open(p, "rb") as handle:
        magic = handle.read(5)
    if magic != b"%PDF-":
        raise InputError(f"{p}: the technical report must be a PDF file (it does not start "
                         "with %PDF-)")
    return p


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def package_submission(
    out_zip: str | os.PathLike[str],
    annotations: Sequence[Mapping],
    systems: Sequence[SystemEntry],
    authors: Sequence[Author],
    *,
    technical_report: str | os.PathLike[str] | None = None,
    allow_missing_report: bool = False,
    top_k: int = WINDOWS_PER_QUERY,
) -> list[PackagedSystem]:
    """Validate every system, then write the zip atomically (nothing is written on error).

    Parameters
    ----------
    out_zip : the package to write (a ``.zip`` file name).
    annotations : the evaluation set's annotation rows (qid, query, vid, duration).
    systems : one to four systems with distinct indices 1..4.
    authors : at least one; the corresponding one (else the first) gives the label.
    technical_report : the report PDF, stored as ``task6/<stem>.technical_report.pdf``;
        required unless ``allow_missing_report``.
    top_k : windows kept per query (default 10, as the baseline submits).
    """
    if Path(out_zip).suffix.lower() != ".zip" or Path(out_zip).is_dir():
        raise InputError(f"{out_zip}: the package to write must be a file name ending in .zip")
    if not systems:
        raise InputError("package-submission: give at least one system's predictions")
    if len(systems) > MAX_SYSTEMS:
        raise InputError(f"package-submission: at most {MAX_SYSTEMS} systems per task, got "
                         f"{len(systems)}")
    indices = [s.index for s in systems]
    if len(set(indices)) != len(indices) or not all(1 <= i <= MAX_SYSTEMS for i in indices):
        raise InputError(f"package-submission: submission indices must be distinct, in 1..4; "
                         f"got {indices}")
    check_authors(authors)
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    if technical_report is not None:
        report_path: Path | None = check_report_pdf(technical_report)
    elif allow_missing_report:
        report_path = None
    else:
        raise InputError("package-submission: the package needs the technical report PDF "
                         "(--report FILE.pdf), or --no-report to build it without one")
    first = corresponding_author(authors)
    metas = {}
    for entry in sorted(systems, key=lambda s: s.index):
        validate_submission(annotations, entry.rows, entry.source or f"system {entry.index}")
        label = submission_label(first.lastname, first.abbreviation, entry.index)
        metas[entry.index] = (label, system_metadata(entry, label, authors, top_k))

    packaged = []
    with atomic_path(out_zip, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as archive:
        if report_path is not None:
            _add(archive, report_member(first.lastname, first.abbreviation),
                 report_path.read_bytes())
        for entry in sorted(systems, key=lambda s: s.index):
            label, meta = metas[entry.index]
            kept = output_rows(annotations, entry.rows, top_k)
            output = f"{TASK}/{label}/{label}.output.jsonl"
            meta_name = f"{TASK}/{label}/{label}.meta.yaml"
            text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
            _add(archive, output, text.encode("utf-8"))
            _add(archive, meta_name, metadata_yaml(meta).encode("utf-8"))
            packaged.append(PackagedSystem(entry.index, label, output, meta_name, len(kept)))
    return packaged
