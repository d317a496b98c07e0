"""Report tables, contrast effect, figures and the ``report`` command, on hand-made rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_report_command, write_jsonl

from audiomoment.errors import InputError
from audiomoment.method.localize import localize_trace
from audiomoment.reporting.figures import metric_bars_figure, trace_figure
from audiomoment.reporting.tables import (
    DatasetPredictions,
    SystemPredictions,
    build_tables,
    contrast_effect,
    find_contrast_pair,
    is_simulated_dataset,
    main_table_markdown,
    sample_qids,
    write_tables,
)

# Four queries, ground truth [0, 100]; System A's top windows have IoU 1.0, 0.62, 0.3, 0.81.
ENDS_A = (100.0, 62.0, 30.0, 81.0)
DELTAS_A = (0.01, 0.05, 0.08, 0.10)


def annotations() -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "duration": 120.0,
             "relevant_windows": [[0.0, 100.0]]} for i in range(4)]


def rows_a() -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "delta": d,
             "pred_relevant_windows": [[0.0, e, 0.9]]}
            for i, (e, d) in enumerate(zip(ENDS_A, DELTAS_A, strict=True))]


def rows_detr() -> list[dict]:
    """Another toolkit's output: no delta, extra fields, several windows."""
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "pred_saliency_scores": [0.1],
             "pred_relevant_windows": [[0.0, 30.0, 0.8], [50.0, 60.0, 0.2]]} for i in range(4)]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def dataset(*systems: SystemPredictions, simulated: bool = False) -> DatasetPredictions:
    return DatasetPredictions("toy", annotations(), tuple(systems), simulated=simulated)


def test_table2_values_by_hand(tmp_path):
    tables = build_tables([dataset(SystemPredictions("System A", rows_a()),
                                   SystemPredictions("DETR", rows_detr()))])
    paths = write_tables(tables, tmp_path)
    rows = {r["system"]: r for r in read_csv(paths["table2_csv"])}
    a = rows["System A"]
    # R1@t counts IoU >= t; with one window each, AP@t is 1 or 0 the same way;
    # mAP averages over 0.5:0.05:0.95: (10 + 3 + 0 + 7) / 40 thresholds passed
    assert [float(a[k]) for k in ("R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75")] == [
        75.0, 50.0, 50.0, 75.0, 50.0]
    assert a["n_queries"] == "4" and a["simulated"] == "False"
    assert float(rows["DETR"]["R1@0.5"]) == 0.0
    markdown = paths["table2_md"].read_text()
    assert "| System | R1@0.5 | R1@0.7 | mAP | mAP@0.5 | mAP@0.75 |" in markdown
    assert "| System A | 75.00 | 50.00 | 50.00 | 75.00 | 50.00 |" in markdown
    assert "| DETR |" in markdown
    saved = json.loads(paths["metrics_json"].read_text())
    assert saved["metrics"]["toy"]["System A"]["brief"]["MR-full-R1@0.7"] == 50.0


def test_table2_with_two_datasets_and_a_missing_system():
    second = DatasetPredictions("other", annotations(), (SystemPredictions("System A", rows_a()),),
                                simulated=True)
    tables = build_tables([dataset(SystemPredictions("System A", rows_a()),
                                   SystemPredictions("DETR", rows_detr())), second])
    text = main_table_markdown(tables.main)
    assert "| System | toy R1@0.5 |" in text and "other (SIMULATED) mAP@0.75 |" in text
    detr_line = next(line for line in text.splitlines() if line.startswith("| DETR"))
    assert detr_line.count("–") == 5  # no DETR row on the second dataset


def test_table3_bins_by_own_delta(tmp_path):
    tables = build_tables([dataset(SystemPredictions("System A", rows_a()),
                                   SystemPredictions("DETR", rows_detr()))])
    rows = {r["bin"]: r for r in tables.quality if r["system"] == "System A"}
    assert (rows["Low"]["n"], rows["Low"]["mean_iou"]) == (1, 100.0)
    assert (rows["Mid"]["n"], rows["Mid"]["mean_iou"]) == (1, 62.0)
    assert (rows["High"]["n"], rows["High"]["mean_iou"]) == (2, 55.5)
    assert not any(r["system"] == "DETR" for r in tables.quality)
    assert any("DETR has no per-query delta" in n for n in tables.notes)
    paths = write_tables(tables, tmp_path)
    written = read_csv(paths["table3_per_system_csv"])
    assert [(r["bin"], r["n"], r["mean_iou"]) for r in written] == [
        ("Low", "1", "100.0"), ("Mid", "1", "62.0"), ("High", "2", "55.5")]
    assert "delta < 0.030" in paths["table3_md"].read_text()


