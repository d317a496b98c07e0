"""Properties of the localiser and the metrics that hold for every input, checked with
generated inputs (hypothesis).

Localiser (both engines): any finite trace of at least 2 frames gives windows inside
[0, duration] with start < end and scores in non-increasing order; constant, two-valued,
huge, nearly constant and extreme-but-finite traces included, and lengths up to 100,000
frames. The engines agree on the top window (and on the mixture's parameters to 1e-10
relative) outside the cases the README lists under "Where fast and reference can differ".

Metrics: a perfect prediction scores 100 everywhere; the order of queries and of lines
changes nothing; IoU is symmetric and lies in [0, 1]; predictions of queries that are not
annotated are refused when a file is read and never scored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.evaluation.corpus import RankedMoment, best_iou, corpus_recall
from audiomoment.evaluation.metrics import (
    FULL_RANGE,
    IOU_THRESHOLDS,
    LENGTH_RANGES,
    cross_iou,
    evaluate,
    paired_iou,
    score_queries,
)
from audiomoment.io.annotations import by_qid
from audiomoment.io.predictions import read_predictions
from audiomoment.method.localize import localize_traces
from audiomoment.method.traces import MAX_TRACE_MAGNITUDE

FAST = LocalizeConfig(engine="fast")
REFERENCE = LocalizeConfig(engine="reference")
ENGINES = (FAST, REFERENCE)

# Fixed examples (derandomize) so every run checks the same cases; no shrinking phase,
# whose search can take minutes on these inputs.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.generate])

# --------------------------------------------------------------------------- localiser


def check_result(windows: np.ndarray, n_frames: int, duration: float | None,
                 max_windows: int = 10) -> None:
    """The shape of a valid answer: (K, 3) finite rows, 0 <= start < end <= limit, scores
    best first; K >= 1 whenever some frame starts before the recording's end."""
    limit = float(n_frames) if duration is None else min(float(n_frames), duration)
    assert windows.ndim == 2 and windows.shape[1] == 3
    assert windows.shape[0] <= max_windows
    if duration is None or duration > n_frames - 1:
        assert windows.shape[0] >= 1
    assert np.isfinite(windows).all()
    start, end, score = windows.T
    assert np.all(start >= 0) and np.all(start < end) and np.all(end <= limit)
    assert np.all(np.diff(score) <= 0)
    # whole frames, except an end clipped to the duration
    assert np.array_equal(start, np.floor(start))
    assert np.all((end == np.floor(end)) | (end == limit))
    # ranked windows never overlap: they are disjoint runs of frames
    order = np.argsort(start)
    assert np.all(start[order][1:] >= end[order][:-1])


def both(traces: list[np.ndarray], durations: list[float | None] | None = None) -> list:
    """Results of both engines, checked; returns [(fast, reference), ...]."""
    out = []
    runs = [localize_traces(traces, durations, config) for config in ENGINES]
    for i, pair in enumerate(zip(*runs, strict=True)):
        for res in pair:
            check_result(res.windows, len(traces[i]), None if durations is None
                         else durations[i])
            assert np.all((res.posterior >= 0) & (res.posterior <= 1))
            assert res.delta >= 0 and np.isfinite(res.delta)
        out.append(pair)
    return out


def assert_agree(fast, reference, parameters: bool = True) -> None:
    """Same top window; same fitted mixture to 1e-10 relative (``parameters``)."""
    assert np.array_equal(fast.windows[0, :2], reference.windows[0, :2])
    np.testing.assert_allclose(fast.windows[0, 2], reference.windows[0, 2], rtol=1e-9)
    assert fast.degenerate == reference.degenerate and fast.fallback == reference.fallback
    if parameters and not fast.degenerate:
        for a, b in ((fast.weights, reference.weights), (fast.means, reference.means),
                     (fast.variances, reference.variances)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=0)


finite = st.floats(min_value=-MAX_TRACE_MAGNITUDE, max_value=MAX_TRACE_MAGNITUDE,
                   allow_nan=False, allow_infinity=False)


