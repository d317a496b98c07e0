"""Bad files through the commands, as a trusted command-line tool is attacked.

Every command (predict, evaluate, report, package-submission, search, extract-features, index)
is given damaged, hostile or nonsensical inputs. Each must answer with exactly one line on
stderr starting ``audiomoment: error:`` that names the file, a non-zero exit, no traceback,
and no output file (or a partial one) left behind. Files that would run code when unpickled
or loaded as YAML must not run it. Odd but valid inputs (channels, sample rates, sample
formats, silence, clipping, a 1-s recording, unicode queries) must give correct results.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tiny_dataset, write_jsonl

from audiomoment.cli import main

MARKER_NAME = "UNPICKLED_CODE_RAN"


# --------------------------------------------------------------------------- helpers


class RunsCode:
    """Unpickling this object creates a marker file (by calling ``open(path, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would leave (``.<name>.*``)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob(".*") if p.is_file()]


def refused(
    capsys: pytest.CaptureFixture[str],
    argv: list[object],
    names: tuple[str, ...],
    outputs: tuple[Path, ...] = (),
) -> str:
    """Run a command that must fail; check the one-line error and that nothing was written.

    ``names``: text the error line must contain (the file, what is wrong); ``outputs``:
    paths that must not exist afterwards. Returns the error line.
    """
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("audiomoment: error:")]
    assert code != 0, err
    assert "Traceback" not in err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    # anything else on stderr is a warning or note from before the failure
    assert all(line.startswith(("warning:", "note:")) for line in lines[:-1]), err
    for name in names:
        assert name in errors[0], (name, errors[0])
    for path in outputs:
        assert not path.exists(), path
        assert not leftovers(path.parent), leftovers(path.parent)
    return errors[0]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def float_wav(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sr, subtype="FLOAT")
    return path


