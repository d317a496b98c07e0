"""Indexing on a Ray cluster: the same index as one process, bit for bit, through worker
deaths and a killed driver; long recordings cut into pieces; Ray stays optional.

The Ray tests share one local cluster (2 CPUs) started by this module. The test embedder
is the deterministic one of ``index_helpers``, able to embed any span of a file's windows;
its class lives in this module, which the workers import (``tests/`` on their path).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from numpy.typing import NDArray

from audiomoment.cli import main
from audiomoment.errors import InputError
from audiomoment.index.distributed import (
    ClapFactory,
    ClusterReport,
    PieceEmbedder,
    WorkerInfo,
    _File,
    _Pool,
    _Run,
    index_audio_ray,
    piece_spans,
)
from audiomoment.index.embedders import ClapAudioEmbedder
from audiomoment.index.ingest import index_audio
from audiomoment.index.store import ArchiveIndex, ModelSpec
from audiomoment.io.audio import WindowConfig, iter_window_range, load_windows

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from index_helpers import SR, CountingEmbedder, window_embeddings, write_wav  # noqa: E402

# ------------------------------------------------------------------ the test embedder


def _same(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    return rows


class SpanEmbedder(CountingEmbedder):
    """The test embedder of ``index_helpers`` on any span of a file's 1-s windows.

    ``kill_marker``: the first piece that starts past window 0 while this file exists
    deletes it and ends the worker's process (os._exit), as a crash would. ``fatal``: a
    file name whose pieces past window 0 end the worker's process every time. ``delay_s``:
    a pause per piece (keeps a run going long enough to be interrupted).
    """

    batch_size = 1

    def __init__(self, kill_marker: Path | None = None, delay_s: float = 0.0,
                 touch: Path | None = None, fatal: str | None = None) -> None:
        super().__init__()
        self.kill_marker = kill_marker
        self.fatal = fatal
        self.delay_s = delay_s
        self.touch = touch

    def window_count(self, path: Path) -> int:
        return int(sf.info(str(path)).frames) // int(sf.info(str(path)).samplerate)

    def embed_windows(self, path: Path, first: int, stop: int | None) -> NDArray[np.float32]:
        if Path(path).name == self.fatal and first > 0:
            os._exit(1)
        if self.kill_marker is not None and first > 0:
            try:
                self.kill_marker.unlink()
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        time.sleep(self.delay_s)
        if self.touch is not None and Path(path) == self.touch and first > 0:
            # the file changes while it is read (its modification time moves on)
            st = self.touch.stat()
            os.utime(self.touch, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        sr = int(sf.info(str(path)).samplerate)
        x, _ = sf.read(str(path), start=first * sr, stop=None if stop is None else stop * sr,
                       dtype="float64", always_2d=True)
        if len(x) < sr:
            return np.zeros((0, self.spec.dim), np.float32)
        # the span as a file of its own (64-bit samples: exactly these values)
        span = Path(os.environ.get("TMPDIR", "/tmp")) / f"span-{os.getpid()}-{first}.wav"
        sf.write(str(span), x, sr, subtype="DOUBLE")
        try:
            return window_embeddings(span, self.matrix)
        finally:
            span.unlink()

    def finisher(self) -> Any:
        return _same


def span_embedder(device: str, kill_marker: Path | None = None,
                  delay_s: float = 0.0, touch: Path | None = None,
                  fatal: str | None = None) -> SpanEmbedder:
    """An ``embedder_factory`` of :class:`SpanEmbedder`."""
    return SpanEmbedder(kill_marker, delay_s, touch, fatal)


# ------------------------------------------------------------------ what the index holds


def index_state(db: Path) -> dict[str, Any]:
    """Everything an index holds but segment names, row offsets and times."""
    con = sqlite3.connect(ArchiveIndex(db).manifest)
    try:
        rows = con.execute(
            "SELECT id, name, source, content_sha256, size, mtime_ns, duration_s, n_windows, "
            "has_audio FROM recordings ORDER BY id").fetchall()
        failures = con.execute("SELECT * FROM failures ORDER BY source").fetchall()
        model = con.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
    finally:
        con.close()
    snap = ArchiveIndex(db).snapshot()
    return {
        "recordings": rows, "failures": failures, "model": model,
        "rows": {r.name: np.asarray(snap.embeddings(r)).tobytes() for r in snap.recordings},
        "dtype": {str(s.dtype) for s in snap.segments.values()},
        "vectors": {k: v.tobytes() for k, v in snap.vectors.items()},
    }


def assert_same_index(a: Path, b: Path) -> None:
    sa, sb = index_state(a), index_state(b)
    assert sa["recordings"] and sa["recordings"] == sb["recordings"]
    assert sa["rows"] == sb["rows"]
    assert sa["failures"] == sb["failures"]
    assert (sa["model"], sa["dtype"], sa["vectors"]) == (sb["model"], sb["dtype"],
                                                         sb["vectors"])


def write_archive(folder: Path) -> list[Path]:
    """Files of 1.5 to 7 s at two rates, one shorter than a window, one not audio."""
    files = [write_wav(folder / f"r{i}.wav", 40 + i, seconds, sr=sr)
             for i, (seconds, sr) in enumerate([(7.0, SR), (2.5, SR), (5.2, 16000),
                                                (1.5, SR), (4.0, SR), (6.0, 16000)])]
    files.append(write_wav(folder / "sub" / "short.wav", 9, 0.5))
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF not really")
    return files


def archive_and_its_index(tmp_path: Path) -> tuple[Path, list[Path], Path, Path]:
    """The test archive under ``tmp_path``, its files, the single-process index of it
    ("one.idx") and the path for the cluster's index ("many.idx", not yet made)."""
    folder = tmp_path / "audio"
    files = write_archive(folder)
    one, many = tmp_path / "one.idx", tmp_path / "many.idx"
    index_audio([folder], one, CountingEmbedder(), progress=False)
    return folder, files, one, many


