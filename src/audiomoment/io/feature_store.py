"""The feature store: a dataset's trace inputs in a few contiguous files, keyed by content.

Reading ~12,000 small ``.npz`` files, projecting every query's text vector and
normalising every recording's windows costs seconds per run; the arithmetic of the
traces themselves costs a fraction of that. The store keeps, under the cache folder,
exactly the arrays the trace computation consumes:

* per audio feature file, the (T, 1024) float64 window rows as the traces multiply
  them: the joint-space embeddings L2-normalised twice (once by the dataset runner,
  once inside :func:`audiomoment.method.traces.query_trace`), computed by those same
  functions on the same per-recording arrays, so a trace made from the stored rows is
  the same bytes as one made from the file;
* per text feature file, the (1024,) float32 query vector in the joint space, as
  :func:`audiomoment.pipelines.dataset.query_embedding` returns it.

Rows are keyed by the SHA-256 of the feature file's bytes (two paths holding the same
content share rows; a changed file gets new rows). A memo maps (path, size, mtime_ns)
to that digest, so a warm run only stats the files. A memo entry is trusted only when
the file's mtime lies at least :data:`RACY_NS` before the moment it was hashed: a file
rewritten within one timestamp tick of its hashing (same size, same mtime) could
otherwise keep a stale digest; such an entry is hashed again on the next run.

Layout (the same on-disk pattern as the archive index, :mod:`audiomoment.index.store`:
immutable ``.npy`` segments and a SQLite manifest; the archive index holds one kind of
row per named recording under one model spec, this store two kinds of rows keyed by
content and a path memo, hence its own small schema)::

    STORE/manifest.sqlite        segments, rows (kind, sha256) -> (segment, offset, n),
                                 files (path, size, mtime_ns) -> sha256 (SQLite, WAL)
    STORE/segments/<name>.npy    (n, 1024) float64 (audio) or float32 (text), never modified
    STORE/writer.lock            held (flock) by the one process that writes

A commit writes its segments (temporary file, fsync, rename) and then, in one SQLite
transaction, their rows and the memo entries that point at them. A process killed at any
moment leaves either the whole commit or none of it; segment files that no committed row
names are removed by the next writer. Readers take a :class:`StoreSnapshot` (one read of
the manifest, segments memory-mapped read-only on first use).

Everything here is derived data: a store that cannot be opened or written raises
:class:`StoreUnavailable`, and the caller reads the feature files directly instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from audiomoment.io.cache import file_digest
from audiomoment.io.durable import connect_manifest, publish_file

FORMAT_VERSION = 1
MANIFEST = "manifest.sqlite"
SEGMENTS = "segments"
LOCK = "writer.lock"
#: Sub-folder of the cache folder that holds the stores (one per pair of projection heads).
CACHE_SUBDIR = "store"

AUDIO = "audio"
TEXT = "text"
#: Storage type of each kind of row.
DTYPES: dict[str, type[np.floating]] = {AUDIO: np.float64, TEXT: np.float32}
#: A memo entry is trusted when the file's mtime is at least this long before its hashing.
RACY_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, n_rows INTEGER NOT NULL, dim INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    segment TEXT NOT NULL REFERENCES segments(name),
    row_offset INTEGER NOT NULL,
    n_rows INTEGER NOT NULL,
    PRIMARY KEY (sha256, kind)
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    hashed_ns INTEGER NOT NULL
);
"""


class StoreUnavailable(Exception):
    """The store cannot be read or written (read-only folder, another writer, damage);
    the message says which, on one line."""


@dataclass(frozen=True)
class FileStat:
    """What the memo knows of a file: its absolute path, size (bytes), mtime (ns)."""

    path: str
    size: int
    mtime_ns: int


def stat_file(path: str) -> FileStat | None:
    """The file's :class:`FileStat`, or None when it cannot be stat'ed (e.g. missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileStat(path, st.st_size, st.st_mtime_ns)


def file_sha256(path: str) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return file_digest(path)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    return connect_manifest(path, readonly)


class Location(NamedTuple):
    """Where a file's rows lie: segment name, first row, number of rows."""

    segment: str
    offset: int
    n_rows: int


