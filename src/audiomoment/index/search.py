"""Searching an archive: one query -> the best moments across every recording, ranked.

Path of a query: its joint-space vector (text, an example clip, a moment of the index, or a
given embedding) -> one pass over every window of the index (:mod:`audiomoment.index.scan`)
-> per recording the trace of the chosen system (System 1: similarity to the query minus
similarity to the neutral embedding; System 2: similarity) -> the method of the report per
recording (:func:`audiomoment.method.localize.localize_traces`, fast engine) -> moments
ranked across recordings.

Ranking across recordings. The report's moment score (mean posterior + 0.3 x peak of the
smoothed trace) is relative to its recording: every recording's best run has a posterior
near 1, whether or not the sound is there. The cross-recording score used here instead is
the moment's mean smoothed trace, calibrated against the query's own distribution over
the whole archive: ``z = (mean smoothed trace inside the moment - mu_q) / sigma_q``, with
``mu_q`` and ``sigma_q`` the mean and standard deviation of the query's trace over every
window of the archive. It is absolute (a recording without the sound scores low even if
its best run is clear) and comparable between queries (a z of 4 is 4 standard deviations
above what the query meets in this archive). ``ranking="report"`` ranks by the report's
score instead (the naive choice; the README compares the two on simulated data).

Only recordings that can still enter the top K are localised: a moment's mean smoothed
trace is at most its recording's largest trace value (smoothing is an average), so
recordings are visited in order of that bound and the search stops when the K-th best score
reaches the next bound. The answer equals localising every recording.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.index.scan import window_scores
from audiomoment.index.store import Snapshot
from audiomoment.method.localize import LocalizationResult, localize_traces

Ranking = Literal["calibrated", "report"]
RANKINGS: tuple[str, ...] = ("calibrated", "report")
#: Recordings localised per step of the bounded search.
LOCALIZE_STEP = 32


@dataclass(frozen=True)
class ArchiveMoment:
    """One moment found in the archive.

    recording_id, recording : the recording's id and name in the index. start_s, end_s :
    the moment, seconds. score : the cross-recording score used for ranking. z : the
    calibrated score (mean smoothed trace inside the moment, in standard deviations of the
    query's trace over the archive). report_score : the report's per-recording score.
    """

    recording_id: int
    recording: str
    start_s: float
    end_s: float
    score: float
    z: float
    report_score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "recording": self.recording,
            "start": round(self.start_s, 4),
            "end": round(self.end_s, 4),
            "score": round(self.score, 6),
            "z": round(self.z, 6),
            "report_score": round(self.report_score, 6),
        }


@dataclass
class ArchiveSearch:
    """The answer to one query: ranked moments and what it took."""

    moments: list[ArchiveMoment]
    system: int
    ranking: str
    windows_scanned: int
    recordings_localised: int
    trace_mean: float
    trace_std: float
    seconds: dict[str, float] = field(default_factory=dict)


def _unit(x: NDArray[np.floating], what: str) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.all(np.isfinite(v)) or norm == 0:
        raise InputError(f"{what}: must be finite and non-zero")
    return v / norm


def query_vectors(
    snapshot: Snapshot, query: NDArray[np.floating], system: int,
    neutral: NDArray[np.floating] | None = None,
) -> NDArray[np.float32]:
    """The vectors to score windows with: [q] (System 2) or [q, n] (System 1), unit length."""
    if system not in (1, 2):
        raise InputError(f"system must be 1 or 2, got {system!r}")
    q = _unit(query, "query embedding")
    if q.shape[0] != snapshot.spec.dim:
        raise InputError(f"query embedding: {q.shape[0]} values, the index holds "
                         f"{snapshot.spec.dim}-d embeddings")
    if system == 2:
        return q[None, :].astype(np.float32)
    if neutral is None:
        neutral = snapshot.vector("neutral")
    if neutral is None:
        raise InputError(
            f"{snapshot.root}: System 1 needs the neutral embedding, and this index has none "
            "(index with the text encoder or a neutral embedding, or use System 2)"
        )
    return np.stack([q, _unit(neutral, "neutral embedding")]).astype(np.float32)


def archive_traces(
    snapshot: Snapshot, vectors: NDArray[np.float32]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Every window's trace value: (N,) float64 and the recordings' row ``starts`` (R + 1,)."""
    scores, starts = window_scores(snapshot, vectors)
    trace = scores[:, 0].astype(np.float64)
    if vectors.shape[0] == 2:
        trace -= scores[:, 1]
    return trace, starts


def moment_means(
    smoothed: NDArray[np.float64], windows: NDArray[np.float64], hop_s: float
) -> NDArray[np.float64]:
    """Mean of ``smoothed`` (T,) over each window's frames; ``windows`` (K, >=2) in seconds."""
    if len(windows) == 0:
        return np.empty(0)
    csum = np.concatenate(([0.0], np.cumsum(smoothed)))
    first = np.floor(windows[:, 0] / hop_s + 1e-9).astype(np.int64)
    stop = np.ceil(windows[:, 1] / hop_s - 1e-9).astype(np.int64)
    stop = np.clip(np.maximum(stop, first + 1), 1, len(smoothed))
    first = np.clip(first, 0, stop - 1)
    return (csum[stop] - csum[first]) / (stop - first)


def search_archive(
    snapshot: Snapshot,
    query: NDArray[np.floating],
    *,
    system: int = 1,
    top: int = 10,
    neutral: NDArray[np.floating] | None = None,
    config: LocalizeConfig | None = None,
    ranking: Ranking = "calibrated",
    per_recording: int | None = None,
) -> ArchiveSearch:
    """The ``top`` best moments of the whole archive for one query embedding (dim,).

    ``system``: 1 (background contrast; the neutral embedding given or stored in the index)
    or 2. ``ranking``: "calibrated" (default, see the module docstring) or "report".
    ``per_recording``: most moments taken from one recording (None: the config's
    ``max_windows``).
    """
    config = config or LocalizeConfig()
    if ranking not in RANKINGS:
        raise InputError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    if len(snapshot) == 0:
        raise InputError(f"{snapshot.root}: the index is empty; add recordings with "
                         "`audiomoment index`")
    t0 = time.perf_counter()
    vectors = query_vectors(snapshot, query, system, neutral)
    trace, starts = archive_traces(snapshot, vectors)
    t1 = time.perf_counter()
    mu = float(trace.mean())
    sigma = float(trace.std()) or 1.0
    counts = np.diff(starts)
    usable = np.flatnonzero(counts >= 2)
    peak = np.full(len(counts), -np.inf)
    if len(usable):
        peak[usable] = np.maximum.reduceat(trace, starts[:-1][usable])
    if ranking == "calibrated":
        bound = (peak - mu) / sigma
    elif config.peak_weight >= 0:
        bound = 1.0 + config.peak_weight * peak
    else:  # no bound: localise every recording
        bound = np.where(np.isfinite(peak), np.inf, -np.inf)
    order = np.argsort(-bound, kind="stable")
    order = order[np.isfinite(bound[order])]
    cap = per_recording or config.max_windows
    found: list[ArchiveMoment] = []
    localised = 0
    hop = snapshot.spec.hop_s
    config_hop = config.with_(hop_s=hop) if config.hop_s != hop else config
    for a in range(0, len(order), LOCALIZE_STEP):
        if len(found) >= top and np.isfinite(bound[order[a]]):
            kth = sorted((m.score for m in found), reverse=True)[top - 1]
            if kth >= bound[order[a]]:
                break
        step = order[a : a + LOCALIZE_STEP]
        recs = [snapshot.recordings[int(i)] for i in step]
        results = localize_traces(
            [trace[starts[i] : starts[i + 1]] for i in step],
            [r.duration_s for r in recs], config_hop,
        )
        localised += len(step)
        for rec, res in zip(recs, results, strict=True):
            found.extend(_moments(rec.id, rec.name, res, mu, sigma, hop, ranking)[:cap])
    found.sort(key=lambda m: (-m.score, m.recording_id, m.start_s))
    t2 = time.perf_counter()
    return ArchiveSearch(
        moments=found[:top], system=system, ranking=ranking,
        windows_scanned=int(starts[-1]), recordings_localised=localised,
        trace_mean=mu, trace_std=sigma,
        seconds={"scan": t1 - t0, "localise": t2 - t1},
    )


def _moments(
    rec_id: int, name: str, result: LocalizationResult, mu: float, sigma: float, hop_s: float,
    ranking: str,
) -> list[ArchiveMoment]:
    windows = result.windows
    z = (moment_means(result.smoothed, windows, hop_s) - mu) / sigma
    out = []
    for (start, end, report_score), zk in zip(windows.tolist(), z.tolist(), strict=True):
        score = zk if ranking == "calibrated" else report_score
        if math.isfinite(score):
            out.append(ArchiveMoment(rec_id, name, start, end, score, zk, report_score))
    return out
