"""The dataset runner: annotations + features in the lighthouse layout -> prediction rows.

Path of a query, one function per step:

1. :func:`recording_embeddings`: a recording's window features in the joint space, read once
   per recording and projected once (cached on disk, keyed by head weights and file content);
2. :func:`query_embedding`: the query's text feature in the joint space;
3. :func:`recording_traces`: one trace per query of the recording (System 1: background
   contrast; System 2 and the window baseline: plain similarity);
4. :func:`localised_rows` (Systems 1 and 2, a batch of traces at a time) or
   :func:`window_baseline_row` (sliding windows): one prediction row per query.

:func:`predict_dataset` runs them over a dataset and times each stage. With a cache folder it
reads the trace inputs from the feature store (:mod:`audiomoment.io.feature_store`): the
first run reads every feature file once and stores, keyed by file content, the window rows
as the traces multiply them and the queries' joint-space vectors; later runs only stat the
files and memory-map the store. The traces, and so the predictions, are the same bytes as
those of the per-file path (``feature_store=False``): the stored rows are made by the
functions above from the same arrays, and each trace is the same matrix-vector product.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM, ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.io.annotations import qid_key
from audiomoment.io.cache import cached_file_digest, load_cached_array, save_cached_array
from audiomoment.io.feature_store import (
    AUDIO,
    CACHE_SUBDIR,
    TEXT,
    FeatureStore,
    FileStat,
    StoreSnapshot,
    StoreUnavailable,
    StoreWriter,
    file_sha256,
    stat_file,
)
from audiomoment.io.features import (
    AUDIO_DIR,
    TEXT_DIR,
    audio_features_path,
    load_audio_features,
    load_query_features,
    text_features_path,
)
from audiomoment.io.predictions import make_row, prediction_row
from audiomoment.io.run_settings import RunSettings
from audiomoment.method.frames import frames_covering
from audiomoment.method.localize import LocalizationResult, localize_traces
from audiomoment.method.traces import l2_normalize, query_trace
from audiomoment.method.window_baseline import sliding_window_moments

#: Queries localised per batch: the fast engine vectorises over a batch, the reference loops.
BATCH_QUERIES = {"fast": 8192, "reference": 256}
#: Stages timed by :func:`predict_dataset`, in order.
STAGES = ("load", "projection", "traces", "localisation")
#: Rows gathered before the feature store commits (recording windows, float64, 8 KiB each;
#: queries, float32, 4 KiB each): at most 256 MiB staged.
STORE_BATCH_ROWS = 32768

Trace = NDArray[np.float64]


class MissingProjection(InputError):
    """Features in the encoder space (768-d) without the projection heads that bring them
    into the joint space (1024-d)."""


def head_digest(head: ProjectionHead) -> str:
    """A short content key of a projection head's weights."""
    h = hashlib.sha256()
    for arr in (head.linear1, head.linear2, head.ln_weight, head.ln_bias):
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def projection_cache(
    cache_dir: str | os.PathLike[str] | None, head: ProjectionHead | None
) -> Path | None:
    """``<cache_dir>/projected/<head digest>``, the folder of recordings projected by
    ``head``; None without a cache folder or a head."""
    if cache_dir is None or head is None:
        return None
    return Path(cache_dir) / "projected" / head_digest(head)


