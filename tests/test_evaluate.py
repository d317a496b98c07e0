"""Tests of the moment-retrieval metrics: oracle parity, hand-computed cases, a slow reference."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiomoment.errors import InputError
from audiomoment.evaluation.metrics import (
    FULL_RANGE,
    IOU_THRESHOLDS,
    LENGTH_RANGES,
    THRESHOLD_KEYS,
    evaluate,
    score_queries,
    sum_like_numpy,
)
from audiomoment.io.predictions import (
    check_predictions,
    inspect_predictions,
    make_row,
    read_prediction_file,
    read_predictions,
)
from audiomoment.reporting.tables import evaluate_with_breakdown
from audiomoment.reporting.text import format_delta_breakdown, format_table, headline


def _shared_data() -> Path:
    env = os.environ.get("AUDIOMOMENT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


ORACLE = _shared_data() / "qvhighlights_oracle"


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def oracle() -> tuple[list[dict], list[dict], dict]:
    if not ORACLE.is_dir():
        pytest.skip(
            f"oracle data not found at {ORACLE} (set AUDIOMOMENT_SHARED_DATA to the folder "
            "holding qvhighlights_oracle/)"
        )
    ground_truth = _jsonl(ORACLE / "highlight_val_release.jsonl")
    predictions = _jsonl(ORACLE / "sample_val_preds.jsonl")
    expected = json.loads((ORACLE / "sample_val_preds_metrics_raw.json").read_text())
    return ground_truth, predictions, expected


def gt_row(qid: Any, windows: list[list[float]], duration: float = 150.0) -> dict:
    return {"qid": qid, "query": "q", "vid": "v", "duration": duration, "relevant_windows": windows}


def pred_row(qid: Any, windows: list[list[float]], **extra: Any) -> dict:
    return {"qid": qid, "query": "q", "vid": "v", "pred_relevant_windows": windows, **extra}


def flat(value: float) -> dict[str, float]:
    """Every threshold at the same value."""
    return dict.fromkeys(THRESHOLD_KEYS, value)


# ---------------------------------------------------------------------------------------------
# 1. Parity with the published metrics of the QVHighlights sample predictions
# ---------------------------------------------------------------------------------------------


def test_oracle_full_block_and_brief(oracle: tuple[list[dict], list[dict], dict]) -> None:
    ground_truth, predictions, expected = oracle
    # The oracle's "full" block was computed with the original [0, 150] rule, which does not
    # filter. Every ground-truth window here has 0 < length <= 150, so lighthouse's (0, 1500]
    # filter keeps every window and every query, and both rules give the same numbers.
    lengths = [e - s for row in ground_truth for s, e in row["relevant_windows"]]
    assert min(lengths) > 0 and max(lengths) <= 150

    metrics = evaluate(ground_truth, predictions)
    assert metrics["full"] == expected["full"]
    for key in ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5"):
        assert metrics["brief"][key] == expected["brief"][key]
    assert metrics["brief"]["MR-full-mAP@0.75"] == expected["brief"]["MR-full-mAP@0.75"]
    assert list(metrics["brief"]) == sorted(metrics["brief"])

    gt_qids = {row["qid"] for row in ground_truth}
    pred_qids = {row["qid"] for row in predictions}
    extra = metrics["audiomoment"]
    assert extra["n_queries"] == len(gt_qids & pred_qids)
    assert extra["n_predictions_without_ground_truth"] == len(pred_qids - gt_qids)
    assert extra["n_dropped_without_window"] == 0
    assert "delta_breakdown" not in metrics  # the sample predictions carry no delta
    json.dumps(metrics, allow_nan=False)


def test_oracle_length_blocks(oracle: tuple[list[dict], list[dict], dict]) -> None:
    ground_truth, predictions, expected = oracle
    metrics = evaluate(ground_truth, predictions, length_blocks=True)
    for name in ("full", *LENGTH_RANGES):
        assert metrics[name] == expected[name], name
    for key, value in metrics["brief"].items():
        assert value == expected["brief"][key], key
    assert set(metrics["brief"]) == {k for k in expected["brief"] if k.startswith("MR-")}


def test_oracle_predictions_file_reads_with_a_duration_warning(
    oracle: tuple[list[dict], list[dict], dict],
) -> None:
    ground_truth, predictions, _ = oracle
    messages: list[str] = []
    annotations = {str(row["qid"]): row for row in ground_truth}
    rows = read_predictions(
        ORACLE / "sample_val_preds.jsonl", annotations, on_warning=messages.append
    )
    assert rows == predictions
    # Counted here from the files: windows ending after their query's duration (a few of
    # the recordings are shorter than 150 s), the rows holding them, the first such line.
    late = [
        (line, sum(w[1] > annotations[str(row["qid"])]["duration"]
                   for w in row["pred_relevant_windows"]))
        for line, row in enumerate(predictions, start=1)
    ]
    late = [(line, n) for line, n in late if n]
    assert late  # the sample has some
    expected = (f"{sum(n for _, n in late)} window(s) in {len(late)} row(s) end after the "
                f"query's duration (first on line {late[0][0]})")
    assert messages == [f"{ORACLE / 'sample_val_preds.jsonl'}: {expected}"]


# ---------------------------------------------------------------------------------------------
# 2. Hand-computed cases
# ---------------------------------------------------------------------------------------------


def _block(ground_truth: list[dict], predictions: list[dict]) -> dict:
    return evaluate(ground_truth, predictions)["full"]


def test_perfect_prediction_scores_100() -> None:
    # IoU 1 with the only GT window: a hit at every threshold, AP = 1.
    block = _block([gt_row(1, [[10, 20]])], [pred_row(1, [[10.0, 20.0, 0.9]])])
    assert block["MR-R1"] == flat(100.0)
    assert block["MR-mAP"] == {**flat(100.0), "average": 100.0}


def test_disjoint_prediction_scores_0() -> None:
    # No overlap: IoU 0, a false positive everywhere, AP = 0.
    block = _block([gt_row(1, [[10, 20]])], [pred_row(1, [[30.0, 40.0, 0.9]])])
    assert block["MR-R1"] == flat(0.0)
    assert block["MR-mAP"] == {**flat(0.0), "average": 0.0}


def test_partial_overlap_crosses_the_thresholds() -> None:
    # GT [0, 10], prediction [0, 8]: IoU 8 / 10 = 0.8 -> a hit for t <= 0.8 (7 of the 10
    # thresholds) and a miss for 0.85, 0.9, 0.95. mAP average = 7 / 10 = 70.
    block = _block([gt_row(1, [[0, 10]])], [pred_row(1, [[0.0, 8.0, 0.5]])])
    hits = {
        k: (100.0 if t <= 0.8 else 0.0) for k, t in zip(THRESHOLD_KEYS, IOU_THRESHOLDS, strict=True)
    }
    assert block["MR-R1"] == hits
    assert block["MR-mAP"] == {**hits, "average": 70.0}


def test_first_prediction_matches_the_second_gt_window() -> None:
    # GT [0, 10] and [20, 30]; the single prediction [20, 30] has IoU (0, 1): R1 picks GT #2,
    # IoU 1 -> 100. AP: one hit out of two GT windows, recall 0.5 at precision 1:
    # mprec [0, 1, 0] -> [1, 1, 0], mrec [0, 0.5, 1] -> 0.5 * 1 + 0.5 * 0 = 0.5 -> 50.
    block = _block([gt_row(1, [[0, 10], [20, 30]])], [pred_row(1, [[20.0, 30.0, 0.9]])])
    assert block["MR-R1"] == flat(100.0)
    assert block["MR-mAP"] == {**flat(50.0), "average": 50.0}


def test_duplicate_prediction_of_a_matched_gt_is_a_false_positive() -> None:
    # GT A [0, 10], B [20, 30]; ranked predictions A, A again, B.
    # tp [1, 0, 1], fp [0, 1, 0] -> recall [0.5, 0.5, 1], precision [1, 0.5, 2/3].
    # mprec [0, 1, 0.5, 2/3, 0] -> [1, 1, 2/3, 2/3, 0]; mrec [0, 0.5, 0.5, 1, 1]:
    # AP = 0.5 * 1 + 0.5 * 2/3 = 5/6 = 83.33 %. Without the duplicate it would be 100.
    preds = [[0.0, 10.0, 0.9], [0.0, 10.0, 0.8], [20.0, 30.0, 0.7]]
    block = _block([gt_row(1, [[0, 10], [20, 30]])], [pred_row(1, preds)])
    assert block["MR-mAP"] == {**flat(83.33), "average": 83.33}
    assert block["MR-R1"] == flat(100.0)


def test_duplicate_after_full_recall_costs_nothing() -> None:
    # GT [0, 10]; predictions [0, 10] twice: tp [1, 0], recall [1, 1], precision [1, 0.5].
    # Recall changes only at rank 1 (0 -> 1, precision 1): AP = 1.
    preds = [[0.0, 10.0, 0.9], [0.0, 10.0, 0.8]]
    block = _block([gt_row(1, [[0, 10]])], [pred_row(1, preds)])
    assert block["MR-mAP"]["average"] == 100.0


def test_r1_uses_file_order_and_map_uses_score_order() -> None:
    # File order: [50, 60] (score 0.1) first, then [0, 10] (score 0.9) matching the GT.
    # R1 takes the first window in the file: IoU 0 -> 0.
    # mAP sorts by score: [0, 10] first is a hit with recall 1 -> AP 1 -> 100.
    preds = [[50.0, 60.0, 0.1], [0.0, 10.0, 0.9]]
    block = _block([gt_row(1, [[0, 10]])], [pred_row(1, preds)])
    assert block["MR-R1"] == flat(0.0)
    assert block["MR-mAP"] == {**flat(100.0), "average": 100.0}


def test_only_the_first_ten_windows_count_for_map() -> None:
    # Ten disjoint windows, then the exact match as the 11th window with the highest score:
    # [:10] drops it before the score sort -> AP 0. As the 10th window it is kept, sorted
    # first by its score -> AP 1.
    misses = [[100.0 + 5 * k, 102.0 + 5 * k, 0.5] for k in range(10)]
    match = [0.0, 10.0, 1.0]
    ground_truth = [gt_row(1, [[0, 10]], duration=200.0)]
    dropped = _block(ground_truth, [pred_row(1, [*misses, match])])
    assert dropped["MR-mAP"]["average"] == 0.0
    kept = _block(ground_truth, [pred_row(1, [*misses[:9], match])])
    assert kept["MR-mAP"]["average"] == 100.0


def test_ap_interpolation_lifts_precision() -> None:
    # GT A [0, 10], B [20, 30]; ranked predictions: miss, A, B.
    # tp [0, 1, 1] -> recall [0, 0.5, 1], precision [0, 1/2, 2/3].
    # mprec [0, 0, 1/2, 2/3, 0] -> [2/3, 2/3, 2/3, 2/3, 0]; mrec [0, 0, 0.5, 1, 1]:
    # AP = 0.5 * 2/3 + 0.5 * 2/3 = 2/3 -> 66.67 (without interpolation 0.5 * 1/2 + 0.5 * 2/3
    # = 58.33). The first window is the miss: R1 = 0.
    preds = [[50.0, 60.0, 0.9], [0.0, 10.0, 0.8], [20.0, 30.0, 0.7]]
    block = _block([gt_row(1, [[0, 10], [20, 30]])], [pred_row(1, preds)])
    assert block["MR-mAP"] == {**flat(66.67), "average": 66.67}
    assert block["MR-R1"] == flat(0.0)


def test_equal_scores_keep_file_order() -> None:
    # Equal scores: the stable sort keeps the file order, the miss ranked first.
    # tp [0, 1] -> recall [0, 1], precision [0, 1/2]; mprec [0, 1/2, 1/2, 0] after the
    # right-to-left maximum, mrec [0, 0, 1, 1]: AP = 1 * 1/2 = 50.
    preds = [[50.0, 60.0, 0.5], [0.0, 10.0, 0.5]]
    block = _block([gt_row(1, [[0, 10]])], [pred_row(1, preds)])
    assert block["MR-mAP"]["average"] == 50.0


def test_queries_are_averaged_and_unmatched_rows_ignored() -> None:
    # Query 1 perfect (AP 1, IoU 1), query 2 disjoint (AP 0, IoU 0): 50 everywhere.
    # Query 3 has no prediction and query 9 no ground truth: both are left out.
    ground_truth = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]]), gt_row(3, [[0, 10]])]
    predictions = [
        pred_row(1, [[0.0, 10.0, 0.9]]),
        pred_row(2, [[40.0, 50.0, 0.9]]),
        pred_row(9, [[0.0, 10.0, 0.9]]),
    ]
    metrics = evaluate(ground_truth, predictions)
    assert metrics["full"]["MR-R1"] == flat(50.0)
    assert metrics["full"]["MR-mAP"] == {**flat(50.0), "average": 50.0}
    extra = metrics["audiomoment"]
    assert extra["n_queries"] == 2
    assert extra["n_ground_truth_without_prediction"] == 1
    assert extra["n_predictions_without_ground_truth"] == 1
    assert extra["mean_iou_top1"] == 50.0


def test_full_block_drops_zero_length_gt_windows_and_empty_queries() -> None:
    # Query 1: the zero-length window [5, 5] is dropped, [20, 30] stays; the prediction
    # [20, 30] then matches all of query 1's ground truth -> AP 1.
    # Query 2: only a zero-length window -> dropped (not scored with zero positives).
    # Query 3: no window at all -> dropped too.
    ground_truth = [gt_row(1, [[5, 5], [20, 30]]), gt_row(2, [[7, 7]]), gt_row(3, [])]
    predictions = [pred_row(q, [[20.0, 30.0, 0.9]]) for q in (1, 2, 3)]
    metrics = evaluate(ground_truth, predictions)
    assert metrics["full"]["MR-mAP"]["average"] == 100.0
    assert metrics["audiomoment"]["n_queries"] == 1
    assert metrics["audiomoment"]["n_dropped_without_window"] == 2


def test_empty_prediction_scores_as_a_miss() -> None:
    # Query 1 perfect, query 2 without a window: AP 0 and IoU 0 -> 50 everywhere.
    ground_truth = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]])]
    predictions = [pred_row(1, [[0.0, 10.0, 0.9]]), pred_row(2, [])]
    metrics = evaluate(ground_truth, predictions)
    assert metrics["full"]["MR-mAP"]["average"] == 50.0
    assert metrics["full"]["MR-R1"] == flat(50.0)
    assert metrics["audiomoment"]["n_empty_predictions"] == 1


def test_length_blocks_split_by_gt_window_length() -> None:
    # Query 1 has a 5 s window (short), query 2 a 20 s (middle) and a 60 s (long) window.
    # Predictions hit the short window of 1 and the long window of 2.
    # short: query 1 only, AP 1. middle: query 2 keeps only [0, 20], the prediction [40, 100]
    # misses it -> 0. long: query 2 keeps [40, 100] -> 100.
    ground_truth = [gt_row(1, [[0, 5]]), gt_row(2, [[0, 20], [40, 100]])]
    predictions = [pred_row(1, [[0.0, 5.0, 0.9]]), pred_row(2, [[40.0, 100.0, 0.9]])]
    metrics = evaluate(ground_truth, predictions, length_blocks=True)
    assert metrics["brief"]["MR-short-mAP"] == 100.0
    assert metrics["brief"]["MR-middle-mAP"] == 0.0
    assert metrics["brief"]["MR-long-mAP"] == 100.0
    # full: query 1 AP 1, query 2 one hit of two windows -> AP 0.5; mean 75.
    assert metrics["brief"]["MR-full-mAP"] == 75.0
    assert list(metrics) == ["brief", "full", "long", "middle", "short", "audiomoment"]


def test_empty_length_block_has_none_values() -> None:
    metrics = evaluate([gt_row(1, [[0, 5]])], [pred_row(1, [[0.0, 5.0, 0.9]])], length_blocks=True)
    assert metrics["long"]["MR-mAP"]["average"] is None
    assert metrics["brief"]["MR-long-mAP"] is None
    json.dumps(metrics, allow_nan=False)


def test_delta_breakdown_bins_and_boundaries() -> None:
    # Bins: Low < 0.030 <= Mid <= 0.070 < High. IoUs: q1 1.0, q2 0.5 ([0, 10] vs [0, 5]),
    # q3 0.0, q4 1.0. Deltas 0.01 (Low), 0.03 and 0.07 (Mid, both edges), 0.08 (High).
    ground_truth = [gt_row(q, [[0, 10]]) for q in (1, 2, 3, 4)]
    windows = {1: [0.0, 10.0], 2: [0.0, 5.0], 3: [50.0, 60.0], 4: [0.0, 10.0]}
    deltas = {1: 0.01, 2: 0.03, 3: 0.07, 4: 0.08}
    predictions = [pred_row(q, [[*windows[q], 0.9]], delta=deltas[q]) for q in windows]
    metrics = evaluate_with_breakdown(ground_truth, predictions)
    assert metrics["delta_breakdown"] == {
        "Low": {"n": 1, "mean_iou": 100.0},
        "Mid": {"n": 2, "mean_iou": 25.0},
        "High": {"n": 1, "mean_iou": 100.0},
    }
    text = format_delta_breakdown(metrics)
    assert "Mid" in text and "25.00" in text
    # One row without a delta: no breakdown.
    del predictions[0]["delta"]
    assert "delta_breakdown" not in evaluate_with_breakdown(ground_truth, predictions)
    assert "delta_breakdown" not in evaluate(ground_truth, [*predictions[1:]])  # standard only


def test_headline_and_table() -> None:
    metrics = evaluate([gt_row(1, [[0, 10]])], [pred_row(1, [[0.0, 8.0, 0.5]])])
    assert headline(metrics) == {
        "R1@0.5": 100.0,
        "R1@0.7": 100.0,
        "mAP@0.5": 100.0,
        "mAP@0.75": 100.0,
        "mAP": 70.0,
    }
    table = format_table({"base": metrics, "other": headline(metrics)}).splitlines()
    assert table[0].split() == ["system", "R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP"]
    assert table[1].split() == ["base", "100.00", "100.00", "100.00", "100.00", "70.00"]
    assert table[2].split() == ["other", "100.00", "100.00", "100.00", "100.00", "70.00"]
    with pytest.raises(InputError, match="brief"):
        headline({})


def test_evaluate_rejects_bad_rows() -> None:
    with pytest.raises(InputError, match="duplicate qid 1"):
        evaluate([gt_row(1, [[0, 10]])], [pred_row(1, []), pred_row(1, [])])
    with pytest.raises(InputError, match="duplicate qid 1"):
        evaluate([gt_row(1, [[0, 10]]), gt_row(1, [[0, 10]])], [pred_row(1, [])])
    with pytest.raises(InputError, match=r"^predictions:1: window 1 has start > end"):
        evaluate([gt_row(1, [[0, 10]])], [pred_row(1, [[5.0, 4.0, 0.1]])])
    # windows with and without a score in one set of rows
    with pytest.raises(InputError, match=r"predictions:2: window 1 is not \[start, end, score\]"):
        evaluate([gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]])],
                 [pred_row(1, [[5.0, 6.0, 0.2]]), pred_row(2, [[5.0, 6.0]])])
    with pytest.raises(InputError, match=r"predictions:1: window 2 is not \[start, end\] "):
        evaluate([gt_row(1, [[0, 10]])], [pred_row(1, [[5.0, 6.0], [1.0, 2.0, 0.3]])])
    with pytest.raises(InputError, match="no query"):
        evaluate([gt_row(1, [[0, 10]])], [pred_row(2, [[0.0, 10.0, 1.0]])])



def test_zero_length_windows_score_as_the_standard_evaluation_scores_them() -> None:
    # A zero-length window [p, p] has intersection 0 with any window. Its union with a
    # ground-truth window of length L > 0 is 0 + L - 0 = L (cross IoU, mAP) and its hull is at
    # least L (paired IoU, R1): IoU 0 wherever it lies, inside the window or not. The only
    # union of 0, a zero-length prediction against a zero-length ground-truth window at the
    # same point, cannot occur: zero-length ground-truth windows are dropped from every block.
    #   q1: [3, 3] first (score 0.9), then [0, 10] (0.5) against [0, 10]. R1 takes [3, 3]:
    #       IoU 0, a miss. mAP ranks [3, 3] (false positive) before [0, 10] (hit):
    #       precision [0, 1/2], recall [0, 1] -> AP = 1 * 1/2 = 0.5.
    #   q2: [0, 10] exactly: IoU 1, AP 1.
    #   q3: [25, 25] inside [20, 30] (the ground truth's [25, 25] is dropped): IoU 0, AP 0.
    # R1 = 1/3 = 33.33 at every threshold; mAP = (0.5 + 1 + 0) / 3 = 50.
    ground_truth = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]]), gt_row(3, [[25, 25], [20, 30]])]
    predictions = [
        pred_row(1, [[3.0, 3.0, 0.9], [0.0, 10.0, 0.5]]),
        pred_row(2, [[0.0, 10.0, 0.9]]),
        pred_row(3, [[25.0, 25.0, 0.8]]),
    ]
    metrics = evaluate(ground_truth, predictions)
    assert metrics["full"]["MR-R1"] == flat(33.33)
    assert metrics["full"]["MR-mAP"] == {**flat(50.0), "average": 50.0}
    assert metrics["audiomoment"]["mean_iou_top1"] == 33.33
    assert metrics["audiomoment"]["n_zero_length_windows"] == 2
    assert metrics["audiomoment"]["windows_scored"] is True
    # the literal per-query reference below (the standard formulas, no guard) agrees
    expected, _, top = ref_block(ground_truth, predictions, *FULL_RANGE)
    assert metrics["full"] == expected
    assert top.tolist() == [0.0, 1.0, 0.0]


def test_zero_length_windows_in_a_file_are_counted(tmp_path: Path) -> None:
    # DETR-style rounding: two zero-length windows on lines 2 and 3, one more on line 3.
    rows = [
        pred_row(1, [[0.0, 10.0, 0.9]]),
        pred_row(2, [[3.0, 3.0, 0.0167], [0.0, 5.0, 0.01]]),
        pred_row(3, [[7.0, 7.0, 0.5], [8.0, 8.0, 0.4]]),
    ]
    path = _write(tmp_path / "detr.jsonl", [json.dumps(r) for r in rows])
    annotations = {**ANNOTATIONS, "3": gt_row(3, [[0, 10]])}
    messages: list[str] = []
    assert read_predictions(path, annotations, on_warning=messages.append) == rows
    assert messages == [
        f"{path}: 3 window(s) in 2 row(s) have zero length (start = end) and score IoU 0 with "
        "every ground-truth window, as in the standard evaluation (first on line 2)"
    ]
    _, check = read_prediction_file(path, annotations)
    assert (check.n_zero_length, check.n_windows, check.scored) == (3, 5, True)


def test_windows_without_scores_give_r1_and_no_map() -> None:
    # [start, end] windows: q1's first window [0, 8] has IoU 0.8 with [0, 10] (a hit for
    # t <= 0.8), q2's [50, 60] misses: R1 = 50 up to 0.8, 0 above. mAP needs scores: None.
    ground_truth = [gt_row(1, [[0, 10]]), gt_row(2, [[0, 10]])]
    predictions = [pred_row(1, [[0.0, 8.0], [0.0, 10.0]]), pred_row(2, [[50.0, 60.0]])]
    metrics = evaluate(ground_truth, predictions, length_blocks=True)
    assert metrics["full"]["MR-R1"] == {
        k: (50.0 if t <= 0.8 else 0.0) for k, t in zip(THRESHOLD_KEYS, IOU_THRESHOLDS, strict=True)
    }
    assert metrics["full"]["MR-mAP"] == dict.fromkeys((*THRESHOLD_KEYS, "average"))
    assert metrics["brief"] == {
        "MR-full-R1@0.5": 50.0, "MR-full-R1@0.7": 50.0, "MR-full-mAP": None,
        "MR-full-mAP@0.5": None, "MR-full-mAP@0.75": None, "MR-long-mAP": None,
        "MR-middle-mAP": None, "MR-short-mAP": None,
    }
    assert metrics["audiomoment"]["windows_scored"] is False
    assert metrics["audiomoment"]["mean_iou_top1"] == 40.0
    json.dumps(metrics, allow_nan=False)
    scores = score_queries(ground_truth, predictions)
    assert not scores.scored and np.isnan(scores.ap).all()
    assert scores.top_iou.tolist() == [0.8, 0.0]
    # a submission needs the scores
    check = inspect_predictions(predictions, "p", require_scores=True)
    assert check.errors == {0: "p:1: window 1 is not [start, end, score]: [0.0, 8.0]",
                            1: "p:2: window 1 is not [start, end, score]: [50.0, 60.0]"}


def test_rows_are_built_by_one_writer() -> None:
    annotation = gt_row(7, [[0, 10]])
    windows = np.array([[1.0, 4.0, 0.5], [6.0, 8.0, 0.25]])
    assert make_row(annotation, windows) == {
        "qid": 7, "query": "q", "vid": "v",
        "pred_relevant_windows": [[1.0, 4.0, 0.5], [6.0, 8.0, 0.25]],
    }
    assert list(make_row(annotation, windows, np.float64(0.125))) == [
        "qid", "query", "vid", "pred_relevant_windows", "delta"]
    assert make_row(annotation, windows, 0.125)["delta"] == 0.125


def test_old_names_still_import() -> None:
    from audiomoment.evaluation import metrics
    from audiomoment.io import predictions

    assert metrics.read_predictions is predictions.read_predictions
    assert metrics.check_predictions is predictions.check_predictions

# ---------------------------------------------------------------------------------------------
# 3. A slow per-query reference, following the rules literally
# ---------------------------------------------------------------------------------------------


def ref_cross_iou(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """(N, 2) x (M, 2) -> (N, M): inter / (len1 + len2 - inter)."""
    areas1 = spans1[:, 1] - spans1[:, 0]
    areas2 = spans2[:, 1] - spans2[:, 0]
    left = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
    right = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = areas1[:, None] + areas2[None, :] - inter
    return inter / union


def ref_paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def ref_interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    mprec = np.hstack([[0], precision, [0]])
    mrec = np.hstack([[0], recall, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def ref_ap(gt_windows: list[list[float]], pred_windows: list[list[float]]) -> np.ndarray:
    """AP of one query at each threshold: (T,)."""
    thresholds = IOU_THRESHOLDS
    preds = list(pred_windows[:10])
    preds.sort(key=lambda w: -w[2])
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    lock = np.full((len(thresholds), len(gt_windows)), -1)
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    gt = np.array(gt_windows, dtype=float)
    for idx, w in enumerate(preds):
        ious = ref_cross_iou(np.array([w[:2]], dtype=float), gt)[0]
        visit = np.argsort(ious, kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for j in visit:
                if ious[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock[t, j] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, j] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_cum = np.cumsum(tp, axis=1).astype(float)
    fp_cum = np.cumsum(fp, axis=1).astype(float)
    recall = tp_cum / float(len(gt_windows))
    precision = tp_cum / (tp_cum + fp_cum)
    for t in range(len(thresholds)):
        ap[t] = ref_interpolated_ap(precision[t], recall[t])
    return ap


def ref_top_iou(gt_windows: list[list[float]], pred_windows: list[list[float]]) -> float:
    if not pred_windows:
        return 0.0
    top = np.array([pred_windows[0][:2]], dtype=float)
    best = 0
    if gt_windows:
        best = int(np.argmax(ref_cross_iou(top, np.array(gt_windows, dtype=float))[0]))
    return float(ref_paired_iou(top, np.array([gt_windows[best]], dtype=float))[0])


def ref_block(
    ground_truth: Sequence[Mapping], predictions: Sequence[Mapping], lo: float, hi: float
) -> tuple[dict, np.ndarray, np.ndarray]:
    """One block: (metrics, per-query AP (Q, T), per-query top-1 IoU (Q,))."""
    shared = {r["qid"] for r in predictions} & {r["qid"] for r in ground_truth}
    kept_gt = {}
    for row in ground_truth:
        if row["qid"] in shared:
            windows = [w for w in row["relevant_windows"] if lo < w[1] - w[0] <= hi]
            if windows:
                kept_gt[row["qid"]] = windows
    rows = [r for r in predictions if r["qid"] in kept_gt]
    ap = np.array([ref_ap(kept_gt[r["qid"]], r["pred_relevant_windows"]) for r in rows])
    top = np.array([ref_top_iou(kept_gt[r["qid"]], r["pred_relevant_windows"]) for r in rows])
    if not rows:
        return {}, ap, top
    ap_thds = ap.mean(0)
    mean_ap = {k: float(f"{100 * v:.2f}") for k, v in zip(THRESHOLD_KEYS, ap_thds, strict=True)}
    mean_ap["average"] = float(f"{100 * np.mean(ap_thds):.2f}")
    r1 = {
        k: float(f"{np.mean(top >= t) * 100:.2f}")
        for k, t in zip(THRESHOLD_KEYS, IOU_THRESHOLDS, strict=True)
    }
    return {"MR-mAP": mean_ap, "MR-R1": r1}, ap, top


def random_case(rng: np.random.Generator, n_queries: int) -> tuple[list[dict], list[dict]]:
    """Windows on a coarse grid (IoU ties), scores with one decimal (score ties), up to 14
    predicted windows (truncation), zero-length GT windows, unmatched qids on both sides."""
    ground_truth, predictions = [], []
    for q in range(n_queries):
        gt = []
        for _ in range(int(rng.integers(0, 7))):
            s = int(rng.integers(0, 50))
            gt.append([s, s + int(rng.choice([0, 2, 4, 6, 8, 12, 20, 30, 40]))])
        if q % 17 != 5:
            ground_truth.append(gt_row(q, gt))
        preds = []
        for _ in range(int(rng.integers(1, 15))):
            s = float(rng.integers(0, 50))
            e = s + float(rng.choice([1, 2, 4, 6, 8, 12, 20, 30, 40, 0.5]))
            preds.append([s, e, round(float(rng.random()), 1)])
        if q % 13 != 3:
            predictions.append(pred_row(q, preds))
    rng.shuffle(predictions)
    return ground_truth, predictions


@pytest.mark.parametrize(("seed", "n_queries"), [(0, 300), (1, 300), (2, 40), (3, 9), (4, 3)])
def test_vectorised_equals_reference(seed: int, n_queries: int) -> None:
    ground_truth, predictions = random_case(np.random.default_rng(seed), n_queries)
    metrics = evaluate(ground_truth, predictions, length_blocks=True)
    for name, (lo, hi) in {"full": FULL_RANGE, **LENGTH_RANGES}.items():
        expected, ap, top = ref_block(ground_truth, predictions, lo, hi)
        scores = score_queries(ground_truth, predictions, (lo, hi))
        assert np.array_equal(scores.ap, ap.reshape(scores.ap.shape)), name
        assert np.array_equal(scores.top_iou, top), name
        if expected:
            assert metrics[name] == expected, name


def test_sum_like_numpy_is_bit_identical() -> None:
    rng = np.random.default_rng(7)
    for n in range(1, 16):
        terms = rng.random((500, n)) * rng.choice([1e-3, 1.0, 1e3], (500, n))
        width = int(rng.integers(n, 16))
        padded = np.concatenate([terms, np.zeros((500, width - n))], axis=1)
        got = sum_like_numpy(padded, np.full(500, n))
        assert np.array_equal(got, np.array([np.sum(row) for row in terms])), n


def random_window_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) and (n, 2) valid windows: on a coarse grid (touching, nested, identical and
    zero-length windows, many of them at the same instant) and at random real positions,
    some under a second long; one pair in ten is the same window twice."""
    def windows(size: int) -> np.ndarray:
        grid = np.sort(rng.integers(0, 4, (size, 2)), axis=1) / 2.0
        real = np.sort(rng.random((size, 2)) * rng.choice([1.0, 40.0], (size, 1)), axis=1)
        return np.where(rng.random((size, 1)) < 0.5, grid, real)

    a, b = windows(n), windows(n)
    same = rng.random(n) < 0.1
    b[same] = a[same]
    return a, b


