"""The durable-write primitives shared by the archive index and predict's feature store:
a SQLite manifest connection (WAL, full sync) and a segment file made visible only once it
is on disk (fsync, rename, fsync of the folder)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def connect_manifest(path: Path, readonly: bool) -> sqlite3.Connection:
    """A connection to a manifest in autocommit mode (transactions are explicit).

    Read-only: opened with ``mode=ro``. For writing: WAL journal, ``synchronous=FULL``.
    """
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0,
                               isolation_level=None)
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def publish_file(tmp: Path, final: Path) -> None:
    """Make a fully written temporary file ``final``: fsync it, rename it, fsync the folder,
    so that a crash leaves either no ``final`` or all of it."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
