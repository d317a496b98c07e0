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

Shared sound concepts (``concepts=True``, :meth:`SimulationConfig.castella_corpus`)
-----------------------------------------------------------------------------------
Without them every query names a sound of its own, heard in its recording only, so finding the
right recording in a corpus is trivially easy. With them, each content word of the captions is
a concept with one direction ``c_w`` in the content subspace
(:mod:`audiomoment.testing.concepts` says how words are chosen). An event's direction becomes
``sqrt(s) m_k + sqrt(1 - s) d_k`` where ``m_k`` is the unit mix of its caption's concept
directions (equal weights), ``d_k`` its own detail direction (the ``e_k`` above, made
orthogonal to ``m_k``) and ``s = concept_share``; the query vector follows the concept mix:
``q_k = m_k + query_noise * v_k + alpha_k * g``. Events whose captions share words ("a man
talks") then recur across recordings as in the real annotations. A caption without any concept
word keeps the own-direction model. Concept directions and synthetic captions are drawn from a
random stream of their own, and every other draw is the same as without concepts.

Durations, ground-truth windows (and with concepts the captions) come from the real CASTELLA /
Clotho-Moment annotation files when they can be found (see :func:`find_shared_data`),
otherwise they are drawn at random (captions from a Zipf-like vocabulary).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.clap.checkpoint import ENCODER_DIM, JOINT_DIM, ProjectionHead
from audiomoment.clap.projection import project
from audiomoment.config import NEUTRAL_PHRASES
from audiomoment.method.traces import neutral_embedding
from audiomoment.testing.archive import (
    ArchiveConfig,
    ArchiveRecording,
    ArchiveSpace,
    PlantedEvent,
    archive_space,
    simulate_archive,
)
from audiomoment.testing.concepts import (
    ConceptVocabulary,
    QueryOverlap,
    concept_directions,
    concept_mix,
    concept_overlap,
    overlap_summary,
    synthetic_captions,
    with_concepts,
)
from audiomoment.testing.signals import (
    ar1_noise,
    clap_like_trace,
    draw_windows,
    presence,
    simulate_traces,
    slow_walk,
    unit,
)
from audiomoment.testing.sim_config import (
    ANNOTATION_FILES,
    PRESET_SIZES,
    SHARED_DATA_ENV,
    STREAM_CONCEPTS,
    STREAM_GEOMETRY,
    STREAM_HEADS,
    STREAM_RECORDING,
    Preset,
    SimulationConfig,
)
from audiomoment.testing.sim_plan import (
    QueryPlan,
    RecordingPlan,
    draw_duration,
    find_shared_data,
    plan_recordings,
    read_jsonl,
)

#: Typical L2 norm of a simulated encoder output row (audio frame or text hidden state).
FEATURE_NORM = 10.0
#: linear1 = LINEAR1_GAIN * (orthonormal columns): per-dimension pre-activations of order 1.
LINEAR1_GAIN = math.sqrt(JOINT_DIM) / FEATURE_NORM
#: linear2 relative to torch's default initialisation scale.
LINEAR2_SHRINK = 0.1
#: Perturbation of each head's linear1 around the shared orthonormal basis.
LINEAR1_PERTURBATION = 0.02

SIMULATED_NOTICE = (
    "SIMULATED DATA. Nothing in this folder comes from real audio or from the real MS-CLAP "
    "model: features, projection heads and the neutral embedding are drawn from a seeded "
    "generative model (audiomoment.testing.simulate)."
)


# --------------------------------------------------------------------------- geometry


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
    rng = np.random.default_rng([config.seed, STREAM_GEOMETRY])
    basis, _ = np.linalg.qr(rng.standard_normal((ENCODER_DIM, config.content_dim + 1)))
    g, content = basis[:, 0], basis[:, 1:]
    own = unit(rng.standard_normal((len(NEUTRAL_PHRASES), ENCODER_DIM)))
    phrases = FEATURE_NORM * unit(g[None, :] + config.neutral_spread * own)
    return Geometry(background=g, content=content, neutral_phrases=phrases)


@lru_cache(maxsize=4)
def _head_basis(seed: int) -> NDArray[np.float64]:
    """(1024, 768) orthonormal columns, each orthogonal to the all-ones vector (read-only)."""
    rng = np.random.default_rng([seed, STREAM_HEADS, 0])
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
    rng = np.random.default_rng([seed, STREAM_HEADS, 1])
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


def simulate_recording(
    plan: RecordingPlan,
    geometry: Geometry,
    config: SimulationConfig,
    index: int,
    mixes: Sequence[NDArray[np.float64] | None] | None = None,
) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
    """Audio features (T, 768) and text hidden states {qid: (L, 768)} of one recording.

    All float32; T = ``plan.n_frames``; the last text row is the query vector. ``mixes``: per
    query, the unit (768,) concept mix of its caption (None: no concept word), or None for the
    own-direction model; the random draws are the same either way.
    """
    rng = np.random.default_rng([config.seed, STREAM_RECORDING, index])
    n, dim = plan.n_frames, ENCODER_DIM
    g, content = geometry.background, geometry.content
    c_dim = content.shape[1]

    scene = content @ unit(rng.standard_normal(c_dim))
    specific = unit(rng.standard_normal((len(plan.queries), c_dim))) @ content.T
    events = unit(
        math.sqrt(config.event_similarity) * scene[None, :]
        + math.sqrt(1.0 - config.event_similarity) * specific
    )  # (K, 768)
    queries = events
    if mixes is not None:
        share = config.concept_share
        events = np.stack([with_concepts(events[k], m, share) for k, m in enumerate(mixes)])
        queries = np.stack([e if m is None else m for e, m in zip(events, mixes, strict=True)])

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
        q = FEATURE_NORM * unit(queries[k] + config.query_noise * own + alpha * g)
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
    captions : {qid: caption} with concepts (empty without).
    concepts : {qid: concept words of its caption} with concepts (empty without).
    vocabulary : the concept words and their caption counts, or None without concepts.
    caption_source : where the captions came from ("real captions: <files>" or "synthetic").
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
    captions: dict[str, str] = field(default_factory=dict)
    concepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    vocabulary: ConceptVocabulary | None = None
    caption_source: str = ""

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
    used only by the castella / clotho presets, for durations and windows (and captions when
    ``config.concepts``). BLAS runs on one
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

    captions: dict[str, str] = {}
    concepts: dict[str, tuple[str, ...]] = {}
    vocabulary, caption_source = None, ""
    mixes: dict[str, NDArray[np.float64] | None] = {}
    if config.concepts:
        captions, vocabulary, caption_source = plan_captions(config, plans, shared_data)
        concepts = {qid: vocabulary.concepts(c) for qid, c in captions.items()}
        directions = concept_directions(
            vocabulary.words, geometry.content, (config.seed, STREAM_CONCEPTS, 0)
        )
        mixes = {qid: concept_mix(c, directions) for qid, c in concepts.items()}

    annotations: list[dict[str, Any]] = []
    audio: dict[str, NDArray[np.float32]] = {}
    text: dict[str, NDArray[np.float32]] = {}
    for index, plan in enumerate(plans):
        audio[plan.vid], texts = simulate_recording(
            plan, geometry, config, index,
            [mixes[q.qid] for q in plan.queries] if config.concepts else None,
        )
        text.update(texts)
        for k, query in enumerate(plan.queries):
            row: dict[str, Any] = {
                "qid": query.qid,
                "query": f"[simulated] {captions[query.qid]}" if config.concepts else
                f"[simulated] sound event {k + 1} of recording {plan.vid}",
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
        background=geometry.background, captions=captions, concepts=concepts,
        vocabulary=vocabulary, caption_source=caption_source,
    )


def plan_captions(
    config: SimulationConfig,
    plans: Sequence[RecordingPlan],
    shared_data: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, str], ConceptVocabulary, str]:
    """Captions of every planned query, the concept vocabulary and where the captions came from.

    When every query copies a real annotation row, its caption is that row's and the
    vocabulary is counted over all the captions of the preset's annotation files; otherwise
    every query gets a synthetic caption (:func:`synthetic_captions`, from the concept random
    stream) and the vocabulary is counted over those. Returns ({qid: caption}, vocabulary,
    ``"real captions: <files>"`` or ``"synthetic"``).
    """
    queries = [q for plan in plans for q in plan.queries]
    folder = find_shared_data(shared_data)
    if queries and folder is not None and all(q.caption is not None for q in queries):
        files = [rel for rel in ANNOTATION_FILES.get(config.preset, ()) if (folder / rel).is_file()]
        pool = [str(r["query"]) for rel in files for r in read_jsonl(folder / rel) if "query" in r]
        if pool:
            vocabulary = ConceptVocabulary.from_captions(pool, config.concept_min_count)
            captions = {q.qid: str(q.caption) for q in queries}
            return captions, vocabulary, "real captions: " + ", ".join(files)
    rng = np.random.default_rng([config.seed, STREAM_CONCEPTS, 1])
    drawn = synthetic_captions(
        rng, len(queries), config.synthetic_vocabulary, config.zipf_exponent,
        config.caption_words,
    )
    vocabulary = ConceptVocabulary.from_captions(drawn, config.concept_min_count)
    return {q.qid: c for q, c in zip(queries, drawn, strict=True)}, vocabulary, "synthetic"


