"""Searching an archive: one query -> the best moments across every recording, ranked.

Path of a query: its joint-space vector (text, an example clip, a moment of the index, or a
given embedding) -> one pass over every window of the index (:mod:`audiomoment.index.scan`)
-> per recording the trace of the chosen system (System 1: similarity to the query minus
similarity to the neutral embedding; System 2: similarity) -> the method of the report per
recording (:func:`audiomoment.method.localize.localize_traces`, fast engine) -> moments
ranked across recordings.

Ranking across recordings. The report's moment score (mean posterior + 0.3 x peak of the
smoothed trace) is relative to its recording: every recording's best run has a posterior
near 1, whether or not the sound is there. The cross-recording score used here instead is the
moment's peak smoothed trace, calibrated against the query's own distribution over the whole
archive: ``z = (max smoothed trace inside the moment - mu_q) / sigma_q``, with ``mu_q`` and
``sigma_q`` the mean and standard deviation of the query's trace over every window of the
archive. It is absolute (a recording without the sound scores low even if its best run is
clear) and comparable between queries (a z of 4 is 4 standard deviations above what the
query meets in this archive). ``ranking="report"`` ranks by the report's score instead (the
naive choice; the README compares the two on simulated data).

Only recordings that can still enter the top K are localised: a moment's score is at most
its recording's largest smoothed trace value, so recordings are visited in order of that
bound and the search stops when the K-th best score reaches the next bound. The answer
equals localising every recording.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.index.scan import window_scores
from audiomoment.index.store import Snapshot
from audiomoment.method.localize import LocalizationResult, localize_traces, smooth

Ranking = Literal["calibrated", "report"]
RANKINGS: tuple[str, ...] = ("calibrated", "report")
#: Recordings localised per step of the bounded search.
LOCALIZE_STEP = 32


@dataclass(frozen=True)
class ArchiveMoment:
    """One moment found in the archive.

    recording_id, recording : the recording's id and name in the index. start_s, end_s :
    the moment, seconds. score : the cross-recording score used for ranking. z : the
    calibrated score (peak smoothed trace inside the moment, in standard deviations of the
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


def query_matrix(
    snapshot: Snapshot, queries: NDArray[np.floating], system: int,
    neutral: NDArray[np.floating] | None = None,
) -> NDArray[np.float32]:
    """The vectors whose products with the windows are the traces, one per query (Q, dim):
    System 2 the unit query q, System 1 q - n with n the unit neutral embedding (the
    contrast trace (q - n) . a_t in one product per window)."""
    if system not in (1, 2):
        raise InputError(f"system must be 1 or 2, got {system!r}")
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    if q.shape[1] != snapshot.spec.dim:
        raise InputError(f"query embedding: {q.shape[1]} values, the index holds "
                         f"{snapshot.spec.dim}-d embeddings")
    rows = [_unit(v, "query embedding") for v in q]
    if system == 1:
        if neutral is None:
            neutral = snapshot.vector("neutral")
        if neutral is None:
            raise InputError(
                f"{snapshot.root}: System 1 needs the neutral embedding, and this index has "
                "none (index with the text encoder or a neutral embedding, or use System 2)"
            )
        n = _unit(neutral, "neutral embedding")
        rows = [r - n for r in rows]
    return np.stack(rows).astype(np.float32)


@dataclass(frozen=True)
class MomentTable:
    """Moments of several recordings' localisations as flat arrays (M,) each.

    recording : index into the snapshot's recordings. start_s, end_s : seconds.
    report_score : the report's per-recording score. peak : the moment's largest smoothed
    trace value.
    """

    recording: NDArray[np.int64]
    start_s: NDArray[np.float64]
    end_s: NDArray[np.float64]
    report_score: NDArray[np.float64]
    peak: NDArray[np.float64]


def moment_table(
    results: list[LocalizationResult], recordings: NDArray[np.int64], hop_s: float,
    per_recording: int,
) -> MomentTable:
    """The first ``per_recording`` moments of each result, with each moment's peak of the
    smoothed trace (one vectorised pass)."""
    windows = [r.windows[:per_recording] for r in results]
    counts = np.array([len(w) for w in windows], dtype=np.int64)
    if counts.sum() == 0:
        empty = np.empty(0)
        return MomentTable(np.empty(0, np.int64), empty, empty, empty, empty)
    rows = np.concatenate(windows)
    lengths = np.array([len(r.smoothed) for r in results], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    owner = np.repeat(np.arange(len(results)), counts)
    first = np.floor(rows[:, 0] / hop_s + 1e-9).astype(np.int64)
    stop = np.ceil(rows[:, 1] / hop_s - 1e-9).astype(np.int64)
    first = np.clip(first, 0, lengths[owner] - 1)
    stop = np.clip(np.maximum(stop, first + 1), 1, lengths[owner])
    smoothed = np.concatenate([r.smoothed for r in results] + [np.array([-np.inf])])
    bounds = np.stack([offsets[owner] + first, offsets[owner] + stop], axis=1).ravel()
    peak = np.maximum.reduceat(smoothed, bounds)[0::2]
    return MomentTable(recordings[owner], rows[:, 0], rows[:, 1], rows[:, 2], peak)


def ranked_moments(
    snapshot: Snapshot, table: MomentTable, mu: float, sigma: float, ranking: str, top: int,
) -> list[ArchiveMoment]:
    """The ``top`` moments of a table in the order of ``ranking`` (ties: recording id, then
    start)."""
    z = (table.peak - mu) / sigma
    score = z if ranking == "calibrated" else table.report_score
    ids = np.array([snapshot.recordings[i].id for i in table.recording.tolist()],
                   dtype=np.int64)
    order = np.lexsort((table.start_s, ids, -score))[:top]
    out = []
    for k in order.tolist():
        rec = snapshot.recordings[int(table.recording[k])]
        out.append(ArchiveMoment(rec.id, rec.name, float(table.start_s[k]),
                                 float(table.end_s[k]), float(score[k]), float(z[k]),
                                 float(table.report_score[k])))
    return out


def recording_peaks(
    trace: NDArray[np.float64], starts: NDArray[np.int64], sigma_frames: float
) -> NDArray[np.float64]:
    """Each recording's largest smoothed trace value (R,); -inf for fewer than 2 windows."""
    peaks = np.full(len(starts) - 1, -np.inf)
    for r, (a, b) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)):
        if b - a >= 2:
            peaks[r] = smooth(trace[a:b], sigma_frames).max()
    return peaks


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
    ``max_windows``). A batch of one of :func:`search_archive_many`.
    """
    return search_archive_many(
        snapshot, np.asarray(query)[None, :], system=system, top=top, neutral=neutral,
        config=config, ranking=ranking, per_recording=per_recording,
    )[0]


def search_archive_many(
    snapshot: Snapshot,
    queries: NDArray[np.floating],
    *,
    system: int = 1,
    top: int = 10,
    neutral: NDArray[np.floating] | None = None,
    config: LocalizeConfig | None = None,
    ranking: Ranking = "calibrated",
    per_recording: int | None = None,
    queries_per_pass: int = 64,
) -> list[ArchiveSearch]:
    """:func:`search_archive` for Q queries (Q, dim): one pass over the archive scores up to
    ``queries_per_pass`` of them at once."""
    config = config or LocalizeConfig()
    if ranking not in RANKINGS:
        raise InputError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    if len(snapshot) == 0:
        raise InputError(f"{snapshot.root}: the index is empty; add recordings with "
                         "`audiomoment index`")
    q = np.atleast_2d(np.asarray(queries))
    out: list[ArchiveSearch] = []
    for a in range(0, len(q), queries_per_pass):
        t0 = time.perf_counter()
        vectors = query_matrix(snapshot, q[a : a + queries_per_pass], system, neutral)
        scores, starts = window_scores(snapshot, vectors)
        scan_s = (time.perf_counter() - t0) / len(vectors)
        for j in range(len(vectors)):
            trace = np.ascontiguousarray(scores[:, j])
            found = _rank(snapshot, trace, starts, top, config, ranking, per_recording)
            found.system = system
            found.seconds["scan"] = scan_s
            out.append(found)
    return out


def _rank(
    snapshot: Snapshot, trace: NDArray[np.float64], starts: NDArray[np.int64], top: int,
    config: LocalizeConfig, ranking: str, per_recording: int | None,
) -> ArchiveSearch:
    """The best moments of one query from its trace over the archive (N,)."""
    t1 = time.perf_counter()
    mu = float(trace.mean())
    sigma = float(trace.std()) or 1.0
    peak = recording_peaks(trace, starts, config.sigma_frames)
    if ranking == "calibrated":
        bound = (peak - mu) / sigma
    elif config.peak_weight >= 0:
        bound = 1.0 + config.peak_weight * peak
    else:  # no bound: localise every recording
        bound = np.where(np.isfinite(peak), np.inf, -np.inf)
    order = np.argsort(-bound, kind="stable")
    order = order[bound[order] > -np.inf]  # recordings of fewer than 2 windows: no moments
    cap = per_recording or config.max_windows
    tables = [moment_table([], np.empty(0, np.int64), snapshot.spec.hop_s, 1)]
    best: NDArray[np.float64] = np.empty(0)
    localised = 0
    hop = snapshot.spec.hop_s
    config_hop = config.with_(hop_s=hop) if config.hop_s != hop else config
    for a in range(0, len(order), LOCALIZE_STEP):
        next_bound = bound[order[a]]
        if (len(best) >= top and np.isfinite(next_bound)
                and np.partition(best, len(best) - top)[len(best) - top] >= next_bound):
            break
        step = order[a : a + LOCALIZE_STEP]
        results = localize_traces(
            [trace[starts[i] : starts[i + 1]] for i in step],
            [snapshot.recordings[int(i)].duration_s for i in step], config_hop,
        )
        localised += len(step)
        table = moment_table(results, step.astype(np.int64), hop, cap)
        tables.append(table)
        step_scores = ((table.peak - mu) / sigma if ranking == "calibrated"
                       else table.report_score)
        best = np.concatenate((best, step_scores[np.isfinite(step_scores)]))
    merged = MomentTable(*(np.concatenate([getattr(tb, f) for tb in tables])
                           for f in ("recording", "start_s", "end_s", "report_score", "peak")))
    found = ranked_moments(snapshot, merged, mu, sigma, ranking, top)
    t2 = time.perf_counter()
    return ArchiveSearch(
        moments=found, system=0, ranking=ranking,
        windows_scanned=int(starts[-1]), recordings_localised=localised,
        trace_mean=mu, trace_std=sigma,
        seconds={"localise": t2 - t1},
    )


def archive_record(label: str, found: ArchiveSearch) -> dict[str, Any]:
    """The JSON record of one archive search: what ``search --db --json`` prints and the
    server's search returns."""
    return {
        "query": label,
        "system": found.system,
        "ranking": found.ranking,
        "moments": [m.to_dict() for m in found.moments],
    }
