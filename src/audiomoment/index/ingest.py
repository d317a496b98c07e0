"""Filling an archive index: audio files (embedded once) or a lighthouse-layout feature folder.

Incremental: a file whose size and modification time are unchanged is skipped unread; a
changed one is hashed and re-embedded only when its content changed; recordings whose file
disappeared from the folders being indexed are dropped; files that cannot be read are
listed (``audiomoment index --failures``) and skipped until they change. Every recording
is committed as soon as it is embedded (features: in groups), so a killed run keeps what
it committed and a re-run resumes after it.

A file that changes while it is read (a recorder still writing it, a copy in progress) is
not committed: its size and modification time are taken before it is read and again after
it was embedded and hashed, and when they differ the file is listed as a failure with the
earlier ones, so the next run sees a change and reads it again. An audio file that changed
after the run listed it, but before it was read, is read as it is then (a feature file is
listed as changed and read on the next run, and so is any file the Ray workers read
after it was listed).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.index.store import ArchiveIndex, IndexWriter, ModelSpec, NewRecording
from audiomoment.io.cache import file_digest as sha256_file

#: File name endings read as audio (what libsndfile decodes).
AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
     ".au", ".snd", ".w64", ".caf", ".rf64"}
)
#: Feature files committed together when ingesting a feature folder.
FEATURE_COMMIT_FILES = 512


class AudioEmbedder(Protocol):
    """Turns one audio file into joint-space window embeddings."""

    spec: ModelSpec

    def duration_s(self, path: Path) -> float:
        """The file's length in seconds (reads the header only; InputError if unreadable)."""
        ...

    def embed(self, path: Path,
              on_windows: Callable[[int], None] | None = None) -> NDArray[np.float32]:
        """(T, dim) L2-normalised window embeddings (InputError if unreadable).

        ``on_windows``: called with a count of windows as they are embedded (progress
        within a long file; an embedder may also call it once, at the end, or never)."""
        ...


