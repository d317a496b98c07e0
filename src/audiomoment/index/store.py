"""The archive index on disk: window embeddings in immutable segment files, a SQLite manifest.

Layout of an index folder::

    INDEX/manifest.sqlite        recordings, segments, the model spec (SQLite, WAL journal)
    INDEX/segments/<name>.npy    (rows, dim) embeddings, float16 or float32, never modified
    INDEX/writer.lock            held (flock) by the one process that writes

A commit writes one new segment (temporary file, fsync, rename) and then, in one SQLite
transaction, the segment's row and its recordings' rows. A process killed at any moment
leaves either the whole commit or none of it; a segment file that no committed row names
(a commit killed between the two steps) is removed by the next writer. Readers take a
:class:`Snapshot`: one query of the manifest and read-only memory maps of the segments it
names, so a search sees one consistent state however the index changes meanwhile (a
segment that is dropped after the snapshot stays readable through its open map).

One index holds one model and one windowing (:class:`ModelSpec`); adding embeddings made
otherwise is refused with a message that says what differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.io.durable import connect_manifest, publish_file

FORMAT_VERSION = 1
MANIFEST = "manifest.sqlite"
SEGMENTS = "segments"
LOCK = "writer.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    name TEXT PRIMARY KEY, n_rows INTEGER NOT NULL, dtype TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    source TEXT,
    content_sha256 TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    duration_s REAL NOT NULL,
    n_windows INTEGER NOT NULL,
    segment TEXT NOT NULL REFERENCES segments(name),
    row_offset INTEGER NOT NULL,
    has_audio INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_source ON recordings(source);
CREATE TABLE IF NOT EXISTS failures (
    source TEXT PRIMARY KEY, reason TEXT NOT NULL, size INTEGER, mtime_ns INTEGER
);
CREATE TABLE IF NOT EXISTS vectors (name TEXT PRIMARY KEY, data BLOB NOT NULL);
"""


@dataclass(frozen=True)
class ModelSpec:
    """What made an index's embeddings; every recording of one index shares it.

    model : the embedding model's name. checkpoint_sha256 : its weights' digest (None when
    unknown, e.g. features already in the joint space). dim : embedding size. hop_s,
    window_s : the windowing. dtype : storage type ("float16" for archives, "float32"
    where exactness matters). normalized : rows are L2-normalised.
    """

    model: str = "MS-CLAP 2023"
    checkpoint_sha256: str | None = None
    dim: int = 1024
    hop_s: float = 1.0
    window_s: float = 1.0
    dtype: str = "float16"
    normalized: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, got {self.dtype!r}")

    def differences(self, other: ModelSpec) -> list[str]:
        """Fields that differ, as 'name: ours vs theirs'."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


@dataclass(frozen=True)
class Recording:
    """One recording of a snapshot.

    id : stable integer id (requests carry it). name : the recording's id in its collection
    (a relative path for audio files, the vid for features). source : the audio file or
    features file it came from (None when unknown). duration_s : length in seconds.
    n_windows : embedded windows (rows). segment, row_offset : where its rows lie.
    has_audio : whether ``source`` is an audio file that can be played.
    """

    id: int
    name: str
    source: str | None
    content_sha256: str
    duration_s: float
    n_windows: int
    segment: str
    row_offset: int
    has_audio: bool


@dataclass(frozen=True)
class NewRecording:
    """A recording to add: its rows and what identifies its source."""

    name: str
    embeddings: NDArray[np.floating]
    duration_s: float
    content_sha256: str
    source: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    has_audio: bool = False


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    con = connect_manifest(path, readonly)
    con.row_factory = sqlite3.Row
    return con


def _create_manifest(path: Path) -> None:
    """Create an empty manifest whole: its tables are made in a temporary file that is then
    renamed, so a process killed while it creates an index leaves no manifest (the folder is
    not an index yet) rather than one without tables. Called under the writer's lock."""
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm"),
                     tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)
    con = _connect(tmp, readonly=False)
    try:
        con.executescript(_SCHEMA)
    finally:
        con.close()
    publish_file(tmp, path)