def noise(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(
        np.float32)


# Damage done to a file: name -> function(path, marker) that rewrites it.
def _truncate(path: Path, marker: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path, marker: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(4096))


def _empty(path: Path, marker: Path) -> None:
    path.write_bytes(b"")


def _not_utf8(path: Path, marker: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00\x80 caf\xe9 \xc3\x28\n")


def _text(path: Path, marker: Path) -> None:
    path.write_text("this is not the file you are looking for\n")


def _folder(path: Path, marker: Path) -> None:
    path.unlink()
    path.mkdir()


COMMON_DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    "truncated": _truncate, "garbage": _garbage, "empty": _empty, "not-utf8": _not_utf8,
    "text": _text, "folder": _folder,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def ds(template: dict, tmp_path: Path) -> dict:
    """A fresh copy of the tiny dataset of ``conftest`` (built once per module)."""
    root = tmp_path / "data"
    shutil.copytree(template["root"], root)
    return {**template, **{k: root / Path(v).relative_to(template["root"])
                           for k, v in template.items() if isinstance(v, Path)}}


# --------------------------------------------------------------------------- predict


def predict_argv(ds: dict, tmp_path: Path, *extra: object) -> list[object]:
    return ["predict", "--annotations", ds["annotations"], "--features", ds["features"],
            "--checkpoint", ds["checkpoint"], "--neutral-embedding", ds["neutral"],
            "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out" / "pred.jsonl", *extra]


def predict_outputs(tmp_path: Path) -> tuple[Path, ...]:
    return (tmp_path / "out" / "pred.jsonl", tmp_path / "out" / "pred.settings.json")


FEATURE_DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    **COMMON_DAMAGE,
    "wrong-key": lambda p, m: p.write_bytes(npz_bytes(other=np.ones((5, 768), np.float32))),
    "no-arrays": lambda p, m: p.write_bytes(npz_bytes()),
    "int-dtype": lambda p, m: p.write_bytes(npz_bytes(
        features=np.ones((5, 768), np.int32), last_hidden_state=np.ones((3, 768), np.int32))),
    "complex": lambda p, m: p.write_bytes(npz_bytes(
        features=np.ones((5, 768), np.complex64),
        last_hidden_state=np.ones((3, 768), np.complex64))),
    "strings": lambda p, m: p.write_bytes(npz_bytes(
        features=np.array(["a", "b"]), last_hidden_state=np.array(["a", "b"]))),
    "3-d": lambda p, m: p.write_bytes(npz_bytes(
        features=np.ones((2, 5, 768), np.float32),
        last_hidden_state=np.ones((2, 3, 768), np.float32))),
    "0-d": lambda p, m: p.write_bytes(npz_bytes(
        features=np.float32(1), last_hidden_state=np.float32(1))),
    "dim-500": lambda p, m: p.write_bytes(npz_bytes(
        features=np.ones((5, 500), np.float32), last_hidden_state=np.ones((3, 500), np.float32))),
    "no-rows": lambda p, m: p.write_bytes(npz_bytes(
        features=np.ones((0, 768), np.float32), last_hidden_state=np.ones((0, 768), np.float32))),
    "nan": lambda p, m: p.write_bytes(npz_bytes(
        features=np.full((5, 768), np.nan, np.float32),
        last_hidden_state=np.full((3, 768), np.nan, np.float32))),
    "inf": lambda p, m: p.write_bytes(npz_bytes(
        features=np.full((5, 768), np.inf, np.float32),
        last_hidden_state=np.full((3, 768), -np.inf, np.float32))),
    "zeros": lambda p, m: p.write_bytes(npz_bytes(
        features=np.zeros((5, 768), np.float32),
        last_hidden_state=np.zeros((3, 768), np.float32))),
    "pickled-object": lambda p, m: p.write_bytes(npz_bytes(
        features=np.array([RunsCode(m)], dtype=object),
        last_hidden_state=np.array([RunsCode(m)], dtype=object))),
    "zip-not-npz": lambda p, m: _zip_of_text(p),
}


def _zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("features.npy", "not an array")
        z.writestr("last_hidden_state.npy", "not an array")


@pytest.mark.parametrize("damage", sorted(FEATURE_DAMAGE))
@pytest.mark.parametrize("which", ["clap/rec_b.npz", "clap_text/q2.npz"])
def test_predict_refuses_damaged_feature_files(ds, tmp_path, capsys, damage, which):
    target = ds["features"] / which
    marker = tmp_path / MARKER_NAME
    FEATURE_DAMAGE[damage](target, marker)
    refused(capsys, predict_argv(ds, tmp_path), (which.split("/")[1],),
            predict_outputs(tmp_path))
    assert not marker.exists()


def test_predict_refuses_a_one_window_recording(ds, tmp_path, capsys):
    target = ds["features"] / "clap" / "rec_b.npz"
    target.write_bytes(npz_bytes(features=np.ones((1, 768), np.float32)))
    refused(capsys, predict_argv(ds, tmp_path), ("rec_b.npz", "2 windows"),
            predict_outputs(tmp_path))


def _rewrite_rows(ds: dict, change: Callable[[list[dict]], list]) -> None:
    rows = [dict(r) for r in ds["rows"]]
    ds["annotations"].write_text("".join(
        (r if isinstance(r, str) else json.dumps(r)) + "\n" for r in change(rows)))


ANNOTATION_DAMAGE: dict[str, Callable[[list[dict]], list]] = {
    "duplicate-qid": lambda rows: [*rows, rows[0]],
    "qid-without-features": lambda rows: [*rows, {**rows[0], "qid": "q_missing"}],
    "vid-without-features": lambda rows: [*rows, {**rows[0], "qid": "q9", "vid": "rec_none"}],
    "nan-duration": lambda rows: [*rows[:2], json.dumps({**rows[2]}).replace("40.5", "NaN")],
    "inf-duration": lambda rows: [*rows[:2], json.dumps(rows[2]).replace("40.5", "Infinity")],
    "zero-duration": lambda rows: [*rows[:2], {**rows[2], "duration": 0}],
    "string-duration": lambda rows: [*rows[:2], {**rows[2], "duration": "40.5"}],
    "bool-qid": lambda rows: [*rows[:2], {**rows[2], "qid": True}],
    "float-qid": lambda rows: [*rows[:2], {**rows[2], "qid": 1.5}],
    "inverted-window": lambda rows: [*rows[:2], {**rows[2], "relevant_windows": [[15, 5]]}],
    "negative-window": lambda rows: [*rows[:2], {**rows[2], "relevant_windows": [[-5, 5]]}],
    "nan-window": lambda rows: [*rows[:2], json.dumps(
        {**rows[2], "relevant_windows": [[1, 2]]}).replace("[[1, 2]]", "[[NaN, 2]]")],
    "short-window": lambda rows: [*rows[:2], {**rows[2], "relevant_windows": [[5]]}],
    "missing-query": lambda rows: [*rows[:2], {k: v for k, v in rows[2].items() if k != "query"}],
    "empty-query": lambda rows: [*rows[:2], {**rows[2], "query": "   "}],
    "array-row": lambda rows: [*rows[:2], [1, 2, 3]],
    "truncated-line": lambda rows: [*rows[:2], json.dumps(rows[2])[:25]],
    "long-garbage-line": lambda rows: [*rows[:2], "x" * 2_000_000],
    "deeply-nested": lambda rows: [*rows[:2], "[" * 200_000 + "]" * 200_000],
    "long-bad-duration": lambda rows: [*rows[:2], {**rows[2], "duration": "9" * 1_000_000}],
    "huge-int-duration": lambda rows: [*rows[:2], json.dumps(rows[2]).replace(
        "40.5", "1" + "0" * 400)],
    "path-in-qid": lambda rows: [*rows[:2], {**rows[2], "qid": "../../etc/passwd"}],
    "path-in-vid": lambda rows: [*rows[:2], {**rows[2], "vid": "../clap/rec_a"}],
    "nul-in-vid": lambda rows: [*rows[:2], {**rows[2], "vid": "rec_b\x00x"}],
    "newline-in-vid": lambda rows: [*rows[:2], {**rows[2], "vid": "rec\nnone"}],
}


@pytest.mark.parametrize("damage", sorted(ANNOTATION_DAMAGE))
def test_predict_refuses_bad_annotations(ds, tmp_path, capsys, damage):
    _rewrite_rows(ds, ANNOTATION_DAMAGE[damage])
    names = {"qid-without-features": ("q_missing.npz", "not found"),
             "vid-without-features": ("rec_none.npz", "not found"),
             "duplicate-qid": ("annotations.jsonl:4", "duplicate qid"),
             # a legal if odd file name, escaped to keep the message on one line
             "newline-in-vid": ("rec\\nnone.npz", "not found")}.get(
        damage, ("annotations.jsonl:3",))
    line = refused(capsys, predict_argv(ds, tmp_path), names, predict_outputs(tmp_path))
    assert len(line) <= 1000 + len("audiomoment: error: ")  # a long value is shortened


@pytest.mark.parametrize("damage", sorted(COMMON_DAMAGE))
def test_predict_refuses_damaged_annotation_files(ds, tmp_path, capsys, damage):
    COMMON_DAMAGE[damage](ds["annotations"], tmp_path / MARKER_NAME)
    if damage == "truncated":  # half a file: the last line is cut inside its JSON
        assert not ds["annotations"].read_text().endswith("\n")
    refused(capsys, predict_argv(ds, tmp_path), ("annotations.jsonl",),
            predict_outputs(tmp_path))


def _torch_save(obj: object) -> Callable[[Path, Path], None]:
    def write(path: Path, marker: Path) -> None:
        torch.save(obj(marker) if callable(obj) else obj, path)
    return write


def _pickle_dump(obj: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    def write(path: Path, marker: Path) -> None:
        path.write_bytes(pickle.dumps(obj(marker)))
    return write


def _with_state(change: Callable[[dict], dict]) -> Callable[[Path, Path], None]:
    def write(path: Path, marker: Path) -> None:
        state = torch.load(path, weights_only=True)["model"]
        torch.save({"model": change(dict(state))}, path)
    return write


CHECKPOINT_DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    **COMMON_DAMAGE,
    "pickle-runs-code": _pickle_dump(lambda m: {"model": RunsCode(m)}),
    "torch-save-runs-code": _torch_save(lambda m: {"model": {"x": RunsCode(m)}}),
    "pickled-list": _torch_save([1, 2, 3]),
    "pickled-string": _torch_save("CLAP"),
    "plain-pickle-of-dict": _pickle_dump(lambda m: {"model": {"a": 1}}),
    "empty-state": _torch_save({"model": {}}),
    "model-not-a-dict": _torch_save({"model": [1, 2]}),
    "missing-key": _with_state(lambda s: {k: v for k, v in s.items() if "linear2" not in k}),
    "wrong-shape": _with_state(lambda s: {k: (v[:10] if "linear1" in k else v)
                                          for k, v in s.items()}),
    "nan-weights": _with_state(lambda s: {k: v * float("nan") for k, v in s.items()}),
    "int-weights": _with_state(lambda s: {k: v.to(torch.int64) for k, v in s.items()}),
}


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_predict_refuses_damaged_checkpoints(ds, tmp_path, capsys, damage):
    marker = tmp_path / MARKER_NAME
    CHECKPOINT_DAMAGE[damage](ds["checkpoint"], marker)
    refused(capsys, predict_argv(ds, tmp_path), ("CLAP_weights_2023.pth",),
            predict_outputs(tmp_path))
    assert not marker.exists()


NEUTRAL_DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    **COMMON_DAMAGE,
    "wrong-size": lambda p, m: np.save(p, np.ones(768)),
    "nan": lambda p, m: np.save(p, np.full(1024, np.nan)),
    "inf": lambda p, m: np.save(p, np.full(1024, np.inf)),
    "zeros": lambda p, m: np.save(p, np.zeros(1024)),
    "strings": lambda p, m: np.save(p, np.array(["x"] * 1024)),
    "pickled-object": lambda p, m: np.save(p, np.array([RunsCode(m)] * 1024, dtype=object),
                                           allow_pickle=True),
    "npz-instead": lambda p, m: p.write_bytes(npz_bytes(x=np.ones(1024))),
}


