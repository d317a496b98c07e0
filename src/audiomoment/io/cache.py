"""The on-disk cache: where it lives, content keys, and arrays read and written safely.

Everything cached is derived data (projected features, window features, the neutral
embedding, file digests): a missing, damaged or unwritable entry only costs time, so reads
return None instead of failing and writes that cannot be made are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.io.atomic import save_npy, write_text


def default_cache_dir() -> Path:
    """$AUDIOMOMENT_CACHE_DIR, else $XDG_CACHE_HOME/audiomoment, else ~/.cache/audiomoment."""
    if env := os.environ.get("AUDIOMOMENT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audiomoment"


def usable_cache_dir(
    cache_dir: str | os.PathLike[str] | None, note: Callable[[str], None] | None = None
) -> Path | None:
    """``cache_dir`` when a file can be created in it (the folder is made when missing),
    else None after telling ``note`` why: a cache folder that cannot be written (read-only,
    full, a file in its place) means running without a cache, never an error."""
    if cache_dir is None:
        return None
    folder = Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if note is not None:
            reason = exc.strerror or type(exc).__name__
            note(f"cache folder {folder} cannot be written ({reason}); running without a "
                 "cache")
        return None
    return folder


def content_key(*parts: Any, length: int = 24) -> str:
    """A short hex key for JSON-serialisable ``parts`` (SHA-256 of their JSON)."""
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def load_cached_array(
    path: str | os.PathLike[str], shape: tuple[int | None, ...] | None = None
) -> NDArray[Any] | None:
    """The array cached at ``path``, or None when it is missing, unreadable or of another
    shape (``shape``: expected dimensions, None for any size along an axis)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if shape is not None and (
        arr.ndim != len(shape)
        or any(want is not None and got != want for got, want in zip(arr.shape, shape, strict=True))
    ):
        return None
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        return None
    return arr


def save_cached_array(path: str | os.PathLike[str], array: NDArray[Any]) -> bool:
    """Cache ``array`` at ``path`` atomically; False (no error) when it cannot be written."""
    try:
        save_npy(path, array)
    except OSError:
        return False
    return True


def cached_file_digest(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """SHA-256 of a file, remembered in ``cache_dir/digests.json`` by (path, size, mtime)."""
    p = Path(path).resolve()
    stat = p.stat()
    ident = f"{p}|{stat.st_size}|{stat.st_mtime_ns}"
    table: dict[str, str] = {}
    store = Path(cache_dir) / "digests.json" if cache_dir is not None else None
    if store is not None and store.is_file():
        try:
            loaded = json.loads(store.read_text(encoding="utf-8"))
            table = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError, RecursionError):
            table = {}
        if isinstance(table.get(ident), str):
            return table[ident]
    digest = file_digest(p)
    if store is not None:
        table[ident] = digest
        with contextlib.suppress(OSError):  # a read-only cache only costs time
            write_text(store, json.dumps(table, indent=1))
    return digest
