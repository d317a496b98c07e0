"""Faults from outside: a process killed at any moment, a full disk, a read-only cache.

* ``predict`` and ``extract-features`` killed with SIGKILL (at random moments, and at the
  worst one: the outputs are written, not yet renamed) leave either the complete file
  under its final name or nothing there, and an earlier result untouched.
* A full disk (a real tmpfs where one can be mounted, and a writer made to fail with
  ENOSPC everywhere) is one line naming the file; earlier results stay as they were, the
  predictions and their run settings never come from two runs.
* A cache folder that cannot be written means running without a cache, with a note, and
  the same answers.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_tiny_dataset

from audiomoment.cli import main

REPO = Path(__file__).resolve().parents[1]

# Child process: run the command line, holding every rename onto a target whose name ends
# with HOLD_AT until the parent kills it (it prints HOLDING first).
CHILD = """
import os, sys, time
hold = os.environ.get("HOLD_AT")
real = os.replace
def held(src, dst, *args, **kwargs):
    if hold and str(dst).endswith(hold):
        print("HOLDING", flush=True)
        time.sleep(600)
    return real(src, dst, *args, **kwargs)
os.replace = held
from audiomoment.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child(argv: list[object], hold_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    env.pop("HOLD_AT", None)
    if hold_at:
        env["HOLD_AT"] = hold_at
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when_holding(proc: subprocess.Popen) -> None:
    """Wait for the child's HOLDING line, then SIGKILL it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "HOLDING":
            break
    else:
        proc.wait()
        raise AssertionError(f"the child ended without holding a rename: {proc.stderr.read()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def visible_files(folder: Path) -> dict[str, bytes]:
    """Files under ``folder`` by relative path, temporary (dot) files left out."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def ds(template: dict, tmp_path: Path) -> dict:
    root = tmp_path / "data"
    shutil.copytree(template["root"], root)
    return {**template, **{k: root / Path(v).relative_to(template["root"])
                           for k, v in template.items() if isinstance(v, Path)}}


def predict_argv(ds: dict, out: Path, cache: Path | None) -> list[object]:
    return ["predict", "--annotations", ds["annotations"], "--features", ds["features"],
            "--checkpoint", ds["checkpoint"], "--neutral-embedding", ds["neutral"],
            *(["--cache-dir", cache] if cache else ["--no-cache"]), "--out", out]


# --------------------------------------------------------------------------- SIGKILL


def test_predict_killed_at_random_moments_leaves_all_or_nothing(ds, tmp_path):
    cache = tmp_path / "cache"
    reference = tmp_path / "reference" / "pred.jsonl"
    assert main([str(a) for a in predict_argv(ds, reference, tmp_path / "ref-cache")]) == 0
    expected = visible_files(reference.parent)
    assert set(expected) == {"pred.jsonl", "pred.settings.json"}

    # the worst moment: both files written, their renames not done
    out = tmp_path / "out" / "pred.jsonl"
    proc = child(predict_argv(ds, out, cache), hold_at="pred.jsonl")
    kill_when_holding(proc)
    assert visible_files(out.parent) == {}
    held = [p.name for p in out.parent.iterdir()]
    assert held and all(name.startswith(".pred.") for name in held)  # the unrenamed files

    # random moments of a whole run (start-up, reading, caching, localising, writing)
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", CHILD, *map(str, predict_argv(
        ds, tmp_path / "timed" / "pred.jsonl", tmp_path / "timed-cache"))],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    whole = time.monotonic() - started
    rng = random.Random(0)
    for moment in sorted(rng.uniform(0.2, 1.1) * whole for _ in range(5)):
        proc = child(predict_argv(ds, out, cache))
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = visible_files(out.parent)
        # nothing, or complete files (the process may have finished before the signal;
        # the pair is renamed one file after the other, so a kill between the two renames,
        # a few microseconds, would leave the predictions alone)
        assert all(found[name] == expected[name] for name in found), (moment, sorted(found))
        for name in found:
            (out.parent / name).unlink()
    # what the killed runs left in the cache does not change the answer
    assert main([str(a) for a in predict_argv(ds, out, cache)]) == 0
    assert visible_files(out.parent) == expected


