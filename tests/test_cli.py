"""The command line end to end: predict and evaluate on a small dataset, and bad input as a
one-line error with a non-zero exit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiomoment.cli import main
from audiomoment.io.run_settings import read_run_settings


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
    assert "pred.jsonl:2: window 1 has start > end: [7, 3, 0.5]" in err


def _write_rows(path, windows: dict[str, list]) -> None:
    path.write_text("".join(
        json.dumps({"qid": q, "query": "x", "vid": "v", "pred_relevant_windows": w}) + "\n"
        for q, w in windows.items()))


def test_evaluate_scores_zero_length_windows_and_counts_them(tiny_dataset, tmp_path, capsys):
    # Ground truth: q1 [10, 20], q2 [30, 35], q3 [5, 15]. q2's first window [32, 32] has zero
    # length: IoU 0 (an R1 miss, a false positive ranked first, then the hit [30, 35]:
    # AP = 1/2). q1 and q3 are exact. R1 = 2/3 = 66.67, mAP = (1 + 0.5 + 1) / 3 = 83.33.
    pred = tmp_path / "detr.jsonl"
    _write_rows(pred, {"q1": [[10, 20, 0.9]], "q2": [[32.0, 32.0, 0.8], [30, 35, 0.5]],
                       "q3": [[5, 15, 0.7]]})
    metrics_path = tmp_path / "m.json"
    code, out, err = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                             "--predictions", pred, "--json", metrics_path)
    assert code == 0, err
    assert (f"warning: {pred}: 1 window(s) in 1 row(s) have zero length (start = end)"
            in err) and "(first on line 2)" in err
    row = next(line for line in out.splitlines() if line.startswith("detr"))
    assert row.split()[1:] == ["66.67", "66.67", "83.33", "83.33", "83.33"]
    metrics = json.loads(metrics_path.read_text())
    assert metrics["audiomoment"]["n_zero_length_windows"] == 1
    assert metrics["audiomoment"]["run_settings"] is None  # another tool's file: no settings


def test_evaluate_windows_without_scores(tiny_dataset, tmp_path, capsys):
    # [start, end] windows: q1 [10, 18] has IoU 0.8 with [10, 20], q2 [30, 35] is exact,
    # q3 [20, 30] misses [5, 15]. R1@0.5 = R1@0.7 = 2/3; mAP cannot be computed.
    pred = tmp_path / "plain.jsonl"
    _write_rows(pred, {"q1": [[10, 18], [10, 20]], "q2": [[30, 35]], "q3": [[20, 30]]})
    metrics_path = tmp_path / "m.json"
    code, out, err = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                             "--predictions", pred, "--json", metrics_path)
    assert code == 0, err
    assert "without a score; R1 is computed, mAP is unavailable (n/a)" in err
    cells = next(line for line in out.splitlines() if line.startswith("plain")).split()[1:]
    assert cells[:2] == ["66.67", "66.67"]
    assert not any(c[0].isdigit() for c in cells[2:])  # no number for the three mAP columns
    metrics = json.loads(metrics_path.read_text())
    assert metrics["brief"]["MR-full-R1@0.5"] == 66.67
    assert metrics["brief"]["MR-full-mAP"] is None and metrics["brief"]["MR-full-mAP@0.5"] is None
    assert set(metrics["full"]["MR-mAP"].values()) == {None}
    assert metrics["audiomoment"]["windows_scored"] is False
    # windows with and without a score in one file are refused, naming the line
    _write_rows(pred, {"q1": [[10, 18, 0.5]], "q2": [[30, 35]]})
    code, _, err = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                           "--predictions", pred)
    assert code == 2 and "plain.jsonl:2: window 1 is not [start, end, score]" in err


def test_predict_writes_its_settings_and_evaluate_reads_them(tiny_dataset, tmp_path, capsys):
    import hashlib
    from dataclasses import asdict

    import audiomoment
    from audiomoment.config import LocalizeConfig

    def sha256(path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    out = tmp_path / "run" / "system1.jsonl"
    code, stdout, err = run_cli(
        capsys, "predict", "--annotations", tiny_dataset["annotations"],
        "--features", tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
        "--neutral-embedding", tiny_dataset["neutral"], "--system", "1", "--max-windows", "3",
        "--engine", "reference", "--cache-dir", tmp_path / "cache", "--out", out,
    )
    assert code == 0, err
    assert "settings in system1.settings.json" in stdout
    saved = json.loads((tmp_path / "run" / "system1.settings.json").read_text())
    neutral = tiny_dataset["neutral"]
    assert saved == {
        "format": "audiomoment-run-settings", "version": 1, "system": 1,
        "config": asdict(LocalizeConfig(max_windows=3, engine="reference")),
        "neutral_source": f"file {neutral.name} (sha256 {sha256(neutral)})",
        "checkpoint_sha256": sha256(tiny_dataset["checkpoint"]),
        "package_version": audiomoment.__version__,
    }
    # the checkpoint's digest is remembered in the cache for the next run
    assert sha256(tiny_dataset["checkpoint"]) in (tmp_path / "cache" / "digests.json").read_text()
    # the predictions file itself holds only prediction rows
    assert all(set(json.loads(line)) == {"qid", "query", "vid", "pred_relevant_windows",
                                         "delta"} for line in out.read_text().splitlines())

    metrics_path = tmp_path / "m.json"
    code, stdout, _ = run_cli(capsys, "evaluate", "--annotations", tiny_dataset["annotations"],
                              "--predictions", out, "--json", metrics_path)
    assert code == 0
    line = next(x for x in stdout.splitlines() if x.startswith("settings"))
    assert line.startswith("settings (system1.settings.json): System 1; sigma_frames 1.5, ")
    assert "max_windows 3, engine reference, hop_s 1.0" in line
    assert f"neutral: file {neutral.name}" in line
    assert f"checkpoint sha256 {saved['checkpoint_sha256']}" in line
    assert line.endswith(f"audiomoment {audiomoment.__version__}")
    assert json.loads(metrics_path.read_text())["audiomoment"]["run_settings"] == saved

    # System 2 without a cache: no neutral embedding in its settings
    out2 = tmp_path / "system2.jsonl"
    assert run_cli(capsys, "predict", "--annotations", tiny_dataset["annotations"],
                   "--features", tiny_dataset["features"], "--checkpoint",
                   tiny_dataset["checkpoint"], "--system", "2", "--no-cache", "--out", out2)[0] == 0
    saved2 = json.loads((tmp_path / "system2.settings.json").read_text())
    assert saved2["system"] == 2 and saved2["neutral_source"] is None
    assert saved2["checkpoint_sha256"] == saved["checkpoint_sha256"]


def test_library_errors_say_what_is_missing_without_flags(tiny_dataset):
    from audiomoment.errors import InputError
    from audiomoment.io.annotations import read_annotations
    from audiomoment.pipelines.dataset import MissingProjection, predict_dataset

    rows = read_annotations(tiny_dataset["annotations"])
    with pytest.raises(MissingProjection) as info:
        predict_dataset(rows, tiny_dataset["features"], system=2, progress=False)
    assert str(info.value) == (
        f"{tiny_dataset['features'] / 'clap' / 'rec_a.npz'}: 768-d encoder features need the "
        "checkpoint's projection heads (or features already in the 1024-d joint space)")
    with pytest.raises(InputError) as info:
        predict_dataset(rows, tiny_dataset["features"], system=1, progress=False)
    assert "neutral embedding" in str(info.value) and "--" not in str(info.value)


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
    queries), so that the simulate and demo commands run in seconds (``castella_corpus``
    builds on it, so the demo's corpus shrinks too)."""
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
    from audiomoment.pipelines.demo import CORPUS_COLUMNS

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
        # with the same settings, written beside both
        assert read_run_settings(demo_file) == read_run_settings(again) is not None
        # and its table row is what `evaluate` prints for that file
        code, table, _ = run_cli(capsys, "evaluate", "--annotations",
                                 out / "annotations.jsonl", "--predictions", demo_file)
        assert code == 0
        row = next(line for line in table.splitlines() if line.startswith(demo_file.stem))
        assert row.split()[1:] == demo_table[str(system)]
    # the corpus table: one archive of the concept-sharing set, both systems, both rankings
    corpus = json.loads((out / "corpus" / "corpus_metrics.json").read_text())
    assert len(corpus["metrics"]) == 4 and "SIMULATED corpus: 11 recordings" in stdout
    for name, row in corpus["metrics"].items():
        assert row["queries"] == 27
        assert row["R@1 IoU=0.5"] <= row["R@10 IoU=0.5"] <= row["R@100 IoU=0.5"] <= 100
        shown = next(line for line in lines if line.startswith(name))
        assert shown.split()[-6:] == [f"{row[c]:.2f}" for c in CORPUS_COLUMNS]


def test_demo_names_where_its_windows_came_from(small_castella, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("AUDIOMOMENT_SHARED_DATA", str(tmp_path / "empty"))
    code, stdout, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-init", "1")
    assert code == 0
    line = next(x for x in stdout.splitlines() if x.startswith("durations and windows:"))
    assert line.startswith("durations and windows: synthetic (the CASTELLA annotations were "
                           "not found: set AUDIOMOMENT_SHARED_DATA")
