"""The dataset runner's counters, on a hand-made 1024-d dataset with known answers.

Four recordings of hand-picked lengths and durations, System 2 (plain similarity):

* ``rec_event`` (20 s, 20 windows): an event at 8-11 s that its query points at; the
  posterior splits cleanly, no fallback.
* ``rec_past`` (4.2 s, 10 windows: more windows than ``ceil(4.2) = 5``): its query's event
  lies at 8-9 s, past the end, so every candidate run vanishes and the query takes the
  fallback (not degenerate).
* ``rec_const`` (8 s, 8 windows): its query is orthogonal to every window, so the trace is
  exactly 0: degenerate, fallback.
* ``rec_edge`` (5.5 s, 6 windows = ``ceil(5.5)``): not past its duration.

So: 2 fallbacks, 1 degenerate, 1 recording past its duration, by both ways of reading the
features (the feature store, and the files directly).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from audiomoment.io.annotations import read_annotations
from audiomoment.pipelines.dataset import predict_dataset

DIM = 1024


def basis(k: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[k] = 1.0
    return v


def write_dataset(root: Path, edge_duration: float = 5.5) -> Path:
    """The four recordings above; ``edge_duration``: rec_edge's (6 windows; below 5 s it
    is past its duration too)."""
    rng = np.random.default_rng(3)
    feats = root / "FEATURES"
    (feats / "clap").mkdir(parents=True)
    (feats / "clap_text").mkdir()

    def background(n: int) -> np.ndarray:
        # windows in the span of e_100..e_199, away from every query direction
        x = np.zeros((n, DIM))
        x[:, 100:200] = rng.normal(size=(n, 100))
        return x

    audio = {"rec_event": background(20), "rec_past": background(10),
             "rec_const": background(8), "rec_edge": background(6)}
    audio["rec_event"][8:12] += 30.0 * basis(1)
    audio["rec_past"][8:10] += 30.0 * basis(2)
    audio["rec_edge"][2:4] += 30.0 * basis(3)
    for vid, x in audio.items():
        np.savez(feats / "clap" / f"{vid}.npz", features=x.astype(np.float32))
    rows = [
        ("q_event", "rec_event", 20.0, basis(1), [[8, 12]]),
        ("q_past", "rec_past", 4.2, basis(2), [[0, 4]]),
        ("q_const", "rec_const", 8.0, basis(10), [[0, 8]]),
        ("q_edge", "rec_edge", edge_duration, basis(3), [[2, 4]]),
    ]
    lines = []
    for qid, vid, duration, direction, windows in rows:
        hidden = np.stack([rng.normal(size=DIM), direction])
        np.savez(feats / "clap_text" / f"{qid}.npz", last_hidden_state=hidden.astype(np.float32))
        lines.append(json.dumps({"qid": qid, "query": qid, "vid": vid, "duration": duration,
                                 "relevant_windows": windows}))
    path = root / "annotations.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("feature_store", [True, False])
def test_fallback_degenerate_and_past_duration_counts(tmp_path: Path, feature_store: bool):
    annotations = read_annotations(write_dataset(tmp_path))
    run = predict_dataset(annotations, tmp_path / "FEATURES", system=2, progress=False,
                          cache_dir=tmp_path / "cache" if feature_store else None,
                          feature_store=feature_store, keep_results=True)
    flags = {q: (r.fallback, r.degenerate) for q, r in run.results.items()}
    assert flags == {"q_event": (False, False), "q_past": (True, False),
                     "q_const": (True, True), "q_edge": (False, False)}
    assert (run.n_fallback, run.n_degenerate, run.n_past_duration) == (2, 1, 1)
    windows = {row["qid"]: row["pred_relevant_windows"] for row in run.rows}
    start, end = windows["q_event"][0][:2]  # the event, widened by the smoothing
    assert 5.0 <= start <= 8.0 and 12.0 <= end <= 15.0
    assert windows["q_const"][0][:2] == [0.0, 8.0]  # the whole recording
    assert windows["q_past"] == []  # even the fallback run lies past 4.2 s


def test_the_window_baseline_counts_nothing(tmp_path: Path):
    annotations = read_annotations(write_dataset(tmp_path))
    run = predict_dataset(annotations, tmp_path / "FEATURES", system="window", progress=False)
    assert (run.n_fallback, run.n_degenerate, run.n_past_duration) == (0, 0, 1)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("feature_store", [True, False])
def test_system1_traces_are_the_background_contrast(tmp_path: Path, feature_store: bool):
    """System 1's trace is a_t . (q - n), every vector unit length, computed here from the
    files by hand."""
    annotations = read_annotations(write_dataset(tmp_path))
    neutral = np.random.default_rng(9).normal(size=DIM)
    run = predict_dataset(annotations, tmp_path / "FEATURES", system=1, neutral=neutral,
                          progress=False, keep_results=True, feature_store=feature_store,
                          cache_dir=tmp_path / "cache" if feature_store else None)
    feats = tmp_path / "FEATURES"
    for row in annotations:
        audio = np.load(feats / "clap" / f"{row['vid']}.npz")["features"].astype(np.float64)
        query = np.load(feats / "clap_text" / f"{row['qid']}.npz")["last_hidden_state"][-1]
        a = audio / np.linalg.norm(audio, axis=1, keepdims=True)
        expected = a @ (unit(query.astype(np.float64)) - unit(neutral))
        np.testing.assert_allclose(run.results[row["qid"]].trace, expected, rtol=0, atol=1e-12)


def test_the_window_baseline_follows_the_configuration(tmp_path: Path):
    from audiomoment.config import LocalizeConfig

    annotations = read_annotations(write_dataset(tmp_path))
    # frames of 0.5 s: rec_event's event (windows 8..11) lies at 4-6 s; one window each
    run = predict_dataset(annotations, tmp_path / "FEATURES", system="window", progress=False,
                          config=LocalizeConfig(hop_s=0.5, max_windows=1))
    windows = {row["qid"]: row["pred_relevant_windows"] for row in run.rows}
    assert all(len(w) == 1 for w in windows.values())
    start, end = windows["q_event"][0][:2]
    assert 3.0 <= start <= 4.0 and 6.0 <= end <= 7.0
    # 20 windows of 0.5 s cover 10 s, within the 20-s duration; rec_past's 10 windows cover
    # 5 s, past its 4.2 s: its windows are clipped there
    assert all(w[0][1] <= row["duration"] for w, row in
               zip(windows.values(), annotations, strict=True))
    assert run.n_past_duration == 1


def test_projected_recordings_are_cached_by_file_content(tiny_dataset, tmp_path: Path):
    """Without the feature store, 768-d recordings are projected once and kept under the
    SHA-256 of their feature file's bytes."""
    import hashlib

    from audiomoment.clap.checkpoint import load_projection_heads

    annotations = read_annotations(tiny_dataset["annotations"])
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    cache = tmp_path / "cache"
    run = predict_dataset(annotations, tiny_dataset["features"], system=2, heads=heads,
                          cache_dir=cache, feature_store=False, progress=False)
    names = sorted(p.stem for p in cache.rglob("*.npy"))
    expected = sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in (tiny_dataset["features"] / "clap").glob("*.npz"))
    assert names == expected
    again = predict_dataset(annotations, tiny_dataset["features"], system=2, heads=heads,
                            cache_dir=cache, feature_store=False, progress=False)
    assert again.rows == run.rows


