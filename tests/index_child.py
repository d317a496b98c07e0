"""A child process of the archive-index tests: writes an index and parks at a chosen moment
so that the test can read the index meanwhile and then kill it (SIGKILL).

    python tests/index_child.py audio MODE K DB FOLDER MARKER
        index_audio of FOLDER with the test embedder; MODE says where to park, at the
        K-th commit of a recording: "between" (after it committed), "segment" (its segment
        file written, the manifest not yet), "transaction" (inside its SQLite transaction,
        rows inserted, not committed), "drop" (a commit left a segment that no recording
        uses, before it is dropped; K unused), "none" (run to the end).
    python tests/index_child.py churn DB MARKER
        the commits of :func:`churn_plan`, one after the other (see :func:`run_churn`).

When it parks, the child writes MARKER (its content: the mode) and sleeps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.ingest import index_audio
from audiomoment.index.store import ArchiveIndex, IndexWriter, ModelSpec, NewRecording

#: The neutral vector the child stores (System 1), as the tests expect it.
NEUTRAL_SEED = 5
CHURN_SPEC = ModelSpec(model="churn", dim=8, dtype="float16")
#: The churn child waits for the reader after this many commits.
CHURN_HALF = 20


def neutral_vector(dim: int) -> NDArray[np.float64]:
    return np.random.default_rng(NEUTRAL_SEED).normal(size=dim)


def park(marker: Path, what: str) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(what)
    tmp.rename(marker)
    time.sleep(600)


def churn_rows(name: str, version: int) -> NDArray[np.float32]:
    """The rows of recording ``name`` at ``version`` ((T, 8), T from the name and version)."""
    seed = int(name.removeprefix("c")) * 1000 + version
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3 + seed % 5, CHURN_SPEC.dim)).astype(np.float32)


def churn_plan() -> list[tuple[str, list[tuple[str, int]]]]:
    """The commits of the churn child: ("add", [(name, version), ...]) or ("remove",
    [(name, 0), ...]); adding a name that is there replaces it."""
    plan: list[tuple[str, list[tuple[str, int]]]] = []
    for step in range(40):
        if step % 5 == 4:
            plan.append(("remove", [(f"c{(step * 3) % 11}", 0)]))
        else:
            plan.append(("add", [(f"c{(step * 7 + k) % 11}", step) for k in range(1 + step % 3)]))
    return plan


def churn_states() -> list[dict[str, int]]:
    """name -> version after each commit of :func:`churn_plan` (the empty state first)."""
    state: dict[str, int] = {}
    states = [dict(state)]
    for kind, members in churn_plan():
        for name, version in members:
            if kind == "add":
                state[name] = version
            else:
                state.pop(name, None)
        states.append(dict(state))
    return states


def run_churn(db: Path, marker: Path) -> None:
    """The churn commits, a few milliseconds apart; after commit :data:`CHURN_HALF` it
    writes MARKER and waits for MARKER.go (the reader's snapshot of that state)."""
    go = marker.with_name(marker.name + ".go")
    with ArchiveIndex(db).writer(CHURN_SPEC) as writer:
        for step, (kind, members) in enumerate(churn_plan(), 1):
            if kind == "add":
                writer.add([NewRecording(name=n, embeddings=churn_rows(n, v),
                                         duration_s=float(len(churn_rows(n, v))),
                                         content_sha256=f"{n}:{v}") for n, v in members])
            else:
                writer.remove([n for n, _ in members])
            if step == CHURN_HALF:
                marker.write_text("half")
                while not go.exists():
                    time.sleep(0.005)
            time.sleep(0.003)


def run_audio(mode: str, k: int, db: Path, folder: Path, marker: Path) -> None:
    from index_helpers import CountingEmbedder

    embedder = CountingEmbedder()
    segments = 0
    write_segment = IndexWriter._write_segment
    bump = IndexWriter._bump

    def counting_write(self: IndexWriter, name: str, rows: NDArray[np.floating]) -> None:
        nonlocal segments
        write_segment(self, name, rows)
        segments += 1
        if mode == "segment" and segments == k:
            park(marker, mode)

    def parking_bump(self: IndexWriter) -> None:
        bump(self)
        if mode == "transaction" and segments == k:
            park(marker, mode)

    drop = IndexWriter._drop_unused_segments

    def parking_drop(self: IndexWriter) -> None:
        unused = self.con.execute("SELECT count(*) FROM segments WHERE name NOT IN "
                                  "(SELECT DISTINCT segment FROM recordings)").fetchone()[0]
        if mode == "drop" and unused:
            park(marker, mode)
        drop(self)

    IndexWriter._write_segment = counting_write  # type: ignore[method-assign]
    IndexWriter._bump = parking_bump  # type: ignore[method-assign]
    IndexWriter._drop_unused_segments = parking_drop  # type: ignore[method-assign]
    commits = 0

    def on_commit(name: str) -> None:
        nonlocal commits
        commits += 1
        if mode == "between" and commits == k:
            park(marker, mode)

    index_audio([folder], db, embedder, progress=False,
                neutral=neutral_vector(embedder.spec.dim), on_commit=on_commit)


if __name__ == "__main__":
    if sys.argv[1] == "audio":
        run_audio(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]),
                  Path(sys.argv[6]))
    else:
        run_churn(Path(sys.argv[2]), Path(sys.argv[3]))
