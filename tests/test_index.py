"""The archive index: incremental and resumable ingestion, snapshots under concurrent
writes, one model per index, the window scan, the bounded search against an exhaustive one,
queries by example, and features vs audio through the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from index_child import (
    CHURN_HALF,
    CHURN_SPEC,
    churn_rows,
    churn_states,
    neutral_vector,
)
from index_helpers import (
    TEST_SPEC,
    CountingEmbedder,
    PlantedArchive,
    all_moments,
    moment_tuples,
    planted_archive,
    rank_moments,
    unit,
    write_folder,
    write_wav,
)

from audiomoment.cli import main
from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.index import search as search_module
from audiomoment.index.ingest import index_audio, index_embeddings
from audiomoment.index.scan import window_scores
from audiomoment.index.search import query_matrix, search_archive, search_archive_many
from audiomoment.index.store import ArchiveIndex, ModelSpec, NewRecording, Snapshot
from audiomoment.io.audio import audio_info

CHILD = Path(__file__).with_name("index_child.py")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored(snapshot: Snapshot) -> dict[str, tuple[np.ndarray, float, str, str | None, bool]]:
    """name -> (rows, duration, content digest, source, has_audio) of a snapshot."""
    return {r.name: (np.asarray(snapshot.embeddings(r)), r.duration_s, r.content_sha256,
                     r.source, r.has_audio) for r in snapshot.recordings}


def assert_same_content(a: Snapshot, b: Snapshot) -> None:
    left, right = stored(a), stored(b)
    assert sorted(left) == sorted(right)
    for name, (rows, *rest) in left.items():
        np.testing.assert_array_equal(rows, right[name][0])
        assert tuple(rest) == right[name][1:], name


def segment_files(db: Path) -> set[str]:
    return {p.name.removesuffix(".npy") for p in (db / "segments").iterdir()}


def direct_rows(embedder: CountingEmbedder, path: Path) -> np.ndarray:
    """What the index must hold for ``path``: the embedder's rows in the index's dtype."""
    return embedder.embed(path).astype(embedder.spec.dtype)


# ------------------------------------------------------------------ incremental ingestion


def test_reindexing_embeds_only_what_changed(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from audiomoment.index import ingest

    folder = tmp_path / "audio"
    files = [*write_folder(folder, 3), write_wav(folder / "sub" / "deep.wav", 77, 3.0)]
    db = tmp_path / "db"
    emb = CountingEmbedder()
    hashed: list[str] = []
    sha256_file = ingest.sha256_file
    monkeypatch.setattr(ingest, "sha256_file",
                        lambda p, *a: hashed.append(Path(p).name) or sha256_file(p, *a))
    reference = CountingEmbedder()

    def check_rows() -> Snapshot:
        snap = ArchiveIndex(db).snapshot()
        for rec in snap.recordings:
            path = folder / rec.name
            assert rec.source == str(path.resolve()) and rec.has_audio
            assert rec.duration_s == audio_info(path).duration_s
            np.testing.assert_array_equal(snap.embeddings(rec), direct_rows(reference, path))
        # every segment file is named by the manifest, and the other way round
        assert segment_files(db) == set(snap.segments)
        return snap

    report = index_audio([folder], db, emb, progress=False)
    assert sorted(emb.calls) == ["deep.wav", "f00.wav", "f01.wav", "f02.wav"]
    assert sorted(report.added) == ["f00.wav", "f01.wav", "f02.wav", "sub/deep.wav"]
    snap = check_rows()
    assert sorted(r.name for r in snap.recordings) == sorted(report.added)
    ids = {r.name: r.id for r in snap.recordings}

    # a re-run reads nothing
    emb.calls.clear()
    hashed.clear()
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == [] and hashed == [] and report.unchanged == 4
    assert (report.added, report.replaced, report.removed) == ([], [], [])

    # touched (new mtime, same bytes): hashed once, not embedded, and not hashed again
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == [] and hashed == ["f00.wav"] and report.unchanged == 4
    hashed.clear()
    index_audio([folder], db, emb, progress=False)
    assert emb.calls == [] and hashed == []
    assert {r.name: r.id for r in ArchiveIndex(db).snapshot().recordings} == ids

    # changed content (same length, so same size; a new mtime): re-embedded, replaced
    old = direct_rows(reference, files[1])
    write_wav(files[1], 999, audio_info(files[1]).duration_s)
    st = files[1].stat()
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == ["f01.wav"] and report.replaced == ["f01.wav"] and not report.added
    snap = check_rows()
    assert len(snap) == 4 and not np.array_equal(snap.embeddings(snap.recording("f01.wav")), old)

    # a new file: added, nothing else embedded
    emb.calls.clear()
    write_wav(folder / "sub" / "new.wav", 1234, 2.0)
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == ["new.wav"] and report.added == ["sub/new.wav"]
    assert len(check_rows()) == 5

    # a deleted file: dropped
    emb.calls.clear()
    files[2].unlink()
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == [] and report.removed == ["f02.wav"]
    snap = check_rows()
    assert sorted(r.name for r in snap.recordings) == [
        "f00.wav", "f01.wav", "sub/deep.wav", "sub/new.wav"]
    with pytest.raises(KeyError):
        snap.recording("f02.wav")


def test_indexing_one_folder_keeps_the_recordings_of_another(tmp_path: Path) -> None:
    a = write_folder(tmp_path / "a", 2, seed=1)  # a/f00.wav, a/f01.wav
    b = write_folder(tmp_path / "b", 2, seed=2)  # b/f00.wav, b/f01.wav
    db = tmp_path / "db"
    emb = CountingEmbedder()
    index_audio([tmp_path / "a", b[0]], db, emb, progress=False)
    snap = ArchiveIndex(db).snapshot()
    # names: relative to the folder given (the file name for a file given); two files of
    # the same name: their full paths
    assert sorted((r.name, r.source) for r in snap.recordings) == sorted(
        [(str(a[0].resolve()), str(a[0].resolve())), ("f01.wav", str(a[1].resolve())),
         (str(b[0].resolve()), str(b[0].resolve()))])
    # a second run over the other folder adds it and changes nothing of the first (its
    # deleted file included: not under the folders of this run)
    a[0].unlink()
    emb.calls.clear()
    report = index_audio([tmp_path / "b"], db, emb, progress=False)
    assert report.removed == [] and report.replaced == [] and emb.calls == ["f01.wav"]
    snap = ArchiveIndex(db).snapshot()
    assert sorted(r.source for r in snap.recordings) == sorted(
        str(p.resolve()) for p in (*a, *b))
    for rec in snap.recordings:
        np.testing.assert_array_equal(snap.embeddings(rec),
                                      direct_rows(CountingEmbedder(), Path(rec.source))
                                      if Path(rec.source).exists() else snap.embeddings(rec))
    assert len({r.name for r in snap.recordings}) == 4


def test_feature_folders_are_indexed_incrementally(tmp_path: Path) -> None:
    from audiomoment.index.ingest import index_features

    rng = np.random.default_rng(6)
    clap = tmp_path / "FEATURES" / "clap"
    clap.mkdir(parents=True)
    feats = {f"v{i}": rng.normal(size=(3 + i, 1024)).astype(np.float32) for i in range(5)}
    for vid, x in feats.items():
        np.savez(clap / f"{vid}.npz", features=x)
    (clap / "broken.npz").write_bytes(b"PK not a zip")
    spec = ModelSpec(dim=1024)
    db = tmp_path / "db"

    def to_joint(x: np.ndarray) -> np.ndarray:
        return unit(x).astype(np.float32)

    report = index_features(tmp_path / "FEATURES", db, to_joint, spec, progress=False,
                            durations_s={"v1": 3.5}, commit_every=2)
    assert sorted(report.added) == sorted(feats)
    assert [Path(s).name for s, _ in report.failed] == ["broken.npz"]
    assert [Path(s).name for s, _ in ArchiveIndex(db).failures()] == ["broken.npz"]
    snap = ArchiveIndex(db).snapshot()
    assert len(snap.segments) == 3  # commits of two files at a time
    for vid, x in feats.items():
        rec = snap.recording(vid)
        np.testing.assert_array_equal(snap.embeddings(rec), to_joint(x).astype(np.float16))
        assert rec.duration_s == (3.5 if vid == "v1" else len(x)) and not rec.has_audio

    # unchanged: nothing; one changed, one deleted, the broken one deleted
    report = index_features(tmp_path / "FEATURES", db, to_joint, spec, progress=False)
    assert (report.added, report.replaced, report.unchanged) == ([], [], 5)
    new_v2 = rng.normal(size=(4, 1024)).astype(np.float32)
    np.savez(clap / "v2.npz", features=new_v2)
    (clap / "v4.npz").unlink()
    (clap / "broken.npz").unlink()
    report = index_features(tmp_path / "FEATURES", db, to_joint, spec, progress=False)
    assert (report.replaced, report.removed, report.unchanged) == (["v2"], ["v4"], 3)
    snap = ArchiveIndex(db).snapshot()
    assert sorted(r.name for r in snap.recordings) == ["v0", "v1", "v2", "v3"]
    np.testing.assert_array_equal(snap.embeddings(snap.recording("v2")),
                                  to_joint(new_v2).astype(np.float16))
    assert ArchiveIndex(db).failures() == []
    assert segment_files(db) == set(snap.segments)


def rewrite(path: Path, seed: int, seconds: float) -> None:
    """Replace an audio file's content, with a modification time surely different."""
    before = path.stat().st_mtime_ns
    write_wav(path, seed, seconds)
    os.utime(path, ns=(before + 5_000_000_000, before + 5_000_000_000))