class CheckpointHeads(Mapping[str, ProjectionHead]):
    """The "audio" and "text" projection heads of a checkpoint file, loaded on first use.

    Their digests (:func:`head_digest`), which name the feature store, are remembered in
    ``<cache_dir>/store/heads/<checkpoint sha256>.json``, so a run whose features are all
    in the store never loads the checkpoint (nor imports torch). Without that memo the
    heads are loaded at once, so an unreadable checkpoint fails where
    :func:`audiomoment.clap.checkpoint.load_projection_heads` would.
    """

    def __init__(
        self, path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: checkpoint file not found")
        self._heads: dict[str, ProjectionHead] | None = None
        self._digests: dict[str, str] = {}
        self._memo: Path | None = None
        if cache_dir is not None:
            sha = cached_file_digest(self.path, cache_dir)
            self._memo = Path(cache_dir) / CACHE_SUBDIR / "heads" / f"{sha}.json"
            self._digests = _read_head_digests(self._memo)
        if not self._digests:
            self._load()

    def _load(self) -> dict[str, ProjectionHead]:
        if self._heads is None:
            from audiomoment.clap.checkpoint import load_projection_heads
            from audiomoment.io.atomic import write_text

            self._heads = load_projection_heads(self.path)
            self._digests = {m: head_digest(h) for m, h in self._heads.items()}
            if self._memo is not None:
                with contextlib.suppress(OSError):  # a read-only cache only costs time
                    write_text(self._memo, json.dumps(self._digests))
        return self._heads

    @property
    def loaded(self) -> bool:
        """Whether the checkpoint has been read."""
        return self._heads is not None

    def digest(self, modality: str) -> str | None:
        """:func:`head_digest` of one head (None when the checkpoint has none)."""
        return self._digests.get(modality)

    def __getitem__(self, modality: str) -> ProjectionHead:
        return self._load()[modality]

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)


def _read_head_digests(path: Path) -> dict[str, str]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
    ):
        return {}
    return loaded


def feature_store_dir(
    cache_dir: str | os.PathLike[str], heads: Mapping[str, ProjectionHead] | None
) -> Path:
    """``<cache_dir>/store/<audio head digest>-<text head digest>``, or ``.../joint``
    without heads: the audio head makes the stored window rows, the text head the stored
    query vectors, so both name the store (``none`` for a head the mapping lacks)."""
    if not heads:
        return Path(cache_dir) / CACHE_SUBDIR / "joint"
    if isinstance(heads, CheckpointHeads):
        digests = [heads.digest(m) for m in ("audio", "text")]
    else:
        digests = [head_digest(heads[m]) if m in heads else None for m in ("audio", "text")]
    return Path(cache_dir) / CACHE_SUBDIR / "-".join(d or "none" for d in digests)