def test_table3_bins_every_system_by_one_reference():
    tables = build_tables([dataset(SystemPredictions("System A", rows_a()),
                                   SystemPredictions("DETR", rows_detr()))], bin_by="System A")
    detr = {r["bin"]: r for r in tables.quality if r["system"] == "DETR"}
    assert [detr[b]["n"] for b in ("Low", "Mid", "High")] == [1, 1, 2]
    assert all(r["binned_by"] == "System A" for r in tables.quality)
    # DETR's top window [0, 30] has IoU 0.3 with every query's [0, 100]
    assert [detr[b]["mean_iou"] for b in ("Low", "Mid", "High")] == [30.0, 30.0, 30.0]
    own = {r["bin"]: r for r in tables.quality if r["system"] == "System A"}
    assert [(own[b]["n"], own[b]["mean_iou"]) for b in ("Low", "Mid", "High")] == [
        (1, 100.0), (1, 62.0), (2, 55.5)]


def rows_window() -> list[dict]:
    """A baseline without a delta: top windows [0, 50], [0, 100], [0, 10], [0, 100]."""
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}",
             "pred_relevant_windows": [[0.0, e, 0.5]]}
            for i, e in enumerate((50.0, 100.0, 10.0, 100.0))]


def test_table3_as_laid_out_bins_once_by_system1(tmp_path):
    # System A's deltas bin the queries: q0 Low, q1 Mid, q2 and q3 High. Top-1 IoUs with
    # [0, 100]: A 1.0, 0.62, 0.3, 0.81; DETR 0.3 each; window 0.5, 1.0, 0.1, 1.0.
    # Low: A 100, DETR 30 (A +70), window 50 (A +50); Mid: 62, 30 (+32), 100 (-38);
    # High: (30 + 81) / 2 = 55.5, 30 (+25.5), (10 + 100) / 2 = 55 (+0.5).
    tables = build_tables([dataset(SystemPredictions("DETR", rows_detr()),
                                   SystemPredictions("System A", rows_a()),
                                   SystemPredictions("window", rows_window()))],
                          bin_by="System A")
    got = {(r["bin"], r["system"]): (r["n"], r["mean_iou"], r["advantage"])
           for r in tables.comparison}
    assert got == {
        ("Low", "System A"): (1, 100.0, None), ("Low", "DETR"): (1, 30.0, 70.0),
        ("Low", "window"): (1, 50.0, 50.0),
        ("Mid", "System A"): (1, 62.0, None), ("Mid", "DETR"): (1, 30.0, 32.0),
        ("Mid", "window"): (1, 100.0, -38.0),
        ("High", "System A"): (2, 55.5, None), ("High", "DETR"): (2, 30.0, 25.5),
        ("High", "window"): (2, 55.0, 0.5),
    }
    assert {r["binned_by"] for r in tables.comparison} == {"System A"}
    paths = write_tables(tables, tmp_path)
    written = read_csv(paths["table3_csv"])
    assert [(r["bin"], r["system"], r["mean_iou"], r["advantage"]) for r in written][:3] == [
        ("Low", "System A", "100.0", ""), ("Low", "DETR", "30.0", "70.0"),
        ("Low", "window", "50.0", "50.0")]
    markdown = paths["table3_md"].read_text()
    assert ("| Bin | delta | n | System A | DETR | System A − DETR | window | System A − window |"
            in markdown)
    assert "| High | delta > 0.070 | 2 | 55.50 | 30.00 | +25.50 | 55.00 | +0.50 |" in markdown
    assert "| Mid | 0.030 <= delta <= 0.070 | 1 | 62.00 | 30.00 | +32.00 | 100.00 | -38.00 |" in (
        markdown)
    assert "Table III per system" in markdown  # the per-system view follows
    saved = json.loads(paths["metrics_json"].read_text())
    assert saved["table3"] == tables.comparison and saved["table3_per_system"] == tables.quality


