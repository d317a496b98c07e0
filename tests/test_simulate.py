"""Tests of the SIMULATED dataset generator (audiomoment.testing.simulate)."""

from __future__ import annotations

import dataclasses
import hashlib
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
from audiomoment.testing.archive import (
    ArchiveConfig,
    ArchiveRecording,
    archive_space,
    describe_archive,
    simulate_archive,
)
from audiomoment.testing.concepts import (
    STOP_WORDS,
    ConceptVocabulary,
    QueryOverlap,
    caption_words,
    concept_overlap,
    overlap_summary,
    synthetic_captions,
    synthetic_word,
    with_concepts,
)
from audiomoment.testing.simulate import (
    ANNOTATION_FILES,
    SimulatedDataset,
    SimulationConfig,
    describe,
    find_shared_data,
    presence,
    query_difficulty,
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


# --------------------------------------------------------------------------- unchanged presets


def _dataset_digest(ds: SimulatedDataset) -> str:
    """SHA-256 over the annotations and every array of a simulated dataset, in order."""
    h = hashlib.sha256()
    h.update(json.dumps(ds.annotations, sort_keys=True).encode())
    for vid, x in ds.audio_features.items():
        h.update(vid.encode())
        h.update(np.ascontiguousarray(x).tobytes())
    for qid, x in ds.text_features.items():
        h.update(qid.encode())
        h.update(np.ascontiguousarray(x).tobytes())
    for modality in ("audio", "text"):
        head = ds.heads[modality]
        for a in (head.linear1, head.linear2, head.ln_weight, head.ln_bias):
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(ds.neutral_phrase_features.tobytes())
    h.update(ds.neutral.tobytes())
    return h.hexdigest()


# Digests of castella_like(0, scale=0.02) / clotho_like(0, scale=0.003) computed with the
# simulator as it was before shared concepts existed.
_DIGEST_SYNTHETIC = "9869753c627f1fbb164b3ccb9a2d9efdca381ca44ba3694ec98be8369419ba51"
_DIGEST_REAL_CASTELLA = "93e076432e062a00bfc50711cc0891e1fec3e907b5fa58972957cffc4ef20f98"
_DIGEST_REAL_CLOTHO = "ce38a22a3304efae6c29b09944c55ede6468aee3bf4d1f569767178fd0bb148c"


def test_presets_without_concepts_are_bit_identical_to_before(tmp_path: Path) -> None:
    cfg = SimulationConfig.castella_like(0, scale=0.02)
    assert cfg.concepts is False
    synthetic = simulate(cfg, shared_data=tmp_path)  # empty folder: synthetic plans
    assert synthetic.source == "synthetic" and synthetic.n_queries == 27
    assert _dataset_digest(synthetic) == _DIGEST_SYNTHETIC
    assert synthetic.captions == {} and synthetic.concepts == {}
    assert "concepts" not in describe(synthetic)
    folder = find_shared_data()
    if folder is not None and (folder / "castella/castella_test_release.jsonl").is_file():
        assert _dataset_digest(simulate(cfg, shared_data=folder)) == _DIGEST_REAL_CASTELLA
    if folder is not None and (folder / ANNOTATION_FILES["clotho"][0]).is_file():
        clotho = simulate(SimulationConfig.clotho_like(0, scale=0.003), shared_data=folder)
        assert _dataset_digest(clotho) == _DIGEST_REAL_CLOTHO


# --------------------------------------------------------------------------- concepts


def test_concept_words_drop_stop_words_rare_words_and_keep_order() -> None:
    assert caption_words("A man's dog stir-fried") == ["a", "man", "s", "dog", "stir", "fried"]
    captions = ["A man talks while a dog barks", "A man talks", "The dog barks loudly",
                "Rain falls as something sounds"]
    vocab = ConceptVocabulary.from_captions(captions, min_count=2)
    assert vocab.words == ("barks", "dog", "man", "talks")  # loudly, rain, falls: once only
    assert dict(vocab.counts) == {"barks": 2, "dog": 2, "man": 2, "talks": 2}
    assert vocab.n_captions == 4
    assert vocab.concepts("The dog barks at a man, the dog") == ("dog", "barks", "man")
    every = ConceptVocabulary.from_captions(captions, min_count=1)
    assert every.concepts(captions[3]) == ("rain", "falls")  # as, something, sounds: stop words
    assert not set(every.words) & STOP_WORDS


def test_concept_overlap_hand_made_case() -> None:
    """Three recordings: A "a man talks"; B "a man sings"; C "a dog barks while a man talks"
    and "a dog barks". Counts and shares worked out by hand."""
    captions = {"q1": ("A", "A man talks"), "q2": ("B", "A man sings"),
                "q3": ("C", "A dog barks while a man talks"), "q4": ("C", "A dog barks")}
    vocab = ConceptVocabulary.from_captions([c for _, c in captions.values()], min_count=1)
    rows = [(qid, vid, vocab.concepts(c)) for qid, (vid, c) in captions.items()]
    assert rows[2][2] == ("dog", "barks", "man", "talks")
    got = concept_overlap(rows)
    # q1 {man, talks}: B shares man (1/2); C's q3 has both (2/2).
    assert got["q1"] == QueryOverlap("q1", 2, 2, 1, 0.75)
    # q2 {man, sings}: A (man, 1/2) and C (man, 1/2).
    assert got["q2"] == QueryOverlap("q2", 2, 2, 0, 0.5)
    # q3 {dog, barks, man, talks}: A (man, talks: 2/4), B (man: 1/4); C is its own recording.
    assert got["q3"] == QueryOverlap("q3", 4, 2, 0, 0.375)
    # q4 {dog, barks}: only in its own recording.
    assert got["q4"] == QueryOverlap("q4", 2, 0, 0, 0.0)
    summary = overlap_summary(got)
    assert summary["n_queries"] == 4
    assert summary["other_recordings"] == {"q25": 1.5, "median": 2.0, "q75": 2.0, "max": 2}
    assert summary["share_with_at_least_1"] == 0.75
    assert summary["share_with_at_least_10"] == 0.0
    assert summary["share_with_full_match"] == 0.25
    assert summary["shared_weight_median"] == 0.5
    assert summary["queries_without_concepts"] == 0


def test_event_direction_holds_the_concept_share() -> None:
    rng = np.random.default_rng(0)
    mix, detail = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 64)))
    for share in (0.0, 0.3, 1.0):
        e = with_concepts(detail, mix, share)
        assert np.linalg.norm(e) == pytest.approx(1.0)
        assert (e @ mix) ** 2 == pytest.approx(share)
    np.testing.assert_allclose(with_concepts(detail, None, 0.5), detail)


