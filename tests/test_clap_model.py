"""Loading MS-CLAP 2023 from a random checkpoint in the official layout (strict keys, legacy
GPT-2 buffers), the text encoder's tokenisation convention, and finding weights offline."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import audiomoment.clap.model as clap_model
from audiomoment.clap import load_clap, query_position
from audiomoment.clap.model import ClapModel
from audiomoment.clap.weights import resolve_checkpoint, resolve_tokenizer
from audiomoment.errors import InputError
from audiomoment.io.cache import cached_file_digest


@pytest.fixture(scope="module")
def clap(clap_files: tuple[Path, Path]) -> ClapModel:
    return load_clap(*clap_files)


@pytest.fixture(scope="module")
def raw_state(clap_files: tuple[Path, Path]) -> Mapping[str, Any]:
    from audiomoment.clap.checkpoint import load_state_dict

    return load_state_dict(clap_files[0])


def test_checkpoint_has_the_official_layout(raw_state: Mapping[str, Any]) -> None:
    keys = set(raw_state)
    assert "audio_encoder.base.htsat.spectrogram_extractor.stft.conv_real.weight" in keys
    assert "audio_encoder.base.htsat.logmel_extractor.melW" in keys
    assert "audio_encoder.base.htsat.tscam_conv.weight" in keys
    assert "caption_encoder.base.wte.weight" in keys
    assert "caption_encoder.base.h.11.attn.bias" in keys  # legacy buffers are in the file
    assert "caption_encoder.base.h.0.attn.masked_bias" in keys
    assert "logit_scale" in keys
    assert tuple(raw_state["caption_encoder.base.wte.weight"].shape) == (50257, 768)


def test_strict_load_takes_every_tensor(clap: ClapModel, raw_state: Mapping[str, Any]) -> None:
    htsat = clap.require_audio().htsat.state_dict()
    for key, value in htsat.items():
        assert torch.equal(value, raw_state[f"audio_encoder.base.htsat.{key}"].float()), key
    gpt = clap.require_text().model.state_dict()
    assert len(gpt) == 148
    for key, value in gpt.items():
        assert torch.equal(value, raw_state[f"caption_encoder.base.{key}"]), key
    assert np.array_equal(clap.heads["text"].linear1,
                          raw_state["caption_encoder.projection.linear1.weight"].numpy())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"caption_encoder.base.h.3.attn.c_attn.weight": None}, r"1 missing key.*h\.3\.attn"),
        ({"caption_encoder.base.h.0.attn.rotary": torch.zeros(1)}, r"unexpected.*attn\.rotary"),
        ({"caption_encoder.base.extra.weight": torch.zeros(1)}, r"unexpected.*base\.extra"),
        ({"audio_encoder.base.htsat.layers.1.blocks.1.attn_mask": None}, r"missing.*attn_mask"),
        ({"caption_encoder.projection.bias": torch.zeros(1)}, r"unexpected.*projection\.bias"),
        ({"caption_encoder.base.ln_f.weight": torch.ones(10)}, r"ln_f\.weight has shape"),
    ],
)
def test_strict_load_rejects_other_keys(
    clap_files: tuple[Path, Path], raw_state: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch,
    change: dict, message: str,
) -> None:
    state = dict(raw_state)
    for key, value in change.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    monkeypatch.setattr(clap_model, "load_state_dict", lambda _path: state)
    with pytest.raises(InputError, match=message):
        load_clap(*clap_files)


def test_only_the_requested_part_is_checked(
    clap_files: tuple[Path, Path], raw_state: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {k: v for k, v in raw_state.items() if not k.startswith("caption_encoder.")}
    monkeypatch.setattr(clap_model, "load_state_dict", lambda _path: state)
    model = load_clap(clap_files[0], audio=True, text=False)
    assert model.text is None and model.audio is not None
    with pytest.raises(InputError, match="missing"):
        load_clap(*clap_files, audio=False, text=True)


def test_tokenisation_convention(clap: ClapModel) -> None:
    text = clap.require_text()
    ids = text.token_ids("a dog barks")
    assert ids[-2:] == [220, text.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    padded = text.padded_ids("a dog barks")
    assert len(padded) == 77 and padded[: len(ids)] == ids and set(padded[len(ids):]) == {0}
    assert text.position("a dog barks") == len(ids) - 1  # the <|endoftext|> token
    assert text.tokenizer.convert_tokens_to_ids("!") == 0


def test_exclamation_marks_count_as_padding_as_in_ms_clap(clap: ClapModel) -> None:
    text = clap.require_text()
    ids = text.token_ids("wow!! great")
    assert ids.count(0) == 2  # each "!" is split out as its own token 0, even "!!"
    # MS-CLAP's position: number of non-zero ids - 1, i.e. two tokens before the last
    assert text.position("wow!! great") == len(ids) - 3
    assert query_position([5, 0, 7, 220, 9]) == 3
    assert query_position([5, 7, 220, 9] + [0] * 73) == 3
    hidden = text.hidden_states(["wow!! great"])[0]
    assert hidden.shape == (len(ids) - 2, 768)


def official_query_vectors(clap: ClapModel, texts: list[str]) -> np.ndarray:
    """The official procedure: 77 ids padded with 0, attention mask over the real tokens,
    hidden state at (number of non-zero ids) - 1."""
    text = clap.require_text()
    rows, masks = [], []
    for t in texts:
        ids = text.token_ids(t)
        rows.append(text.padded_ids(t))
        masks.append([1] * len(ids) + [0] * (77 - len(ids)))
    ids_t = torch.tensor(rows)
    with torch.inference_mode():
        hidden = text.model(input_ids=ids_t, attention_mask=torch.tensor(masks))[0]
    pos = torch.ne(ids_t, 0).sum(-1) - 1
    return hidden[torch.arange(len(texts)), pos].numpy()


def test_query_vectors_equal_the_official_procedure(clap: ClapModel) -> None:
    texts = ["a dog barks", "rain on a roof!", "hello!world", "", "background audio"]
    ours = clap.require_text().query_vectors(texts, batch_size=2)
    assert np.max(np.abs(ours - official_query_vectors(clap, texts))) < 1e-4
    alone = np.stack([clap.require_text().query_vectors([t])[0] for t in texts])
    assert np.max(np.abs(ours - alone)) < 1e-4
    emb = clap.text_embeddings(texts)
    assert emb.shape == (5, 1024)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_too_long_query_is_an_input_error(clap: ClapModel) -> None:
    with pytest.raises(InputError, match="query too long"):
        clap.require_text().token_ids("dog " * 1100)


def test_file_digest_cache_follows_content(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"one")
    first = cached_file_digest(f, tmp_path / "cache")
    assert first == hashlib.sha256(b"one").hexdigest()
    assert cached_file_digest(f, tmp_path / "cache") == first
    f.write_bytes(b"two!")
    assert cached_file_digest(f, tmp_path / "cache") != first


@pytest.fixture
def offline_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_offline_without_cache_names_the_missing_file(offline_empty_cache: Path) -> None:
    with pytest.raises(InputError) as err:
        resolve_checkpoint(None)
    message = str(err.value)
    assert "CLAP_weights_2023.pth" in message and "microsoft/msclap" in message
    assert "HF_HUB_OFFLINE" in message and "--checkpoint PATH" in message
    assert "\n" not in message
    with pytest.raises(InputError, match=r"vocab\.json.*gpt2.*--tokenizer DIR"):
        resolve_tokenizer(None)


def test_explicit_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint file not found"):
        resolve_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(InputError, match="tokenizer folder not found"):
        resolve_tokenizer(tmp_path / "nope")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text("{}")
    with pytest.raises(InputError, match=r"has no merges\.txt"):
        resolve_tokenizer(tmp_path / "tok")


@pytest.mark.skipif(
    not os.environ.get("AUDIOMOMENT_PARITY_PYTHON"),
    reason="set AUDIOMOMENT_PARITY_PYTHON to a python with the official msclap installed",
)
def test_parity_with_the_official_model_classes() -> None:
    """tools/parity_msclap.py in the official package's own environment: identical random
    weights, embeddings within 1e-4."""
    script = Path(__file__).resolve().parents[1] / "tools" / "parity_msclap.py"
    proc = subprocess.run([os.environ["AUDIOMOMENT_PARITY_PYTHON"], str(script)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "token ids identical: True" in proc.stdout


def test_unknown_or_missing_device_is_an_input_error(clap_files: tuple[Path, Path]) -> None:
    with pytest.raises(InputError, match="unknown device"):
        load_clap(*clap_files, device="tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            load_clap(*clap_files, device="cuda")
