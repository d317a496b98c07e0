"""A fast SIMULATED archive of window embeddings in the 1024-d joint space, for index benchmarks.

An archive index scores every 1-s window of thousands of recordings for a query. This module
draws such an archive directly in the joint (projected, L2-normalised) space, with no
projection heads, recording by recording, so that a thousand hours (3.6 million windows) can
be generated in minutes with the memory of one recording at a time.

Generative model (1024-d joint space), per recording
----------------------------------------------------
* duration log-uniform in ``duration_range_s`` (minutes to an hour), one window per second,
  ``T = floor(duration)``;
* ``b_t g``: the shared background direction ``g`` with a slowly varying strength
  (log-normal random walk, as in :mod:`audiomoment.testing.simulate`);
* a constant ambience direction, drawn per recording;
* AR(1) content noise in a ``content_dim``-dimensional content subspace (orthogonal to g);
  it and the sensor noise are drawn from i.i.d. uniform entries of matched variance, several
  times faster than Gaussian ones and close to Gaussian once filtered and projected;
* sensor noise in all 1024 dimensions (i.i.d. uniform coordinates, norm ``sensor_noise``);
* planted events, about ``events_per_hour`` per hour: each copies a caption from the caption
  pool (the real CASTELLA captions when found, synthetic Zipf captions otherwise), takes the
  concept words of it (:mod:`audiomoment.testing.concepts`), and adds
  ``a_j (sqrt(s) m + sqrt(1 - s) d)`` over each of its windows ``j``, where ``m`` is the unit
  mix of the caption's concept directions, ``d`` a detail direction of its own and
  ``s = concept_share``; ``a_j = snr * exp(amplitude_jitter * N(0, 1))``;
* every row is then L2-normalised.

A query for a caption is ``unit(m + query_noise * v + alpha * g)`` with a text-only direction
``v`` (:meth:`ArchiveSpace.query_embedding`); the neutral embedding is the normalised mean of
three "neutral phrases" ``unit(g + neutral_spread * w_i)``. So the right answers to a search
for a caption are known: the planted events that share its concepts
(:meth:`PlantedEvent.share`), wherever they are.

Each recording draws from a random stream of its own (seed, recording index): the archive
does not depend on how it is consumed, and any recording can be regenerated alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from audiomoment.clap.checkpoint import JOINT_DIM
from audiomoment.method.traces import neutral_embedding
from audiomoment.testing.concepts import (
    ConceptVocabulary,
    concept_directions,
    concept_mix,
    synthetic_captions,
    with_concepts,
    word_key,
)
from audiomoment.testing.signals import draw_windows, presence, slow_walk
from audiomoment.testing.sim_config import ANNOTATION_FILES, STREAM_ARCHIVE
from audiomoment.testing.sim_plan import find_shared_data, read_jsonl

# Sub-streams of STREAM_ARCHIVE.
_GEOMETRY, _CAPTIONS, _RECORDING, _QUERY, _CONCEPTS = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ArchiveConfig:
    """Parameters of a simulated archive (the seed is passed apart).

    Attributes
    ----------
    duration_range_s : (min, max) recording duration in seconds, log-uniform.
    events_per_hour : mean number of planted events per hour of recording (Poisson; at least
        one per recording).
    windows_per_event : (min, max) windows of one event.
    window_length_s : (min, max) window length in seconds (log-uniform).
    concept_share : squared-cosine share of the concept mix in an event direction.
    snr : event amplitude in units of the content-noise norm.
    background_strength, background_variation, background_timescale_s : the shared
        background ``g`` and its slow log-normal changes (timescale in seconds).
    ambience_strength : amplitude of the per-recording ambience direction.
    content_noise : norm of the per-window AR(1) noise in the content subspace.
    content_dim : dimension of the content subspace where concepts and events live.
    noise_correlation : AR(1) correlation of the content noise between windows.
    sensor_noise : norm of the isotropic per-window noise.
    amplitude_jitter : log-standard deviation of each event window's amplitude.
    query_noise : weight of a query's text-only direction (concept mix has weight 1).
    query_background_share : mean weight of g in a query; ``query_background_jitter`` its
        relative spread (uniform, +-) across captions.
    neutral_spread : weight of each neutral phrase's own direction next to g.
    caption_preset : whose real annotation files give the caption pool ("castella" or
        "clotho"), when found.
    concept_min_count : least number of pool captions holding a concept word.
    synthetic_pool : number of synthetic captions when no real file is found.
    synthetic_vocabulary, zipf_exponent, caption_words : synthetic captions, as in
        :class:`audiomoment.testing.simulate.SimulationConfig`.
    """

    duration_range_s: tuple[float, float] = (180.0, 3600.0)
    events_per_hour: float = 40.0
    windows_per_event: tuple[int, int] = (1, 6)
    window_length_s: tuple[float, float] = (1.0, 30.0)
    concept_share: float = 0.5
    snr: float = 0.42
    background_strength: float = 1.0
    background_variation: float = 0.5
    background_timescale_s: float = 15.0
    ambience_strength: float = 1.0
    content_noise: float = 1.0
    content_dim: int = 128
    noise_correlation: float = 0.6
    sensor_noise: float = 0.5
    amplitude_jitter: float = 0.3
    query_noise: float = 0.5
    query_background_share: float = 1.0
    query_background_jitter: float = 0.4
    neutral_spread: float = 1.2
    caption_preset: Literal["castella", "clotho"] = "castella"
    concept_min_count: int = 2
    synthetic_pool: int = 4000
    synthetic_vocabulary: int = 400
    zipf_exponent: float = 1.0
    caption_words: tuple[int, int] = (1, 4)

    def __post_init__(self) -> None:
        lo, hi = self.duration_range_s
        if not 1.0 <= lo <= hi:
            raise ValueError(f"duration_range_s must satisfy 1 <= min <= max, got {(lo, hi)}")
        if not self.events_per_hour >= 0:
            raise ValueError("events_per_hour must be >= 0")
        if not 1 <= self.windows_per_event[0] <= self.windows_per_event[1]:
            raise ValueError("windows_per_event must satisfy 1 <= min <= max")
        if not 0 < self.window_length_s[0] <= self.window_length_s[1]:
            raise ValueError("window_length_s must satisfy 0 < min <= max")
        if not 0 <= self.concept_share <= 1:
            raise ValueError("concept_share must lie in [0, 1]")
        if not 1 <= self.content_dim <= JOINT_DIM - 2:
            raise ValueError(f"content_dim must lie in [1, {JOINT_DIM - 2}]")
        if not 0 <= self.noise_correlation < 1:
            raise ValueError("noise_correlation must lie in [0, 1)")
        if not 0 <= self.query_background_jitter <= 1:
            raise ValueError("query_background_jitter must lie in [0, 1]")
        if self.caption_preset not in ("castella", "clotho"):
            raise ValueError(f"caption_preset must be castella or clotho, got "
                             f"{self.caption_preset!r}")
        for name in ("snr", "background_strength", "background_variation", "ambience_strength",
                     "content_noise", "sensor_noise", "amplitude_jitter", "query_noise",
                     "query_background_share", "neutral_spread", "background_timescale_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class PlantedEvent:
    """Ground truth of one planted event.

    Attributes
    ----------
    caption : the caption it copies.
    concepts : the concept words of that caption (empty: an event of its own kind).
    windows : (K, 2) float64, [start_s, end_s] of its windows.
    amplitudes : (K,) float64, the amplitude of each window.
    """

    caption: str
    concepts: tuple[str, ...]
    windows: NDArray[np.float64]
    amplitudes: NDArray[np.float64]

    def share(self, concepts: Sequence[str]) -> float:
        """The share of a query's concept weight that this event holds: |Q & E| / |Q|."""
        query = set(concepts)
        return len(query & set(self.concepts)) / len(query) if query else 0.0


