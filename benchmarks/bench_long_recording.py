"""A 10-hour recording through the audio encoder: `index`, then `search --db`, then checks.

1. Writes a mono 16-bit WAV of ``--hours`` hours at 44.1 kHz (the encoder's rate, so window
   t is exactly samples [44100 t, 44100 (t + 1)) of the file), SIMULATED: noise, with a
   tone in the first 30 s of every fifth minute, and a random MS-CLAP 2023 checkpoint in the
   official layout (the real weights cannot be downloaded here).
2. ``audiomoment index FOLDER --db DB --json`` as a child process: wall time, windows per
   second, peak RSS (the kernel's, from ``wait4``).
3. ``audiomoment search --db DB "a tone rings" --json`` (System 1 and 2): wall time, peak
   RSS, every moment inside [0, duration] with start < end and scores sorted.
4. Checks the index against the file, independently of the streaming reader: the index
   holds floor(duration) windows, and the stored embeddings of windows 0, 1, 2^k near the
   middle, and the last two equal (float16 rounding aside) the encoder run on that second
   alone, read from the file by soundfile at its sample offset.

``--encoder stub`` replaces HTS-AT's forward pass (11.6 GFLOP per window, several minutes
per hour of audio on two CPU cores) by a cheap fixed function of each window (log energies
of 768 equal slices), in every process of the run: everything else is the real path
(checkpoint loading, decoding, windowing, batching, the projection head, the index's
commit, the search, the text encoder), and the checks of step 4 compare with the same
function. Windows are encoded independently of their batch (tested bit for bit in the test
suite), so the two modes together cover a long recording through the real encoder.

Usage::

    .venv/bin/python benchmarks/bench_long_recording.py [--hours 10] [--workdir DIR]
        [--batch-size 8] [--encoder clap|stub] [--keep]

Measured on the project's 2-core machine while other jobs ran (load average 2 to 9), 10 h:

    clap: index 4,567 s (7.88 windows/s), peak RSS 2,436 MiB; search --db 4.6 s (System 1)
          and 4.4 s (System 2), peak RSS 1,188 MiB; windows 0, 1, 32767, 32768, 35998, 35999
          within 3.05e-05 of the encoder on that second alone
    stub: index 85 s, peak RSS 1,926 MiB; search --db 32 s / 20 s (load average 12); the
          same windows within 5.5e-05

The WAV takes 303 MiB per hour of disk (``--workdir`` keeps it for the next run; ``index``
resumes per recording if the run is stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SR = 44100
TOKENIZER = REPO.parent / "shared" / "data" / "gpt2_tokenizer"

#: Run in each child when ``--encoder stub``: HTS-AT's forward replaced, then the CLI.
STUB_CHILD = """
import sys
import numpy as np
from audiomoment.clap import model
sys.path.insert(0, sys.argv.pop(1))
from bench_long_recording import stub_features
model.AudioEncoder.features = lambda self, windows: stub_features(windows)
from audiomoment.cli import main
sys.exit(main(sys.argv[1:]))
"""


def stub_features(windows: np.ndarray) -> np.ndarray:
    """(n, samples) -> (n, 768) float32: log energy of 768 equal slices of each window."""
    x = np.asarray(windows, dtype=np.float64)
    edges = np.linspace(0, x.shape[1], 769).astype(np.int64)[:-1]
    energy = np.add.reduceat(x * x, edges, axis=1)
    return np.log(energy + 1e-8).astype(np.float32)


def write_recording(path: Path, hours: float) -> int:
    """Write the SIMULATED WAV; returns its length in samples."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = round(hours * 3600 * SR)
    t = np.arange(60 * SR) / SR
    written = 0
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="WAV",
                      subtype="PCM_16") as f:
        minute = 0
        while written < total:
            n = min(60 * SR, total - written)
            block = 0.05 * rng.standard_normal(n)
            if minute % 5 == 0:
                block[: 30 * SR] += 0.3 * np.sin(2 * np.pi * 440.0 * t[: min(n, 30 * SR)])
            f.write(np.clip(block, -1, 1).astype(np.float32))
            written += n
            minute += 1
    return written