def query_difficulty(dataset: SimulatedDataset) -> dict[str, QueryOverlap]:
    """Per query, how many OTHER recordings hold an event sharing one of its concepts.

    See :func:`audiomoment.testing.concepts.concept_overlap`; without concepts every query
    has none (its event direction is its own). Returns {qid: QueryOverlap}.
    """
    return concept_overlap([
        (r["qid"], r["vid"], dataset.concepts.get(r["qid"], ())) for r in dataset.annotations
    ])


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
    } | (_describe_concepts(dataset) if dataset.config.concepts else {})


def _describe_concepts(dataset: SimulatedDataset) -> dict[str, Any]:
    vocab = dataset.vocabulary
    common = sorted(vocab.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20] if vocab else []
    return {"concepts": {
        "caption_source": dataset.caption_source,
        "concept_share": dataset.config.concept_share,
        "vocabulary_size": len(vocab) if vocab else 0,
        "caption_pool": vocab.n_captions if vocab else 0,
        "min_count": dataset.config.concept_min_count,
        "most_common": dict(common),
        "difficulty": overlap_summary(query_difficulty(dataset)),
    }}


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
        *([f"query texts are '[simulated] ' + a caption ({dataset.caption_source}); its "
           "concept words shape the simulated features (simulation.json: concepts)"]
          if cfg.concepts else
          ["query texts are placeholders: the simulated features do not depend on them"]),
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


__all__ = [
    "ANNOTATION_FILES",
    "FEATURE_NORM",
    "PRESET_SIZES",
    "SHARED_DATA_ENV",
    "SIMULATED_NOTICE",
    "ArchiveConfig",
    "ArchiveRecording",
    "ArchiveSpace",
    "ConceptVocabulary",
    "Geometry",
    "PlantedEvent",
    "Preset",
    "QueryOverlap",
    "QueryPlan",
    "RecordingPlan",
    "SimulatedDataset",
    "SimulationConfig",
    "ar1_noise",
    "archive_space",
    "clap_like_trace",
    "concept_overlap",
    "describe",
    "draw_duration",
    "draw_windows",
    "find_shared_data",
    "make_geometry",
    "overlap_summary",
    "plan_captions",
    "plan_recordings",
    "presence",
    "query_difficulty",
    "read_jsonl",
    "simulate",
    "simulate_archive",
    "simulate_recording",
    "simulate_traces",
    "simulated_heads",
    "slow_walk",
    "unit",
    "write_dataset",
]