class RewritingEmbedder(CountingEmbedder):
    """Embeds, and on embedding ``trigger`` rewrites ``target`` (while it is read when both
    are the same file, before it is read when ``target`` comes later)."""

    def __init__(self, trigger: str, target: Path) -> None:
        super().__init__()
        self.trigger, self.target = trigger, target

    def embed(self, path: Path, on_windows: Callable[[int], None] | None = None) -> np.ndarray:
        rows = super().embed(path, on_windows)
        if Path(path).name == self.trigger and self.calls.count(self.trigger) == 1:
            rewrite(self.target, seed=777, seconds=3.0)
        return rows


def test_a_file_that_changes_while_it_is_read_is_not_committed(tmp_path: Path) -> None:
    import hashlib

    files = write_folder(tmp_path / "audio", 3)
    db = tmp_path / "db"
    growing = files[1]
    report = index_audio([tmp_path / "audio"], db, RewritingEmbedder(growing.name, growing),
                         progress=False)
    assert sorted(report.added) == sorted(str(f.relative_to(tmp_path / "audio"))
                                          for f in (files[0], files[2]))
    assert [(Path(s), r) for s, r in report.failed] == [
        (growing, f"{growing}: changed while it was being indexed (read again on the next "
                  "run)")]
    names = [r.name for r in ArchiveIndex(db).snapshot().recordings]
    assert growing.name not in names and len(names) == 2

    # the next run reads the file as it is now, and stores the hash of those bytes
    plain = CountingEmbedder()
    report = index_audio([tmp_path / "audio"], db, plain, progress=False)
    assert plain.calls == [growing.name] and report.failed == []
    assert ArchiveIndex(db).failures() == []
    snap = ArchiveIndex(db).snapshot()
    rec = snap.recording(growing.name)
    np.testing.assert_array_equal(snap.embeddings(rec), direct_rows(plain, growing))
    assert rec.content_sha256 == hashlib.sha256(growing.read_bytes()).hexdigest()
    assert rec.duration_s == 3.0


def test_a_file_that_changed_after_it_was_listed_is_read_as_it_is(tmp_path: Path) -> None:
    import hashlib

    files = write_folder(tmp_path / "audio", 3)
    db = tmp_path / "db"
    index_audio([tmp_path / "audio"], db, CountingEmbedder(), progress=False)
    rewrite(files[0], seed=5, seconds=2.0)
    rewrite(files[2], seed=6, seconds=2.0)
    # files[0] is listed as changed; embedding it rewrites files[2] once more
    emb = RewritingEmbedder(files[0].name, files[2])
    report = index_audio([tmp_path / "audio"], db, emb, progress=False)
    assert sorted(report.replaced) == sorted([files[0].name, files[2].name])
    assert report.failed == []
    snap = ArchiveIndex(db).snapshot()
    rec = snap.recording(files[2].name)
    assert rec.duration_s == 3.0  # the length after the last rewrite, not the listed one
    assert rec.content_sha256 == hashlib.sha256(files[2].read_bytes()).hexdigest()
    np.testing.assert_array_equal(snap.embeddings(rec), direct_rows(CountingEmbedder(),
                                                                    files[2]))
    # and it is unchanged for the next run
    again = CountingEmbedder()
    assert index_audio([tmp_path / "audio"], db, again, progress=False).unchanged == 3
    assert again.calls == []


