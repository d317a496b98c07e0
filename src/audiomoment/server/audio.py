"""Audio of indexed recordings for the page: a moment as a WAV clip, a recording as a WAV
stream that the browser's player can seek in (HTTP byte ranges).

Only a recording's indexed ``source`` is ever opened, and only through soundfile; callers
look recordings up by id in the index.

Clip samples. A clip of ``[start, end]`` seconds with ``context`` seconds on each side holds
the frames ``floor((start - context) * sr)`` to ``ceil((end + context) * sr)`` (exclusive),
cut to the recording, at the file's own rate. With ``channels="original"`` they are the
file's samples: PCM files keep their integer samples exactly (16-bit as PCM_16, 24- and
32-bit as PCM_24 / PCM_32), float files stay float, other codings (MP3, Vorbis, ...) are
decoded to 32-bit float. ``channels="mono"`` gives the mean of the channels as 32-bit float.

The stream. The player reads a recording as 16-bit PCM WAV at the file's rate (one or two
channels; more are mixed down to mono), generated on the fly for the byte range asked for,
so a recording of any length costs the bytes the player actually fetches.
"""

from __future__ import annotations

import io
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from audiomoment.index.store import Recording

Channels = Literal["original", "mono"]

#: Subtypes whose samples a WAV file holds exactly: subtype -> (read dtype, WAV subtype).
_EXACT = {
    "PCM_16": ("int16", "PCM_16"),
    "PCM_24": ("int32", "PCM_24"),
    "PCM_32": ("int32", "PCM_32"),
    "FLOAT": ("float32", "FLOAT"),
    "DOUBLE": ("float64", "DOUBLE"),
}
#: Largest data chunk of a RIFF WAV file (its size fields are 32-bit).
WAV_MAX_DATA = 0xFFFFFFFF - 36
#: Frames decoded per read while streaming.
STREAM_BLOCK_FRAMES = 1 << 16


class AudioUnavailable(Exception):
    """The recording has no playable audio (features only, file gone or unreadable);
    ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def open_source(rec: Recording) -> Any:
    """The recording's audio file, open for reading (a soundfile.SoundFile)."""
    import soundfile as sf

    if not rec.has_audio or rec.source is None:
        raise AudioUnavailable(
            f"recording {rec.id} ({rec.name}) was indexed from features alone: there is no "
            "audio file to play", 409)
    path = Path(rec.source)
    if not path.is_file():
        raise AudioUnavailable(
            f"recording {rec.id} ({rec.name}): its audio file is no longer where it was "
            "indexed; re-run `audiomoment index`", 410)
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:
        from audiomoment.server.state import without_paths

        reason = without_paths(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        raise AudioUnavailable(
            f"recording {rec.id} ({rec.name}): its audio file cannot be decoded ({reason})",
            410) from None


def clip_frames(start_s: float, end_s: float, context_s: float, sr: int,
                frames: int) -> tuple[int, int]:
    """Frames [first, stop) of a clip (see the module docstring), cut to the recording."""
    first = max(0, math.floor((start_s - context_s) * sr + 1e-9))
    stop = min(frames, math.ceil((end_s + context_s) * sr - 1e-9))
    return first, stop


@dataclass(frozen=True)
class Clip:
    """A clip's WAV bytes and where it lies: start_s, end_s seconds in the recording."""

    wav: bytes
    start_s: float
    end_s: float
    sr: int
    channels: int


def read_clip(rec: Recording, start_s: float, end_s: float, context_s: float,
              channels: Channels = "original") -> Clip:
    """The WAV clip of ``[start_s, end_s]`` with ``context_s`` on each side (module
    docstring); ValueError when the range lies outside the recording."""
    import soundfile as sf

    with open_source(rec) as f:
        sr, n, subtype = int(f.samplerate), int(f.frames), str(f.subtype)
        first, stop = clip_frames(start_s, end_s, context_s, sr, n)
        if stop <= first:
            raise ValueError(f"[{start_s:g}, {end_s:g}] s lies outside recording {rec.id} "
                             f"({n / sr:.3f} s long)")
        f.seek(first)
        if channels == "mono":
            data: NDArray[Any] = f.read(stop - first, dtype="float64", always_2d=True)
            data = data.mean(axis=1).astype(np.float32)
            out_subtype = "FLOAT"
        else:
            dtype, out_subtype = _EXACT.get(subtype, ("float32", "FLOAT"))
            data = f.read(stop - first, dtype=dtype, always_2d=True)
    buf = io.BytesIO()
    sf.write(buf, data, sr, subtype=out_subtype, format="WAV")
    n_channels = 1 if data.ndim == 1 else int(data.shape[1])
    return Clip(buf.getvalue(), first / sr, stop / sr, sr, n_channels)


# ---------------------------------------------------------------------- streaming


def wav_header(sr: int, channels: int, data_bytes: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file with ``data_bytes`` of samples."""
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


@dataclass(frozen=True)
class StreamPlan:
    """How a recording is streamed: its rate, the channels sent (1 or 2), the frames sent
    and the total size in bytes."""

    sr: int
    channels: int
    source_channels: int
    frames: int

    @property
    def size(self) -> int:
        return 44 + self.frames * self.channels * 2


def stream_plan(rec: Recording) -> StreamPlan:
    """What :func:`stream_bytes` sends for ``rec`` (opens the file's header only)."""
    with open_source(rec) as f:
        sr, ch, frames = int(f.samplerate), int(f.channels), int(f.frames)
    out = ch if ch <= 2 else 1
    if frames * out * 2 > WAV_MAX_DATA:
        out = 1
    frames = min(frames, WAV_MAX_DATA // (out * 2))
    return StreamPlan(sr, out, ch, frames)


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """A single ``bytes=a-b`` range as inclusive (first, last), cut to ``size``.

    None: no usable range (absent, malformed or several ranges: the whole body is sent).
    False: a well-formed range that lies beyond the body (answer 416).
    """
    if not header or len(header) > 200:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # the last b bytes
        n = int(b)
        if n == 0:
            return False
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if not b else min(int(b), size - 1)
    if b and int(b) < first:
        return None
    if first >= size:
        return False
    return first, last


def stream_bytes(rec: Recording, plan: StreamPlan, first: int, last: int) -> Iterator[bytes]:
    """Bytes ``first..last`` (inclusive) of the recording's WAV stream, in blocks."""
    header = wav_header(plan.sr, plan.channels, plan.frames * plan.channels * 2)
    if first < len(header):
        yield header[first : last + 1]
        first = len(header)
    if first > last:
        return
    block = plan.channels * 2
    start_frame = (first - len(header)) // block
    stop_frame = min(plan.frames, (last - len(header)) // block + 1)
    skip = (first - len(header)) - start_frame * block
    remaining = last - first + 1
    with open_source(rec) as f:
        f.seek(start_frame)
        pos = start_frame
        while pos < stop_frame and remaining > 0:
            n = min(STREAM_BLOCK_FRAMES, stop_frame - pos)
            if plan.channels == plan.source_channels:
                data = f.read(n, dtype="int16", always_2d=True)
            else:
                mixed = f.read(n, dtype="float32", always_2d=True).mean(axis=1)
                data = np.clip(np.round(mixed * 32767.0), -32768, 32767).astype(np.int16)
            if len(data) == 0:
                break
            raw = np.ascontiguousarray(data, dtype="<i2").tobytes()
            if skip:
                raw = raw[skip:]
                skip = 0
            raw = raw[:remaining]
            remaining -= len(raw)
            pos += len(data)
            yield raw
    if remaining > 0:  # a file shorter than its header said: pad with silence
        yield bytes(remaining)
