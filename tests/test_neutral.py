"""Where System 1's neutral embedding comes from: a file, or the checkpoint's text encoder
(random weights in the official layout, the real GPT-2 tokenizer), cached by content; and the
one-line errors when there is neither."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from audiomoment.clap import ClapModel, load_clap
from audiomoment.errors import InputError
from audiomoment.pipelines.neutral import neutral_for_run, neutral_from_model

PHRASES_SOURCE = ("checkpoint text encoder, phrases: "
                  "background sound | ambient noise | background audio")


#: The report's three neutral phrases, written out (not read from the package).
REPORT_PHRASES = ("background sound", "ambient noise", "background audio")

@pytest.fixture(scope="module")
def gpt2_tokenizer(shared_data: Path) -> Path:
    return shared_data / "gpt2_tokenizer"


@pytest.fixture(scope="module")
def model(clap_files: tuple[Path, Path], gpt2_tokenizer: Path) -> ClapModel:
    return load_clap(clap_files[0], gpt2_tokenizer, audio=False, text=True)


def sha256_of(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def expected_neutral(model: ClapModel) -> np.ndarray:
    """The normalised mean of the normalised phrase embeddings, by hand."""
    e = model.text_embeddings(REPORT_PHRASES).astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    m = e.mean(axis=0)
    return m / np.linalg.norm(m)


def test_the_real_tokenizer_is_used(model: ClapModel) -> None:
    text = model.require_text()
    assert len(text.tokenizer) == 50257  # GPT-2's vocabulary, not the tiny test tokenizer
    ids = text.token_ids("background sound")
    assert ids[-2:] == [220, 50256]  # " " then <|endoftext|>, GPT-2's ids


def test_file_source(tmp_path: Path) -> None:
    vec = np.random.default_rng(3).normal(size=1024)
    path = tmp_path / "neutral.npy"
    np.save(path, vec)
    # the file wins over a checkpoint, which is then not even looked at
    got, source = neutral_for_run(1, neutral_file=path, checkpoint=tmp_path / "absent.pth")
    assert got is not None and got.dtype == np.float64
    np.testing.assert_array_equal(got, vec)
    assert source == f"file neutral.npy (sha256 {sha256_of(path)})"

    bad = tmp_path / "short.npy"
    np.save(bad, np.ones(5))
    with pytest.raises(InputError, match=r"short\.npy: expected a 1024-d vector"):
        neutral_for_run(1, neutral_file=bad)


def test_checkpoint_source_is_computed_and_cached_by_content(
    model: ClapModel, clap_files: tuple[Path, Path], gpt2_tokenizer: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = clap_files[0]
    cache = tmp_path / "cache"
    got, source = neutral_for_run(1, checkpoint=ckpt, tokenizer=gpt2_tokenizer, cache_dir=cache)
    assert source == PHRASES_SOURCE
    assert got is not None and got.shape == (1024,)
    np.testing.assert_allclose(got, expected_neutral(model), atol=1e-6)
    assert np.isclose(np.linalg.norm(got), 1.0)

    # the cache entry's name: SHA-256 of the JSON list [checkpoint sha256, tokenizer sha256
    # (vocab.json then merges.txt), phrases], first 24 hex digits
    parts = [sha256_of(ckpt), sha256_of(gpt2_tokenizer / "vocab.json",
                                        gpt2_tokenizer / "merges.txt"), list(REPORT_PHRASES)]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    assert sorted(p.name for p in (cache / "neutral").iterdir()) == [f"{key}.npy"]
    np.testing.assert_array_equal(np.load(cache / "neutral" / f"{key}.npy"), got)

    # a second run reads the cache: the text encoder is not asked again
    calls: list[object] = []
    original = ClapModel.text_embeddings
    monkeypatch.setattr(ClapModel, "text_embeddings",
                        lambda self, texts: calls.append(texts) or original(self, texts))
    np.testing.assert_array_equal(neutral_from_model(model, cache), got)
    assert calls == []
    # a damaged entry is recomputed and replaced
    (cache / "neutral" / f"{key}.npy").write_bytes(b"damaged")
    np.testing.assert_allclose(neutral_from_model(model, cache), got, atol=1e-12)
    assert len(calls) == 1
    np.testing.assert_array_equal(np.load(cache / "neutral" / f"{key}.npy"), got)


def test_without_a_cache_nothing_is_written(
    model: ClapModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOMOMENT_CACHE_DIR", str(tmp_path))  # not even the default cache
    vec = neutral_from_model(model, None)
    np.testing.assert_allclose(vec, expected_neutral(model), atol=1e-6)
    assert list(tmp_path.iterdir()) == []


def test_other_systems_have_none(tmp_path: Path) -> None:
    missing = tmp_path / "absent.npy"
    for system in (2, "window"):
        assert neutral_for_run(system, neutral_file=missing, checkpoint=missing) == (None, None)


def test_system1_without_a_source_is_one_line(tiny_dataset: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        neutral_for_run(1, cache_dir=tmp_path)
    message = str(err.value)
    assert "System 1 needs a neutral embedding" in message
    assert "\n" not in message and "--" not in message
    # a checkpoint without a text encoder (projection heads only)
    with pytest.raises(InputError) as err:
        neutral_for_run(1, checkpoint=tiny_dataset["checkpoint"], cache_dir=tmp_path)
    message = str(err.value)
    assert "not an MS-CLAP 2023 checkpoint" in message and "caption_encoder.base." in message
    assert "neutral embedding" in message and "\n" not in message and "--" not in message
    assert not (tmp_path / "neutral").exists()