def run_measured(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd`` (stderr appended to ``log``): wall seconds, peak RSS MiB, stdout."""
    with log.open("ab") as err, tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code}); see {log}")
    return wall, usage.ru_maxrss / 1024, text


def check_moments(rows: list[dict], duration: float) -> int:
    """Every moment of ``search --db --json``'s rows inside [0, duration] with start < end,
    scores sorted; returns the number of moments."""
    n = 0
    for row in rows:
        scores = [m["score"] for m in row["moments"]]
        assert scores == sorted(scores, reverse=True), "scores not sorted"
        for m in row["moments"]:
            assert 0 <= m["start"] < m["end"] <= duration, \
                f"moment {m['start']}-{m['end']} outside 0-{duration}"
            n += 1
    return n


def check_embeddings(db: Path, wav: Path, checkpoint: Path, n_windows: int,
                     stub: bool) -> tuple[list[int], float]:
    """Stored rows of a few windows vs the encoder on that second read alone."""
    import soundfile as sf

    from audiomoment.clap.model import load_clap
    from audiomoment.clap.projection import project
    from audiomoment.index.store import ArchiveIndex

    snap = ArchiveIndex(db).snapshot()
    (rec,) = snap.recordings
    stored = np.asarray(snap.embeddings(rec), dtype=np.float32)
    assert len(stored) == n_windows, f"{len(stored)} windows indexed, {n_windows} expected"
    mid = 1 << (n_windows.bit_length() - 1) if n_windows > 2 else 0
    picks = sorted({0, 1, mid - 1, mid, n_windows - 2, n_windows - 1} - {-1})
    model = load_clap(checkpoint, text=False)
    worst = 0.0
    for t in picks:
        x, sr = sf.read(wav, start=t * SR, frames=SR, dtype="float32", always_2d=True)
        assert sr == SR and len(x) == SR
        one = x[:, 0][None, :]
        feats = stub_features(one) if stub else model.require_audio().features(one)
        emb = np.asarray(project(feats, model.heads["audio"]), dtype=np.float32)[0]
        worst = max(worst, float(np.max(np.abs(emb - stored[t]))))
    return picks, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the WAV, checkpoint and index here (default: a temporary "
                             "folder, deleted at the end)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", choices=("clap", "stub"), default="clap",
                        help="stub: a cheap stand-in for HTS-AT's forward pass (see above)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    from audiomoment.testing.random_clap import write_random_checkpoint, write_tiny_tokenizer

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-long-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / ("index" if args.encoder == "clap" else "index-stub")
    audio_dir, log = work / "audio", work / "stderr.log"
    audio_dir.mkdir(exist_ok=True)
    wav = audio_dir / "long.wav"
    try:
        if not wav.exists():
            print(f"writing {args.hours:g} h of SIMULATED audio (44.1 kHz mono WAV) ...",
                  flush=True)
            t0 = time.perf_counter()
            part = work / "long.wav.part"  # outside the indexed folder until whole
            write_recording(part, args.hours)
            part.rename(wav)
            print(f"  {wav.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        import soundfile as sf

        n_samples = sf.info(wav).frames
        n_windows = n_samples // SR
        checkpoint = work / "CLAP_weights_2023.pth"
        if not checkpoint.exists():
            write_random_checkpoint(checkpoint)
        tokenizer = TOKENIZER if (TOKENIZER / "vocab.json").exists() else \
            write_tiny_tokenizer(work / "tokenizer")
        am = [sys.executable, "-m", "audiomoment"] if args.encoder == "clap" else \
            [sys.executable, "-c", STUB_CHILD, str(Path(__file__).parent)]
        common = ["--checkpoint", str(checkpoint), "--tokenizer", str(tokenizer)]

        print(f"index ({args.encoder} encoder): {n_windows:,} windows, batch {args.batch_size} "
              f"(load average {os.getloadavg()[0]:.1f}) ...", flush=True)
        wall, rss, out = run_measured(
            [*am, "index", str(audio_dir), "--db", str(db), *common, "--no-cache",
             "--batch-size", str(args.batch_size), "--json"], log)
        summary = json.loads(out)
        print(f"  index: {wall:,.0f} s ({n_windows / wall:.2f} windows/s, "
              f"{wall / 60 / (n_samples / SR / 3600):.1f} min per hour of audio), "
              f"peak RSS {rss:,.0f} MiB; load average now {os.getloadavg()[0]:.1f}", flush=True)
        print(f"  summary: {json.dumps(summary)[:300]}", flush=True)

        duration = n_samples / SR
        for system in ("1", "2"):
            wall, rss, out = run_measured(
                [*am, "search", "--db", str(db), "a tone rings", "--system", system,
                 *common, "--no-cache", "--json", "--top", "10"], log)
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            n = check_moments(rows, duration)
            print(f"  search --db, System {system}: {wall:.1f} s, peak RSS {rss:,.0f} MiB, "
                  f"{n} moments inside [0, {duration:,.0f}] s, sorted", flush=True)

        picks, worst = check_embeddings(db, wav, checkpoint, n_windows,
                                        args.encoder == "stub")
        print(f"  windows {picks}: stored rows vs the encoder on that second alone, max abs "
              f"difference {worst:.2e} (float16 storage)", flush=True)
        assert worst < 2e-3, "stored embeddings differ from the encoder's"
        print("all checks passed")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