def test_table3_recognises_system1_and_uses_the_same_queries():
    from audiomoment.config import LocalizeConfig
    from audiomoment.io.run_settings import RunSettings

    # System 2 carries deltas of its own that would bin differently (all Low): they are not used
    system2 = [dict(r, delta=0.0) for r in rows_a()]
    tables = build_tables([dataset(SystemPredictions("DETR", rows_detr()),
                                   SystemPredictions("System 2", system2),
                                   SystemPredictions("System 1", rows_a()))])
    assert {r["binned_by"] for r in tables.comparison} == {"System 1"}
    assert [r["n"] for r in tables.comparison if r["system"] == "System 2"] == [1, 1, 2]
    # recognised by its run settings, whatever its name; without a name or settings, the
    # first system with deltas
    settings = RunSettings(1, LocalizeConfig())
    tables = build_tables([dataset(SystemPredictions("other", system2),
                                   SystemPredictions("mine", rows_a(), "", settings))])
    assert {r["binned_by"] for r in tables.comparison} == {"mine"}
    tables = build_tables([dataset(SystemPredictions("DETR", rows_detr()),
                                   SystemPredictions("A", rows_a()))])
    assert {r["binned_by"] for r in tables.comparison} == {"A"}
    # a comparator without q3: every system is scored on q0..q2 only
    tables = build_tables([dataset(SystemPredictions("System 1", rows_a()),
                                   SystemPredictions("DETR", rows_detr()[:3]))])
    high = {r["system"]: r for r in tables.comparison if r["bin"] == "High"}
    assert high["System 1"]["n"] == 1 and high["System 1"]["mean_iou"] == 30.0
    assert high["DETR"]["advantage"] == 0.0
    assert any("covers 3 of the 4 queries" in n for n in tables.notes)
    # no delta anywhere: no Table III, a note
    tables = build_tables([dataset(SystemPredictions("DETR", rows_detr()))])
    assert tables.comparison == [] and any("no system carries" in n for n in tables.notes)


def test_contrast_effect_by_hand():
    with_rows = [{"qid": i, "delta": d} for i, d in enumerate((0.05, 0.06, 0.02, 0.07))]
    without = [{"qid": i, "delta": d} for i, d in enumerate((0.04, 0.07, 0.01, float("nan")))]
    effect = contrast_effect(with_rows, without, dataset="toy")
    assert (effect.n_queries, effect.n_grows) == (3, 2)
    assert effect.share_grows == pytest.approx(2 / 3)
    assert effect.mean_delta_with == pytest.approx(0.13 / 3)
    assert effect.mean_delta_without == pytest.approx(0.04)
    assert "66.7% of 3 queries" in effect.sentence()
    with pytest.raises(InputError):
        contrast_effect(with_rows, [{"qid": 9, "delta": 0.1}])


def test_contrast_pair_is_recognised_from_names(tmp_path):
    assert find_contrast_pair(["System 1", "System 2", "window"]) == ("System 1", "System 2")
    assert find_contrast_pair(["predictions_system1", "predictions_system2"]) == (
        "predictions_system1", "predictions_system2")
    assert find_contrast_pair(["Smith_X_task6_2", "Smith_X_task6_1"]) == (
        "Smith_X_task6_1", "Smith_X_task6_2")
    assert find_contrast_pair(["System 1", "DETR"]) is None
    without = [dict(r, delta=r["delta"] / 2) for r in rows_a()]
    tables = build_tables([dataset(SystemPredictions("System 1", rows_a()),
                                   SystemPredictions("System 2", without))])
    (effect,) = tables.contrast
    assert effect.share_grows == 1.0
    assert effect.mean_delta_with == pytest.approx(np.mean(DELTAS_A))
    paths = write_tables(tables, tmp_path)
    (row,) = read_csv(paths["contrast_csv"])
    assert float(row["share_grows"]) == 1.0 and row["with_contrast"] == "System 1"


def test_simulated_labels(tmp_path):
    (tmp_path / "annotations.jsonl").write_text("")
    assert not is_simulated_dataset(tmp_path / "annotations.jsonl")
    (tmp_path / "simulation.json").write_text(json.dumps({"simulated": True}))
    assert is_simulated_dataset(tmp_path / "annotations.jsonl")
    tables = build_tables([dataset(SystemPredictions("System A", rows_a()), simulated=True)])
    assert "toy (SIMULATED)" in main_table_markdown(tables.main)
    paths = write_tables(tables, tmp_path / "out")
    assert read_csv(paths["table2_csv"])[0]["simulated"] == "True"
    assert "toy (SIMULATED)" in paths["table3_md"].read_text()


