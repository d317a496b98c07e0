"""The dataset runner: annotations + features in the lighthouse layout -> prediction rows.

Path of a query, one function per step:

1. :func:`recording_embeddings`: a recording's window features in the joint space, read once
   per recording and projected once (cached on disk, keyed by head weights and file content);
2. :func:`query_embedding`: the query's text feature in the joint space;
3. :func:`recording_traces`: one trace per query of the recording (System 1: background
   contrast; System 2 and the window baseline: plain similarity);
4. :func:`localised_rows` (Systems 1 and 2, a batch of traces at a time) or
   :func:`window_baseline_row` (sliding windows): one prediction row per query.

:func:`predict_dataset` runs them over a dataset and times each stage.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM, ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.annotations import qid_key
from audiomoment.io.cache import cached_file_digest, load_cached_array, save_cached_array
from audiomoment.io.features import (
    audio_features_path,
    load_audio_features,
    load_query_features,
    text_features_path,
)
from audiomoment.io.predictions import make_row, prediction_row
from audiomoment.io.run_settings import RunSettings
from audiomoment.method.frames import frames_covering
from audiomoment.method.localize import LocalizationResult, localize_traces
from audiomoment.method.traces import l2_normalize, query_trace
from audiomoment.method.window_baseline import sliding_window_moments

#: Queries localised per batch: the fast engine vectorises over a batch, the reference loops.
BATCH_QUERIES = {"fast": 8192, "reference": 256}
#: Stages timed by :func:`predict_dataset`, in order.
STAGES = ("load", "projection", "traces", "localisation")

Trace = NDArray[np.float64]


class MissingProjection(InputError):
    """Features in the encoder space (768-d) without the projection heads that bring them
    into the joint space (1024-d)."""


def head_digest(head: ProjectionHead) -> str:
    """A short content key of a projection head's weights."""
    h = hashlib.sha256()
    for arr in (head.linear1, head.linear2, head.ln_weight, head.ln_bias):
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def projection_cache(
    cache_dir: str | os.PathLike[str] | None, head: ProjectionHead | None
) -> Path | None:
    """``<cache_dir>/projected/<head digest>``, the folder of recordings projected by
    ``head``; None without a cache folder or a head."""
    if cache_dir is None or head is None:
        return None
    return Path(cache_dir) / "projected" / head_digest(head)


@dataclass
class PredictionRun:
    """Output of :func:`predict_dataset`.

    rows : one prediction row per annotation row, in annotation order.
    results : per qid key, the full :class:`LocalizationResult` (when ``keep_results``).
    n_fallback : queries answered by the peak-centred fallback.
    n_degenerate : queries whose trace was constant (fallback over the whole recording).
    n_past_duration : recordings with more feature windows than their duration covers.
    timings_s : seconds per stage: load, projection, traces, localisation.
    """

    rows: list[dict]
    results: dict[str, LocalizationResult] = field(default_factory=dict)
    n_fallback: int = 0
    n_degenerate: int = 0
    n_past_duration: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


