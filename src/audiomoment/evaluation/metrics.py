"""Moment-retrieval metrics of the QVHighlights standalone evaluation, vectorised over queries.

The numbers are those of the standard evaluation as lighthouse and the DCASE 2026 Task 6 run it,
to the last printed digit:

* Only queries present in both the ground truth and the predictions are scored (the standard
  ``match_number=False`` behaviour). How many were left out on either side is reported in the
  ``"audiomoment"`` block.
* Block ``"full"`` keeps the ground-truth windows with 0 < length <= 1500 s and drops the queries
  left without any window (lighthouse's rule; the original QVHighlights evaluation skipped the
  filter for its [0, 150] range, which gives the same numbers whenever no window has zero length).
  The optional ``"short"`` (0, 10], ``"middle"`` (10, 30] and ``"long"`` (30, 150] blocks use the
  same rule. A query whose ground truth has no window is therefore dropped, never scored with
  zero positives (which gives NaN in the standard code).
* R1@t: the first window in file order against the ground-truth window of highest IoU with it;
  the paired IoU is ``inter / (max(end) - min(start))``; R1@t = 100 * mean(IoU >= t).
* mAP@t: the first 10 windows in file order, stably sorted by descending score, greedily
  matched to the ground-truth windows at each threshold; VOC-2011 interpolated AP per query,
  averaged over queries, then over the ten thresholds for ``"average"``. Each query's AP is
  bit-identical to the standard per-query computation (NumPy's summation order included), and
  queries are averaged in prediction order.

Judgement calls, where the standard code crashes or is machine dependent:

* Among ground-truth windows of equal IoU with a prediction, the greedy matching visits the one
  of highest index first: that is what ``argsort()[::-1]`` does with NumPy's small-array
  insertion sort, and the stable sort used here makes it so on every machine.
* A prediction row with an empty window list is scored as a miss (AP 0, top-1 IoU 0); the
  standard code fails on it.
* Prediction rows are validated by :func:`audiomoment.io.predictions.inspect_predictions`, the
  rules every command uses: duplicate qids, non-finite numbers and windows with start > end
  are refused (:class:`~audiomoment.errors.InputError`). A zero-length predicted window
  (start = end) is scored as the standard code scores it: both IoUs are ``inter / union``
  with ``inter`` = 0 and a union of at least the ground-truth window's length, which is > 0
  in every block, so its IoU is 0 (a miss for R1, a false positive for mAP). How many there
  were is reported in the ``"audiomoment"`` block.
* Windows given as [start, end] without a score (every window of the rows): R1@t is computed;
  mAP needs a ranking by score and is None (unavailable) in every block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.io.predictions import check_predictions as check_predictions
from audiomoment.io.predictions import inspect_predictions
from audiomoment.io.predictions import read_predictions as read_predictions

IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
"""0.5, 0.55, ..., 0.95 as the standard evaluation rounds them."""

THRESHOLD_KEYS: tuple[str, ...] = tuple(str(t) for t in IOU_THRESHOLDS)
MAX_PRED_WINDOWS = 10
FULL_RANGE: tuple[float, float] = (0.0, 1500.0)
LENGTH_RANGES: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
}
HEADLINE_KEYS: dict[str, str] = {
    "R1@0.5": "MR-full-R1@0.5",
    "R1@0.7": "MR-full-R1@0.7",
    "mAP@0.5": "MR-full-mAP@0.5",
    "mAP@0.75": "MR-full-mAP@0.75",
    "mAP": "MR-full-mAP",
}

Float = NDArray[np.float64]
Bool = NDArray[np.bool_]

# ---------------------------------------------------------------------------------------------
# IoU and average precision on padded arrays
# ---------------------------------------------------------------------------------------------


def cross_iou(spans1: Float, spans2: Float) -> Float:
    """IoU of every span of ``spans1`` with every span of ``spans2``, batched.

    ``spans1``: (..., N, 2), ``spans2``: (..., M, 2) as [start, end]. Returns (..., N, M) with
    union = len1 + len2 - inter, the standard formula (no guard: a union of 0 gives NaN).
    """
    s1, e1 = spans1[..., :, None, 0], spans1[..., :, None, 1]
    s2, e2 = spans2[..., None, :, 0], spans2[..., None, :, 1]
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0, None)
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union


def paired_iou(spans1: Float, spans2: Float) -> Float:
    """The standard evaluation's paired IoU: inter / (max(end) - min(start)), 0 where that is 0.

    ``spans1``, ``spans2``: (Q, 2) valid windows (start <= end), in seconds. Returns (Q,)
    float64. Where the hull is > 0 the value is the plain quotient ``inter / hull``. Where it is
    0 (two zero-length windows at the same instant) the intersection is 0 too and the IoU is
    0, as in the standard ``compute_temporal_iou_batch_paired`` (its ``where=union != 0``):
    the quotient divides the intersection, clipped at 0, by 1 there instead of by 0.
    """
    inter = np.maximum(
        0.0, np.minimum(spans1[:, 1], spans2[:, 1]) - np.maximum(spans1[:, 0], spans2[:, 0])
    )
    hull = np.maximum(spans1[:, 1], spans2[:, 1]) - np.minimum(spans1[:, 0], spans2[:, 0])
    return inter / np.where(hull > 0, hull, 1.0)


def top1_iou(top: Float, has_pred: Bool, gt: Float, gt_mask: Bool) -> Float:
    """Paired IoU of each query's first window with its best-matching ground-truth window.

    ``top``: (Q, 2) first predicted window in file order; ``has_pred``: (Q,) False for an empty
    prediction (IoU 0); ``gt``: (Q, G, 2) padded windows, ``gt_mask``: (Q, G) with at least one
    True per row. The ground-truth window is the first argmax of the cross IoU. Returns (Q,).
    """
    iou = cross_iou(top[:, None, :], gt)[:, 0, :]
    best = np.argmax(np.where(gt_mask, iou, -np.inf), axis=1)
    chosen = gt[np.arange(len(gt)), best]
    return np.where(has_pred, paired_iou(top, chosen), 0.0)


def greedy_true_positives(
    iou: Float, pred_mask: Bool, gt_mask: Bool, thresholds: Sequence[float]
) -> Bool:
    """Greedy matching of ranked predictions to ground-truth windows at every threshold.

    ``iou``: (Q, P, G) cross IoU of the ranked predictions with the ground truth;
    ``pred_mask``: (Q, P); ``gt_mask``: (Q, G). Returns ``tp``: (T, Q, P).

    Rank by rank, a prediction visits the ground-truth windows by descending IoU and takes the
    first one not yet taken at this threshold, stopping at the first IoU below the threshold.
    That is the unmatched window of highest IoU among those >= the threshold; ties go to the
    highest index (the standard ``argsort()[::-1]`` order of a stable sort).
    """
    n_q, n_p, n_g = iou.shape
    thr = np.asarray(thresholds, dtype=np.float64)[:, None, None]
    locked = np.zeros((len(thr), n_q, n_g), dtype=bool)
    tp = np.zeros((len(thr), n_q, n_p), dtype=bool)
    t_idx, q_idx = np.ogrid[: len(thr), :n_q]
    for p in range(n_p):
        row = iou[:, p, :]
        free = (row >= thr) & ~locked & (gt_mask & pred_mask[:, p, None])
        hit = free.any(axis=-1)
        key = np.where(free, row, -np.inf)[..., ::-1]
        pick = n_g - 1 - np.argmax(key, axis=-1)
        locked[t_idx, q_idx, pick] |= hit
        tp[:, :, p] = hit
    return tp


def sum_like_numpy(terms: Float, counts: NDArray[np.int64]) -> Float:
    """``np.sum`` of the first ``counts`` terms of each row, bit for bit, for rows of <= 15.

    ``terms``: (..., K) with K <= 15 and zeros after each row's first ``counts`` entries;
    ``counts``: (...). NumPy adds fewer than 8 numbers one after another, and 8 to 15 numbers
    as ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)) followed by the rest in order; the
    standard evaluation sums each query's AP terms with ``np.sum``. Returns (...).
    """
    k = terms.shape[-1]
    if k > 15:
        raise ValueError(f"at most 15 terms per row, got {k}")
    if k < 8:
        terms = np.concatenate([terms, np.zeros((*terms.shape[:-1], 8 - k))], axis=-1)
    t = [terms[..., i] for i in range(terms.shape[-1])]
    in_order = np.zeros(terms.shape[:-1])
    for term in t:
        in_order = in_order + term
    tree = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
    for term in t[8:]:
        tree = tree + term
    return np.where(counts >= 8, tree, in_order)


def interpolated_ap(tp: Bool, pred_mask: Bool, num_gt: Float) -> Float:
    """VOC-2011 interpolated average precision of ranked hits.

    ``tp``: (T, Q, P) hits; ``pred_mask``: (Q, P) real predictions (the rest are padding);
    ``num_gt``: (Q,) ground-truth windows per query, > 0. Returns (T, Q).

    mprec = [0, precision, 0] made non-increasing from the right, mrec = [0, recall, 1];
    AP = sum over the points where recall changes of (mrec[i] - mrec[i-1]) * mprec[i]. Padding
    keeps the last recall and has precision 0, so it adds no term and lifts no maximum.
    """
    fp = pred_mask & ~tp
    tp_cum = np.cumsum(tp, axis=-1).astype(np.float64)
    fp_cum = np.cumsum(fp, axis=-1).astype(np.float64)
    recall = tp_cum / num_gt[:, None]
    seen = tp_cum + fp_cum
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=pred_mask & (seen > 0))
    edge = np.zeros((*tp.shape[:-1], 1))
    mprec = np.concatenate([edge, precision, edge], axis=-1)
    mprec = np.maximum.accumulate(mprec[..., ::-1], axis=-1)[..., ::-1]
    mrec = np.concatenate([edge, recall, edge + 1.0], axis=-1)
    step = mrec[..., 1:] - mrec[..., :-1]
    changed = mrec[..., 1:] != mrec[..., :-1]
    terms = np.where(changed, step * mprec[..., 1:], 0.0)
    order = np.argsort(~changed, axis=-1, kind="stable")
    packed = np.take_along_axis(terms, order, axis=-1)
    return sum_like_numpy(packed, changed.sum(axis=-1))


def average_precision(
    pred: Float, pred_mask: Bool, gt: Float, gt_mask: Bool, thresholds: Sequence[float]
) -> Float:
    """Per-query AP at each IoU threshold.

    ``pred``: (Q, P, 3) [start, end, score] rows already in ranking order (at most 10);
    ``pred_mask``: (Q, P); ``gt``: (Q, G, 2); ``gt_mask``: (Q, G) with at least one True per
    row. Returns (Q, T), C-contiguous, so that ``.mean(0)`` adds queries in order.
    """
    iou = cross_iou(pred[..., :2], gt)
    tp = greedy_true_positives(iou, pred_mask, gt_mask, thresholds)
    ap = interpolated_ap(tp, pred_mask, gt_mask.sum(axis=1).astype(np.float64))
    return np.ascontiguousarray(ap.T)


# ---------------------------------------------------------------------------------------------
# From rows to padded arrays
# ---------------------------------------------------------------------------------------------


def pad_rows(values: Float, counts: NDArray[np.int64], fill: Sequence[float]) -> tuple[Float, Bool]:
    """Scatter consecutive runs of rows into a padded batch.

    ``values``: (N, k), the rows of query q being the ``counts[q]`` rows after those of the
    queries before it; ``counts``: (Q,). Returns (Q, M, k) filled with ``fill`` where there is
    no row, and the (Q, M) mask of real rows; M = max(counts), at least 1.
    """
    n_q = len(counts)
    width = max(int(counts.max(initial=0)), 1)
    query = np.repeat(np.arange(n_q), counts)
    position = np.arange(len(values)) - (np.cumsum(counts) - counts)[query]
    out = np.empty((n_q, width, values.shape[1]))
    out[:] = np.asarray(fill, dtype=np.float64)
    out[query, position] = values
    mask = np.zeros((n_q, width), dtype=bool)
    mask[query, position] = True
    return out, mask


def _float_rows(rows: list[Any], width: int, what: str) -> Float:
    """(N, width) float64 array of a list of number lists, or :class:`InputError`."""
    if not rows:
        return np.empty((0, width))
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != width:
        raise InputError(f"{what}: every window must be a list of {width} numbers")
    return arr


def _qid(row: Any, what: str) -> str | int:
    if not isinstance(row, dict | Mapping) or "qid" not in row:
        raise InputError(f"{what}: every row must be an object with a 'qid'")
    qid = row["qid"]
    if isinstance(qid, bool) or not isinstance(qid, str | int):
        raise InputError(f"{what}: qid must be a string or an integer, got {qid!r}")
    return qid


def _windows(row: Mapping, field: str, what: str) -> list:
    """The window list of a ground-truth row."""
    windows = row.get(field)
    if not isinstance(windows, list):
        raise InputError(f"{what}: qid {row['qid']!r}: '{field}' must be a list of windows")
    return windows


@dataclass(frozen=True)
class Pairs:
    """Queries with both a prediction and a ground-truth row, in prediction order.

    Q is the number of shared queries, P <= 10 the most windows kept per prediction and N the
    number of ground-truth windows of the Q queries together.

    Attributes
    ----------
    index : (Q,) int, position of each query's row in the predictions.
    qids : the Q qids.
    top : (Q, 2) first predicted window in file order.
    has_pred : (Q,) False where the prediction has no window.
    pred : (Q, P, 3) the first <= 10 windows, stably sorted by descending score.
    pred_mask : (Q, P) real windows of ``pred`` (the rest is padding).
    gt_windows : (N, 2) every ground-truth window, query after query.
    gt_counts : (Q,) ground-truth windows per query.
    n_ground_truth, n_predictions : rows given on each side.
    scored : False when the windows are [start, end] without a score (``pred`` then holds
        score 0 and file order; mAP is unavailable).
    n_zero_length : predicted windows with start = end, over every prediction row.
    """

    index: NDArray[np.int64]
    qids: list[str | int]
    top: Float
    has_pred: Bool
    pred: Float
    pred_mask: Bool
    gt_windows: Float
    gt_counts: NDArray[np.int64]
    n_ground_truth: int
    n_predictions: int
    scored: bool = True
    n_zero_length: int = 0


def pair_rows(ground_truth: Sequence[Mapping], predictions: Sequence[Mapping]) -> Pairs:
    """Match prediction rows to ground-truth rows by qid and pack both into arrays.

    Raises :class:`InputError` for a duplicate qid, a malformed row or window, a non-finite
    number or a predicted window with start > end: the prediction rows are checked by
    :func:`audiomoment.io.predictions.inspect_predictions` (source ``"predictions"``, rows
    numbered from 1).
    """
    check = inspect_predictions(predictions, "predictions", stop_at_first_error=True)
    check.raise_first()
    width = 2 if check.scored is False else 3
    gt_by_qid: dict[str | int, Mapping] = {}
    for i, row in enumerate(ground_truth):
        qid = _qid(row, f"ground truth row {i + 1}")
        if qid in gt_by_qid:
            raise InputError(f"ground truth: duplicate qid {qid!r}")
        gt_by_qid[qid] = row
    index: list[int] = []
    qids: list[str | int] = []
    pred_rows: list[list] = []
    gt_rows: list[list] = []
    for i, row in enumerate(predictions):
        qid = row["qid"]
        windows = row["pred_relevant_windows"]
        if qid in gt_by_qid:
            index.append(i)
            qids.append(qid)
            pred_rows.append(windows[:MAX_PRED_WINDOWS])
            gt_rows.append(_windows(gt_by_qid[qid], "relevant_windows", "ground truth"))
    pred_counts = np.array([len(w) for w in pred_rows], dtype=np.int64)
    flat_pred = _float_rows([w for ws in pred_rows for w in ws], width, "predictions")
    if width == 2:  # no score: every window scores 0, so the stable sort keeps file order
        flat_pred = np.concatenate([flat_pred, np.zeros((len(flat_pred), 1))], axis=1)
    padded, mask = pad_rows(flat_pred, pred_counts, (0.0, 1.0, 0.0))
    has_pred = pred_counts > 0
    top = padded[:, 0, :2].copy()
    neg_score = np.where(mask, -padded[..., 2], np.inf)
    order = np.argsort(neg_score, axis=1, kind="stable")
    gt_counts = np.array([len(w) for w in gt_rows], dtype=np.int64)
    return Pairs(
        index=np.array(index, dtype=np.int64),
        qids=qids,
        top=top,
        has_pred=has_pred,
        pred=np.take_along_axis(padded, order[..., None], axis=1),
        pred_mask=np.take_along_axis(mask, order, axis=1),
        gt_windows=_float_rows([w for ws in gt_rows for w in ws], 2, "ground truth"),
        gt_counts=gt_counts,
        n_ground_truth=len(ground_truth),
        n_predictions=len(predictions),
        scored=width == 3,
        n_zero_length=check.n_zero_length,
    )


@dataclass(frozen=True)
class QueryScores:
    """Per-query scores of one length block (Q queries kept, in prediction order).

    Attributes
    ----------
    index : (Q,) int, position of each query's row in the predictions.
    qids : the Q qids.
    ap : (Q, T) average precision at each of the T IoU thresholds, in [0, 1]; NaN when the
        windows carry no score.
    top_iou : (Q,) paired IoU of the first predicted window with its best ground-truth window.
    scored : False when the windows carry no score (no mAP).
    """

    index: NDArray[np.int64]
    qids: list[str | int]
    ap: Float
    top_iou: Float
    scored: bool = True


def score_block(pairs: Pairs, length_range: tuple[float, float] = FULL_RANGE) -> QueryScores:
    """Score the queries keeping their ground-truth windows with lo < length <= hi.

    Queries left without a window are dropped.
    """
    lo, hi = length_range
    lengths = pairs.gt_windows[:, 1] - pairs.gt_windows[:, 0]
    keep = (lo < lengths) & (lengths <= hi)
    owner = np.repeat(np.arange(len(pairs.gt_counts)), pairs.gt_counts)
    counts = np.bincount(owner[keep], minlength=len(pairs.gt_counts))
    kept = np.flatnonzero(counts > 0)
    gt, gt_mask = pad_rows(pairs.gt_windows[keep], counts[kept], (0.0, 1.0))
    if pairs.scored:
        ap = average_precision(
            pairs.pred[kept], pairs.pred_mask[kept], gt, gt_mask, IOU_THRESHOLDS
        )
    else:
        ap = np.full((len(kept), len(IOU_THRESHOLDS)), np.nan)
    iou = top1_iou(pairs.top[kept], pairs.has_pred[kept], gt, gt_mask)
    return QueryScores(
        index=pairs.index[kept], qids=[pairs.qids[i] for i in kept], ap=ap, top_iou=iou,
        scored=pairs.scored,
    )


def score_queries(
    ground_truth: Sequence[Mapping],
    predictions: Sequence[Mapping],
    length_range: tuple[float, float] = FULL_RANGE,
) -> QueryScores:
    """Per-query AP and top-1 IoU of the queries of one length block (default: ``"full"``)."""
    return score_block(pair_rows(ground_truth, predictions), length_range)


# ---------------------------------------------------------------------------------------------
# Metrics dictionaries
# ---------------------------------------------------------------------------------------------


def _percent(value: float) -> float:
    return float(f"{100 * value:.2f}")


def block_metrics(scores: QueryScores) -> dict[str, dict[str, float | None]]:
    """{"MR-mAP": {"0.5": .., ..., "0.95": .., "average": ..}, "MR-R1": {"0.5": .., ...}}.

    Percentages rounded to 2 decimals as the standard evaluation prints them; None for every
    value of a block without queries, and for the mAP values of windows without a score.
    """
    if len(scores.qids) == 0:
        return {
            "MR-mAP": dict.fromkeys((*THRESHOLD_KEYS, "average")),
            "MR-R1": dict.fromkeys(THRESHOLD_KEYS),
        }
    mean_ap: dict[str, float | None] = dict.fromkeys((*THRESHOLD_KEYS, "average"))
    if scores.scored:
        ap_by_threshold = scores.ap.mean(0)
        mean_ap = {k: _percent(v) for k, v in zip(THRESHOLD_KEYS, ap_by_threshold, strict=True)}
        mean_ap["average"] = _percent(np.mean(ap_by_threshold))
    r1: dict[str, float | None] = {
        k: float(f"{np.mean(scores.top_iou >= t) * 100:.2f}")
        for k, t in zip(THRESHOLD_KEYS, IOU_THRESHOLDS, strict=True)
    }
    return {"MR-mAP": mean_ap, "MR-R1": r1}


def evaluate(
    ground_truth: Sequence[Mapping],
    predictions: Sequence[Mapping],
    *,
    length_blocks: bool = False,
) -> dict:
    """Moment-retrieval metrics of ``predictions`` against ``ground_truth``.

    Parameters
    ----------
    ground_truth : rows with ``qid`` and ``relevant_windows`` [[start, end], ...].
    predictions : rows with ``qid`` and ``pred_relevant_windows`` [[start, end, score], ...],
        best first, or [start, end] windows without a score (R1 only); checked by
        :func:`audiomoment.io.predictions.inspect_predictions` (a ``delta``, when present,
        must be a finite number). Extra fields such as this project's ``delta`` do not enter
        the metrics; the delta breakdown is
        :func:`audiomoment.reporting.tables.evaluate_with_breakdown`.
    length_blocks : also compute the QVHighlights ``"short"``, ``"middle"`` and ``"long"``
        blocks (and their ``MR-<name>-mAP`` entries in ``"brief"``).

    Returns
    -------
    dict, JSON-serialisable: ``"brief"`` (sorted keys), ``"full"`` (and the length blocks),
    ``"audiomoment"`` (counts; ``mean_iou_top1``, the mean paired IoU of the first window
    in percent with 2 decimals; ``windows_scored``, False for [start, end] windows, whose mAP
    values are then None; ``n_zero_length_windows``). All metric values are percentages with
    2 decimals.

    Raises
    ------
    InputError
        On malformed rows or when no query is left to score.
    """
    pairs = pair_rows(ground_truth, predictions)
    full = score_block(pairs, FULL_RANGE)
    if len(full.qids) == 0:
        raise InputError(
            "evaluation: no query has both a prediction and a ground-truth window "
            f"of length in ({FULL_RANGE[0]:g}, {FULL_RANGE[1]:g}] s"
        )
    blocks = {"full": block_metrics(full)}
    if length_blocks:
        for name, length_range in LENGTH_RANGES.items():
            blocks[name] = block_metrics(score_block(pairs, length_range))
    brief = {
        "MR-full-mAP": blocks["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": blocks["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": blocks["full"]["MR-mAP"]["0.75"],
        "MR-full-R1@0.5": blocks["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": blocks["full"]["MR-R1"]["0.7"],
    }
    for name in LENGTH_RANGES if length_blocks else ():
        brief[f"MR-{name}-mAP"] = blocks[name]["MR-mAP"]["average"]
    metrics: dict[str, Any] = {"brief": dict(sorted(brief.items()))}
    metrics.update(sorted(blocks.items()))
    gt_qids = {row["qid"] for row in ground_truth}
    pred_qids = {row["qid"] for row in predictions}
    metrics["audiomoment"] = {
        "n_queries": len(full.qids),
        "n_ground_truth": pairs.n_ground_truth,
        "n_predictions": pairs.n_predictions,
        "n_predictions_without_ground_truth": len(pred_qids - gt_qids),
        "n_ground_truth_without_prediction": len(gt_qids - pred_qids),
        "n_dropped_without_window": len(pairs.qids) - len(full.qids),
        "n_empty_predictions": int((~pairs.has_pred).sum()),
        "mean_iou_top1": _percent(np.mean(full.top_iou)),
        "windows_scored": pairs.scored,
        "n_zero_length_windows": pairs.n_zero_length,
    }
    return metrics