@pytest.mark.parametrize("damage", sorted(NEUTRAL_DAMAGE))
def test_predict_refuses_damaged_neutral_embeddings(ds, tmp_path, capsys, damage):
    marker = tmp_path / MARKER_NAME
    NEUTRAL_DAMAGE[damage](ds["neutral"], marker)
    refused(capsys, predict_argv(ds, tmp_path), ("neutral.npy",),
            predict_outputs(tmp_path))
    assert not marker.exists()


def test_predict_ignores_damaged_cache_entries(ds, tmp_path, capsys):
    """The cache holds derived data: damaged entries cost time, never the answer."""
    code, _, err = run(capsys, *predict_argv(ds, tmp_path))
    assert code == 0, err
    first = (tmp_path / "out" / "pred.jsonl").read_bytes()
    marker = tmp_path / MARKER_NAME
    damaged = 0
    for i, entry in enumerate(sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())):
        kind = ("truncated", "garbage", "empty", "pickled")[i % 4]
        if kind == "pickled":
            entry.write_bytes(pickle.dumps(RunsCode(marker)))
        else:
            COMMON_DAMAGE[kind](entry, marker)
        damaged += 1
    assert damaged >= 2
    (tmp_path / "out" / "pred.jsonl").unlink()
    code, _, err = run(capsys, *predict_argv(ds, tmp_path))
    assert code == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "pred.jsonl").read_bytes() == first
    assert not marker.exists()


