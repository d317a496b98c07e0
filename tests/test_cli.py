"""The command line end to end: predict and evaluate on a small dataset, and bad input as a
one-line error with a non-zero exit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiomoment.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("system", ["1", "2"])
def test_predict_finds_planted_events(tiny_dataset, tmp_path, capsys, system):
    out = tmp_path / "pred.jsonl"
    code, stdout, _ = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--neutral-embedding", tiny_dataset["neutral"], "--system", system,
        "--cache-dir", tmp_path / "cache", "--out", out,
    )
    assert code == 0 and "wrote 3 predictions" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["qid"] for r in rows] == ["q1", "q2", "q3"]
    truth = {r["qid"]: r["relevant_windows"][0] for r in tiny_dataset["rows"]}
    for row in rows:
        start, end, _ = row["pred_relevant_windows"][0]
        gs, ge = truth[row["qid"]]
        iou = max(0.0, min(end, ge) - max(start, gs)) / (max(end, ge) - min(start, gs))
        assert iou >= 0.5, (row, truth[row["qid"]])
        scores = [w[2] for w in row["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= w[0] < w[1] <= 50.0 for w in row["pred_relevant_windows"])
        assert row["delta"] > 0
    # the projected recordings were cached, and a second run reads the cache
    cached = list((tmp_path / "cache" / "projected").rglob("*.npy"))
    assert len(cached) == 2
    out2 = tmp_path / "pred2.jsonl"
    assert run_cli(capsys, "predict", "--annotations", tiny_dataset["annotations"],
                   "--features", tiny_dataset["features"], "--checkpoint",
                   tiny_dataset["checkpoint"], "--neutral-embedding", tiny_dataset["neutral"],
                   "--system", system, "--cache-dir", tmp_path / "cache", "--out", out2)[0] == 0
    assert out2.read_text() == out.read_text()


def test_max_windows_one_gives_the_top_window(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "top1.jsonl"
    code, _, _ = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--system", "2", "--max-windows", "1", "--no-cache", "--out", out,
    )
    assert code == 0
    assert all(len(json.loads(x)["pred_relevant_windows"]) == 1
               for x in out.read_text().splitlines())


def test_evaluate_prints_table_and_writes_standard_json(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    assert run_cli(capsys, "predict", "--annotations", tiny_dataset["annotations"],
                   "--features", tiny_dataset["features"], "--checkpoint",
                   tiny_dataset["checkpoint"], "--system", "2", "--no-cache", "--out", pred)[0] == 0
    metrics_path = tmp_path / "metrics.json"
    code, stdout, _ = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                              "--predictions", pred, "--json", metrics_path)
    assert code == 0
    assert "R1@0.7" in stdout and "mAP" in stdout
    metrics = json.loads(metrics_path.read_text())
    thresholds = {"0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"}
    assert set(metrics["full"]["MR-R1"]) == thresholds
    assert set(metrics["full"]["MR-mAP"]) == thresholds | {"average"}
    assert metrics["brief"]["MR-full-R1@0.5"] == 100.0
    assert "MR-full-mAP" in metrics["brief"]


def test_system1_without_neutral_is_a_clear_error(tiny_dataset, tmp_path, capsys, monkeypatch):
    # the heads-only checkpoint has no text encoder to compute the neutral embedding with
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--system", "1", "--out", tmp_path / "p.jsonl",
    )
    assert code == 2
    assert err.count("\n") == 1 and "neutral embedding" in err
    assert not (tmp_path / "p.jsonl").exists()


def test_bad_inputs_exit_nonzero_with_one_line(tiny_dataset, tmp_path, capsys):
    base = ["predict", "--annotations", tiny_dataset["annotations"], "--features",
            tiny_dataset["features"], "--system", "2", "--no-cache", "--out", tmp_path / "p.jsonl"]
    # 768-d features without a checkpoint
    code, _, err = run_cli(capsys, *base)
    assert code == 2 and "--checkpoint" in err and err.count("\n") == 1
    # a missing feature file
    (tiny_dataset["features"] / "clap" / "rec_b.npz").unlink()
    code, _, err = run_cli(capsys, *base, "--checkpoint", tiny_dataset["checkpoint"])
    assert code == 2 and "rec_b.npz: feature file not found" in err
    # a missing annotation file and a wrong checkpoint
    code, _, err = run_cli(capsys, "predict", "--annotations", tmp_path / "none.jsonl",
                           "--features", tiny_dataset["features"], "--out", tmp_path / "p")
    assert code == 2 and "none.jsonl: file not found" in err
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    code, _, err = run_cli(capsys, *base, "--checkpoint", bad)
    assert code == 2 and "bad.pth" in err
    assert not (tmp_path / "p.jsonl").exists()


def test_evaluate_rejects_invalid_predictions_with_line_number(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    rows = [{"qid": "q1", "query": "a", "vid": "rec_a", "pred_relevant_windows": [[1, 5, 0.9]]},
            {"qid": "q2", "query": "b", "vid": "rec_a", "pred_relevant_windows": [[7, 3, 0.5]]}]
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                           "--predictions", pred)
    assert code == 2 and "pred.jsonl" in err and ":2" in err and err.count("\n") == 1


def test_window_baseline_system(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "window.jsonl"
    code, _, _ = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--system", "window", "--no-cache", "--out", out,
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all("delta" not in r for r in rows)
    # the planted q1 event covers 10..20 s: the best window overlaps it
    start, end, _ = rows[0]["pred_relevant_windows"][0]
    assert start < 20 and end > 10


def test_system1_neutral_from_the_checkpoint_text_encoder(tiny_dataset, tmp_path, capsys,
                                                          clap_files, monkeypatch):
    from audiomoment.clap.model import load_clap

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, tok = clap_files
    neutral = load_clap(ckpt, tok, audio=False).neutral_embedding(None)
    np.save(tmp_path / "neutral.npy", neutral)
    common = ["predict", "--annotations", tiny_dataset["annotations"], "--features",
              tiny_dataset["features"], "--checkpoint", ckpt, "--system", "1",
              "--cache-dir", tmp_path / "cache"]
    code, _, err = run_cli(capsys, *common, "--tokenizer", tok, "--out", tmp_path / "a.jsonl")
    assert code == 0, err
    assert list((tmp_path / "cache" / "neutral").glob("*.npy"))  # cached for the next run
    code, _, err = run_cli(capsys, *common, "--neutral-embedding", tmp_path / "neutral.npy",
                           "--out", tmp_path / "b.jsonl")
    assert code == 0, err
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