def test_duplicate_system_names_are_refused():
    with pytest.raises(InputError, match="distinct"):
        build_tables([dataset(SystemPredictions("A", rows_a()), SystemPredictions("A", rows_a()))])


def test_sample_qids():
    rows = [*annotations(), {"qid": 9, "query": "x", "vid": "v", "duration": 5.0,
                             "relevant_windows": []}]
    first = sample_qids(rows, 2, seed=3)
    assert first == sample_qids(rows, 2, seed=3) and len(first) == 2
    assert "9" not in sample_qids(rows, 10, seed=0)  # no ground truth: not sampled
    assert sample_qids(rows, 2, chosen=["9", "1"]) == ["9", "1"]
    with pytest.raises(InputError):
        sample_qids(rows, 2, chosen=["nope"])


# --------------------------------------------------------------------------- figures


def test_trace_figure_draws_what_it_is_given():
    rng = np.random.default_rng(0)
    trace = rng.normal(scale=0.02, size=90)
    trace[20:30] += 0.1
    trace[60:64] += 0.08
    result = localize_trace(trace, 90.0)
    fig = trace_figure(result, [[20.0, 30.0], [60.0, 64.0]], title="q")
    top, bottom, posterior_axis = fig.axes
    gids = [p.get_gid() for p in top.patches]
    assert gids.count("ground-truth") == 2
    assert gids.count("prediction") == min(3, len(result.windows))
    assert [line.get_gid() for line in bottom.lines if line.get_gid()] == [
        "gaussian-relevant", "gaussian-background"]
    np.testing.assert_allclose(posterior_axis.lines[0].get_ydata(), result.posterior)
    np.testing.assert_allclose(top.lines[1].get_ydata(), result.smoothed)


def test_constant_trace_figure_has_no_gaussians():
    fig = trace_figure(localize_trace(np.ones(20)), [])
    assert not [line for line in fig.axes[1].lines if line.get_gid()]


def test_metric_bars_count():
    values = {"A": {"S1": {"R1@0.5": 10.0, "mAP": 5.0}, "S2": {"R1@0.5": 8.0, "mAP": None}},
              "B (SIMULATED)": {"S1": {"R1@0.5": 3.0, "mAP": 1.0}}}
    fig = metric_bars_figure(values, ["R1@0.5", "mAP"])
    counts = [sum(p.get_gid() == "bar" for p in ax.patches) for ax in fig.axes]
    assert counts == [3, 2]
    assert [ax.get_title() for ax in fig.axes] == ["A", "B (SIMULATED)"]


# --------------------------------------------------------------------------- the command


@pytest.fixture
def joint_dataset(tmp_path: Path) -> dict:
    """Features already in the 1024-d joint space (no projection heads needed), three queries
    with planted events: q1 at 10-20 s and q2 at 30-35 s of rec_a, q3 at 5-15 s of rec_b."""
    rng = np.random.default_rng(5)
    feats = tmp_path / "FEATURES"
    (feats / "clap").mkdir(parents=True)
    (feats / "clap_text").mkdir()
    directions = rng.normal(size=(3, 1024))
    plan = {"rec_a": (50.0, [(0, 10, 20), (1, 30, 35)]), "rec_b": (40.5, [(2, 5, 15)])}
    rows = []
    for vid, (duration, events) in plan.items():
        x = rng.normal(size=(int(np.ceil(duration)), 1024))
        for d, a, b in events:
            x[a:b] += 3.0 * directions[d]
            rows.append({"qid": f"q{d + 1}", "query": f"event {d + 1}", "vid": vid,
                         "duration": duration, "relevant_windows": [[float(a), float(b)]]})
        np.savez(feats / "clap" / f"{vid}.npz", features=x.astype(np.float32))
    for d, row in enumerate(rows):
        np.savez(feats / "clap_text" / f"{row['qid']}.npz",
                 last_hidden_state=directions[d][None, :].astype(np.float32))
    np.save(tmp_path / "neutral.npy", rng.normal(size=1024))
    return {"features": feats, "rows": rows, "neutral": tmp_path / "neutral.npy",
            "annotations": write_jsonl(tmp_path / "annotations.jsonl", rows)}


