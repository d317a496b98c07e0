"""Corpus-level evaluation: every annotated query searched across a whole index, scored with
corpus R@K (:mod:`audiomoment.evaluation.corpus`).

The queries' vectors come from a lighthouse-layout feature folder (``clap_text/<qid>.npz``,
projected with the checkpoint's text head when 768-d); the recordings of the annotation file
must be in the index (recording ids = vids).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.clap.checkpoint import ProjectionHead
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.evaluation.corpus import RankedMoment, corpus_recall
from audiomoment.index.scan import window_scores
from audiomoment.index.search import RANKINGS, moment_table, query_matrix, ranked_moments
from audiomoment.index.store import Snapshot
from audiomoment.method.localize import localize_traces

#: Moments kept per query: enough for R@100.
CORPUS_TOP = 100


def query_vectors_from_features(
    annotations: Sequence[Mapping], features_dir: str | os.PathLike[str],
    text_head: ProjectionHead | None,
) -> NDArray[np.float32]:
    """(Q, 1024) unit query vectors in annotation order from ``clap_text/<qid>.npz``."""
    from audiomoment.clap.projection import project
    from audiomoment.io.annotations import qid_key
    from audiomoment.io.features import ENCODER_DIM, load_query_features

    rows = []
    for row in annotations:
        vec = load_query_features(Path(features_dir), qid_key(row["qid"]))
        if vec.shape[0] == ENCODER_DIM:
            if text_head is None:
                raise InputError(f"{features_dir}: 768-d text features need the checkpoint's "
                                 "projection heads")
            vec = project(vec, text_head)
        rows.append(np.asarray(vec, dtype=np.float64) / np.linalg.norm(vec))
    return np.asarray(rows, dtype=np.float32)


def check_recordings(snapshot: Snapshot, annotations: Sequence[Mapping], source: str) -> None:
    """InputError when an annotated recording is not in the index."""
    names = {r.name for r in snapshot.recordings}
    missing = sorted({str(r["vid"]) for r in annotations} - names)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)"
                                          if len(missing) > 5 else "")
        raise InputError(f"{source}: {len(missing)} annotated recording(s) are not in the "
                         f"index {snapshot.root}: {shown}")


def corpus_rankings(
    snapshot: Snapshot,
    annotations: Sequence[Mapping],
    queries: NDArray[np.float32],
    *,
    system: int,
    rankings: Sequence[str] = RANKINGS,
    config: LocalizeConfig | None = None,
    top: int = CORPUS_TOP,
    queries_per_batch: int = 32,
    progress: bool | None = None,
) -> dict[str, dict[str, list[RankedMoment]]]:
    """Every query's ranked moments over the whole index, for each ranking.

    Exhaustive: every recording is localised for every query (traces of many queries are
    localised together, so equal-length recordings share blocks); the rankings then order
    the same moments. Returns ``{ranking: {qid: moments best first}}``.
    """
    from tqdm import tqdm

    config = config or LocalizeConfig()
    hop = snapshot.spec.hop_s
    config = config.with_(hop_s=hop) if config.hop_s != hop else config
    recs = snapshot.recordings
    usable = [i for i, r in enumerate(recs) if r.n_windows >= 2]
    out: dict[str, dict[str, list[RankedMoment]]] = {r: {} for r in rankings}
    disable = None if progress is None else not progress
    with tqdm(total=len(annotations), desc=f"corpus System {system}", unit="query",
              disable=disable) as bar:
        for a in range(0, len(annotations), queries_per_batch):
            batch = annotations[a : a + queries_per_batch]
            vectors = query_matrix(snapshot, queries[a : a + queries_per_batch], system)
            scores, starts = window_scores(snapshot, vectors)
            traces, stats = [], []
            for j in range(len(batch)):
                trace = np.ascontiguousarray(scores[:, j])
                stats.append((float(trace.mean()), float(trace.std()) or 1.0))
                traces.extend(trace[starts[i] : starts[i + 1]] for i in usable)
            results = localize_traces(traces, [recs[i].duration_s for i in usable] * len(batch),
                                      config)
            rec_index = np.asarray(usable, dtype=np.int64)
            for j, row in enumerate(batch):
                mu, sigma = stats[j]
                mine = results[j * len(usable) : (j + 1) * len(usable)]
                table = moment_table(mine, rec_index, hop, config.max_windows)
                for ranking in rankings:
                    found = ranked_moments(snapshot, table, mu, sigma, ranking, top)
                    out[ranking][str(row["qid"])] = [
                        RankedMoment(m.recording, m.start_s, m.end_s) for m in found
                    ]
            bar.update(len(batch))
    return out


def evaluate_corpus(
    snapshot: Snapshot,
    annotations: Sequence[Mapping],
    queries: NDArray[np.float32],
    *,
    system: int,
    rankings: Sequence[str] = RANKINGS,
    config: LocalizeConfig | None = None,
    progress: bool | None = None,
) -> dict[str, dict[str, float]]:
    """Corpus R@K of one system for each ranking; ``queries`` (Q, dim) in annotation order."""
    ranked = corpus_rankings(snapshot, annotations, queries, system=system, rankings=rankings,
                             config=config, progress=progress)
    return {r: corpus_recall(annotations, ranked[r]) for r in rankings}
