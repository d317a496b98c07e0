"""Command line of the archive index: ``index`` and ``search ... --db INDEX``.

``audiomoment index PATH... --db INDEX`` embeds every audio file under the paths once;
``audiomoment index --features DIR --checkpoint CKPT --db INDEX`` ingests a lighthouse-layout
feature folder. ``audiomoment search "a dog barks" --db INDEX`` searches all of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audiomoment.errors import InputError

#: How to install the optional Ray extra (kept here: the parser must not import Ray).
RAY_INSTALL = "pip install 'audiomoment[ray]'"

INDEX_EXAMPLES = """examples:
  audiomoment index recordings/ more/field.flac --db archive.idx
  audiomoment index --features FEATURES --checkpoint CLAP_weights_2023.pth \\
      --annotations castella_test_release.jsonl --db castella.idx
  audiomoment index --db archive.idx --failures      # files that could not be read
  audiomoment index recordings/ --db archive.idx --ray head-node:6379   # on a Ray cluster
"""


def _cache(args: argparse.Namespace) -> Path | None:
    from audiomoment.io.cache import default_cache_dir, usable_cache_dir

    return usable_cache_dir(
        None if getattr(args, "no_cache", False) else (args.cache_dir or default_cache_dir()),
        lambda message: print(f"note: {message}", file=sys.stderr))


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _checkpoint_digest(path: Path, cache: Path | None) -> str:
    from audiomoment.io.cache import cached_file_digest

    return cached_file_digest(path, cache)


def _cmd_index(args: argparse.Namespace) -> int:
    from audiomoment.index.store import ArchiveIndex, is_index

    db = Path(args.db)
    if db.exists() and not db.is_dir():
        raise InputError(f"{db}: exists and is not an index folder")
    if db.is_dir() and any(db.iterdir()) and not is_index(db):
        raise InputError(f"{db}: a folder that is not an audiomoment index; give a new path")
    if args.failures:
        if not is_index(db):
            raise InputError(f"{db}: not an audiomoment index")
        failures = ArchiveIndex(db).failures()
        for source, reason in failures:
            print(json.dumps({"source": source, "reason": reason}) if args.json
                  else f"{source}\t{reason}")
        return 0
    if args.features:
        if args.paths:
            raise InputError("give audio PATHs or --features DIR, not both")
        report = _index_features(args, db)
    else:
        if not args.paths:
            raise InputError("nothing to index: give audio files or folders, or --features DIR")
        report = _index_audio(args, db)
    snapshot = ArchiveIndex(db).snapshot()
    if args.json:
        print(json.dumps({
            "added": len(report.added), "updated": len(report.replaced),
            "unchanged": report.unchanged, "removed": len(report.removed),
            "failed": [{"source": s, "reason": r} for s, r in report.failed],
            "recordings": len(snapshot), "hours": round(snapshot.hours, 4),
            "windows": snapshot.n_windows,
            **({"workers": report.workers, "pieces": report.pieces,
                "windows_per_s": round(report.windows_per_s, 2),
                "nodes": dict(report.nodes), "retried": report.retried}
               if hasattr(report, "windows_per_s") else {}),
        }))
    else:
        print(f"{db}: {report.summary()}")
        print(f"index holds {len(snapshot)} recordings, {snapshot.hours:.2f} h, "
              f"{snapshot.n_windows} windows")
        for _source, reason in report.failed:
            print(f"skipped: {reason}", file=sys.stderr)
    return 0


def _index_audio(args: argparse.Namespace, db: Path) -> Any:
    from audiomoment.clap.model import load_clap
    from audiomoment.index.embedders import ClapAudioEmbedder
    from audiomoment.index.ingest import index_audio
    from audiomoment.pipelines.neutral import neutral_from_model

    for p in args.paths:
        if not Path(p).exists():
            raise InputError(f"{p}: no such file or folder")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.ray is not None:
        return _index_audio_ray(args, db)
    cache = _cache(args)
    model = load_clap(args.checkpoint, args.tokenizer, audio=True, text=True,
                      precision="bfloat16" if args.bf16 else "float32", threads=args.threads,
                      device=args.device)
    embedder = ClapAudioEmbedder(model, _checkpoint_digest(model.checkpoint, cache),
                                 batch_size=args.batch_size)
    neutral = neutral_from_model(model, cache)
    return index_audio(args.paths, db, embedder, progress=_progress(args), neutral=neutral)


def _index_audio_ray(args: argparse.Namespace, db: Path) -> Any:
    from audiomoment.index.distributed import ClapFactory, import_ray, index_audio_ray

    import_ray()
    if args.device != "cpu":
        raise InputError("with --ray, workers get GPUs by --ray-gpus-per-worker, not --device")
    if not args.ray_piece_s > 0:
        raise InputError(f"--ray-piece-s must be > 0, got {args.ray_piece_s:g}")
    from audiomoment.clap.model import load_clap
    from audiomoment.io.audio import DEFAULT_WINDOWS
    from audiomoment.pipelines.neutral import neutral_from_model

    cache = _cache(args)
    model = load_clap(args.checkpoint, args.tokenizer, audio=False, text=True,
                      threads=args.threads)
    factory = ClapFactory(str(model.checkpoint), _checkpoint_digest(model.checkpoint, cache),
                          precision="bfloat16" if args.bf16 else "float32",
                          threads=args.threads or max(1, round(args.ray_cpus_per_worker)),
                          batch_size=args.batch_size)
    return index_audio_ray(
        args.paths, db, factory, args.ray or None, workers=args.ray_workers,
        gpus_per_worker=args.ray_gpus_per_worker, cpus_per_worker=args.ray_cpus_per_worker,
        piece_windows=max(1, round(args.ray_piece_s / DEFAULT_WINDOWS.hop_s)),
        progress=_progress(args), neutral=neutral_from_model(model, cache),
    )


def _index_features(args: argparse.Namespace, db: Path) -> Any:
    from audiomoment.clap.checkpoint import load_projection_heads
    from audiomoment.clap.projection import project
    from audiomoment.index.ingest import index_features
    from audiomoment.index.store import ModelSpec
    from audiomoment.io.features import ENCODER_DIM
    from audiomoment.method.traces import l2_normalize
    from audiomoment.pipelines.neutral import neutral_for_run

    features = Path(args.features)
    if not features.is_dir():
        raise InputError(f"{features}: features folder not found")
    if args.ray is not None:
        raise InputError("--ray embeds audio files; --features needs no encoding")
    cache = _cache(args)
    heads = load_projection_heads(args.checkpoint) if args.checkpoint else None
    digest = _checkpoint_digest(Path(args.checkpoint), cache) if args.checkpoint else None
    neutral = None
    if args.neutral_embedding or args.checkpoint:
        neutral, _ = neutral_for_run(1, neutral_file=args.neutral_embedding,
                                     checkpoint=args.checkpoint, tokenizer=args.tokenizer,
                                     cache_dir=cache)
    durations = None
    if args.annotations:
        from audiomoment.io.annotations import read_annotations

        durations = {r["vid"]: float(r["duration"]) for r in read_annotations(args.annotations)}

    def to_joint(x: Any) -> Any:
        if x.shape[1] == ENCODER_DIM:
            if heads is None:
                raise InputError(f"{features}: 768-d encoder features need the checkpoint's "
                                 "projection heads (--checkpoint)")
            return project(x, heads["audio"])
        return l2_normalize(x).astype("float32")

    spec = ModelSpec(checkpoint_sha256=digest)
    return index_features(features, db, to_joint, spec, durations_s=durations,
                          neutral=neutral, progress=_progress(args))


def add_index_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``index`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "index", help="embed a collection of recordings once into an archive index",
        description="Embed every audio file under the given files or folders (1-s windows, "
                    "MS-CLAP 2023 joint space, float16) into an index folder. Re-running "
                    "skips unchanged files, adds new ones and drops deleted ones; a killed "
                    "run resumes where it stopped.",
        epilog=INDEX_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="audio files or folders (walked recursively)")
    p.add_argument("--db", required=True, help="index folder (created when missing)")
    p.add_argument("--features", help="index a lighthouse-layout feature folder instead "
                   "(FEATURES/clap/<vid>.npz; recording ids = vids)")
    p.add_argument("--annotations", help="with --features: annotation file giving the "
                   "recordings' durations (default: windows x hop)")
    p.add_argument("--neutral-embedding", help="with --features: System 1's 1024-d neutral "
                   "embedding (.npy); default: computed with the checkpoint's text encoder")
    p.add_argument("--checkpoint", help="CLAP_weights_2023.pth (default: the Hugging Face "
                   "cache, else download)")
    p.add_argument("--tokenizer", help="folder with GPT-2's vocab.json and merges.txt")
    p.add_argument("--batch-size", type=int, default=8, help="audio windows per forward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 audio transformer (lossy)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--cache-dir", help="cache folder (default ~/.cache/audiomoment)")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--failures", action="store_true",
                   help="list the files that could not be indexed, and stop")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group(f"on a Ray cluster (needs {RAY_INSTALL})")
    g.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="embed on the workers of a Ray cluster: ADDRESS of its head "
                        "(host:6379, auto, ray://host:10001); without one: $RAY_ADDRESS, "
                        "else a local cluster of this machine's cores")
    g.add_argument("--ray-workers", type=int, help="workers, each with its own model "
                   "(default: as many as the cluster's CPUs, or GPUs, allow)")
    g.add_argument("--ray-gpus-per-worker", type=float, metavar="N",
                   help="GPUs per worker, whole or fractional (default: 1 when the cluster "
                        "has GPUs, else 0)")
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="N",
                   help="CPUs per worker (default 1; its torch threads)")
    g.add_argument("--ray-piece-s", type=float, default=600.0, metavar="SECONDS",
                   help="long recordings are embedded in pieces this long, in parallel "
                        "(default 600)")
    p.set_defaults(handler=_cmd_index)


def add_archive_search_options(p: argparse.ArgumentParser) -> None:
    """The options of ``search`` that search an index instead of one file."""
    g = p.add_argument_group("searching an index (--db)")
    g.add_argument("--db", help="search this archive index: every positional is a query")
    g.add_argument("--like", metavar="CLIP", help="query by example: an audio clip "
                   "(with --start/--end: a part of it)")
    g.add_argument("--like-recording", metavar="ID", help="query by example: a recording "
                   "of the index (id or name), with --start/--end")
    g.add_argument("--start", type=float, help="start of the example, seconds")
    g.add_argument("--end", type=float, help="end of the example, seconds")
    g.add_argument("--query-embedding", metavar="FILE.npy",
                   help="query by a stored joint-space embedding")
    g.add_argument("--ranking", choices=["calibrated", "report"], default="calibrated",
                   help="order across recordings: calibrated (default) or the report's "
                        "per-recording score")


def archive_queries(args: argparse.Namespace, snapshot: Any) -> list[tuple[str, Any]]:
    """(label, query vector) pairs from the command line."""
    from audiomoment.index import queries

    texts = [t for t in ([args.audio] if args.audio else []) + list(args.query)]
    examples = sum(x is not None for x in (args.like, args.like_recording,
                                           args.query_embedding))
    if examples > 1:
        raise InputError("give one of --like, --like-recording, --query-embedding")
    if examples and texts:
        raise InputError("give text queries or an example (--like...), not both")
    if not examples and not texts:
        raise InputError("nothing to search for: give a text query or an example")
    if (args.start is not None or args.end is not None) and not (args.like or
                                                                 args.like_recording):
        raise InputError("--start/--end go with --like or --like-recording")
    if args.query_embedding:
        return [(Path(args.query_embedding).name,
                 queries.embedding_query(args.query_embedding, snapshot.spec.dim))]
    if args.like_recording:
        key: int | str = (int(args.like_recording) if args.like_recording.isdigit()
                          and _has_id(snapshot, int(args.like_recording))
                          else args.like_recording)
        return [(f"like {args.like_recording}",
                 queries.moment_query(snapshot, key, args.start, args.end))]
    model = _model_for(args, snapshot, audio=bool(args.like), text=not args.like)
    if args.like:
        from audiomoment.io.audio import audio_info

        audio_info(args.like)
        return [(f"like {Path(args.like).name}",
                 queries.clip_query(model, args.like, args.start, args.end, args.batch_size))]
    vectors = queries.text_queries(model, texts)
    return list(zip(texts, vectors, strict=True))


def _has_id(snapshot: Any, rec_id: int) -> bool:
    try:
        snapshot.recording(rec_id)
    except KeyError:
        return False
    return True


def _model_for(args: argparse.Namespace, snapshot: Any, audio: bool, text: bool) -> Any:
    from audiomoment.clap.model import load_clap

    model = load_clap(args.checkpoint, args.tokenizer, audio=audio, text=text,
                      threads=args.threads, device=args.device)
    want = snapshot.spec.checkpoint_sha256
    if want is not None:
        got = _checkpoint_digest(model.checkpoint, _cache(args))
        if got != want:
            raise InputError(
                f"{model.checkpoint}: not the checkpoint this index was built with "
                f"(sha256 {got[:12]}... vs {want[:12]}...)"
            )
    return model


def archive_search(args: argparse.Namespace) -> int:
    """``search ... --db INDEX``: every query against the whole index."""
    from audiomoment.config import LocalizeConfig
    from audiomoment.index.search import archive_record, search_archive
    from audiomoment.index.store import ArchiveIndex
    from audiomoment.method.frames import seconds_to_clock as clock

    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    snapshot = ArchiveIndex(args.db).snapshot()
    if len(snapshot) == 0:
        raise InputError(f"{args.db}: the index is empty; add recordings with "
                         "`audiomoment index PATH... --db INDEX`")
    try:
        config = LocalizeConfig(engine=args.engine)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for i, (label, vector) in enumerate(archive_queries(args, snapshot)):
        found = search_archive(snapshot, vector, system=args.system, top=args.top,
                               config=config, ranking=args.ranking)
        if args.json:
            print(json.dumps(archive_record(label, found)))
            continue
        if i:
            print()
        print(f"{label!r} (System {found.system}; {len(snapshot)} recordings, "
              f"{snapshot.hours:.2f} h)")
        hours = snapshot.hours >= 1 or any(m.end_s >= 3600 for m in found.moments)
        for rank, m in enumerate(found.moments, 1):
            print(f"{rank:3d}. {m.recording}  {clock(m.start_s, hours)}-{clock(m.end_s, hours)}  "
                  f"({m.start_s:g}-{m.end_s:g} s)  score {m.score:.3f}")
    return 0