def test_predict_refuses_unreadable_files(ds, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading a file")
    for path, name in ((ds["annotations"], "annotations.jsonl"),
                       (ds["features"] / "clap" / "rec_b.npz", "rec_b.npz"),
                       (ds["checkpoint"], "CLAP_weights_2023.pth")):
        path.chmod(0)
        try:
            refused(capsys, predict_argv(ds, tmp_path), (name,),
                    predict_outputs(tmp_path))
        finally:
            path.chmod(0o644)


# --------------------------------------------------------------------------- evaluate


def _pred_rows() -> list[dict]:
    return [{"qid": q, "query": "x", "vid": v, "pred_relevant_windows": w, "delta": 0.1}
            for q, v, w in (("q1", "rec_a", [[10, 20, 0.9], [0, 5, 0.1]]),
                            ("q2", "rec_a", [[30, 35, 0.8]]),
                            ("q3", "rec_b", [[5, 15, 0.7]]))]


PREDICTION_DAMAGE: dict[str, Callable[[list[dict]], list]] = {
    "unknown-qid": lambda rows: [*rows, {**rows[0], "qid": "q_unknown"}],
    "duplicate-qid": lambda rows: [*rows, rows[1]],
    "int-for-string-qid": lambda rows: [*rows[:2], {**rows[2], "qid": 3}],
    "nan-window": lambda rows: [*rows[:2], json.dumps(rows[2]).replace("0.7", "NaN")],
    "inf-window": lambda rows: [*rows[:2], json.dumps(rows[2]).replace("15", "Infinity")],
    "inverted-window": lambda rows: [*rows[:2], {**rows[2], "pred_relevant_windows":
                                                 [[15, 5, 0.7]]}],
    "string-window": lambda rows: [*rows[:2], {**rows[2], "pred_relevant_windows":
                                               [["5", "15", "0.7"]]}],
    "four-numbers": lambda rows: [*rows[:2], {**rows[2], "pred_relevant_windows":
                                              [[5, 15, 0.7, 1]]}],
    "windows-not-a-list": lambda rows: [*rows[:2], {**rows[2], "pred_relevant_windows": 5}],
    "missing-windows": lambda rows: [*rows[:2], {"qid": "q3"}],
    "nan-delta": lambda rows: [*rows[:2], json.dumps(rows[2]).replace('"delta": 0.1',
                                                                      '"delta": NaN')],
    "string-delta": lambda rows: [*rows[:2], {**rows[2], "delta": "big"}],
    "row-not-object": lambda rows: [*rows[:2], "[1, 2]"],
    "truncated-line": lambda rows: [*rows[:2], json.dumps(rows[2])[:30]],
    "long-garbage-line": lambda rows: [*rows[:2], "{" * 1_000_000],
    "deeply-nested": lambda rows: [*rows[:2], '{"a": ' * 100_000 + "1" + "}" * 100_000],
    "long-qid": lambda rows: [*rows[:2], {**rows[2], "qid": "q" * 1_000_000}],
    "mixed-widths": lambda rows: [*rows[:2], {**rows[2], "pred_relevant_windows": [[5, 15]]}],
}


def evaluate_argv(ds: dict, pred: Path, tmp_path: Path) -> list[object]:
    return ["evaluate", "--annotations", ds["annotations"], "--predictions", pred,
            "--json", tmp_path / "out" / "metrics.json"]


@pytest.mark.parametrize("damage", sorted(PREDICTION_DAMAGE))
def test_evaluate_refuses_bad_predictions(ds, tmp_path, capsys, damage):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in PREDICTION_DAMAGE[damage](_pred_rows())))
    line = refused(capsys, evaluate_argv(ds, pred, tmp_path), ("pred.jsonl",),
                   (tmp_path / "out" / "metrics.json",))
    assert len(line) < 2000


@pytest.mark.parametrize("damage", sorted(COMMON_DAMAGE))
def test_evaluate_refuses_damaged_files(ds, tmp_path, capsys, damage):
    pred = write_jsonl(tmp_path / "bad.jsonl", _pred_rows())
    COMMON_DAMAGE[damage](pred, tmp_path / MARKER_NAME)
    refused(capsys, evaluate_argv(ds, pred, tmp_path), ("bad.jsonl",),
            (tmp_path / "out" / "metrics.json",))
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    COMMON_DAMAGE[damage](ds["annotations"], tmp_path / MARKER_NAME)
    refused(capsys, evaluate_argv(ds, pred, tmp_path), ("annotations.jsonl",),
            (tmp_path / "out" / "metrics.json",))


@pytest.mark.parametrize("content", ["{", "\xff", "[]", '{"system": 7}', '"text"',
                                     "[" * 100_000])
def test_evaluate_refuses_damaged_run_settings(ds, tmp_path, capsys, content):
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    settings = tmp_path / "pred.settings.json"
    if content == "\xff":
        settings.write_bytes(b"\xff\xfe{")
    else:
        settings.write_text(content)
    refused(capsys, evaluate_argv(ds, pred, tmp_path), ("pred.settings.json",),
            (tmp_path / "out" / "metrics.json",))


def test_evaluate_windows_outside_the_duration_are_scored_with_a_warning(
    ds, tmp_path, capsys
):
    # q3's recording lasts 40.5 s: [35, 60] ends after it. The standard evaluation scores it
    # (IoU 0 with [5, 15]): a miss for q3, so R1 = 2/3.
    rows = _pred_rows()
    rows[2]["pred_relevant_windows"] = [[35, 60, 0.7]]
    pred = write_jsonl(tmp_path / "pred.jsonl", rows)
    code, _, err = run(capsys, *evaluate_argv(ds, pred, tmp_path))
    assert code == 0, err
    assert "end after the query's duration" in err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["brief"][
        "MR-full-R1@0.5"] == 66.67


# --------------------------------------------------------------------------- report


@pytest.mark.parametrize("damage", ["nan-window", "unknown-qid", "truncated-line",
                                    "duplicate-qid"])
def test_report_refuses_bad_predictions_and_writes_nothing(ds, tmp_path, capsys,
                                                           damage):
    good = write_jsonl(tmp_path / "good.jsonl", _pred_rows())
    pred = tmp_path / "bad.jsonl"
    pred.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in PREDICTION_DAMAGE[damage](_pred_rows())))
    out = tmp_path / "report"
    refused(capsys, ["report", "--annotations", ds["annotations"], "--predictions",
                     good, pred, "--out", out], ("bad.jsonl",))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "nan", "dim-500"])
def test_report_refuses_damaged_figure_features(ds, tmp_path, capsys, damage):
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    FEATURE_DAMAGE[damage](ds["features"] / "clap" / "rec_a.npz", tmp_path / "m")
    FEATURE_DAMAGE[damage](ds["features"] / "clap" / "rec_b.npz", tmp_path / "m")
    out = tmp_path / "report"
    refused(capsys, ["report", "--annotations", ds["annotations"], "--predictions",
                     pred, "--features", ds["features"], "--checkpoint",
                     ds["checkpoint"], "--out", out], (".npz",))
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------- package


