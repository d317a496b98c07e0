"""Reading audio files as a stream of fixed-length windows at the encoder's rate.

The windows are made as the DCASE 2026 Task 6 (lighthouse) MS-CLAP features were: the
recording is mixed down to mono (mean of the channels), resampled to 44.1 kHz with soxr
("HQ"), and cut into 1-s windows with a 1-s hop, starting at 0; a trailing partial window is
dropped. So window t covers [t, t + 1) s and a recording of d seconds gives floor(d) windows.

Files are decoded by soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) in
blocks and resampled as a stream, so memory stays bounded for any length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError


@dataclass(frozen=True)
class WindowConfig:
    """How a recording becomes windows.

    Attributes
    ----------
    sr : rate the windows are resampled to, Hz (the encoder's 44100).
    window_s : window length, seconds.
    hop_s : distance between window starts, seconds.
    block_s : seconds of the source decoded at a time (bounds memory).
    quality : soxr quality recipe ("HQ", "VHQ", "MQ", "LQ", "QQ").
    """

    sr: int = 44100
    window_s: float = 1.0
    hop_s: float = 1.0
    block_s: float = 30.0
    quality: str = "HQ"

    def __post_init__(self) -> None:
        if self.sr <= 0:
            raise ValueError(f"sr must be > 0, got {self.sr}")
        if not self.window_s > 0 or not self.hop_s > 0:
            raise ValueError("window_s and hop_s must be > 0")
        if not self.block_s > 0:
            raise ValueError(f"block_s must be > 0, got {self.block_s}")

    @property
    def window_samples(self) -> int:
        """Window length in samples at ``sr``."""
        return round(self.window_s * self.sr)

    @property
    def hop_samples(self) -> int:
        """Hop in samples at ``sr``."""
        return round(self.hop_s * self.sr)

    def n_windows(self, n_samples: int) -> int:
        """Windows in a signal of ``n_samples`` samples at ``sr`` (0 when shorter than one)."""
        if n_samples < self.window_samples:
            return 0
        return (n_samples - self.window_samples) // self.hop_samples + 1


DEFAULT_WINDOWS = WindowConfig()


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says.

    sr : the file's sample rate, Hz. frames : samples per channel. duration_s : frames / sr.
    """

    path: Path
    sr: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sr if self.sr else 0.0


def _open(path: Path):
    import soundfile as sf

    if not path.exists():
        raise InputError(f"{path}: audio file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot decode audio ({reason})") from None


def audio_info(path: str | os.PathLike[str], config: WindowConfig = DEFAULT_WINDOWS) -> AudioInfo:
    """The file's rate, channels and length; :class:`InputError` when it cannot be decoded,
    is empty or is shorter than one window."""
    p = Path(path)
    with _open(p) as f:
        info = AudioInfo(p, int(f.samplerate), int(f.channels), int(f.frames), str(f.format))
    if info.frames <= 0:
        raise InputError(f"{p}: the audio is empty")
    if info.duration_s < config.window_s:
        raise InputError(
            f"{p}: the audio is {info.duration_s:.3f} s long, shorter than one "
            f"{config.window_s:g}-s window"
        )
    return info


def expected_windows(info: AudioInfo, config: WindowConfig = DEFAULT_WINDOWS) -> int:
    """Windows the file should give (from its header; the stream may differ by rounding)."""
    return config.n_windows(math.ceil(info.frames * config.sr / info.sr))


def _resampler(sr_in: int, config: WindowConfig):
    import soxr

    if sr_in == config.sr:
        return None
    return soxr.ResampleStream(sr_in, config.sr, 1, dtype="float32", quality=config.quality)


def stream_samples(
    path: str | os.PathLike[str], config: WindowConfig = DEFAULT_WINDOWS
) -> Iterator[NDArray[np.float32]]:
    """The recording as mono float32 blocks at ``config.sr`` (about ``block_s`` each)."""
    p = Path(path)
    info = audio_info(p, config)
    resampler = _resampler(info.sr, config)
    block = max(1, int(config.block_s * info.sr))
    with _open(p) as f:
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise InputError(f"{p}: cannot decode audio ({reason})") from None
            if not np.isfinite(data).all():  # float formats can store NaN and inf
                raise InputError(f"{p}: the audio contains NaN or infinite samples")
            last = data.shape[0] < block
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                return


def iter_windows(
    path: str | os.PathLike[str],
    batch: int = 8,
    config: WindowConfig = DEFAULT_WINDOWS,
) -> Iterator[NDArray[np.float32]]:
    """The windows of a recording in batches: arrays (k, window_samples), k <= ``batch``,
    in time order (window t starts at t * hop_s seconds)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    size, hop = config.window_samples, config.hop_samples
    pending = np.zeros(0, np.float32)
    skip = 0  # samples still to drop before the next window starts (hop > window)
    ready: list[NDArray[np.float32]] = []
    total = 0
    for chunk in stream_samples(path, config):
        if skip:
            dropped = min(skip, chunk.size)
            chunk, skip = chunk[dropped:], skip - dropped
        pending = np.concatenate([pending, chunk]) if pending.size else chunk
        n = config.n_windows(pending.size)
        if n == 0:
            continue
        ready.extend(pending[s : s + size] for s in range(0, n * hop, hop))
        skip = max(0, n * hop - pending.size)
        pending = pending[n * hop :].copy()
        while len(ready) >= batch:
            out, ready = np.stack(ready[:batch]), ready[batch:]
            total += len(out)
            yield out
    if ready:
        total += len(ready)
        yield np.stack(ready)
    if total == 0:
        raise InputError(f"{path}: the audio is shorter than one {config.window_s:g}-s window")


def load_windows(
    path: str | os.PathLike[str], config: WindowConfig = DEFAULT_WINDOWS
) -> NDArray[np.float32]:
    """All windows of a (short) recording at once: (T, window_samples) float32."""
    return np.concatenate(list(iter_windows(path, 64, config)))


#: Containers whose decoder seeks to the exact sample (PCM and FLAC); any other file is
#: decoded from its start when a range of its windows is asked for.
_EXACT_SEEK = frozenset({"WAV", "WAVEX", "AIFF", "FLAC", "W64", "RF64", "CAF", "AU"})


def iter_window_range(
    path: str | os.PathLike[str],
    first: int,
    stop: int | None = None,
    batch: int = 8,
    config: WindowConfig = DEFAULT_WINDOWS,
) -> Iterator[NDArray[np.float32]]:
    """Windows ``first`` .. ``stop - 1`` of a recording (``stop`` None: to the end), in
    batches (k, window_samples), k <= ``batch``, counted from ``first``.

    Each window equals, bit for bit, the one :func:`iter_windows` gives at that index. A
    file already at ``config.sr`` in a container that seeks exactly (WAV, FLAC, AIFF, ...)
    is read from window ``first`` on; any other one is decoded and resampled from its start
    (the resampler's output depends on everything before). A range past the end gives
    nothing.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if first < 0 or (stop is not None and stop < first):
        raise ValueError(f"invalid window range [{first}, {stop})")
    p = Path(path)
    info = audio_info(p, config)
    if info.sr == config.sr and info.format in _EXACT_SEEK:
        windows = _seek_windows(p, first, stop, config)
    else:
        windows = _skip_windows(p, first, stop, config)
    ready: list[NDArray[np.float32]] = []
    for w in windows:
        ready.append(w)
        if len(ready) == batch:
            yield np.stack(ready)
            ready = []
    if ready:
        yield np.stack(ready)


def _seek_windows(
    path: Path, first: int, stop: int | None, config: WindowConfig
) -> Iterator[NDArray[np.float32]]:
    size, hop = config.window_samples, config.hop_samples
    per_read = max(1, round(config.block_s * config.sr) // hop)
    t = first
    with _open(path) as f:
        while stop is None or t < stop:
            n = per_read if stop is None else min(per_read, stop - t)
            if t * hop >= f.frames:
                return
            try:
                f.seek(t * hop)
                data = f.read((n - 1) * hop + size, dtype="float32", always_2d=True)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise InputError(f"{path}: cannot decode audio ({reason})") from None
            if not np.isfinite(data).all():  # float formats can store NaN and inf
                raise InputError(f"{path}: the audio contains NaN or infinite samples")
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            got = min(n, config.n_windows(mono.size))
            for i in range(got):
                yield mono[i * hop : i * hop + size]
            if got < n:
                return
            t += n


def _skip_windows(
    path: Path, first: int, stop: int | None, config: WindowConfig
) -> Iterator[NDArray[np.float32]]:
    t = 0
    for block in iter_windows(path, 64, config):
        for w in block:
            if stop is not None and t >= stop:
                return
            if t >= first:
                yield w
            t += 1
