"""A single self-contained HTML report: tables, figures and audio players, no external URL.

Figures are embedded as ``data:image/png;base64`` images and audio as ``data:audio/flac``
(mono, resampled to at most 16 kHz, 16-bit FLAC), so the file can be mailed or archived on its
own. Each retrieved moment gets a play button: pressing it seeks its recording's player to the
moment's start, plays, and pauses at the moment's end. The page's script is inline and needs
nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audiomoment.errors import InputError
from audiomoment.io.atomic import write_text

#: Highest sample rate of embedded audio (Hz); higher rates are resampled down.
EMBED_MAX_RATE = 16000


@dataclass(frozen=True)
class Table:
    """A table: caption, header cells and body rows (strings, shown as text)."""

    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    """A PNG figure with its caption and alternative text."""

    caption: str
    png: bytes
    alt: str = ""


@dataclass(frozen=True)
class Paragraph:
    """Plain text (escaped); ``css_class`` "note" or "simulated" styles it."""

    text: str
    css_class: str = ""


@dataclass(frozen=True)
class AudioMoments:
    """One recording's player and, per query, its ranked moments.

    name : shown above the player (the file name); audio_uri : a ``data:`` URI;
    duration_s : the recording's length; queries : (query text, (K, 3) windows
    [start_s, end_s, score], best first) pairs.
    """

    name: str
    audio_uri: str
    duration_s: float
    queries: Sequence[tuple[str, NDArray[np.float64]]]


Block = Table | Image | Paragraph | AudioMoments


@dataclass(frozen=True)
class Section:
    """A titled part of the page holding blocks in order; ``anchor`` is its id."""

    anchor: str
    title: str
    blocks: Sequence[Block] = field(default_factory=tuple)


# --------------------------------------------------------------------------- embedding


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_audio(samples: ArrayLike, sample_rate: int, max_rate: int = EMBED_MAX_RATE) -> bytes:
    """Mono 16-bit FLAC bytes of ``samples`` (N,) or (N, C), resampled to <= ``max_rate``."""
    import soundfile as sf

    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or len(x) == 0:
        raise InputError(f"audio must be a non-empty (N,) or (N, C) array, got {x.shape}")
    rate = int(sample_rate)
    if rate > max_rate:
        import soxr

        x = soxr.resample(x, rate, max_rate).astype(np.float32)
        rate = max_rate
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(x, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def audio_data_uri(
    path: str | os.PathLike[str], max_rate: int = EMBED_MAX_RATE
) -> tuple[str, float]:
    """(``data:audio/flac;base64,...`` URI, duration in seconds) of an audio file."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: audio file not found")
    try:
        samples, rate = sf.read(p, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"{p}: cannot read audio ({exc})") from None
    flac = encode_audio(samples, rate, max_rate)
    uri = "data:audio/flac;base64," + base64.b64encode(flac).decode("ascii")
    return uri, len(samples) / rate


# --------------------------------------------------------------------------- rendering

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.92em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.4em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.simulated { background: #fff3cd; border: 1px solid #e0b400; padding: 0.5em 0.8em;
             font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
.recording { border: 1px solid #ddd; padding: 0.6em 1em; margin: 1em 0; }
.recording audio { width: 100%; }
button.moment { margin: 0.15em 0.3em 0.15em 0; cursor: pointer; font-variant-numeric:
                tabular-nums; }
button.moment.active { background: #ffe0b3; }
"""

SCRIPT = """
(function () {
  "use strict";
  function markActive(button) {
    document.querySelectorAll("button.moment.active").forEach(function (b) {
      b.classList.remove("active");
    });
    button.classList.add("active");
  }
  document.querySelectorAll("button.moment").forEach(function (button) {
    button.addEventListener("click", function () {
      var audio = document.getElementById(button.dataset.audio);
      audio.dataset.stopAt = button.dataset.end;
      audio.currentTime = Number(button.dataset.start);
      markActive(button);
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () {}); }
    });
  });
  document.querySelectorAll("audio.moments").forEach(function (audio) {
    audio.addEventListener("timeupdate", function () {
      var stop = audio.dataset.stopAt;
      if (stop !== undefined && audio.currentTime >= Number(stop)) {
        audio.pause();
        delete audio.dataset.stopAt;
      }
    });
  });
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
    except ValueError:
        return text in ("–", "-")
    return True


def render_table(table: Table) -> str:
    """A ``<table>``; cells that read as numbers are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if _is_number(str(c)) else f"<td>{_e(c)}</td>"
            for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    return (f"<table><caption>{_e(table.caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def render_image(image: Image) -> str:
    """A ``<figure>`` with the PNG inline."""
    alt = image.alt or image.caption
    return (f'<figure><img src="{png_data_uri(image.png)}" alt="{_e(alt)}">'
            f"<figcaption>{_e(image.caption)}</figcaption></figure>")


def render_moments(block: AudioMoments, audio_id: str) -> str:
    """One recording's player and a play button per moment (data-start / data-end seconds)."""
    parts = [
        '<div class="recording">',
        f"<h3>{_e(block.name)} <span class=\"note\">({block.duration_s:.1f} s)</span></h3>",
        f'<audio id="{audio_id}" class="moments" controls preload="auto" '
        f'src="{block.audio_uri}"></audio>',
    ]
    for q, (query, windows) in enumerate(block.queries):
        rows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
        buttons = []
        for k, (start, end, score) in enumerate(rows):
            buttons.append(
                f'<button type="button" class="moment" id="{audio_id}-q{q}-m{k}" '
                f'data-audio="{audio_id}" data-start="{start:.3f}" data-end="{end:.3f}" '
                f'title="play {start:.1f}-{end:.1f} s">&#9654; #{k + 1} '
                f"{start:.1f}&ndash;{end:.1f} s (score {score:.3f})</button>"
            )
        parts.append(f"<p><strong>{_e(query)}</strong><br>{''.join(buttons) or 'no moment'}</p>")
    parts.append("</div>")
    return "\n".join(parts)


def render_html(title: str, sections: Sequence[Section], *, banner: str | None = None) -> str:
    """The whole page as one string.

    ``banner``: a highlighted line under the title (the SIMULATED notice, say).
    """
    nav = " ".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in sections)
    body = [f"<h1>{_e(title)}</h1>"]
    if banner:
        body.append(f'<p class="simulated">{_e(banner)}</p>')
    body.append(f"<nav>{nav}</nav>")
    n_audio = 0
    for section in sections:
        body.append(f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Table):
                body.append(render_table(block))
            elif isinstance(block, Image):
                body.append(render_image(block))
            elif isinstance(block, Paragraph):
                css = f' class="{_e(block.css_class)}"' if block.css_class else ""
                body.append(f"<p{css}>{_e(block.text)}</p>")
            else:
                body.append(render_moments(block, f"audio-{n_audio}"))
                n_audio += 1
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])


def write_html(path: str | os.PathLike[str], page: str) -> Path:
    """Write the page atomically; returns its path."""
    write_text(path, page)
    return Path(path)