def is_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an index folder."""
    return (Path(path) / MANIFEST).is_file()


class Snapshot:
    """A consistent read-only view of an index: recordings and their mapped embeddings."""

    def __init__(
        self,
        root: Path,
        spec: ModelSpec,
        recordings: list[Recording],
        segments: dict[str, NDArray[np.floating]],
        vectors: dict[str, NDArray[np.float32]],
        generation: str,
    ) -> None:
        self.root = root
        self.spec = spec
        self.recordings = recordings
        self.segments = segments
        self.vectors = vectors
        #: Changes whenever a commit changes the index (for caches keyed by state).
        self.generation = generation
        #: Scans made of this snapshot (:func:`audiomoment.index.scan.window_scores`): the
        #: first reads the segment files, later ones the maps, then kept warm.
        self.scans = 0
        self._by_id = {r.id: r for r in recordings}
        self._by_name = {r.name: r for r in recordings}

    def __len__(self) -> int:
        return len(self.recordings)

    @property
    def n_windows(self) -> int:
        """Total windows of all recordings."""
        return sum(r.n_windows for r in self.recordings)

    @property
    def hours(self) -> float:
        return sum(r.duration_s for r in self.recordings) / 3600.0

    def recording(self, key: int | str) -> Recording:
        """A recording by id or name; KeyError when the snapshot has none."""
        rec = self._by_id.get(key) if isinstance(key, int) else self._by_name.get(key)
        if rec is None:
            raise KeyError(key)
        return rec

    def embeddings(self, rec: Recording) -> NDArray[np.floating]:
        """(n_windows, dim) rows of one recording (a view of the mapped segment)."""
        seg = self.segments[rec.segment]
        return seg[rec.row_offset : rec.row_offset + rec.n_windows]

    def vector(self, name: str) -> NDArray[np.float32] | None:
        """A stored vector (e.g. "neutral"), or None."""
        return self.vectors.get(name)


class ArchiveIndex:
    """An index folder: open for reading (:meth:`snapshot`) or writing (:meth:`writer`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    # ------------------------------------------------------------------ reading

    def spec(self) -> ModelSpec | None:
        """The model spec, or None for an index with no embeddings yet."""
        con = self._read()
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        finally:
            con.close()
        return None if row is None else ModelSpec(**json.loads(row["value"]))

    def generation(self) -> str:
        """The committed state's generation (one small read of the manifest): equal to
        ``snapshot().generation`` until the next commit changes the index."""
        con = self._read()
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.manifest}: unreadable index manifest ({exc})") from None
        finally:
            con.close()
        return "0" if row is None else str(row["value"])

    def _read(self) -> sqlite3.Connection:
        if not self.manifest.is_file():
            raise InputError(f"{self.root}: not an audiomoment index (no {MANIFEST})")
        try:
            return _connect(self.manifest, readonly=True)
        except sqlite3.Error as exc:
            raise InputError(f"{self.manifest}: cannot open the index ({exc})") from None

    def snapshot(self, retries: int = 5) -> Snapshot:
        """A consistent view of the committed state (see the module docstring)."""
        for attempt in range(retries):
            try:
                return self._snapshot()
            except FileNotFoundError:  # a segment dropped between the query and the map
                if attempt == retries - 1:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def _snapshot(self) -> Snapshot:
        con = self._read()
        try:
            con.execute("BEGIN")
            meta = {r["key"]: r["value"] for r in con.execute("SELECT key, value FROM meta")}
            spec = ModelSpec() if "model" not in meta else ModelSpec(**json.loads(meta["model"]))
            rows = con.execute(
                "SELECT id, name, source, content_sha256, duration_s, n_windows, segment, "
                "row_offset, has_audio FROM recordings ORDER BY id"
            ).fetchall()
            vectors = {
                r["name"]: np.frombuffer(r["data"], dtype=np.float32).copy()
                for r in con.execute("SELECT name, data FROM vectors")
            }
            generation = meta.get("generation", "0")
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.manifest}: unreadable index manifest ({exc})") from None
        finally:
            con.close()
        recordings = [
            Recording(
                id=r["id"], name=r["name"], source=r["source"],
                content_sha256=r["content_sha256"], duration_s=r["duration_s"],
                n_windows=r["n_windows"], segment=r["segment"], row_offset=r["row_offset"],
                has_audio=bool(r["has_audio"]),
            )
            for r in rows
        ]
        segments = {}
        for name in sorted({r.segment for r in recordings}):
            segments[name] = np.load(self.segment_path(name), mmap_mode="r")
        return Snapshot(self.root, spec, recordings, segments, vectors, generation)

    def segment_path(self, name: str) -> Path:
        return self.root / SEGMENTS / f"{name}.npy"

    def failures(self) -> list[tuple[str, str]]:
        """(source, reason) of the files that could not be indexed."""
        con = self._read()
        try:
            return [(r["source"], r["reason"])
                    for r in con.execute("SELECT source, reason FROM failures ORDER BY source")]
        finally:
            con.close()

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writer(self, spec: ModelSpec | None = None) -> Iterator[IndexWriter]:
        """The one writer of the index (an exclusive lock held while it lives).

        Creates the folder when needed. ``spec``: the model spec of what will be added;
        refused when the index holds another.
        """
        (self.root / SEGMENTS).mkdir(parents=True, exist_ok=True)
        lock = open(self.root / LOCK, "a+")  # noqa: SIM115 - held for the writer's life
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    f"{self.root}: another process is writing this index; try again later"
                ) from None
            if not self.manifest.exists():
                _create_manifest(self.manifest)
            con = _connect(self.manifest, readonly=False)
            try:
                con.executescript(_SCHEMA)
                writer = IndexWriter(self, con)
                if spec is not None:
                    writer.claim_spec(spec)
                writer.remove_orphan_segments()
                yield writer
            finally:
                con.close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


