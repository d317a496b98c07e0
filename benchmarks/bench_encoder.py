"""Audio-encoder speed (windows per second by batch size) and peak memory on a long file.

Speed: 1-s windows (44100 samples) through HTS-AT with random weights in the official
layout, on the CPU (and on a CUDA GPU when one is present), for:

* ``official``: the msclap model class (``HTSATWrapper``), when the package can be imported
  (it lives in a separate virtual environment, see tools/parity_msclap.py; run this script
  with that environment's python to include it: ``/tmp/parity-venv/bin/python
  benchmarks/bench_encoder.py``); otherwise ours alone, and the script says so;
* ``ours, 1 worker``: audiomoment's encoder with torch's threads splitting each operation;
* ``ours``: audiomoment's encoder as it runs by default (the batch split over one worker
  thread per torch thread, each running single-threaded operations);
* ``ours bf16``: the transformer in bfloat16 (``--bf16``; lossy, deviation reported).

Each measurement runs ``--seconds`` of wall time; official and ours alternate for
``--rounds`` rounds and the best round of each is kept, which damps the effect of other
processes on a shared machine (the load average is printed before and after).

Memory: ``search`` end to end (model loading, streaming, resampling, encoding, text,
localisation) on a generated recording of ``--hours`` hours (default 3; a 32 kHz mono WAV
written to a temporary folder), in a child process whose peak resident set size is read
from the OS.

    .venv/bin/python benchmarks/bench_encoder.py                   # speed + 3-hour memory
    .venv/bin/python benchmarks/bench_encoder.py --hours 0.25      # a shorter file
    .venv/bin/python benchmarks/bench_encoder.py --no-memory --batch-sizes 1,8

Measured on the project's 2-core machine (AMD EPYC, AVX-512 with bfloat16; torch 2.13.0 CPU,
2 threads; random weights; load average 0.69 at the start), same machine and run for all:

    deviation from official (6 windows, max abs): ours 1.2e-05 on 768-d features, 4.8e-07 on
    joint embeddings; ours bf16 3.5e-02 and 1.2e-03

    windows/s   batch   official    ours   ours, 1 worker   ours bf16   speed-up
                    1       8.04    9.99            10.17       15.44      1.24x
                    8       7.87   13.13            11.49       19.95      1.67x
                   32       6.69   12.98             9.41       20.71      1.94x

    float32 ceiling: 11.64 GFLOP per window at 199 GFLOP/s = 17.07 windows/s; ours reaches
    77% of it, official 47%

    single thread, windows per CPU-second (batch 8): official 4.32, ours 6.38, ours bf16 10.59

    search on a 3-hour recording (10800 windows, batch 8): 836 s end to end (12.9 windows/s,
    about 4.6 minutes per hour of audio), peak RSS 1662 MiB (1.62 GiB)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def official_encoder(state: dict) -> Callable | None:
    """The official HTS-AT (msclap) with ``state`` loaded, or None when not importable."""
    try:
        import transformers  # noqa: F401 - imported before the torchaudio stand-in
    except ImportError:
        return None
    stand_in = types.ModuleType("torchaudio")
    stand_in.transforms = types.ModuleType("torchaudio.transforms")  # type: ignore[attr-defined]
    added = "torchaudio" not in sys.modules
    sys.modules.setdefault("torchaudio", stand_in)
    sys.modules.setdefault("torchaudio.transforms", stand_in.transforms)  # type: ignore[attr-defined]
    try:
        from msclap.models.htsat import HTSATWrapper
    except ImportError:
        if added:
            sys.modules.pop("torchaudio", None)
            sys.modules.pop("torchaudio.transforms", None)
        return None
    import torch

    from audiomoment.clap.keys import BASE, PART

    model = HTSATWrapper(44100, 1024, 320, 64, 50, 8000, 527, 768).eval()
    prefix = PART["audio"] + BASE  # the official wrapper's tensors
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                           if k.startswith(prefix)}, strict=True)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x))["embedding"].numpy()

    return run


def our_encoder(
    state: dict, precision: str = "float32", workers: int | None = None, device: str = "cpu"
):
    from audiomoment.clap.model import audio_encoder_from_state

    return audio_encoder_from_state(state, "random", precision,  # type: ignore[arg-type]
                                    workers=workers, device=device)


def rate(run: Callable[[np.ndarray], np.ndarray], batch: int, seconds: float) -> float:
    """Windows per second of ``run`` on batches of ``batch`` 1-s windows (after a warm-up)."""
    rng = np.random.default_rng(batch)
    x = (0.1 * rng.standard_normal((batch, 44100))).astype(np.float32)
    run(x)
    done, start = 0, time.perf_counter()
    while True:
        run(x)
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def sample_windows(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(44100) / 44100
    tones = [0.3 * np.sin(2 * np.pi * f * t) for f in (220, 1000, 5000)]
    noise = [0.1 * rng.standard_normal(44100) for _ in range(n - len(tones))]
    return np.stack(tones + noise).astype(np.float32)


def joint(features: np.ndarray, state: dict) -> np.ndarray:
    from audiomoment.clap.checkpoint import head_from_state
    from audiomoment.clap.projection import project

    return project(features, head_from_state(state, "audio"))


def float32_ceiling(seconds: float = 3.0) -> tuple[float, float, float]:
    """(GFLOP per window, float32 matrix-product GFLOP/s here, ceiling in windows/s).

    The encoder's floating-point operations per 1-s window are counted by torch's
    FlopCounterMode (matrix products, convolutions and attention: everything else is a
    rounding error next to them); the peak is the best rate of a 2048 x 2048 float32 matrix
    product with torch's threads over a few seconds (best, like the encoder rates: other
    load only ever lowers a rate). No float32 implementation of these layers on this
    CPU can run faster than their ratio.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from audiomoment.clap.htsat import HTSAT

    model = HTSAT().prepare()  # zero weights: the count does not depend on the values
    counter = FlopCounterMode(display=False)
    with counter:  # gradients on, so every layer runs as plain torch ops the counter sees
        model(torch.zeros(1, 44100))
    gflop = counter.get_total_flops() / 1e9
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    rates = []
    with torch.inference_mode():
        a @ b
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(rates) < 5:
            start = time.perf_counter()
            a @ b
            rates.append(2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    peak = float(np.max(rates))
    return gflop, peak, peak / gflop


def speed(args: argparse.Namespace) -> None:
    import torch

    from audiomoment.clap.htsat import onednn_linear_ok
    from audiomoment.testing.random_clap import random_state_dict

    state = random_state_dict(seed=0, text=False)
    official = official_encoder(state)
    ours = our_encoder(state)
    ours_single = our_encoder(state, workers=1)
    bf16 = our_encoder(state, "bfloat16") if args.bf16 else None
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"oneDNN fused linear: {onednn_linear_ok()}")
    if official is None:
        print("official msclap: not importable here, so ours alone (run with the parity "
              "environment's python to compare; see tools/parity_msclap.py)")

    x = sample_windows()
    ref = official(x) if official is not None else ours.features(x)
    ref_name = "official" if official is not None else "ours float32"
    rows = [("ours", ours), ("ours, 1 worker", ours_single)]
    if bf16 is not None:
        rows.append(("ours bf16", bf16))
    print(f"\ndeviation from {ref_name} on {len(x)} windows (max abs):")
    for name, enc in rows:
        feats = enc.features(x)
        print(f"  {name:<16s} 768-d features {np.max(np.abs(feats - ref)):.2e}   "
              f"joint embeddings {np.max(np.abs(joint(feats, state) - joint(ref, state))):.2e}")

    print(f"\nwindows per second (1-s windows, CPU, best of {args.rounds} rounds of "
          f"{args.seconds:g} s); load average before: {os.getloadavg()[0]:.2f}")
    header = ["batch"] + (["official"] if official else []) + [n for n, _ in rows]
    if official:
        header.append("speed-up")
    print("  " + "".join(f"{h:>16s}" for h in header))
    _, peak_before, _ = float32_ceiling()
    top: dict[str, float] = {}  # best rate of each over all batch sizes
    for batch in args.batch_sizes:
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            if official is not None:
                best["official"] = max(best.get("official", 0.0),
                                       rate(official, batch, args.seconds))
            for name, enc in rows:
                best[name] = max(best.get(name, 0.0), rate(enc.features, batch, args.seconds))
        cells = [f"{batch:>16d}"] + [f"{best[h]:>16.2f}" for h in header[1:]
                                     if h != "speed-up"]
        for name, value in best.items():
            top[name] = max(top.get(name, 0.0), value)
        if official:
            cells.append(f"{best['ours'] / best['official']:>15.2f}x")
        print("  " + "".join(cells), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    gflop, peak_after, _ = float32_ceiling()
    peak = max(peak_before, peak_after)  # measured before and after the rates above
    ceiling = peak / gflop
    print(f"\nfloat32 ceiling: {gflop:.2f} GFLOP per window (counted) at this CPU's float32 "
          f"matrix-product rate of {peak:.0f} GFLOP/s (2048^3, best of before and after) = "
          f"{ceiling:.2f} "
          f"windows/s. At their best batch size ours reaches "
          f"{max(top['ours'], top['ours, 1 worker']) / ceiling:.0%} of it"
          + (f", official {top['official'] / ceiling:.0%}" if official else ""))

    # one thread, process CPU time: how much work a window takes, whatever else runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = 8
        print(f"\nsingle-thread work per window (batch {batch}, process CPU time, best of "
              f"{args.rounds}): windows per CPU-second")
        single = {"ours": our_encoder(state, workers=1).features}
        if bf16 is not None:
            single["ours bf16"] = our_encoder(state, "bfloat16", workers=1).features
        if official is not None:
            single = {"official": official, **single}
        xs = (0.1 * np.random.default_rng(0).standard_normal((batch, 44100))).astype(np.float32)
        found: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, run in single.items():
                run(xs)
                start = time.process_time()
                run(xs)
                found[name] = max(found.get(name, 0.0), batch / (time.process_time() - start))
        print("  " + "   ".join(f"{name} {value:.2f}" for name, value in found.items()))
    finally:
        torch.set_num_threads(threads)

    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name(0)} (windows per second, host copies "
              "included)")
        gpu = our_encoder(state, device="cuda")
        gpu_bf16 = our_encoder(state, "bfloat16", device="cuda")
        feats = gpu.features(x)
        print(f"  float32 deviation from {ref_name}: {np.max(np.abs(feats - ref)):.2e}")
        for batch in [*args.batch_sizes, 128]:
            print(f"  batch {batch:>4d}: float32 {rate(gpu.features, batch, args.seconds):9.1f}"
                  f"   bf16 {rate(gpu_bf16.features, batch, args.seconds):9.1f}", flush=True)


