"""A seeded simulator of a complete SIMULATED dataset in the lighthouse/DCASE layout.

Real MS-CLAP weights and dataset features are often out of reach; this module makes a stand-in
with the same files and shapes, so the whole pipeline can run end to end (and be tested)
anywhere. Nothing here is real audio: every array is drawn from the generative model below and
every written description says SIMULATED.

Generative model (all vectors in the 768-d encoder space, before the projection heads)
-------------------------------------------------------------------------------------
* ``g``: one shared "generic background" direction. Every frame carries it, with a strength
  ``b_t = background_strength * exp(background_variation * z_t)`` where ``z_t`` is a slowly
  varying (Gaussian-smoothed) random walk of unit variance, timescale ``background_timescale_s``:
  loudness and texture changes over the recording.
* a content subspace (``content_dim`` dimensions, orthogonal to ``g``) where sound events live;
  per-frame content noise moves in it (AR(1) over frames, correlation ``noise_correlation``,
  norm ``content_noise``), so it leaks into every event direction like unrelated sounds do.
* per recording: an ambience direction (constant, strength ``ambience_strength`` with jitter)
  and a scene direction that makes its events mutually similar (``event_similarity``).
* per query: one event with its own direction ``e_k``. Frames overlapping the query's windows
  add ``snr * e_k`` (times the overlap fraction and a per-window amplitude jitter).
* isotropic sensor noise (``sensor_noise``) on every frame.
* query text vector ``q_k = e_k + query_noise * v_k + alpha_k * g``: text embeddings of sound
  descriptions share the generic audio component (``alpha_k`` around
  ``query_background_share``); ``v_k`` is a text-only direction.
* the three neutral phrases (``config.NEUTRAL_PHRASES``): ``g + neutral_spread * w_i``, i.e.
  mostly along ``g``.

Because queries and the neutral direction share ``g`` in similar proportions, the contrast
``(q - n) . a_t`` of System 1 cancels the slow background changes that confound the plain
similarity ``q . a_t`` of System 2. With ``background_variation = 0`` there is nothing to
cancel and the two systems behave alike.

Projection heads: ``linear1`` is a scaled matrix with orthonormal columns (orthogonal to the
all-ones vector, so LayerNorm's centring leaves it alone), ``linear2`` is small, LayerNorm
weight ~1 and bias ~0: cosine similarities survive the projection approximately.

Durations and ground-truth windows come from the real CASTELLA / Clotho-Moment annotation
files when they can be found (see :func:`find_shared_data`), otherwise they are drawn at random.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM, ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.config import NEUTRAL_PHRASES
from audiomoment.method.traces import neutral_embedding

Preset = Literal["castella", "clotho", "custom"]

#: Environment variable naming the folder that holds the real annotation files.
SHARED_DATA_ENV = "AUDIOMOMENT_SHARED_DATA"

#: Real annotation files per preset, relative to the shared data folder, in order of use.
ANNOTATION_FILES: dict[str, tuple[str, ...]] = {
    "castella": (
        "castella/castella_test_release.jsonl",
        "castella/castella_val_release.jsonl",
        "castella/castella_train_release.jsonl",
    ),
    "clotho": (
        "clotho_moment/clotho_moment_test_release.jsonl",
        "clotho_moment/clotho_moment_val_release.jsonl",
    ),
}

#: Dev-test sizes (recordings, queries) that the presets reproduce at scale 1.
PRESET_SIZES: dict[str, tuple[int, int]] = {"castella": (566, 1347), "clotho": (6649, 6649)}

#: Typical L2 norm of a simulated encoder output row (audio frame or text hidden state).
FEATURE_NORM = 10.0
#: linear1 = LINEAR1_GAIN * (orthonormal columns): per-dimension pre-activations of order 1.
LINEAR1_GAIN = math.sqrt(JOINT_DIM) / FEATURE_NORM
#: linear2 relative to torch's default initialisation scale.
LINEAR2_SHRINK = 0.1
#: Perturbation of each head's linear1 around the shared orthonormal basis.
LINEAR1_PERTURBATION = 0.02

# Independent random streams (first word of every seed sequence after the seed itself).
_STREAM_GEOMETRY, _STREAM_HEADS, _STREAM_PLAN, _STREAM_RECORDING = 0, 1, 2, 3

SIMULATED_NOTICE = (
    "SIMULATED DATA. Nothing in this folder comes from real audio or from the real MS-CLAP "
    "model: features, projection heads and the neutral embedding are drawn from a seeded "
    "generative model (audiomoment.testing.simulate)."
)


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of a simulated dataset.

    Attributes
    ----------
    seed : seed of every random draw; same seed and parameters -> identical arrays.
    preset : ``"castella"`` / ``"clotho"``: durations and ground-truth windows taken from the
        real annotation files when found (synthetic draws of the same kind otherwise);
        ``"custom"``: always synthetic.
    n_recordings : number of recordings.
    n_queries : total number of queries (each recording keeps at least one); None: all the
        real queries of the chosen recordings, or ``events_per_recording`` draws. With real
        annotations it is an upper bound.
    snr : amplitude of an event's direction in its frames, in units of the per-frame content
        noise norm.
    background_strength : mean amplitude of the shared background direction g.
    background_variation : log-standard deviation of the slow background changes
        (0: constant background).
    background_timescale_s : smoothing width (s) of the background's random walk.
    ambience_strength : amplitude of the per-recording ambience direction.
    content_noise : norm of the per-frame noise in the content subspace.
    content_dim : dimension of the content subspace where events live.
    noise_correlation : AR(1) correlation of the content noise between consecutive frames.
    sensor_noise : norm of the isotropic per-frame noise.
    event_similarity : squared cosine share of the scene direction in each event direction.
    amplitude_jitter : log-standard deviation of the amplitude of each event window.
    query_noise : weight of the text-only direction in a query vector.
    query_background_share : mean weight of g in a query vector (event direction has weight 1).
    query_background_jitter : relative spread (uniform, +-) of that weight across queries.
    neutral_spread : weight of each neutral phrase's own direction next to g (weight 1).
    events_per_recording : (min, max) synthetic queries (events) per recording.
    duration_range_s : (min, max) synthetic recording duration in seconds.
    fractional_duration_share : share of synthetic durations with a fractional part.
    windows_per_query : (min, max) synthetic ground-truth windows per query.
    window_length_s : (min, max) synthetic window length (log-uniform), seconds.
    text_length_range : (min, max) rows of a text hidden-state matrix (last row = query).
    use_real_annotations : False forces synthetic durations and windows.
    """

    seed: int = 0
    preset: Preset = "custom"
    n_recordings: int = 100
    n_queries: int | None = None
    snr: float = 0.3
    background_strength: float = 1.0
    background_variation: float = 0.5
    background_timescale_s: float = 15.0
    ambience_strength: float = 1.0
    content_noise: float = 1.0
    content_dim: int = 64
    noise_correlation: float = 0.6
    sensor_noise: float = 0.5
    event_similarity: float = 0.2
    amplitude_jitter: float = 0.3
    query_noise: float = 0.5
    query_background_share: float = 1.0
    query_background_jitter: float = 0.4
    neutral_spread: float = 1.2
    events_per_recording: tuple[int, int] = (1, 5)
    duration_range_s: tuple[float, float] = (60.0, 300.0)
    fractional_duration_share: float = 0.3
    windows_per_query: tuple[int, int] = (1, 6)
    window_length_s: tuple[float, float] = (1.0, 30.0)
    text_length_range: tuple[int, int] = (3, 12)
    use_real_annotations: bool = True

    def __post_init__(self) -> None:
        if self.preset not in ("castella", "clotho", "custom"):
            raise ValueError(f"preset must be castella, clotho or custom, got {self.preset!r}")
        if self.n_recordings < 1:
            raise ValueError(f"n_recordings must be >= 1, got {self.n_recordings}")
        if self.n_queries is not None and self.n_queries < self.n_recordings:
            raise ValueError(
                f"n_queries ({self.n_queries}) must be >= n_recordings ({self.n_recordings})"
            )
        nonneg = ("snr", "background_strength", "background_variation", "ambience_strength",
                  "content_noise", "sensor_noise", "amplitude_jitter", "query_noise",
                  "query_background_share", "neutral_spread")
        for name in nonneg:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.background_timescale_s > 0:
            raise ValueError("background_timescale_s must be > 0")
        if not 1 <= self.content_dim < ENCODER_DIM - 2:
            raise ValueError(f"content_dim must lie in [1, {ENCODER_DIM - 3}]")
        if not 0 <= self.noise_correlation < 1:
            raise ValueError("noise_correlation must lie in [0, 1)")
        if not 0 <= self.event_similarity < 1:
            raise ValueError("event_similarity must lie in [0, 1)")
        if not 0 <= self.query_background_jitter <= 1:
            raise ValueError("query_background_jitter must lie in [0, 1]")
        if not 0 <= self.fractional_duration_share <= 1:
            raise ValueError("fractional_duration_share must lie in [0, 1]")
        _check_range("events_per_recording", self.events_per_recording, 1)
        _check_range("duration_range_s", self.duration_range_s, 2.0)
        _check_range("windows_per_query", self.windows_per_query, 1)
        _check_range("window_length_s", self.window_length_s, 1e-3)
        _check_range("text_length_range", self.text_length_range, 1)
        if self.n_queries is not None and self.n_queries > (
            self.n_recordings * self.events_per_recording[1]
        ):
            raise ValueError("n_queries exceeds n_recordings * events_per_recording[1]")

    @classmethod
    def castella_like(cls, seed: int = 0, scale: float = 1.0, **changes: Any) -> SimulationConfig:
        """CASTELLA dev-test sized: 566 recordings of 59-300 s, 1,347 queries (at scale 1).

        ``scale`` shrinks (or grows) both counts; ``changes`` override any other field.
        """
        n_rec, n_q = _scaled(PRESET_SIZES["castella"], scale)
        params: dict[str, Any] = dict(
            seed=seed, preset="castella", n_recordings=n_rec, n_queries=n_q,
            events_per_recording=(1, 5), duration_range_s=(59.0, 300.0),
            windows_per_query=(1, 6), window_length_s=(1.0, 30.0),
        )
        return cls(**(params | changes))

    @classmethod
    def clotho_like(cls, seed: int = 0, scale: float = 1.0, **changes: Any) -> SimulationConfig:
        """Clotho-Moment dev-test sized: 6,649 queries, one per 60-s recording (at scale 1)."""
        n_rec, _ = _scaled(PRESET_SIZES["clotho"], scale)
        params: dict[str, Any] = dict(
            seed=seed, preset="clotho", n_recordings=n_rec, n_queries=None,
            events_per_recording=(1, 1), duration_range_s=(60.0, 60.0),
            fractional_duration_share=0.0, windows_per_query=(1, 1), window_length_s=(1.0, 30.0),
        )
        return cls(**(params | changes))

    def with_(self, **changes: Any) -> SimulationConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _check_range(name: str, value: tuple[float, float], lowest: float) -> None:
    lo, hi = value
    if not lowest <= lo <= hi:
        raise ValueError(f"{name} must satisfy {lowest} <= min <= max, got {value}")