AUTHOR = ("--lastname", "Doe", "--firstname", "Jane", "--email", "jane@uni.example",
          "--institute", "Uni Example", "--institute-abbreviation", "UNI")


def package_argv(ds: dict, pred: Path, tmp_path: Path, *extra: object) -> list[object]:
    return ["package-submission", "--annotations", ds["annotations"], "--system", pred,
            "--no-report", *extra, "--out", tmp_path / "out" / "submission.zip"]


AUTHOR_DAMAGE = {
    "not-utf8": b"\xff\xfe- lastname: \xe9\n",
    "truncated": b"- lastname: Doe\n  affiliation: {abbreviation: UNI\n",
    "not-a-list": b"lastname: Doe\n",
    "runs-code": b"- !!python/object/apply:builtins.open ['MARKER', 'w']\n",
    "tab-indent": b"- lastname: Doe\n\taffiliation: x\n",
    "entry-not-mapping": b"- Doe\n",
    "empty": b"",
    "deeply-nested": b"[" * 100_000,
    "billion-laughs": (b"a: &a ['x','x','x','x','x','x','x','x','x']\n"
                       b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nauthors: [*c]\n"),
}


@pytest.mark.parametrize("damage", sorted(AUTHOR_DAMAGE))
def test_package_refuses_bad_author_files(ds, tmp_path, capsys, damage):
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    marker = tmp_path / MARKER_NAME
    authors = tmp_path / "authors.yaml"
    authors.write_bytes(AUTHOR_DAMAGE[damage].replace(b"MARKER", str(marker).encode()))
    refused(capsys, package_argv(ds, pred, tmp_path, "--authors", authors),
            ("authors.yaml",), (tmp_path / "out" / "submission.zip",))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["outside-duration", "inverted", "unknown-qid", "missing-qid",
                                    "no-window", "nan"])
def test_package_refuses_bad_system_outputs(ds, tmp_path, capsys, damage):
    rows = _pred_rows()
    if damage == "outside-duration":
        rows[2]["pred_relevant_windows"] = [[35, 60, 0.7]]
    elif damage == "inverted":
        rows[2]["pred_relevant_windows"] = [[15, 5, 0.7]]
    elif damage == "unknown-qid":
        rows.append({**rows[0], "qid": "q_unknown"})
    elif damage == "missing-qid":
        rows = rows[:2]
    elif damage == "no-window":
        rows[2]["pred_relevant_windows"] = []
    pred = write_jsonl(tmp_path / "pred.jsonl", rows)
    if damage == "nan":
        pred.write_text(pred.read_text().replace("0.7", "NaN"))
    refused(capsys, package_argv(ds, pred, tmp_path, *AUTHOR),
            ("pred.jsonl",), (tmp_path / "out" / "submission.zip",))


@pytest.mark.parametrize("content", [b"", b"%PDF", b"<html>not a pdf</html>", b"\x00" * 100])
def test_package_refuses_a_report_that_is_not_a_pdf(ds, tmp_path, capsys, content):
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    report = tmp_path / "report.pdf"
    report.write_bytes(content)
    argv = package_argv(ds, pred, tmp_path, *AUTHOR, "--report", report)
    argv.remove("--no-report")
    refused(capsys, argv, ("report.pdf",), (tmp_path / "out" / "submission.zip",))


# --------------------------------------------------------------------------- audio commands


@pytest.fixture(scope="module")
def model(clap_files: tuple[Path, Path], shared_data: Path):
    """The random full-size MS-CLAP model with the real GPT-2 tokenizer, loaded once."""
    from audiomoment.clap.model import load_clap

    return load_clap(clap_files[0], shared_data / "gpt2_tokenizer")


@pytest.fixture
def loaded(model, monkeypatch: pytest.MonkeyPatch):
    """The commands get the module's model instead of loading the checkpoint again."""
    import audiomoment.clap.model as clap_model

    monkeypatch.setattr(clap_model, "load_clap", lambda *args, **kwargs: model)
    return model


def _pcm_wav(path: Path, samples: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sr, subtype=subtype)
    return path


def _header_only(path: Path) -> None:
    _pcm_wav(path, np.zeros(0, np.float32))


def _one_sample(path: Path) -> None:
    _pcm_wav(path, np.zeros(1, np.float32))


def _half_second(path: Path) -> None:
    _pcm_wav(path, noise(0.5))


def _cut_header(path: Path) -> None:
    _pcm_wav(path, noise(3.0))
    path.write_bytes(path.read_bytes()[:30])


AUDIO_DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing": lambda p: None,
    "empty-file": lambda p: p.write_bytes(b""),
    "header-only": _header_only,
    "one-sample": _one_sample,
    "half-second": _half_second,
    "cut-in-header": _cut_header,
    "text-named-wav": lambda p: p.write_text("RIFF? no: just words\n" * 100),
    "random-bytes": lambda p: p.write_bytes(np.random.default_rng(3).bytes(50_000)),
    "folder-named-wav": lambda p: p.mkdir(),
    "json-named-wav": lambda p: p.write_text(json.dumps({"not": "audio"})),
}

# damage found only while decoding: the model is loaded first
DECODED_DAMAGE: dict[str, Callable[[Path], None]] = {
    "nan-samples": lambda p: float_wav(p, np.where(np.arange(48000) == 30000, np.nan,
                                                   noise(3.0)).astype(np.float32)),
    "inf-samples": lambda p: float_wav(p, np.where(np.arange(48000) == 100, -np.inf,
                                                   noise(3.0)).astype(np.float32)),
}


