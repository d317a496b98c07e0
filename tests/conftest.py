"""Shared test fixtures: where the real shared data lives, and a tiny hand-made dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from audiomoment.clap.checkpoint import head_state, save_checkpoint
from audiomoment.testing.random_clap import (
    ensure_random_checkpoint,
    random_projection_head,
    write_tiny_tokenizer,
)


def shared_data_dir() -> Path:
    """$AUDIOMOMENT_SHARED_DATA, else ``<repo>/../shared/data``."""
    env = os.environ.get("AUDIOMOMENT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set AUDIOMOMENT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def clap_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random full-size MS-CLAP 2023 checkpoint (official layout, legacy GPT-2 buffers
    included) and a tiny GPT-2-format tokenizer, built once per session."""
    root = tmp_path_factory.getbasetemp() / "clap-random"
    ckpt = ensure_random_checkpoint(root / "CLAP_weights_2023.pth", seed=0)
    tok = root / "tokenizer"
    if not (tok / "merges.txt").is_file():
        write_tiny_tokenizer(tok)
    return ckpt, tok


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_report_command(*argv: object) -> int:
    """Run one of the report commands (report, package-submission) as the CLI would."""
    import argparse

    from audiomoment.cli.report import add_report_commands

    parser = argparse.ArgumentParser()
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return int(args.handler(args))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> dict:
    """Two recordings, three queries, 768-d features, projection heads, a neutral vector
    (:func:`make_tiny_dataset` in ``tmp_path``)."""
    return make_tiny_dataset(tmp_path)


def make_tiny_dataset(tmp_path: Path) -> dict:
    """Two recordings, three queries, 768-d features, projection heads, a neutral vector.

    Events are planted so the answer is known: the query of q1 points at frames 10..19 of
    rec_a, q2 at frames 30..34 of rec_a, q3 at frames 5..14 of rec_b.
    """
    rng = np.random.default_rng(7)
    feats = tmp_path / "FEATURES"
    (feats / "clap").mkdir(parents=True)
    (feats / "clap_text").mkdir()
    directions = rng.normal(size=(3, 768))
    plan = {"rec_a": (50.0, [(0, 10, 20), (1, 30, 35)]), "rec_b": (40.5, [(2, 5, 15)])}
    for vid, (duration, events) in plan.items():
        x = rng.normal(size=(int(duration), 768))
        for d, a, b in events:
            x[a:b] += 3.0 * directions[d]
        np.savez(feats / "clap" / f"{vid}.npz", features=x.astype(np.float32))
    annotations = [
        {"qid": "q1", "query": "a dog barks", "vid": "rec_a", "duration": 50.0,
         "relevant_windows": [[10, 20]]},
        {"qid": "q2", "query": "a door slams", "vid": "rec_a", "duration": 50.0,
         "relevant_windows": [[30, 35]]},
        {"qid": "q3", "query": "rain falls", "vid": "rec_b", "duration": 40.5,
         "relevant_windows": [[5, 15]]},
    ]
    for i, row in enumerate(annotations):
        hidden = rng.normal(size=(4, 768))
        hidden[-1] = directions[i]
        np.savez(feats / "clap_text" / f"{row['qid']}.npz",
                 last_hidden_state=hidden.astype(np.float32))
    # heads that keep the structure: W1 = orthonormal columns, small W2
    q, _ = np.linalg.qr(rng.normal(size=(1024, 768)))
    head = random_projection_head(rng)
    head = type(head)(
        linear1=(q * 10).astype(np.float32),
        linear2=(head.linear2 * 0.01).astype(np.float32),
        ln_weight=np.ones(1024, np.float32),
        ln_bias=np.zeros(1024, np.float32),
    )
    ckpt = tmp_path / "CLAP_weights_2023.pth"
    save_checkpoint(ckpt, {**head_state(head, "audio"), **head_state(head, "text")})
    neutral = rng.normal(size=1024)
    np.save(tmp_path / "neutral.npy", neutral)
    return {
        "root": tmp_path,
        "features": feats,
        "annotations": write_jsonl(tmp_path / "annotations.jsonl", annotations),
        "rows": annotations,
        "checkpoint": ckpt,
        "neutral": tmp_path / "neutral.npy",
    }
