"""Recordings, durations and ground-truth windows of a SIMULATED dataset.

They are copied from the real CASTELLA / Clotho-Moment annotation files when those can be
found (:func:`find_shared_data`), together with each query's caption; otherwise they are drawn
at random.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiomoment.testing.signals import draw_windows
from audiomoment.testing.sim_config import (
    ANNOTATION_FILES,
    SHARED_DATA_ENV,
    STREAM_PLAN,
    SimulationConfig,
)

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
    """One query: its id, ground-truth windows (K, 2) in seconds, the real row it copies and
    that row's caption (None for synthetic plans)."""

    qid: str
    windows: NDArray[np.float64]
    source_qid: str | None = None
    caption: str | None = None


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
    rng = np.random.default_rng([config.seed, STREAM_PLAN, 1])
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
    rng = np.random.default_rng([config.seed, STREAM_PLAN, 2])
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
                caption=str(r["query"]) if "query" in r else None,
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
    rng = np.random.default_rng([config.seed, STREAM_PLAN, 3])
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