def model_argv(clap_files: tuple[Path, Path], shared_data: Path, tmp_path: Path) -> list:
    return ["--checkpoint", clap_files[0], "--tokenizer", shared_data / "gpt2_tokenizer",
            "--cache-dir", tmp_path / "cache", "--no-progress"]


@pytest.mark.parametrize("damage", sorted(AUDIO_DAMAGE))
def test_search_and_extract_refuse_unusable_audio(clap_files, shared_data, tmp_path, capsys,
                                                  damage):
    """Found from the file's header, before any weights are read."""
    bad = tmp_path / "in" / "rec.wav"
    bad.parent.mkdir()
    AUDIO_DAMAGE[damage](bad)
    good = _pcm_wav(tmp_path / "in" / "good.wav", noise(3.0))
    common = model_argv(clap_files, shared_data, tmp_path)
    refused(capsys, ["search", bad, "a dog barks", *common], ("rec.wav",))
    out = tmp_path / "FEATURES"
    refused(capsys, ["extract-features", good, bad, "--out", out, *common], ("rec.wav",))
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("damage", sorted(DECODED_DAMAGE))
def test_audio_with_nan_or_inf_samples_is_refused(loaded, clap_files, shared_data, tmp_path,
                                                  capsys, damage):
    bad = tmp_path / "rec.wav"
    DECODED_DAMAGE[damage](bad)
    common = model_argv(clap_files, shared_data, tmp_path)
    line = refused(capsys, ["search", bad, "a dog barks", *common], ("rec.wav",))
    assert "NaN or infinite samples" in line
    out = tmp_path / "FEATURES"
    refused(capsys, ["extract-features", bad, "--out", out, *common], ("rec.wav",))
    assert not (out / "clap" / "rec.npz").exists() and not leftovers(out)


@pytest.mark.parametrize("damage", ["garbage", "pickle-runs-code", "torch-save-runs-code",
                                    "pickled-list", "heads-only", "wrong-shape"])
def test_model_commands_refuse_damaged_checkpoints(ds, clap_files, shared_data, tmp_path,
                                                   capsys, damage):
    marker = tmp_path / MARKER_NAME
    ckpt = tmp_path / "CLAP_weights_2023.pth"
    shutil.copy(ds["checkpoint"], ckpt)  # the heads only: no encoders
    if damage == "wrong-shape":  # the full model with one tensor cut short
        state = torch.load(clap_files[0], weights_only=True, mmap=True)["model"]
        key = next(k for k in state if k.endswith("patch_embed.proj.weight"))
        torch.save({"model": {**state, key: state[key][:3]}}, ckpt)
    elif damage != "heads-only":
        CHECKPOINT_DAMAGE[damage](ckpt, marker)
    audio = _pcm_wav(tmp_path / "rec.wav", noise(3.0))
    common = ["--checkpoint", ckpt, "--tokenizer", shared_data / "gpt2_tokenizer",
              "--no-cache", "--no-progress"]
    refused(capsys, ["search", audio, "a dog barks", *common], ("CLAP_weights_2023.pth",))
    out = tmp_path / "FEATURES"
    refused(capsys, ["extract-features", audio, "--out", out, *common],
            ("CLAP_weights_2023.pth",))
    assert not out.exists() or not any(out.rglob("*.npz"))
    db = tmp_path / "archive.idx"
    refused(capsys, ["index", audio, "--db", db, *common], ("CLAP_weights_2023.pth",))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["vocab-truncated", "vocab-not-utf8", "vocab-a-list",
                                    "merges-garbage", "no-merges"])
def test_extract_refuses_damaged_tokenizers(ds, clap_files, shared_data, tmp_path, capsys,
                                            damage):
    tok = tmp_path / "tokenizer"
    shutil.copytree(shared_data / "gpt2_tokenizer", tok)
    vocab, merges = tok / "vocab.json", tok / "merges.txt"
    if damage == "vocab-truncated":
        vocab.write_bytes(vocab.read_bytes()[:1000])
    elif damage == "vocab-not-utf8":
        vocab.write_bytes(b"\xff\xfe{\x00\x80}")
    elif damage == "vocab-a-list":
        vocab.write_text("[1, 2, 3]")
    elif damage == "merges-garbage":
        merges.write_bytes(np.random.default_rng(0).bytes(3000))
    else:
        merges.unlink()
    out = tmp_path / "FEATURES"
    refused(capsys, ["extract-features", "--annotations", ds["annotations"], "--out", out,
                     "--checkpoint", clap_files[0], "--tokenizer", tok, "--no-cache",
                     "--no-progress"], ("tokenizer",))
    assert not out.exists() or not any(out.rglob("*.np*"))


def test_extract_refuses_qids_that_leave_the_folder(clap_files, shared_data, tmp_path, capsys):
    ann = write_jsonl(tmp_path / "ann.jsonl", [
        {"qid": "ok", "query": "rain", "vid": "rec", "duration": 3.0},
        {"qid": "../../escaped", "query": "a dog barks", "vid": "rec", "duration": 3.0}])
    out = tmp_path / "deep" / "FEATURES"
    refused(capsys, ["extract-features", "--annotations", ann, "--out", out,
                     *model_argv(clap_files, shared_data, tmp_path)], ("ann.jsonl:2", "'/'"))
    assert not (tmp_path / "escaped.npz").exists() and not out.exists()