class IndexWriter:
    """Adds and removes recordings; every call commits atomically."""

    def __init__(self, index: ArchiveIndex, con: sqlite3.Connection) -> None:
        self.index = index
        self.con = con

    # -- the spec

    def spec(self) -> ModelSpec | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        return None if row is None else ModelSpec(**json.loads(row["value"]))

    def claim_spec(self, spec: ModelSpec) -> None:
        """Record ``spec`` for an empty index, or check that it matches the index's."""
        current = self.spec()
        if current is None:
            with self._transaction():
                self.con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('model', ?)", (json.dumps(asdict(spec)),)
                )
                self.con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('format_version', ?)",
                    (str(FORMAT_VERSION),),
                )
            return
        diff = current.differences(spec)
        if diff:
            raise InputError(
                f"{self.index.root}: this index holds embeddings made otherwise "
                f"({'; '.join(diff)}); one index holds one model and windowing — "
                "use another --db"
            )

    def set_vector(self, name: str, vector: NDArray[np.floating]) -> None:
        """Store a small float32 vector (e.g. the neutral embedding) with the index."""
        data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        with self._transaction():
            self.con.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?)", (name, data))
            self._bump()

    # -- reading what is there

    def known_sources(self) -> dict[str, tuple[str, int | None, int | None, str]]:
        """source -> (name, size, mtime_ns, content_sha256) of the indexed recordings."""
        rows = self.con.execute(
            "SELECT name, source, size, mtime_ns, content_sha256 FROM recordings "
            "WHERE source IS NOT NULL"
        )
        return {r["source"]: (r["name"], r["size"], r["mtime_ns"], r["content_sha256"])
                for r in rows}

    def known_failures(self) -> dict[str, tuple[int | None, int | None]]:
        rows = self.con.execute("SELECT source, size, mtime_ns FROM failures")
        return {r["source"]: (r["size"], r["mtime_ns"]) for r in rows}

    def names(self) -> set[str]:
        return {r["name"] for r in self.con.execute("SELECT name FROM recordings")}

    # -- changes

    def add(self, recordings: Sequence[NewRecording], replace: bool = True) -> None:
        """Commit recordings: one new segment with all their rows, then their manifest rows.

        ``replace``: a recording whose name is already indexed replaces it (else an error).
        """
        if not recordings:
            return
        spec = self.spec()
        if spec is None:
            raise RuntimeError("claim_spec() before add()")
        dtype = np.dtype(spec.dtype)
        for r in recordings:
            if r.embeddings.ndim != 2 or r.embeddings.shape[1] != spec.dim:
                raise InputError(
                    f"{r.source or r.name}: embeddings of shape {r.embeddings.shape}, the index "
                    f"holds (n, {spec.dim})"
                )
            if r.embeddings.shape[0] < 1:
                raise InputError(f"{r.source or r.name}: no windows to index")
        rows = np.concatenate([np.asarray(r.embeddings, dtype=dtype) for r in recordings])
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        self._write_segment(name, rows)
        offsets = np.concatenate(([0], np.cumsum([len(r.embeddings) for r in recordings])))
        with self._transaction():
            self.con.execute(
                "INSERT INTO segments VALUES (?, ?, ?, ?)", (name, len(rows), spec.dtype,
                                                             time.time())
            )
            for r, offset in zip(recordings, offsets[:-1].tolist(), strict=True):
                if replace:
                    self.con.execute("DELETE FROM recordings WHERE name = ?", (r.name,))
                if r.source is not None:
                    self.con.execute("DELETE FROM failures WHERE source = ?", (r.source,))
                self.con.execute(
                    "INSERT INTO recordings (name, source, content_sha256, size, mtime_ns, "
                    "duration_s, n_windows, segment, row_offset, has_audio) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.name, r.source, r.content_sha256, r.size, r.mtime_ns,
                     float(r.duration_s), len(r.embeddings), name, offset, int(r.has_audio)),
                )
            self._bump()
        self._drop_unused_segments()

    def update_stat(self, source: str, size: int, mtime_ns: int) -> None:
        """Remember a new size/mtime for an unchanged file (same content)."""
        with self._transaction():
            self.con.execute(
                "UPDATE recordings SET size = ?, mtime_ns = ? WHERE source = ?",
                (size, mtime_ns, source),
            )

    def remove(self, names: Sequence[str]) -> int:
        """Drop recordings by name; returns how many were dropped."""
        if not names:
            return 0
        with self._transaction():
            n = 0
            for name in names:
                n += self.con.execute("DELETE FROM recordings WHERE name = ?", (name,)).rowcount
            self._bump()
        self._drop_unused_segments()
        return n

    def record_failure(self, source: str, reason: str, size: int | None,
                       mtime_ns: int | None) -> None:
        """List a file that could not be indexed (it is skipped until it changes)."""
        with self._transaction():
            self.con.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                (source, reason, size, mtime_ns),
            )

    def forget_failures(self, sources: Sequence[str]) -> None:
        with self._transaction():
            for s in sources:
                self.con.execute("DELETE FROM failures WHERE source = ?", (s,))

    # -- housekeeping

    def remove_orphan_segments(self) -> None:
        """Delete segment files that no committed row names (a killed commit's leftovers),
        and segments that no recording uses any more (a run killed before dropping them)."""
        self._drop_unused_segments()
        known = {r["name"] for r in self.con.execute("SELECT name FROM segments")}
        folder = self.index.root / SEGMENTS
        for path in folder.iterdir():
            stem = path.name.removesuffix(".npy")
            if path.name.startswith(".") or stem not in known:
                path.unlink(missing_ok=True)

    def _drop_unused_segments(self) -> None:
        unused = [
            r["name"] for r in self.con.execute(
                "SELECT name FROM segments WHERE name NOT IN "
                "(SELECT DISTINCT segment FROM recordings)"
            )
        ]
        if not unused:
            return
        with self._transaction():
            for name in unused:
                self.con.execute("DELETE FROM segments WHERE name = ?", (name,))
        for name in unused:  # open maps of earlier snapshots keep the data readable
            self.index.segment_path(name).unlink(missing_ok=True)

    def _write_segment(self, name: str, rows: NDArray[np.floating]) -> None:
        final = self.index.segment_path(name)
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, rows)
        publish_file(tmp, final)

    def _bump(self) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (uuid.uuid4().hex,)
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")


def describe(snapshot: Snapshot) -> dict[str, Any]:
    """A JSON-ready summary of a snapshot."""
    return {
        "recordings": len(snapshot),
        "windows": snapshot.n_windows,
        "hours": round(snapshot.hours, 3),
        "with_audio": sum(r.has_audio for r in snapshot.recordings),
        "model": asdict(snapshot.spec),
        "segments": len(snapshot.segments),
        "bytes": sum(int(s.nbytes) for s in snapshot.segments.values()),
    }
