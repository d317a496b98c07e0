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
    # the heads-only checkpoint has no text encoder to compute the neutral embedding with,
    # which is found before any tokenizer is looked for (that may mean a download)
    import audiomoment.clap.model as clap_model

    def no_tokenizer(path):
        raise AssertionError("the tokenizer was looked for")

    monkeypatch.setattr(clap_model, "resolve_tokenizer", no_tokenizer)
    code, _, err = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--system", "1", "--out", tmp_path / "p.jsonl",
    )
    assert code == 2
    assert err.count("\n") == 1 and "neutral embedding" in err
    assert "not an MS-CLAP 2023 checkpoint" in err and "caption_encoder.base." in err
    assert not (tmp_path / "p.jsonl").exists()


def test_search_and_predict_default_to_the_fast_engine():
    from audiomoment.cli import build_parser
    from audiomoment.config import LocalizeConfig

    parser = build_parser()
    assert LocalizeConfig().engine == "fast"
    assert parser.parse_args(["search", "a.wav", "a dog"]).engine == "fast"
    assert parser.parse_args(["predict", "--annotations", "a", "--features", "f",
                              "--out", "o"]).engine == "fast"


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
    assert [r["qid"] for r in rows] == ["q1", "q2", "q3"]
    assert all("delta" not in r for r in rows)
    truth = {r["qid"]: r["relevant_windows"][0] for r in tiny_dataset["rows"]}
    duration = {r["qid"]: r["duration"] for r in tiny_dataset["rows"]}
    for row in rows:
        windows = np.array(row["pred_relevant_windows"])
        # ten windows (the default), best first, inside the recording, none overlapping
        # another by more than the suppression threshold (IoU 0.5)
        assert windows.shape == (10, 3)
        assert np.all(np.diff(windows[:, 2]) <= 0)
        assert np.all(windows[:, 0] >= 0) and np.all(windows[:, 1] <= duration[row["qid"]])
        for i in range(10):
            for j in range(i):
                inter = max(0.0, min(windows[i, 1], windows[j, 1])
                            - max(windows[i, 0], windows[j, 0]))
                union = (windows[i, 1] - windows[i, 0]) + (windows[j, 1] - windows[j, 0]) - inter
                assert inter / union <= 0.5, (row["qid"], i, j)
        # each planted event stands far above the background in the trace, so the window of
        # highest mean lies wholly inside the event: any frame outside it lowers the mean
        start, end, _ = windows[0]
        gs, ge = truth[row["qid"]]
        assert gs <= start < end <= ge, (row["qid"], windows[0], truth[row["qid"]])


def test_system1_neutral_from_the_checkpoint_text_encoder(tiny_dataset, tmp_path, capsys,
                                                          clap_files, monkeypatch):
    from audiomoment.clap.model import load_clap
    from audiomoment.pipelines.neutral import neutral_from_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, tok = clap_files
    neutral = neutral_from_model(load_clap(ckpt, tok, audio=False), None)
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


@pytest.fixture
def small_castella(monkeypatch):
    """``SimulationConfig.castella_like`` at 2% of CASTELLA's size (11 recordings, 27
    queries), so that the simulate and demo commands run in seconds."""
    from audiomoment.testing.simulate import SimulationConfig

    original = SimulationConfig.__dict__["castella_like"].__func__

    def small(cls, seed=0, scale=1.0, **changes):
        return original(cls, seed, scale=0.02 * scale, **changes)

    monkeypatch.setattr(SimulationConfig, "castella_like", classmethod(small))
    return SimulationConfig.castella_like


def test_simulate_command_writes_the_seeded_dataset(small_castella, tmp_path, capsys):
    from audiomoment.testing.simulate import simulate

    out = tmp_path / "sim"
    code, stdout, _ = run_cli(capsys, "simulate", "--out", out, "--seed", "3")
    assert code == 0 and "SIMULATED castella-like" in stdout
    rows = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    expected = simulate(small_castella(seed=3))
    assert rows == expected.annotations and len({r["vid"] for r in rows}) == 11
    for vid, feats in expected.audio_features.items():
        np.testing.assert_array_equal(np.load(out / "FEATURES" / "clap" / f"{vid}.npz")
                                      ["features"], feats)
    assert json.loads((out / "simulation.json").read_text())["seed"] == 3
    assert (out / "CLAP_weights_2023.pth").is_file() and (out / "neutral.npy").is_file()


def test_demo_equals_predict_and_evaluate_on_its_files(small_castella, tmp_path, capsys):
    out = tmp_path / "demo"
    options = ["--max-windows", "3", "--n-init", "2"]
    code, stdout, _ = run_cli(capsys, "demo", "--out", out, "--seed", "1", *options)
    assert code == 0
    assert "SIMULATED" in stdout and "seed 1" in stdout and "27 queries" in stdout
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["system"])
    demo_table = {line.split()[1]: line.split()[2:] for line in lines[header + 1 : header + 3]}
    assert set(demo_table) == {"1", "2"}
    for system in (1, 2):
        demo_file = out / f"predictions_system{system}.jsonl"
        rows = [json.loads(line) for line in demo_file.read_text().splitlines()]
        assert len(rows) == 27 and all(1 <= len(r["pred_relevant_windows"]) <= 3 for r in rows)
        # the demo's predictions are those of `predict` on the files it wrote, with the
        # same options
        again = tmp_path / f"again{system}.jsonl"
        code, _, err = run_cli(
            capsys, "predict", "--annotations", out / "annotations.jsonl", "--features",
            out / "FEATURES", "--checkpoint", out / "CLAP_weights_2023.pth",
            "--neutral-embedding", out / "neutral.npy", "--system", str(system), "--no-cache",
            "--out", again, *options,
        )
        assert code == 0, err
        assert again.read_text() == demo_file.read_text()
        # and its table row is what `evaluate` prints for that file
        code, table, _ = run_cli(capsys, "evaluate", "--annotations",
                                 out / "annotations.jsonl", "--predictions", demo_file)
        assert code == 0
        row = next(line for line in table.splitlines() if line.startswith(demo_file.stem))
        assert row.split()[1:] == demo_table[str(system)]


def test_demo_names_where_its_windows_came_from(small_castella, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("AUDIOMOMENT_SHARED_DATA", str(tmp_path / "empty"))
    code, stdout, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-init", "1")
    assert code == 0
    line = next(x for x in stdout.splitlines() if x.startswith("durations and windows:"))
    assert line.startswith("durations and windows: synthetic (the CASTELLA annotations were "
                           "not found: set AUDIOMOMENT_SHARED_DATA")
