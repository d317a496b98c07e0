"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Renames held back by :func:`together` (temporary file, target), or None outside it.
_held: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("_held", default=None)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` that names no file (a full disk: ENOSPC) is raised again naming ``path``.
    Inside :func:`together` the rename waits for the end of that block.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 -> the usual file mode
        held = _held.get()
        if held is None:
            os.replace(tmp_path, target)
        else:
            held.append((tmp_path, target))
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def together() -> Iterator[None]:
    """Files written atomically inside the block replace their targets only when every one
    of them has been written: a failure (a full disk, an error) leaves all the targets as
    they were, so files that belong together (predictions and their run settings) never
    mix two runs."""
    held: list[tuple[Path, Path]] = []
    token = _held.set(held)
    try:
        yield
    except BaseException:
        for tmp, _ in held:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _held.reset(token)
    for k, (tmp, target) in enumerate(held):
        try:
            os.replace(tmp, target)
        except BaseException:
            for rest, _ in held[k:]:
                rest.unlink(missing_ok=True)
            raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[str]], None]) -> None:
    """Open a temporary text file, let ``writer`` fill it, then rename it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        writer(handle)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (the name is kept exactly, ``.npz`` included)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)
