"""Reading pre-extracted features in the lighthouse / DCASE 2026 Task 6 layout.

``FEATURES/clap/<vid>.npz``, key ``features``: (T, 768) MS-CLAP 2023 audio-encoder outputs
before the projection head, one row per 1-s window (or (T, 1024) already in the joint space).
``FEATURES/clap_text/<qid>.npz``, key ``last_hidden_state``: (L, 768) text-encoder hidden
states; the query vector is the last row (or a 1024-d joint-space vector).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM
from audiomoment.errors import InputError

AUDIO_DIR = "clap"
TEXT_DIR = "clap_text"
AUDIO_KEY = "features"
TEXT_KEY = "last_hidden_state"


def audio_features_path(features_dir: str | os.PathLike[str], vid: str) -> Path:
    return Path(features_dir) / AUDIO_DIR / f"{vid}.npz"


def text_features_path(features_dir: str | os.PathLike[str], qid: str) -> Path:
    return Path(features_dir) / TEXT_DIR / f"{qid}.npz"


def read_npz_array(path: Path, key: str) -> tuple[NDArray[np.float32], bytes]:
    """The array stored under ``key`` in an .npz file, and the file's raw bytes."""
    if not path.is_file():
        raise InputError(f"{path}: feature file not found")
    raw = path.read_bytes()
    if not raw:
        raise InputError(f"{path}: file is empty")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if key not in npz.files:
                found = ", ".join(npz.files) or "none"
                raise InputError(f"{path}: no array '{key}' (found {found})")
            arr = np.asarray(npz[key])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{path}: '{key}' must hold floats, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: '{key}' contains NaN or infinite values")
    return arr.astype(np.float32, copy=False), raw


def _check_dim(path: Path, dim: int) -> None:
    if dim not in (ENCODER_DIM, JOINT_DIM):
        raise InputError(
            f"{path}: feature dimension {dim} is neither {ENCODER_DIM} (encoder output) "
            f"nor {JOINT_DIM} (joint space)"
        )


def load_audio_features(
    features_dir: str | os.PathLike[str], vid: str
) -> tuple[NDArray[np.float32], bytes]:
    """(T, D) window features of one recording (D = 768 or 1024) and the file's bytes."""
    path = audio_features_path(features_dir, vid)
    arr, raw = read_npz_array(path, AUDIO_KEY)
    if arr.ndim != 2:
        raise InputError(f"{path}: '{AUDIO_KEY}' must be 2-D (T, D), got shape {arr.shape}")
    _check_dim(path, arr.shape[1])
    if arr.shape[0] < 2:
        raise InputError(f"{path}: needs at least 2 windows (1-s frames), got {arr.shape[0]}")
    if np.any(np.linalg.norm(arr, axis=1) == 0):
        raise InputError(f"{path}: contains an all-zero window")
    return arr, raw


def load_query_features(features_dir: str | os.PathLike[str], qid: str) -> NDArray[np.float32]:
    """(D,) query vector: the last row of ``last_hidden_state`` (D = 768 or 1024)."""
    path = text_features_path(features_dir, qid)
    arr, _ = read_npz_array(path, TEXT_KEY)
    if arr.ndim == 3 and arr.shape[0] == 1:  # a saved batch of one
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"{path}: '{TEXT_KEY}' must be (L, D), got shape {arr.shape}")
    _check_dim(path, arr.shape[1])
    vec = arr[-1]
    if not np.any(vec):
        raise InputError(f"{path}: the query vector (last row) is all zeros")
    return vec


def load_vector(
    path: str | os.PathLike[str], dim: int, what: str, expected: str
) -> NDArray[np.float64]:
    """A (dim,) vector from an .npy file (any shape with ``dim`` values), finite and
    non-zero. ``what`` names it in errors ("neutral embedding"); ``expected`` says what
    ``dim`` values means ("a 1024-d vector in the joint space")."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} file not found")
    try:
        loaded = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{p}: not a readable .npy file ({type(exc).__name__})") from None
    if not isinstance(loaded, np.ndarray):  # an .npz archive
        loaded.close()
        raise InputError(f"{p}: not an .npy file (an .npz archive of several arrays)")
    kind = loaded.dtype
    if not np.issubdtype(kind, np.number) or np.issubdtype(kind, np.complexfloating):
        raise InputError(f"{p}: the {what} must hold real numbers, got dtype {loaded.dtype}")
    arr = np.asarray(loaded, dtype=np.float64).reshape(-1)
    if arr.shape[0] != dim:
        raise InputError(f"{p}: expected {expected}, got {arr.size} values")
    if not np.all(np.isfinite(arr)) or not np.any(arr):
        raise InputError(f"{p}: the {what} must be finite and non-zero")
    return arr


def load_neutral_embedding(path: str | os.PathLike[str]) -> NDArray[np.float64]:
    """A 1024-d neutral embedding from an .npy file (any shape with 1024 values)."""
    return load_vector(path, JOINT_DIM, "neutral embedding",
                       f"a {JOINT_DIM}-d vector in the joint space")


def write_audio_features(
    features_dir: str | os.PathLike[str], vid: str, array: NDArray[np.floating]
) -> Path:
    """Write ``FEATURES/clap/<vid>.npz`` (key ``features``: (T, D) float32), atomically."""
    from audiomoment.io.atomic import save_npz

    path = audio_features_path(features_dir, vid)
    save_npz(path, **{AUDIO_KEY: np.asarray(array, dtype=np.float32)})
    return path


def write_text_features(
    features_dir: str | os.PathLike[str], qid: str, hidden: NDArray[np.floating]
) -> Path:
    """Write ``FEATURES/clap_text/<qid>.npz`` (key ``last_hidden_state``: (L, D) float32,
    the last row being the query vector), atomically."""
    from audiomoment.io.atomic import save_npz

    path = text_features_path(features_dir, qid)
    save_npz(path, **{TEXT_KEY: np.asarray(hidden, dtype=np.float32)})
    return path