def test_predict_killed_before_its_renames_keeps_the_earlier_result(ds, tmp_path):
    out = tmp_path / "out" / "pred.jsonl"
    assert main([str(a) for a in predict_argv(ds, out, None)]) == 0
    earlier = visible_files(out.parent)
    # a second run with other settings, killed when both of its files are written and
    # before the first rename
    proc = child([*predict_argv(ds, out, None), "--system", "2", "--max-windows", "1"],
                 hold_at="pred.jsonl")
    kill_when_holding(proc)
    assert visible_files(out.parent) == earlier


def _wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    return path


def test_extract_features_killed_leaves_all_or_nothing(clap_files, shared_data, tmp_path):
    a, b = _wav(tmp_path / "in" / "a.wav", 2.0, 1), _wav(tmp_path / "in" / "b.wav", 2.0, 2)
    out = tmp_path / "FEATURES"
    argv = ["extract-features", a, b, "--out", out, "--checkpoint", clap_files[0],
            "--tokenizer", shared_data / "gpt2_tokenizer", "--no-cache", "--no-progress"]
    # killed with a's features written, before their rename: no file under the final name
    kill_when_holding(child(argv, hold_at="a.npz"))
    assert visible_files(out) == {}
    # killed with b's features written: a's are complete, b's are absent
    kill_when_holding(child(argv, hold_at="b.npz"))
    found = visible_files(out)
    assert set(found) == {"clap/a.npz"}
    assert np.load(out / "clap" / "a.npz")["features"].shape == (2, 768)
    # killed at random moments: whatever is there is complete
    rng = random.Random(1)
    for _ in range(2):
        proc = child(argv)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for name in visible_files(out):
            with np.load(out / name) as npz:
                assert npz["features"].shape == (2, 768)


# --------------------------------------------------------------------------- full disk