def _scaled(sizes: tuple[int, int], scale: float) -> tuple[int, int]:
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    n_rec = max(1, round(sizes[0] * scale))
    return n_rec, max(n_rec, round(sizes[1] * scale))


# --------------------------------------------------------------------------- shared data


def find_shared_data(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding the real annotation files, or None when there is none.

    Order: ``explicit`` (returned when it is a folder, else None), the environment variable
    ``AUDIOMOMENT_SHARED_DATA``, then ``shared/data`` in the working directory or any of its
    parents (which covers ``<repo>/../shared/data`` when run from the repository).
    """
    if explicit is not None:
        p = Path(explicit)
        return p if p.is_dir() else None
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class QueryPlan:
    """One query: its id, ground-truth windows (K, 2) in seconds, and the real row it copies."""

    qid: str
    windows: NDArray[np.float64]
    source_qid: str | None = None


@dataclass(frozen=True)
class RecordingPlan:
    """One recording: id, duration in seconds and its queries."""

    vid: str
    duration: float
    queries: tuple[QueryPlan, ...]

    @property
    def n_frames(self) -> int:
        """T = floor(duration): one 1-s window per full second."""
        return math.floor(self.duration)


def _real_groups(
    config: SimulationConfig, folder: Path
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Real annotation rows grouped into recordings, test split first, each split shuffled.

    CASTELLA keeps its grouping by recording; Clotho-Moment makes every row its own recording.
    Returns (file relative to ``folder``, rows of one recording) pairs; empty when no file of
    the preset exists.
    """
    rng = np.random.default_rng([config.seed, _STREAM_PLAN, 1])
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for rel in ANNOTATION_FILES[config.preset]:
        path = folder / rel
        if not path.is_file():
            continue
        rows = read_jsonl(path)
        if config.preset == "clotho":
            split = [[r] for r in rows]
        else:
            by_vid: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_vid.setdefault(str(r["vid"]), []).append(r)
            split = list(by_vid.values())
        groups.extend((rel, split[i]) for i in rng.permutation(len(split)))
    return groups


def _trim_queries(
    counts: NDArray[np.int64], n_queries: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Drop queries at random (keeping >= 1 per recording) until at most ``n_queries`` remain."""
    counts = counts.copy()
    excess = int(counts.sum()) - n_queries
    if excess <= 0:
        return counts
    pool = np.repeat(np.arange(len(counts)), counts - 1)  # one slot per droppable query
    drop = rng.choice(len(pool), size=excess, replace=False)
    np.subtract.at(counts, pool[drop], 1)
    return counts


def _plan_from_real(
    config: SimulationConfig, groups: list[tuple[str, list[dict[str, Any]]]]
) -> tuple[list[RecordingPlan], list[str]]:
    """Plans copying durations and windows of real recordings, and the files they came from.

    Recordings are taken in the order of ``groups`` (reused cyclically when more are asked).
    """
    rng = np.random.default_rng([config.seed, _STREAM_PLAN, 2])
    chosen = [groups[i % len(groups)] for i in range(config.n_recordings)]
    counts = np.array([len(g) for _, g in chosen], dtype=np.int64)
    if config.n_queries is not None:
        counts = _trim_queries(counts, config.n_queries, rng)
    plans = []
    for i, ((_, group), keep) in enumerate(zip(chosen, counts, strict=True)):
        vid = f"sim_{config.preset}_{i:05d}"
        rows = [group[j] for j in sorted(rng.choice(len(group), size=int(keep), replace=False))]
        queries = tuple(
            QueryPlan(
                qid=f"{vid}_{j + 1}",
                windows=np.asarray(r["relevant_windows"], dtype=np.float64).reshape(-1, 2),
                source_qid=str(r["qid"]),
            )
            for j, r in enumerate(rows)
        )
        plans.append(RecordingPlan(vid, float(group[0]["duration"]), queries))
    used = list(dict.fromkeys(rel for rel, _ in chosen))
    return plans, used


def draw_duration(rng: np.random.Generator, config: SimulationConfig) -> float:
    """A synthetic duration: integer seconds in ``duration_range_s``, a share fractional."""
    lo, hi = config.duration_range_s
    whole = float(rng.integers(math.ceil(lo), math.floor(hi) + 1))
    if whole < hi and rng.random() < config.fractional_duration_share:
        whole += round(float(rng.uniform(0.01, 0.99)), 2)
    return whole


def draw_windows(
    rng: np.random.Generator,
    duration: float,
    windows_per_query: tuple[int, int] = (1, 6),
    window_length_s: tuple[float, float] = (1.0, 30.0),
) -> NDArray[np.float64]:
    """Synthetic ground-truth windows: disjoint, in seconds, inside ``[0, duration]``.

    Lengths are log-uniform in ``window_length_s`` (at most a third of the duration, at least
    1 s when the duration allows); edges are rounded to 0.1 s. Returns (K, 2) sorted by start.
    """
    n = int(rng.integers(windows_per_query[0], windows_per_query[1] + 1))
    lo_len = min(window_length_s[0], duration)
    hi_len = max(lo_len, min(window_length_s[1], duration / 3.0))
    windows: list[tuple[float, float]] = []
    for _ in range(20 * n):
        if len(windows) == n:
            break
        length = float(np.exp(rng.uniform(np.log(lo_len), np.log(hi_len))))
        start = round(float(rng.uniform(0.0, duration - length)), 1)
        end = round(min(start + length, duration), 1)
        if end <= start:
            continue
        if all(end <= s or start >= e for s, e in windows):
            windows.append((start, end))
    if not windows:  # duration too short for the draws: one window over the middle third
        windows.append((round(duration / 3, 1), round(2 * duration / 3, 1)))
    return np.array(sorted(windows), dtype=np.float64).reshape(-1, 2)


def _allocate(
    rng: np.random.Generator, n_recordings: int, total: int, bounds: tuple[int, int]
) -> NDArray[np.int64]:
    """Queries per recording: each within ``bounds``, summing to ``total``."""
    lo, hi = bounds
    counts = np.full(n_recordings, lo, dtype=np.int64)
    extra = total - int(counts.sum())
    if extra < 0:  # fewer queries than recordings * lo: trim back to at least one each
        return _trim_queries(counts, total, rng)
    slots = np.repeat(np.arange(n_recordings), hi - lo)
    pick = rng.choice(len(slots), size=extra, replace=False)
    np.add.at(counts, slots[pick], 1)
    return counts


def _plan_synthetic(config: SimulationConfig) -> list[RecordingPlan]:
    rng = np.random.default_rng([config.seed, _STREAM_PLAN, 3])
    lo, hi = config.events_per_recording
    if config.n_queries is None:
        counts = rng.integers(lo, hi + 1, size=config.n_recordings)
    else:
        counts = _allocate(rng, config.n_recordings, config.n_queries, (lo, hi))
    plans = []
    for i, count in enumerate(counts):
        vid = f"sim_{config.preset}_{i:05d}"
        duration = draw_duration(rng, config)
        queries = tuple(
            QueryPlan(
                qid=f"{vid}_{j + 1}",
                windows=draw_windows(
                    rng, duration, config.windows_per_query, config.window_length_s
                ),
            )
            for j in range(int(count))
        )
        plans.append(RecordingPlan(vid, duration, queries))
    return plans


def plan_recordings(
    config: SimulationConfig, shared_data: str | os.PathLike[str] | None = None
) -> tuple[list[RecordingPlan], str]:
    """Recordings, durations and windows of a simulation, and where they came from.

    Returns (plans, source) where source names the real annotation files used or says
    ``"synthetic"``.
    """
    if config.preset != "custom" and config.use_real_annotations:
        folder = find_shared_data(shared_data)
        groups = _real_groups(config, folder) if folder is not None else []
        if groups:
            plans, used = _plan_from_real(config, groups)
            return plans, "real annotations: " + ", ".join(used)
    return _plan_synthetic(config), "synthetic"


# --------------------------------------------------------------------------- geometry


def unit(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """``x`` divided by its L2 norm along ``axis``."""
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


@dataclass(frozen=True)
class Geometry:
    """The fixed directions of a simulation (768-d encoder space).

    Attributes
    ----------
    background : (768,) unit vector g, the shared generic background direction.
    content : (768, C) orthonormal basis of the content subspace, orthogonal to g.
    neutral_phrases : (3, 768) text features of the neutral phrases.
    """

    background: NDArray[np.float64]
    content: NDArray[np.float64]
    neutral_phrases: NDArray[np.float64]


def make_geometry(config: SimulationConfig) -> Geometry:
    """Draw g, the content subspace and the neutral phrases' text features."""
    rng = np.random.default_rng([config.seed, _STREAM_GEOMETRY])
    basis, _ = np.linalg.qr(rng.standard_normal((ENCODER_DIM, config.content_dim + 1)))
    g, content = basis[:, 0], basis[:, 1:]
    own = unit(rng.standard_normal((len(NEUTRAL_PHRASES), ENCODER_DIM)))
    phrases = FEATURE_NORM * unit(g[None, :] + config.neutral_spread * own)
    return Geometry(background=g, content=content, neutral_phrases=phrases)


@lru_cache(maxsize=4)
def _head_basis(seed: int) -> NDArray[np.float64]:
    """(1024, 768) orthonormal columns, each orthogonal to the all-ones vector (read-only)."""
    rng = np.random.default_rng([seed, _STREAM_HEADS, 0])
    m = rng.standard_normal((JOINT_DIM, ENCODER_DIM))
    m -= m.mean(axis=0, keepdims=True)
    basis, _ = np.linalg.qr(m)
    basis.setflags(write=False)
    return basis


def simulated_heads(seed: int) -> dict[str, ProjectionHead]:
    """Audio and text projection heads that carry cosine structure into the joint space.

    Both ``linear1`` are ``LINEAR1_GAIN`` times one matrix with orthonormal columns
    (1024 x 768, orthogonal to the all-ones vector) plus a small per-head perturbation;
    ``linear2`` is ``LINEAR2_SHRINK`` times torch's default scale; LayerNorm weight ~1, bias ~0.
    """
    rng = np.random.default_rng([seed, _STREAM_HEADS, 1])
    basis = _head_basis(seed)
    bound2 = LINEAR2_SHRINK / math.sqrt(JOINT_DIM)
    heads = {}
    for modality in ("audio", "text"):
        perturb = rng.standard_normal(basis.shape) * (LINEAR1_PERTURBATION / math.sqrt(JOINT_DIM))
        heads[modality] = ProjectionHead(
            linear1=(LINEAR1_GAIN * (basis + perturb)).astype(np.float32),
            linear2=rng.uniform(-bound2, bound2, (JOINT_DIM, JOINT_DIM)).astype(np.float32),
            ln_weight=(1.0 + 0.02 * rng.standard_normal(JOINT_DIM)).astype(np.float32),
            ln_bias=(0.01 * rng.standard_normal(JOINT_DIM)).astype(np.float32),
        )
    return heads


# --------------------------------------------------------------------------- one recording


def slow_walk(rng: np.random.Generator, n: int, timescale: float) -> NDArray[np.float64]:
    """A stationary, slowly varying Gaussian process of unit variance: (n,).

    White noise smoothed with a Gaussian of width ``timescale`` frames (padded so the ends
    are not special), divided by the filter's theoretical standard deviation.
    """
    pad = math.ceil(4 * timescale)
    white = rng.standard_normal(n + 2 * pad)
    smooth = gaussian_filter1d(white, timescale, mode="wrap", truncate=4.0)[pad : pad + n]
    x = np.arange(-pad, pad + 1)
    kernel = np.exp(-0.5 * (x / timescale) ** 2)
    kernel /= kernel.sum()
    return smooth / math.sqrt(float(np.sum(kernel**2)))


def ar1_noise(rng: np.random.Generator, n: int, dim: int, rho: float) -> NDArray[np.float64]:
    """AR(1) vectors over frames, stationary, expected squared norm 1: (n, dim)."""
    burn = 20 if rho > 0 else 0
    white = rng.standard_normal((n + burn, dim)) / math.sqrt(dim)
    out = lfilter([math.sqrt(1.0 - rho * rho)], [1.0, -rho], white, axis=0)
    return out[burn:]


def presence(windows: NDArray[np.float64], n_frames: int) -> NDArray[np.float64]:
    """Overlap of each 1-s frame [t, t + 1) with each window: (K, 2) -> (K, T) in [0, 1]."""
    t = np.arange(n_frames, dtype=np.float64)
    start, end = windows[:, :1], windows[:, 1:]
    return np.clip(np.minimum(end, t + 1.0) - np.maximum(start, t), 0.0, 1.0)


def simulate_recording(
    plan: RecordingPlan, geometry: Geometry, config: SimulationConfig, index: int
) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
    """Audio features (T, 768) and text hidden states {qid: (L, 768)} of one recording.

    All float32; T = ``plan.n_frames``; the last text row is the query vector.
    """
    rng = np.random.default_rng([config.seed, _STREAM_RECORDING, index])
    n, dim = plan.n_frames, ENCODER_DIM
    g, content = geometry.background, geometry.content
    c_dim = content.shape[1]

    scene = content @ unit(rng.standard_normal(c_dim))
    specific = unit(rng.standard_normal((len(plan.queries), c_dim))) @ content.T
    events = unit(
        math.sqrt(config.event_similarity) * scene[None, :]
        + math.sqrt(1.0 - config.event_similarity) * specific
    )  # (K, 768)

    strength = config.background_strength * np.exp(
        config.background_variation * slow_walk(rng, n, config.background_timescale_s)
    )
    ambience = config.ambience_strength * math.exp(0.3 * rng.standard_normal())
    frames = strength[:, None] * g[None, :]
    frames += ambience * unit(rng.standard_normal(dim))[None, :]
    frames += config.content_noise * ar1_noise(rng, n, c_dim, config.noise_correlation) @ content.T
    frames += config.sensor_noise * rng.standard_normal((n, dim)) / math.sqrt(dim)
    for k, query in enumerate(plan.queries):
        amp = config.snr * np.exp(config.amplitude_jitter * rng.standard_normal(len(query.windows)))
        level = (presence(query.windows, n) * amp[:, None]).max(axis=0)  # (T,)
        frames += level[:, None] * events[k][None, :]
    frames *= FEATURE_NORM / _typical_norm(config)

    texts = {}
    lo, hi = config.text_length_range
    jitter = config.query_background_jitter
    for k, query in enumerate(plan.queries):
        alpha = config.query_background_share * (1.0 + jitter * rng.uniform(-1.0, 1.0))
        own = unit(rng.standard_normal(dim))
        q = FEATURE_NORM * unit(events[k] + config.query_noise * own + alpha * g)
        length = int(rng.integers(lo, hi + 1))
        rows = FEATURE_NORM * unit(rng.standard_normal((length, dim)))
        rows[-1] = q
        texts[query.qid] = rows.astype(np.float32)
    return frames.astype(np.float32), texts


def _typical_norm(config: SimulationConfig) -> float:
    """Expected frame norm without events (sets the overall feature scale)."""
    return math.sqrt(
        config.background_strength**2 + config.ambience_strength**2
        + config.content_noise**2 + config.sensor_noise**2
    ) or 1.0


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class SimulatedDataset:
    """A SIMULATED dataset in memory.

    Attributes
    ----------
    config : the parameters it was drawn with.
    annotations : lighthouse rows ``{"qid", "query", "duration", "vid", "relevant_windows"}``
        (plus ``"source_qid"`` when windows were copied from a real annotation).
    audio_features : {vid: (T, 768) float32}, encoder outputs before the projection head.
    text_features : {qid: (L, 768) float32}, text hidden states; the query is the last row.
    heads : {"audio", "text": ProjectionHead}.
    neutral_phrase_features : (3, 768) float32, text features of ``NEUTRAL_PHRASES``.
    neutral : (1024,) float32, the neutral embedding in the joint space.
    source : where durations and windows came from (real annotation files or "synthetic").
    background : (768,) the shared background direction g (for diagnostics and tests).
    """

    config: SimulationConfig
    annotations: list[dict[str, Any]]
    audio_features: dict[str, NDArray[np.float32]]
    text_features: dict[str, NDArray[np.float32]]
    heads: dict[str, ProjectionHead]
    neutral_phrase_features: NDArray[np.float32]
    neutral: NDArray[np.float32]
    source: str = "synthetic"
    background: NDArray[np.float64] = field(default_factory=lambda: np.zeros(ENCODER_DIM))

    @cached_property
    def audio_embeddings(self) -> dict[str, NDArray[np.float32]]:
        """{vid: (T, 1024)} projected, L2-normalised window embeddings (computed once)."""
        return {v: project(x, self.heads["audio"]) for v, x in self.audio_features.items()}

    @cached_property
    def query_embeddings(self) -> dict[str, NDArray[np.float32]]:
        """{qid: (1024,)} projected, L2-normalised query embeddings (computed once)."""
        qids = list(self.text_features)
        if not qids:
            return {}
        last = np.stack([self.text_features[q][-1] for q in qids])
        return dict(zip(qids, project(last, self.heads["text"]), strict=True))

    @property
    def n_queries(self) -> int:
        return len(self.annotations)

    @property
    def n_recordings(self) -> int:
        return len(self.audio_features)


def simulate(
    config: SimulationConfig | None = None,
    shared_data: str | os.PathLike[str] | None = None,
) -> SimulatedDataset:
    """Draw a complete SIMULATED dataset in memory.

    ``shared_data``: folder with the real annotation files (see :func:`find_shared_data`);
    used only by the castella / clotho presets, for durations and windows. BLAS runs on one
    thread here: the products are small, and the arrays then do not depend on thread counts.
    """
    from threadpoolctl import threadpool_limits

    config = config or SimulationConfig()
    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate(config, shared_data)


def _simulate(
    config: SimulationConfig, shared_data: str | os.PathLike[str] | None
) -> SimulatedDataset:
    plans, source = plan_recordings(config, shared_data)
    geometry = make_geometry(config)
    heads = simulated_heads(config.seed)
    phrases = geometry.neutral_phrases.astype(np.float32)
    neutral = neutral_embedding(project(phrases, heads["text"])).astype(np.float32)

    annotations: list[dict[str, Any]] = []
    audio: dict[str, NDArray[np.float32]] = {}
    text: dict[str, NDArray[np.float32]] = {}
    for index, plan in enumerate(plans):
        audio[plan.vid], texts = simulate_recording(plan, geometry, config, index)
        text.update(texts)
        for k, query in enumerate(plan.queries):
            row: dict[str, Any] = {
                "qid": query.qid,
                "query": f"[simulated] sound event {k + 1} of recording {plan.vid}",
                "duration": _json_number(plan.duration),
                "vid": plan.vid,
                "relevant_windows": [[_json_number(s), _json_number(e)] for s, e in query.windows],
            }
            if query.source_qid is not None:
                row["source_qid"] = query.source_qid
            annotations.append(row)
    return SimulatedDataset(
        config=config, annotations=annotations, audio_features=audio, text_features=text,
        heads=heads, neutral_phrase_features=phrases, neutral=neutral, source=source,
        background=geometry.background,
    )


def _json_number(x: float) -> int | float:
    """Whole numbers as int (as the real annotation files write them), others as float."""
    return int(x) if float(x).is_integer() else float(x)


# --------------------------------------------------------------------------- writing


def describe(dataset: SimulatedDataset) -> dict[str, Any]:
    """The manifest written as ``simulation.json``."""
    return {
        "simulated": True,
        "notice": SIMULATED_NOTICE,
        "generator": "audiomoment.testing.simulate",
        "seed": dataset.config.seed,
        "parameters": dataset.config.to_dict(),
        "annotation_source": dataset.source,
        "n_recordings": dataset.n_recordings,
        "n_queries": dataset.n_queries,
        "n_frames": int(sum(len(x) for x in dataset.audio_features.values())),
        "neutral_phrases": list(NEUTRAL_PHRASES),
    }


def _readme(dataset: SimulatedDataset) -> str:
    cfg = dataset.config
    return "\n".join([
        SIMULATED_NOTICE,
        "",
        f"seed: {cfg.seed}   preset: {cfg.preset}   recordings: {dataset.n_recordings}   "
        f"queries: {dataset.n_queries}",
        f"durations and windows: {dataset.source}",
        *(["  (real windows are copied as they are; the features are simulated around them)"]
          if dataset.source.startswith("real") else []),
        "query texts are placeholders: the simulated features do not depend on them",
        "parameters: simulation.json",
        "",
        "Layout (lighthouse / DCASE):",
        "  annotations.jsonl              {qid, query, duration, vid, relevant_windows}",
        "  FEATURES/clap/<vid>.npz        features: (T, 768) float32, one row per 1-s window",
        "  FEATURES/clap_text/<qid>.npz   last_hidden_state: (L, 768) float32, query = last row",
        "  CLAP_weights_2023.pth          {'model': ...} projection heads only (MS-CLAP 2023 keys)",
        "  neutral.npy                    (1024,) float32 neutral embedding in the joint space",
        "  neutral_phrases.npz            features: (3, 768) text features of the neutral phrases",
        "",
    ])


def write_dataset(
    dataset: SimulatedDataset, out_dir: str | os.PathLike[str], progress: bool | None = None
) -> dict[str, Path]:
    """Write a simulated dataset in the lighthouse/DCASE layout, each file atomically.

    ``progress``: show a tqdm bar (None: only on a terminal). Returns the written paths under
    the keys ``annotations``, ``audio_features``, ``text_features``, ``checkpoint``,
    ``neutral``, ``neutral_phrases``, ``manifest``, ``readme``.
    """
    from tqdm import tqdm

    from audiomoment.clap.checkpoint import head_state, save_checkpoint
    from audiomoment.io.atomic import save_npy, save_npz, write_text, write_with

    root = Path(out_dir)
    paths = {
        "annotations": root / "annotations.jsonl",
        "audio_features": root / "FEATURES" / "clap",
        "text_features": root / "FEATURES" / "clap_text",
        "checkpoint": root / "CLAP_weights_2023.pth",
        "neutral": root / "neutral.npy",
        "neutral_phrases": root / "neutral_phrases.npz",
        "manifest": root / "simulation.json",
        "readme": root / "README.txt",
    }
    paths["audio_features"].mkdir(parents=True, exist_ok=True)
    paths["text_features"].mkdir(parents=True, exist_ok=True)

    total = len(dataset.audio_features) + len(dataset.text_features)
    disable = None if progress is None else not progress
    with tqdm(total=total, desc="writing simulated dataset", unit="file", disable=disable) as bar:
        for vid, feats in dataset.audio_features.items():
            save_npz(paths["audio_features"] / f"{vid}.npz", features=feats)
            bar.update()
        for qid, hidden in dataset.text_features.items():
            save_npz(paths["text_features"] / f"{qid}.npz", last_hidden_state=hidden)
            bar.update()

    def write_rows(handle: Any) -> None:
        for row in dataset.annotations:
            handle.write(json.dumps(row) + "\n")

    write_with(paths["annotations"], write_rows)
    state = head_state(dataset.heads["audio"], "audio") | head_state(dataset.heads["text"], "text")
    save_checkpoint(paths["checkpoint"], state)
    save_npy(paths["neutral"], dataset.neutral)
    save_npz(
        paths["neutral_phrases"],
        features=dataset.neutral_phrase_features,
        phrases=np.array(NEUTRAL_PHRASES),
    )
    write_text(paths["manifest"], json.dumps(describe(dataset), indent=2) + "\n")
    write_text(paths["readme"], _readme(dataset))
    return paths


# --------------------------------------------------------------------------- 1-D traces


def simulate_traces(
    n_queries: int,
    durations: Sequence[float] | None = None,
    seed: int = 0,
    snr: float = 2.0,
    drift: float = 1.0,
    noise_correlation: float = 0.5,
    windows_per_query: tuple[int, int] = (1, 3),
    window_length_s: tuple[float, float] = (3.0, 30.0),
    duration_range_s: tuple[float, float] = (60.0, 300.0),
) -> tuple[list[NDArray[np.float64]], list[float], list[NDArray[np.float64]]]:
    """SIMULATED 1-D similarity traces with known windows, for tests of the mixture engines.

    Each trace is ``drift * slow walk + snr * presence + AR(1) noise`` (noise of unit
    variance), one value per 1-s frame, T = floor(duration). Nothing is projected or written.

    Parameters
    ----------
    n_queries : number of traces.
    durations : (n_queries,) durations in seconds (>= 2); None: integers drawn from
        ``duration_range_s``.
    seed : seed of every draw.
    snr : height of the event plateau over the noise's standard deviation.
    drift : standard deviation of the slowly varying baseline (timescale 20 frames).
    noise_correlation : AR(1) correlation of the frame noise.

    Returns
    -------
    traces : n_queries arrays (T_i,) float64.
    durations : n_queries durations in seconds.
    gt_windows : n_queries arrays (K_i, 2) of [start_s, end_s].
    """
    rng = np.random.default_rng([seed, 7])
    if durations is None:
        lo, hi = duration_range_s
        durations = [float(d) for d in rng.integers(math.ceil(lo), math.floor(hi) + 1, n_queries)]
    durations = [float(d) for d in durations]
    if len(durations) != n_queries:
        raise ValueError(f"got {len(durations)} durations for {n_queries} queries")
    if any(d < 2 for d in durations):
        raise ValueError("every duration must be >= 2 s")
    traces, windows = [], []
    for d in durations:
        n = math.floor(d)
        w = draw_windows(rng, d, windows_per_query, window_length_s)
        level = presence(w, n).max(axis=0)
        noise = ar1_noise(rng, n, 1, noise_correlation)[:, 0]
        traces.append(drift * slow_walk(rng, n, 20.0) + snr * level + noise)
        windows.append(w)
    return traces, durations, windows


__all__ = [
    "SIMULATED_NOTICE",
    "SimulatedDataset",
    "SimulationConfig",
    "describe",
    "find_shared_data",
    "simulate",
    "simulate_traces",
    "write_dataset",
]


def clap_like_trace(
    rng: np.random.Generator, duration_s: float, windows: Sequence[Sequence[float]]
) -> NDArray[np.float64]:
    """One CLAP-like similarity trace (T,), T = round(duration_s), events over ``windows``.

    Background level 0.05-0.25 with a slow drift, frame noise, and a raised plateau of small
    contrast (0.01-0.12, jittered per window) over each window, weighted by frame overlap;
    sometimes a distracting bump elsewhere.
    """
    n = max(2, round(duration_s))
    t = np.arange(n)
    drift = gaussian_filter1d(rng.normal(size=n), rng.uniform(4, 15), mode="reflect")
    drift *= rng.uniform(0.005, 0.04) / max(float(np.std(drift)), 1e-12)
    x = rng.uniform(0.05, 0.25) + drift + rng.uniform(0.01, 0.035) * rng.normal(size=n)
    contrast = rng.uniform(0.01, 0.12)
    for start, end in windows:
        overlap = np.clip(np.minimum(t + 1, end) - np.maximum(t, start), 0, 1)
        x += contrast * rng.uniform(0.7, 1.3) * overlap
    if rng.random() < 0.3:
        a = int(rng.integers(0, n))
        width = int(rng.integers(1, max(2, n // 8)))
        x[a : a + width] += contrast * rng.uniform(0.3, 1.0)
    return x