@dataclass
class IngestReport:
    """What one indexing run did."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    windows: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.replaced)} updated",
                 f"{self.unchanged} unchanged", f"{len(self.removed)} removed"]
        if self.failed:
            parts.append(f"{len(self.failed)} unreadable (skipped)")
        return ", ".join(parts) + f"; {self.windows} windows embedded in {self.seconds:.1f} s"


def find_files(
    roots: Sequence[str | os.PathLike[str]], suffixes: frozenset[str]
) -> list[tuple[Path, str]]:
    """Files under ``roots`` with one of ``suffixes``, as (absolute path, name).

    A root that is a file is taken as it is (whatever its ending); folders are walked
    without following links to folders (no loops), in sorted order. ``name`` is the path
    relative to its root folder (the file name for a root that is a file); InputError when
    a root does not exist.
    """
    found: dict[Path, str] = {}
    for root in roots:
        r = Path(root)
        if not r.exists():
            raise InputError(f"{r}: no such file or folder")
        if r.is_file():
            found.setdefault(r.resolve(), r.name)
            continue
        base = r.resolve()
        for folder, dirs, files in os.walk(base, followlinks=False):
            dirs.sort()
            for f in sorted(files):
                p = Path(folder) / f
                if p.suffix.lower() in suffixes and p.is_file():
                    found.setdefault(p.resolve(), str(p.relative_to(base)))
    names: dict[str, int] = {}
    for name in found.values():
        names[name] = names.get(name, 0) + 1
    # two roots with the same relative path: fall back to the absolute path
    return [(p, name if names[name] == 1 else str(p)) for p, name in sorted(found.items())]


def _under(source: str, roots: Sequence[Path]) -> bool:
    return any(source == str(r) or source.startswith(str(r) + os.sep) for r in roots)


def _stale(
    writer: IndexWriter, files: Sequence[tuple[Path, str]], roots: Sequence[str | os.PathLike[str]]
) -> list[str]:
    """Names of indexed recordings from under ``roots`` whose file is gone."""
    seen = {str(p) for p, _ in files}
    resolved = [Path(r).resolve() for r in roots]
    return [name for source, (name, *_rest) in writer.known_sources().items()
            if _under(source, resolved) and source not in seen]


def _gone_failures(
    writer: IndexWriter, files: Sequence[tuple[Path, str]], roots: Sequence[str | os.PathLike[str]]
) -> list[str]:
    """Listed failures from under ``roots`` whose file is gone (no longer listed)."""
    seen = {str(p) for p, _ in files}
    resolved = [Path(r).resolve() for r in roots]
    return [s for s in writer.known_failures() if _under(s, resolved) and s not in seen]


@dataclass
class _Plan:
    todo: list[tuple[Path, str, os.stat_result, str]]
    unchanged: int


def _plan(writer: IndexWriter, files: Sequence[tuple[Path, str]]) -> _Plan:
    """Which files need embedding: new, or changed in content. Unchanged ones are skipped
    (size and mtime equal: unread; else hashed)."""
    known = writer.known_sources()
    failures = writer.known_failures()
    todo = []
    unchanged = 0
    for path, name in files:
        source = str(path)
        try:
            st = path.stat()
        except OSError:
            continue
        if source in failures and failures[source] == (st.st_size, st.st_mtime_ns):
            continue
        if source in known:
            _, size, mtime, digest = known[source]
            if (size, mtime) == (st.st_size, st.st_mtime_ns):
                unchanged += 1
                continue
            try:
                new_digest = sha256_file(path)
            except OSError:
                continue
            if new_digest == digest:
                writer.update_stat(source, st.st_size, st.st_mtime_ns)
                unchanged += 1
                continue
            todo.append((path, known[source][0], st, new_digest))
        else:
            todo.append((path, name, st, ""))
    return _Plan(todo, unchanged)


def _progress(total_hours: float, n_files: int, progress: bool | None):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    disable = None if progress is None else not progress
    return tqdm(total=round(total_hours, 4), unit="h", desc="indexing", disable=disable,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h "
                "[{elapsed}<{remaining}] {postfix}", postfix=f"0/{n_files} files")


def _begin_audio_run(
    writer: IndexWriter,
    files: Sequence[tuple[Path, str]],
    roots: Sequence[str | os.PathLike[str]],
    report: IngestReport,
    neutral: NDArray[np.floating] | None,
) -> _Plan:
    """The first steps of indexing audio: store ``neutral``, drop the recordings and
    failures whose file is gone, and plan what to embed (``report`` notes what was done)."""
    if neutral is not None:
        writer.set_vector("neutral", neutral)
    report.removed = _stale(writer, files, roots)
    writer.remove(report.removed)
    writer.forget_failures(_gone_failures(writer, files, roots))
    plan = _plan(writer, files)
    report.unchanged = plan.unchanged
    return plan


def _named_todo(
    writer: IndexWriter, plan: _Plan, durations: dict[Path, float]
) -> list[tuple[Path, str, os.stat_result, str]]:
    """The planned files that have a duration, each with the name it is indexed under."""
    # a new file whose name another recording holds (the same relative path under a
    # folder indexed earlier) is named by its full path: it must not replace that one
    taken = writer.names()
    return [(p, str(p) if not digest and name in taken else name, st, digest)
            for p, name, st, digest in plan.todo if p in durations]


def index_audio(
    roots: Sequence[str | os.PathLike[str]],
    db: str | os.PathLike[str],
    embedder: AudioEmbedder,
    *,
    progress: bool | None = None,
    neutral: NDArray[np.floating] | None = None,
    on_commit: Callable[[str], None] | None = None,
) -> IngestReport:
    """Index every audio file under ``roots`` into the index at ``db`` (created if needed).

    ``neutral``: System 1's neutral embedding, stored with the index. ``on_commit``: called
    with each committed recording's name (tests use it to interrupt a run).
    """
    t0 = time.perf_counter()
    files = find_files(roots, AUDIO_SUFFIXES)
    report = IngestReport()
    with ArchiveIndex(db).writer(embedder.spec) as writer:
        plan = _begin_audio_run(writer, files, roots, report, neutral)
        durations = {}
        for path, _, st, _ in plan.todo:
            try:
                durations[path] = embedder.duration_s(path)
            except InputError as exc:
                _fail(writer, report, path, st, str(exc))
        todo = _named_todo(writer, plan, durations)
        with _progress(sum(durations.values()) / 3600, len(todo), progress) as bar:
            for k, (path, name, st, digest) in enumerate(todo, 1):
                advance = _FileProgress(bar, durations[path], embedder.spec.hop_s)
                try:
                    now = path.stat()
                    if _stat_key(now) != _stat_key(st):  # changed since it was listed
                        st, digest = now, None
                        durations[path] = embedder.duration_s(path)
                    emb = embedder.embed(path, on_windows=advance)
                    digest = digest or sha256_file(path)
                except InputError as exc:
                    _fail(writer, report, path, st, str(exc))
                    continue
                except OSError as exc:
                    _fail(writer, report, path, st, f"{path}: {exc.strerror or exc}")
                    continue
                if changed_since(path, st):
                    _fail(writer, report, path, st, changed_while_read(path))
                    continue
                replaced = name in writer.names()
                writer.add([NewRecording(
                    name=name, embeddings=emb, duration_s=durations[path],
                    content_sha256=digest, source=str(path), size=st.st_size,
                    mtime_ns=st.st_mtime_ns, has_audio=True,
                )])
                (report.replaced if replaced else report.added).append(name)
                report.windows += len(emb)
                bar.set_postfix_str(f"{k}/{len(todo)} files")
                advance.finish()
                if on_commit is not None:
                    on_commit(name)
    report.seconds = time.perf_counter() - t0
    return report


class _FileProgress:
    """Advances the run's bar (hours) as one file's windows are embedded, never past the
    file's duration; :meth:`finish` adds what is left of it once the file is committed."""

    def __init__(self, bar: Any, duration_s: float, hop_s: float) -> None:
        self.bar, self.hours, self.hop_h = bar, duration_s / 3600, hop_s / 3600
        self.shown = 0.0

    def __call__(self, n_windows: int) -> None:
        step = min(n_windows * self.hop_h, self.hours - self.shown)
        if step > 0:
            self.shown += step
            self.bar.update(step)

    def finish(self) -> None:
        rest = self.hours - self.shown
        if rest > 0:
            self.shown = self.hours
            self.bar.update(rest)


