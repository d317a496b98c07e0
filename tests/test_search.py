"""``search`` and ``extract-features`` end to end with a random full-size checkpoint: on the real
recording and on generated audio, through the Python API and the command line; features
written by extract-features and read by the dataset runner give the windows search gives."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomoment.clap import ClapModel, load_clap
from audiomoment.cli import main
from audiomoment.errors import InputError
from audiomoment.pipelines.search import SearchResult, search_audio

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(clap_files: tuple[Path, Path]) -> ClapModel:
    return load_clap(*clap_files)


@pytest.fixture(scope="module")
def recording(shared_data: Path) -> Path:
    return shared_data / "audio" / "1a-ODBWMUAE.wav"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def check_result(res: SearchResult, duration: float, top: int) -> None:
    w = res.windows
    assert w.ndim == 2 and w.shape[1] == 3 and 1 <= len(w) <= top
    assert np.all(w[:, 0] < w[:, 1])
    assert np.all(w[:, 0] >= 0) and np.all(w[:, 1] <= duration + 1e-9)
    assert np.all(np.diff(w[:, 2]) <= 0)  # best first
    assert res.result.trace.shape == (res.n_windows,)


def test_search_real_recording_both_systems(model: ClapModel, recording: Path, cache: Path
                                            ) -> None:
    one = search_audio(recording, "water falling", system=1, top=5, model=model,
                       cache_dir=cache, progress=False)
    assert isinstance(one, SearchResult)
    assert one.n_windows == 50 and 50.0 <= one.duration_s < 50.1
    check_result(one, one.duration_s, 5)
    two = search_audio(recording, ["water falling", "a dog barks!"], system=2, top=3,
                       model=model, cache_dir=cache, progress=False)
    assert isinstance(two, list) and len(two) == 2
    for res in two:
        check_result(res, one.duration_s, 3)
    # the features came from the cache the second time, so the traces share the audio
    assert len(list((cache / "audio_features").glob("*.npy"))) == 1
    data = one.to_dict()
    assert json.loads(json.dumps(data))["windows"][0][:2] == [float(one.windows[0, 0]),
                                                             float(one.windows[0, 1])]


def test_search_generated_audio(model: ClapModel, tmp_path: Path) -> None:
    sr = 48000
    rng = np.random.default_rng(5)
    t = np.arange(int(7.5 * sr)) / sr
    sig = 0.02 * rng.standard_normal(t.size)
    burst = (t >= 3) & (t < 5)
    sig[burst] += 0.5 * np.sin(2 * np.pi * 1000 * t[burst])
    path = tmp_path / "generated.flac"
    sf.write(path, np.stack([sig, 0.8 * sig], axis=1).astype(np.float32), sr)
    res = search_audio(path, "a beep", system=2, top=4, model=model, progress=False)
    assert isinstance(res, SearchResult)
    assert res.n_windows == 7
    check_result(res, 7.5, 4)


def test_search_refuses_unusable_audio(model: ClapModel, tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(int(1.5 * 16000), np.float32), 16000)
    with pytest.raises(InputError, match="at least 2 s"):
        search_audio(short, "x", model=model, progress=False)
    with pytest.raises(InputError, match="not found"):
        search_audio(tmp_path / "none.wav", "x", model=model)
    with pytest.raises(InputError, match="top must be"):
        search_audio(short, "x", top=0, model=model)


def test_extract_features_then_predict_gives_the_search_windows(
    model: ClapModel, recording: Path, clap_files: tuple[Path, Path], tmp_path: Path,
    cache: Path,
) -> None:
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.io.annotations import read_annotations
    from audiomoment.io.features import load_neutral_embedding
    from audiomoment.pipelines.dataset import predict_dataset
    from audiomoment.pipelines.extract import (
        NEUTRAL_FILE,
        extract_audio_features,
        extract_text_features,
    )

    queries = ["water falling", "birds sing!", "a person speaks"]
    duration = float(sf.info(str(recording)).duration)
    rows = [{"qid": i, "query": q, "vid": recording.stem, "duration": duration}
            for i, q in enumerate(queries)]
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "features"
    extract_audio_features([recording], out, model=model, progress=False)
    extract_text_features(ann, out, model=model, progress=False, cache_dir=cache)
    feats = np.load(out / "clap" / f"{recording.stem}.npz")["features"]
    assert feats.shape == (50, 768) and feats.dtype == np.float32
    text = model.require_text()
    for i, q in enumerate(queries):
        hidden = np.load(out / "clap_text" / f"{i}.npz")["last_hidden_state"]
        assert hidden.shape == (text.position(q) + 1, 768)

    heads = load_projection_heads(clap_files[0])
    neutral = load_neutral_embedding(out / NEUTRAL_FILE)
    annotations = read_annotations(ann)
    for system in (1, 2):
        run = predict_dataset(annotations, out, system=system, heads=heads,
                              neutral=neutral if system == 1 else None, progress=False)
        searched = search_audio(recording, queries, system=system, top=10, model=model,
                                cache_dir=cache, progress=False)
        assert isinstance(searched, list)
        for row, res in zip(run.rows, searched, strict=True):
            predicted = np.array(row["pred_relevant_windows"])
            assert predicted.shape == res.windows.shape
            assert np.array_equal(predicted[:, :2], res.windows[:, :2])
            assert np.allclose(predicted[:, 2], res.windows[:, 2], atol=1e-5)


def test_cli_search_and_extract(
    clap_files: tuple[Path, Path], recording: Path, tmp_path: Path, cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt, tok = clap_files
    common = ["--checkpoint", str(ckpt), "--tokenizer", str(tok), "--no-progress"]
    code = main(["search", str(recording), "water falling", "--top", "3", "--json",
                    "--cache-dir", str(cache), *common])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["query"] == "water falling" and data["system"] == 1
    assert 1 <= len(data["windows"]) <= 3

    code = main(["search", str(recording), "water", "--system", "2", "--cache-dir",
                    str(cache), *common])
    out = capsys.readouterr().out
    assert code == 0 and 'System 2: "water"' in out
    first = out.splitlines()[1]  # "   1. 0:06.0 - 0:26.0   (6.0 - 26.0 s)   score 0.9721"
    found = re.fullmatch(r"\s+1\. (\d+):(\d\d\.\d) - (\d+):(\d\d\.\d)   "
                         r"\(([\d.]+) - ([\d.]+) s\)   score [\d.]+", first)
    assert found is not None, first
    m1, s1, m2, s2, start, end = (float(g) for g in found.groups())
    assert (60 * m1 + s1, 60 * m2 + s2) == (float(start), float(end))

    missing = tmp_path / "missing.wav"
    assert main(["search", str(missing), "water", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audiomoment: error:") and "not found" in err and "\n" not in err

    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"qid": "q1", "query": "rain", "vid": "x", "duration": 9.0})
                   + "\n")
    short = tmp_path / "tiny.wav"
    sf.write(short, np.zeros(8000, np.float32), 16000)
    assert main(["extract-features", str(short), "--out", str(tmp_path / "o"), *common]) == 2
    assert "shorter than one" in capsys.readouterr().err
    gen = tmp_path / "gen.wav"
    sf.write(gen, 0.1 * np.random.default_rng(0).standard_normal(3 * 22050), 22050)
    code = main(["extract-features", str(gen), "--annotations", str(ann), "--out",
                    str(tmp_path / "o"), "--cache-dir", str(cache), *common])
    assert code == 0
    assert np.load(tmp_path / "o" / "clap" / "gen.npz")["features"].shape == (3, 768)
    assert np.load(tmp_path / "o" / "clap_text" / "q1.npz")["last_hidden_state"].shape[1] == 768
    assert np.load(tmp_path / "o" / "neutral_embedding.npy").shape == (1024,)


def test_cli_offline_without_weights_is_one_clear_line(recording: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "audiomoment", "search", str(recording), "water", "--no-cache"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "CLAP_weights_2023.pth" in lines[0] and "--checkpoint" in lines[0]


def test_clock_times() -> None:
    from audiomoment.pipelines.search import clock

    assert clock(0) == "0:00.0"
    assert clock(6) == "0:06.0"
    assert clock(59.96) == "1:00.0"  # rounds to a tenth, carrying into the minutes
    assert clock(754.3) == "12:34.3"
    assert clock(5432.3) == "1:30:32.3"  # an hour or more: hours shown whatever the flag
    assert clock(75.5, hours=True) == "0:01:15.5"
    assert clock(10800) == "3:00:00.0"
