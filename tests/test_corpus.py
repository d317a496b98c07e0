"""Corpus-level evaluation: corpus R@K on hand-computed cases, and the corpus pipeline (every
query searched across an index) against the archive search and a brute-force ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from index_helpers import PlantedArchive, all_moments, planted_archive, rank_moments, unit

from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.evaluation.corpus import RankedMoment, best_iou, corpus_recall
from audiomoment.index.ingest import index_embeddings
from audiomoment.index.scan import window_scores
from audiomoment.index.search import query_matrix, search_archive
from audiomoment.index.store import ArchiveIndex, ModelSpec, Snapshot
from audiomoment.pipelines.corpus import (
    check_recordings,
    corpus_rankings,
    evaluate_corpus,
    query_vectors_from_features,
)
from audiomoment.testing.random_clap import random_projection_head

M = RankedMoment


def recall(rows: list[dict], ranked: dict[str, list[RankedMoment]]) -> dict[str, float]:
    return corpus_recall(rows, ranked, moment_ks=(1, 5, 10, 100), recording_ks=(1, 5, 10))


def test_best_iou_takes_the_best_ground_truth_window() -> None:
    gt = [[10, 20], [30, 40]]
    assert best_iou(M("a", 12, 20), gt) == pytest.approx(8 / 10)
    assert best_iou(M("a", 31, 45), gt) == pytest.approx(9 / 15)
    assert best_iou(M("a", 15, 35), gt) == pytest.approx(5 / 25)  # 5 s of each window
    assert best_iou(M("a", 50, 60), gt) == 0.0
    assert best_iou(M("a", 5, 5), [[5, 5]]) == 0.0  # a zero union is no overlap
    assert best_iou(M("a", 0, 10), []) == 0.0


def test_corpus_recall_by_hand() -> None:
    rows = [
        {"qid": 1, "vid": "A", "relevant_windows": [[10, 20], [30, 40]]},
        {"qid": "2", "vid": "B", "relevant_windows": [[0, 10]]},
        {"qid": "3", "vid": "C", "relevant_windows": [[5, 15]]},  # no ranked list
    ]
    ranked = {
        # IoU 0.6 with [30, 40] at rank 1; the wrong recording at rank 2 (IoU 1 with A's
        # window, but in B); IoU 0.8 with [10, 20] at rank 3
        "1": [M("A", 31, 45), M("B", 10, 20), M("A", 12, 20)],
        # four other recordings first (A twice), then B with IoU 0.6 at rank 6
        "2": [M("A", 0, 10), M("A", 0, 10), M("C", 0, 10), M("D", 0, 10), M("E", 0, 10),
              M("B", 0, 6)],
    }
    third = 100 / 3
    assert recall(rows, ranked) == pytest.approx({
        # IoU >= 0.5: query 1 from rank 1, query 2 from rank 6
        "R@1 IoU=0.5": third, "R@5 IoU=0.5": third, "R@10 IoU=0.5": 2 * third,
        "R@100 IoU=0.5": 2 * third,
        # IoU >= 0.7: query 1 from rank 3 only
        "R@1 IoU=0.7": 0.0, "R@5 IoU=0.7": third, "R@10 IoU=0.7": third,
        "R@100 IoU=0.7": third,
        # recordings: query 1's is first; query 2's is the 5th distinct (A counted once)
        "recording R@1": third, "recording R@5": 2 * third, "recording R@10": 2 * third,
        "queries": 3.0,
    })


def test_corpus_recall_thresholds_and_cut_offs() -> None:
    rows = [{"qid": "q", "vid": "A", "relevant_windows": [[10, 20]]}]
    # IoU exactly 0.5 and exactly 0.7 count
    assert recall(rows, {"q": [M("A", 10, 15)]})["R@1 IoU=0.5"] == 100.0
    assert recall(rows, {"q": [M("A", 10, 15)]})["R@1 IoU=0.7"] == 0.0
    assert recall(rows, {"q": [M("A", 10, 17)]})["R@1 IoU=0.7"] == 100.0
    # a hit at rank 101 is outside R@100; at rank 100 inside
    misses = [M("Z", 0, 1)] * 99
    assert recall(rows, {"q": [*misses, M("Z", 0, 1), M("A", 10, 20)]})[
        "R@100 IoU=0.5"] == 0.0
    assert recall(rows, {"q": [*misses, M("A", 10, 20)]})["R@100 IoU=0.5"] == 100.0
    # the recording at distinct rank 10 counts for recording R@10, at 11 it does not
    others = [M(f"r{i}", 0, 1) for i in range(9) for _ in range(3)]
    assert recall(rows, {"q": [*others, M("A", 50, 60)]})["recording R@10"] == 100.0
    assert recall(rows, {"q": [*others, M("r9", 0, 1), M("A", 50, 60)]})[
        "recording R@10"] == 0.0
    # no ground truth, a zero-length window: never a moment hit, still a recording hit
    for gt in ([], [[5, 5]]):
        got = recall([{"qid": "q", "vid": "A", "relevant_windows": gt}], {"q": [M("A", 5, 5)]})
        assert got["R@100 IoU=0.5"] == 0.0 and got["recording R@1"] == 100.0
    assert recall([], {}) == {**dict.fromkeys(
        [f"R@{k} IoU={t}" for t in ("0.5", "0.7") for k in (1, 5, 10, 100)]
        + [f"recording R@{k}" for k in (1, 5, 10)], 0.0), "queries": 0.0}


# ------------------------------------------------------------------ the corpus pipeline


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, PlantedArchive,
                                                               list[dict], np.ndarray]:
    """A planted archive, one annotated query per planted event (the query: the event's
    direction with noise) and the query vectors in annotation order."""
    rng = np.random.default_rng(5)
    archive = planted_archive(rng, 30, n_directions=4, lengths=(6, 50), event_rate=0.3)
    archive.items.append(("one-window", archive.items[0][1][:1], 1.0))
    db = tmp_path_factory.mktemp("corpus") / "db"
    index_embeddings(archive.items, db, ModelSpec(model="m", dim=24), neutral=archive.neutral)
    rows, vectors = [], []
    for name, events in archive.events.items():
        for d, a, b in events:
            rows.append({"qid": f"q{len(rows)}", "vid": name, "relevant_windows": [[a, b]]})
            vectors.append(unit(archive.directions[d] + 0.2 * rng.normal(size=24)))
    return ArchiveIndex(db).snapshot(), archive, rows, np.asarray(vectors, np.float32)


@pytest.mark.parametrize("system", [1, 2])
def test_corpus_rankings_equal_the_archive_search(corpus, system: int) -> None:
    snap, archive, rows, queries = corpus
    assert len(rows) >= 20
    config = LocalizeConfig()
    ranked = corpus_rankings(snap, rows, queries, system=system, config=config,
                             queries_per_batch=7, progress=False)
    scores, _ = window_scores(snap, query_matrix(snap, queries, system))
    for j, row in enumerate(rows):
        trace = scores[:, j]  # q . a_t (System 2) or (q - n) . a_t (System 1)
        moments = all_moments(snap, trace, config)
        for ranking in ("calibrated", "report"):
            got = [(m.recording, m.start_s, m.end_s) for m in ranked[ranking][row["qid"]]]
            brute = rank_moments(moments, ranking, 100)
            assert got == [(m.recording, m.start_s, m.end_s) for m in brute]
            found = search_archive(snap, queries[j], system=system, top=100, ranking=ranking)
            assert got == [(m.recording, m.start_s, m.end_s) for m in found.moments]
    results = evaluate_corpus(snap, rows, queries, system=system, progress=False)
    for ranking in ("calibrated", "report"):
        assert results[ranking] == corpus_recall(rows, ranked[ranking])
    # the planted events are easy to find: a query's first moment is an event of its
    # direction (in the annotated recording or another one)
    hits = 0
    for row, q in zip(rows, queries, strict=True):
        d = int(np.argmax(archive.directions @ q))
        first = ranked["calibrated"][row["qid"]][0]
        spans = [[a, b] for k, a, b in archive.events[first.recording] if k == d]
        hits += best_iou(first, spans) >= 0.5
    assert hits >= 0.7 * len(rows), (hits, len(rows))


def test_annotated_recordings_must_be_in_the_index(corpus) -> None:
    snap, _, rows, _ = corpus
    check_recordings(snap, rows, "annotations.jsonl")
    extra = [*rows, *({"qid": f"x{i}", "vid": f"gone{i}"} for i in range(7))]
    with pytest.raises(InputError, match=r"annotations.jsonl: 7 annotated recording\(s\) "
                       r"are not in the index .*gone0, gone1, gone2, gone3, gone4 "
                       r"\(and 2 more\)"):
        check_recordings(snap, extra, "annotations.jsonl")


def test_query_vectors_from_text_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    head = random_projection_head(rng)
    (tmp_path / "clap_text").mkdir()
    joint = rng.normal(size=(2, 1024))
    encoder = rng.normal(size=768)
    np.savez(tmp_path / "clap_text" / "7.npz", last_hidden_state=np.vstack(
        [rng.normal(size=(3, 1024)), joint[0]]).astype(np.float32))
    np.savez(tmp_path / "clap_text" / "b.npz",
             last_hidden_state=np.vstack([rng.normal(size=(2, 768)), encoder]).astype(np.float32))
    rows = [{"qid": 7, "vid": "x"}, {"qid": "b", "vid": "x"}]
    got = query_vectors_from_features(rows, tmp_path, head)
    projected = np.asarray(project(encoder.astype(np.float32), head), dtype=np.float64)
    expected = np.vstack([unit(joint[0].astype(np.float32)), unit(projected)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (2, 1024)
    with pytest.raises(InputError, match="768-d text features need"):
        query_vectors_from_features(rows, tmp_path, None)