def test_report_command_with_features(joint_dataset, tmp_path, capsys):
    from audiomoment.pipelines.dataset import predict_dataset

    rows = joint_dataset["rows"]
    neutral = np.load(joint_dataset["neutral"])
    files = []
    for system in (1, 2):
        run = predict_dataset(rows, joint_dataset["features"], system=system, neutral=neutral,
                              progress=False)
        files.append(write_jsonl(tmp_path / f"system{system}.jsonl", run.rows))
    window_rows = [{"qid": r["qid"], "query": r["query"], "vid": r["vid"],
                    "pred_relevant_windows": [[0.0, 4.0, 0.1]]} for r in rows]
    files.append(write_jsonl(tmp_path / "window.jsonl", window_rows))
    out = tmp_path / "report"
    code = run_report_command(
        "report", "--annotations", joint_dataset["annotations"], "--predictions", *files,
        "--names", "System 1", "System 2", "Sliding window",
        "--features", joint_dataset["features"],
        "--neutral-embedding", joint_dataset["neutral"], "--n-figure-queries", "2",
        "--out", out,
    )
    assert code == 0
    table2 = {r["system"]: r for r in read_csv(out / "table2.csv")}
    assert list(table2) == ["System 1", "System 2", "Sliding window"]
    # both systems find every planted event; the constant [0, 4] window overlaps none of
    # them (10-20, 30-35 and 5-15 s)
    assert float(table2["System 1"]["R1@0.5"]) == 100.0
    assert float(table2["System 2"]["R1@0.5"]) == 100.0
    assert [float(table2["Sliding window"][k]) for k in ("R1@0.5", "mAP")] == [0.0, 0.0]
    assert all(r["n_queries"] == "3" for r in table2.values())
    figures = json.loads((out / "figures.json").read_text())["figures"]
    panels = [f for f in figures if f["figure"] == "figure2"]
    assert len(panels) == 2 and all((out / f["file"]).is_file() for f in panels)
    assert all(p["system"] == 1 and p["n_ground_truth"] == 1 for p in panels)
    bars = next(f for f in figures if f["figure"] == "figure3")
    assert bars["n_bars"] == 15 and (out / "figure3.png").is_file()
    contrast = read_csv(out / "contrast_effect.csv")
    assert contrast[0]["with_contrast"] == "System 1" and contrast[0]["n_queries"] == "3"
    page = (out / "report.html").read_text()
    assert page.count("<img ") == 3 and "https://" not in page
    assert "SIMULATED" not in page  # no simulation marker beside these annotations
    assert "Sliding window" in (out / "report.md").read_text()
    assert "3 figure(s)" in capsys.readouterr().out


def test_report_command_without_features_says_so(tmp_path, capsys):
    truth = write_jsonl(tmp_path / "annotations.jsonl", annotations())
    pred = write_jsonl(tmp_path / "p.jsonl", rows_a())
    (tmp_path / "simulation.json").write_text(json.dumps({"simulated": True}))
    out = tmp_path / "report"
    # a second --predictions adds a row when there is one dataset
    assert run_report_command("report", "--annotations", truth, "--predictions", pred,
                       "--predictions", pred, "--names", "A", "--names", "B", "--out", out) == 0
    assert [r["system"] for r in read_csv(out / "table2.csv")] == ["A", "B"]
    note = json.loads((out / "figures.json").read_text())["figure2_note"]
    assert "Figure 2 omitted" in note
    assert "Figure 2 omitted" in (out / "report.md").read_text()
    assert "Figure 2 omitted" in capsys.readouterr().err
    assert "(SIMULATED)" in (out / "table2.md").read_text()  # marker beside the annotations
    assert "SIMULATED data" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "extra",
    [
        ["--names", "a", "b"],                      # two names for one file
        ["--names", "a", "--names", "b"],           # two names (in two groups) for one file
        ["--features", "f1", "--features", "f2"],  # two feature folders for one dataset
        ["--figure-queries", "nope", "--features", "."],
    ],
)
def test_report_command_input_errors(tmp_path, extra):
    truth = write_jsonl(tmp_path / "annotations.jsonl", annotations())
    pred = write_jsonl(tmp_path / "p.jsonl", rows_a())
    with pytest.raises(InputError):
        run_report_command("report", "--annotations", truth, "--predictions", pred, *extra,
                    "--out", tmp_path / "out")