def test_synthetic_captions_follow_a_zipf_vocabulary() -> None:
    rng = np.random.default_rng(0)
    captions = synthetic_captions(rng, 3000, vocabulary_size=200, exponent=1.0,
                                  words_per_caption=(1, 3))
    counts = ConceptVocabulary.from_captions(captions, min_count=1).counts
    assert all(1 <= len(caption_words(c)) <= 3 for c in captions)
    assert all(len(set(caption_words(c))) == len(caption_words(c)) for c in captions)
    assert max(counts, key=lambda w: counts[w]) == synthetic_word(0) == "man"
    assert counts[synthetic_word(0)] > 5 * counts.get(synthetic_word(20), 0)
    assert synthetic_word(150).isalpha() and synthetic_word(150) not in STOP_WORDS


def _corpus(**changes: Any) -> SimulationConfig:
    params: dict[str, Any] = dict(
        seed=5, n_recordings=30, n_queries=60, concepts=True, synthetic_vocabulary=5,
        caption_words=(1, 1), background_variation=0.0, duration_range_s=(30.0, 60.0),
    )
    return SimulationConfig(**(params | changes))


def test_concepts_recur_across_recordings_and_change_only_event_frames() -> None:
    """Queries whose captions share their one concept respond to each other's events in other
    recordings; without concepts they do not. Frames without events and every draw outside
    the concept stream are the same with and without concepts."""
    on, off = simulate(_corpus()), simulate(_corpus().with_(concepts=False))
    assert on.caption_source == "synthetic" and len(on.concepts) == 60
    assert all(r["query"] == f"[simulated] {on.captions[r['qid']]}" for r in on.annotations)

    rows = off.annotations
    n_frames = {vid: len(x) for vid, x in off.audio_features.items()}
    inside = {  # frames mostly inside each query's windows
        r["qid"]: presence(np.array(r["relevant_windows"], float), n_frames[r["vid"]]).max(0) > 0.5
        for r in rows
    }
    quiet = {vid: np.ones(n, bool) for vid, n in n_frames.items()}  # frames of no event
    for r in rows:
        w = np.array(r["relevant_windows"], float)
        quiet[r["vid"]] &= presence(w, n_frames[r["vid"]]).max(0) == 0

    def lift(ds: SimulatedDataset) -> float:
        lifts = []
        for a in rows:
            contrast = ds.query_embeddings[a["qid"]] - ds.neutral
            for b in rows:
                if a["vid"] == b["vid"] or on.concepts[a["qid"]] != on.concepts[b["qid"]]:
                    continue
                sims = ds.audio_embeddings[b["vid"]] @ contrast
                lifts.append(sims[inside[b["qid"]]].mean() - sims[quiet[b["vid"]]].mean())
        assert len(lifts) > 50
        return float(np.mean(lifts))

    assert lift(on) > 0.03
    assert abs(lift(off)) < 0.01

    assert on.annotations == [
        r | {"query": f"[simulated] {on.captions[r['qid']]}"} for r in off.annotations
    ]
    np.testing.assert_array_equal(on.neutral, off.neutral)
    for row in rows:
        vid = row["vid"]
        np.testing.assert_array_equal(
            on.audio_features[vid][quiet[vid]], off.audio_features[vid][quiet[vid]]
        )
        assert not np.array_equal(on.audio_features[vid], off.audio_features[vid])
        np.testing.assert_array_equal(  # text rows other than the query's own vector
            on.text_features[row["qid"]][:-1], off.text_features[row["qid"]][:-1]
        )