@pytest.mark.parametrize("feature_store", [True, False])
def test_every_recording_past_its_duration_is_counted(tmp_path: Path, feature_store: bool):
    """rec_edge at 4.5 s (6 windows > ceil(4.5) = 5) joins rec_past: two recordings."""
    annotations = read_annotations(write_dataset(tmp_path, edge_duration=4.5))
    run = predict_dataset(annotations, tmp_path / "FEATURES", system=2, progress=False,
                          cache_dir=tmp_path / "cache" if feature_store else None,
                          feature_store=feature_store)
    assert run.n_past_duration == 2


class _Clock:
    """Stands in for the runner's ``time`` module: ``perf_counter`` moves only when a
    wrapped step advances it, so each stage's seconds are known exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time_ns(self) -> int:  # the feature store's memo needs the real clock
        import time

        return time.time_ns()

    def advancing(self, fn, seconds: float):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.now += seconds
            return fn(*args, **kwargs)
        return wrapper


@pytest.mark.parametrize("feature_store", [True, False])
def test_stage_timings_are_the_sum_of_their_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feature_store: bool
):
    """Each step advances a fake clock by its own power of ten: the seconds of every stage
    are then exact sums. Four recordings, four queries, batches of three (two batches)."""
    from audiomoment.pipelines import dataset as ds

    annotations = read_annotations(write_dataset(tmp_path))
    clock = _Clock()
    monkeypatch.setattr(ds, "time", clock)
    steps = {"load_audio_features": 10.0, "load_query_features": 1.0,
             "recording_embeddings": 100.0, "recording_traces": 1000.0,
             "localised_rows": 10000.0, "_store_plan": 100000.0}
    for name, seconds in steps.items():
        monkeypatch.setattr(ds, name, clock.advancing(getattr(ds, name), seconds))
    monkeypatch.setattr(ds.StoredTraces, "take", clock.advancing(ds.StoredTraces.take, 1000.0))
    monkeypatch.setitem(ds.BATCH_QUERIES, "fast", 3)

    def run() -> dict[str, float]:
        return predict_dataset(annotations, tmp_path / "FEATURES", system=2, progress=False,
                               cache_dir=tmp_path / "cache", feature_store=feature_store
                               ).timings_s

    if feature_store:
        # load: the plan (stat, memo); projection: reading 4 + 4 files, projecting 4
        assert run() == {"load": 100000.0, "projection": 444.0, "traces": 2000.0,
                         "localisation": 20000.0}
        # warm: nothing read, nothing projected
        assert run() == {"load": 100000.0, "projection": 0.0, "traces": 2000.0,
                         "localisation": 20000.0}
    else:
        # load: 4 recordings and 4 query files; the traces are made per recording
        assert run() == {"load": 44.0, "projection": 400.0, "traces": 4000.0,
                         "localisation": 20000.0}


@pytest.mark.parametrize("feature_store", [True, False])
@pytest.mark.parametrize("audio_head", [False, True])
def test_text_features_without_a_text_head_name_the_query_file(
    tmp_path: Path, feature_store: bool, audio_head: bool
):
    """1024-d recordings need no head, but a 768-d query file does: the message names that
    file, whether there are no heads at all or only the audio one."""
    from audiomoment.pipelines.dataset import MissingProjection
    from audiomoment.testing.random_clap import random_projection_head

    annotations = read_annotations(write_dataset(tmp_path))
    query = tmp_path / "FEATURES" / "clap_text" / "q_past.npz"
    np.savez(query, last_hidden_state=np.ones((2, 768), np.float32))
    heads = {"audio": random_projection_head(np.random.default_rng(0))} if audio_head else None
    expected = f"^{re.escape(str(query))}: 768-d text features need the checkpoint's " \
               "projection heads$"
    with pytest.raises(MissingProjection, match=expected):
        predict_dataset(annotations, tmp_path / "FEATURES", system=2, heads=heads,
                        progress=False, feature_store=feature_store,
                        cache_dir=tmp_path / "cache" if feature_store else None)


def _bar(label: str, n: int, unit: str) -> str:
    """tqdm's last line of a finished bar: ``label: 100%|####| n/n [.., rate unit/s]``."""
    return rf"{label}: 100%\|[^|]*\| {n}/{n} \[[^\]]*({unit}/s|s/{unit})\]"


