"""The feature store: the same predictions as reading every feature file, a warm run that
reads no file content, changed files picked up, interrupted ingests harmless, and a store
that cannot be used replaced by the per-file path with a note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiomoment.clap.checkpoint import load_projection_heads
from audiomoment.io import feature_store as fs
from audiomoment.io.annotations import read_annotations
from audiomoment.io.features import load_neutral_embedding
from audiomoment.io.predictions import write_predictions
from audiomoment.method.traces import l2_normalize, query_trace
from audiomoment.pipelines import dataset as ds

SYSTEMS = (1, 2, "window")


def _age_files(root: Path, seconds: float = 3600.0) -> None:
    """Set every file's mtime an hour back: the memo trusts it (not racy)."""
    past = time.time() - seconds
    for path in root.rglob("*.npz"):
        os.utime(path, (past, past))


def _predict(tiny: dict, system: int | str, cache: Path | None, store: bool = True,
             heads: object | None = None) -> ds.PredictionRun:
    rows = read_annotations(tiny["annotations"])
    if heads is None:
        heads = load_projection_heads(tiny["checkpoint"])
    neutral = load_neutral_embedding(tiny["neutral"]) if system == 1 else None
    return ds.predict_dataset(rows, tiny["features"], system=system, heads=heads,
                              neutral=neutral, cache_dir=cache, progress=False,
                              keep_results=True, feature_store=store)


def _bytes(run: ds.PredictionRun, path: Path) -> bytes:
    write_predictions(path, run.rows)
    return path.read_bytes()


def _store_root(cache: Path) -> Path:
    roots = [p for p in (cache / fs.CACHE_SUBDIR).iterdir() if p.name != "heads"]
    assert len(roots) == 1
    return roots[0]


def _n_rows(cache: Path) -> dict[str, int]:
    snap = fs.FeatureStore(_store_root(cache)).snapshot()
    return {kind: sum(k == kind for k, _ in snap.rows) for kind in (fs.AUDIO, fs.TEXT)}


class _Counter:
    """Wraps a function and records the positional arguments of each call."""

    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.fn = fn
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(args)
        return self.fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Same bytes as the per-file path
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_store_predictions_are_the_per_file_bytes(
    tiny_dataset: dict, tmp_path: Path, system: int | str
) -> None:
    reference = _predict(tiny_dataset, system, None)  # no cache: every file read, projected
    per_file = _predict(tiny_dataset, system, tmp_path / "c1", store=False)
    cold = _predict(tiny_dataset, system, tmp_path / "c2")
    warm = _predict(tiny_dataset, system, tmp_path / "c2")
    assert not cold.notes and not warm.notes
    expected = _bytes(reference, tmp_path / "ref.jsonl")
    assert expected.count(b"\n") == 3
    for name, run in (("per_file", per_file), ("cold", cold), ("warm", warm)):
        assert _bytes(run, tmp_path / f"{name}.jsonl") == expected, name
        assert run.n_past_duration == reference.n_past_duration
        for qid, res in reference.results.items():
            assert run.results[qid].trace.tobytes() == res.trace.tobytes()
    # the store's first run fills the projection cache as the per-file path does
    assert len(list((tmp_path / "c2" / "projected").rglob("*.npy"))) == 2


@pytest.mark.parametrize("system", (1, 2))
def test_store_traces_equal_query_trace_of_the_files(
    tiny_dataset: dict, tmp_path: Path, system: int
) -> None:
    """Oracle: the traces of the store are query_trace of the files' projected arrays."""
    from audiomoment.clap.projection import project

    heads = load_projection_heads(tiny_dataset["checkpoint"])
    neutral = load_neutral_embedding(tiny_dataset["neutral"])
    n = l2_normalize(neutral) if system == 1 else None
    _predict(tiny_dataset, system, tmp_path / "c")
    run = _predict(tiny_dataset, system, tmp_path / "c")
    feats = tiny_dataset["features"]
    for row in tiny_dataset["rows"]:
        audio = np.load(feats / "clap" / f"{row['vid']}.npz")["features"]
        text = np.load(feats / "clap_text" / f"{row['qid']}.npz")["last_hidden_state"][-1]
        a = l2_normalize(project(audio, heads["audio"]))
        q = project(text, heads["text"])
        expected = query_trace(a, q, n)
        assert run.results[row["qid"]].trace.tobytes() == expected.tobytes()


def test_joint_space_features_need_no_heads(tiny_dataset: dict, tmp_path: Path) -> None:
    """1024-d features: the store is named 'joint' and gives the per-file bytes."""
    from audiomoment.clap.projection import project

    heads = load_projection_heads(tiny_dataset["checkpoint"])
    feats = tiny_dataset["features"]
    for path in (feats / "clap").glob("*.npz"):
        x = np.load(path)["features"]
        np.savez(path, features=project(x, heads["audio"], normalize=False))
    for path in (feats / "clap_text").glob("*.npz"):
        x = np.load(path)["last_hidden_state"][-1]
        np.savez(path, last_hidden_state=project(x, heads["text"])[None])
    rows = read_annotations(tiny_dataset["annotations"])
    neutral = load_neutral_embedding(tiny_dataset["neutral"])
    runs = [ds.predict_dataset(rows, feats, system=1, neutral=neutral, cache_dir=cache,
                               progress=False, feature_store=store)
            for cache, store in ((None, False), (tmp_path / "c", True), (tmp_path / "c", True))]
    outs = [_bytes(r, tmp_path / f"{i}.jsonl") for i, r in enumerate(runs)]
    assert outs[0] == outs[1] == outs[2]
    assert (tmp_path / "c" / "store" / "joint" / fs.MANIFEST).is_file()