def test_query_difficulty_matches_a_brute_force_count() -> None:
    ds = simulate(_corpus(synthetic_vocabulary=40, caption_words=(1, 3)))
    got = query_difficulty(ds)
    rows = ds.annotations
    for a in rows:
        mine = set(ds.concepts[a["qid"]])
        best: dict[str, int] = {}
        for b in rows:
            if b["vid"] != a["vid"] and mine & set(ds.concepts[b["qid"]]):
                best[b["vid"]] = max(best.get(b["vid"], 0), len(mine & set(ds.concepts[b["qid"]])))
        assert got[a["qid"]].n_recordings == len(best)
        assert got[a["qid"]].n_full == sum(1 for n in best.values() if n == len(mine))
        expected_share = np.mean(list(best.values())) / len(mine) if best else 0.0
        assert got[a["qid"]].mean_share == pytest.approx(expected_share)
    summary = describe(ds)["concepts"]["difficulty"]
    counts = [got[r["qid"]].n_recordings for r in rows]
    assert summary["other_recordings"]["median"] == float(np.median(counts))
    assert summary["share_with_at_least_1"] == pytest.approx(np.mean(np.array(counts) >= 1))


def test_corpus_preset_uses_the_real_captions_when_found(tmp_path: Path) -> None:
    cfg = SimulationConfig.castella_corpus(0)
    assert (cfg.n_recordings, cfg.n_queries, cfg.concepts) == (566, 1347, True)
    assert cfg.snr == pytest.approx(0.3 / math.sqrt(0.5))
    assert SimulationConfig.castella_corpus(0, snr=0.2).snr == 0.2
    small = SimulationConfig.castella_corpus(0, scale=0.02)
    synthetic = simulate(small, shared_data=tmp_path)
    assert synthetic.caption_source == "synthetic" and len(synthetic.captions) == 27
    assert describe(synthetic)["concepts"]["vocabulary_size"] == len(synthetic.vocabulary or ())
    folder = find_shared_data()
    if folder is None or not (folder / ANNOTATION_FILES["castella"][0]).is_file():
        return
    real_rows = {}
    for rel in ANNOTATION_FILES["castella"]:
        with open(folder / rel, encoding="utf-8") as handle:
            real_rows |= {r["qid"]: r for r in map(json.loads, handle)}
    ds = simulate(small, shared_data=folder)
    assert ds.caption_source.startswith("real captions: castella/castella_test_release.jsonl")
    assert ds.vocabulary is not None and ds.vocabulary.n_captions == len(real_rows)
    for row in ds.annotations:
        caption = real_rows[row["source_qid"]]["query"]
        assert row["query"] == f"[simulated] {caption}"
        assert ds.concepts[row["qid"]] == ds.vocabulary.concepts(caption)
    assert "man" in ds.vocabulary and "the" not in ds.vocabulary