class ArchiveRecording(NamedTuple):
    """One simulated recording: id, duration (s), (T, 1024) float32 L2-normalised window
    embeddings with ``T = floor(duration_s)``, and its planted events (ground truth)."""

    recording_id: str
    duration_s: float
    embeddings: NDArray[np.float32]
    events: tuple[PlantedEvent, ...]

    def windows_for(self, concepts: Sequence[str], min_share: float = 1.0) -> NDArray[np.float64]:
        """(K, 2) windows of the events holding at least ``min_share`` of ``concepts``, sorted.

        ``min_share = 1``: events with all the concepts; any value in (0, 1] accepts events
        with part of them (see :meth:`PlantedEvent.share`).
        """
        if not 0 < min_share <= 1:
            raise ValueError(f"min_share must lie in (0, 1], got {min_share}")
        hits = [e.windows for e in self.events if e.share(concepts) >= min_share]
        if not hits:
            return np.zeros((0, 2))
        w = np.concatenate(hits)
        return w[np.argsort(w[:, 0], kind="stable")]


class ArchiveSpace:
    """The fixed geometry of a simulated archive: directions, captions, neutral embedding.

    Build it with :func:`archive_space`. Attributes: ``seed``, ``config``, ``vocabulary``
    (the concept words), ``captions`` (the caption pool events copy), ``caption_source``,
    ``background`` (1024,) g, ``content`` (1024, C) orthonormal content basis, ``directions``
    {concept word: (1024,) unit}, ``neutral`` (1024,) float32 neutral embedding.
    """

    def __init__(
        self, seed: int, config: ArchiveConfig, captions: list[str], caption_source: str
    ) -> None:
        self.seed = seed
        self.config = config
        self.captions = captions
        self.caption_source = caption_source
        self.vocabulary = ConceptVocabulary.from_captions(captions, config.concept_min_count)
        self.caption_concepts = [self.vocabulary.concepts(c) for c in captions]

        rng = np.random.default_rng([seed, STREAM_ARCHIVE, _GEOMETRY])
        basis, _ = np.linalg.qr(rng.standard_normal((JOINT_DIM, config.content_dim + 1)))
        self.background: NDArray[np.float64] = basis[:, 0]
        self.content: NDArray[np.float64] = basis[:, 1:]
        own = rng.standard_normal((3, JOINT_DIM))
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        phrases = self.background[None, :] + config.neutral_spread * own
        self.neutral: NDArray[np.float32] = neutral_embedding(phrases).astype(np.float32)
        self.directions = concept_directions(
            self.vocabulary.words, self.content, (seed, STREAM_ARCHIVE, _CONCEPTS)
        )
        self._content_rows = np.ascontiguousarray(self.content.T, dtype=np.float32)

    # ------------------------------------------------------------------ queries

    def concepts(self, caption: str) -> tuple[str, ...]:
        """The concept words of a caption (words of the vocabulary only)."""
        return self.vocabulary.concepts(caption)

    def query_embedding(self, query: str | Sequence[str]) -> NDArray[np.float32]:
        """The (1024,) float32 unit query embedding of a caption or of a list of concept words.

        ``unit(m + query_noise * v + alpha * g)``: ``m`` the unit mix of the concepts, ``v``
        and ``alpha`` drawn from a stream seeded by the sorted concept words (the same set of
        concepts, in any order, always gives the same embedding). Raises ValueError when a
        given word is no concept of the archive, or a caption holds none.
        """
        words = tuple(sorted(set(self.concepts(query) if isinstance(query, str) else query)))
        unknown = [w for w in words if w not in self.directions]
        if unknown or not words:
            raise ValueError(f"not concepts of this archive: {unknown or query!r}")
        cfg = self.config
        rng = np.random.default_rng(
            [self.seed, STREAM_ARCHIVE, _QUERY, word_key(" ".join(words))]
        )
        own = rng.standard_normal(JOINT_DIM)
        own /= np.linalg.norm(own)
        alpha = cfg.query_background_share * (
            1.0 + cfg.query_background_jitter * rng.uniform(-1.0, 1.0)
        )
        mix = concept_mix(words, self.directions)
        q = mix + cfg.query_noise * own + alpha * self.background
        return (q / np.linalg.norm(q)).astype(np.float32)

    # ------------------------------------------------------------------ recordings

    def recordings(self, hours: float) -> Iterator[ArchiveRecording]:
        """The recordings of ``hours`` hours of archive, one at a time (see
        :func:`simulate_archive`)."""
        if not hours > 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        remaining = hours * 3600.0
        index = 0
        while remaining >= 1.0:
            rec = self.recording(index, max_duration_s=remaining)
            remaining -= rec.duration_s
            index += 1
            yield rec

    def recording(self, index: int, max_duration_s: float | None = None) -> ArchiveRecording:
        """Recording ``index`` of the archive; its duration is cut to ``max_duration_s``."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, STREAM_ARCHIVE, _RECORDING, index])
        lo, hi = cfg.duration_range_s
        duration = round(float(np.exp(rng.uniform(math.log(lo), math.log(hi)))), 2)
        if max_duration_s is not None:
            duration = min(duration, math.floor(max_duration_s * 100) / 100)
        n = math.floor(duration)
        if n < 1:
            raise ValueError(f"a recording needs at least 1 s, got {duration} s")

        # Planted events: caption, concepts, windows, amplitudes, direction.
        n_events = max(1, int(rng.poisson(cfg.events_per_hour * duration / 3600.0)))
        events: list[PlantedEvent] = []
        directions = np.empty((n_events, JOINT_DIM), dtype=np.float64)
        levels = np.zeros((n, n_events), dtype=np.float32)
        c_dim = cfg.content_dim
        for k in range(n_events):
            pick = int(rng.integers(len(self.captions)))
            concepts = self.caption_concepts[pick]
            windows = draw_windows(rng, duration, cfg.windows_per_event, cfg.window_length_s)
            amps = cfg.snr * np.exp(cfg.amplitude_jitter * rng.standard_normal(len(windows)))
            detail = self.content @ rng.standard_normal(c_dim)
            detail /= np.linalg.norm(detail)
            directions[k] = with_concepts(
                detail, concept_mix(concepts, self.directions), cfg.concept_share
            )
            levels[:, k] = (presence(windows, n) * amps[:, None]).max(axis=0)
            events.append(PlantedEvent(self.captions[pick], concepts, windows, amps))

        # Coefficients (T, 2 + C + K) over rows [g, ambience, content basis, events].
        coeffs = np.empty((n, 2 + c_dim + n_events), dtype=np.float32)
        coeffs[:, 0] = cfg.background_strength * np.exp(
            cfg.background_variation * slow_walk(rng, n, cfg.background_timescale_s)
        )
        coeffs[:, 1] = cfg.ambience_strength * math.exp(0.3 * rng.standard_normal())
        coeffs[:, 2 : 2 + c_dim] = _ar1_rows(rng, n, c_dim, cfg.noise_correlation).T
        coeffs[:, 2 : 2 + c_dim] *= np.float32(cfg.content_noise)
        coeffs[:, 2 + c_dim :] = levels
        ambience = rng.standard_normal(JOINT_DIM)
        rows = np.empty((2 + c_dim + n_events, JOINT_DIM), dtype=np.float32)
        rows[0] = self.background
        rows[1] = ambience / np.linalg.norm(ambience)
        rows[2 : 2 + c_dim] = self._content_rows
        rows[2 + c_dim :] = directions

        out = _uniform_noise(rng, (n, JOINT_DIM))
        out *= np.float32(cfg.sensor_noise / math.sqrt(JOINT_DIM))
        out += coeffs @ rows
        out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
        return ArchiveRecording(f"arch_{index:06d}", duration, out, tuple(events))


def _uniform_noise(rng: np.random.Generator, shape: tuple[int, int]) -> NDArray[np.float32]:
    """Float32 noise of zero mean and unit variance per entry, i.i.d. uniform: ``shape``.

    Several times faster to draw than Gaussian noise; sums and projections of many entries
    are close to Gaussian.
    """
    out = rng.random(shape, dtype=np.float32)
    out -= np.float32(0.5)
    out *= np.float32(math.sqrt(12.0))
    return out


def _ar1_rows(rng: np.random.Generator, n: int, dim: int, rho: float) -> NDArray[np.float32]:
    """Stationary AR(1) noise over ``n`` frames in ``dim`` dimensions, laid out (dim, n).

    Expected squared norm of each frame 1; the innovations are :func:`_uniform_noise` (the
    filter makes each coordinate closer to Gaussian still).
    """
    burn = 20 if rho > 0 else 0
    white = _uniform_noise(rng, (dim, n + burn))
    white *= np.float32(math.sqrt((1.0 - rho * rho) / dim))
    out = lfilter(np.ones(1, np.float32), np.array([1.0, -rho], np.float32), white, axis=-1)
    return out[:, burn:]


def archive_space(
    seed: int = 0,
    config: ArchiveConfig | None = None,
    shared_data: str | os.PathLike[str] | None = None,
) -> ArchiveSpace:
    """The geometry and caption pool of the archive of ``seed`` (see :class:`ArchiveSpace`).

    Captions: every caption of the real annotation files of ``config.caption_preset`` when
    they are found (:func:`audiomoment.testing.sim_plan.find_shared_data`), else
    ``config.synthetic_pool`` synthetic captions.
    """
    config = config or ArchiveConfig()
    folder = find_shared_data(shared_data)
    captions: list[str] = []
    files: list[str] = []
    if folder is not None:
        for rel in ANNOTATION_FILES[config.caption_preset]:
            if (folder / rel).is_file():
                files.append(rel)
                captions += [str(r["query"]) for r in read_jsonl(folder / rel) if "query" in r]
    if captions:
        return ArchiveSpace(seed, config, captions, "real captions: " + ", ".join(files))
    rng = np.random.default_rng([seed, STREAM_ARCHIVE, _CAPTIONS])
    drawn = synthetic_captions(
        rng, config.synthetic_pool, config.synthetic_vocabulary, config.zipf_exponent,
        config.caption_words,
    )
    return ArchiveSpace(seed, config, drawn, "synthetic")


def simulate_archive(
    hours: float,
    seed: int = 0,
    config: ArchiveConfig | None = None,
    shared_data: str | os.PathLike[str] | None = None,
) -> Iterator[ArchiveRecording]:
    """Yield the recordings of a SIMULATED archive of ``hours`` hours, one at a time.

    Each item is an :class:`ArchiveRecording` ``(recording_id, duration_s, embeddings,
    events)``: ``embeddings`` (T, 1024) float32 L2-normalised joint-space window embeddings,
    ``events`` the planted events (ground truth). Durations add up to ``hours`` (the last
    recording is cut short to fit). Only one recording is held at a time, so memory does not
    grow with ``hours``. Query and neutral embeddings of the same archive:
    ``archive_space(seed, config, shared_data)``.
    """
    return archive_space(seed, config, shared_data).recordings(hours)


def describe_archive(space: ArchiveSpace) -> dict[str, Any]:
    """A JSON-ready summary of an archive's geometry and caption pool."""
    vocab = space.vocabulary
    common = sorted(vocab.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    return {
        "simulated": True,
        "seed": space.seed,
        "caption_source": space.caption_source,
        "caption_pool": len(space.captions),
        "vocabulary_size": len(vocab),
        "most_common": dict(common),
        "parameters": {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(space.config).items()
        },
    }


__all__ = [
    "ArchiveConfig",
    "ArchiveRecording",
    "ArchiveSpace",
    "PlantedEvent",
    "archive_space",
    "describe_archive",
    "simulate_archive",
]