CHILD = r"""
import resource, sys, time
from audiomoment.clap import load_clap
from audiomoment.pipelines.search import search_audio
t0 = time.perf_counter()
model = load_clap(sys.argv[2], sys.argv[3])
t1 = time.perf_counter()
result = search_audio(sys.argv[1], "water flowing", model=model, cache_dir=None,
                      progress=sys.stderr.isatty(), batch_size=int(sys.argv[4]))
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{result.n_windows} {t1 - t0:.1f} {t2 - t1:.1f} {peak:.0f}")
"""


def write_long_recording(path: Path, hours: float, sr: int = 32000) -> None:
    """A mono 16-bit WAV of ``hours`` hours: noise with a tone every few minutes."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    minutes = int(np.ceil(hours * 60))
    t = np.arange(60 * sr) / sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for m in range(minutes):
            block = 0.05 * rng.standard_normal(t.size)
            if m % 3 == 0:
                block += 0.2 * np.sin(2 * np.pi * (300 + 50 * (m % 7)) * t)
            seconds = min(60.0, hours * 3600 - 60 * m)
            f.write(block[: int(seconds * sr)].astype(np.float32))


def memory(args: argparse.Namespace) -> None:
    from audiomoment.testing.random_clap import write_random_checkpoint, write_tiny_tokenizer

    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        root = Path(tmp)
        audio = root / "long.wav"
        print(f"\nwriting a {args.hours:g}-hour recording (32 kHz mono WAV) and a random "
              "checkpoint ...", flush=True)
        write_long_recording(audio, args.hours)
        ckpt = write_random_checkpoint(root / "CLAP_weights_2023.pth")
        tok = write_tiny_tokenizer(root / "tokenizer")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(audio), str(ckpt), str(tok),
             str(args.memory_batch)],
            env=env, capture_output=False, stdout=subprocess.PIPE, text=True, check=True,
        )
        wall = time.perf_counter() - start
        windows, load_s, search_s, peak_mib = proc.stdout.split()
        print(f"search on {args.hours:g} h ({audio.stat().st_size / 2**20:.0f} MiB WAV, "
              f"{windows} windows, batch {args.memory_batch}): model load {load_s} s, "
              f"search {search_s} s ({int(windows) / float(search_s):.2f} windows/s), "
              f"peak RSS {float(peak_mib):.0f} MiB ({float(peak_mib) / 1024:.2f} GiB); "
              f"child wall {wall:.0f} s")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(this benchmark process itself peaked at {own:.0f} MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,8,32",
                        type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--hours", type=float, default=3.0, help="length of the long file")
    parser.add_argument("--memory-batch", type=int, default=8)
    parser.add_argument("--no-speed", dest="speed", action="store_false")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    args = parser.parse_args(argv)
    if args.speed:
        speed(args)
    if args.memory:
        memory(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
