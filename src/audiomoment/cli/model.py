"""Command-line subcommands that run MS-CLAP 2023 on audio: ``search`` and
``extract-features``.

``add_model_commands(subparsers)`` registers both on the ``audiomoment`` parser. Handlers
return an exit status and raise :class:`InputError` for user mistakes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError

SEARCH_EXAMPLES = """examples:
  audiomoment search recording.wav "water flowing"
  audiomoment search recording.flac "a dog barks" "rain" --system 2 --top 5 --json
  audiomoment search "a dog barks" --db archive.idx --top 20
  audiomoment search --db archive.idx --like clip.wav --start 2 --end 5
  audiomoment search --db archive.idx --like-recording field/2024-05-01.flac --start 60 --end 64
"""


def _add_model_options(p: argparse.ArgumentParser, text: bool = True) -> None:
    p.add_argument("--checkpoint", help="CLAP_weights_2023.pth (default: the Hugging Face "
                   "cache, else download from microsoft/msclap)")
    if text:
        p.add_argument("--tokenizer", help="folder with GPT-2's vocab.json and merges.txt "
                       "(default: the Hugging Face cache, else download from gpt2)")
    p.add_argument("--batch-size", type=int, default=8, help="audio windows per forward pass")
    p.add_argument("--bf16", action="store_true",
                   help="run the audio transformer in bfloat16 (faster on CPUs with bfloat16 "
                        "support; lossy: embeddings deviate slightly from float32)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--device", default="cpu",
                   help="where the audio encoder runs: cpu (default), cuda, cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_batch(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _cmd_search(args: argparse.Namespace) -> int:
    _check_batch(args)
    if args.db:  # before any model import: a search by embedding needs no torch
        from audiomoment.cli.index import archive_search

        return archive_search(args)
    from audiomoment.clap.model import load_clap
    from audiomoment.io.cache import default_cache_dir, usable_cache_dir
    from audiomoment.pipelines.search import format_result, search_audio

    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    if not args.audio or not args.query:
        raise InputError("give an audio file and at least one query "
                         "(or --db INDEX to search an archive index)")
    if not any(q.strip() for q in args.query):
        raise InputError("the query is empty")
    from audiomoment.io.audio import audio_info

    audio_info(args.audio)  # a bad file fails before the model loads
    model = load_clap(args.checkpoint, args.tokenizer,
                      precision="bfloat16" if args.bf16 else "float32", threads=args.threads,
                      device=args.device)
    cache = usable_cache_dir(None if args.no_cache else (args.cache_dir or default_cache_dir()),
                             _note)
    try:
        config = LocalizeConfig(max_windows=args.top, engine=args.engine)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    results = search_audio(
        args.audio, list(args.query), system=args.system, top=args.top, config=config,
        batch_size=args.batch_size, cache_dir=cache, progress=_progress(args), model=model,
    )
    assert isinstance(results, list)
    for i, result in enumerate(results):
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            if i:
                print()
            print(format_result(result))
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from audiomoment.clap.model import load_clap
    from audiomoment.io.cache import default_cache_dir, usable_cache_dir
    from audiomoment.io.features import AUDIO_DIR, TEXT_DIR
    from audiomoment.pipelines.extract import (
        NEUTRAL_FILE,
        extract_audio_features,
        extract_text_features,
        video_ids,
    )

    _check_batch(args)
    if not args.audio and not args.annotations:
        raise InputError("nothing to extract: give audio files and/or --annotations FILE")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if args.audio:
        from audiomoment.io.audio import audio_info

        video_ids(args.audio)
        for path in args.audio:
            audio_info(path)
    if args.annotations:
        from audiomoment.io.annotations import read_annotations

        read_annotations(args.annotations)
    model = load_clap(
        args.checkpoint, args.tokenizer, audio=bool(args.audio), text=bool(args.annotations),
        precision="bfloat16" if args.bf16 else "float32", threads=args.threads,
        device=args.device,
    )
    progress = _progress(args)
    if args.audio:
        written = extract_audio_features(args.audio, out, model=model,
                                         batch_size=args.batch_size, progress=progress)
        print(f"wrote {len(written)} audio feature file(s) to {out / AUDIO_DIR}")
    if args.annotations:
        cache = usable_cache_dir(
            None if args.no_cache else (args.cache_dir or default_cache_dir()), _note)
        written = extract_text_features(args.annotations, out, model=model,
                                        progress=progress, cache_dir=cache)
        print(f"wrote {len(written) - 1} text feature file(s) to {out / TEXT_DIR} "
              f"and {out / NEUTRAL_FILE}")
        print(f"next: audiomoment predict --annotations {args.annotations} --features {out} "
              f"--checkpoint {model.checkpoint} --neutral-embedding {out / NEUTRAL_FILE} "
              "--out predictions.jsonl", file=sys.stderr)
    return 0


def add_model_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``search`` and ``extract-features`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "search", help="find the moments of an audio file, or of an archive index, that "
                       "match a query",
        description="Embed an audio file with MS-CLAP 2023 (1-s windows) and print the "
                    "ranked moments matching each query; with --db, search every recording "
                    "of an archive index (audiomoment index) and rank moments across them.",
        epilog=SEARCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("audio", nargs="?", help="audio file (WAV, FLAC, OGG, MP3, ...); with --db "
                   "the first query")
    p.add_argument("query", nargs="*", help="text query (several: one search each)")
    p.add_argument("--system", type=int, choices=[1, 2], default=1,
                   help="1: GMM + background contrast; 2: GMM on the similarity trace")
    p.add_argument("--top", type=int, default=10, help="ranked moments to print per query")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per query: windows [start, end, score]")
    p.add_argument("--engine", choices=["reference", "fast"], default=LocalizeConfig().engine,
                   help="EM engine: scikit-learn per query, or batched NumPy "
                   "(default: %(default)s)")
    p.add_argument("--cache-dir", help="feature and neutral-embedding cache "
                   "(default ~/.cache/audiomoment)")
    p.add_argument("--no-cache", action="store_true", help="do not cache features")
    _add_model_options(p)
    from audiomoment.cli.index import add_archive_search_options

    add_archive_search_options(p)
    p.set_defaults(handler=_cmd_search)

    p = subparsers.add_parser(
        "extract-features", help="write MS-CLAP 2023 features in the lighthouse layout",
        description="Write OUT/clap/<vid>.npz (features, (T, 768), one row per 1-s window) "
                    "for each audio file and, with --annotations, OUT/clap_text/<qid>.npz "
                    "(last_hidden_state, (L, 768), last row = query vector) and "
                    "OUT/neutral_embedding.npy, as `audiomoment predict` reads them.",
        epilog="example:\n  audiomoment extract-features a.wav b.flac --annotations "
               "queries.jsonl --out FEATURES",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("audio", nargs="*", help="audio files (vid = file name without extension)")
    p.add_argument("--out", required=True, help="features folder to write")
    p.add_argument("--annotations", help="annotation JSON Lines: write text features too")
    p.add_argument("--cache-dir", help="neutral-embedding cache (default ~/.cache/audiomoment)")
    p.add_argument("--no-cache", action="store_true", help="do not cache")
    _add_model_options(p)
    p.set_defaults(handler=_cmd_extract)
