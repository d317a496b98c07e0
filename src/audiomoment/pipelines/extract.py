"""Extracting MS-CLAP 2023 features in the lighthouse / DCASE 2026 Task 6 layout.

* ``OUT/clap/<vid>.npz``, key ``features``: (T, 768) float32 audio-encoder outputs before
  the projection head, one row per 1-s window (hop 1 s); ``vid`` is the audio file's stem.
* ``OUT/clap_text/<qid>.npz``, key ``last_hidden_state``: (L, 768) float32 GPT-2 hidden
  states of positions 0..p, p being MS-CLAP's query position (see
  :mod:`audiomoment.clap.text`), so the last row is the query vector.
* ``OUT/neutral_embedding.npy``: (1024,) System 1's neutral direction in the joint space,
  written with the text features (see :mod:`audiomoment.pipelines.neutral`).

The folder and key names are those of :mod:`audiomoment.io.features`, which reads them.

``audiomoment predict --features OUT --checkpoint CKPT --neutral-embedding
OUT/neutral_embedding.npy`` reads exactly this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from audiomoment.clap.model import ClapModel, Precision, file_features
from audiomoment.errors import InputError
from audiomoment.io.atomic import save_npy
from audiomoment.io.audio import audio_info
from audiomoment.io.features import write_audio_features, write_text_features
from audiomoment.pipelines.neutral import neutral_from_model

#: The neutral embedding's file in the features folder.
NEUTRAL_FILE = "neutral_embedding.npy"


def video_ids(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The ``vid`` of each audio file (its stem); :class:`InputError` on a repeated stem."""
    seen: dict[str, Path] = {}
    vids = []
    for p in map(Path, paths):
        vid = p.stem
        if vid in seen:
            raise InputError(f"{p}: same name (vid {vid!r}) as {seen[vid]}")
        seen[vid] = p
        vids.append(vid)
    return vids


def extract_audio_features(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: ClapModel | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    precision: Precision = "float32",
    progress: bool | None = None,
) -> list[Path]:
    """Write ``out_dir/clap/<vid>.npz`` for each audio file; returns the written paths.

    Every file is checked (decodable, at least one window) before the first is embedded.
    """
    from tqdm import tqdm

    from audiomoment.clap.model import load_clap

    if not paths:
        raise InputError("no audio file given")
    vids = video_ids(paths)
    for p in paths:
        audio_info(p)
    if model is None:
        model = load_clap(checkpoint, audio=True, text=False, precision=precision)
    encoder = model.require_audio()
    written = []
    disable = None if progress is None else not progress
    for path, vid in tqdm(list(zip(paths, vids, strict=True)), desc="recordings", unit="file",
                          disable=True if len(paths) == 1 else disable):
        feats = file_features(encoder, path, batch_size, progress)
        written.append(write_audio_features(out_dir, vid, feats))
    return written


def extract_text_features(
    annotations_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: ClapModel | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    neutral: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write ``out_dir/clap_text/<qid>.npz`` for each annotated query (and, with
    ``neutral``, ``out_dir/neutral_embedding.npy``); returns the written paths."""
    from tqdm import tqdm

    from audiomoment.clap.model import load_clap
    from audiomoment.io.annotations import qid_key, read_annotations

    rows = read_annotations(annotations_path)
    if model is None:
        model = load_clap(checkpoint, tokenizer, audio=False, text=True)
    encoder = model.require_text()
    by_caption: dict[str, list[str]] = {}
    for row in rows:
        by_caption.setdefault(str(row["query"]), []).append(qid_key(row["qid"]))
    captions = sorted(by_caption)
    written = []
    disable = None if progress is None else not progress
    step = max(1, batch_size) * 8
    with tqdm(total=len(captions), desc="queries", unit="query", disable=disable) as bar:
        for start in range(0, len(captions), step):
            chunk = captions[start : start + step]
            for caption, hidden in zip(chunk, encoder.hidden_states(chunk, batch_size),
                                       strict=True):
                for qid in by_caption[caption]:
                    written.append(write_text_features(out_dir, qid, hidden))
            bar.update(len(chunk))
    if neutral:
        target = Path(out_dir) / NEUTRAL_FILE
        save_npy(target, neutral_from_model(model, cache_dir))
        written.append(target)
    return written
