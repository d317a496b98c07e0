"""Searching a recording for a text query: audio file + caption -> ranked moments.

The recording is embedded window by window with MS-CLAP 2023 (1-s windows, 1-s hop; see
:mod:`audiomoment.io.audio`), the query with the text encoder; System 1 localises the
background-contrast trace (the neutral embedding comes from the three neutral phrases, cached
on disk), System 2 the plain similarity trace (see :mod:`audiomoment.method.localize`).

Window features of a recording are cached on disk (keyed by the audio file's content, the
checkpoint's content and the windowing), so searching the same file again skips the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.clap.model import ClapModel, Precision, file_features
from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.audio import DEFAULT_WINDOWS, WindowConfig, audio_info
from audiomoment.io.cache import (
    cached_file_digest,
    content_key,
    load_cached_array,
    save_cached_array,
)
from audiomoment.method.frames import seconds_to_clock as clock
from audiomoment.method.localize import LocalizationResult, localize
from audiomoment.pipelines.neutral import neutral_from_model

#: Marks the cache's ``audio_features`` entries; change when the features would change.
FEATURES_VERSION = 1
#: Sub-folder of the cache that holds window features of searched recordings.
CACHE_SUBDIR = "audio_features"


@dataclass(frozen=True)
class SearchResult:
    """The moments of one recording that match one query.

    audio : the recording. query : the caption. system : 1 or 2.
    windows : (K, 3) ranked rows [start_s, end_s, score], best first.
    result : the full :class:`LocalizationResult` (trace, posterior, mixture...).
    duration_s : the recording's length (seconds); n_windows : 1-s windows embedded.
    """

    audio: Path
    query: str
    system: int
    windows: NDArray[np.float64]
    result: LocalizationResult
    duration_s: float
    n_windows: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: the ranked windows [start, end, score] in seconds."""
        return {
            "audio": str(self.audio),
            "query": self.query,
            "system": self.system,
            "duration": round(self.duration_s, 4),
            "n_windows": self.n_windows,
            "windows": [[round(float(s), 4), round(float(e), 4), round(float(c), 6)]
                        for s, e, c in self.windows],
            "fallback": bool(self.result.fallback),
            "delta": round(float(self.result.delta), 6),
        }


def format_result(result: SearchResult) -> str:
    """Human-readable ranked moments, one per line: clock times (H:MM:SS.s for recordings of
    an hour or more, M:SS.s otherwise), the same in seconds, and the score."""
    lines = [
        f'{result.audio.name} ({result.duration_s:.1f} s, {result.n_windows} windows), '
        f'System {result.system}: "{result.query}"'
    ]
    if result.result.fallback:
        lines[0] += "  [peak-centred fallback]"
    hours = result.duration_s >= 3600
    width = 9 if hours else 6
    for rank, (start, end, score) in enumerate(result.windows, start=1):
        lines.append(f"  {rank:2d}. {clock(start, hours):>{width}} - {clock(end, hours):>{width}}"
                     f"   ({start:.1f} - {end:.1f} s)   score {score:.4f}")
    return "\n".join(lines)


def audio_features(
    model: ClapModel,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    windows: WindowConfig = DEFAULT_WINDOWS,
) -> NDArray[np.float32]:
    """(T, 768) window features of a recording, from the cache when present.

    Cached in ``cache_dir`` (None: no cache), keyed by the audio file's and the checkpoint's
    content, the encoder's precision and the windowing.
    """
    encoder = model.require_audio()
    if cache_dir is None:
        return file_features(encoder, path, batch_size, progress, windows)
    audio_info(path, windows)  # a clear error before hashing an undecodable file
    key = content_key(
        FEATURES_VERSION, cached_file_digest(path, cache_dir),
        model.checkpoint_digest(cache_dir), encoder.precision,
        [windows.sr, windows.window_s, windows.hop_s, windows.quality],
    )
    cached_path = Path(cache_dir) / CACHE_SUBDIR / f"{key}.npy"
    cached = load_cached_array(cached_path, (None, encoder.head.in_dim))
    if cached is not None:
        return cached.astype(np.float32, copy=False)
    feats = file_features(encoder, path, batch_size, progress, windows)
    save_cached_array(cached_path, feats)
    return feats


def search_model(
    model: ClapModel,
    path: str | os.PathLike[str],
    queries: Sequence[str],
    *,
    system: int = 1,
    config: LocalizeConfig | None = None,
    batch_size: int = 8,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[SearchResult]:
    """Search one recording for each query with an already loaded model."""
    if system not in (1, 2):
        raise InputError(f"system must be 1 or 2, got {system}")
    if not queries:
        raise InputError("no query given")
    config = config or LocalizeConfig()
    info = audio_info(path)
    feats = audio_features(model, path, batch_size=batch_size, progress=progress,
                           cache_dir=cache_dir)
    if feats.shape[0] < 2:
        raise InputError(
            f"{path}: {feats.shape[0]} one-second window; searching needs at least 2 s of audio"
        )
    head = model.heads["audio"]
    step = 2048  # projected in chunks: bounded temporaries for long recordings
    audio = np.concatenate([project(feats[i : i + step], head)
                            for i in range(0, feats.shape[0], step)])
    query_emb = model.text_embeddings(list(queries))
    neutral = neutral_from_model(model, cache_dir) if system == 1 else None
    results = []
    for query, q in zip(queries, query_emb, strict=True):
        res = localize(audio, q, neutral, config, info.duration_s)
        results.append(SearchResult(
            audio=Path(path), query=query, system=system, windows=res.windows, result=res,
            duration_s=info.duration_s, n_windows=int(feats.shape[0]),
        ))
    return results


def search_audio(
    path: str | os.PathLike[str],
    query: str | Sequence[str],
    system: int = 1,
    top: int = 10,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    config: LocalizeConfig | None = None,
    batch_size: int = 8,
    precision: Precision = "float32",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    model: ClapModel | None = None,
) -> SearchResult | list[SearchResult]:
    """Find the moments of a recording that match a query (or each of several queries).

    ``path``: an audio file (WAV, FLAC, OGG, MP3...); ``system``: 1 (background contrast)
    or 2 (plain similarity); ``top``: ranked windows returned (``config.max_windows``);
    ``checkpoint`` / ``tokenizer``: as :func:`audiomoment.clap.load_clap`; ``cache_dir``:
    where window features and the neutral embedding are cached (None: no cache);
    ``model``: an already loaded :class:`ClapModel` (then checkpoint, tokenizer and
    precision are not used). Returns one :class:`SearchResult` for a single query string,
    else a list.
    """
    from audiomoment.clap.model import load_clap

    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    base = config or LocalizeConfig()
    try:
        config = base.with_(max_windows=top)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    audio_info(path)  # fail on a bad file before loading the model
    if model is None:
        model = load_clap(checkpoint, tokenizer, precision=precision)
    single = isinstance(query, str)
    queries = [query] if single else list(query)  # type: ignore[list-item]
    results = search_model(model, path, queries, system=system, config=config,
                           batch_size=batch_size, progress=progress, cache_dir=cache_dir)
    return results[0] if single else results