def test_simulate_command_writes_the_corpus_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiomoment.cli.app import main

    original = SimulationConfig.__dict__["castella_like"].__func__

    def small(cls: type, seed: int = 0, scale: float = 1.0, **changes: Any) -> SimulationConfig:
        return original(cls, seed, scale=0.02 * scale, **changes)

    monkeypatch.setattr(SimulationConfig, "castella_like", classmethod(small))
    out = tmp_path / "corpus"
    assert main(["simulate", "--preset", "castella-corpus", "--out", str(out), "--seed", "2"]) == 0
    manifest = json.loads((out / "simulation.json").read_text())
    assert manifest["parameters"]["concepts"] is True
    difficulty = manifest["concepts"]["difficulty"]
    assert difficulty["n_queries"] == manifest["n_queries"] == 27
    expected = simulate(SimulationConfig.castella_corpus(2))
    rows = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert rows == expected.annotations
    assert "concept words shape the simulated features" in (out / "README.txt").read_text()


# --------------------------------------------------------------------------- archive


def _frames_of(rec: ArchiveRecording, concepts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Masks (T,) of the frames inside events holding all ``concepts`` and of event-free ones."""
    t = len(rec.embeddings)
    hit, busy = np.zeros(t, bool), np.zeros(t, bool)
    for event in rec.events:
        inside = presence(event.windows, t).max(axis=0) > 0.5
        busy |= presence(event.windows, t).max(axis=0) > 0
        if set(concepts) <= set(event.concepts):
            hit |= inside
    return hit, ~busy


def test_archive_recordings_shapes_durations_and_ground_truth(tmp_path: Path) -> None:
    cfg = ArchiveConfig(duration_range_s=(120.0, 900.0))
    recordings = list(simulate_archive(1.5, seed=3, config=cfg, shared_data=tmp_path))
    assert sum(r.duration_s for r in recordings) == pytest.approx(5400.0, abs=1.0)
    assert len({r.recording_id for r in recordings}) == len(recordings) > 5
    for rec in recordings[:-1]:
        assert 120.0 <= rec.duration_s <= 900.0
    for rec in recordings:
        emb = rec.embeddings
        assert emb.dtype == np.float32 and emb.shape == (math.floor(rec.duration_s), 1024)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        assert len(rec.events) >= 1
        for event in rec.events:
            assert event.windows.shape == (*event.amplitudes.shape, 2)
            assert np.all(event.windows[:, 0] < event.windows[:, 1])
            assert np.all(event.windows[:, 1] <= rec.duration_s)
        concepts = rec.events[0].concepts or ("zzz",)
        expected = [w for e in rec.events if set(concepts) <= set(e.concepts) for w in e.windows]
        got = rec.windows_for(concepts)
        assert sorted(map(tuple, got)) == sorted(map(tuple, expected))


def test_archive_is_deterministic_per_seed(tmp_path: Path) -> None:
    cfg = ArchiveConfig(duration_range_s=(60.0, 300.0))
    a = list(simulate_archive(0.3, seed=4, config=cfg, shared_data=tmp_path))
    b = list(simulate_archive(0.3, seed=4, config=cfg, shared_data=tmp_path))
    c = next(iter(simulate_archive(0.3, seed=5, config=cfg, shared_data=tmp_path)))
    assert len(a) >= 4
    assert [r.recording_id for r in a] == [r.recording_id for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.duration_s == y.duration_s
        np.testing.assert_array_equal(x.embeddings, y.embeddings)
        assert [e.caption for e in x.events] == [e.caption for e in y.events]
    assert c.duration_s != a[0].duration_s or not np.array_equal(c.embeddings, a[0].embeddings)
    space = archive_space(4, cfg, shared_data=tmp_path)
    np.testing.assert_array_equal(space.recording(1).embeddings, a[1].embeddings)


def test_archive_yields_one_recording_at_a_time(tmp_path: Path) -> None:
    """A thousand hours start at once (nothing is drawn ahead), and the memory held while
    consuming 12 hours stays at a few recordings' worth, far below the archive's size."""
    import tracemalloc

    archive = simulate_archive(1000.0, seed=0, shared_data=tmp_path)
    assert iter(archive) is archive
    first, second = next(archive), next(archive)
    assert (first.recording_id, second.recording_id) == ("arch_000000", "arch_000001")

    windows = 0
    tracemalloc.start()
    try:
        for rec in simulate_archive(12.0, seed=0, shared_data=tmp_path):
            windows += len(rec.embeddings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = windows * 1024 * 4
    one_hour = 3600 * 1024 * 4
    assert total > 150e6
    assert peak < 4 * one_hour < total / 2


def test_archive_query_embeddings_find_their_planted_events(tmp_path: Path) -> None:
    """For the captions' most common concepts, frames of events holding them are more similar
    to the query than event-free frames on average: clearly so for the contrast with the
    neutral embedding, and with the plain similarity once the background is constant."""
    for cfg, plain_margin in ((ArchiveConfig(), 0.02),
                              (ArchiveConfig(background_variation=0.0), 0.03)):
        space = archive_space(1, cfg, shared_data=tmp_path)
        common = sorted(space.vocabulary.counts, key=lambda w: -space.vocabulary.counts[w])[:6]
        recordings = list(space.recordings(6.0))
        plain, contrast = [], []
        for word in common:
            q = space.query_embedding([word])
            hits, quiet_plain, hits_c, quiet_c = [], [], [], []
            for rec in recordings:
                hit, quiet = _frames_of(rec, (word,))
                s, c = rec.embeddings @ q, rec.embeddings @ (q - space.neutral)
                hits.append(s[hit])
                quiet_plain.append(s[quiet])
                hits_c.append(c[hit])
                quiet_c.append(c[quiet])
            assert sum(map(len, hits)) > 50, word
            plain.append(np.concatenate(hits).mean() - np.concatenate(quiet_plain).mean())
            contrast.append(np.concatenate(hits_c).mean() - np.concatenate(quiet_c).mean())
        assert np.mean(plain) > plain_margin, plain
        assert np.mean(contrast) > 0.03 and min(contrast) > 0, contrast


def test_archive_query_and_neutral_embeddings(tmp_path: Path) -> None:
    space = archive_space(2, shared_data=tmp_path)
    assert space.caption_source == "synthetic" and len(space.captions) == 4000
    q = space.query_embedding("A man talks; a dog barks")
    assert q.shape == (1024,) and q.dtype == np.float32
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(q, space.query_embedding(["dog", "man"]))
    assert space.concepts("A man talks; a dog barks") == ("man", "dog")
    other = space.query_embedding(["water"])
    assert float(q @ space.query_embedding(["man"])) > float(q @ other)
    with pytest.raises(ValueError):
        space.query_embedding("the of and")
    with pytest.raises(ValueError):
        space.query_embedding(["notaword"])
    n = space.neutral
    assert n.shape == (1024,) and np.linalg.norm(n) == pytest.approx(1.0, abs=1e-6)
    assert float(n @ space.background) > 0.5
    assert abs(float(space.directions["man"] @ space.background)) < 1e-9
    assert describe_archive(space)["vocabulary_size"] == len(space.vocabulary)
