"""Helpers of the archive-index tests: a small deterministic audio embedder, generated WAV
files, planted-event archives and the exhaustive search the bounded one must equal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.index.store import ModelSpec, Snapshot
from audiomoment.io.audio import audio_info
from audiomoment.method.localize import localize_traces

#: Sample rate of the generated WAV files, Hz (small: the files are written and read often).
SR = 8000
#: Features per window of the test embedder before its projection.
N_FEATURES = 16
TEST_SPEC = ModelSpec(model="test embedder", checkpoint_sha256=None, dim=12)


class CountingEmbedder:
    """A deterministic stand-in for the CLAP audio embedder (the ``AudioEmbedder`` protocol).

    Per 1-s window (hop 1 s, at the file's own rate): log RMS of 8 equal sub-blocks and log
    energy of 8 equal frequency bands (16 features), times a fixed random (16, dim) matrix,
    L2-normalised. Every call of :meth:`embed` is recorded in ``calls`` (file names).
    """

    def __init__(self, spec: ModelSpec = TEST_SPEC, seed: int = 0) -> None:
        self.spec = spec
        self.matrix = np.random.default_rng(seed).normal(size=(N_FEATURES, spec.dim))
        self.calls: list[str] = []

    def duration_s(self, path: Path) -> float:
        return audio_info(path).duration_s

    def embed(self, path: Path,
              on_windows: Callable[[int], None] | None = None) -> NDArray[np.float32]:
        self.calls.append(Path(path).name)
        rows = window_embeddings(path, self.matrix)
        if on_windows is not None:
            on_windows(len(rows))
        return rows


def window_embeddings(path: Path, matrix: NDArray[np.float64]) -> NDArray[np.float32]:
    """(T, dim) unit rows of the test embedder for one file; InputError when unreadable."""
    import soundfile as sf

    try:
        x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot decode audio ({type(exc).__name__})") from None
    x = x.mean(axis=1)
    if len(x) < sr:
        raise InputError(f"{path}: shorter than one window")
    n = (len(x) - sr) // sr + 1
    feats = np.empty((n, N_FEATURES))
    for t in range(n):
        w = x[t * sr : (t + 1) * sr]
        rms = np.sqrt(np.mean(np.reshape(w[: sr // 8 * 8], (8, -1)) ** 2, axis=1))
        spec = np.abs(np.fft.rfft(w)) ** 2
        bands = np.array([b.sum() for b in np.array_split(spec, 8)])
        feats[t] = np.log(1e-9 + np.concatenate((rms, bands)))
    emb = feats @ matrix
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def write_wav(path: Path, seed: int, seconds: float = 2.0, sr: int = SR) -> Path:
    """A WAV file of noise and a tone (both drawn from ``seed``), 16-bit PCM."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    tone = np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * rng.uniform(0.1, 0.5)
    envelope = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)
    x = 0.3 * rng.uniform(0.05, 1.0) * rng.normal(size=t.size) + tone * envelope
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x / 3, -1, 1), sr, subtype="PCM_16")
    return path


