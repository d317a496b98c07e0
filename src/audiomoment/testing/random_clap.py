"""Random MS-CLAP 2023 weights and a tiny GPT-2-format tokenizer, for tests, benchmarks
and parity checks on machines that cannot download the real files.

:func:`random_projection_head` is one projection head with torch-like initial scales.

:func:`random_state_dict` has every tensor of the official checkpoint, with the official
names and shapes (the whole CLAP model: both encoders, both projection heads, the unused
classification head, ``logit_scale`` and, optionally, GPT-2's legacy causal-mask buffers).
Values are random but of realistic scale, so the encoders' outputs are well conditioned.

:func:`write_tiny_tokenizer` writes ``vocab.json`` and ``merges.txt`` in GPT-2's format:
ids 0..255 are the 256 byte symbols in GPT-2's order (so "!" is id 0 and the space symbol
"Ġ" is id 220, as in GPT-2), then a few hundred merges learned from a small caption corpus,
then ``<|endoftext|>``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM, ProjectionHead, head_state
from audiomoment.clap.keys import encoder_prefix

#: Captions the tiny tokenizer's merges are learned from.
CORPUS = (
    "a dog barks in the distance while cars pass by on a wet road",
    "water flows in a stream and birds sing in the trees",
    "a man speaks and a woman laughs, then a door closes",
    "rain falls on a tin roof and thunder rumbles far away",
    "an engine idles, a horn honks and people talk on the street",
    "footsteps on gravel, wind blowing through the leaves",
    "a bell rings three times and music plays softly in the background",
    "background sound, ambient noise, background audio",
    "a waterfall roars and a crowd cheers loudly!",
)


def gpt2_byte_symbols() -> list[str]:
    """The 256 printable symbols GPT-2 uses for bytes 0..255, in GPT-2's id order.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves and come first; each other byte b, in increasing order, gets the
    next unused code point from 256 up. Returned in id order: entry i is the symbol of id i.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def write_tiny_tokenizer(folder: str | os.PathLike[str], n_merges: int = 300) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of a small byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    symbols = gpt2_byte_symbols()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + n_merges, initial_alphabet=symbols, show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    learned = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in learned]
    vocab = {s: i for i, s in enumerate(symbols)}
    kept = []
    for merge in merges:
        left, right = merge.split(" ")
        token = left + right
        if left in vocab and right in vocab and token not in vocab:
            vocab[token] = len(vocab)
            kept.append(merge)
    vocab["<|endoftext|>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(m + "\n" for m in kept), encoding="utf-8"
    )
    return out


def _stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed DFT kernels (bins, 1, n_fft), as a real checkpoint holds."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = -2 * np.pi * k * n[None, :] / n_fft
    return (
        (np.cos(angle) * window)[:, None, :].astype(np.float32),
        (np.sin(angle) * window)[:, None, :].astype(np.float32),
    )


