"""Filling an archive index on a Ray cluster: the encoding spread over workers, one writer.

The driver (the process that calls :func:`index_audio_ray`) plans the run as
:func:`~audiomoment.index.ingest.index_audio` does (unchanged files skipped, deleted ones
dropped), cuts every recording into pieces of whole windows and hands the pieces to a pool
of Ray actors, one per worker, each of which loads the model once and keeps it. The
workers send back their rows; the driver joins the pieces of a recording in order and
commits it through the ordinary :class:`~audiomoment.index.store.IndexWriter`, recordings
in the order of the single-process run, so the index is the same one, bit for bit, and a
search during the run sees a consistent index. A worker that dies is restarted and its
pieces are run again (see "Faults" below); a killed driver leaves what it committed, and a
re-run finds those recordings unchanged and goes on with the rest.

Pieces are spans of ``piece_windows`` windows (a multiple of the embedder's batch size, so
the encoder sees the very batches it sees in one process); the encoder's windows are
independent, and what is not row-by-row (MS-CLAP's projection head, whose matrix products
may round a row differently in a smaller matrix) is applied by the driver to the joined
rows (:meth:`PieceEmbedder.finisher`), with the driver's torch threads (the projection's
rounding can depend on their number: the one-process run on the driver's machine, with the
same ``--threads``, gives the same rows). Every node must see the audio files under the same
paths (a shared file system). Ray is imported only here, and only when a run starts.

Faults: a worker that dies (its process, or its whole node) fails the pieces it held, and a
node that dies loses the rows of pieces done there and not yet fetched; the driver hands
those pieces to the workers that are up and asks Ray to restart the lost worker (on any node
that has room; it rejoins once its model is loaded). Only the piece a worker was running
when it died counts against its file (the ones queued behind it never started): run again
``max_retries`` times, it is then listed as a failure. When no worker at all is up for
``worker_timeout_s`` seconds (every node lost, none to restart on), the run stops with one
line (at the start, the run waits for its first worker as long as Ray takes); what it
committed stays, and the next run goes on from there. A worker given GPUs
(``gpus_per_worker`` > 0) loads its model on "cuda"; :class:`ClapFactory` refuses in one
line when torch on that node sees no GPU (a cluster that advertises GPUs it does not have),
and the run stops with that line when no worker could load the model.
"""

from __future__ import annotations

import bisect
import collections
import copy
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.index.ingest import (
    AUDIO_SUFFIXES,
    AudioEmbedder,
    IngestReport,
    _begin_audio_run,
    _fail,
    _named_todo,
    _progress,
    changed_since,
    changed_while_read,
    find_files,
    sha256_file,
)
from audiomoment.index.store import ArchiveIndex, ModelSpec, NewRecording

if TYPE_CHECKING:
    from audiomoment.index.embedders import ClapAudioEmbedder

#: What to run when Ray is missing.
RAY_INSTALL = "pip install 'audiomoment[ray]'"
#: Windows per piece by default: 10 minutes at the 1-s hop.
PIECE_WINDOWS = 600
#: Calls queued on one worker at a time (the next piece waits there while one runs).
QUEUE_PER_WORKER = 2
#: Recordings committed together at most (one segment file each commit).
COMMIT_RECORDINGS = 256
#: Seconds the run waits, once every worker up was lost and none restarted, before it stops.
WORKER_TIMEOUT_S = 600.0

#: ``embedder_factory(device)``: the embedder of one worker; device "cuda" when the worker
#: was given GPUs (Ray restricts it to them), else "cpu".
EmbedderFactory = Callable[[str], AudioEmbedder]


@runtime_checkable
class PieceEmbedder(Protocol):
    """An audio embedder that can embed any span of a recording's windows.

    ``embed_windows(path, a, b)`` for consecutive spans, joined in order and given to
    ``finisher()``, must equal ``embed(path)`` bit for bit.
    """

    spec: ModelSpec
    batch_size: int

    def duration_s(self, path: Path) -> float:
        """The file's length in seconds (InputError if unreadable)."""
        ...

    def embed(self, path: Path) -> NDArray[np.float32]:
        """(T, dim) window embeddings of the whole file."""
        ...

    def window_count(self, path: Path) -> int:
        """Windows the file's header promises (the decoded stream may give one more or
        fewer: the last piece runs to the end, whatever it is)."""
        ...

    def embed_windows(self, path: Path, first: int, stop: int | None) -> NDArray[np.float32]:
        """(n, k) rows of windows ``first`` .. ``stop - 1`` (None: to the end), before the
        finisher; n = 0 when the span lies past the end."""
        ...

    def finisher(self) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        """A picklable function: the joined rows (T, k) of a file -> its (T, dim) embeddings."""
        ...


