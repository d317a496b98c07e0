"""Reading annotations and features: good files load, each bad input is a one-line
InputError naming the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiomoment.errors import InputError
from audiomoment.io.annotations import read_annotations
from audiomoment.io.features import load_audio_features, load_neutral_embedding, load_query_features


def test_real_annotation_files_load(shared_data):
    rows = read_annotations(shared_data / "castella" / "castella_test_release.jsonl")
    assert len(rows) == 1347
    assert len({r["vid"] for r in rows}) == 566
    clotho = read_annotations(shared_data / "clotho_moment" / "clotho_moment_test_release.jsonl")
    assert len(clotho) == 6649
    assert all(len(r["relevant_windows"]) == 1 for r in clotho)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "file is empty"),
        (["{not json"], ":1: not valid JSON"),
        (['{"qid": "a", "query": "x", "vid": "v"}'], ":1: missing field 'duration'"),
        (['{"qid": "a", "query": "x", "vid": "v", "duration": 10}',
          '{"qid": "a", "query": "y", "vid": "v", "duration": 10}'], ":2: duplicate qid 'a'"),
        (['{"qid": "a", "query": "x", "vid": "v", "duration": -3}'],
         "duration must be a positive number"),
        (['{"qid": "a", "query": "x", "vid": "v", "duration": 9, "relevant_windows": [[5, 2]]}'],
         "0 <= start <= end"),
        (['{"qid": "a", "query": "", "vid": "v", "duration": 9}'], "query must be a non-empty"),
        (['[1, 2]'], "expected a JSON object"),
    ],
)
def test_bad_annotations(tmp_path, lines, message):
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(InputError) as info:
        read_annotations(path)
    text = str(info.value)
    assert "ann.jsonl" in text and "\n" not in text
    assert message in text


def test_missing_windows_when_required(tmp_path):
    path = tmp_path / "blind.jsonl"
    path.write_text(json.dumps({"qid": 1, "query": "x", "vid": "v", "duration": 5}) + "\n")
    assert read_annotations(path)[0]["qid"] == 1
    with pytest.raises(InputError, match=r"blind\.jsonl:1: missing field 'relevant_windows'"):
        read_annotations(path, require_windows=True)


@pytest.mark.parametrize(
    ("array", "key", "message"),
    [
        (np.zeros((10, 768)), "features", "all-zero window"),
        (np.ones((10, 500)), "features", "feature dimension 500"),
        (np.ones((1, 768)), "features", "at least 2 windows"),
        (np.ones(768), "features", "must be 2-D"),
        (np.full((4, 768), np.nan), "features", "NaN or infinite"),
        (np.ones((4, 768)), "feats", "no array 'features'"),
        (np.ones((4, 768), dtype=np.int64), "features", "must hold floats"),
    ],
)
def test_bad_audio_features(tmp_path, array, key, message):
    (tmp_path / "clap").mkdir()
    np.savez(tmp_path / "clap" / "v.npz", **{key: array})
    with pytest.raises(InputError, match=message) as info:
        load_audio_features(tmp_path, "v")
    assert "v.npz" in str(info.value)


def test_audio_feature_file_problems(tmp_path):
    (tmp_path / "clap").mkdir()
    with pytest.raises(InputError, match=r"clap/v\.npz: feature file not found"):
        load_audio_features(tmp_path, "v")
    (tmp_path / "clap" / "v.npz").write_bytes(b"")
    with pytest.raises(InputError, match="file is empty"):
        load_audio_features(tmp_path, "v")
    (tmp_path / "clap" / "v.npz").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_audio_features(tmp_path, "v")


def test_query_vector_is_the_last_row(tmp_path):
    (tmp_path / "clap_text").mkdir()
    hidden = np.arange(3 * 768, dtype=np.float32).reshape(3, 768) + 1
    np.savez(tmp_path / "clap_text" / "q.npz", last_hidden_state=hidden)
    np.testing.assert_array_equal(load_query_features(tmp_path, "q"), hidden[-1])
    np.savez(tmp_path / "clap_text" / "b.npz", last_hidden_state=hidden[None])  # (1, L, D)
    np.testing.assert_array_equal(load_query_features(tmp_path, "b"), hidden[-1])
    np.savez(tmp_path / "clap_text" / "j.npz", last_hidden_state=np.ones(1024, np.float32))
    assert load_query_features(tmp_path, "j").shape == (1024,)


def test_neutral_embedding_file(tmp_path):
    np.save(tmp_path / "n.npy", np.ones(1024))
    assert load_neutral_embedding(tmp_path / "n.npy").shape == (1024,)
    np.save(tmp_path / "bad.npy", np.ones(768))
    with pytest.raises(InputError, match=r"bad\.npy: expected a 1024-d vector"):
        load_neutral_embedding(tmp_path / "bad.npy")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (-2.5, -2.5), (0, 0.0), (True, None), (False, None), ("1.0", None), (None, None),
     (float("nan"), None), (float("inf"), None), (-float("inf"), None), (10**400, None),
     ([1.0], None)],
)
def test_finite_number_is_one_rule_for_every_file(value, expected):
    from audiomoment.io.validation import finite_number, is_finite_number

    assert finite_number(value) == expected
    assert is_finite_number(value) is (expected is not None)


def test_annotation_bounds_use_the_finite_number_rule(tmp_path):
    path = tmp_path / "ann.jsonl"
    row = {"qid": "a", "query": "x", "vid": "v", "duration": 9, "relevant_windows": [[0, True]]}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"ann\.jsonl:1: relevant window \[0, True\] has a non"):
        read_annotations(path)
    path.write_text(json.dumps({**row, "relevant_windows": [], "duration": 10**400}) + "\n")
    with pytest.raises(InputError, match="duration must be a positive number"):
        read_annotations(path)
