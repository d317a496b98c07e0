"""Where System 1's neutral embedding comes from in a run.

System 1 subtracts, from the similarity of each window to the query, its similarity to a
neutral "background" direction n (1024-d, joint space). A run takes n from

* a file (``.npy``, 1024 values; :func:`audiomoment.io.features.load_neutral_embedding`),
  when one is given; else
* the checkpoint's text encoder: the L2-normalised mean of the L2-normalised embeddings of
  :data:`audiomoment.config.NEUTRAL_PHRASES` (:func:`neutral_from_model`), cached on disk
  under ``<cache>/neutral/<key>.npy``, the key made of the checkpoint's and the tokenizer's
  content and the phrases.

Systems 2 and ``window`` use none. The description returned with the vector says which
source was used, on one line, for the run's settings file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import NEUTRAL_PHRASES
from audiomoment.errors import InputError

if TYPE_CHECKING:
    from audiomoment.clap.model import ClapModel

#: Sub-folder of the cache that holds computed neutral embeddings.
CACHE_SUBDIR = "neutral"


def checkpoint_source() -> str:
    """The description of a neutral embedding computed with the checkpoint's text encoder."""
    return "checkpoint text encoder, phrases: " + " | ".join(NEUTRAL_PHRASES)


def file_source(path: str | os.PathLike[str]) -> str:
    """The description of a neutral embedding read from ``path``: its name and SHA-256."""
    from audiomoment.io.cache import file_digest

    return f"file {Path(path).name} (sha256 {file_digest(path)})"


def neutral_from_model(
    model: ClapModel, cache_dir: str | os.PathLike[str] | None = None
) -> NDArray[np.float64]:
    """System 1's neutral direction (1024,) from a model loaded with its text encoder.

    The normalised mean of the normalised embeddings of :data:`NEUTRAL_PHRASES`; cached in
    ``cache_dir`` (None: no cache), keyed by the checkpoint's and the tokenizer's content and
    the phrases, so a changed file or phrase list never reads a stale vector.
    """
    from audiomoment.method.traces import neutral_embedding

    if cache_dir is None:
        return neutral_embedding(model.text_embeddings(NEUTRAL_PHRASES))
    from audiomoment.clap.text import tokenizer_digest
    from audiomoment.io.cache import content_key, load_cached_array, save_cached_array

    key = content_key(
        model.checkpoint_digest(cache_dir),
        tokenizer_digest(model.tokenizer_dir) if model.tokenizer_dir else "",
        list(NEUTRAL_PHRASES),
    )
    path = Path(cache_dir) / CACHE_SUBDIR / f"{key}.npy"
    cached = load_cached_array(path, (model.heads["text"].out_dim,))
    if cached is not None:
        return cached.astype(np.float64)
    vec = neutral_embedding(model.text_embeddings(NEUTRAL_PHRASES))
    save_cached_array(path, vec)
    return vec


def neutral_for_run(
    system: int | str,
    *,
    neutral_file: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[NDArray[np.float64] | None, str | None]:
    """The neutral embedding of a run and a one-line description of its source.

    System 1: from ``neutral_file`` when given, else computed with the text encoder of
    ``checkpoint`` (GPT-2's tokenizer from ``tokenizer``, None: the Hugging Face cache, else a
    download; see :func:`audiomoment.clap.load_clap`), cached in ``cache_dir``. Returns
    ((1024,) float64 vector, description); (None, None) for System 2 and ``window``.

    Raises :class:`InputError` (one line) when System 1 has neither source, or the file or
    the checkpoint's text encoder cannot be read.
    """
    if system != 1:
        return None, None
    if neutral_file is not None:
        from audiomoment.io.features import load_neutral_embedding

        return load_neutral_embedding(neutral_file), file_source(neutral_file)
    if checkpoint is None:
        raise InputError(
            "System 1 needs a neutral embedding: give a 1024-d neutral embedding file, or the "
            "checkpoint whose text encoder computes it"
        )
    from audiomoment.clap.model import load_clap

    try:
        model = load_clap(checkpoint, tokenizer, audio=False, text=True)
    except InputError as exc:
        raise InputError(
            f"{exc}; System 1 needs the text encoder for its neutral embedding, "
            "or a neutral embedding file"
        ) from None
    return neutral_from_model(model, cache_dir), checkpoint_source()