def test_a_feature_file_that_changes_while_it_is_read_is_not_committed(tmp_path: Path) -> None:
    from audiomoment.index.ingest import index_features

    rng = np.random.default_rng(9)
    clap = tmp_path / "FEATURES" / "clap"
    clap.mkdir(parents=True)
    for i in range(3):
        np.savez(clap / f"v{i}.npz", features=rng.normal(size=(4, 1024)).astype(np.float32))
    final = rng.normal(size=(6, 1024)).astype(np.float32)
    calls: list[int] = []

    def to_joint(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 2:  # v1 was just read: it changes now
            st = (clap / "v1.npz").stat()
            np.savez(clap / "v1.npz", features=final)
            os.utime(clap / "v1.npz", ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
        return unit(x).astype(np.float32)

    db = tmp_path / "db"
    spec = ModelSpec(dim=1024)
    report = index_features(tmp_path / "FEATURES", db, to_joint, spec, progress=False)
    assert sorted(report.added) == ["v0", "v2"]
    assert [Path(s).name for s, _ in report.failed] == ["v1.npz"]
    assert "changed while it was being indexed" in report.failed[0][1]
    report = index_features(tmp_path / "FEATURES", db, to_joint, spec, progress=False)
    assert report.added == ["v1"] and report.failed == [] and report.unchanged == 2
    snap = ArchiveIndex(db).snapshot()
    np.testing.assert_array_equal(snap.embeddings(snap.recording("v1")),
                                  unit(final).astype(np.float16))


# ------------------------------------------------------------------ kill and resume


def _uninterrupted(folder: Path, db: Path) -> Snapshot:
    emb = CountingEmbedder()
    index_audio([folder], db, emb, progress=False, neutral=neutral_vector(emb.spec.dim))
    return ArchiveIndex(db).snapshot()


def _start_child(*args: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(CHILD.parent)}
    return subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], env=env)


