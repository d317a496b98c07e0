"""MS-CLAP 2023 end to end: loading the checkpoint, embedding recordings and captions.

Audio: windows (see :mod:`audiomoment.io.audio`) -> HTS-AT (768-d) -> audio projection head
-> L2 normalisation. Text: caption -> GPT-2 query vector (768-d) -> caption projection head
-> L2 normalisation. Both land in the 1024-d joint space where similarities are cosines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.clap.checkpoint import ProjectionHead, head_from_state, load_state_dict
from audiomoment.clap.htsat import HTSAT, HTSATConfig
from audiomoment.clap.keys import PART, encoder_tensors, part_keys
from audiomoment.clap.projection import project
from audiomoment.clap.text import TextEncoder, build_gpt2, gpt2_keys, load_tokenizer
from audiomoment.clap.weights import (
    is_ignored_audio_key,
    is_ignored_text_key,
    load_into,
    part_state,
    resolve_checkpoint,
    resolve_tokenizer,
)
from audiomoment.errors import InputError
from audiomoment.io.audio import DEFAULT_WINDOWS, WindowConfig, audio_info, expected_windows
from audiomoment.io.audio import iter_windows as _iter_windows
from audiomoment.io.cache import cached_file_digest

Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


class AudioEncoder:
    """Audio windows (n, 44100) at 44.1 kHz -> (n, 768) HTS-AT embeddings (float32).

    ``precision="bfloat16"`` runs the transformer in bfloat16 (lossy: faster on CPUs with
    bfloat16 support; the benchmark reports its deviation). ``workers`` (CPU only): a batch
    is split into parts that this many threads run at the same time, each with one torch
    thread (None: torch's thread count); on a few cores this uses them better than splitting
    every operation. ``device``: "cpu" or a CUDA device. Results do not depend on
    ``workers``.
    """

    def __init__(
        self, htsat: HTSAT, head: ProjectionHead, precision: Precision = "float32",
        workers: int | None = None, device: str = "cpu",
    ) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        self.device = torch.device(device)
        self.htsat = htsat.to(self.device).set_compute_dtype(dtype)
        self.head = head
        self.precision = precision
        on_cpu = self.device.type == "cpu"
        self.workers = max(1, workers if workers is not None else torch.get_num_threads())
        if not on_cpu:
            self.workers = 1
        self._pool: ThreadPoolExecutor | None = None

    def _forward(self, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.htsat(x.to(self.device)).cpu()

    def _forward_single_thread(self, x: Any) -> Any:
        import torch

        torch.set_num_threads(1)  # this worker's own operations: one thread each
        return self._forward(x)

    def features(self, windows: ArrayLike) -> NDArray[np.float32]:
        """(n, samples) float waveforms -> (n, 768) float32."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        if x.ndim != 2:
            raise ValueError(f"expected (n, samples) windows, got shape {tuple(x.shape)}")
        if min(self.workers, x.shape[0]) <= 1:
            out = self._forward(x)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="htsat")
            # parts of about two windows: small enough to keep each worker's activations in
            # cache (larger parts ran up to 8% slower at batch 32), and more parts than
            # workers, so a worker slowed by other load takes fewer
            parts = min(x.shape[0], max(self.workers, -(-x.shape[0] // 2)))
            threads = torch.get_num_threads()
            try:
                out = torch.cat(list(self._pool.map(self._forward_single_thread,
                                                    x.tensor_split(parts))))
            finally:
                torch.set_num_threads(threads)
        return out.float().numpy()


def file_features(
    encoder: AudioEncoder,
    path: str | os.PathLike[str],
    batch_size: int = 8,
    progress: bool | None = None,
    windows: WindowConfig = DEFAULT_WINDOWS,
    on_windows: Callable[[int], None] | None = None,
) -> NDArray[np.float32]:
    """(T, 768) window features of a whole recording, streamed in batches.

    ``progress``: a progress bar on stderr (None: only on a terminal). ``on_windows``:
    called with the number of windows of each batch once it is encoded.
    """
    from tqdm import tqdm

    info = audio_info(path, windows)
    total = expected_windows(info, windows)
    rows: list[NDArray[np.float32]] = []
    disable = None if progress is None else not progress
    with tqdm(total=total, desc=Path(path).name, unit="win", disable=disable,
              leave=False) as bar:
        for batch in _iter_windows(path, batch_size, windows):
            rows.append(encoder.features(batch))
            bar.update(len(batch))
            if on_windows is not None:
                on_windows(len(batch))
    return np.concatenate(rows).astype(np.float32, copy=False)


@dataclass
class ClapModel:
    """The loaded parts of MS-CLAP 2023.

    checkpoint : the checkpoint file. heads : projection heads by modality ("audio",
    "text"). audio / text : the encoders that were loaded (None when not requested).
    tokenizer_dir : the folder the tokenizer came from.
    """

    checkpoint: Path
    heads: dict[str, ProjectionHead]
    audio: AudioEncoder | None = None
    text: TextEncoder | None = None
    tokenizer_dir: Path | None = None
    _digest: str | None = field(default=None, repr=False)

    def require_audio(self) -> AudioEncoder:
        if self.audio is None:
            raise RuntimeError("the audio encoder was not loaded (load_clap(audio=True))")
        return self.audio

    def require_text(self) -> TextEncoder:
        if self.text is None:
            raise RuntimeError("the text encoder was not loaded (load_clap(text=True))")
        return self.text

    def text_embeddings(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(N, 1024) caption embeddings in the joint space, L2-normalised."""
        return project(self.require_text().query_vectors(texts), self.heads["text"])

    def checkpoint_digest(self, cache_dir: str | os.PathLike[str] | None = None) -> str:
        """SHA-256 of the checkpoint file (remembered per path, size and mtime)."""
        if self._digest is None:
            self._digest = cached_file_digest(self.checkpoint, cache_dir)
        return self._digest


def load_clap(
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    *,
    audio: bool = True,
    text: bool = True,
    precision: Precision = "float32",
    threads: int | None = None,
    device: str = "cpu",
) -> ClapModel:
    """Load the parts of MS-CLAP 2023 that are asked for, strictly.

    ``checkpoint``: the file (None: Hugging Face cache, else download); ``tokenizer``: a
    folder with GPT-2's vocab.json and merges.txt (None: cache, else download; only read
    when ``text``). ``threads``: torch's CPU threads (None: leave as is). ``device``: where
    the audio encoder runs ("cpu", "cuda", "cuda:1"...; the text encoder stays on the CPU).
    Raises :class:`InputError` for missing files or a checkpoint that does not match.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    path = resolve_checkpoint(checkpoint)
    state = load_state_dict(path)
    source = str(path)
    model = ClapModel(checkpoint=path, heads={})
    if audio:
        model.audio = audio_encoder_from_state(state, source, precision, device=device)
        model.heads["audio"] = model.audio.head
    if text:
        expected = part_keys("text", gpt2_keys())
        tensors = part_state(state, PART["text"], expected, is_ignored_text_key, source)
        # only now the tokenizer (possibly a download): the checkpoint has a text encoder
        model.tokenizer_dir = resolve_tokenizer(tokenizer)
        gpt = build_gpt2(encoder_tensors("text", tensors), source)
        model.heads["text"] = head_from_state(state, "text", source)
        model.text = TextEncoder(gpt, load_tokenizer(model.tokenizer_dir))
    return model


def audio_encoder_from_state(
    state: Mapping[str, Any],
    source: str = "checkpoint",
    precision: Precision = "float32",
    workers: int | None = None,
    device: str = "cpu",
) -> AudioEncoder:
    """The audio encoder and its projection head from a full state dict in the official
    layout (strict, as :func:`load_clap`); ``source`` names it in errors."""
    expected = part_keys("audio", _htsat_keys())
    tensors = part_state(state, PART["audio"], expected, is_ignored_audio_key, source)
    htsat = HTSAT(HTSATConfig())
    load_into(htsat, encoder_tensors("audio", tensors), source)
    head = head_from_state(state, "audio", source)
    return AudioEncoder(htsat, head, precision, workers=workers, device=device)


def _htsat_keys() -> list[str]:
    from audiomoment.clap.htsat import expected_keys

    return expected_keys(HTSATConfig())