def write_folder(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` WAV files ``f00.wav``... of 2-4 s under ``folder``."""
    lengths = np.random.default_rng(seed).integers(2, 5, size=n)
    return [write_wav(folder / f"f{i:02d}.wav", seed * 1000 + i, float(lengths[i]))
            for i in range(n)]


def unit(x: NDArray[np.floating]) -> NDArray[np.float64]:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class PlantedArchive:
    """Recordings of unit rows with events planted along known directions.

    items : (name, (T, dim) float32 rows, duration_s) as ``index_embeddings`` takes them.
    directions : (D, dim) unit event directions. events : name -> [(direction, first, stop)].
    neutral : (dim,) the neutral direction (the rows' shared background).
    """

    items: list[tuple[str, NDArray[np.float32], float]]
    directions: NDArray[np.float64]
    events: dict[str, list[tuple[int, int, int]]]
    neutral: NDArray[np.float64]


def planted_archive(
    rng: np.random.Generator, n_recordings: int, dim: int = 24, n_directions: int = 3,
    lengths: tuple[int, int] = (4, 60), event_rate: float = 0.5, strength: float = 2.5,
) -> PlantedArchive:
    """A random archive: per recording ``T`` windows (uniform in ``lengths``), background +
    noise, and with probability ``event_rate`` per direction an event of 2-8 windows."""
    directions = unit(rng.normal(size=(n_directions, dim)))
    background = unit(rng.normal(size=dim))
    items, events = [], {}
    for r in range(n_recordings):
        name = f"rec{r:03d}"
        t = int(rng.integers(lengths[0], lengths[1] + 1))
        x = rng.normal(size=(t, dim)) + rng.uniform(0.5, 2.0) * background
        planted = []
        for d in range(n_directions):
            if rng.random() < event_rate and t >= 3:
                a = int(rng.integers(0, t - 1))
                b = min(t, a + int(rng.integers(2, 9)))
                x[a:b] += strength * rng.uniform(0.7, 1.3) * np.sqrt(dim) / 3 * directions[d]
                planted.append((d, a, b))
        events[name] = planted
        # some recordings end part-way through their last window
        duration = t - float(rng.choice([0.0, 0.0, 0.25, 0.5]))
        items.append((name, unit(x).astype(np.float32), max(duration, 1.0)))
    return PlantedArchive(items, directions, events, background)


@dataclass(frozen=True)
class Expected:
    """One moment of the exhaustive search (``score``: the one of the ranking asked for)."""

    recording_id: int
    recording: str
    start_s: float
    end_s: float
    z: float
    report_score: float
    score: float = float("nan")


def all_moments(
    snapshot: Snapshot, trace: NDArray[np.float64], config: LocalizeConfig,
    per_recording: int | None = None,
) -> list[Expected]:
    """Every moment of every recording of ``snapshot``, by brute force: each recording
    localised alone, each moment's calibrated score computed from its definition.

    ``trace``: (N,) the query's trace over every window of the snapshot, recordings one after
    the other. Calibrated score z = (max smoothed trace over the frames the moment overlaps -
    mean of ``trace``) / its standard deviation. Recordings of fewer than 2 windows have no
    moments; a recording gives its first ``per_recording`` (default ``max_windows``).
    """
    mu, sigma = float(np.mean(trace)), float(np.std(trace)) or 1.0
    hop = snapshot.spec.hop_s
    cap = per_recording or config.max_windows
    found = []
    offset = 0
    for rec in snapshot.recordings:
        part = trace[offset : offset + rec.n_windows]
        offset += rec.n_windows
        if rec.n_windows < 2:
            continue
        (res,) = localize_traces([part], [rec.duration_s], config.with_(hop_s=hop))
        for start, end, report in res.windows[:cap].tolist():
            frames = [i for i in range(rec.n_windows) if i * hop < end and (i + 1) * hop > start]
            z = (max(res.smoothed[i] for i in frames) - mu) / sigma
            found.append(Expected(rec.id, rec.name, start, end, z, report))
    return found


def rank_moments(moments: Sequence[Expected], ranking: str, top: int) -> list[Expected]:
    """The ``top`` moments by z ("calibrated") or by the report's score ("report"), best
    first; ties by recording id, then start."""
    def score(m: Expected) -> float:
        return m.z if ranking == "calibrated" else m.report_score

    ordered = sorted(moments, key=lambda m: (-score(m), m.recording_id, m.start_s))
    return [Expected(m.recording_id, m.recording, m.start_s, m.end_s, m.z, m.report_score,
                     score(m)) for m in ordered[:top]]


def moment_tuples(moments: Sequence[Any]) -> list[tuple[str, float, float]]:
    """(recording, start, end) of ArchiveMoment or Expected rows."""
    return [(m.recording, float(m.start_s), float(m.end_s)) for m in moments]