# ------------------------------------------------------------------ no cluster needed


def test_piece_spans_cover_the_windows_in_whole_batches() -> None:
    assert piece_spans(10, 4) == [(0, 4), (4, 8), (8, None)]
    assert piece_spans(8, 4) == [(0, 4), (4, None)]
    assert piece_spans(10, 5, batch_size=2) == [(0, 4), (4, 8), (8, None)]
    assert piece_spans(5, 1, batch_size=8) == [(0, None)]
    assert piece_spans(3, 600) == [(0, None)]
    assert piece_spans(0, 600) == [(0, None)]
    assert piece_spans(1800, 600, batch_size=8) == [(0, 600), (600, 1200), (1200, None)]


@pytest.mark.parametrize(("rate", "channels", "fmt"), [
    (44100, 1, "WAV"), (44100, 2, "FLAC"), (48000, 2, "WAV"), (16000, 1, "OGG")])
def test_window_ranges_are_the_windows_of_the_whole_stream(
    tmp_path: Path, rate: int, channels: int, fmt: str
) -> None:
    rng = np.random.default_rng(rate + channels)
    x = (0.2 * rng.normal(size=(round(7.4 * rate), channels))).clip(-1, 1)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), x, rate, format=fmt)
    config = WindowConfig(block_s=2.5)  # reads cross block edges inside the ranges
    whole = load_windows(path, config)
    assert len(whole) == 7
    for first, stop, batch in [(0, None, 8), (0, 3, 2), (2, 5, 2), (3, None, 3), (6, 7, 1),
                               (5, 12, 4), (7, None, 2), (9, 11, 1), (1, 1, 1)]:
        got = list(iter_window_range(path, first, stop, batch, config))
        assert all(1 <= len(b) <= batch for b in got)
        want = whole[first:stop]
        if len(want) == 0:
            assert got == []
            continue
        np.testing.assert_array_equal(np.concatenate(got), want)
    with pytest.raises(ValueError, match="range"):
        next(iter_window_range(path, 3, 2))