def test_index_skips_unusable_files_and_keeps_the_rest(loaded, clap_files, shared_data,
                                                       tmp_path, capsys):
    folder = tmp_path / "audio"
    _pcm_wav(folder / "good.wav", noise(3.0))
    for name, damage in (("words.wav", AUDIO_DAMAGE["text-named-wav"]),
                         ("half.wav", AUDIO_DAMAGE["half-second"]),
                         ("nan.wav", DECODED_DAMAGE["nan-samples"]),
                         ("empty.flac", AUDIO_DAMAGE["empty-file"])):
        damage(folder / name)
    db = tmp_path / "archive.idx"
    code, out, err = run(capsys, "index", folder, "--db", db, "--json",
                         *model_argv(clap_files, shared_data, tmp_path))
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["added"] == 1 and report["windows"] == 3
    failed = {Path(f["source"]).name: f["reason"] for f in report["failed"]}
    assert set(failed) == {"words.wav", "half.wav", "nan.wav", "empty.flac"}
    assert "NaN or infinite samples" in failed["nan.wav"]
    assert all("\n" not in reason for reason in failed.values())


def test_index_of_damaged_feature_files_skips_them(ds, tmp_path, capsys):
    clap = ds["features"] / "clap"
    FEATURE_DAMAGE["truncated"](clap / "rec_b.npz", tmp_path / MARKER_NAME)
    (clap / "rec_c.npz").write_bytes(npz_bytes(features=np.full((5, 768), np.nan, np.float32)))
    (clap / "rec_d.npz").write_bytes(npz_bytes(
        features=np.array([RunsCode(tmp_path / MARKER_NAME)], dtype=object)))
    db = tmp_path / "feats.idx"
    code, out, err = run(capsys, "index", "--features", ds["features"], "--checkpoint",
                         ds["checkpoint"], "--neutral-embedding", ds["neutral"], "--db", db,
                         "--no-cache", "--json")
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["added"] == 1
    assert {Path(f["source"]).name for f in report["failed"]} == {
        "rec_b.npz", "rec_c.npz", "rec_d.npz"}
    assert not (tmp_path / MARKER_NAME).exists()


# --------------------------------------------------------------------------- odd but valid


def _windows(path: Path) -> np.ndarray:
    from audiomoment.io.audio import load_windows

    return load_windows(path)


def test_channels_are_mixed_to_mono(tmp_path):
    x, y = noise(3.0, seed=1), noise(3.0, seed=2)
    mono = _windows(float_wav(tmp_path / "mono.wav", x))
    assert mono.shape == (3, 44100)
    np.testing.assert_array_equal(_windows(float_wav(tmp_path / "two.wav",
                                                     np.stack([x, x], 1))), mono)
    np.testing.assert_allclose(_windows(float_wav(tmp_path / "eight.wav",
                                                  np.tile(x[:, None], (1, 8)))), mono,
                               atol=1e-6)
    # different channels: the windows of their mean
    mean = ((x + y) / 2).astype(np.float32)
    np.testing.assert_allclose(_windows(float_wav(tmp_path / "xy.wav", np.stack([x, y], 1))),
                               _windows(float_wav(tmp_path / "mean.wav", mean)), atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000])
def test_any_sample_rate_gives_the_44k_windows(tmp_path, sr):
    # a 440 Hz tone at any rate, resampled, is the tone sampled at 44.1 kHz (away from the
    # ends, where the resampler has no neighbours)
    t = np.arange(3 * sr) / sr
    w = _windows(float_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sr))
    assert w.shape == (3, 44100)
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * 44100) / 44100)
    np.testing.assert_allclose(w.reshape(-1)[2000:-2000], ref[2000:-2000], atol=2e-6)
    one = _windows(float_wav(tmp_path / "one.wav", np.zeros(sr, np.float32) + 0.25, sr))
    assert one.shape == (1, 44100)  # exactly 1 s: exactly one window


@pytest.mark.parametrize(("fmt", "subtype", "tol"), [
    ("WAV", "PCM_16", 2.0 ** -15), ("WAV", "PCM_24", 2.0 ** -23), ("WAV", "PCM_32", 2.0 ** -31),
    ("WAV", "FLOAT", 0.0), ("WAV", "DOUBLE", 0.0), ("FLAC", "PCM_16", 2.0 ** -15),
    ("FLAC", "PCM_24", 2.0 ** -23), ("AIFF", "PCM_24", 2.0 ** -23),
])
def test_sample_formats_give_the_same_windows(tmp_path, fmt, subtype, tol):
    x = np.clip(noise(2.0, sr=44100, seed=4) * 3, -0.99, 0.99)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 44100, format=fmt, subtype=subtype)
    np.testing.assert_allclose(_windows(path).reshape(-1), x, rtol=0, atol=tol)


def _search_json(capsys, common: list, audio: Path, *queries: str) -> list[dict]:
    code, out, err = run(capsys, "search", audio, *queries, "--json", *common)
    assert code == 0, err
    assert "Traceback" not in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in rows] == list(queries)
    for r in rows:
        w = np.array(r["windows"])
        assert len(w) >= 1
        assert np.all(w[:, 0] >= 0) and np.all(w[:, 0] < w[:, 1])
        assert np.all(w[:, 1] <= r["duration"] + 1e-9)
        assert np.all(np.diff(w[:, 2]) <= 0)
    return rows


