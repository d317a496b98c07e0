"""What the report reads: datasets with their predictions and run settings, search results,
metrics files, and the re-localised queries that Figure 2 draws.

Predictions files written by ``audiomoment predict`` have their run settings beside them
(:mod:`audiomoment.io.run_settings`); they are read with the predictions, so that Figure 2
re-localises a query with the configuration (and system) that produced the file. Files of
other tools have none; Figure 2 then uses the default configuration and says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.run_settings import RunSettings, read_run_settings
from audiomoment.reporting.tables import DatasetPredictions, SystemPredictions

SEARCH_FIELDS = ("audio", "query", "pred_relevant_windows")


@dataclass(frozen=True)
class TraceExample:
    """One Figure 2 panel: a query's localisation and its ground truth.

    dataset : the dataset's label (with SIMULATED where it applies); file_stem : a short name
    for the figure's file; system : 1 or 2; gt_windows : (G, 2) seconds; result : the query's
    :class:`~audiomoment.method.localize.LocalizationResult`; config : the configuration it
    was localised with; settings : the run settings that configuration came from, and
    settings_from : the predictions file they were saved beside (both None: defaults).
    """

    dataset: str
    file_stem: str
    qid: str
    query: str
    vid: str
    system: int
    gt_windows: list[list[float]]
    result: Any  # LocalizationResult
    config: LocalizeConfig = field(default_factory=LocalizeConfig)
    settings: RunSettings | None = None
    settings_from: str | None = None


# --------------------------------------------------------------------------- datasets


def dataset_name(path: Path) -> str:
    """The file stem, or the folder's name for a generic ``annotations.jsonl``."""
    return path.parent.name if path.stem == "annotations" and path.parent.name else path.stem


def _groups(values: Sequence[Sequence[str]] | None, n: int, what: str) -> list[list[str]] | None:
    if values is None:
        return None
    if len(values) != n:
        raise InputError(f"give one {what} group per --annotations ({n}), got {len(values)}")
    return [list(v) for v in values]


def per_dataset(values: Sequence[str] | None, n: int, what: str) -> list[str | None]:
    """One value per dataset: 0 values give None each, 1 value is shared, n values one each."""
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
) -> list[DatasetPredictions]:
    """Read and validate every dataset's annotations, predictions files and run settings.

    ``prediction_groups``: one group of files per annotation file (with one annotation
    file, every group adds to it); ``name_groups``: the system names, likewise (default:
    the file stems); ``warn``: where the validation's warnings go.
    """
    from audiomoment.io.annotations import by_qid, read_annotations
    from audiomoment.io.predictions import read_predictions
    from audiomoment.reporting.tables import is_simulated_dataset

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
            SystemPredictions(label, read_predictions(f, lookup, on_warning=warn), str(f),
                              read_run_settings(f))
            for label, f in zip(labels, files, strict=True)
        )
        datasets.append(DatasetPredictions(
            name=dataset_names[i] if dataset_names else dataset_name(Path(path)),
            annotations=annotations,
            systems=systems,
            simulated=simulated or is_simulated_dataset(path),
            source=str(path),
        ))
    return datasets


def read_search_results(path: str | Path) -> list[Any]:
    """Search results as :class:`~audiomoment.reporting.html.AudioMoments`, one per audio file.

    JSON Lines rows ``{"audio": path, "query": text, "pred_relevant_windows": [[s, e, score],
    ...]}`` (seconds); relative audio paths are taken from the results file's folder.
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


def read_metrics_file(path: str | Path) -> dict[str, Any]:
    """A metrics JSON object; the output of ``audiomoment evaluate --json`` is returned whole.

    Raises :class:`InputError` naming the file when it is missing, not JSON or not an object.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: metrics file not found")
    try:
        metrics = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{p}: not valid JSON (nested too deeply)") from None
    if not isinstance(metrics, dict):
        raise InputError(f"{p}: expected a JSON object of metrics")
    return metrics


# --------------------------------------------------------------------------- Figure 2 inputs


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def figure_settings(
    dataset: DatasetPredictions, system: int
) -> tuple[RunSettings | None, str | None]:
    """The run settings of System ``system`` among the dataset's predictions files.

    Returns the settings of the first file whose settings name that system, and that file;
    (None, None) when no file has such settings (Figure 2 then uses the defaults).
    """
    for predictions in dataset.systems:
        if predictions.settings is not None and predictions.settings.system == system:
            return predictions.settings, predictions.source
    return None, None


def trace_examples(
    dataset: DatasetPredictions,
    features: str,
    qids: Sequence[str],
    *,
    system: int,
    checkpoint: str | None,
    neutral_path: str | None,
    settings: RunSettings | None = None,
    settings_from: str | None = None,
) -> list[TraceExample]:
    """Localise the chosen queries of one dataset again, keeping their full results.

    ``settings``: the run settings to localise with (their configuration; None: the default
    configuration), saved beside ``settings_from``. ``system`` must be the settings' system.
    """
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.io.annotations import qid_key
    from audiomoment.io.features import load_neutral_embedding
    from audiomoment.pipelines.dataset import predict_dataset

    if settings is not None and settings.system != system:
        raise InputError(f"{settings_from}: its settings are those of System {settings.system}, "
                         f"not of System {system}")
    if not Path(features).is_dir():
        raise InputError(f"{features}: features folder not found")
    if system == 1 and neutral_path is None:
        raise InputError("Figure 2 of System 1 needs --neutral-embedding (or --figure-system 2)")
    wanted = set(qids)
    subset = [a for a in dataset.annotations if qid_key(a["qid"]) in wanted]
    if not subset:
        return []
    config = settings.config if settings is not None else LocalizeConfig()
    heads = load_projection_heads(checkpoint) if checkpoint else None
    neutral = load_neutral_embedding(neutral_path) if (system == 1 and neutral_path) else None
    run = predict_dataset(subset, features, system=system, heads=heads, neutral=neutral,
                          config=config, cache_dir=None, progress=False, keep_results=True)
    return [
        TraceExample(dataset.label, f"{_safe(dataset.name)}_{_safe(qid_key(a['qid']))}",
                     qid_key(a["qid"]), a["query"], a["vid"], system,
                     [list(map(float, w)) for w in a.get("relevant_windows", [])],
                     run.results[qid_key(a["qid"])], config, settings, settings_from)
        for a in subset
    ]