def _wait_for(marker: Path, child: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    """Until the child writes ``marker`` (it parks then); fails if the child ends first."""
    deadline = time.monotonic() + limit_s
    while not marker.exists():
        assert child.poll() is None, f"the child ended with status {child.returncode}"
        assert time.monotonic() < deadline, "the child never reached its parking point"
        time.sleep(0.01)


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL


@pytest.fixture(scope="module")
def resume_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    """Ten WAV files and the index an uninterrupted run makes of them."""
    root = tmp_path_factory.mktemp("resume")
    write_folder(root / "audio", 10, seed=3)
    return root / "audio", _uninterrupted(root / "audio", root / "full")


@pytest.mark.parametrize(("mode", "committed"), [
    ("between", 4),       # parked after the 4th recording's commit
    ("segment", 3),       # the 4th recording's segment written, its manifest rows not
    ("transaction", 3),   # inside the 4th recording's transaction, before COMMIT
])
def test_killed_run_keeps_its_commits_and_resumes(
    tmp_path: Path, resume_folder: tuple[Path, Snapshot], mode: str, committed: int
) -> None:
    folder, full = resume_folder
    db, marker = tmp_path / "db", tmp_path / "parked"
    child = _start_child("audio", mode, 4, db, folder, marker)
    try:
        _wait_for(marker, child)
        # a reader while the writer is parked (in the middle of a commit for two modes)
        during = ArchiveIndex(db).snapshot()
    finally:
        _kill(child)
    files = sorted(folder.glob("*.wav"))
    done = [p.name for p in files[:committed]]
    assert [r.name for r in during.recordings] == done

    snap = ArchiveIndex(db).snapshot()
    assert [r.name for r in snap.recordings] == done
    if mode != "between":  # the killed commit's segment is on disk, named by no row
        assert len(segment_files(db) - set(snap.segments)) == 1

    # the independent expectation: the committed files embedded directly, indexed anew
    emb = CountingEmbedder()
    direct = [(p.name, emb.embed(p), audio_info(p).duration_s) for p in files[:committed]]
    for name, rows, _ in direct:
        np.testing.assert_array_equal(snap.embeddings(snap.recording(name)),
                                      rows.astype(np.float16))
    expected_db = tmp_path / "expected"
    index_embeddings(direct, expected_db, TEST_SPEC, neutral=neutral_vector(TEST_SPEC.dim))
    expected = ArchiveIndex(expected_db).snapshot()
    query = unit(np.random.default_rng(8).normal(size=TEST_SPEC.dim))
    for system in (1, 2):
        for ranking in ("calibrated", "report"):
            got = search_archive(snap, query, system=system, ranking=ranking, top=8)
            want = search_archive(expected, query, system=system, ranking=ranking, top=8)
            assert got.moments and [(m.recording, m.start_s, m.end_s, m.score)
                                    for m in got.moments] == [
                (m.recording, m.start_s, m.end_s, m.score) for m in want.moments]

    # the next writer removes the orphan segment; the snapshot taken before still reads
    with ArchiveIndex(db).writer():
        pass
    assert segment_files(db) == set(snap.segments)
    assert {p.name for p in (db / "segments").iterdir() if p.name.startswith(".")} == set()

    # a re-run embeds only the rest and ends where an uninterrupted run ends
    report = index_audio([folder], db, emb.__class__(), progress=False,
                         neutral=neutral_vector(TEST_SPEC.dim))
    assert sorted(report.added) == [p.name for p in files[committed:]]
    assert report.unchanged == committed
    final = ArchiveIndex(db).snapshot()
    assert_same_content(final, full)
    np.testing.assert_array_equal(final.vector("neutral"), full.vector("neutral"))
    assert segment_files(db) == set(final.segments)


def test_killed_at_random_moments_the_index_opens_answers_and_resumes(
    tmp_path: Path, resume_folder: tuple[Path, Snapshot]
) -> None:
    """SIGKILL at six random moments of a run's work (between the index's creation and the
    run's end: embedding, commits), each into an index of its own: after every kill the
    index opens, holds only whole recordings equal to their files' embeddings and answers a
    search, and a resumed run ends where an uninterrupted run ends."""
    import random

    folder, full = resume_folder
    expected_rows = {r.name: np.asarray(full.embeddings(r)) for r in full.recordings}
    timed = tmp_path / "timed"
    started = time.monotonic()
    child = _start_child("audio", "none", 0, timed, folder, tmp_path / "never")
    while not (timed / "manifest.sqlite").exists() and child.poll() is None:
        time.sleep(0.002)
    created = time.monotonic() - started
    assert child.wait(timeout=300) == 0
    whole = time.monotonic() - started

    query = unit(np.random.default_rng(8).normal(size=TEST_SPEC.dim))
    rng = random.Random(1)
    for k in range(6):
        db = tmp_path / f"db{k}"
        moment = rng.uniform(created, created + 0.8 * (whole - created))
        child = _start_child("audio", "none", 0, db, folder, tmp_path / "never")
        time.sleep(moment)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if not (db / "manifest.sqlite").exists():
            continue  # killed before the index was created (a slow start)
        snap = ArchiveIndex(db).snapshot()
        for rec in snap.recordings:
            np.testing.assert_array_equal(np.asarray(snap.embeddings(rec)),
                                          expected_rows[rec.name])
        if snap.recordings:
            found = search_archive(snap, query, system=2, top=3)
            assert found.moments and all(m.recording in expected_rows for m in found.moments)
        report = index_audio([folder], db, CountingEmbedder(), progress=False,
                             neutral=neutral_vector(TEST_SPEC.dim))
        assert report.failed == [] and report.unchanged == len(snap.recordings)
        assert_same_content(ArchiveIndex(db).snapshot(), full)


def test_killed_before_a_replaced_segment_is_dropped(
    tmp_path: Path, resume_folder: tuple[Path, Snapshot]
) -> None:
    import shutil

    folder = tmp_path / "audio"
    shutil.copytree(resume_folder[0], folder)
    db, marker = tmp_path / "db", tmp_path / "parked"
    _uninterrupted(folder, db)
    changed = sorted(folder.glob("*.wav"))[6]
    write_wav(changed, 4321, audio_info(changed).duration_s)
    child = _start_child("audio", "drop", 1, db, folder, marker)
    try:
        _wait_for(marker, child)
    finally:
        _kill(child)
    # the replacement is committed; the segment it emptied is still on disk
    snap = ArchiveIndex(db).snapshot()
    np.testing.assert_array_equal(snap.embeddings(snap.recording(changed.name)),
                                  direct_rows(CountingEmbedder(), changed))
    assert len(segment_files(db) - set(snap.segments)) == 1
    with ArchiveIndex(db).writer():
        pass
    assert segment_files(db) == set(snap.segments)
    emb = CountingEmbedder()
    report = index_audio([folder], db, emb, progress=False, neutral=neutral_vector(12))
    assert emb.calls == [] and report.unchanged == 10
    assert_same_content(ArchiveIndex(db).snapshot(), _uninterrupted(folder, tmp_path / "full"))


# ------------------------------------------------------------------ failures and odd folders


def test_empty_index_search_is_refused(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nothing").mkdir()
    db = tmp_path / "db"
    report = index_audio([tmp_path / "nothing"], db, CountingEmbedder(), progress=False)
    assert report.added == [] and report.failed == []
    snap = ArchiveIndex(db).snapshot()
    assert len(snap) == 0
    with pytest.raises(InputError, match="empty"):
        search_archive(snap, np.ones(TEST_SPEC.dim), system=2)
    code, out, err = run_cli(capsys, "search", "a dog barks", "--db", db)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "empty" in err and str(db) in err
    code, out, err = run_cli(capsys, "search", "a dog barks", "--db", tmp_path / "nowhere")
    assert code == 2 and err.count("\n") == 1 and "not an audiomoment index" in err


def test_unreadable_files_are_listed_and_the_rest_indexed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "audio"
    good = write_folder(folder, 3, seed=4)
    (folder / "notes.wav").write_text("these are not samples\n" * 20)
    whole = write_wav(tmp_path / "whole.wav", 5, 3.0).read_bytes()
    (folder / "cut.wav").write_bytes(whole[:30])  # cut inside the header
    (folder / "short.wav").write_bytes(whole[:44 + 2 * 4000])  # half a second of samples
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "self.wav").symlink_to(folder / "self.wav")  # a link to itself
    (folder / "twin.wav").symlink_to(good[0])
    db = tmp_path / "db"
    emb = CountingEmbedder()
    report = index_audio([folder], db, emb, progress=False)

    bad = sorted(str((folder / n).resolve()) for n in ("cut.wav", "notes.wav", "short.wav"))
    assert sorted(s for s, _ in report.failed) == bad
    failures = ArchiveIndex(db).failures()
    assert [s for s, _ in failures] == bad
    for source, reason in failures:
        assert "\n" not in reason and Path(source).name in reason
    # the good files once each (the link to one of them is the same file)
    snap = ArchiveIndex(db).snapshot()
    assert sorted(r.source for r in snap.recordings) == sorted(
        str(p.resolve()) for p in good)
    assert sorted(emb.calls) == sorted(p.name for p in good)

    code, out, _ = run_cli(capsys, "index", "--db", db, "--failures")
    assert code == 0
    assert [tuple(line.split("\t", 1)) for line in out.splitlines()] == failures
    code, out, _ = run_cli(capsys, "index", "--db", db, "--failures", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"source": s, "reason": r} for s, r in failures]

    # unchanged failures are not tried again; a repaired file is indexed and unlisted;
    # a deleted one is no longer listed
    emb.calls.clear()
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == [] and report.failed == []
    (folder / "cut.wav").write_bytes(whole)
    (folder / "notes.wav").unlink()
    report = index_audio([folder], db, emb, progress=False)
    assert emb.calls == ["cut.wav"] and report.added == ["cut.wav"]
    assert [s for s, _ in ArchiveIndex(db).failures()] == [str((folder / "short.wav").resolve())]


# ------------------------------------------------------------------ readers and writers


def _check_churn_snapshot(snap: Snapshot, states: list[dict[str, int]]) -> dict[str, int]:
    """A snapshot of the churn index is one committed state, rows and all."""
    state = {}
    for rec in snap.recordings:
        name, version = rec.content_sha256.split(":")
        assert name == rec.name
        rows = churn_rows(name, int(version))
        np.testing.assert_array_equal(snap.embeddings(rec), rows.astype(np.float16))
        assert rec.n_windows == len(rows) and rec.duration_s == len(rows)
        state[name] = int(version)
    assert state in states
    # the scan reads every row the snapshot names
    scores, starts = window_scores(snap, np.ones((1, CHURN_SPEC.dim)))
    assert starts[-1] == snap.n_windows and np.all(np.isfinite(scores))
    return state