@st.composite
def durations_for(draw: st.DrawFn, n_frames: int) -> float | None:
    """None, the frame count, a duration in (T - 1, T] as features give them, or any
    positive duration."""
    kind = draw(st.sampled_from(["none", "frames", "partial", "any"]))
    if kind == "none":
        return None
    if kind == "frames":
        return float(n_frames)
    if kind == "partial":
        return n_frames - draw(st.floats(0, 0.999))
    return draw(st.floats(0.01, 2.0 * n_frames))


@PROPERTY
@given(data=st.data(), trace=hnp.arrays(np.float64, st.integers(2, 120), elements=finite))
def test_any_finite_trace_gives_valid_windows(data: st.DataObject, trace: np.ndarray) -> None:
    duration = data.draw(durations_for(len(trace)))
    with np.errstate(over="raise", invalid="raise"):  # no overflow or NaN on the way
        both([trace], [duration])


@st.composite
def family_trace(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    """Traces of the awkward kinds: constant, two-valued, huge, nearly constant, extreme."""
    kind = draw(st.sampled_from(["constant", "two-valued", "huge", "tiny-spread", "extreme"]))
    n = draw(st.integers(2, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "constant":
        trace = np.full(n, draw(finite))
    elif kind == "two-valued":
        low, high = sorted(draw(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2,
                                         unique=True)))
        assume(high - low > 1e-6 * max(1.0, abs(low), abs(high)))
        share = draw(st.floats(0.05, 0.95))
        trace = np.where(rng.random(n) < share, high, low)
    elif kind == "huge":
        trace = 1e6 * (rng.normal(size=n) + rng.normal())
    elif kind == "tiny-spread":
        trace = rng.normal() + 1e-12 * rng.normal(size=n)
    else:
        trace = rng.choice([-1.0, 1.0], size=n) * 10.0 ** rng.uniform(-300, 100, size=n)
    return kind, trace


@PROPERTY
@given(case=family_trace())
def test_awkward_traces_give_valid_windows_and_the_engines_agree(
    case: tuple[str, np.ndarray],
) -> None:
    kind, trace = case
    ((fast, reference),) = both([trace], [len(trace) - 0.5])
    if kind == "constant":
        # no mixture: the fallback covers the whole recording, clipped to its duration
        for res in (fast, reference):
            assert res.degenerate and res.fallback and res.delta == 0
            np.testing.assert_array_equal(res.windows[:, :2], [[0.0, len(trace) - 0.5]])
    if kind in ("constant", "two-valued", "huge"):
        assert_agree(fast, reference)
    # nearly constant and extreme traces: within the README's limits ("two different
    # k-means partitions reach lower bounds equal up to rounding") the engines may keep
    # different initialisations, so only the validity above is required of them


@st.composite
def clap_like_traces(draw: st.DrawFn) -> list[np.ndarray]:
    """Traces like a query's similarity with a recording: noise plus one or two planted
    events, at any scale and offset, up to 256 frames (where the engines' k-means sums
    agree exactly)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    traces = []
    for _ in range(draw(st.integers(1, 6))):
        n = int(rng.integers(2, 257))
        x = rng.normal(size=n)
        for _event in range(rng.integers(1, 3)):
            a = int(rng.integers(0, n))
            x[a : a + int(rng.integers(1, max(2, n // 3)))] += rng.uniform(0.5, 4.0)
        scale = 10.0 ** rng.uniform(-3, 3)
        traces.append(scale * (x + rng.normal()))
    return traces


@PROPERTY
@given(traces=clap_like_traces())
def test_engines_agree_on_clap_like_traces(traces: list[np.ndarray]) -> None:
    for fast, reference in both(traces):
        assert_agree(fast, reference)


@pytest.mark.parametrize("n_frames", [2, 3, 257, 5_000, 100_000])
def test_long_and_short_traces(n_frames: int) -> None:
    rng = np.random.default_rng(n_frames)
    trace = 0.05 * rng.normal(size=n_frames)
    a = n_frames // 3
    trace[a : a + max(1, n_frames // 50)] += 0.3
    ((fast, reference),) = both([trace], [n_frames - 0.25])
    assert_agree(fast, reference)
    if n_frames > 3:  # the planted event is the top window
        start, end, _ = fast.windows[0]
        assert start <= a + 1 and end >= a + max(1, n_frames // 50) - 1


def test_beyond_the_magnitude_bound_is_refused() -> None:
    trace = np.array([0.0, 1.0, 2e100, 3.0])
    for config in ENGINES:
        with pytest.raises(InputError, match=r"trace 1: values up to 2e\+100"):
            localize_traces([np.array([0.0, 1.0, 0.0]), trace], None, config)
        with pytest.raises(InputError, match=r"trace 0: .*1\.7e\+308"):
            localize_traces(np.array([[1.7e308, 0.0, 1.0]]), None, config)


def test_results_do_not_depend_on_the_other_traces() -> None:
    rng = np.random.default_rng(3)
    traces = [rng.normal(size=int(n)) for n in rng.integers(2, 80, size=12)]
    alone = [localize_traces([t])[0].windows for t in traces]
    shuffled = list(range(len(traces)))
    random.Random(0).shuffle(shuffled)
    together = localize_traces([traces[i] for i in shuffled])
    for k, i in enumerate(shuffled):
        np.testing.assert_array_equal(together[k].windows, alone[i])


# --------------------------------------------------------------------------- metrics


def oracle_r1(gt: dict[str, list], pred: dict[str, list], threshold: float) -> float:
    """R1@t by the standard evaluation's definition, one query at a time in plain Python:
    the first predicted window, the ground-truth window of highest IoU with it (the first
    of equals), their IoU as inter / (max end - min start)."""
    hits = []
    for qid, windows in pred.items():
        s, e = windows[0][:2]
        best, best_iou_value = None, -1.0
        for gs, ge in gt[qid]:
            inter = max(0.0, min(e, ge) - max(s, gs))
            union = (e - s) + (ge - gs) - inter
            if inter / union > best_iou_value:
                best, best_iou_value = (gs, ge), inter / union
        gs, ge = best
        inter = max(0.0, min(e, ge) - max(s, gs))
        hits.append(inter / (max(e, ge) - min(s, gs)) >= threshold)
    return float(f"{100 * np.mean(hits):.2f}")


@st.composite
def dataset(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """Annotation rows with 1-3 ground-truth windows and prediction rows with 1-12 scored
    windows (some copies of ground-truth windows), for 1-15 queries."""
    n = draw(st.integers(1, 15))
    grid = st.integers(0, 300).map(lambda v: v / 2)
    gt_rows, pred_rows = [], []
    for i in range(n):
        windows = []
        for _ in range(draw(st.integers(1, 3))):
            a, b = draw(grid), draw(grid)
            assume(a != b)
            windows.append([min(a, b), max(a, b)])
        qid = draw(st.sampled_from([f"q{i}", i]))
        gt_rows.append({"qid": qid, "query": "x", "vid": f"v{i % 3}", "duration": 150.0,
                        "relevant_windows": windows})
        preds = []
        for _ in range(draw(st.integers(1, 12))):
            if draw(st.booleans()):
                s, e = draw(st.sampled_from(windows))
            else:
                a, b = draw(grid), draw(grid)
                s, e = min(a, b), max(a, b) + 0.5
            preds.append([s, e, draw(st.floats(0, 1))])
        pred_rows.append({"qid": qid, "query": "x", "vid": f"v{i % 3}",
                          "pred_relevant_windows": preds})
    return gt_rows, pred_rows


def flat(block: dict) -> dict:
    """{"MR-mAP": {"0.5": x, ...}, ...} -> {"MR-mAP 0.5": x, ...}; flat blocks unchanged."""
    out = {}
    for key, value in block.items():
        if isinstance(value, dict):
            out.update({f"{key} {k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in metrics if k != "audiomoment"}


@PROPERTY
@given(data=dataset())
def test_perfect_predictions_score_100_everywhere(data: tuple[list[dict], list[dict]]) -> None:
    gt, _ = data
    perfect = [{"qid": r["qid"], "pred_relevant_windows": [
        [s, e, 1.0 - k / 10] for k, (s, e) in enumerate(r["relevant_windows"])]} for r in gt]
    metrics = evaluate(gt, perfect, length_blocks=True)
    assert set(metrics["full"]["MR-R1"].values()) == {100.0}
    assert set(metrics["full"]["MR-mAP"].values()) == {100.0}
    assert metrics["audiomoment"]["mean_iou_top1"] == 100.0
    for name, (lo, hi) in LENGTH_RANGES.items():
        # a length block keeps the queries with a window of its lengths, and only those
        # windows: R1 is 100 where the first window (the top prediction) is one of them,
        # and AP is 1 where they are ranked before the windows of other lengths
        kept = [[lo < e - s <= hi for s, e in r["relevant_windows"]] for r in gt]
        kept = [k for k in kept if any(k)]
        if not kept:
            assert set(metrics[name]["MR-R1"].values()) == {None}
            continue
        if all(k[0] for k in kept):
            assert set(metrics[name]["MR-R1"].values()) == {100.0}
        if all(k == sorted(k, reverse=True) for k in kept):
            assert set(metrics[name]["MR-mAP"].values()) == {100.0}


@PROPERTY
@given(data=dataset(), seed=st.integers(0, 2**16))
def test_query_and_line_order_change_nothing(data: tuple[list[dict], list[dict]],
                                             seed: int) -> None:
    gt, pred = data
    reference = evaluate(gt, pred, length_blocks=True)
    rng = random.Random(seed)
    gt2, pred2 = gt[:], pred[:]
    rng.shuffle(gt2)
    rng.shuffle(pred2)
    shuffled = evaluate(gt2, pred2, length_blocks=True)
    # every query's scores are the same ...
    for block in (FULL_RANGE, *LENGTH_RANGES.values()):
        a, b = score_queries(gt, pred, block), score_queries(gt2, pred2, block)
        order = {q: i for i, q in enumerate(b.qids)}
        assert sorted(a.qids, key=str) == sorted(b.qids, key=str)
        take = [order[q] for q in a.qids]
        np.testing.assert_array_equal(a.ap, b.ap[take])
        np.testing.assert_array_equal(a.top_iou, b.top_iou[take])
    # ... and so are the averages, up to the order of the additions: queries are averaged
    # in prediction order, as the standard evaluation averages them, so a mean that lies
    # on a rounding boundary of the printed two decimals (e.g. 59.375) may print either way
    assert shuffled["audiomoment"] == reference["audiomoment"]
    for key, block in reference.items():
        if key == "audiomoment":
            continue
        for name, value in flat(block).items():
            other = flat(shuffled[key])[name]
            assert (value is None and other is None) or abs(value - other) <= 0.0100001
    # R1 against a one-query-at-a-time oracle
    gt_by = {r["qid"]: r["relevant_windows"] for r in gt}
    pred_by = {r["qid"]: r["pred_relevant_windows"] for r in pred}
    for t in (0.5, 0.7):
        assert reference["full"]["MR-R1"][str(t)] == oracle_r1(gt_by, pred_by, t)


@PROPERTY
@given(data=dataset())
def test_predictions_of_unknown_queries_are_refused_not_scored(
    data: tuple[list[dict], list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    gt, pred = data
    stranger = {"qid": "not-annotated", "query": "x", "vid": "v0",
                "pred_relevant_windows": [[0.0, 150.0, 1.0]]}
    reference = evaluate(gt, pred)
    with_stranger = evaluate(gt, [*pred, stranger])
    assert headline(with_stranger) == headline(reference)
    assert with_stranger["audiomoment"]["n_predictions_without_ground_truth"] == 1
    # reading a predictions file against the annotations refuses it, naming its line
    path = Path(tmp_path_factory.mktemp("pred")) / "pred.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*pred, stranger]))
    with pytest.raises(InputError, match=f"pred.jsonl:{len(pred) + 1}: qid 'not-annotated' "
                                         "is not in the annotations"):
        read_predictions(path, by_qid(gt), on_warning=lambda message: None)
    # corpus R@K: a ranked list for an unknown query counts for nothing
    ranked = {str(r["qid"]): [RankedMoment(r["vid"], *w[:2]) for w in r["pred_relevant_windows"]]
              for r in pred}
    assert corpus_recall(gt, {**ranked, "not-annotated": [RankedMoment("v0", 0.0, 150.0)]}) \
        == corpus_recall(gt, ranked)


spans = st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(1e-3, 1e4)).map(
    lambda p: [p[0], p[0] + p[1]]), min_size=1, max_size=8)


@PROPERTY
@given(a=spans, b=spans)
def test_iou_is_symmetric_and_in_0_1(a: list, b: list) -> None:
    x, y = np.array(a), np.array(b)
    forward, backward = cross_iou(x, y), cross_iou(y, x)
    np.testing.assert_array_equal(forward, backward.T)
    assert np.all((forward >= 0) & (forward <= 1))
    assert np.all(np.diag(cross_iou(x, x)) == 1)
    m = min(len(x), len(y))
    paired = paired_iou(x[:m], y[:m])
    np.testing.assert_array_equal(paired, paired_iou(y[:m], x[:m]))
    # the standard's paired IoU divides by the hull, at least the union
    assert np.all((paired >= 0) & (paired <= np.diagonal(forward)[:m] + 1e-12))
    for s, e in a:
        value = best_iou(RankedMoment("v", s, e), b)
        assert 0 <= value <= 1
        assert value == pytest.approx(cross_iou(np.array([[s, e]]), y).max())


def test_iou_by_hand() -> None:
    a = np.array([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0]])
    b = np.array([[5.0, 15.0], [0.0, 10.0], [0.0, 40.0]])
    np.testing.assert_allclose(cross_iou(a, b), [
        [5 / 15, 1.0, 10 / 40], [1.0, 5 / 15, 10 / 40], [0.0, 0.0, 10 / 40]])
    np.testing.assert_allclose(paired_iou(a, b), [5 / 15, 5 / 15, 10 / 40])


@PROPERTY
@given(data=dataset(), seed=st.integers(0, 2**16))
def test_corpus_recall_of_perfect_rankings_and_any_order(
    data: tuple[list[dict], list[dict]], seed: int
) -> None:
    gt, pred = data
    perfect = {str(r["qid"]): [RankedMoment(r["vid"], *r["relevant_windows"][0])]
               for r in gt}
    assert set(corpus_recall(gt, perfect).values()) == {100.0, float(len(gt))}
    # the same windows credited to another recording never count
    elsewhere = {q: [RankedMoment(m.recording + "-other", m.start_s, m.end_s) for m in ms]
                 for q, ms in perfect.items()}
    result = corpus_recall(gt, elsewhere)
    assert all(v == 0 for k, v in result.items() if k != "queries")
    ranked = {str(r["qid"]): [RankedMoment(r["vid"], *w[:2]) for w in
                              sorted(r["pred_relevant_windows"], key=lambda w: -w[2])]
              for r in pred}
    shuffled = gt[:]
    random.Random(seed).shuffle(shuffled)
    assert corpus_recall(shuffled, ranked) == corpus_recall(gt, ranked)
    for t in (0.5, 0.7):  # moment R@1 against the first window of each list, by hand
        hits = [ranked[str(r["qid"])][0] for r in gt]
        expected = 100.0 * np.mean([best_iou(m, r["relevant_windows"]) >= t
                                    for m, r in zip(hits, gt, strict=True)])
        assert corpus_recall(gt, ranked)[f"R@1 IoU={t:g}"] == pytest.approx(expected)


def test_thresholds_are_the_standard_ones() -> None:
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
