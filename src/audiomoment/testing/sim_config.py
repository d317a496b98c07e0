"""Parameters of a SIMULATED dataset (:class:`SimulationConfig`) and the real-data presets.

The generator itself is :mod:`audiomoment.testing.simulate`; this module only holds what
says which dataset to draw.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from audiomoment.clap.checkpoint import ENCODER_DIM

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


# Independent random streams (first word of every seed sequence after the seed itself).
STREAM_GEOMETRY, STREAM_HEADS, STREAM_PLAN, STREAM_RECORDING = 0, 1, 2, 3
#: Concept directions and synthetic captions: a stream of its own, so that datasets drawn
#: without concepts keep every array they had before concepts existed.
STREAM_CONCEPTS = 4
#: The joint-space archive generator (:mod:`audiomoment.testing.archive`).
STREAM_ARCHIVE = 5


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
    concepts : False (the default of every preset but ``castella_corpus``): each event has a
        direction of its own, as if every query named a sound heard nowhere else. True:
        events are built from shared sound concepts, one direction per content word of their
        caption (:mod:`audiomoment.testing.concepts`), so similar events recur across
        recordings; the real captions are used when the real annotations are, synthetic ones
        (Zipf-distributed words) otherwise. Concept directions and synthetic captions come
        from a random stream of their own: with ``concepts=False`` every array is exactly
        what it was before the option existed.
    concept_share : with concepts, the squared-cosine share of the concept mix in each event
        direction (the rest is the event's own detail direction); the query vector follows
        the concept mix alone (plus its text-only direction and g, as without concepts).
    concept_min_count : a caption word becomes a concept when at least this many captions of
        the caption pool hold it (and it is no stop word).
    synthetic_vocabulary : number of distinct words of synthetic captions.
    zipf_exponent : word ranks of synthetic captions are drawn with probability ~ rank^-s.
    caption_words : (min, max) distinct words per synthetic caption.
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
    concepts: bool = False
    concept_share: float = 0.5
    concept_min_count: int = 2
    synthetic_vocabulary: int = 400
    zipf_exponent: float = 1.0
    caption_words: tuple[int, int] = (1, 4)

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
        if not 0 <= self.concept_share <= 1:
            raise ValueError(f"concept_share must lie in [0, 1], got {self.concept_share}")
        if self.concept_min_count < 1:
            raise ValueError(f"concept_min_count must be >= 1, got {self.concept_min_count}")
        if self.synthetic_vocabulary < 1:
            raise ValueError("synthetic_vocabulary must be >= 1")
        if not self.zipf_exponent >= 0:
            raise ValueError(f"zipf_exponent must be >= 0, got {self.zipf_exponent}")
        _check_range("caption_words", self.caption_words, 1)
        if self.caption_words[1] > self.synthetic_vocabulary:
            raise ValueError("caption_words[1] exceeds synthetic_vocabulary")
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

    @classmethod
    def castella_corpus(
        cls, seed: int = 0, scale: float = 1.0, **changes: Any
    ) -> SimulationConfig:
        """CASTELLA dev-test sized, with shared sound concepts: a corpus to search across.

        As :meth:`castella_like` (566 recordings, 1,347 queries at scale 1; real durations,
        windows and captions when the annotation files are found), with ``concepts=True``:
        the sounds of one caption ("a man talks") recur in every recording whose captions
        share its words, as in the real annotations. ``snr`` is raised to
        ``0.3 / sqrt(concept_share)`` (unless given), so that a query's response to its own
        event is that of :meth:`castella_like`, whose ``snr`` is 0.3.
        """
        share = float(changes.get("concept_share", cls.concept_share))
        params: dict[str, Any] = {"concepts": True}
        if share > 0:
            params["snr"] = cls.snr / math.sqrt(share)
        return cls.castella_like(seed, scale, **(params | changes))

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