def python_paired_iou(a: list[float], b: list[float]) -> float:
    """The standard paired IoU of two windows with Python floats: 0 where the hull is 0."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / hull if hull != 0 else 0.0


def test_paired_iou_is_the_standard_formula_bit_for_bit() -> None:
    from audiomoment.evaluation.metrics import paired_iou

    rng = np.random.default_rng(21)
    a, b = random_window_pairs(rng, 20000)
    got = paired_iou(a, b)
    assert got.dtype == np.float64 and got.shape == (20000,)
    # the former np.divide(..., where=hull != 0) formula (the standard code's), to the bit
    assert got.tobytes() == ref_paired_iou(a, b).tobytes()
    expected = [python_paired_iou(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert got.tobytes() == np.array(expected).tobytes()
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    assert (hull == 0).sum() > 300  # each case well represented: hull 0,
    assert ((hull > 0) & (hull < 1) & (got > 0)).sum() > 300  # hulls under 1 s,
    assert ((hull > 1) & (got > 0) & (got < 1)).sum() > 300  # partial overlaps
    np.testing.assert_array_equal(got[hull == 0], 0.0)


def test_paired_iou_of_identical_zero_length_windows_is_zero() -> None:
    # Two zero-length windows at the same instant: intersection 0, hull 0. The standard
    # evaluation returns 0 there (np.divide with where=union != 0 over zeros; its one-pair
    # compute_temporal_iou returns 0 when the union is 0); the empty set matches nothing.
    from audiomoment.evaluation.metrics import paired_iou

    same = np.array([[3.0, 3.0], [0.0, 0.0], [7.5, 7.5]])
    for _ in range(3):  # fresh arrays each time: no value may come from leftover memory
        np.full(64, np.nan)  # leaves NaN in memory NumPy may hand out again
        got = paired_iou(same, same.copy())
        assert got.tobytes() == np.zeros(3).tobytes()  # +0.0, not -0.0 or NaN
    # next to pairs of hull > 0 in the same call, which keep their quotient
    a = np.array([[3.0, 3.0], [0.0, 0.5], [1.0, 1.0], [2.0, 2.25]])
    b = np.array([[3.0, 3.0], [0.25, 0.75], [0.0, 4.0], [2.0, 2.0]])
    assert paired_iou(a, b).tolist() == [0.0, 0.25 / 0.75, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# 4. Validation of prediction files
# ---------------------------------------------------------------------------------------------

GOOD = pred_row(1, [[0.0, 10.0, 0.9]])
ANNOTATIONS = {"1": gt_row(1, [[0, 10]]), "2": gt_row(2, [[0, 10]], duration=20.0)}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (json.dumps(pred_row(2, [[6.0, 5.0, 0.1]])), "window 1 has start > end"),
        (json.dumps(pred_row(2, [[0.0, 4.0, 0.2], [6.0, 5.5, 0.1]])), "window 2 has start > end"),
        ('{"qid": 2, "pred_relevant_windows": [[0, NaN, 0.1]]}', "non-finite"),
        ('{"qid": 2, "pred_relevant_windows": [[0, 5, Infinity]]}', "non-finite"),
        (json.dumps(pred_row(2, [[0.0, 5.0, "0.1"]])), "non-numeric"),
        (json.dumps(pred_row(2, [[0.0, True, 0.1]])), "non-numeric"),
        (json.dumps(pred_row(2, [[0.0, 5.0]])), "not [start, end, score]"),
        (json.dumps(pred_row(2, [0.0, 5.0, 0.1])), "not [start, end, score]"),
        (json.dumps(pred_row(2, "0 5 0.1")), "must be a list"),
        (json.dumps([2, [[0.0, 5.0, 0.1]]]), "expected a JSON object"),
        (json.dumps({"qid": 2}), "missing field 'pred_relevant_windows'"),
        (json.dumps({"pred_relevant_windows": []}), "missing field 'qid'"),
        (json.dumps(pred_row(2.5, [[0.0, 5.0, 0.1]])), "qid must be"),
        (json.dumps(pred_row(7, [[0.0, 5.0, 0.1]])), "not in the annotations"),
        (json.dumps(pred_row("2", [[0.0, 5.0, 0.1]])), "does not match"),
        (json.dumps(GOOD), "duplicate qid 1 (first on line 1)"),
        (json.dumps(pred_row(2, [[0.0, 5.0, 0.1]], delta="high")), "delta"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_prediction_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    # Line 1 is valid, line 2 blank (skipped), line 3 the bad one.
    path = _write(tmp_path / "preds.jsonl", [json.dumps(GOOD), "", line])
    with pytest.raises(InputError) as info:
        read_predictions(path, ANNOTATIONS)
    message = str(info.value)
    assert "preds.jsonl:3: " in message and problem in message
    assert "\n" not in message


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(InputError, match=r"empty\.jsonl: file is empty"):
        read_predictions(empty)
    with pytest.raises(InputError, match=r"absent\.jsonl: file not found"):
        read_predictions(tmp_path / "absent.jsonl")


def test_warnings_for_late_windows_and_empty_rows(tmp_path: Path) -> None:
    # Query 2 lasts 20 s: two of its windows end after it (one row); row 3 has no window.
    late = pred_row(2, [[0.0, 25.0, 0.9], [5.0, 20.0, 0.5], [10.0, 30.0, 0.1]])
    lines = [json.dumps(GOOD), json.dumps(late), json.dumps(pred_row(3, []))]
    path = _write(tmp_path / "p.jsonl", lines)
    annotations = {**ANNOTATIONS, "3": gt_row(3, [[0, 10]])}
    with pytest.warns(UserWarning) as record:
        rows = read_predictions(path, annotations)
    assert [r["qid"] for r in rows] == [1, 2, 3]
    found = [str(w.message) for w in record]
    assert len(found) == 2
    assert "p.jsonl: 2 window(s) in 1 row(s)" in found[0] and "line 2" in found[0]
    assert "no window" in found[1] and "line 3" in found[1]
    assert check_predictions(rows, annotations, "p.jsonl") == [
        m.replace(str(path), "p.jsonl") for m in found
    ]
    # Without annotations there is nothing to compare the ends with.
    assert len(check_predictions(rows, None, "p.jsonl")) == 1


def test_window_before_zero_is_scored_with_a_warning(tmp_path: Path) -> None:
    # The standard evaluation scores a window starting before 0 like any other: [-1, 9]
    # against [0, 10] has intersection 9, union 10 + 10 - 9 = 11 and hull 11, IoU 9 / 11 =
    # 0.818: a hit up to the 0.8 threshold.
    path = _write(tmp_path / "p.jsonl", [json.dumps(pred_row(1, [[-1.0, 9.0, 0.9]]))])
    messages: list[str] = []
    rows = read_predictions(path, ANNOTATIONS, on_warning=messages.append)
    assert messages == [f"{path}: 1 window(s) in 1 row(s) start before 0 s (first on line 1)"]
    block = _block([gt_row(1, [[0, 10]])], rows)
    hits = {
        k: (100.0 if t <= 0.8 else 0.0) for k, t in zip(THRESHOLD_KEYS, IOU_THRESHOLDS, strict=True)
    }
    assert block["MR-R1"] == hits
    assert block["MR-mAP"] == {**hits, "average": 70.0}


def test_check_predictions_line_numbers_default_to_positions() -> None:
    with pytest.raises(InputError, match=r"^mem:2: duplicate qid 1 \(first on line 1\)$"):
        check_predictions([GOOD, GOOD], None, "mem")
    assert check_predictions([GOOD], ANNOTATIONS, "mem") == []


# ---------------------------------------------------------------------------------------------
# Per-query AP bit for bit, and the ground truth's error messages


def standard_ap(hits: list[bool], num_gt: int) -> float:
    """VOC-2011 interpolated AP as the standard evaluation writes it (one query)."""
    h = np.array(hits, dtype=bool)
    tp, fp = np.cumsum(h).astype(float), np.cumsum(~h).astype(float)
    rec, prec = tp / num_gt, tp / (tp + fp)
    mprec = np.hstack([[0.0], prec, [0.0]])
    mrec = np.hstack([[0.0], rec, [1.0]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def test_per_query_ap_is_the_standard_sum_bit_for_bit() -> None:
    """Predictions that are either exactly a ground-truth window (IoU 1) or far from all (IoU
    0) hit the same way at every threshold; each query's AP must be the standard formula's
    ``np.sum`` to the last bit (up to 11 terms: NumPy's pairwise order from 8 on)."""
    from audiomoment.evaluation.metrics import score_queries

    rng = np.random.default_rng(12)
    gt, pred, expected = [], [], []
    for q in range(60):
        n_gt = int(rng.integers(1, 13))
        gt_windows = [[20.0 * k, 20.0 * k + 5.0] for k in range(n_gt)]
        hits = rng.random(10) < 0.6
        order = iter(rng.permutation(n_gt).tolist())
        windows, kept = [], []
        for rank, hit in enumerate(hits.tolist()):
            k = next(order, None) if hit else None
            window = gt_windows[k] if k is not None else [20.0 * rank + 8.0, 20.0 * rank + 9.0]
            windows.append([*window, 1.0 - rank / 20])
            kept.append(k is not None)
        gt.append({"qid": q, "duration": 300.0, "relevant_windows": gt_windows})
        pred.append({"qid": q, "pred_relevant_windows": windows})
        expected.append(standard_ap(kept, n_gt))
    scores = score_queries(gt, pred)
    assert scores.qids == list(range(60))
    for t in range(scores.ap.shape[1]):
        assert scores.ap[:, t].tolist() == expected


def test_ap_of_every_hit_pattern_is_the_standard_sum_bit_for_bit() -> None:
    """Every pattern of hits and misses over 1 to 10 ranked windows, with 6 to 9 ground-truth
    windows: 6 to 10 AP terms, across NumPy's switch from adding in order (< 8 numbers) to
    its pairwise order (>= 8). With 7 ground-truth windows all found, the sum has exactly 7
    terms (no final recall step) and is added in order; a spurious eighth term, even a zero,
    would switch the order and move some sums by one unit in the last place."""
    import itertools

    from audiomoment.evaluation.metrics import score_queries

    gt, pred, expected = [], [], []
    for n_gt in (6, 7, 8, 9):
        gt_windows = [[20.0 * k, 20.0 * k + 5.0] for k in range(n_gt)]
        for n_pred in range(1, 11):
            for hits in itertools.product((False, True), repeat=n_pred):
                if sum(hits) > n_gt:
                    continue
                found = iter(range(n_gt))
                windows = [
                    [*(gt_windows[next(found)] if hit else [20.0 * r + 8.0, 20.0 * r + 9.0]),
                     1.0 - r / 20]
                    for r, hit in enumerate(hits)
                ]
                qid = len(gt)
                gt.append({"qid": qid, "duration": 300.0, "relevant_windows": gt_windows})
                pred.append({"qid": qid, "pred_relevant_windows": windows})
                expected.append(standard_ap(list(hits), n_gt))
    scores = score_queries(gt, pred)
    assert scores.qids == list(range(len(gt)))
    for t in range(scores.ap.shape[1]):
        assert scores.ap[:, t].tolist() == expected
    # by hand: 5 hits, a miss, 2 hits; 7 windows. AP = 5/7 + 2 * (1/7) * (7/8) = 27/28, and
    # the 7 terms added in order give 0.9642857142857142, one unit in the last place under
    # the double nearest 27/28 (0.9642857142857143), which the pairwise order would give.
    qid = expected.index(0.9642857142857142)
    hand = {"qid": 0, "relevant_windows": gt[qid]["relevant_windows"]}
    assert len(hand["relevant_windows"]) == 7
    seven = [[20.0 * k, 20.0 * k + 5.0, 1.0 - k / 20] for k in range(7)]
    rows = [*seven[:5], [108.0, 109.0, 0.78], *seven[5:]]  # scores already descending
    got = score_queries([hand], [{"qid": 0, "pred_relevant_windows": rows}]).ap
    assert got.tolist() == [[0.9642857142857142] * len(IOU_THRESHOLDS)]
    assert 27 / 28 == 0.9642857142857143


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"qid": "a", "relevant_windows": [[0, 1]]}, {"query": "x"}],
         "ground truth row 2: every row must be an object with a 'qid'"),
        (["a"], "ground truth row 1: every row must be an object with a 'qid'"),
        ([{"qid": True, "relevant_windows": [[0, 1]]}],
         "ground truth row 1: qid must be a string or an integer, got True"),
        ([{"qid": 1.5, "relevant_windows": [[0, 1]]}],
         "ground truth row 1: qid must be a string or an integer, got 1.5"),
        ([{"qid": "a", "relevant_windows": "0-1"}],
         "ground truth: qid 'a': 'relevant_windows' must be a list of windows"),
        ([{"qid": "a", "relevant_windows": [[0, 1, 2]]}],
         "ground truth: every window must be a list of 2 numbers"),
        ([{"qid": "a", "relevant_windows": [[0, 1], [2]]}],
         "ground truth: every window must be a list of 2 numbers"),
        ([{"qid": "a", "relevant_windows": [["x", 1]]}],
         "ground truth: every window must be a list of 2 numbers"),
        ([{"qid": "a", "relevant_windows": [0, 1]}],
         "ground truth: every window must be a list of 2 numbers"),
    ],
)
def test_ground_truth_errors_name_the_row_and_the_problem(rows: list, message: str) -> None:
    from audiomoment.evaluation.metrics import pair_rows

    pred = [{"qid": "a", "pred_relevant_windows": [[0.0, 1.0, 0.5]]}]
    with pytest.raises(InputError) as err:
        pair_rows(rows, pred)
    assert str(err.value) == message