def test_snapshots_taken_during_commits_are_consistent(tmp_path: Path) -> None:
    db, marker = tmp_path / "db", tmp_path / "half"
    with ArchiveIndex(db).writer(CHURN_SPEC):
        pass
    states = churn_states()
    child = _start_child("churn", db, marker)
    seen = []
    try:
        while child.poll() is None:
            waiting = marker.exists() and not marker.with_name("half.go").exists()
            seen.append(_check_churn_snapshot(ArchiveIndex(db).snapshot(), states))
            if waiting:  # the child waits: the index is as CHURN_HALF commits left it
                assert seen[-1] == states[CHURN_HALF]
                marker.with_name("half.go").write_text("go")
    finally:
        if child.poll() is None:
            _kill(child)
    assert child.returncode == 0
    assert _check_churn_snapshot(ArchiveIndex(db).snapshot(), states) == states[-1]
    # the states seen come in commit order, the middle one among them
    positions = [states.index(s) for s in seen]
    assert positions == sorted(positions) and CHURN_HALF in positions
    assert segment_files(db) == set(ArchiveIndex(db).snapshot().segments)


def test_an_earlier_snapshot_outlives_replacements_and_removals(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    db = tmp_path / "db"
    spec = ModelSpec(model="m", dim=6)
    first = {n: unit(rng.normal(size=(t, 6))).astype(np.float32)
             for n, t in (("a", 5), ("b", 7), ("c", 4))}
    index_embeddings([(n, x, float(len(x))) for n, x in first.items()], db, spec)
    before = ArchiveIndex(db).snapshot()
    query = unit(rng.normal(size=6))
    answer = search_archive(before, query, system=2, top=5)
    scores_before, _ = window_scores(before, query[None])
    (old_segment,) = before.segments

    new_b = unit(rng.normal(size=(9, 6))).astype(np.float32)
    with ArchiveIndex(db).writer(spec) as w:
        w.add([NewRecording("b", new_b, 9.0, "new b")])
        w.remove(["a", "c"])
    # the old segment is gone from disk, the early snapshot still reads it
    assert not ArchiveIndex(db).segment_path(old_segment).exists()
    after = ArchiveIndex(db).snapshot()
    assert [r.name for r in after.recordings] == ["b"]
    np.testing.assert_array_equal(after.embeddings(after.recording("b")),
                                  new_b.astype(np.float16))
    for name, rows in first.items():
        np.testing.assert_array_equal(before.embeddings(before.recording(name)),
                                      rows.astype(np.float16))
    np.testing.assert_array_equal(window_scores(before, query[None])[0], scores_before)
    again = search_archive(before, query, system=2, top=5)
    assert again.moments == answer.moments and before.generation != after.generation


def test_one_model_per_index(tmp_path: Path) -> None:
    db = tmp_path / "db"
    rows = unit(np.random.default_rng(0).normal(size=(4, TEST_SPEC.dim))).astype(np.float32)
    index_embeddings([("x", rows, 4.0)], db, TEST_SPEC)
    other = ModelSpec(model="another model", dim=TEST_SPEC.dim, hop_s=0.5)
    with pytest.raises(InputError) as info:
        index_embeddings([("y", rows, 4.0)], db, other)
    message = str(info.value)
    assert "\n" not in message and str(db) in message
    assert "model: 'test embedder' vs 'another model'" in message
    assert "hop_s: 1.0 vs 0.5" in message and "dim" not in message
    # audio with an embedder of another spec: refused before anything is embedded
    emb = CountingEmbedder(ModelSpec(model="test embedder", dim=TEST_SPEC.dim,
                                     checkpoint_sha256="abc"))
    write_folder(tmp_path / "audio", 1)
    with pytest.raises(InputError, match="checkpoint_sha256: None vs 'abc'"):
        index_audio([tmp_path / "audio"], db, emb, progress=False)
    assert emb.calls == []
    assert [r.name for r in ArchiveIndex(db).snapshot().recordings] == ["x"]


# ------------------------------------------------------------------ the scan


def test_window_scores_are_the_products_of_the_stored_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    spec = ModelSpec(model="m", dim=32)
    db = tmp_path / "db"
    items = [(f"r{i}", unit(rng.normal(size=(int(rng.integers(1, 30)), 32))).astype(np.float32),
              1.0) for i in range(6)]
    index_embeddings(items, db, spec)
    replaced = unit(rng.normal(size=(11, 32))).astype(np.float32)
    index_embeddings([("r2", replaced, 1.0)], db, spec)  # leaves a gap in the first segment
    index_embeddings([("r6", unit(rng.normal(size=(3, 32))).astype(np.float32), 1.0)], db,
                     spec)
    with ArchiveIndex(db).writer(spec) as w:
        w.remove(["r4"])
    snap = ArchiveIndex(db).snapshot()
    assert [r.name for r in snap.recordings] == ["r0", "r1", "r3", "r5", "r2", "r6"]
    assert len(snap.segments) == 3
    vectors = np.vstack([unit(rng.normal(size=(3, 32))), 0.25 * rng.normal(size=(1, 32))])
    scores, starts = window_scores(snap, vectors)

    rows = [np.asarray(snap.embeddings(r), dtype=np.float64) for r in snap.recordings]
    assert starts.tolist() == np.cumsum([0] + [len(x) for x in rows]).tolist()
    exact = np.concatenate(rows) @ vectors.T
    # The rows are multiplied after rounding the vectors to float16 (relative error 2^-11
    # per value) and the sums accumulate in float32 or wider:
    # |error| <= (2^-11 + dim * 2^-24) * sum_i |row_i| |vector_i|.
    bound = (2.0**-11 + 32 * 2.0**-24) * (np.abs(np.concatenate(rows)) @ np.abs(vectors.T))
    assert scores.dtype == np.float64 and scores.shape == exact.shape
    assert np.all(np.abs(scores - exact) <= bound + 1e-12)
    with pytest.raises(ValueError, match="dimension"):
        window_scores(snap, np.ones((1, 31)))

    # float32 archives: products to float32 precision
    db32 = tmp_path / "db32"
    index_embeddings(items, db32, ModelSpec(model="m", dim=32, dtype="float32"))
    snap32 = ArchiveIndex(db32).snapshot()
    scores32, _ = window_scores(snap32, vectors)
    exact32 = np.concatenate([x for _, x, _ in items]).astype(np.float64) @ vectors.T
    np.testing.assert_allclose(scores32, exact32, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ the bounded search



def test_the_read_scan_equals_the_mapped_scan_across_its_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan reads segment files in pieces across threads; every piece boundary (of a read,
    of a thread's job, of a recording) must give the products the mapped rows give."""
    from audiomoment.index import scan

    rng = np.random.default_rng(8)
    spec = ModelSpec(model="m", dim=16)
    db = tmp_path / "db"
    items = [(f"r{i}", unit(rng.normal(size=(n, 16))).astype(np.float32), 1.0)
             for i, n in enumerate((1, 37, 5, 64, 13))]
    index_embeddings(items, db, spec)
    index_embeddings([("r5", unit(rng.normal(size=(29, 16))).astype(np.float32), 1.0)], db,
                     spec)
    with ArchiveIndex(db).writer(spec) as w:
        w.remove(["r0"])  # the first segment is now read from row 1
    snap = ArchiveIndex(db).snapshot()
    vectors = unit(rng.normal(size=(3, 16)))
    monkeypatch.setattr(scan, "READ_ROWS", 4)
    monkeypatch.setattr(scan, "JOB_ROWS", 10)
    opened: list[int] = []
    segment_file = scan._segment_file

    def counting(seg, rows):  # type: ignore[no-untyped-def]
        opened.append(rows)
        return segment_file(seg, rows)

    monkeypatch.setattr(scan, "_segment_file", counting)
    read, starts = window_scores(snap, vectors)  # the first scan reads the files
    assert len(opened) == 2 and snap.scans == 1
    mapped, _ = window_scores(snap, vectors)  # a later one the maps
    assert len(opened) == 2 and snap.scans == 2
    np.testing.assert_array_equal(read, mapped)
    np.testing.assert_array_equal(window_scores(snap, vectors, read="files")[0], read)
    assert len(opened) == 4
    with pytest.raises(ValueError, match="read must be"):
        window_scores(snap, vectors, read="mmap")
    rows = np.concatenate([np.asarray(snap.embeddings(r), dtype=np.float64)
                           for r in snap.recordings])
    assert starts[-1] == len(rows) == 148
    np.testing.assert_allclose(read, rows @ vectors.T, atol=2e-3)

def _traces(snap: Snapshot, queries: np.ndarray, system: int) -> np.ndarray:
    """(Q, N) traces of each query over the archive, from the scan: one product per window
    with q (System 2) or q - n (System 1)."""
    scores, _ = window_scores(snap, query_matrix(snap, queries, system))
    return scores.T.copy()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, PlantedArchive]:
    rng = np.random.default_rng(11)
    archive = planted_archive(rng, 48)
    # exact duplicates (same rows, other names: ties) and recordings too short to localise
    archive.items += [("dup-" + archive.items[i][0], archive.items[i][1], archive.items[i][2])
                      for i in (0, 1, 5)]
    archive.items.append(("one-window", archive.items[3][1][:1], 1.0))
    db = tmp_path_factory.mktemp("planted") / "db"
    index_embeddings(archive.items, db, ModelSpec(model="m", dim=24), neutral=archive.neutral,
                     commit_every=10)
    return ArchiveIndex(db).snapshot(), archive


@pytest.mark.parametrize("system", [1, 2])
def test_bounded_search_equals_localising_every_recording(
    planted: tuple[Snapshot, PlantedArchive], system: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, archive = planted
    monkeypatch.setattr(search_module, "LOCALIZE_STEP", 3)
    rng = np.random.default_rng(system)
    queries = np.vstack([archive.directions + 0.3 * rng.normal(size=archive.directions.shape),
                         rng.normal(size=(1, 24))])
    config = LocalizeConfig()
    pruned = 0
    for q, trace in zip(queries, _traces(snap, queries, system), strict=True):
        moments = all_moments(snap, trace, config)
        capped = all_moments(snap, trace, config, per_recording=1)
        for ranking in ("calibrated", "report"):
            for top in (1, 4, 15):
                got = search_archive(snap, q, system=system, top=top, ranking=ranking,
                                     config=config)
                want = rank_moments(moments, ranking, top)
                assert moment_tuples(got.moments) == moment_tuples(want), (ranking, top)
                np.testing.assert_allclose([m.score for m in got.moments],
                                           [m.score for m in want], rtol=0, atol=1e-9)
                np.testing.assert_allclose([m.z for m in got.moments],
                                           [m.z for m in want], rtol=0, atol=1e-9)
                np.testing.assert_allclose([m.report_score for m in got.moments],
                                           [m.report_score for m in want], rtol=0, atol=1e-12)
                assert got.windows_scanned == snap.n_windows
                pruned += got.recordings_localised < len(snap) - 1
            got = search_archive(snap, q, system=system, top=6, ranking=ranking,
                                 config=config, per_recording=1)
            assert moment_tuples(got.moments) == moment_tuples(rank_moments(capped, ranking, 6))
    assert pruned > 0  # the bound did spare localisations
    assert all(m.recording != "one-window"
               for m in search_archive(snap, queries[0], system=system, top=200).moments)

    # search_archive_many is search_archive repeated, whatever the batching
    many = search_archive_many(snap, queries, system=system, top=5, queries_per_pass=2)
    for q, found in zip(queries, many, strict=True):
        one = search_archive(snap, q, system=system, top=5)
        assert found.moments == one.moments
        assert (found.trace_mean, found.trace_std) == (one.trace_mean, one.trace_std)


def test_report_ranking_without_a_bound_localises_everything(
    planted: tuple[Snapshot, PlantedArchive]
) -> None:
    snap, archive = planted
    config = LocalizeConfig(peak_weight=-0.5)
    q = archive.directions[0]
    (trace,) = _traces(snap, q[None], 2)
    got = search_archive(snap, q, system=2, top=7, ranking="report", config=config)
    assert got.recordings_localised == len(snap) - 1  # all but the one-window recording
    assert moment_tuples(got.moments) == moment_tuples(
        rank_moments(all_moments(snap, trace, config), "report", 7))


def test_recordings_too_short_to_localise_give_no_moments(tmp_path: Path) -> None:
    rows = unit(np.random.default_rng(1).normal(size=(3, 24))).astype(np.float32)
    db = tmp_path / "db"
    index_embeddings([(f"r{i}", rows[i : i + 1], 1.0) for i in range(3)], db,
                     ModelSpec(model="m", dim=24))
    for ranking in ("calibrated", "report"):
        found = search_archive(ArchiveIndex(db).snapshot(), rows[0], system=2,
                               ranking=ranking)
        assert found.moments == [] and found.recordings_localised == 0
        assert found.windows_scanned == 3


def test_search_arguments_are_checked(planted: tuple[Snapshot, PlantedArchive],
                                      tmp_path: Path) -> None:
    snap, _ = planted
    q = np.ones(24)
    for bad, match in (({"ranking": "best"}, "ranking"), ({"top": 0}, "top"),
                       ({"system": 3}, "system")):
        with pytest.raises(InputError, match=match):
            search_archive(snap, q, **bad)
    with pytest.raises(InputError, match="24-d"):
        search_archive(snap, np.ones(23))
    for v in (np.zeros(24), np.full(24, np.nan)):
        with pytest.raises(InputError, match="finite and non-zero"):
            search_archive(snap, v, system=2)
    db = tmp_path / "db"
    index_embeddings([("x", snap.embeddings(snap.recordings[0]), 9.0)], db,
                     ModelSpec(model="m", dim=24))
    with pytest.raises(InputError, match="neutral"):
        search_archive(ArchiveIndex(db).snapshot(), q, system=1)


# ------------------------------------------------------------------ queries by example


@pytest.fixture
def example_index(tmp_path: Path) -> tuple[Path, PlantedArchive]:
    """Twelve recordings of 30 windows: direction 0 planted in rec000-rec003, direction 1
    in rec004-rec007, nothing in the rest."""
    rng = np.random.default_rng(21)
    archive = planted_archive(rng, 12, n_directions=2, lengths=(30, 30), event_rate=0.0)
    for r, (name, rows, duration) in enumerate(archive.items):
        if r < 8:
            d, a = r // 4, int(rng.integers(2, 22))
            x = rows.astype(np.float64)
            x[a : a + 5] += 1.5 * archive.directions[d]
            archive.items[r] = (name, unit(x).astype(np.float32), duration)
            archive.events[name] = [(d, a, a + 5)]
    db = tmp_path / "db"
    index_embeddings(archive.items, db, ModelSpec(model="m", dim=24), neutral=archive.neutral)
    return db, archive


def _distinct(moments: list[dict]) -> list[str]:
    out: list[str] = []
    for m in moments:
        if m["recording"] not in out:
            out.append(m["recording"])
    return out


@pytest.mark.parametrize("system", ["1", "2"])
def test_query_by_a_recording_finds_the_same_sound_first(
    example_index: tuple[Path, PlantedArchive], system: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    db, archive = example_index
    _, a, b = archive.events["rec000"][0]
    for key in ("rec000", "1"):  # by name, and by id (rec000 was added first)
        code, out, err = run_cli(capsys, "search", "--db", db, "--like-recording", key,
                                 "--start", a, "--end", b, "--system", system, "--top", "20",
                                 "--json")
        assert code == 0, err
        (record,) = [json.loads(line) for line in out.splitlines()]
        assert record["query"] == f"like {key}"
        assert set(_distinct(record["moments"])[:4]) == {"rec000", "rec001", "rec002", "rec003"}
    # the same query through the library: the mean of the example's rows, normalised
    snap = ArchiveIndex(db).snapshot()
    q = unit(np.asarray(snap.embeddings(snap.recording("rec000"))[a:b], np.float64).mean(0))
    found = search_archive(snap, q, system=int(system), top=20)
    assert [m.to_dict() for m in found.moments] == record["moments"]
    # rec004's example finds the other direction
    _, a, b = archive.events["rec004"][0]
    code, out, _ = run_cli(capsys, "search", "--db", db, "--like-recording", "rec004",
                           "--start", a, "--end", b, "--system", system, "--json")
    assert set(_distinct(json.loads(out)["moments"])[:4]) == {
        "rec004", "rec005", "rec006", "rec007"}


def test_query_embedding_files(example_index: tuple[Path, PlantedArchive], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    db, archive = example_index
    good = tmp_path / "q.npy"
    np.save(good, 3.0 * archive.directions[1])
    code, out, err = run_cli(capsys, "search", "--db", db, "--query-embedding", good,
                             "--system", "2", "--json", "--top", "20")
    assert code == 0, err
    moments = json.loads(out)["moments"]
    assert set(_distinct(moments)[:4]) == {"rec004", "rec005", "rec006", "rec007"}
    found = search_archive(ArchiveIndex(db).snapshot(), archive.directions[1], system=2, top=20)
    assert moments == [m.to_dict() for m in found.moments]
    code, out, _ = run_cli(capsys, "search", "--db", db, "--query-embedding", good,
                           "--system", "2", "--top", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].startswith("'q.npy' (System 2; 12 ")
    for rank, (line, m) in enumerate(zip(lines[1:], found.moments, strict=False), 1):
        assert line.split()[:2] == [f"{rank}.", m.recording]
        assert f"({m.start_s:g}-{m.end_s:g} s)" in line

    cases = {"short.npy": np.ones(23), "nan.npy": np.r_[np.nan, np.ones(23)],
             "zero.npy": np.zeros(24), "text.npy": np.array(["a"] * 24)}
    for name, value in cases.items():
        np.save(tmp_path / name, value)
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    for name in [*cases, "broken.npy", "missing.npy"]:
        code, out, err = run_cli(capsys, "search", "--db", db, "--query-embedding",
                                 tmp_path / name)
        assert code == 2 and out == "", name
        assert err.count("\n") == 1 and name in err, err
    code, _, err = run_cli(capsys, "search", "--db", db, "--like-recording", "nosuch")
    assert code == 2 and err.count("\n") == 1 and "nosuch" in err
    code, _, err = run_cli(capsys, "search", "--db", db, "--like-recording", "rec000",
                           "--start", "40", "--end", "45")
    assert code == 2 and err.count("\n") == 1 and "outside" in err


# ------------------------------------------------------------------ features vs audio


@pytest.mark.slow
def test_index_of_features_and_of_audio_give_the_same_answers(
    clap_files: tuple[Path, Path], shared_data: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, _ = clap_files
    tok = shared_data / "gpt2_tokenizer"
    audio = tmp_path / "audio"
    files = [write_wav(audio / f"{n}.wav", s, d, sr=16000)
             for n, s, d in (("birds", 1, 3.0), ("rain", 2, 4.0), ("street", 3, 3.0))]
    model = ["--checkpoint", ckpt, "--tokenizer", tok, "--cache-dir", tmp_path / "cache",
             "--no-progress"]
    feats = tmp_path / "FEATURES"
    db_feats, db_audio = tmp_path / "feats.idx", tmp_path / "audio.idx"
    code, _, err = run_cli(capsys, "extract-features", *files, "--out", feats, *model)
    assert code == 0, err
    code, out, err = run_cli(capsys, "index", "--features", feats, "--db", db_feats, *model,
                             "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 3
    code, out, err = run_cli(capsys, "index", audio, "--db", db_audio, *model, "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 3 and json.loads(out)["windows"] == 10

    by_feats, by_audio = ArchiveIndex(db_feats).snapshot(), ArchiveIndex(db_audio).snapshot()
    assert by_feats.spec == by_audio.spec
    assert sorted(r.name for r in by_feats.recordings) == ["birds", "rain", "street"]
    for rec in by_audio.recordings:
        twin = by_feats.recording(Path(rec.name).stem)
        np.testing.assert_array_equal(by_audio.embeddings(rec), by_feats.embeddings(twin))
        assert rec.duration_s == twin.duration_s
    np.testing.assert_array_equal(by_feats.vector("neutral"), by_audio.vector("neutral"))

    answers = []
    for db in (db_feats, db_audio):
        code, out, err = run_cli(capsys, "search", "birds singing", "a car passes",
                                 "--db", db, "--json", *model)
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        # by example (System 2): a part of one of the files, embedded with the model
        code, out, err = run_cli(capsys, "search", "--db", db, "--like", files[1], "--start",
                                 "1", "--end", "3", "--system", "2", "--json", *model)
        assert code == 0, err
        records.append(json.loads(out))
        for r in records:
            for m in r["moments"]:
                m["recording"] = Path(m["recording"]).stem
                del m["recording_id"]
        answers.append(records)
    assert len(answers[0]) == 3 and all(r["moments"] for r in answers[0])
    assert [r["system"] for r in answers[0]] == [1, 1, 2]
    assert answers[0] == answers[1]


class RecordingBar:
    """Stands in for the run's progress bar: keeps every update (hours)."""

    def __init__(self) -> None:
        self.n = 0.0
        self.updates: list[float] = []

    def __enter__(self) -> RecordingBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: float) -> None:
        self.updates.append(step)
        self.n += step

    def set_postfix_str(self, text: str) -> None:
        return None


class WindowByWindowEmbedder(CountingEmbedder):
    """Reports each window as it is embedded, and notes the bar's position at each."""

    def __init__(self, bar: RecordingBar) -> None:
        super().__init__()
        self.bar = bar
        self.seen: list[tuple[str, float]] = []

    def embed(self, path: Path, on_windows: Callable[[int], None] | None = None) -> np.ndarray:
        rows = super().embed(path)
        assert on_windows is not None, "index_audio must hand the embedder a progress callback"
        for _ in rows:
            on_windows(1)
            self.seen.append((Path(path).name, self.bar.n))
        return rows


def test_the_progress_bar_moves_within_a_file_and_ends_at_the_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiomoment.index import ingest

    folder = tmp_path / "audio"
    write_wav(folder / "a.wav", seed=1, seconds=3.5)  # 3 windows, 3.5 s
    write_wav(folder / "b.wav", seed=2, seconds=2.0)  # 2 windows, 2.0 s
    bar = RecordingBar()
    monkeypatch.setattr(ingest, "_progress", lambda hours, n, progress: bar)
    emb = WindowByWindowEmbedder(bar)
    index_audio([folder], tmp_path / "db", emb, progress=False)
    hour = 1 / 3600
    # a.wav first (sorted): one window of 1 s per step, then the last half second on commit
    expected = [("a.wav", 1 * hour), ("a.wav", 2 * hour), ("a.wav", 3 * hour),
                ("b.wav", 4.5 * hour), ("b.wav", 5.5 * hour)]
    assert [name for name, _ in emb.seen] == [name for name, _ in expected]
    np.testing.assert_allclose([n for _, n in emb.seen], [n for _, n in expected], rtol=1e-12)
    assert bar.n == pytest.approx(5.5 * hour, rel=1e-12)
    assert all(step > 0 for step in bar.updates)


def test_file_progress_never_passes_the_files_duration() -> None:
    from audiomoment.index.ingest import _FileProgress

    bar = RecordingBar()
    progress = _FileProgress(bar, duration_s=2.5, hop_s=1.0)
    progress(2)
    progress(5)  # more windows than the header promised: held at the duration
    assert bar.n == pytest.approx(2.5 / 3600, rel=1e-12)
    progress.finish()
    assert bar.updates == pytest.approx([2 / 3600, 0.5 / 3600], rel=1e-12)
    fresh = RecordingBar()
    _FileProgress(fresh, duration_s=7.25, hop_s=1.0).finish()  # an embedder that never reports
    assert fresh.updates == pytest.approx([7.25 / 3600], rel=1e-12)


def test_the_clap_embedder_reports_each_batch(
    tmp_path: Path, clap_files: tuple[Path, Path]
) -> None:
    from audiomoment.clap.model import load_clap
    from audiomoment.index.embedders import ClapAudioEmbedder

    ckpt, _ = clap_files
    wav = write_wav(tmp_path / "five.wav", seed=3, seconds=5.2, sr=44100)
    emb = ClapAudioEmbedder(load_clap(ckpt, text=False), "0" * 64, batch_size=2)
    counts: list[int] = []
    rows = emb.embed(wav, on_windows=counts.append)
    assert counts == [2, 2, 1]
    assert len(rows) == 5
    np.testing.assert_array_equal(rows, emb.embed(wav))


def test_an_index_killed_while_it_is_created_is_no_index_then_a_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest appears whole or not at all: killed between making its tables and
    publishing it, the folder is not an index yet (a reader says so in one line), and the
    next writer creates it; a reader of a just-created index sees an empty one."""
    from audiomoment.index import store

    class Killed(Exception):
        pass

    def killed(tmp: Path, final: Path) -> None:
        raise Killed

    db = tmp_path / "db"
    with monkeypatch.context() as patch:
        patch.setattr(store, "publish_file", killed)
        with pytest.raises(Killed), ArchiveIndex(db).writer(TEST_SPEC):
            pass
    assert (db / "manifest.sqlite.new").is_file() and not (db / "manifest.sqlite").exists()
    assert not store.is_index(db)
    with pytest.raises(InputError, match="not an audiomoment index"):
        ArchiveIndex(db).snapshot()
    with ArchiveIndex(db).writer(TEST_SPEC):
        snap = ArchiveIndex(db).snapshot()  # readable while the writer holds it
    assert len(snap) == 0 and snap.spec == TEST_SPEC
    assert not (db / "manifest.sqlite.new").exists()