@pytest.mark.parametrize("feature_store", [True, False])
def test_progress_bars_are_shown_when_asked_and_only_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], feature_store: bool
):
    """progress=True: one bar per pass, labelled and counted in its unit (recordings
    read, or stored; queries localised); progress=False: nothing on stderr."""
    annotations = read_annotations(write_dataset(tmp_path))

    def run(progress: bool) -> str:
        predict_dataset(annotations, tmp_path / "FEATURES", system=2, progress=progress,
                        cache_dir=tmp_path / "cache", feature_store=feature_store)
        return capsys.readouterr().err

    err = run(True)
    first = _bar("storing features", 4, "rec") if feature_store else _bar("recordings", 4, "rec")
    assert re.search(first, err), err
    assert re.search(_bar("localising", 4, "query"), err), err
    assert run(False) == ""


def test_progress_none_shows_bars_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """progress=None: bars when stderr is a terminal, none otherwise (pytest's capture)."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    annotations = read_annotations(write_dataset(tmp_path))
    predict_dataset(annotations, tmp_path / "FEATURES", system=2, feature_store=False)
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    predict_dataset(annotations, tmp_path / "FEATURES", system=2, feature_store=False)
    assert re.search(_bar("recordings", 4, "rec"), terminal.getvalue())
    assert re.search(_bar("localising", 4, "query"), terminal.getvalue())
