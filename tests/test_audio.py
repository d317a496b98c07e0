"""Reading audio as 1-s windows at 44.1 kHz: mono mix, soxr resampling, streaming, formats,
and clear errors for files that cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from audiomoment.errors import InputError
from audiomoment.io.audio import (
    WindowConfig,
    audio_info,
    expected_windows,
    iter_windows,
    load_windows,
)


def tone(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    sig = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    if channels == 1:
        return sig.astype(np.float32)
    return np.stack([sig * (1 + 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def test_windows_at_44100_are_plain_slices(tmp_path: Path) -> None:
    sig = tone(44100, 3.7)
    path = tmp_path / "a.wav"
    sf.write(path, sig, 44100, subtype="FLOAT")
    windows = load_windows(path)
    assert windows.shape == (3, 44100)  # the trailing 0.7 s is dropped
    assert np.array_equal(windows.reshape(-1), sig[: 3 * 44100])


def test_stereo_32k_is_mixed_then_resampled_like_one_shot_soxr(tmp_path: Path) -> None:
    sig = tone(32000, 5.5, channels=2)
    path = tmp_path / "b.wav"
    sf.write(path, sig, 32000, subtype="FLOAT")
    config = WindowConfig(block_s=0.7)  # many small blocks: the stream must not show seams
    windows = load_windows(path, config)
    mono = sig.mean(axis=1)
    reference = soxr.resample(mono, 32000, 44100, quality="HQ")
    assert windows.shape == (5, 44100)
    assert np.max(np.abs(windows.reshape(-1) - reference[: 5 * 44100])) < 1e-4


def test_block_size_does_not_change_the_windows(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    sf.write(path, tone(22050, 4.2), 22050)
    small = load_windows(path, WindowConfig(block_s=0.31))
    large = load_windows(path, WindowConfig(block_s=60))
    assert small.shape == large.shape == (4, 44100)
    assert np.max(np.abs(small - large)) < 1e-5


def test_batches_and_other_hops(tmp_path: Path) -> None:
    sig = tone(44100, 10.2)
    path = tmp_path / "d.wav"
    sf.write(path, sig, 44100, subtype="FLOAT")
    batches = list(iter_windows(path, batch=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    sparse = WindowConfig(window_s=1.0, hop_s=2.5, block_s=0.9)
    windows = load_windows(path, sparse)
    starts = [0, 110250, 220500, 330750]
    assert windows.shape == (4, 44100)
    for w, s in zip(windows, starts, strict=True):
        assert np.array_equal(w, sig[s : s + 44100])
    dense = load_windows(path, WindowConfig(window_s=1.0, hop_s=0.5, block_s=0.8))
    assert dense.shape == (19, 44100)
    assert np.array_equal(dense[3], sig[3 * 22050 : 3 * 22050 + 44100])


@pytest.mark.parametrize(("fmt", "suffix"), [("FLAC", ".flac"), ("OGG", ".ogg"),
                                             ("MP3", ".mp3")])
def test_compressed_formats(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"e{suffix}"
    sig = tone(48000, 3.3, channels=2)
    sf.write(path, sig, 48000, format=fmt)
    info = audio_info(path)
    assert info.sr == 48000 and info.channels == 2
    windows = load_windows(path)
    # 3.3 s: three whole 1-s windows, the trailing 0.3 s dropped
    assert expected_windows(info) == 3
    assert windows.shape == (3, 44100)
    # the decoded file, mixed to mono and resampled in one shot, gives the same samples
    decoded, sr = sf.read(path, dtype="float32", always_2d=True)
    reference = soxr.resample(decoded.mean(axis=1), sr, 44100, quality="HQ")
    assert np.max(np.abs(windows.reshape(-1) - reference[: 3 * 44100])) < 1e-4
    # and they are the tone that was written: 16-bit FLAC is lossless up to quantisation,
    # the lossy codecs keep its waveform up to a small error
    original = soxr.resample(sig.mean(axis=1), 48000, 44100, quality="HQ")[: 3 * 44100]
    if fmt == "FLAC":
        assert np.max(np.abs(windows.reshape(-1) - original)) < 1e-4
    else:
        assert np.corrcoef(windows.reshape(-1), original)[0, 1] > 0.98


def test_unusable_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        audio_info(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(InputError, match="cannot decode"):
        audio_info(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="empty"):
        audio_info(empty)
    short = tmp_path / "short.flac"
    sf.write(short, tone(16000, 0.9), 16000)
    with pytest.raises(InputError, match=r"0\.900 s long, shorter than one 1-s window"):
        load_windows(short)
    zero_bytes = tmp_path / "zero.mp3"
    zero_bytes.write_bytes(b"")
    with pytest.raises(InputError, match="cannot decode"):
        audio_info(zero_bytes)
    with pytest.raises(InputError, match="not a file"):
        audio_info(tmp_path)


def test_real_recording(shared_data: Path) -> None:
    path = shared_data / "audio" / "1a-ODBWMUAE.wav"
    info = audio_info(path)
    assert (info.sr, info.channels) == (32000, 1)
    assert 49.9 < info.duration_s < 50.1
    windows = load_windows(path)
    assert windows.shape == (50, 44100)
    assert expected_windows(info) == 50
    # the streamed windows are the whole file resampled in one shot, cut into seconds
    decoded, sr = sf.read(path, dtype="float32")
    reference = soxr.resample(decoded, sr, 44100, quality="HQ")
    assert np.max(np.abs(windows.reshape(-1) - reference[: 50 * 44100])) < 1e-4