def _stat_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def changed_since(path: Path, st: os.stat_result) -> bool:
    """Whether ``path``'s size or modification time differ from ``st`` (or it is gone)."""
    try:
        return _stat_key(path.stat()) != _stat_key(st)
    except OSError:
        return True


def changed_while_read(path: Path) -> str:
    """The failure reason of a file that changed while it was being indexed."""
    return f"{path}: changed while it was being indexed (read again on the next run)"


def _fail(writer: IndexWriter, report: IngestReport, path: Path, st: os.stat_result,
          reason: str) -> None:
    writer.record_failure(str(path), reason, st.st_size, st.st_mtime_ns)
    report.failed.append((str(path), reason))


def index_embeddings(
    items: Iterable[tuple[str, NDArray[np.floating], float]],
    db: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    neutral: NDArray[np.floating] | None = None,
    commit_every: int = FEATURE_COMMIT_FILES,
) -> int:
    """Index precomputed joint-space embeddings: ``items`` of (name, (T, dim), duration_s).

    For programs, benchmarks and simulations; names are the recording ids (re-adding a
    name replaces it). Returns the number of recordings added.
    """
    n = 0
    with ArchiveIndex(db).writer(spec) as writer:
        if neutral is not None:
            writer.set_vector("neutral", neutral)
        batch: list[NewRecording] = []
        for name, emb, duration in items:
            arr = np.asarray(emb)
            digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
            batch.append(NewRecording(name=name, embeddings=arr, duration_s=float(duration),
                                      content_sha256=digest))
            if len(batch) >= commit_every:
                writer.add(batch)
                n += len(batch)
                batch = []
        writer.add(batch)
        n += len(batch)
    return n


def index_features(
    features_dir: str | os.PathLike[str],
    db: str | os.PathLike[str],
    to_joint: Callable[[NDArray[np.float32]], NDArray[np.float32]],
    spec: ModelSpec,
    *,
    durations_s: dict[str, float] | None = None,
    neutral: NDArray[np.floating] | None = None,
    progress: bool | None = None,
    commit_every: int = FEATURE_COMMIT_FILES,
) -> IngestReport:
    """Index a lighthouse-layout feature folder (``FEATURES/clap/<vid>.npz``); ids = vids.

    ``to_joint``: (T, D) features -> (T, dim) L2-normalised joint-space embeddings (the
    audio projection head for 768-d features). ``durations_s``: recording lengths by vid
    (e.g. from an annotation file); otherwise windows x hop.
    """
    from tqdm import tqdm

    from audiomoment.io.features import AUDIO_DIR, load_audio_features

    t0 = time.perf_counter()
    folder = Path(features_dir) / AUDIO_DIR
    if not folder.is_dir():
        raise InputError(f"{features_dir}: no {AUDIO_DIR}/ folder of audio features")
    files = [(p.resolve(), p.stem) for p in sorted(folder.glob("*.npz"))]
    report = IngestReport()
    with ArchiveIndex(db).writer(spec) as writer:
        if neutral is not None:
            writer.set_vector("neutral", neutral)
        report.removed = _stale(writer, files, [folder])
        writer.remove(report.removed)
        writer.forget_failures(_gone_failures(writer, files, [folder]))
        plan = _plan(writer, files)
        report.unchanged = plan.unchanged
        names = writer.names()
        batch: list[NewRecording] = []
        disable = None if progress is None else not progress
        for path, name, st, digest in tqdm(plan.todo, desc="indexing features", unit="file",
                                           disable=disable):
            try:
                feats, raw = load_audio_features(Path(features_dir), name)
                emb = to_joint(feats)
            except InputError as exc:
                _fail(writer, report, path, st, str(exc))
                continue
            if changed_since(path, st):
                _fail(writer, report, path, st, changed_while_read(path))
                continue
            duration = (durations_s or {}).get(name, len(emb) * spec.hop_s)
            batch.append(NewRecording(
                name=name, embeddings=emb, duration_s=float(duration),
                content_sha256=digest or hashlib.sha256(raw).hexdigest(), source=str(path),
                size=st.st_size, mtime_ns=st.st_mtime_ns, has_audio=False,
            ))
            (report.replaced if name in names else report.added).append(name)
            report.windows += len(emb)
            if len(batch) >= commit_every:
                writer.add(batch)
                batch = []
        writer.add(batch)
    report.seconds = time.perf_counter() - t0
    return report