def test_cli_store_and_no_store_write_the_same_file_and_warm_run_skips_torch(
    tiny_dataset: dict, tmp_path: Path
) -> None:
    _age_files(tiny_dataset["features"])
    base = [sys.executable, "-c",
            "import sys; from audiomoment.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)",
            "predict", "--annotations", str(tiny_dataset["annotations"]),
            "--features", str(tiny_dataset["features"]),
            "--checkpoint", str(tiny_dataset["checkpoint"]),
            "--neutral-embedding", str(tiny_dataset["neutral"]), "--system", "1",
            "--cache-dir", str(tmp_path / "cache")]
    outs = {}
    for name, extra in (("files", ["--no-store"]), ("cold", []), ("warm", [])):
        proc = subprocess.run([*base, "--out", str(tmp_path / f"{name}.jsonl"), *extra],
                              capture_output=True, text=True, check=True)
        outs[name] = (tmp_path / f"{name}.jsonl").read_bytes()
        if name == "warm":
            assert "TORCH False" in proc.stdout, proc.stdout
        else:
            assert "TORCH True" in proc.stdout
    assert outs["files"] == outs["cold"] == outs["warm"]


def test_checkpoint_heads_remember_their_digests(tiny_dataset: dict, tmp_path: Path) -> None:
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    first = ds.CheckpointHeads(tiny_dataset["checkpoint"], tmp_path)
    assert first.loaded  # no memo yet: read at once
    second = ds.CheckpointHeads(tiny_dataset["checkpoint"], tmp_path)
    assert not second.loaded
    assert second.digest("audio") == ds.head_digest(heads["audio"])
    assert second.digest("text") == ds.head_digest(heads["text"])
    assert ds.feature_store_dir(tmp_path, second) == ds.feature_store_dir(tmp_path, heads)
    np.testing.assert_array_equal(second["audio"].linear1, heads["audio"].linear1)
    assert second.loaded
    with pytest.raises(ds.InputError, match="checkpoint file not found"):
        ds.CheckpointHeads(tmp_path / "missing.pth", tmp_path)


# ---------------------------------------------------------------------------------------------
# The memo: what a run reads
# ---------------------------------------------------------------------------------------------


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Counter]:
    counters = {
        "hash": _Counter(ds.file_sha256),
        "audio": _Counter(ds.load_audio_features),
        "text": _Counter(ds.load_query_features),
    }
    monkeypatch.setattr(ds, "file_sha256", counters["hash"])
    monkeypatch.setattr(ds, "load_audio_features", counters["audio"])
    monkeypatch.setattr(ds, "load_query_features", counters["text"])
    return counters


def test_warm_run_reads_no_feature_file(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _age_files(tiny_dataset["features"])
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 1, cache), tmp_path / "a.jsonl")
    counters = _count_reads(monkeypatch)
    assert _bytes(_predict(tiny_dataset, 1, cache), tmp_path / "b.jsonl") == expected
    assert {k: len(c.calls) for k, c in counters.items()} == {"hash": 0, "audio": 0, "text": 0}