def test_index_help_does_not_import_ray() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "audiomoment", "index",
                          "--help"], capture_output=True, text=True, check=True)
    assert "--ray" in out.stdout
    modules = {line.split("|")[-1].strip() for line in out.stderr.splitlines()
               if line.startswith("import time:")}
    assert "audiomoment.cli.index" in modules
    assert not {m for m in modules if m == "ray" or m.startswith("ray.")}


def test_ray_missing_is_one_line_saying_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wav(tmp_path / "a" / "x.wav", 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["index", str(tmp_path / "a"), "--db", str(tmp_path / "db"), "--ray"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "pip install 'audiomoment[ray]'" in err
    with pytest.raises(InputError, match=r"audiomoment\[ray\]"):
        index_audio_ray([tmp_path / "a"], tmp_path / "db", span_embedder)
    assert not (tmp_path / "db").exists()


class _FakeRay:
    """The part of the ``ray`` module that the driver's bookkeeping uses: a call is a ref
    whose outcome the test sets (``outcome[ref]``: the result, or the error ``get`` raises);
    ``wait`` returns the refs that have one."""

    class exceptions:  # as Ray spells it
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

        class ObjectLostError(RayError):
            pass

    def __init__(self) -> None:
        self.outcome: dict[object, Any] = {}

    def get(self, ref: object) -> Any:
        out = self.outcome[ref]
        if isinstance(out, BaseException):
            raise out
        return out

    def wait(self, refs: list[object], num_returns: int = 1, timeout: float | None = None
             ) -> tuple[list[object], list[object]]:
        done = [r for r in refs if r in self.outcome][:num_returns]
        return done, [r for r in refs if r not in done]


class _FakeActor:
    """An actor handle: ``actor.method.remote(*args)`` (or ``.options(...).remote``) notes
    the call in ``calls`` (method name, args, ref) and returns a new ref."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], object]] = []

    def __getattr__(self, name: str) -> Any:
        actor = self

        class Method:
            def options(self, **kwargs: Any) -> Method:
                return self

            def remote(self, *args: Any) -> object:
                ref = object()
                actor.calls.append((name, args, ref))
                return ref

        return Method()


def test_a_late_failure_from_a_lost_worker_is_no_second_loss_of_its_restarted_one() -> None:
    """The driver's bookkeeping, one worker, one file of 4 one-window pieces: the worker
    dies running piece 0 (piece 1 queued behind it); Ray restarts it and it is up again
    before the failure of piece 1 is seen. That failure is not a second loss: the new
    worker stays up, its pieces keep their standing; its own death later counts again."""
    ray, actor = _FakeRay(), _FakeActor()
    info = WorkerInfo(ModelSpec(dim=4), 1, True, _same, "host", "cpu")
    pool = _Pool(ray, [actor], timeout_s=60)
    ray.outcome[actor.calls[0][2]] = info  # the first describe
    assert pool.first() is info and pool.ready == {0}
    todo = [_File(Path("a.wav"), "a.wav", os.stat(__file__), "", 4.0, piece_spans(4, 1))]
    todo[0].parts = [None] * 4
    run = _Run(pool, info, None, ClusterReport(), todo, None, max_retries=3, piece_windows=1)

    def embed_refs() -> list[object]:
        return [ref for name, _, ref in actor.calls if name == "embed"]

    def died() -> Exception:
        return ray.exceptions.RayActorError("the actor died")

    run._dispatch()  # pieces 0 and 1 (two calls queued per worker)
    e0, e1 = embed_refs()
    assert [run.inflight[r][:3] for r in (e0, e1)] == [(0, 0, 0), (0, 1, 0)]
    ray.outcome[e0] = died()
    run._receive(e0, None)  # first news: lost; piece 1 had not started
    assert (pool.ready, pool.lost_count, pool.restarts) == (set(), 1, [1])
    assert run.unstarted == {e1} and run.tries[0, 0] == 1
    [restart] = pool.starting
    ray.outcome[restart] = info  # restarted, its model loaded again
    assert pool.wait([e1], 0) == [] and pool.ready == {0} and not pool.starting

    run._dispatch()  # piece 0 again, to the new worker (piece 1 still counts as queued)
    e0_again = embed_refs()[-1]
    assert run.inflight[e0_again] == (0, 0, 0, 1)
    ray.outcome[e1] = died()
    run._receive(e1, None)  # the dead worker's queued call: no news
    assert (pool.ready, pool.lost_count, pool.restarts) == ({0}, 1, [1])
    assert not pool.starting and not run.unstarted
    assert run.tries[0, 1] == 0 and list(run.queue) == [(0, 1), (0, 2), (0, 3)]
    assert set(run.inflight) == {e0_again} and run.load == [1]

    run._dispatch()  # piece 1 queued behind piece 0 on the new worker
    e1_again = embed_refs()[-1]
    ray.outcome[e0_again] = died()
    run._receive(e0_again, None)  # the new worker dies running piece 0: counted
    assert (pool.ready, pool.lost_count, pool.restarts) == (set(), 2, [2])
    assert run.unstarted == {e1_again} and run.tries[0, 0] == 2 and run.report.retried == 3
    assert len(pool.starting) == 1


# ------------------------------------------------------------------ on a local cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for this module; its address."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                                            "'audiomoment[ray]')")
    saved = os.environ.get("PYTHONPATH")
    # the workers import this module (the test embedder) and index_helpers
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), *([saved] if saved else [])])
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
             logging_level="WARNING", _node_ip_address="127.0.0.1")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_span_embedder_pieces_equal_the_whole_file(tmp_path: Path) -> None:
    emb = SpanEmbedder()
    assert isinstance(emb, PieceEmbedder)
    path = write_wav(tmp_path / "a.wav", 3, 5.6)
    assert emb.window_count(path) == 5
    parts = [emb.embed_windows(path, a, b) for a, b in [(0, 2), (2, 4), (4, None)]]
    np.testing.assert_array_equal(np.concatenate(parts), emb.embed(path))
    assert emb.embed_windows(path, 5, None).shape == (0, emb.spec.dim)


@pytest.mark.parametrize("piece_windows", [1, 2])
def test_the_cluster_makes_the_index_of_one_process(
    cluster: str, tmp_path: Path, piece_windows: int
) -> None:
    folder = tmp_path / "audio"
    files = write_archive(folder)
    neutral = np.random.default_rng(3).normal(size=CountingEmbedder().spec.dim)
    one, many = tmp_path / "one.idx", tmp_path / "many.idx"
    index_audio([folder], one, CountingEmbedder(), progress=False, neutral=neutral)
    report = index_audio_ray([folder], many, span_embedder, cluster, workers=2,
                             piece_windows=piece_windows, progress=False, neutral=neutral)
    assert_same_index(one, many)
    assert sorted(report.added) == ["r0.wav", "r1.wav", "r2.wav", "r3.wav", "r4.wav",
                                    "r5.wav"]
    assert sorted(Path(s).name for s, _ in report.failed) == ["broken.wav", "short.wav"]
    # the second worker may start after the first has done everything
    assert report.workers in (1, 2) and report.windows == 7 + 2 + 5 + 1 + 4 + 6
    assert report.pieces == sum(-(-n // piece_windows) for n in (7, 2, 5, 1, 4, 6))
    assert report.windows_per_s > 0

    # the same changes on both: one file rewritten, one deleted, one added
    write_wav(files[1], 77, 3.0)
    files[4].unlink()
    write_wav(folder / "sub" / "new.wav", 78, 2.0)
    index_audio([folder], one, CountingEmbedder(), progress=False, neutral=neutral)
    again = index_audio_ray([folder], many, span_embedder, cluster, workers=2,
                            piece_windows=piece_windows, progress=False, neutral=neutral)
    assert_same_index(one, many)
    assert (again.added, again.replaced, again.removed, again.unchanged) == (
        [str(Path("sub") / "new.wav")], ["r1.wav"], ["r4.wav"], 4)
    assert again.failed == []  # listed failures are skipped until they change


def test_a_worker_that_dies_is_replaced_and_its_piece_run_again(
    cluster: str, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    marker = tmp_path / "kill-once"
    marker.touch()
    factory = functools.partial(span_embedder, kill_marker=marker)
    report = index_audio_ray([folder], many, factory, cluster, workers=2, piece_windows=2,
                             progress=False)
    assert not marker.exists()  # a worker did die
    assert report.retried >= 1  # the piece it held (and any queued behind it) ran again
    assert len(report.added) == 6 and len(report.failed) == 2
    assert_same_index(one, many)


def test_a_piece_that_kills_its_worker_every_time_fails_its_file_alone(
    cluster: str, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    factory = functools.partial(span_embedder, fatal="r2.wav")
    # r2.wav (5 windows) in pieces of 3: [0, 3) is embedded, [3, end) kills its worker, is
    # run once more (max_retries=1), kills that one too, and r2.wav is listed as a failure
    report = index_audio_ray([folder], many, factory, cluster, workers=2, piece_windows=3,
                             max_retries=1, progress=False)
    r2 = folder / "r2.wav"
    # that piece once, and any piece queued behind it on its worker (those never started:
    # they do not count against their files, which are all indexed)
    assert report.retried >= 1
    [reason] = [r for s, r in report.failed if s == str(r2)]
    assert reason.startswith(f"{r2}: the worker embedding it died 2 times (")
    assert "\n" not in reason
    assert sorted(report.added) == ["r0.wav", "r1.wav", "r3.wav", "r4.wav", "r5.wav"]
    # the other recordings, rows and all, are those of one process
    state, whole = index_state(many), index_state(one)
    assert state["rows"] == {n: v for n, v in whole["rows"].items() if n != "r2.wav"}
    assert [r[1] for r in state["recordings"]] == [r[1] for r in whole["recordings"]
                                                   if r[1] != "r2.wav"]
    # the next run tries it again only once it has changed (a failure is remembered)
    again = index_audio_ray([folder], many, span_embedder, cluster, workers=2,
                            piece_windows=3, progress=False)
    assert (again.added, again.failed) == ([], [])


def test_a_file_that_changes_while_the_workers_read_it_is_read_again_next_run(
    cluster: str, tmp_path: Path
) -> None:
    folder, files, one, many = archive_and_its_index(tmp_path)
    longest = max((f for f in files if f.suffix == ".wav" and f.stat().st_size > 0),
                  key=lambda f: f.stat().st_size)
    factory = functools.partial(span_embedder, touch=longest)
    report = index_audio_ray([folder], many, factory, cluster, workers=2, piece_windows=2,
                             progress=False)
    changed = [(Path(s), r) for s, r in report.failed if "changed while" in r]
    assert changed == [(longest, f"{longest}: changed while it was being indexed (read again "
                                 "on the next run)")]
    names = {r.name for r in ArchiveIndex(many).snapshot().recordings}
    assert longest.name not in names
    report = index_audio_ray([folder], many, span_embedder, cluster, workers=2,
                             piece_windows=2, progress=False)
    assert report.added == [longest.name]
    # the single-process index learns the new modification time (same content: not read)
    again = CountingEmbedder()
    index_audio([folder], one, again, progress=False)
    assert again.calls == []
    assert_same_index(one, many)


def broken_factory(device: str) -> SpanEmbedder:
    raise InputError("/models/missing.pth: checkpoint not found")


def test_workers_that_cannot_load_the_model_stop_the_run_with_its_reason(
    cluster: str, tmp_path: Path
) -> None:
    write_wav(tmp_path / "audio" / "x.wav", 1)
    with pytest.raises(InputError, match=r"no Ray worker could load the embedder "
                                         r"\(.*/models/missing.pth: checkpoint not found"):
        index_audio_ray([tmp_path / "audio"], tmp_path / "db", broken_factory, workers=2,
                        progress=False)
    with pytest.raises(InputError, match="offers 0 GPUs"):
        index_audio_ray([tmp_path / "audio"], tmp_path / "db2", span_embedder,
                        gpus_per_worker=1, progress=False)
    assert not (tmp_path / "db2").exists()


DRIVER = """
import sys, time
from pathlib import Path
import functools
import ray
from test_ray import span_embedder
from audiomoment.index.distributed import index_audio_ray

address, db, folder, marker = sys.argv[1:]
ray.init(address=address, logging_level="WARNING")

def on_commit(name):
    Path(marker).write_text(name)
    time.sleep(600)

index_audio_ray([folder], db, functools.partial(span_embedder, delay_s=0.3), workers=2,
                piece_windows=1, progress=False, on_commit=on_commit)
"""


def test_a_killed_driver_resumes_without_redoing_committed_work(
    cluster: str, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    marker = tmp_path / "committed"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    child = subprocess.Popen([sys.executable, str(script), cluster, str(many), str(folder),
                              str(marker)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the driver never committed"
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    committed = {r.name for r in ArchiveIndex(many).snapshot().recordings}
    assert marker.read_text() in committed and 1 <= len(committed) < 6

    report = index_audio_ray([folder], many, span_embedder, cluster, workers=2,
                             piece_windows=1, progress=False)
    assert report.unchanged == len(committed)
    assert set(report.added) == {f"r{i}.wav" for i in range(6)} - committed
    assert_same_index(one, many)


def test_the_cli_on_the_cluster_with_ms_clap_pieces(
    cluster: str, clap_files: tuple[Path, Path], shared_data: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The random-weight MS-CLAP model: ~3-s files in pieces of 1 s (batches of 1) and of
    2 s (batches of 2) give the rows of the whole files (one at the encoder's 44.1 kHz:
    read from the piece's start; one at 16 kHz: resampled from the file's start)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, _ = clap_files
    tok = shared_data / "gpt2_tokenizer"
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 1, 3.4, sr=44100)
    write_wav(audio / "b.wav", 2, 3.0, sr=16000)
    model = ["--checkpoint", ckpt, "--tokenizer", tok, "--cache-dir", tmp_path / "cache",
             "--no-progress", "--batch-size", "1", "--json"]
    one, many = tmp_path / "one.idx", tmp_path / "many.idx"
    assert main([str(a) for a in ["index", audio, "--db", one, *model]]) == 0
    capsys.readouterr()
    code = main([str(a) for a in ["index", audio, "--db", many, *model, "--ray", cluster,
                                  "--ray-workers", "2", "--ray-piece-s", "1"]])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["added"], summary["windows"]) == (2, 6) and summary["workers"] in (1, 2)
    assert summary["pieces"] == 6  # 3 windows each, pieces of one window
    assert sum(summary["nodes"].values()) == 6 and summary["retried"] == 0  # one local node
    assert_same_index(one, many)

    # the Python interface with a batch of 2 and pieces of 2 windows: the same rows
    from audiomoment.clap.model import load_clap

    digest = ArchiveIndex(one).spec().checkpoint_sha256  # type: ignore[union-attr]
    factory = ClapFactory(str(ckpt), str(digest), batch_size=2, threads=1)
    two = tmp_path / "two.idx"
    index_audio([audio], two, ClapAudioEmbedder(load_clap(ckpt, audio=True, text=False),
                                                str(digest), batch_size=2), progress=False)
    report = index_audio_ray([audio], tmp_path / "two-ray.idx", factory, workers=2,
                             piece_windows=2, progress=False)
    assert report.pieces == 4  # [0, 2) and [2, end) of each
    assert_same_index(two, tmp_path / "two-ray.idx")