def _mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(bins, n_mels) triangular filters evenly spaced on the HTK mel scale, area-normalised."""

    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(np.array(fmin)), mel(np.array(fmax)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(up, down))
    tri *= (2.0 / (upper - lower))
    return tri.T.astype(np.float32)



def random_projection_head(
    rng: np.random.Generator, in_dim: int = ENCODER_DIM, out_dim: int = JOINT_DIM
) -> ProjectionHead:
    """A randomly initialised projection head, torch-like scales: ``linear1`` (out_dim,
    in_dim) and ``linear2`` (out_dim, out_dim) uniform in +-1/sqrt(fan_in), LayerNorm scale
    1 + 0.1 N(0, 1) and bias 0.05 N(0, 1); float32."""
    bound1 = 1.0 / np.sqrt(in_dim)
    bound2 = 1.0 / np.sqrt(out_dim)
    return ProjectionHead(
        linear1=rng.uniform(-bound1, bound1, (out_dim, in_dim)).astype(np.float32),
        linear2=rng.uniform(-bound2, bound2, (out_dim, out_dim)).astype(np.float32),
        ln_weight=(1.0 + 0.1 * rng.standard_normal(out_dim)).astype(np.float32),
        ln_bias=(0.05 * rng.standard_normal(out_dim)).astype(np.float32),
    )

def random_state_dict(
    seed: int = 0, legacy_gpt2_buffers: bool = True, text: bool = True
) -> dict[str, Any]:
    """A full MS-CLAP 2023 state dict (official names and shapes) with random weights.

    ``legacy_gpt2_buffers``: add ``caption_encoder.base.h.N.attn.bias`` / ``masked_bias``
    as transformers 4.x saved them. ``text``: include the text encoder (GPT-2, ~0.5 GB).
    """
    import torch

    from audiomoment.clap.htsat import HTSAT, HTSATConfig
    from audiomoment.clap.text import GPT2_CONFIG

    audio_at, text_at = encoder_prefix("audio"), encoder_prefix("text")

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = HTSATConfig()

    def normal(shape: tuple[int, ...], std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std + mean

    state: dict[str, Any] = {}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in HTSAT(cfg).state_dict().items()}
    buffers = HTSAT(cfg).state_dict()  # index and mask buffers: their true values
    real, imag = _stft_kernels(cfg.n_fft)
    for key, shape in shapes.items():
        if key.endswith(("relative_position_index", "attn_mask", "num_batches_tracked")):
            value = buffers[key].clone()
        elif key.endswith("conv_real.weight"):
            value = torch.from_numpy(real)
        elif key.endswith("conv_imag.weight"):
            value = torch.from_numpy(imag)
        elif key.endswith("melW"):
            value = torch.from_numpy(_mel_filterbank(32000, cfg.n_fft, cfg.n_mels, 50, 14000))
        elif key.endswith("running_mean"):
            value = normal(shape, 5.0, -25.0)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=gen) * 150 + 50
        elif key.endswith("bias") and len(shape) == 1:
            value = normal(shape, 0.02)
        elif len(shape) == 1:  # LayerNorm / BatchNorm scales
            value = normal(shape, 0.05, 1.0)
        elif key.endswith("relative_position_bias_table"):
            value = normal(shape, 0.5)
        else:
            fan_in = math.prod(shape[1:])
            value = normal(shape, 1.0 / math.sqrt(fan_in))
        state[audio_at + key] = value.contiguous()
    state[audio_at + "tscam_conv.weight"] = normal((cfg.num_classes, cfg.num_features, 2, 3), 0.02)
    state[audio_at + "tscam_conv.bias"] = torch.zeros(cfg.num_classes)
    state[audio_at + "head.weight"] = normal((cfg.num_classes, cfg.num_classes), 0.02)
    state[audio_at + "head.bias"] = torch.zeros(cfg.num_classes)
    state.update(head_state(random_projection_head(rng), "audio"))

    if text:
        import transformers

        with torch.device("meta"):
            gpt = transformers.GPT2Model(transformers.GPT2Config(**GPT2_CONFIG))
        gpt_shapes = {k: tuple(v.shape) for k, v in gpt.state_dict().items()}
        for key, shape in gpt_shapes.items():
            if key.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                value = normal(shape, 0.05, 1.0)
            else:
                value = normal(shape, 0.02)
            state[text_at + key] = value
        if legacy_gpt2_buffers:
            n = GPT2_CONFIG["n_positions"]
            causal = torch.tril(torch.ones((n, n), dtype=torch.bool)).view(1, 1, n, n)
            for layer in range(GPT2_CONFIG["n_layer"]):
                state[f"{text_at}h.{layer}.attn.bias"] = causal
                state[f"{text_at}h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
        state.update(head_state(random_projection_head(rng), "text"))
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return state


def write_random_checkpoint(
    path: str | os.PathLike[str], seed: int = 0, legacy_gpt2_buffers: bool = True,
    text: bool = True,
) -> Path:
    """Save :func:`random_state_dict` as ``{"model": state_dict}`` (the official layout)."""
    from audiomoment.clap.checkpoint import save_checkpoint

    save_checkpoint(path, random_state_dict(seed, legacy_gpt2_buffers, text))
    return Path(path)


def ensure_random_checkpoint(
    path: str | os.PathLike[str], seed: int = 0, legacy_gpt2_buffers: bool = True
) -> Path:
    """:func:`write_random_checkpoint` unless ``path`` exists already (test sessions share
    one file across modules)."""
    p = Path(path)
    if not p.is_file():
        write_random_checkpoint(p, seed, legacy_gpt2_buffers)
    return p
