"""Corpus-level moment retrieval: one ranked list of (recording, moment) per query over a
whole collection, scored as video corpus moment retrieval scores it (the TVR benchmark).

Moment R@K at IoU t: the share of queries for which at least one of the top K moments lies
in the query's recording and overlaps one of its ground-truth windows with IoU >= t (the
best-matching window). Recording R@K: the share of queries whose recording is among the
first K distinct recordings of the ranked list. Values in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from audiomoment.evaluation.metrics import cross_iou

MOMENT_KS: tuple[int, ...] = (1, 5, 10, 100)
RECORDING_KS: tuple[int, ...] = (1, 5, 10)
IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.7)


@dataclass(frozen=True)
class RankedMoment:
    """One entry of a query's ranked list: recording id, start and end in seconds."""

    recording: str
    start_s: float
    end_s: float


def best_iou(moment: RankedMoment, gt_windows: Sequence[Sequence[float]]) -> float:
    """IoU of a moment with the best-matching ground-truth window (0 for a zero union)."""
    if not gt_windows:
        return 0.0
    spans = np.asarray([[moment.start_s, moment.end_s]], dtype=np.float64)
    gt = np.asarray(gt_windows, dtype=np.float64)[:, :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = cross_iou(spans, gt)[0]
    return float(np.nanmax(np.where(np.isfinite(iou), iou, 0.0), initial=0.0))


def corpus_recall(
    annotations: Sequence[Mapping],
    ranked: Mapping[str, Sequence[RankedMoment]],
    moment_ks: Sequence[int] = MOMENT_KS,
    recording_ks: Sequence[int] = RECORDING_KS,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """Corpus R@K of ranked lists against annotation rows.

    ``annotations``: rows with ``qid``, ``vid``, ``relevant_windows``; ``ranked``: per qid
    (as a string), the moments best first. A query without a list counts as a miss.
    Returns ``{"R@K IoU=t": ..., "recording R@K": ..., "queries": n}``.
    """
    n = len(annotations)
    hits = {(k, t): 0 for k in moment_ks for t in thresholds}
    rec_hits = dict.fromkeys(recording_ks, 0)
    for row in annotations:
        moments = list(ranked.get(str(row["qid"]), ()))
        vid = str(row["vid"])
        gt = row.get("relevant_windows") or []
        # first rank at which each threshold is met
        first_hit = dict.fromkeys(thresholds, None)
        for rank, m in enumerate(moments[: max(moment_ks)], 1):
            if m.recording != vid:
                continue
            iou = best_iou(m, gt)
            for t in thresholds:
                if first_hit[t] is None and iou >= t:
                    first_hit[t] = rank
        for k in moment_ks:
            for t in thresholds:
                if first_hit[t] is not None and first_hit[t] <= k:
                    hits[(k, t)] += 1
        distinct: list[str] = []
        for m in moments:
            if m.recording not in distinct:
                distinct.append(m.recording)
            if len(distinct) >= max(recording_ks):
                break
        for k in recording_ks:
            if vid in distinct[:k]:
                rec_hits[k] += 1
    out: dict[str, float] = {}
    for t in thresholds:
        for k in moment_ks:
            out[f"R@{k} IoU={t:g}"] = 100.0 * hits[(k, t)] / n if n else 0.0
    for k in recording_ks:
        out[f"recording R@{k}"] = 100.0 * rec_hits[k] / n if n else 0.0
    out["queries"] = float(n)
    return out