def test_report_command_with_two_datasets(tmp_path):
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    truth_a = write_jsonl(first / "annotations.jsonl", annotations())
    truth_b = write_jsonl(second / "test_set.jsonl", annotations())
    pred = write_jsonl(tmp_path / "p.jsonl", rows_a())
    detr = write_jsonl(tmp_path / "detr.jsonl", rows_detr())
    out = tmp_path / "report"
    assert run_report_command(
        "report", "--annotations", truth_a, "--predictions", pred, detr, "--names", "S1", "DETR",
        "--annotations", truth_b, "--predictions", pred, "--names", "S1", "--out", out) == 0
    table = read_csv(out / "table2.csv")
    assert [(r["dataset"], r["system"]) for r in table] == [
        ("a", "S1"), ("a", "DETR"), ("test_set", "S1")]
    figure3 = json.loads((out / "figures.json").read_text())["figures"][0]
    assert figure3["n_bars"] == 15
    assert "| System | a R1@0.5 |" in (out / "table2.md").read_text()


def _jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_report_relocalises_figure2_with_the_run_settings(tiny_dataset, tmp_path, capsys):
    from audiomoment.cli.app import main

    common = ["--annotations", tiny_dataset["annotations"], "--features",
              tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
              "--neutral-embedding", tiny_dataset["neutral"]]
    pred = tmp_path / "system1.jsonl"
    assert main([str(a) for a in ["predict", *common, "--system", "1", "--tol", "1e-8",
                                  "--n-init", "3", "--no-cache", "--out", pred]]) == 0
    out = tmp_path / "report"
    assert run_report_command("report", *common, "--predictions", pred,
                              "--n-figure-queries", "3", "--out", out) == 0
    panels = [f for f in json.loads((out / "figures.json").read_text())["figures"]
              if f["figure"] == "figure2"]
    assert len(panels) == 3
    written = {r["qid"]: r for r in _jsonl_rows(pred)}
    for panel in panels:
        assert panel["config"]["tol"] == 1e-8 and panel["config"]["n_init"] == 3
        assert panel["config_source"] == "run settings"
        assert panel["settings_file"] == str(pred)
        assert panel["checkpoint_sha256"] is not None
        # localised again with the file's configuration: the file's own top windows
        assert panel["predicted_windows"] == written[panel["qid"]]["pred_relevant_windows"][:3]
    assert "EM tol 1e-08, 3 initialisations" in (out / "report.md").read_text()

    # the same predictions without their settings file: the defaults, and the report says so
    bare = tmp_path / "bare" / "system1.jsonl"
    bare.parent.mkdir()
    bare.write_text(pred.read_text())
    out2 = tmp_path / "report2"
    assert run_report_command("report", *common, "--predictions", bare,
                              "--n-figure-queries", "1", "--out", out2) == 0
    saved = json.loads((out2 / "figures.json").read_text())
    (panel,) = [f for f in saved["figures"] if f["figure"] == "figure2"]
    assert panel["config"]["tol"] == 1e-3 and panel["config"]["n_init"] == 5
    assert panel["config_source"] == "defaults" and panel["settings_file"] is None
    assert "default configuration" in saved["figure2_note"]
    assert "default configuration" in (out2 / "report.md").read_text()
    assert "default configuration" in capsys.readouterr().err


def test_report_scores_zero_length_and_unscored_windows_as_the_standard_does(tmp_path, capsys):
    truth = write_jsonl(tmp_path / "annotations.jsonl", annotations())
    zero = rows_a()
    zero[0]["pred_relevant_windows"] = [[50.0, 50.0, 0.9]]  # IoU 0 with [0, 100]
    unscored = [dict(r, pred_relevant_windows=[w[:2] for w in r["pred_relevant_windows"]])
                for r in rows_a()]
    files = [write_jsonl(tmp_path / "zero.jsonl", zero),
             write_jsonl(tmp_path / "unscored.jsonl", unscored)]
    out = tmp_path / "report"
    assert run_report_command("report", "--annotations", truth, "--predictions", *files,
                              "--out", out) == 0
    table = {r["system"]: r for r in read_csv(out / "table2.csv")}
    # zero: top-1 IoUs 0, 0.62, 0.3, 0.81 -> R1@0.5 2/4, R1@0.7 1/4
    assert (float(table["zero"]["R1@0.5"]), float(table["zero"]["R1@0.7"])) == (50.0, 25.0)
    # unscored: R1 as for System A (75, 50); no score, so no mAP
    assert (float(table["unscored"]["R1@0.5"]), float(table["unscored"]["R1@0.7"])) == (
        75.0, 50.0)
    assert table["unscored"]["mAP"] == "" and table["unscored"]["mAP@0.5"] == ""
    assert "zero length" in capsys.readouterr().err