@dataclass
class PredictionRun:
    """Output of :func:`predict_dataset`.

    rows : one prediction row per annotation row, in annotation order.
    results : per qid key, the full :class:`LocalizationResult` (when ``keep_results``).
    n_fallback : queries answered by the peak-centred fallback.
    n_degenerate : queries whose trace was constant (fallback over the whole recording).
    n_past_duration : recordings with more feature windows than their duration covers.
    timings_s : seconds per stage: load, projection, traces, localisation.
    notes : one line each, what the user should know about how the run read its inputs
        (e.g. a feature store that could not be used).
    """

    rows: list[dict]
    results: dict[str, LocalizationResult] = field(default_factory=dict)
    n_fallback: int = 0
    n_degenerate: int = 0
    n_past_duration: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_settings(
    system: int | str,
    config: LocalizeConfig,
    *,
    neutral_source: str | None,
    checkpoint: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> RunSettings:
    """The settings of a run, written beside its predictions.

    ``neutral_source``: where System 1's neutral embedding came from (kept for System 1
    only); ``checkpoint``: the checkpoint whose heads were loaded (None: none), its SHA-256
    remembered in ``cache_dir`` (None: computed every time).
    """
    from audiomoment import __version__

    digest = cached_file_digest(checkpoint, cache_dir) if checkpoint is not None else None
    return RunSettings(
        system=system,
        config=config,
        neutral_source=neutral_source if system == 1 else None,
        checkpoint_sha256=digest,
        package_version=__version__,
    )


# ---------------------------------------------------------------------------------------------
# One step each
# ---------------------------------------------------------------------------------------------


def recording_embeddings(
    features: NDArray[np.float32],
    raw: bytes,
    path: Path,
    head: ProjectionHead | None,
    cache: Path | None,
) -> NDArray[np.float32]:
    """(T, 1024) joint-space window embeddings of one recording (not normalised).

    ``features``: (T, D) as read from ``path``, whose bytes ``raw`` key the cache; D = 1024
    is returned as is, D = 768 is projected with the audio ``head``. ``cache``: folder of
    projected recordings (:func:`projection_cache`; None: project every time). A damaged
    cache entry is recomputed; one that cannot be written is skipped.
    """
    if features.shape[1] != ENCODER_DIM:
        return features
    if head is None:
        raise MissingProjection(
            f"{path}: {ENCODER_DIM}-d encoder features need the checkpoint's projection heads "
            f"(or features already in the {JOINT_DIM}-d joint space)"
        )
    if cache is None:
        return project(features, head)
    cached = cache / f"{hashlib.sha256(raw).hexdigest()}.npy"
    joint = load_cached_array(cached, (features.shape[0], head.out_dim))
    if joint is None:
        joint = project(features, head)
        save_cached_array(cached, joint)
    return joint


def query_embedding(
    vector: NDArray[np.float32], path: Path, head: ProjectionHead | None
) -> NDArray[np.float32]:
    """(1024,) query vector in the joint space.

    ``vector``: (D,) as read from ``path``; D = 1024 is returned as is, D = 768 is projected
    with the text ``head``.
    """
    if vector.shape[0] != ENCODER_DIM:
        return vector
    if head is None:
        raise MissingProjection(
            f"{path}: {ENCODER_DIM}-d text features need the checkpoint's projection heads"
        )
    return project(vector, head)


def recording_traces(
    audio: NDArray[np.floating], queries: Sequence[NDArray[np.floating]],
    neutral: NDArray[np.float64] | None,
) -> list[Trace]:
    """One trace (T,) per query of one recording.

    ``audio``: (T, 1024) L2-normalised window embeddings; ``queries``: (1024,) joint-space
    vectors; ``neutral``: System 1's L2-normalised neutral embedding (1024,), None for the
    plain similarity.
    """
    return [query_trace(audio, q, neutral) for q in queries]


def localised_rows(
    annotations: Sequence[Mapping], traces: Sequence[Trace], config: LocalizeConfig
) -> tuple[list[dict], list[LocalizationResult]]:
    """Systems 1 and 2 on a batch: the prediction row and the result of each query.

    ``traces``: (T_q,) per annotation row, over the recording's frames (``config.hop_s`` s).
    """
    results = localize_traces(
        list(traces), [float(a["duration"]) for a in annotations], config
    )
    rows = [prediction_row(a, r) for a, r in zip(annotations, results, strict=True)]
    return rows, results


def window_baseline_row(annotation: Mapping, trace: Trace, config: LocalizeConfig) -> dict:
    """The sliding-window baseline's prediction row of one query (no ``delta``).

    ``trace``: (T,) plain similarity over frames of ``config.hop_s`` s; the
    ``config.max_windows`` best windows after suppression, clipped to the duration.
    """
    windows = sliding_window_moments(
        trace, float(annotation["duration"]), hop_s=config.hop_s, max_windows=config.max_windows
    )
    return make_row(annotation, windows)


# ---------------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------------


def _by_recording(annotations: Sequence[Mapping]) -> dict[str, list[int]]:
    """Annotation row indices per recording, recordings in order of first appearance."""
    by_vid: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(annotations):
        by_vid[row["vid"]].append(i)
    return by_vid


def _all_traces(
    annotations: Sequence[Mapping],
    features_dir: str | os.PathLike[str],
    heads: Mapping[str, ProjectionHead] | None,
    neutral: NDArray[np.float64] | None,
    cache: Path | None,
    config: LocalizeConfig,
    timings: dict[str, float],
    disable: bool | None,
) -> tuple[list[Trace | None], int]:
    """Every query's trace (annotation order) and the number of recordings with more frames
    than their duration covers; adds seconds to ``timings`` (load, projection, traces)."""
    audio_head = heads.get("audio") if heads else None
    text_head = heads.get("text") if heads else None
    traces: list[Trace | None] = [None] * len(annotations)
    n_past = 0
    groups = _by_recording(annotations)
    for vid, indices in tqdm(groups.items(), desc="recordings", unit="rec", disable=disable):
        t0 = time.perf_counter()
        features, raw = load_audio_features(features_dir, vid)
        t1 = time.perf_counter()
        path = audio_features_path(features_dir, vid)
        audio = l2_normalize(recording_embeddings(features, raw, path, audio_head, cache))
        t2 = time.perf_counter()
        qids = [qid_key(annotations[i]["qid"]) for i in indices]
        vectors = [load_query_features(features_dir, qid) for qid in qids]
        t3 = time.perf_counter()
        if audio.shape[0] > frames_covering(float(annotations[indices[0]]["duration"]),
                                            config.hop_s):
            n_past += 1
        queries = [
            query_embedding(v, text_features_path(features_dir, qid), text_head)
            for v, qid in zip(vectors, qids, strict=True)
        ]
        for i, trace in zip(indices, recording_traces(audio, queries, neutral), strict=True):
            traces[i] = trace
        t4 = time.perf_counter()
        timings["load"] += (t1 - t0) + (t3 - t2)
        timings["projection"] += t2 - t1
        timings["traces"] += t4 - t3
    return traces, n_past


@dataclass
class _StorePlan:
    """The files of a run and what the store knows of them.

    audio : vid -> absolute path of its features file. text : annotation index -> absolute
    path of its query file. stats : path -> :class:`FileStat` (None: cannot be stat'ed).
    sha : path -> content digest, for the files whose content is known. trusted : the
    paths whose digest came from the memo. stat_ns : the clock (ns) just before the files
    were stat'ed (the memo's hashing time).
    """

    audio: dict[str, str]
    text: list[str]
    stats: dict[str, FileStat | None]
    sha: dict[str, str]
    trusted: set[str]
    stat_ns: int

    def resolved(self, snap: StoreSnapshot) -> bool:
        """Whether every file's content is known and stored in ``snap``."""
        return all(
            (path in self.sha and snap.has(kind, self.sha[path]))
            for kind, paths in ((AUDIO, self.audio.values()), (TEXT, self.text))
            for path in paths
        )


def _store_plan(
    annotations: Sequence[Mapping], groups: Mapping[str, Sequence[int]],
    root: str, snap: StoreSnapshot,
) -> _StorePlan:
    """``root``: the features folder, absolute."""
    # the paths of audio_features_path / text_features_path, joined as strings (fast)
    audio_dir = os.path.join(root, AUDIO_DIR)
    text_dir = os.path.join(root, TEXT_DIR)
    audio = {vid: os.path.join(audio_dir, f"{vid}.npz") for vid in groups}
    text = [os.path.join(text_dir, f"{qid_key(a['qid'])}.npz") for a in annotations]
    stat_ns = time.time_ns()
    stats = {path: stat_file(path) for path in (*audio.values(), *text)}
    sha = {}
    for path, st in stats.items():
        known = snap.sha256(st)
        if known is not None:
            sha[path] = known
    return _StorePlan(audio, text, stats, sha, set(sha), stat_ns)


def _content(path: str) -> str | None:
    """A file's SHA-256, or None when it cannot be read (the loader then says why)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


class _Ingest:
    """New rows and memo entries, committed every :data:`STORE_BATCH_ROWS` rows (recording
    windows and queries together)."""

    def __init__(self, writer: StoreWriter, snap: StoreSnapshot, plan: _StorePlan) -> None:
        self.writer = writer
        self.plan = plan
        self.have = set(snap.rows)
        self.audio: dict[str, NDArray[np.float64]] = {}
        self.text: dict[str, NDArray[np.float32]] = {}
        self.memo: dict[str, tuple[FileStat, str, int]] = {}
        self.n_rows = 0

    def known(self, path: str, kind: str, sha: str | None) -> bool:
        """Whether content ``sha`` of ``path`` has rows; if so ``path`` is resolved to it."""
        if sha is None or (kind, sha) not in self.have:
            return False
        self.resolve(path, sha)
        return True

    def resolve(self, path: str, sha: str) -> None:
        """``path`` holds content ``sha``; remembered unless the memo said so already."""
        st = self.plan.stats[path]
        if st is not None and (path not in self.plan.trusted or self.plan.sha[path] != sha):
            self.memo[path] = (st, sha, self.plan.stat_ns)
        self.plan.sha[path] = sha

    def add(self, path: str, kind: str, sha: str, rows: NDArray[np.floating]) -> None:
        if (kind, sha) not in self.have:
            self.have.add((kind, sha))
            if kind == AUDIO:
                self.audio[sha] = rows  # type: ignore[assignment]
                self.n_rows += len(rows)
            else:
                self.text[sha] = rows  # type: ignore[assignment]
                self.n_rows += 1  # bounds the staged queries too (4 KiB each)
        self.resolve(path, sha)
        if self.n_rows >= STORE_BATCH_ROWS:
            self.commit()

    def commit(self) -> None:
        if self.audio or self.text or self.memo:
            self.writer.commit(list(self.audio.items()), list(self.text.items()),
                               list(self.memo.values()))
        self.audio, self.text, self.memo, self.n_rows = {}, {}, {}, 0


def _ingest(
    ingest: _Ingest,
    annotations: Sequence[Mapping],
    groups: Mapping[str, Sequence[int]],
    features_dir: str | os.PathLike[str],
    heads: Mapping[str, ProjectionHead] | None,
    cache_dir: str | os.PathLike[str],
    disable: bool | None,
) -> None:
    """Read, project and stage the rows of every file the store lacks, recording by
    recording in the per-file path's order (so the first bad file fails the same way)."""
    plan = ingest.plan
    proj: dict[str, Path | None] = {}

    def head(modality: str, dim: int) -> ProjectionHead | None:
        if dim != ENCODER_DIM or not heads or modality not in heads:
            return None
        return heads[modality]

    for vid, indices in tqdm(groups.items(), desc="storing features", unit="rec",
                             disable=disable):
        apath = plan.audio[vid]
        if not ingest.known(apath, AUDIO, plan.sha.get(apath) or _content(apath)):
            features, raw = load_audio_features(features_dir, vid)
            audio_head = head("audio", features.shape[1])
            if audio_head is not None and "audio" not in proj:
                proj["audio"] = projection_cache(cache_dir, audio_head)
            joint = recording_embeddings(
                features, raw, audio_features_path(features_dir, vid), audio_head,
                proj.get("audio"),
            )
            rows = l2_normalize(np.atleast_2d(l2_normalize(joint)))
            ingest.add(apath, AUDIO, hashlib.sha256(raw).hexdigest(), rows)
        loaded = []
        for i in indices:
            tpath = plan.text[i]
            before = plan.sha.get(tpath) or _content(tpath)
            if ingest.known(tpath, TEXT, before):
                continue
            qid = qid_key(annotations[i]["qid"])
            loaded.append((tpath, qid, before, load_query_features(features_dir, qid)))
        for tpath, qid, before, vector in loaded:
            if tpath in plan.sha and ingest.known(tpath, TEXT, plan.sha[tpath]):
                continue  # the same file asked twice in this recording
            qpath = text_features_path(features_dir, qid)
            query = query_embedding(vector, qpath, head("text", vector.shape[0]))
            after = _content(tpath)
            if after is None or (before is not None and after != before):
                raise InputError(f"{qpath}: the file changed while it was read; run again")
            ingest.add(tpath, TEXT, after, np.asarray(query, dtype=np.float32))
    ingest.commit()


class ListedTraces:
    """Traces computed beforehand (annotation order); each is handed out once."""

    def __init__(self, traces: list[Trace | None]) -> None:
        self.traces = traces

    def take(self, indices: Sequence[int]) -> list[Trace]:
        out = []
        for i in indices:
            trace, self.traces[i] = self.traces[i], None
            out.append(trace)
        return out  # type: ignore[return-value]


class StoredTraces:
    """Traces computed from the feature store's mapped rows when a chunk of queries asks for
    them, so a run holds one chunk's traces at a time whatever the number of queries and the
    length of the recordings.

    ``audio_sha``, ``text_sha``: per annotation row, the content of its recording's and its
    query's feature file. ``n_twice``: the unit neutral embedding (System 1) or None.
    A query's trace is (T, 1024) rows . (unit query - n): the same products, in the same
    order, as computing every trace first.
    """

    def __init__(self, snap: StoreSnapshot, audio_sha: list[str], text_sha: list[str],
                 n_twice: NDArray[np.float64] | None) -> None:
        self.snap, self.audio_sha, self.text_sha = snap, audio_sha, text_sha
        self.n_twice = n_twice

    def take(self, indices: Sequence[int]) -> list[Trace]:
        """The traces of annotation rows ``indices``, computed segment by segment of the
        recordings' rows, each segment's map dropped after its last use (the mapped pages a
        chunk touches stay within one audio segment and the chunk's query rows)."""
        rows = self.snap.rows
        segment = [rows[(AUDIO, self.audio_sha[i])].segment for i in indices]
        order = sorted(range(len(indices)), key=segment.__getitem__)
        out: list[Trace | None] = [None] * len(indices)
        text_segments = set()
        for pos, k in enumerate(order):
            i = indices[k]
            audio = self.snap.array(AUDIO, self.audio_sha[i])
            q = l2_normalize(self.snap.array(TEXT, self.text_sha[i]))
            out[k] = audio @ (q if self.n_twice is None else q - self.n_twice)
            text_segments.add(rows[(TEXT, self.text_sha[i])].segment)
            if pos + 1 == len(order) or segment[order[pos + 1]] != segment[k]:
                del audio
                self.snap.release(segment[k])
        for name in text_segments:
            self.snap.release(name)
        return out  # type: ignore[return-value]


def _store_traces(
    annotations: Sequence[Mapping],
    features_dir: str | os.PathLike[str],
    heads: Mapping[str, ProjectionHead] | None,
    neutral: NDArray[np.float64] | None,
    cache_dir: str | os.PathLike[str],
    config: LocalizeConfig,
    timings: dict[str, float],
    disable: bool | None,
    notes: list[str],
) -> tuple[StoredTraces, int] | None:
    """The traces of :func:`_all_traces` through the feature store, computed when asked
    for (:class:`StoredTraces`), and the number of recordings with more frames than their
    duration covers; None (and a line in ``notes``) when the store cannot be used and the
    files must be read directly.

    Adds seconds to ``timings``: load (stat, manifest), projection (storing what the store
    lacks).
    """
    t0 = time.perf_counter()
    store = FeatureStore(feature_store_dir(cache_dir, heads))
    groups = _by_recording(annotations)
    folder = str(Path(features_dir).resolve())
    try:
        snap = store.snapshot(folder)
        plan = _store_plan(annotations, groups, folder, snap)
        t1 = time.perf_counter()
        if not plan.resolved(snap):
            with store.writer() as writer:
                snap = store.snapshot()
                _ingest(_Ingest(writer, snap, plan), annotations, groups, features_dir, heads,
                        cache_dir, disable)
            snap = store.snapshot()
    except StoreUnavailable as exc:
        notes.append(f"{exc}; read the feature files directly instead")
        return None
    t2 = time.perf_counter()

    n_twice = None if neutral is None else l2_normalize(neutral)
    audio_sha: list[str] = [""] * len(annotations)
    n_past = 0
    for vid, indices in groups.items():
        sha = plan.sha[plan.audio[vid]]
        if snap.rows[(AUDIO, sha)].n_rows > frames_covering(
                float(annotations[indices[0]]["duration"]), config.hop_s):
            n_past += 1
        for i in indices:
            audio_sha[i] = sha
    text_sha = [plan.sha[path] for path in plan.text]
    timings["load"] += t1 - t0
    timings["projection"] += t2 - t1
    return StoredTraces(snap, audio_sha, text_sha, n_twice), n_past


def predict_dataset(
    annotations: Sequence[Mapping],
    features_dir: str | os.PathLike[str],
    *,
    system: int | str = 1,
    heads: Mapping[str, ProjectionHead] | None = None,
    neutral: NDArray[np.float64] | None = None,
    config: LocalizeConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    keep_results: bool = False,
    feature_store: bool = True,
) -> PredictionRun:
    """Run System 1, System 2 or the sliding-window baseline over every annotated query.

    ``system``: 1 (GMM + background contrast), 2 (GMM on the similarity trace) or
    ``"window"`` (sliding-window clip retrieval on the similarity trace, no mixture).

    ``annotations``: validated rows (``audiomoment.io.annotations.read_annotations``).
    ``heads``: the checkpoint's "audio" and "text" projection heads; needed for 768-d
    features (:class:`MissingProjection` otherwise; a :class:`CheckpointHeads` is read only
    when something must be projected). ``neutral``: (1024,) neutral embedding, required for
    System 1. ``cache_dir``: where projected recordings and the feature store are kept
    (None: no cache, every file read and projected). ``progress``: show progress bars
    (None: only on a terminal). ``feature_store``: read the trace inputs through the
    feature store in ``cache_dir`` (False: read every feature file, and the per-file
    projection cache, as earlier versions did; the predictions are the same bytes).
    """
    config = config or LocalizeConfig()
    if system not in (1, 2, "window"):
        raise InputError(f"system must be 1, 2 or 'window', got {system!r}")
    if system == 1 and neutral is None:
        raise InputError(
            f"System 1 needs the neutral embedding (a {JOINT_DIM}-d vector in the joint space)"
        )
    neutral_vec = l2_normalize(neutral) if system == 1 else None
    disable = None if progress is None else not progress
    timings = dict.fromkeys(STAGES, 0.0)
    notes: list[str] = []
    if feature_store and cache_dir is not None:
        stored = _store_traces(annotations, features_dir, heads, neutral_vec, cache_dir,
                               config, timings, disable, notes)
        if stored is not None:
            try:
                return _localise_all(annotations, system, stored[0], stored[1], config,
                                     timings, notes, keep_results, disable)
            except StoreUnavailable as exc:
                notes.append(f"{exc}; read the feature files directly instead")
    timings = dict.fromkeys(STAGES, 0.0)
    cache = projection_cache(cache_dir, heads.get("audio") if heads else None)
    traces, n_past = _all_traces(
        annotations, features_dir, heads, neutral_vec, cache, config, timings, disable
    )
    return _localise_all(annotations, system, ListedTraces(traces), n_past, config, timings,
                         notes, keep_results, disable)


def _localise_all(
    annotations: Sequence[Mapping],
    system: int | str,
    source: ListedTraces | StoredTraces,
    n_past: int,
    config: LocalizeConfig,
    timings: dict[str, float],
    notes: list[str],
    keep_results: bool,
    disable: bool | None,
) -> PredictionRun:
    """Localise every query, a batch at a time in annotation order, taking each batch's
    traces from ``source`` just before (adds seconds to ``timings``: traces, localisation).
    """
    batch = BATCH_QUERIES[config.engine]
    run = PredictionRun(rows=[], n_past_duration=n_past, timings_s=timings, notes=notes)
    timings["localisation"] = 0.0
    with tqdm(total=len(annotations), desc="localising", unit="query", disable=disable) as bar:
        for start in range(0, len(annotations), batch):
            chunk = range(start, min(start + batch, len(annotations)))
            t0 = time.perf_counter()
            batch_traces = source.take(chunk)
            t1 = time.perf_counter()
            batch_rows = [annotations[i] for i in chunk]
            if system == "window":
                for row, trace in zip(batch_rows, batch_traces, strict=True):
                    run.rows.append(window_baseline_row(row, trace, config))
            else:
                rows, results = localised_rows(batch_rows, batch_traces, config)
                run.rows.extend(rows)
                for i, result in zip(chunk, results, strict=True):
                    run.n_fallback += result.fallback
                    run.n_degenerate += result.degenerate
                    if keep_results:
                        run.results[qid_key(annotations[i]["qid"])] = result
            del batch_traces
            timings["traces"] += t1 - t0
            timings["localisation"] += time.perf_counter() - t1
            bar.update(len(chunk))
    return run