def run_settings(
    system: int | str,
    config: LocalizeConfig,
    *,
    neutral_source: str | None,
    checkpoint: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> RunSettings:
    """The settings of a run, written beside its predictions.

    ``neutral_source``: where System 1's neutral embedding came from (kept for System 1
    only); ``checkpoint``: the checkpoint whose heads were loaded (None: none), its SHA-256
    remembered in ``cache_dir`` (None: computed every time).
    """
    from audiomoment import __version__

    digest = cached_file_digest(checkpoint, cache_dir) if checkpoint is not None else None
    return RunSettings(
        system=system,
        config=config,
        neutral_source=neutral_source if system == 1 else None,
        checkpoint_sha256=digest,
        package_version=__version__,
    )


# ---------------------------------------------------------------------------------------------
# One step each
# ---------------------------------------------------------------------------------------------


def recording_embeddings(
    features: NDArray[np.float32],
    raw: bytes,
    path: Path,
    head: ProjectionHead | None,
    cache: Path | None,
) -> NDArray[np.float32]:
    """(T, 1024) joint-space window embeddings of one recording (not normalised).

    ``features``: (T, D) as read from ``path``, whose bytes ``raw`` key the cache; D = 1024
    is returned as is, D = 768 is projected with the audio ``head``. ``cache``: folder of
    projected recordings (:func:`projection_cache`; None: project every time). A damaged
    cache entry is recomputed; one that cannot be written is skipped.
    """
    if features.shape[1] != ENCODER_DIM:
        return features
    if head is None:
        raise MissingProjection(
            f"{path}: {ENCODER_DIM}-d encoder features need the checkpoint's projection heads "
            f"(or features already in the {JOINT_DIM}-d joint space)"
        )
    if cache is None:
        return project(features, head)
    cached = cache / f"{hashlib.sha256(raw).hexdigest()}.npy"
    joint = load_cached_array(cached, (features.shape[0], head.out_dim))
    if joint is None:
        joint = project(features, head)
        save_cached_array(cached, joint)
    return joint


def query_embedding(
    vector: NDArray[np.float32], path: Path, head: ProjectionHead | None
) -> NDArray[np.float32]:
    """(1024,) query vector in the joint space.

    ``vector``: (D,) as read from ``path``; D = 1024 is returned as is, D = 768 is projected
    with the text ``head``.
    """
    if vector.shape[0] != ENCODER_DIM:
        return vector
    if head is None:
        raise MissingProjection(
            f"{path}: {ENCODER_DIM}-d text features need the checkpoint's projection heads"
        )
    return project(vector, head)


def recording_traces(
    audio: NDArray[np.floating], queries: Sequence[NDArray[np.floating]],
    neutral: NDArray[np.float64] | None,
) -> list[Trace]:
    """One trace (T,) per query of one recording.

    ``audio``: (T, 1024) L2-normalised window embeddings; ``queries``: (1024,) joint-space
    vectors; ``neutral``: System 1's L2-normalised neutral embedding (1024,), None for the
    plain similarity.
    """
    return [query_trace(audio, q, neutral) for q in queries]


def localised_rows(
    annotations: Sequence[Mapping], traces: Sequence[Trace], config: LocalizeConfig
) -> tuple[list[dict], list[LocalizationResult]]:
    """Systems 1 and 2 on a batch: the prediction row and the result of each query.

    ``traces``: (T_q,) per annotation row, over the recording's frames (``config.hop_s`` s).
    """
    results = localize_traces(
        list(traces), [float(a["duration"]) for a in annotations], config
    )
    rows = [prediction_row(a, r) for a, r in zip(annotations, results, strict=True)]
    return rows, results


def window_baseline_row(annotation: Mapping, trace: Trace, config: LocalizeConfig) -> dict:
    """The sliding-window baseline's prediction row of one query (no ``delta``).

    ``trace``: (T,) plain similarity over frames of ``config.hop_s`` s; the
    ``config.max_windows`` best windows after suppression, clipped to the duration.
    """
    windows = sliding_window_moments(
        trace, float(annotation["duration"]), hop_s=config.hop_s, max_windows=config.max_windows
    )
    return make_row(annotation, windows)


# ---------------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------------


def _by_recording(annotations: Sequence[Mapping]) -> dict[str, list[int]]:
    """Annotation row indices per recording, recordings in order of first appearance."""
    by_vid: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(annotations):
        by_vid[row["vid"]].append(i)
    return by_vid


def _all_traces(
    annotations: Sequence[Mapping],
    features_dir: str | os.PathLike[str],
    heads: Mapping[str, ProjectionHead] | None,
    neutral: NDArray[np.float64] | None,
    cache: Path | None,
    config: LocalizeConfig,
    timings: dict[str, float],
    disable: bool | None,
) -> tuple[list[Trace | None], int]:
    """Every query's trace (annotation order) and the number of recordings with more frames
    than their duration covers; adds seconds to ``timings`` (load, projection, traces)."""
    audio_head = heads.get("audio") if heads else None
    text_head = heads.get("text") if heads else None
    traces: list[Trace | None] = [None] * len(annotations)
    n_past = 0
    groups = _by_recording(annotations)
    for vid, indices in tqdm(groups.items(), desc="recordings", unit="rec", disable=disable):
        t0 = time.perf_counter()
        features, raw = load_audio_features(features_dir, vid)
        t1 = time.perf_counter()
        path = audio_features_path(features_dir, vid)
        audio = l2_normalize(recording_embeddings(features, raw, path, audio_head, cache))
        t2 = time.perf_counter()
        qids = [qid_key(annotations[i]["qid"]) for i in indices]
        vectors = [load_query_features(features_dir, qid) for qid in qids]
        t3 = time.perf_counter()
        if audio.shape[0] > frames_covering(float(annotations[indices[0]]["duration"]),
                                            config.hop_s):
            n_past += 1
        queries = [
            query_embedding(v, text_features_path(features_dir, qid), text_head)
            for v, qid in zip(vectors, qids, strict=True)
        ]
        for i, trace in zip(indices, recording_traces(audio, queries, neutral), strict=True):
            traces[i] = trace
        t4 = time.perf_counter()
        timings["load"] += (t1 - t0) + (t3 - t2)
        timings["projection"] += t2 - t1
        timings["traces"] += t4 - t3
    return traces, n_past


def predict_dataset(
    annotations: Sequence[Mapping],
    features_dir: str | os.PathLike[str],
    *,
    system: int | str = 1,
    heads: Mapping[str, ProjectionHead] | None = None,
    neutral: NDArray[np.float64] | None = None,
    config: LocalizeConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    keep_results: bool = False,
) -> PredictionRun:
    """Run System 1, System 2 or the sliding-window baseline over every annotated query.

    ``system``: 1 (GMM + background contrast), 2 (GMM on the similarity trace) or
    ``"window"`` (sliding-window clip retrieval on the similarity trace, no mixture).

    ``annotations``: validated rows (``audiomoment.io.annotations.read_annotations``).
    ``heads``: the checkpoint's "audio" and "text" projection heads; needed for 768-d
    features (:class:`MissingProjection` otherwise). ``neutral``: (1024,) neutral embedding,
    required for System 1. ``cache_dir``: where projected recordings are cached (None: no
    cache). ``progress``: show progress bars (None: only on a terminal).
    """
    config = config or LocalizeConfig()
    if system not in (1, 2, "window"):
        raise InputError(f"system must be 1, 2 or 'window', got {system!r}")
    if system == 1 and neutral is None:
        raise InputError(
            f"System 1 needs the neutral embedding (a {JOINT_DIM}-d vector in the joint space)"
        )
    neutral_vec = l2_normalize(neutral) if system == 1 else None
    cache = projection_cache(cache_dir, heads.get("audio") if heads else None)
    disable = None if progress is None else not progress
    timings = dict.fromkeys(STAGES, 0.0)
    traces, n_past = _all_traces(
        annotations, features_dir, heads, neutral_vec, cache, config, timings, disable
    )

    t0 = time.perf_counter()
    batch = BATCH_QUERIES[config.engine]
    run = PredictionRun(rows=[], n_past_duration=n_past, timings_s=timings)
    with tqdm(total=len(annotations), desc="localising", unit="query", disable=disable) as bar:
        for start in range(0, len(annotations), batch):
            chunk = range(start, min(start + batch, len(annotations)))
            if system == "window":
                for i in chunk:
                    trace, traces[i] = traces[i], None
                    run.rows.append(window_baseline_row(annotations[i], trace, config))  # type: ignore[arg-type]
            else:
                batch_rows = [annotations[i] for i in chunk]
                batch_traces = [traces[i] for i in chunk]
                rows, results = localised_rows(batch_rows, batch_traces, config)  # type: ignore[arg-type]
                run.rows.extend(rows)
                for i, result in zip(chunk, results, strict=True):
                    run.n_fallback += result.fallback
                    run.n_degenerate += result.degenerate
                    if keep_results:
                        run.results[qid_key(annotations[i]["qid"])] = result
                    traces[i] = None
            bar.update(len(chunk))
    timings["localisation"] = time.perf_counter() - t0
    return run