def test_recently_written_files_are_hashed_again(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files whose mtime is not at least RACY_NS before their hashing (here: in the
    future) are not trusted by the memo: hashed again on every run (not re-read as
    features) until a hashing sees an old enough mtime."""
    cache = tmp_path / "cache"
    _age_files(tiny_dataset["features"], -3600.0)  # an hour ahead of the clock
    _predict(tiny_dataset, 2, cache)
    counters = _count_reads(monkeypatch)
    _predict(tiny_dataset, 2, cache)
    assert len(counters["hash"].calls) == 5  # 2 recordings + 3 queries
    assert not counters["audio"].calls and not counters["text"].calls
    _age_files(tiny_dataset["features"])  # changed mtimes: hashed once more, then trusted
    _predict(tiny_dataset, 2, cache)
    assert len(counters["hash"].calls) == 10
    _predict(tiny_dataset, 2, cache)
    assert len(counters["hash"].calls) == 10
    assert not counters["audio"].calls and not counters["text"].calls


def test_changed_and_touched_files(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats = tiny_dataset["features"]
    _age_files(feats)
    cache = tmp_path / "cache"
    _predict(tiny_dataset, 1, cache)
    assert _n_rows(cache) == {fs.AUDIO: 2, fs.TEXT: 3}
    store = fs.FeatureStore(_store_root(cache))
    rec_b = str((feats / "clap" / "rec_b.npz").resolve())
    q1 = str((feats / "clap_text" / "q1.npz").resolve())
    old_b, old_q1 = store.snapshot().memo[rec_b], store.snapshot().memo[q1]

    # touched only: hashed again (same content), not read as features; the memo moves on
    past = time.time() - 600
    os.utime(rec_b, (past, past))
    counters = _count_reads(monkeypatch)
    run = _predict(tiny_dataset, 1, cache)
    assert counters["hash"].calls == [(rec_b,)]
    assert not counters["audio"].calls and not counters["text"].calls
    assert _n_rows(cache) == {fs.AUDIO: 2, fs.TEXT: 3}
    memo = store.snapshot().memo[rec_b]
    assert memo[2] == old_b[2] and memo[1] == os.stat(rec_b).st_mtime_ns != old_b[1]
    assert _bytes(run, tmp_path / "t.jsonl") == _bytes(
        _predict(tiny_dataset, 1, None), tmp_path / "t_ref.jsonl")

    # content changed: new rows under the new digest, predictions of the new content
    x = np.load(rec_b)["features"]
    np.savez(rec_b, features=x[::-1].copy())
    hidden = np.load(q1)["last_hidden_state"]
    np.savez(q1, last_hidden_state=-hidden)
    _age_files(feats, 300)
    monkeypatch.undo()
    run = _predict(tiny_dataset, 1, cache)
    assert _n_rows(cache) == {fs.AUDIO: 3, fs.TEXT: 4}
    snap = store.snapshot()
    assert snap.memo[rec_b][2] == fs.file_sha256(rec_b) != old_b[2]
    assert snap.memo[q1][2] == fs.file_sha256(q1) != old_q1[2]
    assert _bytes(run, tmp_path / "c.jsonl") == _bytes(
        _predict(tiny_dataset, 1, None), tmp_path / "c_ref.jsonl")


def add_copies_of_rec_a_and_q1(tiny_dataset: dict) -> None:
    """Add rec_c (a copy of rec_a's feature file) and q4 (a copy of q1's) and a row asking
    q4 of rec_c to the tiny dataset."""
    feats = tiny_dataset["features"]
    (feats / "clap" / "rec_c.npz").write_bytes((feats / "clap" / "rec_a.npz").read_bytes())
    (feats / "clap_text" / "q4.npz").write_bytes((feats / "clap_text" / "q1.npz").read_bytes())
    rows = [*tiny_dataset["rows"], {"qid": "q4", "query": "a dog barks", "vid": "rec_c",
                                    "duration": 50.0, "relevant_windows": [[10, 20]]}]
    tiny_dataset["annotations"].write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_identical_files_share_rows(tiny_dataset: dict, tmp_path: Path) -> None:
    add_copies_of_rec_a_and_q1(tiny_dataset)
    run = _predict(tiny_dataset, 1, tmp_path / "cache")
    assert _n_rows(tmp_path / "cache") == {fs.AUDIO: 2, fs.TEXT: 3}
    assert run.results["q4"].trace.tobytes() == run.results["q1"].trace.tobytes()
    assert _bytes(run, tmp_path / "a.jsonl") == _bytes(
        _predict(tiny_dataset, 1, None), tmp_path / "b.jsonl")


# ---------------------------------------------------------------------------------------------
# Interrupted ingests and stores that cannot be used
# ---------------------------------------------------------------------------------------------


def test_ingest_interrupted_between_commits_keeps_a_usable_store(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _age_files(tiny_dataset["features"])
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 1, None), tmp_path / "ref.jsonl")
    monkeypatch.setattr(ds, "STORE_BATCH_ROWS", 1)  # commit after every recording and query
    real = ds.recording_embeddings

    def second_fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        if "rec_b" in str(args[2]):
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ds, "recording_embeddings", second_fails)
    with pytest.raises(RuntimeError, match="killed"):
        _predict(tiny_dataset, 1, cache)
    # rec_a and its two queries committed, nothing of rec_b
    assert _n_rows(cache) == {fs.AUDIO: 1, fs.TEXT: 2}
    monkeypatch.setattr(ds, "recording_embeddings", real)
    counters = _count_reads(monkeypatch)
    assert _bytes(_predict(tiny_dataset, 1, cache), tmp_path / "a.jsonl") == expected
    assert [vid for _, vid in counters["audio"].calls] == ["rec_b"]
    assert _n_rows(cache) == {fs.AUDIO: 2, fs.TEXT: 3}


def test_commit_interrupted_after_the_segment_leaves_no_trace(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    real = fs.StoreWriter._write_segment

    def write_then_die(self, name, kind, arrays):  # type: ignore[no-untyped-def]
        real(self, name, kind, arrays)
        raise RuntimeError("killed before the manifest commit")

    monkeypatch.setattr(fs.StoreWriter, "_write_segment", write_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        _predict(tiny_dataset, 2, cache)
    root = _store_root(cache)
    assert len(list((root / fs.SEGMENTS).glob("*.npy"))) == 1  # written, named by no row
    (root / fs.SEGMENTS / ".audio-x.npy.tmp").write_bytes(b"partial")  # a killed write
    assert fs.FeatureStore(root).snapshot().rows == {}
    monkeypatch.undo()
    assert _bytes(_predict(tiny_dataset, 2, cache), tmp_path / "a.jsonl") == expected
    snap = fs.FeatureStore(root).snapshot()
    on_disk = {p.name for p in (root / fs.SEGMENTS).iterdir()}
    assert on_disk == {f"{loc.segment}.npy" for loc in snap.rows.values()}


def test_read_only_cache_falls_back_to_the_files_with_a_note(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    expected = _bytes(_predict(tiny_dataset, 1, None), tmp_path / "ref.jsonl")
    os.chmod(cache, 0o555)
    try:
        if os.geteuid() == 0:  # root writes anyway: refuse as a read-only folder would

            def refuse(path: Path) -> None:
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(fs, "_make_dirs", refuse)
        heads = ds.CheckpointHeads(tiny_dataset["checkpoint"], cache)
        run = _predict(tiny_dataset, 1, cache, heads=heads)
    finally:
        os.chmod(cache, 0o755)
    assert _bytes(run, tmp_path / "a.jsonl") == expected
    assert len(run.notes) == 1
    assert "cannot write the feature store" in run.notes[0]
    assert "read the feature files directly" in run.notes[0]
    assert not (cache / "store" / "joint").exists()


def test_another_writer_means_the_files_are_read(tiny_dataset: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    with fs.FeatureStore(ds.feature_store_dir(cache, heads)).writer():
        run = _predict(tiny_dataset, 2, cache, heads=heads)
    assert _bytes(run, tmp_path / "a.jsonl") == expected
    assert len(run.notes) == 1 and "another process is writing" in run.notes[0]
    run = _predict(tiny_dataset, 2, cache, heads=heads)  # the lock is free again
    assert not run.notes and _n_rows(cache) == {fs.AUDIO: 2, fs.TEXT: 3}


def test_damaged_segment_falls_back_with_a_note(tiny_dataset: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    _predict(tiny_dataset, 2, cache)
    for seg in (_store_root(cache) / fs.SEGMENTS).glob("audio-*.npy"):
        seg.write_bytes(seg.read_bytes()[:200])
    run = _predict(tiny_dataset, 2, cache)
    assert _bytes(run, tmp_path / "a.jsonl") == expected
    assert len(run.notes) == 1 and "feature-store segment" in run.notes[0]


@pytest.mark.parametrize("system", SYSTEMS)
def test_traces_taken_a_chunk_at_a_time_give_the_same_bytes(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: int | str
) -> None:
    """The store computes each batch's traces when the batch is localised; one query per
    batch must give the bytes of one batch for all, and a chunk never holds more traces
    than its batch."""
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, system, None), tmp_path / "ref.jsonl")
    sizes: list[int] = []
    take = ds.StoredTraces.take

    def counting_take(self, indices):  # type: ignore[no-untyped-def]
        sizes.append(len(indices))
        return take(self, indices)

    monkeypatch.setattr(ds.StoredTraces, "take", counting_take)
    monkeypatch.setitem(ds.BATCH_QUERIES, "fast", 1)
    run = _predict(tiny_dataset, system, cache)
    assert _bytes(run, tmp_path / "chunked.jsonl") == expected
    assert sizes == [1, 1, 1] and not run.notes


def test_a_store_that_fails_between_batches_falls_back_with_a_note(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    reference = _predict(tiny_dataset, 1, None)
    expected = _bytes(reference, tmp_path / "ref.jsonl")
    take = ds.StoredTraces.take
    calls: list[int] = []

    def failing_take(self, indices):  # type: ignore[no-untyped-def]
        calls.append(len(indices))
        if len(calls) == 2:
            raise fs.StoreUnavailable("/cache/segment.npy: unreadable feature-store segment")
        return take(self, indices)

    monkeypatch.setattr(ds.StoredTraces, "take", failing_take)
    monkeypatch.setitem(ds.BATCH_QUERIES, "fast", 2)
    run = _predict(tiny_dataset, 1, cache)
    assert calls == [2, 1]  # the second batch failed: the run starts again from the files
    assert _bytes(run, tmp_path / "fallback.jsonl") == expected
    assert (run.n_fallback, run.n_degenerate) == (reference.n_fallback, reference.n_degenerate)
    assert run.notes == ["/cache/segment.npy: unreadable feature-store segment; read the "
                         "feature files directly instead"]


def test_writer_refuses_rows_of_the_wrong_type(tmp_path: Path) -> None:
    with fs.FeatureStore(tmp_path / "s").writer() as w, pytest.raises(TypeError):
        w.commit([("abc", np.zeros((2, 4), np.float32))], [], [])
    assert fs.FeatureStore(tmp_path / "s").snapshot().rows == {}


def test_snapshot_maps_rows_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a1, a2 = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    t1 = rng.normal(size=8).astype(np.float32)
    store = fs.FeatureStore(tmp_path / "s")
    with store.writer() as w:
        w.commit([("a1", a1)], [("t1", t1)], [(fs.FileStat("/x", 10, 5), "a1", 7)])
        w.commit([("a2", a2)], [], [])
    snap = store.snapshot()
    assert snap.array(fs.AUDIO, "a1").tobytes() == a1.tobytes()
    assert snap.array(fs.AUDIO, "a2").tobytes() == a2.tobytes()
    assert snap.array(fs.TEXT, "t1").tobytes() == t1.tobytes()
    assert snap.memo == {"/x": (10, 5, "a1", 7)}
    # the memo: trusted only for the same size and mtime, hashed well after the mtime
    with store.writer() as w:
        w.commit([], [], [(fs.FileStat("/y", 10, 5), "a2", 5 + fs.RACY_NS)])
    snap = store.snapshot()
    assert snap.sha256(fs.FileStat("/y", 10, 5)) == "a2"
    assert snap.sha256(fs.FileStat("/y", 10, 6)) is None
    assert snap.sha256(fs.FileStat("/y", 11, 5)) is None
    assert snap.sha256(fs.FileStat("/x", 10, 5)) is None  # hashed 2 ns after its mtime
    assert snap.sha256(None) is None


def test_stage_timings_add_up_over_batches(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's seconds per stage: each batch's trace and localisation time is added (a
    known delay injected per batch gives a lower bound), and no stage exceeds the run."""
    take = ds.StoredTraces.take
    localised = ds.localised_rows

    def slow_take(self, indices):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return take(self, indices)

    def slow_localised(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return localised(*args, **kwargs)

    _predict(tiny_dataset, 2, tmp_path / "cache")  # fill the store
    monkeypatch.setattr(ds.StoredTraces, "take", slow_take)
    monkeypatch.setattr(ds, "localised_rows", slow_localised)
    monkeypatch.setitem(ds.BATCH_QUERIES, "fast", 1)
    started = time.perf_counter()
    run = _predict(tiny_dataset, 2, tmp_path / "cache")
    whole = time.perf_counter() - started
    assert list(run.timings_s) == list(ds.STAGES)
    assert all(0.0 <= v <= whole for v in run.timings_s.values()), run.timings_s
    assert run.timings_s["traces"] >= 0.15  # three batches of 0.05 s at least
    assert run.timings_s["localisation"] >= 0.15
    assert sum(run.timings_s.values()) <= whole


def test_per_file_stage_timings_add_up_over_recordings(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-file path adds each recording's reading, projection and trace time."""
    def slowed(fn):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(0.05)
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(ds, "load_audio_features", slowed(ds.load_audio_features))
    monkeypatch.setattr(ds, "recording_embeddings", slowed(ds.recording_embeddings))
    monkeypatch.setattr(ds, "recording_traces", slowed(ds.recording_traces))
    started = time.perf_counter()
    run = _predict(tiny_dataset, 1, None)  # no cache: the per-file path
    whole = time.perf_counter() - started
    n_recordings = len({r["vid"] for r in read_annotations(tiny_dataset["annotations"])})
    assert n_recordings == 2
    assert list(run.timings_s) == list(ds.STAGES)
    assert all(0.0 <= v <= whole for v in run.timings_s.values()), run.timings_s
    for stage in ("load", "projection", "traces"):
        assert run.timings_s[stage] >= 0.05 * n_recordings, (stage, run.timings_s)
    assert sum(run.timings_s.values()) <= whole


def test_predict_dataset_defaults(tiny_dataset: dict, tmp_path: Path) -> None:
    """System 1, results not kept, the feature store used when there is a cache folder."""
    rows = read_annotations(tiny_dataset["annotations"])
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    neutral = load_neutral_embedding(tiny_dataset["neutral"])
    with pytest.raises(ds.InputError, match=r"^System 1 needs the neutral embedding \(a "
                                            r"1024-d vector in the joint space\)$"):
        ds.predict_dataset(rows, tiny_dataset["features"], heads=heads, progress=False)
    with pytest.raises(ds.InputError, match=r"^system must be 1, 2 or 'window', got 3$"):
        ds.predict_dataset(rows, tiny_dataset["features"], system=3, heads=heads)
    cache = tmp_path / "cache"
    run = ds.predict_dataset(rows, tiny_dataset["features"], heads=heads, neutral=neutral,
                             cache_dir=cache, progress=False)
    assert run.results == {}
    assert (cache / fs.CACHE_SUBDIR).is_dir()  # the store was filled
    expected = _bytes(_predict(tiny_dataset, 1, None), tmp_path / "ref.jsonl")
    assert _bytes(run, tmp_path / "default.jsonl") == expected


# ---------------------------------------------------------------------------------------------
# Where the caches live, and the memos reused
# ---------------------------------------------------------------------------------------------


def _float32_key(head: object) -> str:
    """The documented key: SHA-256 of the four weight arrays as float32 bytes, 16 hex."""
    import hashlib

    h = hashlib.sha256()
    for name in ("linear1", "linear2", "ln_weight", "ln_bias"):
        h.update(np.asarray(getattr(head, name), dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def test_the_store_folder_is_named_by_the_head_digests(tmp_path: Path) -> None:
    """``store/<audio digest>-<text digest>``, ``none`` for a missing head, ``joint``
    without heads; a head given in float64 is the same float32 weights, the same key."""
    from dataclasses import replace

    from audiomoment.testing.random_clap import random_projection_head

    rng = np.random.default_rng(5)
    audio, text = random_projection_head(rng), random_projection_head(rng)
    da, dt = ds.head_digest(audio), ds.head_digest(text)
    assert da == _float32_key(audio) and dt == _float32_key(text) and da != dt
    assert len(da) == 16
    wide = replace(audio, linear1=audio.linear1.astype(np.float64),
                   ln_bias=audio.ln_bias.astype(np.float64))
    assert ds.head_digest(wide) == da
    bumped = replace(audio, ln_bias=audio.ln_bias + np.float32(1))
    assert ds.head_digest(bumped) != da
    store = tmp_path / fs.CACHE_SUBDIR
    assert ds.feature_store_dir(tmp_path, {"audio": audio, "text": text}) == store / f"{da}-{dt}"
    assert ds.feature_store_dir(tmp_path, {"audio": audio}) == store / f"{da}-none"
    assert ds.feature_store_dir(tmp_path, {"text": text}) == store / f"none-{dt}"
    assert ds.feature_store_dir(tmp_path, None) == ds.feature_store_dir(tmp_path, {}) \
        == store / "joint"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_heads_memo_lives_under_the_checkpoint_digest(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``<cache>/store/heads/<checkpoint sha256>.json`` holds the head digests, and the
    checkpoint's SHA-256 is remembered in ``<cache>/digests.json``: a second construction
    neither hashes nor loads the checkpoint."""
    from audiomoment.io import cache as cache_mod

    ckpt = tiny_dataset["checkpoint"]
    heads = load_projection_heads(ckpt)
    cache = tmp_path / "cache"
    ds.CheckpointHeads(ckpt, cache)
    memo = cache / fs.CACHE_SUBDIR / "heads" / f"{_sha256(ckpt)}.json"
    assert json.loads(memo.read_text()) == {"audio": ds.head_digest(heads["audio"]),
                                            "text": ds.head_digest(heads["text"])}
    assert _sha256(ckpt) in json.loads((cache / "digests.json").read_text()).values()
    hashed = _Counter(cache_mod.file_digest)
    monkeypatch.setattr(cache_mod, "file_digest", hashed)
    again = ds.CheckpointHeads(ckpt, cache)
    assert not again.loaded and not hashed.calls
    assert sorted(again) == ["audio", "text"] and len(again) == 2


@pytest.mark.parametrize("content", ['{"audio": 5, "text": 7}', '{"audio": "x", "text": 1}',
                                     '["audio", "text"]', '"audio"', '{"audio": '])
def test_a_damaged_heads_memo_is_not_trusted(
    tiny_dataset: dict, tmp_path: Path, content: str
) -> None:
    """A memo that is not an object of strings: the checkpoint is read at once and the
    memo written again."""
    ckpt = tiny_dataset["checkpoint"]
    heads = load_projection_heads(ckpt)
    ds.CheckpointHeads(ckpt, tmp_path)
    memo = tmp_path / fs.CACHE_SUBDIR / "heads" / f"{_sha256(ckpt)}.json"
    memo.write_text(content)
    again = ds.CheckpointHeads(ckpt, tmp_path)
    assert again.loaded
    assert again.digest("audio") == ds.head_digest(heads["audio"])
    assert json.loads(memo.read_text()) == {"audio": ds.head_digest(heads["audio"]),
                                            "text": ds.head_digest(heads["text"])}


def test_a_heads_memo_that_cannot_be_written_costs_only_time(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heads are read and the run goes on; without a cache folder no memo is even
    tried."""
    from audiomoment.io import atomic

    tried: list[Path] = []

    def refuse(path: Path, text: str) -> None:
        tried.append(Path(path))
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "write_text", refuse)
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    for cache in (tmp_path, None):
        lazy = ds.CheckpointHeads(tiny_dataset["checkpoint"], cache)
        assert lazy.loaded and lazy.digest("text") == ds.head_digest(heads["text"])
    assert not (tmp_path / fs.CACHE_SUBDIR).exists()
    memo = tmp_path / fs.CACHE_SUBDIR / "heads" / f"{_sha256(tiny_dataset['checkpoint'])}.json"
    assert tried == [memo]


def test_run_settings_remember_the_checkpoint_digest(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's SHA-256, hashed once per cache folder; the neutral source kept for
    System 1 only."""
    from audiomoment.config import LocalizeConfig
    from audiomoment.io import cache as cache_mod

    ckpt, config = tiny_dataset["checkpoint"], LocalizeConfig()
    first = ds.run_settings(1, config, neutral_source="file n.npy", checkpoint=ckpt,
                            cache_dir=tmp_path)
    assert (first.checkpoint_sha256, first.neutral_source) == (_sha256(ckpt), "file n.npy")
    hashed = _Counter(cache_mod.file_digest)
    monkeypatch.setattr(cache_mod, "file_digest", hashed)
    for system in (2, "window"):
        later = ds.run_settings(system, config, neutral_source="file n.npy", checkpoint=ckpt,
                                cache_dir=tmp_path)
        assert (later.checkpoint_sha256, later.neutral_source) == (_sha256(ckpt), None)
    assert not hashed.calls
    none = ds.run_settings(2, config, neutral_source=None, checkpoint=None, cache_dir=None)
    assert none.checkpoint_sha256 is None


def test_projected_recordings_are_reused_and_a_bad_entry_redone(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-file path projects each recording once per cache folder; an entry of the
    wrong shape is projected again and replaced."""
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    projected = _Counter(ds.project)
    monkeypatch.setattr(ds, "project", projected)

    def recordings_projected() -> int:
        return sum(np.ndim(args[0]) == 2 for args in projected.calls)

    _predict(tiny_dataset, 2, cache, store=False)
    assert recordings_projected() == 2
    assert _bytes(_predict(tiny_dataset, 2, cache, store=False), tmp_path / "a.jsonl") \
        == expected
    assert recordings_projected() == 2  # both from the cache
    rec_a = tiny_dataset["features"] / "clap" / "rec_a.npz"
    (entry,) = (cache / "projected").rglob(f"{_sha256(rec_a)}.npy")
    np.save(entry, np.zeros((3, 1024), np.float32))
    assert _bytes(_predict(tiny_dataset, 2, cache, store=False), tmp_path / "b.jsonl") \
        == expected
    assert recordings_projected() == 3
    assert np.load(entry).shape == (50, 1024)


# ---------------------------------------------------------------------------------------------
# Staging and committing: what the store holds, when
# ---------------------------------------------------------------------------------------------


def _names(tiny: dict) -> dict[str, str]:
    """sha256 -> file stem, and absolute path -> file stem, of the tiny dataset's files."""
    out = {}
    for path in tiny["features"].rglob("*.npz"):
        out[fs.file_sha256(str(path))] = out[str(path.resolve())] = path.stem
    return out


@pytest.mark.parametrize(("limit", "expected"), [
    (1, [{"rec_a"}, {"q1"}, {"q2"}, {"rec_b"}, {"q3"}]),
    (43, [{"rec_a"}, {"q1", "q2", "rec_b", "q3"}]),
    (52, [{"rec_a", "q1", "q2"}, {"rec_b", "q3"}]),
    (92, [{"rec_a", "q1", "q2", "rec_b"}, {"q3"}]),
    (ds.STORE_BATCH_ROWS, [{"rec_a", "q1", "q2", "rec_b", "q3"}]),
])
def test_the_store_commits_when_the_staged_rows_reach_the_batch(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int,
    expected: list[set[str]]
) -> None:
    """Files are staged in order rec_a (50 windows), q1, q2 (one row each), rec_b (40), q3;
    a commit as soon as the staged rows reach the limit, and one at the end. Each file's
    memo entry goes with its rows."""
    names = _names(tiny_dataset)
    commits: list[tuple[set[str], set[str]]] = []
    real = fs.StoreWriter.commit

    def spy(self, audio, text, memo):  # type: ignore[no-untyped-def]
        commits.append(({names[sha] for sha, _ in (*audio, *text)},
                        {names[stat.path] for stat, _, _ in memo}))
        return real(self, audio, text, memo)

    monkeypatch.setattr(fs.StoreWriter, "commit", spy)
    monkeypatch.setattr(ds, "STORE_BATCH_ROWS", limit)
    _predict(tiny_dataset, "window", tmp_path / "cache")
    assert [rows for rows, _ in commits] == expected
    assert [memo for _, memo in commits] == expected


def test_identical_files_are_read_once(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recording and a query file identical to earlier ones are hashed, not read; the
    projection folder is found once per run."""
    add_copies_of_rec_a_and_q1(tiny_dataset)
    counters = _count_reads(monkeypatch)
    folders = _Counter(ds.projection_cache)
    monkeypatch.setattr(ds, "projection_cache", folders)
    _predict(tiny_dataset, 2, tmp_path / "cache")
    assert [vid for _, vid in counters["audio"].calls] == ["rec_a", "rec_b"]
    assert [qid for _, qid in counters["text"].calls] == ["q1", "q2", "q3"]
    assert len(folders.calls) == 1
    assert _n_rows(tmp_path / "cache") == {fs.AUDIO: 2, fs.TEXT: 3}


@pytest.mark.parametrize("when", ["before the read", "after the read"])
def test_a_query_file_changed_while_read_is_refused_and_not_stored(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """q2 rewritten between its hashing and the hashing after its read: the run stops with
    a message naming it, and the next run stores (and predicts from) its new content."""
    import re

    q2 = tiny_dataset["features"] / "clap_text" / "q2.npz"
    hidden = np.load(q2)["last_hidden_state"]
    real = ds.load_query_features

    def rewritten(features_dir, qid):  # type: ignore[no-untyped-def]
        if qid == "q2" and when == "before the read":
            np.savez(q2, last_hidden_state=-hidden)
        vector = real(features_dir, qid)
        if qid == "q2" and when == "after the read":
            np.savez(q2, last_hidden_state=-hidden)
        return vector

    monkeypatch.setattr(ds, "load_query_features", rewritten)
    cache = tmp_path / "cache"
    with pytest.raises(ds.InputError, match=f"^{re.escape(str(q2))}: the file changed while "
                                            "it was read; run again$"):
        _predict(tiny_dataset, 2, cache)
    monkeypatch.undo()
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    assert _bytes(_predict(tiny_dataset, 2, cache), tmp_path / "a.jsonl") == expected
    assert _bytes(_predict(tiny_dataset, 2, cache), tmp_path / "b.jsonl") == expected


def test_files_that_cannot_be_stated_are_stored_without_a_memo_entry(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stat, no memo entry (such files are hashed on every run); the rows are stored
    all the same, a commit per file."""
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    monkeypatch.setattr(ds, "stat_file", lambda path: None)
    monkeypatch.setattr(ds, "STORE_BATCH_ROWS", 1)
    run = _predict(tiny_dataset, 2, cache)
    assert _bytes(run, tmp_path / "a.jsonl") == expected and not run.notes
    assert _n_rows(cache) == {fs.AUDIO: 2, fs.TEXT: 3}
    assert fs.FeatureStore(_store_root(cache)).snapshot().memo == {}


def test_a_run_rewrites_only_the_memo_entries_of_files_it_hashed(
    tiny_dataset: dict, tmp_path: Path
) -> None:
    feats = tiny_dataset["features"]
    _age_files(feats)
    cache = tmp_path / "cache"
    _predict(tiny_dataset, 2, cache)
    store = fs.FeatureStore(_store_root(cache))
    before = dict(store.snapshot().memo)
    assert len(before) == 5
    rec_b = str((feats / "clap" / "rec_b.npz").resolve())
    past = time.time() - 600
    os.utime(rec_b, (past, past))
    _predict(tiny_dataset, 2, cache)
    after = store.snapshot().memo
    assert after[rec_b][1] == os.stat(rec_b).st_mtime_ns != before[rec_b][1]
    del after[rec_b], before[rec_b]
    assert after == before


def test_a_warm_run_needs_no_writer(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything stored: the run neither waits for nor needs the writer's lock (another
    process may hold it), and reads no feature file."""
    _age_files(tiny_dataset["features"])
    cache = tmp_path / "cache"
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    expected = _bytes(_predict(tiny_dataset, 2, cache, heads=heads), tmp_path / "a.jsonl")
    counters = _count_reads(monkeypatch)
    with fs.FeatureStore(ds.feature_store_dir(cache, heads)).writer():
        run = _predict(tiny_dataset, 2, cache, heads=heads)
    assert not run.notes
    assert _bytes(run, tmp_path / "b.jsonl") == expected
    assert {k: len(c.calls) for k, c in counters.items()} == {"hash": 0, "audio": 0, "text": 0}


def test_a_run_reads_only_the_memo_of_its_features_folder(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two features folders share one store; each run looks up only its own files."""
    import shutil

    feats = tiny_dataset["features"]
    other = tmp_path / "OTHER"
    shutil.copytree(feats, other)
    cache = tmp_path / "cache"
    _predict(tiny_dataset, 2, cache)
    _predict({**tiny_dataset, "features": other}, 2, cache)
    seen: list[set[str]] = []
    real = ds._store_plan

    def spy(annotations, groups, root, snap):  # type: ignore[no-untyped-def]
        seen.append(set(snap.memo))
        return real(annotations, groups, root, snap)

    monkeypatch.setattr(ds, "_store_plan", spy)
    _predict(tiny_dataset, 2, cache)
    _predict({**tiny_dataset, "features": other}, 2, cache)
    for folder, memo in zip((feats, other), seen, strict=True):
        assert len(memo) == 5
        assert all(path.startswith(str(folder.resolve()) + os.sep) for path in memo)


def test_each_segment_is_mapped_once_per_chunk_and_released_after_its_last_use(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One segment per file; queries of rec_a, rec_b, rec_a in annotation order. A chunk
    maps each segment once, holds at most one recording segment at a time, and drops every
    map when done."""
    rows = tiny_dataset["rows"]
    tiny_dataset["annotations"].write_text(
        "".join(json.dumps(r) + "\n" for r in (rows[0], rows[2], rows[1])))
    cache = tmp_path / "cache"
    expected = _bytes(_predict(tiny_dataset, 2, None), tmp_path / "ref.jsonl")
    monkeypatch.setattr(ds, "STORE_BATCH_ROWS", 1)
    _predict(tiny_dataset, 2, cache)
    events: list[tuple[str, str]] = []
    real_map, real_release = fs.StoreSnapshot._map, fs.StoreSnapshot.release

    def mapping(self, name):  # type: ignore[no-untyped-def]
        events.append(("map", name))
        return real_map(self, name)

    def releasing(self, name):  # type: ignore[no-untyped-def]
        events.append(("release", name))
        return real_release(self, name)

    monkeypatch.setattr(fs.StoreSnapshot, "_map", mapping)
    monkeypatch.setattr(fs.StoreSnapshot, "release", releasing)
    run = _predict(tiny_dataset, 2, cache)
    assert _bytes(run, tmp_path / "a.jsonl") == expected
    mapped: list[str] = []
    live: set[str] = set()
    for event, name in events:
        if event == "map":
            assert name not in mapped, events
            mapped.append(name)
            live.add(name)
        else:
            live.discard(name)
        assert sum(n.startswith(fs.AUDIO) for n in live) <= 1, events
    assert len(mapped) == 5 and not live, events


def test_a_query_asked_twice_in_a_recording_is_projected_once(
    tiny_dataset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows given directly (not read from a file, which refuses a repeated qid): q1 twice,
    then q2, in rec_a. Both q1 rows get the same answer, the per-file path's bytes; the
    store holds the file once, and it is projected once."""
    rows = tiny_dataset["rows"]
    annotations = [rows[0], rows[0], rows[1], rows[2]]
    heads = load_projection_heads(tiny_dataset["checkpoint"])
    feats = tiny_dataset["features"]

    def run(cache: Path | None) -> ds.PredictionRun:
        return ds.predict_dataset(annotations, feats, system=2, heads=heads, cache_dir=cache,
                                  progress=False)

    expected = _bytes(run(None), tmp_path / "ref.jsonl")
    assert expected.count(b"\n") == 4
    projected = _Counter(ds.project)
    monkeypatch.setattr(ds, "project", projected)
    result = run(tmp_path / "cache")
    assert _bytes(result, tmp_path / "a.jsonl") == expected
    assert result.rows[0] == result.rows[1]
    assert sorted(np.ndim(args[0]) for args in projected.calls) == [1, 1, 1, 2, 2]
    assert _n_rows(tmp_path / "cache") == {fs.AUDIO: 2, fs.TEXT: 3}