def test_odd_recordings_and_queries_through_search(loaded, clap_files, shared_data, tmp_path,
                                                   capsys):
    common = model_argv(clap_files, shared_data, tmp_path)
    x = noise(3.0, seed=5)
    mono = float_wav(tmp_path / "mono.wav", x)
    stereo = float_wav(tmp_path / "stereo.wav", np.stack([x, x], 1))
    assert _search_json(capsys, common, stereo, "rain") == [
        {**r, "audio": str(stereo)} for r in _search_json(capsys, common, mono, "rain")]

    # silence: every window is the same, the trace is constant, and the peak-centred
    # fallback covers the whole recording
    silent = _pcm_wav(tmp_path / "silent.wav", np.zeros(3 * 16000, np.float32))
    (row,) = _search_json(capsys, common, silent, "a dog barks")
    assert row["windows"][0][:2] == [0.0, 3.0] and row["fallback"]
    # clipped: full-scale square wave in 16-bit PCM, and float samples far beyond +-1
    square = np.sign(np.sin(2 * np.pi * 50 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    _search_json(capsys, common, _pcm_wav(tmp_path / "square.wav", square), "a buzz")
    _search_json(capsys, common, float_wav(tmp_path / "loud.wav", 40 * x), "a buzz")
    # 8 channels at 192 kHz, 24-bit
    _search_json(capsys, common, _pcm_wav(tmp_path / "many.wav", np.tile(
        0.2 * np.sin(np.arange(2 * 192000) / 30.0)[:, None], (1, 8)), 192000, "PCM_24"), "hum")

    queries = ["日本語の音声", "🐕 barks!!", "!", "!!!", "?", "…", "ça crépite — à côté",
               "\u200b", "<|endoftext|>", "\\n\\t", "ΑΒΓ αβγ"]
    rows = _search_json(capsys, common, mono, *queries)
    assert len(rows) == len(queries)


def test_a_one_second_recording(loaded, clap_files, shared_data, tmp_path, capsys):
    common = model_argv(clap_files, shared_data, tmp_path)
    one = _pcm_wav(tmp_path / "one.wav", noise(1.0, sr=48000), 48000)
    code, _, err = run(capsys, "extract-features", one, "--out", tmp_path / "F", *common)
    assert code == 0, err
    assert np.load(tmp_path / "F" / "clap" / "one.npz")["features"].shape == (1, 768)
    # a trace needs two windows: search says so in one line
    refused(capsys, ["search", one, "rain", *common], ("one.wav", "at least 2 s"))


def test_unicode_and_punctuation_queries_through_the_text_encoder(loaded, clap_files,
                                                                  shared_data, tmp_path,
                                                                  capsys):
    queries = ["日本語の音声", "🐕 barks!!", "!", "!!!", "?", "…", "ça crépite"]
    ann = write_jsonl(tmp_path / "ann.jsonl", [
        {"qid": f"q{i}", "query": q, "vid": "rec", "duration": 3.0}
        for i, q in enumerate(queries)])
    out = tmp_path / "F"
    code, _, err = run(capsys, "extract-features", "--annotations", ann, "--out", out,
                       *model_argv(clap_files, shared_data, tmp_path))
    assert code == 0, err
    text = loaded.require_text()
    for i, q in enumerate(queries):
        hidden = np.load(out / "clap_text" / f"q{i}.npz")["last_hidden_state"]
        assert hidden.shape == (text.position(q) + 1, 768)
        assert np.isfinite(hidden).all()
        # the last row is the query vector the encoder gives for that caption alone
        np.testing.assert_allclose(hidden[-1], text.query_vectors([q])[0], atol=1e-4)
    # "!" is padding: "!!!" ends with three pad tokens and takes the state 3 positions earlier
    ids = text.token_ids("!!!")
    assert ids[:3] == [0, 0, 0] and text.position("!!!") == len(ids) - 4


def test_a_query_too_long_for_gpt2_is_one_line(loaded, clap_files, shared_data, tmp_path,
                                                capsys):
    ann = write_jsonl(tmp_path / "ann.jsonl", [
        {"qid": "long", "query": "dog " * 2000, "vid": "rec", "duration": 3.0}])
    refused(capsys, ["extract-features", "--annotations", ann, "--out", tmp_path / "F",
                     *model_argv(clap_files, shared_data, tmp_path)], ("too long",))
    assert not (tmp_path / "F" / "clap_text").exists()


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("where", ["a-folder", "under-a-file"])
def test_outputs_that_cannot_be_written_are_one_line(ds, tmp_path, capsys, where):
    pred = write_jsonl(tmp_path / "pred.jsonl", _pred_rows())
    blocker = tmp_path / "blocker"
    if where == "a-folder":  # the output's name is taken by a folder
        blocker.mkdir()
        (blocker / "kept.txt").write_text("mine")
        target = blocker
    else:  # the output's folder is a file
        blocker.write_text("mine")
        target = blocker / "out"
    argvs = {
        "predict": [*predict_argv(ds, tmp_path)[:-1], target],
        "evaluate": ["evaluate", "--annotations", ds["annotations"], "--predictions", pred,
                     "--json", target],
        "package-submission": [*package_argv(ds, pred, tmp_path, *AUTHOR)[:-1], target],
    }
    if where == "under-a-file":
        argvs["report"] = ["report", "--annotations", ds["annotations"], "--predictions",
                           pred, "--out", target]
    for argv in argvs.values():
        refused(capsys, argv, ("blocker",))
        if where == "a-folder":
            assert [p.name for p in blocker.iterdir()] == ["kept.txt"]
        else:
            assert blocker.read_text() == "mine"
        assert not leftovers(tmp_path / "out") and not [
            p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- the process


def test_the_process_prints_one_line_and_runs_no_code(ds, tmp_path):
    """``python -m audiomoment`` itself: one stderr line (no warning, no traceback)."""
    import subprocess
    import sys

    marker = tmp_path / MARKER_NAME
    CHECKPOINT_DAMAGE["pickle-runs-code"](ds["checkpoint"], marker)
    cases = [predict_argv(ds, tmp_path),
             ["evaluate", "--annotations", ds["annotations"], "--predictions",
              _write_bytes(tmp_path / "p.jsonl", b"\xff\xfe\n")]]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for argv in cases:
        done = subprocess.run([sys.executable, "-m", "audiomoment", *map(str, argv)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("audiomoment: error:"), done.stderr
    assert not marker.exists()


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
