"""The DCASE submission package: validation, contents, metadata, and the command."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml
from conftest import run_report_command, write_jsonl

from audiomoment.config import NEUTRAL_PHRASES, LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.reporting.submission import (
    Author,
    package_submission,
    submission_label,
    submission_problems,
)

AUTHOR = Author(lastname="Doe", firstname="Jane", email="jane@example.org",
                institute="Example University", abbreviation="EXU")


def annotations() -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "duration": 60.5}
            for i in range(3)]


def rows(shift: float = 0.0) -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "delta": 0.05,
             "pred_relevant_windows": [[1.0 + shift, 5.0, 0.9], [10.0, 60.5, 0.4]]}
            for i in range(3)]


def test_label():
    assert submission_label("Doe", "EXU", 1) == "Doe_EXU_task6_1"
    assert submission_label("Falcon Perez", "HEU-HIT", 2) == "FalconPerez_HEU-HIT_task6_2"
    for bad in (("Doe", "E/X", 1), ("", "EXU", 1), ("Doe", "EXU", 5)):
        with pytest.raises(InputError):
            submission_label(*bad)


def test_package_contents(tmp_path):
    out = tmp_path / "pkg.zip"
    packaged = package_submission(out, annotations(), {1: rows(), 2: rows(0.5)}, [AUTHOR])
    assert [p.label for p in packaged] == ["Doe_EXU_task6_1", "Doe_EXU_task6_2"]
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert names == [
            "task6/Doe_EXU_task6_1/Doe_EXU_task6_1.output.jsonl",
            "task6/Doe_EXU_task6_1/Doe_EXU_task6_1.meta.yaml",
            "task6/Doe_EXU_task6_2/Doe_EXU_task6_2.output.jsonl",
            "task6/Doe_EXU_task6_2/Doe_EXU_task6_2.meta.yaml",
        ]
        output = [json.loads(x) for x in archive.read(names[2]).decode().splitlines()]
        meta1 = yaml.safe_load(archive.read(names[1]))
        meta2 = yaml.safe_load(archive.read(names[3]))
    # top-1 window per query (the report's submission), standard fields, annotation order
    assert output == [{"qid": i, "query": f"query {i}", "vid": f"v{i}",
                       "pred_relevant_windows": [[1.5, 5.0, 0.9]]} for i in range(3)]
    assert meta1["submission"]["label"] == "Doe_EXU_task6_1"
    assert len(meta1["submission"]["abbreviation"]) <= 10
    assert meta1["submission"]["authors"][0]["corresponding"] is True
    assert meta1["submission"]["authors"][0]["affiliation"]["abbreviation"] == "EXU"
    hyper = meta1["system"]["description"]["hyperparameters"]
    assert hyper == {
        "embedding_model": "MS-CLAP 2023 (frozen)",
        "feature_window_s": 1.0,
        "feature_hop_s": 1.0,
        "trace": "(q - n) . a_t (background contrast)",
        "smoothing": "Gaussian",
        "smoothing_sigma_frames": 1.5,
        "gmm_components": 2,
        "gmm_n_init": 5,
        "gmm_random_state": 42,
        "gmm_tol": 0.001,
        "gmm_max_iter": 100,
        "gmm_reg_covar": 1e-06,
        "posterior_threshold": 0.45,
        "moment_score": "mean posterior + 0.3 * max smoothed trace",
        "windows_submitted_per_query": 1,
        "neutral_phrases": list(NEUTRAL_PHRASES),
    }
    assert meta1["system"]["description"]["background_contrast"] is True
    assert meta2["system"]["description"]["background_contrast"] is False
    assert "neutral_phrases" not in meta2["system"]["description"]["hyperparameters"]
    for meta in (meta1, meta2):
        assert [r["name"] for r in meta["system"]["external_resources"]] == ["MS-CLAP 2023"]
        assert meta["system"]["training_data"] == "none"
        assert meta["system"]["complexity"]["trainable_parameters"] == 0
        assert "results" not in meta


def test_package_is_reproducible_and_records_options(tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 test")
    kwargs = dict(top_k=2, technical_report=pdf, dev_metrics={1: {"R1@0.5": 12.3}},
                  config=LocalizeConfig(n_init=3))
    package_submission(tmp_path / "a.zip", annotations(), {1: rows()}, [AUTHOR], **kwargs)
    package_submission(tmp_path / "b.zip", annotations(), {1: rows()}, [AUTHOR], **kwargs)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.read("task6/Doe_EXU_task6.technical_report.pdf") == b"%PDF-1.4 test"
        meta = yaml.safe_load(archive.read("task6/Doe_EXU_task6_1/Doe_EXU_task6_1.meta.yaml"))
        first = json.loads(archive.read(
            "task6/Doe_EXU_task6_1/Doe_EXU_task6_1.output.jsonl").decode().splitlines()[0])
    assert meta["results"]["development_dataset"] == {"R1@0.5": 12.3}
    assert meta["system"]["description"]["hyperparameters"]["gmm_n_init"] == 3
    assert meta["system"]["description"]["hyperparameters"]["windows_submitted_per_query"] == 2
    assert len(first["pred_relevant_windows"]) == 2


def _broken(kind: str) -> list[dict]:
    bad = rows()
    if kind == "missing":
        return bad[:2]
    if kind == "duplicate":
        return [*bad, bad[0]]
    if kind == "unknown":
        return [*bad, dict(bad[0], qid=99)]
    if kind == "past_end":
        bad[1]["pred_relevant_windows"][1] = [10.0, 61.0, 0.4]
    elif kind == "negative":
        bad[1]["pred_relevant_windows"][0] = [-1.0, 5.0, 0.9]
    elif kind == "empty_window":
        bad[1]["pred_relevant_windows"][0] = [5.0, 5.0, 0.9]
    elif kind == "unsorted":
        bad[2]["pred_relevant_windows"][1][2] = 0.95
    elif kind == "no_window":
        bad[0]["pred_relevant_windows"] = []
    elif kind == "not_numbers":
        bad[0]["pred_relevant_windows"][0] = [1.0, "5", 0.9]
    elif kind == "nan":
        bad[0]["pred_relevant_windows"][0] = [1.0, float("nan"), 0.9]
    return bad


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "have no row"),
        ("duplicate", "repeated"),
        ("unknown", "not in the annotations"),
        ("past_end", "not inside [0, 60.5]"),
        ("negative", "not inside"),
        ("empty_window", "start < end"),
        ("unsorted", "not sorted"),
        ("no_window", "has no window"),
        ("not_numbers", "not [start, end, score]"),
        ("nan", "not [start, end, score]"),
    ],
)
def test_invalid_outputs_are_refused_and_nothing_is_written(tmp_path, kind, message):
    assert any(message in p for p in submission_problems(annotations(), _broken(kind)))
    out = tmp_path / "pkg.zip"
    with pytest.raises(InputError, match="not a valid submission"):
        package_submission(out, annotations(), {1: rows(), 2: _broken(kind)}, [AUTHOR])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_valid_rows_have_no_problem():
    assert submission_problems(annotations(), rows()) == []


def test_package_command(tmp_path, capsys):
    truth = write_jsonl(tmp_path / "eval.jsonl", annotations())
    p1 = write_jsonl(tmp_path / "s1.jsonl", rows())
    p2 = write_jsonl(tmp_path / "s2.jsonl", rows(0.5))
    metrics = tmp_path / "m1.json"
    metrics.write_text(json.dumps({"brief": {"MR-full-R1@0.5": 40.0, "MR-full-R1@0.7": 20.0,
                                             "MR-full-mAP": 15.0, "MR-full-mAP@0.5": 30.0,
                                             "MR-full-mAP@0.75": 10.0}}))
    out = tmp_path / "submission.zip"
    assert run_report_command("package-submission", "--annotations", truth, "--system1", p1,
                       "--system2", p2, "--lastname", "Doe", "--institute-abbreviation", "EXU",
                       "--dev-metrics1", metrics, "--out", out) == 0
    captured = capsys.readouterr()
    assert "Doe_EXU_task6_1: 3 queries" in captured.out
    assert "--technical-report" in captured.err
    with zipfile.ZipFile(out) as archive:
        meta = yaml.safe_load(archive.read("task6/Doe_EXU_task6_1/Doe_EXU_task6_1.meta.yaml"))
        assert len(archive.namelist()) == 4
    assert meta["results"]["development_dataset"] == {
        "R1@0.5": 40.0, "R1@0.7": 20.0, "mAP": 15.0, "mAP@0.5": 30.0, "mAP@0.75": 10.0}

    broken = write_jsonl(tmp_path / "bad.jsonl", rows()[:2])
    with pytest.raises(InputError, match="have no row"):
        run_report_command("package-submission", "--annotations", truth, "--system1", broken,
                    "--lastname", "Doe", "--institute-abbreviation", "EXU", "--out",
                    tmp_path / "bad.zip")
    with pytest.raises(InputError, match="--system1"):
        run_report_command("package-submission", "--annotations", truth, "--lastname", "Doe",
                    "--institute-abbreviation", "EXU", "--out", tmp_path / "none.zip")


@pytest.mark.parametrize("name", ["submission/", "submission", "pkg.tar"])
def test_output_must_be_a_zip_file_name(tmp_path, name):
    out = f"{tmp_path}/{name}"
    with pytest.raises(InputError, match=r"must be a file name ending in \.zip"):
        package_submission(out, annotations(), {1: rows()}, [AUTHOR])
    assert list(tmp_path.iterdir()) == []