def _identity(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    return rows


class ProjectRows:
    """The finisher of MS-CLAP pieces: (T, 768) encoder rows -> (T, 1024) joint space."""

    def __init__(self, head: Any) -> None:
        self.head = head

    def __setstate__(self, state: dict[str, Any]) -> None:
        # arrays that arrive through Ray's object store are read-only; torch wants its own
        self.head = copy.deepcopy(state["head"])

    def __call__(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        from audiomoment.clap.projection import project

        return np.asarray(project(rows, self.head), dtype=np.float32)


class ClapPieces:
    """:class:`~audiomoment.index.embedders.ClapAudioEmbedder` cut into pieces: the encoder
    on a span of windows (its batches as in the whole file), the projection at the end."""

    def __init__(self, embedder: ClapAudioEmbedder) -> None:
        self.inner = embedder
        self.spec = embedder.spec
        self.batch_size = embedder.batch_size

    def duration_s(self, path: Path) -> float:
        return self.inner.duration_s(path)

    def embed(self, path: Path) -> NDArray[np.float32]:
        return self.inner.embed(path)

    def window_count(self, path: Path) -> int:
        from audiomoment.io.audio import audio_info, expected_windows

        return expected_windows(audio_info(path, self.inner.windows), self.inner.windows)

    def embed_windows(self, path: Path, first: int, stop: int | None) -> NDArray[np.float32]:
        from audiomoment.io.audio import iter_window_range

        encoder = self.inner.model.require_audio()
        rows = [encoder.features(batch) for batch in
                iter_window_range(path, first, stop, self.batch_size, self.inner.windows)]
        if not rows:
            return np.zeros((0, self.inner.model.heads["audio"].in_dim), np.float32)
        return np.concatenate(rows).astype(np.float32, copy=False)

    def finisher(self) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        return ProjectRows(self.inner.model.heads["audio"])


@dataclass(frozen=True)
class ClapFactory:
    """Loads MS-CLAP 2023's audio side on a worker (an ``embedder_factory``).

    checkpoint : the checkpoint file (the same path on every node). checkpoint_sha256 : its
    digest (computed once by the driver). precision : "float32" or "bfloat16". threads :
    torch's CPU threads (None: Ray's setting, the worker's CPUs). batch_size : windows per
    forward pass. On device "cuda" (a worker given GPUs) where torch sees no GPU it raises
    InputError (no fallback to the CPU): the worker does not start.
    """

    checkpoint: str
    checkpoint_sha256: str
    precision: str = "float32"
    threads: int | None = None
    batch_size: int = 8

    def __call__(self, device: str) -> ClapAudioEmbedder:
        from audiomoment.clap.model import load_clap
        from audiomoment.index.embedders import ClapAudioEmbedder

        model = load_clap(self.checkpoint, audio=True, text=False,
                          precision=self.precision,  # type: ignore[arg-type]
                          threads=self.threads, device=device)
        return ClapAudioEmbedder(model, self.checkpoint_sha256, batch_size=self.batch_size)


def as_piece_embedder(embedder: AudioEmbedder) -> AudioEmbedder:
    """``embedder`` able to embed pieces where it can (MS-CLAP), else as it is."""
    from audiomoment.index.embedders import ClapAudioEmbedder

    if isinstance(embedder, ClapAudioEmbedder):
        return ClapPieces(embedder)
    return embedder


def piece_spans(n_windows: int, piece_windows: int, batch_size: int = 1
                ) -> list[tuple[int, int | None]]:
    """Spans [first, stop) that cover a recording of about ``n_windows`` windows in order.

    Pieces are ``piece_windows`` long, rounded down to a multiple of ``batch_size`` (at
    least one batch); the last one is open (stop None) so that it takes whatever the
    stream gives.
    """
    if piece_windows < 1 or batch_size < 1:
        raise ValueError("piece_windows and batch_size must be >= 1")
    step = max(batch_size, piece_windows // batch_size * batch_size)
    starts = list(range(0, max(n_windows, 1), step))
    spans: list[tuple[int, int | None]] = list(itertools.pairwise(starts))
    return [*spans, (starts[-1], None)]


# ---------------------------------------------------------------------- the workers


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker tells the driver once its model is loaded."""

    spec: ModelSpec
    batch_size: int
    splittable: bool
    finisher: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    host: str
    device: str


@dataclass(frozen=True)
class PieceResult:
    """One piece's rows (None when the file could not be read: ``error`` says why),
    the file's sha256 when asked for, and the Ray node id of the worker that read it."""

    rows: NDArray[np.float32] | None
    error: str | None = None
    digest: str | None = None
    node: str = ""


def _node_id() -> str:
    """The Ray node this process runs on ("" outside a Ray worker)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:  # only a label for the report
        return ""


def _reason(path: Path, exc: Exception) -> str:
    if isinstance(exc, InputError):
        return str(exc)
    return f"{path}: {getattr(exc, 'strerror', None) or exc}"


class EmbedWorker:
    """A Ray actor's body: one embedder, loaded once, for all the pieces it is given."""

    def __init__(self, factory: EmbedderFactory, device: str) -> None:
        self.device = device
        self.embedder = as_piece_embedder(factory(device))
        self.splittable = isinstance(self.embedder, PieceEmbedder)
        self.node = _node_id()

    def describe(self) -> WorkerInfo:
        import socket

        emb = self.embedder
        return WorkerInfo(
            spec=emb.spec, batch_size=int(getattr(emb, "batch_size", 1)),
            splittable=self.splittable,
            finisher=emb.finisher() if isinstance(emb, PieceEmbedder) else _identity,
            host=socket.gethostname(), device=self.device,
        )

    def probe(self, paths: Sequence[Path]) -> list[tuple[float, int] | str]:
        """(duration_s, windows) per file, or the reason it cannot be read."""
        out: list[tuple[float, int] | str] = []
        for path in paths:
            try:
                duration = float(self.embedder.duration_s(path))
                if isinstance(self.embedder, PieceEmbedder):
                    n = int(self.embedder.window_count(path))
                else:
                    n = max(1, math.floor(duration / self.embedder.spec.hop_s))
                out.append((duration, n))
            except (InputError, OSError) as exc:
                out.append(_reason(path, exc))
        return out

    def embed(self, path: Path, first: int, stop: int | None, digest: bool) -> PieceResult:
        """The rows of windows [first, stop) (the whole file when it is not split)."""
        try:
            if isinstance(self.embedder, PieceEmbedder):
                rows = self.embedder.embed_windows(path, first, stop)
            else:
                rows = self.embedder.embed(path)
            return PieceResult(np.asarray(rows), digest=sha256_file(path) if digest else None,
                               node=self.node)
        except (InputError, OSError) as exc:
            return PieceResult(None, error=_reason(path, exc), node=self.node)


# ---------------------------------------------------------------------- the driver


@dataclass
class ClusterReport(IngestReport):
    """What one run on a cluster did: :class:`IngestReport`, the workers that took part,
    the pieces embedded (``nodes``: how many on each Ray node, by node id), the pieces run
    again after their worker was lost (``retried``), and the throughput."""

    workers: int = 0
    pieces: int = 0
    embed_seconds: float = 0.0
    nodes: dict[str, int] = field(default_factory=dict)
    retried: int = 0

    @property
    def windows_per_s(self) -> float:
        """Windows embedded per second of the embedding phase, all workers together."""
        return self.windows / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def summary(self) -> str:
        nodes = f", {len(self.nodes)} nodes" if len(self.nodes) > 1 else ""
        return (super().summary()
                + f" ({self.windows_per_s:.1f} windows/s on {self.workers} workers{nodes})")


def import_ray() -> Any:
    """The ``ray`` module, or InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"indexing on a Ray cluster needs Ray: {RAY_INSTALL}") from None
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (None or "": $RAY_ADDRESS, else a new local one);
    True when this call started Ray (and must shut it down)."""
    if ray.is_initialized():
        return False
    # the workers' output stays in Ray's logs: the driver reports their failures itself, in
    # one line (a worker's traceback would otherwise be copied to this terminal)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if not address and "RAY_ADDRESS" not in os.environ:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--ray {address or ''}: cannot join a Ray cluster ({first})") from None
    return True


def _resources(ray: Any, workers: int | None, gpus: float | None, cpus: float
               ) -> tuple[int, float, float]:
    """(workers, GPUs per worker, CPUs per worker) for this cluster."""
    total = ray.cluster_resources()
    cpu_total, gpu_total = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    if gpus is None:
        gpus = 1.0 if gpu_total >= 1 else 0.0
    if gpus < 0 or not cpus > 0:
        raise InputError(f"GPUs per worker must be >= 0 and CPUs > 0, got {gpus:g}, {cpus:g}")
    if workers is not None and workers < 1:
        raise InputError(f"--ray-workers must be >= 1, got {workers}")
    if gpus > gpu_total:
        raise InputError(f"the Ray cluster offers {gpu_total:g} GPUs; a worker asks for "
                         f"{gpus:g} (--ray-gpus-per-worker)")
    if cpus > cpu_total:
        raise InputError(f"the Ray cluster offers {cpu_total:g} CPUs; a worker asks for "
                         f"{cpus:g}")
    fit = math.floor(cpu_total / cpus + 1e-9)
    if gpus > 0:
        fit = min(fit, math.floor(gpu_total / gpus + 1e-9))
    return (workers or max(1, fit)), gpus, cpus


@dataclass
class _File:
    path: Path
    name: str
    st: os.stat_result
    digest: str
    duration: float
    spans: list[tuple[int, int | None]]
    parts: list[NDArray[np.float32] | None] = field(default_factory=list)
    error: str | None = None
    hours_shown: float = 0.0

    @property
    def done(self) -> bool:
        return self.error is not None or all(p is not None for p in self.parts)


def index_audio_ray(
    roots: Sequence[str | os.PathLike[str]],
    db: str | os.PathLike[str],
    embedder_factory: EmbedderFactory,
    address: str | None = None,
    *,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1.0,
    piece_windows: int = PIECE_WINDOWS,
    max_retries: int = 3,
    worker_timeout_s: float = WORKER_TIMEOUT_S,
    progress: bool | None = None,
    neutral: NDArray[np.floating] | None = None,
    on_commit: Callable[[str], None] | None = None,
) -> ClusterReport:
    """Index every audio file under ``roots`` into ``db`` with the workers of a Ray cluster.

    The result is the index :func:`~audiomoment.index.ingest.index_audio` makes with the
    embedder ``embedder_factory`` returns (see the module docstring). ``address``: the
    cluster ("host:6379", "auto", "ray://..."; None: $RAY_ADDRESS, else a local cluster
    started for the run; unused when Ray is already initialised). ``workers``: how many
    (default: as many as the cluster's CPUs, or GPUs, allow). ``gpus_per_worker``: whole or
    fractional GPUs per worker (None: 1 when the cluster has GPUs, else 0).
    ``piece_windows``: windows per piece. ``max_retries``: how often a piece is run again
    after its worker died or its node was lost (then the file is listed as a failure).
    ``worker_timeout_s``: how long the run waits once every worker that was up is lost
    (none restarted: no node left with room) before it stops with InputError; what was
    committed stays. (At the start, the run waits for the first worker as long as Ray
    takes to place it and load its model.) ``neutral``, ``on_commit``: as in
    ``index_audio``.
    """
    ray = import_ray()
    t0 = time.perf_counter()
    files = find_files(roots, AUDIO_SUFFIXES)
    report = ClusterReport()
    started = _connect(ray, address)
    actors: list[Any] = []
    try:
        n, gpus, cpus = _resources(ray, workers, gpus_per_worker, cpus_per_worker)
        with ArchiveIndex(db).writer() as writer:
            # a lost worker is restarted by Ray; its pieces are run again by the driver, on
            # whichever workers are up (a task retried by Ray would wait for that one worker)
            actor_cls = ray.remote(EmbedWorker).options(
                num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
            device = "cuda" if gpus > 0 else "cpu"
            actors = [actor_cls.remote(embedder_factory, device) for _ in range(n)]
            pool = _Pool(ray, actors, worker_timeout_s)
            info = pool.first()
            writer.claim_spec(info.spec)
            plan = _begin_audio_run(writer, files, roots, report, neutral)
            probed = _probe(pool, [p for p, *_ in plan.todo], max_retries)
            durations, counts = {}, {}
            for path, _, st, _ in plan.todo:
                got = probed[path]
                if isinstance(got, str):
                    _fail(writer, report, path, st, got)
                else:
                    durations[path], counts[path] = got
            todo = [
                _File(p, name, st, digest, durations[p],
                      piece_spans(counts[p], piece_windows, info.batch_size)
                      if info.splittable else [(0, None)])
                for p, name, st, digest in _named_todo(writer, plan, durations)
            ]
            for f in todo:
                f.parts = [None] * len(f.spans)
            run = _Run(pool, info, writer, report, todo, on_commit, max_retries,
                       piece_windows)
            with _progress(sum(durations.values()) / 3600, len(todo), progress) as bar:
                run.loop(bar)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    report.seconds = time.perf_counter() - t0
    return report


class _Pool:
    """The workers, which of them have loaded their model (``ready``), and those being
    started or restarted (``starting``: their ``describe`` call -> index)."""

    def __init__(self, ray: Any, actors: list[Any], timeout_s: float = WORKER_TIMEOUT_S
                 ) -> None:
        self.ray, self.actors, self.timeout_s = ray, actors, timeout_s
        self.ready: set[int] = set()
        self.starting = {a.describe.remote(): i for i, a in enumerate(actors)}
        self.errors: list[str] = []
        self.lost_count = 0  # workers lost while they were up
        #: per worker, how often it was lost (and restarted): tells a call to the worker
        #: that died from a call to the worker Ray put in its place
        self.restarts = [0] * len(actors)
        self.none_up_since: float | None = None  # the last worker up was lost then

    def first(self) -> WorkerInfo:
        """Wait for the first worker that loads its model; InputError when none can."""
        while self.starting:
            done, _ = self.ray.wait(list(self.starting), num_returns=1, timeout=1.0)
            if not done:
                self._check_stalled()
                continue
            info = self._started(done[0])
            if info is not None:
                return info
        cause = self.errors[0] if self.errors else "no worker"
        raise InputError(f"no Ray worker could load the embedder ({cause})")

    def _started(self, ref: Any) -> WorkerInfo | None:
        i = self.starting.pop(ref)
        try:
            info: WorkerInfo = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            # this one could not load the embedder; the others go on
            self.errors.append(_last_line(exc, "the worker did not start"))
            return None
        self.ready.add(i)
        self.none_up_since = None
        return info

    def lost(self, i: int) -> None:
        """Worker ``i`` failed a call (its process or node died, or it cannot be reached):
        no more work for it until Ray has restarted it and its model is loaded again."""
        if i not in self.ready:
            return
        self.ready.discard(i)
        self.lost_count += 1
        self.restarts[i] += 1
        if not self.ready and self.none_up_since is None:
            self.none_up_since = time.monotonic()
        # answered once the restarted actor is up (Ray holds the call until then)
        self.starting[self.actors[i].describe.options(max_task_retries=-1).remote()] = i

    def _check_stalled(self) -> None:
        """InputError when no worker has been up for ``timeout_s`` s, or none can be."""
        if self.ready:
            return
        cause = f"; last error: {self.errors[-1]}" if self.errors else ""
        if not self.starting:
            raise InputError(f"no Ray worker is left to embed the audio{cause}")
        since = self.none_up_since
        if since is not None and time.monotonic() - since > self.timeout_s:
            raise InputError(
                f"no Ray worker has been up for {self.timeout_s:g} s ({self.lost_count} lost, "
                f"none restarted: nodes gone?){cause}; what was committed stays, run again "
                f"to go on")

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        """Those of ``refs`` that are done (after ``timeout`` s at most), noting meanwhile
        the workers that started; InputError when the pool has stalled (see
        :meth:`_check_stalled`)."""
        self._check_stalled()
        waiting = refs + list(self.starting)
        if not waiting:
            raise RuntimeError("nothing in flight and no worker starting")
        done, _ = self.ray.wait(waiting, num_returns=1, timeout=timeout)
        if done:
            more, _ = self.ray.wait(waiting, num_returns=len(waiting), timeout=0)
            done = list(dict.fromkeys(done + more))
        wanted = set(refs)
        for ref in done:
            if ref in self.starting:
                self._started(ref)
        return [ref for ref in done if ref in wanted]


#: How Ray's traceback names the project's own one-line errors (the name is left out).
_INPUT_ERROR = f"{InputError.__module__}.{InputError.__qualname__}: "


def _last_line(exc: BaseException, default: str) -> str:
    """The last line of a Ray error (a worker's exception: its type and message), the
    message alone for an InputError; ``default`` when empty."""
    text = str(exc).strip()
    line = text.splitlines()[-1] if text else default
    return line.removeprefix(_INPUT_ERROR)


def _probe(pool: _Pool, paths: list[Path], max_retries: int = 3
           ) -> dict[Path, tuple[float, int] | str]:
    """Every file's duration and window count (or why it cannot be read), read by the
    workers that are up, a chunk of files at a time each; a chunk whose worker was lost is
    read again by another (``max_retries`` times at most, then its files are failures)."""
    size = max(1, min(256, math.ceil(len(paths) / (4 * len(pool.actors)))))
    chunks = collections.deque((paths[i : i + size], 0) for i in range(0, len(paths), size))
    inflight: dict[Any, tuple[list[Path], int, int]] = {}  # ref -> (chunk, tries, actor)
    out: dict[Path, tuple[float, int] | str] = {}
    while chunks or inflight:
        for a in sorted(pool.ready - {a for *_, a in inflight.values()}):
            if chunks:
                chunk, tries = chunks.popleft()
                inflight[pool.actors[a].probe.remote(chunk)] = (chunk, tries, a)
        for ref in pool.wait(list(inflight), 1.0):
            chunk, tries, a = inflight.pop(ref)
            try:
                answers = pool.ray.get(ref)
            except pool.ray.exceptions.RayActorError as exc:
                pool.lost(a)
                if tries < max_retries:
                    chunks.appendleft((chunk, tries + 1))
                    continue
                why = _last_line(exc, "worker lost")
                answers = [f"{p}: the worker reading it died {tries + 1} times ({why})"
                           for p in chunk]
            out.update(zip(chunk, answers, strict=True))
    return out


class _Run:
    """The driver's loop: hand out pieces, gather rows, commit recordings in order."""

    def __init__(self, pool: _Pool, info: WorkerInfo, writer: Any, report: ClusterReport,
                 todo: list[_File], on_commit: Callable[[str], None] | None,
                 max_retries: int, piece_windows: int) -> None:
        self.pool, self.ray, self.actors = pool, pool.ray, pool.actors
        self.info, self.writer, self.report, self.todo = info, writer, report, todo
        self.on_commit, self.max_retries = on_commit, max_retries
        self.queue = collections.deque(
            (i, k) for i, f in enumerate(todo) for k in range(len(f.spans)))
        self.tries: collections.Counter[tuple[int, int]] = collections.Counter()
        self.unstarted: set[Any] = set()  # calls of a lost worker that had not started
        #: ref -> (file, piece, actor, the actor's restarts when the call was made)
        self.inflight: dict[Any, tuple[int, int, int, int]] = {}
        self.load = [0] * len(self.actors)
        self.cursor = 0  # the first file not committed yet
        self.ahead: dict[int, int] = {}  # files past the cursor: windows handed out
        #: windows handed out past the cursor file at most (bounds the driver's memory)
        self.limit = 4 * len(self.actors) * max(piece_windows, 1)
        self.first_dispatch: float | None = None
        self.committed = 0
        self.embedded = 0  # windows the workers sent back (for the throughput)
        self.used: set[int] = set()  # workers that sent back a piece

    def _estimate(self, i: int, k: int) -> int:
        first, stop = self.todo[i].spans[k]
        return (stop - first) if stop is not None else max(
            1, round(self.todo[i].duration / self.info.spec.hop_s) - first)

    def _dispatch(self) -> None:
        while self.queue:
            free = [a for a in self.pool.ready if self.load[a] < QUEUE_PER_WORKER]
            if not free:
                return
            i, k = self.queue[0]
            if self.todo[i].error is not None:
                self.queue.popleft()
                continue
            if i != self.cursor and sum(self.ahead.values()) >= self.limit:
                return
            self.queue.popleft()
            a = min(free, key=lambda x: self.load[x])
            first, stop = self.todo[i].spans[k]
            ref = self.actors[a].embed.remote(self.todo[i].path, first, stop,
                                              k == 0 and not self.todo[i].digest)
            self.inflight[ref] = (i, k, a, self.pool.restarts[a])
            self.load[a] += 1
            if i != self.cursor:
                self.ahead[i] = self.ahead.get(i, 0) + self._estimate(i, k)
            if self.first_dispatch is None:
                self.first_dispatch = time.perf_counter()

    def _receive(self, ref: Any, bar: Any) -> None:
        i, k, a, restarts = self.inflight[ref]
        f = self.todo[i]
        errors = self.ray.exceptions
        try:
            result: PieceResult = self.ray.get(ref)
        except (errors.RayActorError, errors.ObjectLostError) as exc:
            # the worker died, or its node (with the rows of a piece it had done): the
            # piece goes to the next worker free
            if isinstance(exc, errors.RayActorError) and restarts == self.pool.restarts[a]:
                # first news of this loss (a call made to the worker since it was last lost:
                # the failure of an older call, seen once it was restarted and up again, is
                # no news): a worker runs its calls in order, so the oldest of its pieces was
                # running; those queued behind it never started
                mine = [r for r, (_, _, b, n) in self.inflight.items()
                        if b == a and n == restarts]
                self.unstarted.update(mine[1:])
                self.pool.lost(a)
            ran = isinstance(exc, errors.RayActorError) and ref not in self.unstarted
            self.unstarted.discard(ref)
            del self.inflight[ref]
            self.load[a] -= 1
            if i in self.ahead:
                self.ahead[i] -= self._estimate(i, k)
            # only a piece that was running when its worker died counts against its file
            self.tries[i, k] += ran
            if self.tries[i, k] <= self.max_retries and f.error is None:
                # back in its place: the queue stays in file order, the cursor's file first
                bisect.insort(self.queue, (i, k))
                self.report.retried += 1
                return
            result = PieceResult(None, error=f"{f.path}: the worker embedding it died "
                                             f"{self.tries[i, k]} times "
                                             f"({_last_line(exc, 'worker lost')})")
        else:
            del self.inflight[ref]
            self.load[a] -= 1
        if f.error is not None:
            return
        if result.error is not None:
            f.error = result.error
            return
        assert result.rows is not None
        f.parts[k] = result.rows
        if result.digest:
            f.digest = result.digest
        self.embedded += len(result.rows)
        self.used.add(a)
        self.report.pieces += 1
        self.report.nodes[result.node] = self.report.nodes.get(result.node, 0) + 1
        shown = min(len(result.rows) * self.info.spec.hop_s / 3600,
                    f.duration / 3600 - f.hours_shown)
        f.hours_shown += shown
        bar.update(round(shown, 4))

    def _commit(self, bar: Any) -> None:
        batch: list[NewRecording] = []
        names = self.writer.names()
        while self.cursor < len(self.todo) and self.todo[self.cursor].done:
            f = self.todo[self.cursor]
            self.cursor += 1
            self.ahead.pop(self.cursor, None)
            bar.update(round(f.duration / 3600 - f.hours_shown, 4))
            rows = None if f.error else self.info.finisher(
                np.concatenate([p for p in f.parts if p is not None]))
            f.parts = []
            if rows is not None and (rows.ndim != 2 or len(rows) == 0):
                f.error = f"{f.path}: no windows to embed"
            if f.error is None and changed_since(f.path, f.st):
                f.error = changed_while_read(f.path)
            if f.error is not None:
                _fail(self.writer, self.report, f.path, f.st, f.error)
                continue
            assert rows is not None
            batch.append(NewRecording(
                name=f.name, embeddings=rows, duration_s=f.duration, content_sha256=f.digest,
                source=str(f.path), size=f.st.st_size, mtime_ns=f.st.st_mtime_ns,
                has_audio=True,
            ))
            self.report.windows += len(rows)
            if len(batch) >= COMMIT_RECORDINGS:
                self._add(batch, names)
                names = self.writer.names()
                batch = []
        self._add(batch, names)
        wps = (self.embedded / (time.perf_counter() - self.first_dispatch)
               if self.first_dispatch else 0.0)
        bar.set_postfix_str(f"{self.committed}/{len(self.todo)} files, {wps:.1f} windows/s, "
                            f"{len(self.pool.ready)} workers")

    def _add(self, batch: list[NewRecording], names: set[str]) -> None:
        if not batch:
            return
        self.writer.add(batch)
        for r in batch:
            (self.report.replaced if r.name in names else self.report.added).append(r.name)
            self.committed += 1
        if self.on_commit is not None:
            for r in batch:
                self.on_commit(r.name)

    def loop(self, bar: Any) -> None:
        self._commit(bar)
        while self.cursor < len(self.todo):
            self._dispatch()
            for ref in self.pool.wait(list(self.inflight), 1.0):
                self._receive(ref, bar)
            self._commit(bar)
        if self.first_dispatch is not None:
            self.report.embed_seconds = time.perf_counter() - self.first_dispatch
        self.report.workers = len(self.used | self.pool.ready)