@contextmanager
def full_disk_writes(monkeypatch: pytest.MonkeyPatch, after_bytes: int = 0) -> Iterator[None]:
    """Every file written through ``audiomoment.io.atomic`` (opened there, or written by
    ``np.save``, ``np.savez``, ``Path.write_text``) fails with ENOSPC, as on a full disk;
    files opened there fail once ``after_bytes`` bytes are written."""
    import builtins

    import audiomoment.io.atomic as atomic

    real_open = builtins.open

    class FullFile:
        def __init__(self, handle) -> None:  # type: ignore[no-untyped-def]
            self.handle, self.written = handle, 0

        def write(self, data):  # type: ignore[no-untyped-def]
            self.written += len(data)
            if self.written > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.handle, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    def opener(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        return FullFile(handle) if any(m in mode for m in "wax") else handle

    monkeypatch.setattr(atomic, "open", opener, raising=False)
    real_savez = np.savez

    def savez(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_savez(file, *args, **kwargs)  # the data went out, the last block did not fit
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_text(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", savez)
    monkeypatch.setattr(np, "save", save)
    monkeypatch.setattr(Path, "write_text", write_text)
    try:
        yield
    finally:
        monkeypatch.undo()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("audiomoment: error:"), err
    assert sum(line.startswith("audiomoment: error:") for line in lines) == 1
    return lines[-1]


def _settings_do_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run settings' write fails with ENOSPC inside its atomic rename."""
    import audiomoment.io.run_settings as run_settings
    from audiomoment.io.atomic import atomic_path

    def write_text(path, text):  # type: ignore[no-untyped-def]
        with atomic_path(path) as tmp:
            tmp.write_text(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_settings, "write_text", write_text)


@pytest.mark.parametrize("failing", ["predictions", "settings"])
def test_full_disk_while_predicting_keeps_the_earlier_result(ds, tmp_path, capsys, monkeypatch,
                                                              failing):
    out = tmp_path / "out" / "pred.jsonl"
    argv = [str(a) for a in predict_argv(ds, out, None)]
    assert main(argv) == 0
    earlier = visible_files(out.parent)
    capsys.readouterr()
    # the predictions do not fit, or they do and their run settings do not: either way
    # the earlier pair stays (never new predictions beside the earlier run's settings)
    if failing == "predictions":
        with full_disk_writes(monkeypatch, after_bytes=100):
            code = main([*argv, "--system", "2"])
    else:
        _settings_do_not_fit(monkeypatch)
        code = main([*argv, "--system", "2"])
    _, err = capsys.readouterr()
    line = one_error_line(err)
    assert code != 0 and "No space left on device" in line and str(out.parent) in line
    assert visible_files(out.parent) == earlier
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_full_disk_while_extracting_and_evaluating(ds, tmp_path, capsys, monkeypatch):
    pred = tmp_path / "pred.jsonl"
    assert main([str(a) for a in predict_argv(ds, pred, None)]) == 0
    metrics = tmp_path / "metrics.json"
    metrics.write_text("earlier\n")
    capsys.readouterr()
    with full_disk_writes(monkeypatch):
        code = main(["evaluate", "--annotations", str(ds["annotations"]), "--predictions",
                     str(pred), "--json", str(metrics)])
    _, err = capsys.readouterr()
    assert code != 0 and "metrics.json" in one_error_line(err)
    assert metrics.read_text() == "earlier\n"
    # the feature writer (np.savez inside an atomic rename)
    from audiomoment.io.features import write_audio_features

    target = tmp_path / "F" / "clap" / "x.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"earlier")
    with full_disk_writes(monkeypatch), pytest.raises(OSError, match=r"x\.npz"):
        write_audio_features(tmp_path / "F", "x", np.ones((2, 768), np.float32))
    assert target.read_bytes() == b"earlier" and os.listdir(target.parent) == ["x.npz"]


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB file system (tmpfs), where this process may mount one."""
    point = tmp_path / "disk"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the patched full-disk tests cover the rest")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)


def test_a_really_full_disk(ds, tmp_path, capsys, tiny_tmpfs):
    out = tiny_tmpfs / "pred.jsonl"
    argv = [str(a) for a in predict_argv(ds, out, None)]
    assert main(argv) == 0
    earlier = visible_files(tiny_tmpfs)
    capsys.readouterr()
    # fill the disk to a few hundred bytes, less than the new predictions need
    filler = tiny_tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    code = main([*argv, "--system", "2"])
    _, err = capsys.readouterr()
    line = one_error_line(err)
    assert code != 0 and "No space left on device" in line and "pred" in line
    filler.unlink()
    assert visible_files(tiny_tmpfs) == earlier
    assert [p.name for p in tiny_tmpfs.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- read-only cache


def _unwritable_cache(tmp_path: Path, kind: str) -> Path:
    if kind == "a-file":
        path = tmp_path / "cache-file"
        path.write_text("a file where the cache folder should be")
        return path
    if kind == "inside-a-file":
        (tmp_path / "plain").write_text("x")
        return tmp_path / "plain" / "cache"
    path = tmp_path / "ro-cache"
    path.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs",
                               str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"running as root, where chmod does not stop writes, and a read-only "
                        f"tmpfs cannot be mounted: {done.stderr.strip()}")
    else:
        path.chmod(0o555)
    return path


@pytest.mark.parametrize("kind", ["read-only", "a-file", "inside-a-file"])
def test_an_unwritable_cache_means_no_cache_with_a_note(ds, tmp_path, capsys, kind):
    expected = tmp_path / "nocache" / "pred.jsonl"
    assert main([str(a) for a in predict_argv(ds, expected, None)]) == 0
    cache = _unwritable_cache(tmp_path, kind)
    try:
        capsys.readouterr()
        out = tmp_path / "out" / "pred.jsonl"
        code = main([str(a) for a in predict_argv(ds, out, cache)])
        _, err = capsys.readouterr()
        assert code == 0, err
        assert f"note: cache folder {cache} cannot be written" in err
        assert "running without a cache" in err and "Traceback" not in err
        assert out.read_bytes() == expected.read_bytes()
    finally:
        if kind == "read-only":
            if os.geteuid() == 0:
                subprocess.run(["umount", str(cache)], check=False)
            else:
                cache.chmod(0o755)


def test_search_with_an_unwritable_cache(clap_files, shared_data, tmp_path, capsys,
                                         monkeypatch):
    from audiomoment.clap.model import load_clap

    model = load_clap(clap_files[0], shared_data / "gpt2_tokenizer")
    import audiomoment.clap.model as clap_model

    monkeypatch.setattr(clap_model, "load_clap", lambda *args, **kwargs: model)
    audio = _wav(tmp_path / "rec.wav", 3.0)
    common = ["--checkpoint", str(clap_files[0]), "--no-progress", "--json"]
    assert main(["search", str(audio), "rain", "--no-cache", *common]) == 0
    expected = json.loads(capsys.readouterr().out)
    cache = _unwritable_cache(tmp_path, "a-file")
    assert main(["search", str(audio), "rain", "--cache-dir", str(cache), *common]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == expected
    assert f"note: cache folder {cache} cannot be written" in err
