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


def write_dataset(root: Path) -> Path:
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
        ("q_edge", "rec_edge", 5.5, basis(3), [[2, 4]]),
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
