"""Audio embedders for the index: one audio file -> joint-space window embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.store import ModelSpec
from audiomoment.io.audio import DEFAULT_WINDOWS, WindowConfig, audio_info

if TYPE_CHECKING:
    from audiomoment.clap.model import ClapModel


class ClapAudioEmbedder:
    """MS-CLAP 2023's audio encoder and projection head, windows as the DCASE features."""

    def __init__(self, model: ClapModel, checkpoint_sha256: str, batch_size: int = 8,
                 windows: WindowConfig = DEFAULT_WINDOWS) -> None:
        self.model = model
        self.batch_size = batch_size
        self.windows = windows
        encoder = model.require_audio()
        name = "MS-CLAP 2023" + (" (bfloat16 audio transformer)"
                                 if encoder.precision == "bfloat16" else "")
        self.spec = ModelSpec(model=name, checkpoint_sha256=checkpoint_sha256,
                              dim=model.heads["audio"].out_dim, hop_s=windows.hop_s,
                              window_s=windows.window_s)

    def duration_s(self, path: Path) -> float:
        return audio_info(path, self.windows).duration_s

    def embed(self, path: Path,
              on_windows: Callable[[int], None] | None = None) -> NDArray[np.float32]:
        from audiomoment.clap.model import file_features
        from audiomoment.clap.projection import project

        feats = file_features(self.model.require_audio(), path, self.batch_size,
                              progress=False, windows=self.windows, on_windows=on_windows)
        return np.asarray(project(feats, self.model.heads["audio"]), dtype=np.float32)
