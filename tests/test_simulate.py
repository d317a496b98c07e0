"""Tests of the SIMULATED dataset generator (audiomoment.testing.simulate)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiomoment.clap.checkpoint import load_projection_heads
from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.method.localize import localize, localize_traces
from audiomoment.method.traces import neutral_embedding
from audiomoment.testing.simulate import (
    SimulatedDataset,
    SimulationConfig,
    find_shared_data,
    simulate,
    simulate_traces,
    simulated_heads,
    write_dataset,
)

# The batched engine when the package has it (the report's settings otherwise, with one EM
# initialisation to stay fast); the two systems differ only in the trace.
FAST_LOCALIZE = (
    LocalizeConfig(engine="fast")
    if importlib.util.find_spec("audiomoment.method.em_fast") is not None
    else LocalizeConfig(n_init=1)
)


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Small matrices: one BLAS thread is faster than many on a shared, busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def small() -> SimulatedDataset:
    return simulate(SimulationConfig(seed=3, n_recordings=6, n_queries=12))


# --------------------------------------------------------------------------- scoring


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _predictions(ds: SimulatedDataset, neutral: np.ndarray | None) -> list[dict[str, Any]]:
    rows = []
    for gt in ds.annotations:
        result = localize(
            ds.audio_embeddings[gt["vid"]], ds.query_embeddings[gt["qid"]], neutral,
            FAST_LOCALIZE, gt["duration"],
        )
        rows.append({
            "qid": gt["qid"], "query": gt["query"], "vid": gt["vid"],
            "pred_relevant_windows": result.windows.tolist(),
        })
    return rows


def _r1_at_05(gt_rows: list[dict[str, Any]], pred_rows: list[dict[str, Any]]) -> float:
    """R1@0.5 as a fraction: the top window's best IoU with any ground-truth window >= 0.5.

    Uses ``audiomoment.evaluation.metrics.evaluate`` (percentages, as the
    standard evaluation) when the package has it, the same definition computed here otherwise.
    """
    try:
        from audiomoment.evaluation.metrics import evaluate
    except ImportError:
        evaluate = None
    if evaluate is not None:
        return float(evaluate(gt_rows, pred_rows)["brief"]["MR-full-R1@0.5"]) / 100.0
    return float(np.mean(_top_ious(gt_rows, pred_rows) >= 0.5))


def _top_ious(gt_rows: list[dict[str, Any]], pred_rows: list[dict[str, Any]]) -> np.ndarray:
    preds = {p["qid"]: p["pred_relevant_windows"][0][:2] for p in pred_rows}
    return np.array([
        max(_iou(preds[g["qid"]], w) for w in g["relevant_windows"]) for g in gt_rows
    ])


# --------------------------------------------------------------------------- configuration


def test_presets_have_dev_test_sizes() -> None:
    cas = SimulationConfig.castella_like(5)
    assert (cas.seed, cas.preset, cas.n_recordings, cas.n_queries) == (5, "castella", 566, 1347)
    clo = SimulationConfig.clotho_like()
    assert (clo.preset, clo.n_recordings, clo.events_per_recording) == ("clotho", 6649, (1, 1))
    tiny = SimulationConfig.castella_like(scale=0.1, snr=1.0)
    assert (tiny.n_recordings, tiny.n_queries, tiny.snr) == (57, 135, 1.0)


@pytest.mark.parametrize(
    "changes",
    [{"n_recordings": 0}, {"n_recordings": 5, "n_queries": 4}, {"snr": -1.0},
     {"noise_correlation": 1.0}, {"preset": "nope"}, {"events_per_recording": (3, 2)},
     {"n_recordings": 2, "n_queries": 20}],
)
def test_invalid_parameters_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**changes)


def test_find_shared_data_prefers_explicit_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_shared_data(tmp_path) == tmp_path
    assert find_shared_data(tmp_path / "missing") is None
    monkeypatch.setenv("AUDIOMOMENT_SHARED_DATA", str(tmp_path))
    assert find_shared_data() == tmp_path


# --------------------------------------------------------------------------- in memory


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    cfg = SimulationConfig(seed=11, n_recordings=4, n_queries=9)
    a, b, c = simulate(cfg), simulate(cfg), simulate(cfg.with_(seed=12))
    assert a.annotations == b.annotations
    for vid in a.audio_features:
        np.testing.assert_array_equal(a.audio_features[vid], b.audio_features[vid])
    for qid in a.text_features:
        np.testing.assert_array_equal(a.text_features[qid], b.text_features[qid])
    np.testing.assert_array_equal(a.neutral, b.neutral)
    np.testing.assert_array_equal(a.heads["audio"].linear1, b.heads["audio"].linear1)
    assert [r["duration"] for r in a.annotations] != [r["duration"] for r in c.annotations]
    assert not np.allclose(a.neutral, c.neutral)
    first = next(iter(a.audio_features))
    assert not np.array_equal(a.audio_features[first][:10], c.audio_features[first][:10])


def test_shapes_dtypes_and_frame_count(small: SimulatedDataset) -> None:
    assert small.n_recordings == 6 and small.n_queries == 12
    durations = {r["vid"]: r["duration"] for r in small.annotations}
    for vid, feats in small.audio_features.items():
        assert feats.dtype == np.float32
        assert feats.shape == (math.floor(durations[vid]), 768)
    for row in small.annotations:
        hidden = small.text_features[row["qid"]]
        assert hidden.dtype == np.float32 and hidden.shape[1] == 768
        assert 3 <= hidden.shape[0] <= 12
        assert isinstance(row["qid"], str) and "simulated" in row["query"]
        for start, end in row["relevant_windows"]:
            assert 0 <= start < end <= row["duration"]
    assert small.neutral.shape == (1024,) and small.neutral.dtype == np.float32
    emb = small.audio_embeddings[small.annotations[0]["vid"]]
    assert emb.shape[1] == 1024
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert small.query_embeddings[small.annotations[0]["qid"]].shape == (1024,)


def test_synthetic_durations_include_fractional_ones() -> None:
    ds = simulate(SimulationConfig(seed=1, n_recordings=40, n_queries=40, duration_range_s=(5, 8)))
    durations = [r["duration"] for r in ds.annotations]
    assert any(d != int(d) for d in durations) and any(d == int(d) for d in durations)
    for row in ds.annotations:
        assert len(ds.audio_features[row["vid"]]) == math.floor(row["duration"])


def test_castella_preset_without_real_files_is_synthetic(tmp_path: Path) -> None:
    cfg = SimulationConfig.castella_like(2, scale=0.05)
    ds = simulate(cfg, shared_data=tmp_path)  # an empty folder: no annotation files
    assert ds.source == "synthetic"
    assert (ds.n_recordings, ds.n_queries) == (cfg.n_recordings, cfg.n_queries)
    per_vid: dict[str, int] = {}
    for row in ds.annotations:
        per_vid[row["vid"]] = per_vid.get(row["vid"], 0) + 1
        assert 59 <= row["duration"] <= 300
    assert set(per_vid.values()) <= set(range(1, 6))


def test_castella_preset_copies_real_windows_when_found() -> None:
    folder = find_shared_data()
    if folder is None or not (folder / "castella/castella_test_release.jsonl").is_file():
        pytest.skip("real CASTELLA annotations not available")
    real = {}
    with open(folder / "castella/castella_test_release.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            real[row["qid"]] = row
    ds = simulate(SimulationConfig.castella_like(0, scale=0.05), shared_data=folder)
    assert ds.source.startswith("real annotations: castella/castella_test_release.jsonl")
    for row in ds.annotations:
        source = real[row["source_qid"]]
        assert row["relevant_windows"] == source["relevant_windows"]
        assert row["duration"] == source["duration"]


def test_clotho_preset_one_query_per_60_s_recording(tmp_path: Path) -> None:
    for folder in (tmp_path, None):
        ds = simulate(SimulationConfig.clotho_like(0, scale=0.003), shared_data=folder)
        assert ds.n_queries == ds.n_recordings == 20
        assert {r["duration"] for r in ds.annotations} == {60}
        assert all(len(r["relevant_windows"]) == 1 for r in ds.annotations)
        assert all(f.shape == (60, 768) for f in ds.audio_features.values())


def test_neutral_is_the_projected_phrase_combination(small: SimulatedDataset) -> None:
    phrases = small.neutral_phrase_features
    assert phrases.shape == (3, 768)
    expected = neutral_embedding(project(phrases, small.heads["text"]))
    np.testing.assert_allclose(small.neutral, expected, atol=1e-6)


def test_projection_heads_keep_cosines() -> None:
    heads = simulated_heads(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 768))
    y = rng.uniform(0, 2, (200, 1)) * x + rng.standard_normal((200, 768))
    cos = np.sum(x * y, axis=1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    scale = 10.0 / np.linalg.norm(x, axis=1, keepdims=True)
    px = project(x * scale, heads["audio"])
    py = project(y * 10.0 / np.linalg.norm(y, axis=1, keepdims=True), heads["text"])
    np.testing.assert_allclose(np.sum(px * py, axis=1), cos, atol=0.02)


def test_neutral_points_along_the_shared_background(small: SimulatedDataset) -> None:
    phrases = small.neutral_phrase_features.astype(np.float64)
    unit = phrases / np.linalg.norm(phrases, axis=1, keepdims=True)
    assert np.all(unit @ small.background > 0.5)


# --------------------------------------------------------------------------- on disk


def test_written_layout_reads_back(small: SimulatedDataset, tmp_path: Path) -> None:
    paths = write_dataset(small, tmp_path / "sim", progress=False)
    root = tmp_path / "sim"
    assert paths["annotations"] == root / "annotations.jsonl"
    rows = [json.loads(line) for line in paths["annotations"].read_text().splitlines()]
    assert rows == small.annotations
    for row in rows:
        with np.load(root / "FEATURES" / "clap" / f"{row['vid']}.npz") as npz:
            assert list(npz.keys()) == ["features"]
            feats = npz["features"]
        assert feats.dtype == np.float32 and feats.shape == (math.floor(row["duration"]), 768)
        np.testing.assert_array_equal(feats, small.audio_features[row["vid"]])
        with np.load(root / "FEATURES" / "clap_text" / f"{row['qid']}.npz") as npz:
            assert list(npz.keys()) == ["last_hidden_state"]
            hidden = npz["last_hidden_state"]
        assert hidden.dtype == np.float32 and hidden.shape[1] == 768
        np.testing.assert_array_equal(hidden, small.text_features[row["qid"]])

    heads = load_projection_heads(paths["checkpoint"])
    for modality in ("audio", "text"):
        np.testing.assert_array_equal(heads[modality].linear1, small.heads[modality].linear1)
        np.testing.assert_array_equal(heads[modality].linear2, small.heads[modality].linear2)
        np.testing.assert_array_equal(heads[modality].ln_bias, small.heads[modality].ln_bias)
    import torch

    state = torch.load(paths["checkpoint"], weights_only=True)
    assert list(state) == ["model"] and len(state["model"]) == 8
    assert "caption_encoder.projection.layer_norm.bias" in state["model"]

    neutral = np.load(paths["neutral"])
    assert neutral.shape == (1024,) and neutral.dtype == np.float32
    with np.load(paths["neutral_phrases"]) as npz:
        phrases = npz["features"]
    np.testing.assert_allclose(
        neutral, neutral_embedding(project(phrases, heads["text"])), atol=1e-6
    )

    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["simulated"] is True and manifest["seed"] == 3
    assert manifest["parameters"]["n_recordings"] == 6
    readme = paths["readme"].read_text()
    assert "SIMULATED" in readme and "durations and windows: synthetic" in readme
    assert "real windows are copied" not in readme  # said only when they are
    assert not list(root.rglob(".*"))  # no temporary files left behind
    copied = dataclasses.replace(small, source="real annotations: castella/test.jsonl")
    readme = write_dataset(copied, tmp_path / "copied", progress=False)["readme"].read_text()
    assert "durations and windows: real annotations: castella/test.jsonl" in readme
    assert "real windows are copied" in readme


# --------------------------------------------------------------------------- the key behaviour


def test_contrast_beats_plain_similarity_when_background_varies() -> None:
    """System 1 (contrast with the neutral embedding) wins clearly when every frame carries a
    time-varying shared background; with a constant background the two systems are close."""
    cfg = SimulationConfig.castella_like(0, scale=0.3, use_real_annotations=False)
    varying = simulate(cfg)
    assert varying.n_queries >= 400
    gt = varying.annotations
    r1_contrast = _r1_at_05(gt, _predictions(varying, varying.neutral))
    r1_plain = _r1_at_05(gt, _predictions(varying, None))
    assert 0.15 <= r1_contrast <= 0.7, r1_contrast
    assert r1_contrast - r1_plain >= 0.2, (r1_contrast, r1_plain)

    constant = simulate(cfg.with_(background_variation=0.0))
    gt = constant.annotations
    contrast, plain = _predictions(constant, constant.neutral), _predictions(constant, None)
    r1_gap = _r1_at_05(gt, contrast) - _r1_at_05(gt, plain)
    iou_gap = _top_ious(gt, contrast).mean() - _top_ious(gt, plain).mean()
    assert abs(r1_gap) <= 0.08, r1_gap
    assert abs(iou_gap) <= 0.06, iou_gap


# --------------------------------------------------------------------------- 1-D traces


def test_simulated_traces_shapes_and_determinism() -> None:
    traces, durations, windows = simulate_traces(8, seed=4)
    again = simulate_traces(8, seed=4)
    assert len(traces) == len(durations) == len(windows) == 8
    for trace, duration, w, t2 in zip(traces, durations, windows, again[0], strict=True):
        assert trace.shape == (math.floor(duration),)
        assert w.ndim == 2 and w.shape[1] == 2 and np.all(w[:, 1] > w[:, 0])
        np.testing.assert_array_equal(trace, t2)
    given, d_given, _ = simulate_traces(2, durations=[10.5, 30.0], seed=1)
    assert [len(t) for t in given] == [10, 30] and d_given == [10.5, 30.0]
    with pytest.raises(ValueError):
        simulate_traces(3, durations=[10.0])


def test_simulated_traces_are_localisable() -> None:
    traces, durations, windows = simulate_traces(40, seed=0, snr=4.0, drift=0.3)
    results = localize_traces(traces, durations, FAST_LOCALIZE)
    ious = [
        max(_iou(tuple(r.windows[0, :2]), tuple(w)) for w in gt)
        for r, gt in zip(results, windows, strict=True)
    ]
    assert np.mean(np.array(ious) >= 0.5) >= 0.6
