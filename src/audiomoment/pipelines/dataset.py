"""The dataset runner: annotations + features in the lighthouse layout -> prediction rows.

Path of a query: read the recording's window features once (projecting them into the joint
space once per recording, with an on-disk cache keyed by head weights and file content),
read the query's text feature, build the trace (System 1: background contrast; System 2:
plain similarity), localise all traces in batches, write one prediction row per query.
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

from audiomoment.clap.checkpoint import ENCODER_DIM, ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.annotations import qid_key
from audiomoment.io.atomic import save_npy
from audiomoment.io.features import (
    audio_features_path,
    load_audio_features,
    load_query_features,
    text_features_path,
)
from audiomoment.io.predictions import prediction_row
from audiomoment.method.localize import LocalizationResult, localize_traces
from audiomoment.method.traces import l2_normalize, query_trace
from audiomoment.method.window_baseline import sliding_window_moments, window_prediction_row

#: Queries localised per batch: the fast engine vectorises over a batch, the reference loops.
BATCH_QUERIES = {"fast": 8192, "reference": 256}


def default_cache_dir() -> Path:
    """$AUDIOMOMENT_CACHE_DIR, else $XDG_CACHE_HOME/audiomoment, else ~/.cache/audiomoment."""
    if env := os.environ.get("AUDIOMOMENT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audiomoment"


def head_digest(head: ProjectionHead) -> str:
    """A short content key of a projection head's weights."""
    h = hashlib.sha256()
    for arr in (head.linear1, head.linear2, head.ln_weight, head.ln_bias):
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


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


def _joint_audio(
    features: NDArray[np.float32],
    raw: bytes,
    path: Path,
    head: ProjectionHead | None,
    cache: Path | None,
) -> NDArray[np.float32]:
    """(T, 1024) joint-space window embeddings of one recording, cached when projected."""
    if features.shape[1] != ENCODER_DIM:
        return features
    if head is None:
        raise InputError(
            f"{path}: {ENCODER_DIM}-d encoder features need the projection heads: pass "
            "--checkpoint CLAP_weights_2023.pth (or features already in the 1024-d joint space)"
        )
    if cache is None:
        return project(features, head)
    cached = cache / f"{hashlib.sha256(raw).hexdigest()}.npy"
    if cached.is_file():
        try:
            arr = np.load(cached, allow_pickle=False)
            if arr.shape == (features.shape[0], head.out_dim):
                return arr
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed
    joint = project(features, head)
    save_npy(cached, joint)
    return joint


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
    features. ``neutral``: (1024,) neutral embedding, required for System 1.
    ``cache_dir``: where projected recordings are cached (None: no cache).
    ``progress``: show progress bars (None: only on a terminal).
    """
    config = config or LocalizeConfig()
    if system not in (1, 2, "window"):
        raise InputError(f"system must be 1, 2 or 'window', got {system!r}")
    if system == 1 and neutral is None:
        raise InputError(
            "System 1 needs the neutral embedding: pass --neutral-embedding N.npy "
            "(a 1024-d vector in the joint space)"
        )
    neutral_vec = l2_normalize(neutral) if system == 1 else None
    audio_head = heads.get("audio") if heads else None
    text_head = heads.get("text") if heads else None
    cache = None
    if cache_dir is not None and audio_head is not None:
        cache = Path(cache_dir) / "projected" / head_digest(audio_head)

    by_vid: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(annotations):
        by_vid[row["vid"]].append(i)

    timings = {"load": 0.0, "projection": 0.0, "traces": 0.0, "localisation": 0.0}
    traces: list[NDArray[np.float64] | None] = [None] * len(annotations)
    n_past = 0
    disable = None if progress is None else not progress
    for vid, indices in tqdm(by_vid.items(), desc="recordings", unit="rec", disable=disable):
        t0 = time.perf_counter()
        features, raw = load_audio_features(features_dir, vid)
        path = audio_features_path(features_dir, vid)
        t1 = time.perf_counter()
        joint = _joint_audio(features, raw, path, audio_head, cache)
        audio = l2_normalize(joint)
        t2 = time.perf_counter()
        queries = [
            load_query_features(features_dir, qid_key(annotations[i]["qid"])) for i in indices
        ]
        t3 = time.perf_counter()
        if audio.shape[0] > int(np.ceil(float(annotations[indices[0]]["duration"]))):
            n_past += 1
        for i, q in zip(indices, queries, strict=True):
            if q.shape[0] == ENCODER_DIM:
                if text_head is None:
                    raise InputError(
                        f"{text_features_path(features_dir, qid_key(annotations[i]['qid']))}: "
                        f"{ENCODER_DIM}-d text features need --checkpoint CLAP_weights_2023.pth"
                    )
                q = project(q, text_head)
            traces[i] = query_trace(audio, q, neutral_vec)
        t4 = time.perf_counter()
        timings["load"] += (t1 - t0) + (t3 - t2)
        timings["projection"] += t2 - t1
        timings["traces"] += t4 - t3

    t0 = time.perf_counter()
    batch = BATCH_QUERIES[config.engine]
    rows: list[dict] = []
    run = PredictionRun(rows=rows, n_past_duration=n_past, timings_s=timings)
    with tqdm(total=len(annotations), desc="localising", unit="query", disable=disable) as bar:
        for start in range(0, len(annotations), batch):
            chunk = range(start, min(start + batch, len(annotations)))
            if system == "window":
                for i in chunk:
                    windows = sliding_window_moments(
                        traces[i],  # type: ignore[arg-type]
                        float(annotations[i]["duration"]),
                        hop_s=config.hop_s,
                        max_windows=config.max_windows,
                    )
                    rows.append(window_prediction_row(annotations[i], windows))
                    traces[i] = None
                bar.update(len(chunk))
                continue
            results = localize_traces(
                [traces[i] for i in chunk],  # type: ignore[misc]
                [float(annotations[i]["duration"]) for i in chunk],
                config,
            )
            for i, result in zip(chunk, results, strict=True):
                rows.append(prediction_row(annotations[i], result))
                run.n_fallback += result.fallback
                run.n_degenerate += result.degenerate
                if keep_results:
                    run.results[qid_key(annotations[i]["qid"])] = result
                traces[i] = None
            bar.update(len(chunk))
    timings["localisation"] = time.perf_counter() - t0
    return run