class StoreSnapshot:
    """One consistent read of the manifest; segments are mapped on first use.

    ``memo``: path -> (size, mtime_ns, sha256, hashed_ns); ``rows``: (kind, sha256) ->
    :class:`Location`.
    """

    def __init__(
        self,
        root: Path,
        memo: dict[str, tuple[int, int, str, int]],
        rows: dict[tuple[str, str], Location],
        segments: dict[str, tuple[str, int, int]],
    ) -> None:
        self.root = root
        self.memo = memo
        self.rows = rows
        self._segments = segments
        self._maps: dict[str, NDArray[np.floating]] = {}

    def sha256(self, stat: FileStat | None) -> str | None:
        """The content digest remembered for a file in this state, or None when the file
        is unknown, changed (size or mtime) or too recently modified to be trusted."""
        if stat is None:
            return None
        entry = self.memo.get(stat.path)
        if entry is None:
            return None
        size, mtime_ns, sha, hashed_ns = entry
        if size != stat.size or mtime_ns != stat.mtime_ns or mtime_ns + RACY_NS > hashed_ns:
            return None
        return sha

    def has(self, kind: str, sha: str) -> bool:
        return (kind, sha) in self.rows

    def array(self, kind: str, sha: str) -> NDArray[np.floating]:
        """The stored rows of one file's content: (T, 1024) float64 for audio, (1024,)
        float32 for text (views of the read-only mapped segment)."""
        loc = self.rows[(kind, sha)]
        seg = self._maps.get(loc.segment)
        if seg is None:
            seg = self._map(loc.segment)
        rows = seg[loc.offset : loc.offset + loc.n_rows]
        return rows[0] if kind == TEXT else rows

    def release(self, segment: str) -> None:
        """Drop this snapshot's map of a segment (views already taken keep it alive)."""
        self._maps.pop(segment, None)

    def _map(self, name: str) -> NDArray[np.floating]:
        kind, n_rows, dim = self._segments[name]
        path = self.root / SEGMENTS / f"{name}.npy"
        try:
            seg = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(
                f"{path}: unreadable feature-store segment ({type(exc).__name__}); "
                f"remove {self.root} to rebuild it"
            ) from None
        if seg.shape != (n_rows, dim) or seg.dtype != np.dtype(DTYPES[kind]):
            raise StoreUnavailable(
                f"{path}: feature-store segment of shape {seg.shape} {seg.dtype}, the manifest "
                f"says ({n_rows}, {dim}) {np.dtype(DTYPES[kind])}; remove {self.root} to "
                "rebuild it"
            )
        arr = seg.view(np.ndarray)  # plain views: products come back as plain arrays
        self._maps[name] = arr
        return arr


