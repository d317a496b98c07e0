"""The DCASE submission package: validation, contents, meta file, format fixture, command."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import run_report_command, write_jsonl

from audiomoment.config import NEUTRAL_PHRASES, LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.run_settings import RunSettings, read_run_settings
from audiomoment.reporting.submission import (
    FROZEN_PARAMETERS,
    Author,
    SystemEntry,
    evaluate_development,
    package_submission,
    read_authors,
    report_member,
    submission_label,
    submission_problems,
    submitted_windows,
)

FORMAT_DIR = Path(__file__).parent / "data" / "dcase2026_task6"
FORMAT = yaml.safe_load((FORMAT_DIR / "format.yaml").read_text())
AUTHOR = Author(lastname="Doe", firstname="Jane", email="jane@example.org",
                institute="Example University", abbreviation="EXU",
                department="Acoustics", location="Exampleton", corresponding=True)


def annotations() -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "duration": 60.5}
            for i in range(3)]


def rows(shift: float = 0.0) -> list[dict]:
    return [{"qid": i, "query": f"query {i}", "vid": f"v{i}", "delta": 0.05,
             "pred_relevant_windows": [[1.0 + shift, 5.0, 0.9], [10.0, 60.5, 0.4]]}
            for i in range(3)]


def entry(index: int, predictions: list[dict] | None = None, system: int | str | None = None,
          config: LocalizeConfig | None = None, **kwargs) -> SystemEntry:
    settings = RunSettings(system if system is not None else index, config or LocalizeConfig(),
                           "file neutral.npy", "ab" * 32, "0.1.0")
    return SystemEntry(index, predictions if predictions is not None else rows(), f"s{index}",
                       settings, **kwargs)


def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 test")
    return path


def read_package(path: Path) -> tuple[list[str], dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist(), {n: archive.read(n) for n in archive.namelist()}


def key_paths(tree: dict, prefix: str = "") -> set[str]:
    """Dotted paths of every key of nested mappings (lists are leaves)."""
    found = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        found.add(path)
        if isinstance(value, dict):
            found |= key_paths(value, f"{path}.")
    return found


def test_label_and_report_name():
    assert submission_label("Doe", "EXU", 1) == "Doe_EXU_task6_1"
    assert submission_label("Falcon Perez", "HEU-HIT", 4) == "FalconPerez_HEU-HIT_task6_4"
    assert report_member("Doe", "EXU") == "task6/Doe_EXU_task6.technical_report.pdf"
    for bad in (("Doe", "E/X", 1), ("", "EXU", 1), ("Doe", "EXU", 5), ("Doe", "EXU", 0)):
        with pytest.raises(InputError):
            submission_label(*bad)


def test_submitted_windows_round_half_to_even_and_drop_scores():
    windows = [[1.5, 2.5, 0.9], [2.4, 2.6, 0.8], [10.49, 60.5, 0.5], [0.0, 3.0]]
    # 1.5 -> 2 and 2.5 -> 2 (half to even); 2.4 -> 2, 2.6 -> 3; 10.49 -> 10, 60.5 -> 60
    assert submitted_windows(windows, 10) == [[2.0, 2.0], [2.0, 3.0], [10.0, 60.0], [0.0, 3.0]]
    assert submitted_windows(windows, 2) == [[2.0, 2.0], [2.0, 3.0]]
    assert submitted_windows([], 10) == []


def test_package_follows_the_format_fixture(tmp_path):
    out = tmp_path / "pkg.zip"
    second = Author("Roe", "Richard", "rr@example.org", "Example Lab", "EXL", "Audio", "Sample")
    packaged = package_submission(out, annotations(), [entry(1), entry(2, rows(0.5))],
                                  [AUTHOR, second], technical_report=pdf(tmp_path))
    labels = [p.label for p in packaged]
    spec = FORMAT["package"]
    assert labels == [spec["label"].format(lastname="Doe", abbreviation="EXU", index=k)
                      for k in (1, 2)]
    names, files = read_package(out)
    expected = [spec["report"].format(lastname="Doe", abbreviation="EXU")]
    for label in labels:
        expected += [spec["output"].format(label=label), spec["meta"].format(label=label)]
    assert names == expected
    assert files[expected[0]] == b"%PDF-1.4 test"

    # outputs: the fixture's fields, [start, end] in whole seconds, best first, annotation order
    output = [json.loads(x) for x in files[expected[3]].decode().splitlines()]
    assert output == [{"qid": i, "query": f"query {i}", "vid": f"v{i}",
                       "pred_relevant_windows": [[2.0, 5.0], [10.0, 60.0]]} for i in range(3)]
    example = [json.loads(x) for x in
               (FORMAT_DIR / "example" / "Doe_EXU_task6_1.output.jsonl").read_text().splitlines()]
    for row in output + example:
        assert list(row) == FORMAT["output"]["fields"]
        assert len(row["pred_relevant_windows"]) <= FORMAT["output"]["max_windows"]
        for window in row["pred_relevant_windows"]:
            assert len(window) == FORMAT["output"]["window_length"]
            assert all(v == round(v) for v in window) and window[0] <= window[1]

    # meta files: every required key, the template's keys exactly as in the example
    example_meta = yaml.safe_load((FORMAT_DIR / "example" / "Doe_EXU_task6_1.meta.yaml")
                                  .read_text())
    additions = tuple(FORMAT["meta"]["project_additions"])
    for label, name in zip(labels, (expected[2], expected[4]), strict=True):
        meta = yaml.safe_load(files[name])
        paths = key_paths(meta)
        assert set(FORMAT["meta"]["required"]) <= paths
        template_part = {p for p in paths if not p.startswith(additions)}
        assert template_part == key_paths(example_meta) - {
            p for p in key_paths(example_meta) if p.startswith("submission.authors.")}
        assert meta["submission"]["label"] == label
        assert len(meta["submission"]["abbreviation"]) <= FORMAT["meta"]["abbreviation_max_length"]
        authors = meta["submission"]["authors"]
        assert [a.get("corresponding", False) for a in authors] == [True, False]
        for author, example_author in zip(authors, example_meta["submission"]["authors"],
                                          strict=True):
            assert list(author) == list(example_author)
            assert set(author) >= set(FORMAT["meta"]["author"]["required"])
            assert list(author["affiliation"]) == FORMAT["meta"]["author"]["affiliation"]
        assert authors[1]["affiliation"]["institute"] == "Example Lab"
        model = meta["system"]["model"]
        assert model["trainable_parameters"] == "0 M"
        assert model["freezed_parameters"] == "156.7 M"
        assert model["loss_function"] == [] and model["LLMs"] == []
        assert meta["system"]["dataset"] == {"data_augmentation": None,
                                             "external_data_resources": [],
                                             "audio_captions": 0}
        assert meta["system"]["ensemble"] is False
        assert meta["results"] == {"development_testing": {"Recall1@0.7": None,
                                                           "Recall1@0.5": None}}


def test_meta_describes_the_recorded_settings(tmp_path):
    out = tmp_path / "pkg.zip"
    config = LocalizeConfig(n_init=3, tol=1e-8)
    package_submission(out, annotations(),
                       [entry(1, config=config, dev_results={"Recall1@0.7": 12.5,
                                                             "Recall1@0.5": 25.0}),
                        entry(2), entry(3, system="window")],
                       [AUTHOR], allow_missing_report=True, top_k=1)
    names, files = read_package(out)
    assert not any(n.endswith(".pdf") for n in names)
    meta1, meta2, meta3 = (yaml.safe_load(files[f"task6/Doe_EXU_task6_{k}/Doe_EXU_task6_{k}"
                                                 ".meta.yaml"]) for k in (1, 2, 3))
    description = meta1["system"]["description"]
    assert description["hyperparameters"] == {
        "embedding_model": "MS-CLAP 2023 (frozen)",
        "feature_window_s": 1.0,
        "feature_hop_s": 1.0,
        "trace": "(q - n) . a_t (background contrast)",
        "smoothing": "Gaussian",
        "smoothing_sigma_frames": 1.5,
        "gmm_components": 2,
        "gmm_n_init": 3,
        "gmm_random_state": 42,
        "gmm_tol": 1e-8,
        "gmm_max_iter": 100,
        "gmm_reg_covar": 1e-06,
        "posterior_threshold": 0.45,
        "moment_score": "mean posterior + 0.3 * max smoothed trace",
        "windows_submitted_per_query": 1,
        "neutral_phrases": list(NEUTRAL_PHRASES),
    }
    settings = description["run_settings"]
    assert settings["config"] == {**LocalizeConfig().__dict__, "n_init": 3, "tol": 1e-8}
    assert settings["system"] == 1 and settings["origin"] == "recorded beside the predictions"
    assert settings["neutral_source"] == "file neutral.npy"
    assert settings["checkpoint_sha256"] == "ab" * 32
    assert description["background_contrast"] is True
    assert meta1["results"]["development_testing"] == {"Recall1@0.7": 12.5, "Recall1@0.5": 25.0}
    assert meta2["system"]["description"]["background_contrast"] is False
    assert "neutral_phrases" not in meta2["system"]["description"]["hyperparameters"]
    assert meta3["submission"]["abbreviation"] == "SlideWin"
    assert meta3["system"]["description"]["run_settings"]["system"] == "window"
    output = json.loads(files["task6/Doe_EXU_task6_1/Doe_EXU_task6_1.output.jsonl"]
                        .decode().splitlines()[0])
    assert output["pred_relevant_windows"] == [[1.0, 5.0]]


def test_systems_without_settings(tmp_path):
    legacy = SystemEntry(2, rows(), "old.jsonl")
    package_submission(tmp_path / "a.zip", annotations(), [legacy], [AUTHOR],
                       allow_missing_report=True)
    _, files = read_package(tmp_path / "a.zip")
    meta = yaml.safe_load(files["task6/Doe_EXU_task6_2/Doe_EXU_task6_2.meta.yaml"])
    recorded = meta["system"]["description"]["run_settings"]
    assert recorded["origin"].startswith("not recorded: System 2 with the default")
    assert recorded["config"] == LocalizeConfig().__dict__
    with pytest.raises(InputError, match="no run settings"):
        package_submission(tmp_path / "b.zip", annotations(), [SystemEntry(3, rows(), "x")],
                           [AUTHOR], allow_missing_report=True)


def test_package_is_reproducible(tmp_path):
    kwargs = dict(technical_report=pdf(tmp_path), top_k=2)
    package_submission(tmp_path / "a.zip", annotations(), [entry(1)], [AUTHOR], **kwargs)
    package_submission(tmp_path / "b.zip", annotations(), [entry(1)], [AUTHOR], **kwargs)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_report_pdf_is_required(tmp_path):
    with pytest.raises(InputError, match=r"technical report PDF \(--report FILE.pdf\)"):
        package_submission(tmp_path / "a.zip", annotations(), [entry(1)], [AUTHOR])
    text = tmp_path / "report.txt"
    text.write_text("not a pdf")
    with pytest.raises(InputError, match="must be a PDF"):
        package_submission(tmp_path / "a.zip", annotations(), [entry(1)], [AUTHOR],
                           technical_report=text)
    with pytest.raises(InputError, match="not found"):
        package_submission(tmp_path / "a.zip", annotations(), [entry(1)], [AUTHOR],
                           technical_report=tmp_path / "missing.pdf")
    assert not (tmp_path / "a.zip").exists()


def test_up_to_four_systems_with_distinct_indices(tmp_path):
    four = [entry(k, system=1 + k % 2) for k in range(1, 5)]
    packaged = package_submission(tmp_path / "a.zip", annotations(), four, [AUTHOR],
                                  allow_missing_report=True)
    assert [p.label for p in packaged] == [f"Doe_EXU_task6_{k}" for k in range(1, 5)]
    with pytest.raises(InputError, match="at most 4"):
        package_submission(tmp_path / "b.zip", annotations(), [*four, entry(4)], [AUTHOR],
                           allow_missing_report=True)
    with pytest.raises(InputError, match="distinct"):
        package_submission(tmp_path / "b.zip", annotations(), [entry(1), entry(1)], [AUTHOR],
                           allow_missing_report=True)


def test_authors_must_be_filled(tmp_path):
    for bad, message in ((Author("Doe", "", "j@x.org", "Uni", "EXU"), "firstname is empty"),
                         (Author("Doe", "Jane", "nobody", "Uni", "EXU"), "not an email"),
                         (Author("Doe", "Jane", "j@x.org", "", "EXU"), "institute is empty")):
        with pytest.raises(InputError, match=message):
            package_submission(tmp_path / "a.zip", annotations(), [entry(1)], [bad],
                               allow_missing_report=True)
    authors_file = tmp_path / "authors.yaml"
    example = yaml.safe_load((FORMAT_DIR / "example" / "Doe_EXU_task6_1.meta.yaml").read_text())
    authors_file.write_text(yaml.safe_dump({"authors": example["submission"]["authors"][::-1]}))
    authors = read_authors(authors_file)
    assert [a.lastname for a in authors] == ["Roe", "Doe"]
    assert [a.corresponding for a in authors] == [False, True]
    assert authors[1].department == "Department of Acoustics"
    packaged = package_submission(tmp_path / "b.zip", annotations(), [entry(1)], authors,
                                  allow_missing_report=True)
    assert packaged[0].label == "Doe_EXU_task6_1"  # the corresponding author's


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
    elif kind == "reversed":
        bad[1]["pred_relevant_windows"][0] = [6.0, 5.0, 0.9]
    elif kind == "unsorted":
        bad[2]["pred_relevant_windows"][1][2] = 0.95
    elif kind == "no_window":
        bad[0]["pred_relevant_windows"] = []
    elif kind == "not_numbers":
        bad[0]["pred_relevant_windows"][0] = [1.0, "5", 0.9]
    elif kind == "nan":
        bad[0]["pred_relevant_windows"][0] = [1.0, float("nan"), 0.9]
    elif kind == "mixed":
        bad[0]["pred_relevant_windows"][1] = [10.0, 60.5]
    return bad


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "have no row"),
        ("duplicate", "duplicate qid 0"),
        ("unknown", "not in the annotations"),
        ("past_end", "not inside [0, 60.5]"),
        ("negative", "not inside"),
        ("reversed", "start > end"),
        ("unsorted", "not sorted"),
        ("no_window", "has no window"),
        ("not_numbers", "non-numeric"),
        ("nan", "non-finite"),
        ("mixed", "like the windows on line"),
    ],
)
def test_invalid_outputs_are_refused_and_nothing_is_written(tmp_path, kind, message):
    assert any(message in p for p in submission_problems(annotations(), _broken(kind)))
    out = tmp_path / "pkg.zip"
    with pytest.raises(InputError, match="not a valid submission"):
        package_submission(out, annotations(), [entry(1), entry(2, _broken(kind))], [AUTHOR],
                           allow_missing_report=True)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_zero_length_and_unscored_windows_are_accepted():
    zero = rows()
    zero[1]["pred_relevant_windows"][0] = [5.0, 5.0, 0.9]  # scored IoU 0, as the standard does
    assert submission_problems(annotations(), zero) == []
    unscored = [dict(r, pred_relevant_windows=[w[:2] for w in r["pred_relevant_windows"]])
                for r in rows()]
    assert submission_problems(annotations(), unscored) == []
    assert submission_problems(annotations(), rows()) == []


def test_development_results_use_the_submitted_windows():
    truth = [{"qid": "a", "query": "q", "vid": "v", "duration": 60.0,
              "relevant_windows": [[10.0, 20.0]]}]
    # [9.6, 16.6] has IoU 6.6 / 10.4 = 0.63 with [10, 20]; as submitted, [10, 17]: IoU 0.7
    predicted = [{"qid": "a", "pred_relevant_windows": [[9.6, 16.6, 0.9], [30.0, 40.0, 0.1]]}]
    assert evaluate_development(truth, predicted) == {"Recall1@0.7": 100.0,
                                                      "Recall1@0.5": 100.0}
    predicted[0]["pred_relevant_windows"][0] = [9.6, 15.4, 0.9]  # [10, 15]: IoU 0.5
    assert evaluate_development(truth, predicted) == {"Recall1@0.7": 0.0, "Recall1@0.5": 100.0}


def test_frozen_parameters_match_the_model_definitions():
    import numpy as np
    import torch
    import transformers

    from audiomoment.clap.checkpoint import head_state
    from audiomoment.clap.htsat import HTSAT, HTSATConfig
    from audiomoment.clap.text import GPT2_CONFIG
    from audiomoment.testing.random_clap import random_projection_head

    with torch.device("meta"):
        audio = HTSAT(HTSATConfig())
        text = transformers.GPT2Model(transformers.GPT2Config(**GPT2_CONFIG))
    heads = sum(np.asarray(v).size for kind in ("audio", "text") for v in
                head_state(random_projection_head(np.random.default_rng(0)), kind).values())
    total = (sum(p.numel() for p in audio.parameters())
             + sum(p.numel() for p in text.parameters()) + heads)
    assert total == FROZEN_PARAMETERS


# --------------------------------------------------------------------------- the command


AUTHOR_ARGS = ("--lastname", "Doe", "--firstname", "Jane", "--email", "jane@example.org",
               "--institute", "Example University", "--institute-abbreviation", "EXU")


def test_package_command(tmp_path, capsys):
    truth = write_jsonl(tmp_path / "eval.jsonl", annotations())
    p1 = write_jsonl(tmp_path / "s1.jsonl", rows())
    p2 = write_jsonl(tmp_path / "s2.jsonl", rows(0.5))
    metrics = tmp_path / "m1.json"
    metrics.write_text(json.dumps({"brief": {"MR-full-R1@0.5": 40.0, "MR-full-R1@0.7": 20.0,
                                             "MR-full-mAP": 15.0, "MR-full-mAP@0.5": 30.0,
                                             "MR-full-mAP@0.75": 10.0}}))
    report = pdf(tmp_path)
    out = tmp_path / "submission.zip"
    assert run_report_command("package-submission", "--annotations", truth, "--system1", p1,
                              "--system2", p2, *AUTHOR_ARGS, "--dev-metrics1", metrics,
                              "--report", report, "--out", out) == 0
    captured = capsys.readouterr()
    assert "Doe_EXU_task6_1: 3 queries" in captured.out
    assert "no run settings" in captured.err
    assert "no development-testing results for system(s) 2" in captured.err
    names, files = read_package(out)
    assert len(names) == 5 and names[0] == "task6/Doe_EXU_task6.technical_report.pdf"
    meta = yaml.safe_load(files["task6/Doe_EXU_task6_1/Doe_EXU_task6_1.meta.yaml"])
    assert meta["results"]["development_testing"] == {"Recall1@0.7": 20.0, "Recall1@0.5": 40.0}
    assert meta["system"]["description"]["development_results_from"] == f"read from {metrics}"

    # --system repeated: the same package (the old --technical-report spelling still works)
    again = tmp_path / "again.zip"
    assert run_report_command("package-submission", "--annotations", truth, "--system", p1,
                              "--system", p2, *AUTHOR_ARGS, "--dev-metrics", metrics,
                              "--technical-report", report, "--out", again) == 0
    assert again.read_bytes() == out.read_bytes()

    def fails(*extra: object, match: str) -> None:
        with pytest.raises(InputError, match=match):
            run_report_command("package-submission", "--annotations", truth, *extra,
                               "--out", tmp_path / "bad.zip")
        assert not (tmp_path / "bad.zip").exists()

    broken = write_jsonl(tmp_path / "bad.jsonl", rows()[:2])
    fails("--system1", broken, *AUTHOR_ARGS, "--no-report", match="have no row")
    fails(*AUTHOR_ARGS, "--no-report", match="--system")
    fails("--system1", p1, *AUTHOR_ARGS, match="technical report PDF")
    fails("--system", p1, "--system2", p2, *AUTHOR_ARGS, "--no-report", match="not both")
    fails("--system1", p1, "--lastname", "Doe", "--institute-abbreviation", "EXU",
          "--no-report", match="firstname is empty")
    fails("--system", p1, *AUTHOR_ARGS, "--no-report", "--dev-predictions", p1,
          match="--dev-annotations")
    fails("--system", p1, *AUTHOR_ARGS, "--no-report", "--dev-metrics2", metrics,
          match="no system 2")


def test_package_command_fills_the_meta_from_the_run(tiny_dataset, tmp_path):
    from audiomoment.cli.app import main

    common = ["--annotations", tiny_dataset["annotations"], "--features",
              tiny_dataset["features"], "--checkpoint", tiny_dataset["checkpoint"],
              "--neutral-embedding", tiny_dataset["neutral"], "--no-cache"]
    pred = tmp_path / "system1.jsonl"
    assert main([str(a) for a in ["predict", *common, "--system", "1", "--tol", "1e-8",
                                  "--n-init", "3", "--out", pred]]) == 0
    out = tmp_path / "pkg.zip"
    # the development set is the tiny dataset itself, its predictions the same file
    assert run_report_command(
        "package-submission", "--annotations", tiny_dataset["annotations"], "--system", pred,
        "--dev-annotations", tiny_dataset["annotations"], "--dev-predictions", pred,
        *AUTHOR_ARGS, "--report", pdf(tmp_path), "--out", out) == 0
    _, files = read_package(out)
    meta = yaml.safe_load(files["task6/Doe_EXU_task6_1/Doe_EXU_task6_1.meta.yaml"])
    recorded = meta["system"]["description"]["run_settings"]
    assert recorded["config"]["tol"] == 1e-8 and recorded["config"]["n_init"] == 3
    assert recorded["config"] == {**LocalizeConfig().__dict__, "tol": 1e-8, "n_init": 3}
    digest = hashlib.sha256(Path(tiny_dataset["checkpoint"]).read_bytes()).hexdigest()
    assert recorded["checkpoint_sha256"] == digest
    settings = read_run_settings(pred)
    assert settings is not None and recorded["neutral_source"] == settings.neutral_source
    assert recorded["neutral_source"] is not None
    hyper = meta["system"]["description"]["hyperparameters"]
    assert (hyper["gmm_tol"], hyper["gmm_n_init"]) == (1e-8, 3)
    # the development results are those of the submitted top windows against the planted
    # events (q1 10-20 s, q2 30-35 s, q3 5-15 s), IoU = overlap / (hull of the two windows)
    output = [json.loads(x) for x in
              files["task6/Doe_EXU_task6_1/Doe_EXU_task6_1.output.jsonl"].decode().splitlines()]
    assert [r["qid"] for r in output] == ["q1", "q2", "q3"]
    ious = []
    for row, event in zip(output, ([10, 20], [30, 35], [5, 15]), strict=True):
        start, end = row["pred_relevant_windows"][0]
        assert start == round(start) and end == round(end)
        overlap = max(0.0, min(end, event[1]) - max(start, event[0]))
        ious.append(overlap / (max(end, event[1]) - min(start, event[0])))
    expected = {k: float(f"{100 * sum(i >= t for i in ious) / 3:.2f}")
                for k, t in (("Recall1@0.7", 0.7), ("Recall1@0.5", 0.5))}
    assert meta["results"]["development_testing"] == expected

    # a development file made with other settings is not the same system
    other = tmp_path / "other" / "system1.jsonl"
    other.parent.mkdir()
    assert main([str(a) for a in ["predict", *common, "--system", "1", "--out", other]]) == 0
    with pytest.raises(InputError, match=r"n_init, tol differ"):
        run_report_command(
            "package-submission", "--annotations", tiny_dataset["annotations"], "--system",
            pred, "--dev-annotations", tiny_dataset["annotations"], "--dev-predictions", other,
            *AUTHOR_ARGS, "--no-report", "--out", tmp_path / "bad.zip")


@pytest.mark.parametrize("name", ["submission/", "submission", "pkg.tar"])
def test_output_must_be_a_zip_file_name(tmp_path, name):
    out = f"{tmp_path}/{name}"
    with pytest.raises(InputError, match=r"must be a file name ending in \.zip"):
        package_submission(out, annotations(), [entry(1)], [AUTHOR], allow_missing_report=True)
    assert list(tmp_path.iterdir()) == []