def test_evaluate_counts_by_hand() -> None:
    from audiomoment.evaluation.metrics import evaluate

    gt = [
        {"qid": "a", "relevant_windows": [[0, 10]]},
        {"qid": "b", "relevant_windows": [[5, 10]]},
        {"qid": "c", "relevant_windows": [[0, 4]]},
        {"qid": "d", "relevant_windows": [[0, 2000]]},  # longer than 1,500 s: not scored
        {"qid": "e", "relevant_windows": [[1, 2]]},  # no prediction
    ]
    pred = [
        {"qid": "a", "pred_relevant_windows": [[0, 10, 0.9]]},  # IoU 1
        {"qid": "b", "pred_relevant_windows": [[0, 10, 0.5]]},  # IoU 0.5
        {"qid": "c", "pred_relevant_windows": []},  # empty
        {"qid": "d", "pred_relevant_windows": [[0, 5, 0.1]]},
        {"qid": "z", "pred_relevant_windows": [[3, 3, 0.2]]},  # no ground truth; zero length
    ]
    out = evaluate(gt, pred)
    assert set(out) == {"brief", "full", "audiomoment"}  # no length blocks by default
    assert out["audiomoment"] == {
        "n_queries": 3, "n_ground_truth": 5, "n_predictions": 5,
        "n_predictions_without_ground_truth": 1, "n_ground_truth_without_prediction": 1,
        "n_dropped_without_window": 1, "n_empty_predictions": 1,
        "mean_iou_top1": 50.0,  # (1 + 0.5 + 0) / 3
        "windows_scored": True, "n_zero_length_windows": 1,
    }
    # R1@0.5: a and b hit (IoU 0.5 reaches 0.5), c misses: 2 / 3; R1@0.7: a only
    assert out["brief"]["MR-full-R1@0.5"] == 66.67
    assert out["brief"]["MR-full-R1@0.7"] == 33.33
    assert set(evaluate(gt, pred, length_blocks=True)) == {
        "brief", "full", "short", "middle", "long", "audiomoment"}


def test_nothing_to_score_is_one_line() -> None:
    from audiomoment.evaluation.metrics import evaluate

    gt = [{"qid": "a", "relevant_windows": [[0, 2000]]}]
    pred = [{"qid": "a", "pred_relevant_windows": [[0, 10, 0.5]]}]
    with pytest.raises(InputError) as err:
        evaluate(gt, pred)
    assert str(err.value) == ("evaluation: no query has both a prediction and a ground-truth "
                              "window of length in (0, 1500] s")