class FeatureStore:
    """A store folder: read (:meth:`snapshot`) or written (:meth:`writer`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def snapshot(self, folder: str | None = None) -> StoreSnapshot:
        """The committed state (empty when the store does not exist yet).

        ``folder``: an absolute folder; only the memo entries of the files under it, and
        the rows they name, are read (None: everything).
        """
        if not self.manifest.is_file():
            return StoreSnapshot(self.root, {}, {}, {})
        try:
            con = _connect(self.manifest, readonly=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.manifest}: cannot open the feature store ({exc})") \
                from None
        try:
            con.execute("BEGIN")
            version = con.execute(
                "SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            if version is not None and version[0] != str(FORMAT_VERSION):
                raise StoreUnavailable(
                    f"{self.manifest}: feature store of format {version[0]}, this version "
                    f"reads format {FORMAT_VERSION}; remove {self.root} to rebuild it")
            segments = {name: (kind, n, dim) for name, kind, n, dim in
                        con.execute("SELECT name, kind, n_rows, dim FROM segments")}
            where, args = "", ()
            if folder is not None:  # the paths that start with folder + "/"
                head = folder.rstrip(os.sep) + os.sep
                where, args = "WHERE path >= ? AND path < ?", (head, head[:-1] + chr(
                    ord(os.sep) + 1))
            memo = {path: (size, mtime, sha, hashed) for path, size, mtime, sha, hashed in
                    con.execute("SELECT path, size, mtime_ns, sha256, hashed_ns FROM files "
                                + where, args)}
            select = "SELECT kind, sha256, segment, row_offset, n_rows FROM rows"
            if folder is not None:
                select += f" WHERE sha256 IN (SELECT sha256 FROM files {where})"
            rows = {(kind, sha): Location(seg, off, n)
                    for kind, sha, seg, off, n in con.execute(select, args)}
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.manifest}: unreadable feature store ({exc})") \
                from None
        finally:
            con.close()
        return StoreSnapshot(self.root, memo, rows, segments)

    @contextlib.contextmanager
    def writer(self) -> Iterator[StoreWriter]:
        """The one writer of the store (an exclusive lock held while it lives); raises
        :class:`StoreUnavailable` when the folder cannot be written or another process
        holds the lock."""
        try:
            _make_dirs(self.root / SEGMENTS)
            lock = open(self.root / LOCK, "a+")  # noqa: SIM115 - held for the writer's life
        except OSError as exc:
            raise StoreUnavailable(
                f"{self.root}: cannot write the feature store ({exc.strerror or exc})") from None
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreUnavailable(
                    f"{self.root}: another process is writing the feature store") from None
            try:
                con = _connect(self.manifest, readonly=False)
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)",
                            (str(FORMAT_VERSION),))
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"{self.manifest}: cannot write the feature store ({exc})") from None
            try:
                writer = StoreWriter(self, con)
                writer.remove_orphan_segments()
                yield writer
            finally:
                con.close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def _make_dirs(path: Path) -> None:
    """Create a folder and its parents (one place, so tests can refuse it)."""
    path.mkdir(parents=True, exist_ok=True)


class StoreWriter:
    """Adds rows and memo entries; every :meth:`commit` is atomic."""

    def __init__(self, store: FeatureStore, con: sqlite3.Connection) -> None:
        self.store = store
        self.con = con

    def commit(
        self,
        audio: Sequence[tuple[str, NDArray[np.floating]]],
        text: Sequence[tuple[str, NDArray[np.floating]]],
        memo: Iterable[tuple[FileStat, str, int]],
    ) -> None:
        """Add rows and memo entries in one commit.

        ``audio``: (sha256, (T, 1024) rows) per new audio content; ``text``: (sha256,
        (1024,) vector) per new text content; ``memo``: (file stat, sha256, hashed_ns) per
        file whose content is now known (its rows committed here or earlier).
        """
        written: list[tuple[str, str, list[tuple[str, int, int]], int, int]] = []
        try:
            for kind, items in ((AUDIO, audio), (TEXT, text)):
                if not items:
                    continue
                arrays = [np.atleast_2d(a) for _, a in items]
                if any(a.dtype != DTYPES[kind] or a.ndim != 2 for a in arrays):
                    raise TypeError(f"{kind} rows must be 2-D {np.dtype(DTYPES[kind])}")
                name = f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
                self._write_segment(name, kind, arrays)
                offsets = np.concatenate(([0], np.cumsum([len(a) for a in arrays]))).tolist()
                placed = [(sha, offsets[i], len(arrays[i])) for i, (sha, _) in enumerate(items)]
                written.append((name, kind, placed, int(offsets[-1]), arrays[0].shape[1]))
            memo_rows = [(s.path, s.size, s.mtime_ns, sha, hashed) for s, sha, hashed in memo]
            self.con.execute("BEGIN IMMEDIATE")
            try:
                for name, kind, placed, n_rows, dim in written:
                    self.con.execute("INSERT INTO segments VALUES (?, ?, ?, ?)",
                                     (name, kind, n_rows, dim))
                    self.con.executemany(
                        "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                        [(kind, sha, name, off, n) for sha, off, n in placed],
                    )
                self.con.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                                     memo_rows)
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"{self.store.root}: cannot write the feature store ({exc})") from None

    def remove_orphan_segments(self) -> None:
        """Delete segment files that no committed row names (a killed commit's leftovers)."""
        known = {r[0] for r in self.con.execute("SELECT name FROM segments")}
        for path in (self.store.root / SEGMENTS).iterdir():
            if path.name.startswith(".") or path.name.removesuffix(".npy") not in known:
                path.unlink(missing_ok=True)

    def _write_segment(self, name: str, kind: str, arrays: Sequence[NDArray]) -> None:
        final = self.store.root / SEGMENTS / f"{name}.npy"
        tmp = final.with_name(f".{final.name}.tmp")
        n_rows = sum(len(a) for a in arrays)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[kind],
                                        shape=(n_rows, arrays[0].shape[1]))
        start = 0
        for a in arrays:
            out[start : start + len(a)] = a
            start += len(a)
        out.flush()
        del out
        publish_file(tmp, final)
