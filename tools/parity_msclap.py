"""Parity of audiomoment's MS-CLAP 2023 with the official ``msclap`` model classes.

Both are given identical random weights (a full checkpoint in the official layout, written
by ``audiomoment.testing.random_clap``, GPT-2's legacy mask buffers included) and the same tiny
GPT-2-format tokenizer; then their audio embeddings (768-d encoder outputs and 1024-d
projections) and text embeddings (token ids and 1024-d projections) are compared.

The official package pins numpy<2 and pulls in torchaudio, so it lives in its own virtual
environment, never in the project's. One way to make it (CPU torch, no torchaudio):

    python3 -m venv /tmp/parity-venv
    /tmp/parity-venv/bin/pip install torch==2.13.0 "numpy<2" "transformers>=4.34,<5" librosa pyyaml
    /tmp/parity-venv/bin/pip install --no-deps msclap torchlibrosa
    /tmp/parity-venv/bin/python tools/parity_msclap.py

The official model classes need only torch, transformers and torchlibrosa; importing the
package also imports torchaudio (for file loading, not used here), which this script
replaces with an empty stand-in module. ``AutoModel.from_pretrained("gpt2")`` (a download)
is replaced by building GPT-2 from its configuration; its weights are then overwritten by
the checkpoint. Exit status 1 when a difference exceeds ``--tolerance``.

Measured (torch 2.13.0 CPU; official side with transformers 4.57.6, ours with 5.x; random
weights, seed 0; 10 windows: 4 from shared/data/audio/1a-ODBWMUAE.wav, 4 noise, a tone,
silence; 7 captions including "!", "!!" and the empty caption):

    official load_state_dict: 0 missing, 24 unexpected (the legacy attn.bias/masked_bias)
    token ids identical: True
    audio 768-d features           max abs diff 6.9e-06  (max |value| 3.45)
    audio 1024-d projection        max abs diff 7.7e-06  (max |value| 3.41)
    audio joint (L2-normalised)    max abs diff 2.4e-07  (max |value| 0.105)
    text 1024-d projection         max abs diff 3.0e-06  (max |value| 3.83)
    text joint (L2-normalised)     max abs diff 8.6e-08  (max |value| 0.119)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CAPTIONS = [
    "a dog barks in the distance",
    "water flows in a stream",
    "a waterfall roars!",
    "wow!! people cheer",
    "hello!world",
    "",
    "background sound",
]


def import_official():
    """The official model classes, with a torchaudio stand-in and no hub download."""
    import transformers  # before the stand-in: transformers probes for torchaudio

    stand_in = types.ModuleType("torchaudio")
    stand_in.transforms = types.ModuleType("torchaudio.transforms")  # type: ignore[attr-defined]
    sys.modules.setdefault("torchaudio", stand_in)
    sys.modules.setdefault("torchaudio.transforms", stand_in.transforms)  # type: ignore[attr-defined]
    import msclap.models.clap as official_clap
    from msclap.CLAPWrapper import CLAPWrapper

    class _FromConfig:
        @staticmethod
        def from_pretrained(name: str):
            assert name == "gpt2", name
            return transformers.GPT2Model(transformers.GPT2Config())

    official_clap.AutoModel = _FromConfig  # type: ignore[assignment]
    return official_clap, CLAPWrapper


def build_official(checkpoint: Path, tokenizer_dir: Path):
    """The official CLAP (2023 configuration) and a wrapper around it that is set up as
    ``CLAPWrapper.load_clap`` sets it up, minus the downloads."""
    import torch
    from transformers import GPT2TokenizerFast

    official_clap, wrapper_cls = import_official()
    model = official_clap.CLAP(
        audioenc_name="HTSAT", sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64,
        fmin=50, fmax=8000, classes_num=527, out_emb=768, text_model="gpt2",
        transformer_embed_dim=768, d_proj=1024,
    )
    state = torch.load(checkpoint, map_location="cpu")["model"]
    result = model.load_state_dict(state, strict=False)
    model.eval()
    wrapper = wrapper_cls.__new__(wrapper_cls)
    wrapper.clap = model
    wrapper.use_cuda = False
    wrapper.args = argparse.Namespace(text_model="gpt2", text_len=77)
    wrapper.token_keys = ["input_ids", "attention_mask"]
    tokenizer = GPT2TokenizerFast.from_pretrained(str(tokenizer_dir))
    tokenizer.add_special_tokens({"pad_token": "!"})
    wrapper.tokenizer = tokenizer
    return model, wrapper, result


def sample_windows(audio_path: Path | None, n_random: int = 4):
    """(n, 44100) float32 windows: real 1-s windows, noise, a tone and silence."""
    import numpy as np

    from audiomoment.io.audio import load_windows

    rng = np.random.default_rng(0)
    parts = []
    if audio_path is not None and audio_path.is_file():
        parts.append(load_windows(audio_path)[:4])
    t = np.arange(44100) / 44100
    parts.append(0.1 * rng.standard_normal((n_random, 44100)).astype(np.float32))
    parts.append((0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32))
    parts.append(np.zeros((1, 44100), np.float32))
    return np.concatenate(parts).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--audio", type=Path,
                        default=REPO.parent / "shared" / "data" / "audio" / "1a-ODBWMUAE.wav",
                        help="a recording whose first 1-s windows are compared too")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from audiomoment.clap.model import load_clap
    from audiomoment.clap.projection import project
    from audiomoment.testing.random_clap import write_random_checkpoint, write_tiny_tokenizer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        ckpt = write_random_checkpoint(Path(tmp) / "CLAP_weights_2023.pth", seed=args.seed)
        tok_dir = write_tiny_tokenizer(Path(tmp) / "tokenizer")
        official, wrapper, loaded = build_official(ckpt, tok_dir)
        ours = load_clap(ckpt, tok_dir)

        print(f"torch {torch.__version__}", end="")
        import transformers

        print(f", transformers {transformers.__version__} (official side)")
        print(f"official load_state_dict: {len(loaded.missing_keys)} missing, "
              f"{len(loaded.unexpected_keys)} unexpected "
              f"({sorted({k.split('.')[-1] for k in loaded.unexpected_keys})})")
        if loaded.missing_keys:
            print("  missing:", loaded.missing_keys[:5])
            return 1

        windows = sample_windows(args.audio)
        x = torch.from_numpy(windows)
        with torch.inference_mode():
            off_feat = official.audio_encoder.base(x)["embedding"].numpy()
            off_proj = wrapper._get_audio_embeddings(x[:, None, :]).numpy()
        our_feat = ours.require_audio().features(windows)
        our_proj = project(our_feat, ours.heads["audio"], normalize=False)

        off_ids = wrapper.preprocess_text(CAPTIONS)["input_ids"].numpy()
        our_ids = np.array([ours.require_text().padded_ids(c) for c in CAPTIONS])
        with torch.inference_mode():
            off_text = wrapper.get_text_embeddings(CAPTIONS).numpy()
        our_text = project(ours.require_text().query_vectors(CAPTIONS), ours.heads["text"],
                           normalize=False)

        def normed(a: np.ndarray) -> np.ndarray:
            return a / np.linalg.norm(a, axis=1, keepdims=True)

        rows = [
            ("audio 768-d features", off_feat, our_feat),
            ("audio 1024-d projection", off_proj, our_proj),
            ("audio joint (L2-normalised)", normed(off_proj), normed(our_proj)),
            ("text 1024-d projection", off_text, our_text),
            ("text joint (L2-normalised)", normed(off_text), normed(our_text)),
        ]
        ok = True
        print(f"{len(windows)} audio windows, {len(CAPTIONS)} captions")
        same_ids = off_ids.shape == our_ids.shape and bool(np.all(off_ids == our_ids))
        print(f"  token ids identical: {same_ids}")
        ok &= same_ids
        for name, a, b in rows:
            diff = float(np.max(np.abs(a - b)))
            scale = float(np.max(np.abs(a)))
            flag = "ok" if diff <= args.tolerance else "EXCEEDS"
            ok &= diff <= args.tolerance
            print(f"  {name:<30s} max abs diff {diff:.3e}  (max |value| {scale:.3g})  {flag}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
