"""Command line of the search page: ``audiomoment serve --db INDEX``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiomoment.errors import InputError
from audiomoment.server.config import is_loopback

SERVE_EXAMPLES = """examples:
  audiomoment serve --db archive.idx                      # http://127.0.0.1:8765/
  audiomoment serve --db archive.idx --port 9000 --checkpoint CLAP_weights_2023.pth
"""


def wide_bind_warning(host: str) -> str | None:
    """The warning printed when the server listens beyond this machine (None: loopback)."""
    if is_loopback(host):
        return None
    return (f"warning: listening on {host}: anyone who can reach this address can search the "
            "index and play its recordings; there is no authentication. Bind to 127.0.0.1 "
            "(the default) unless that is intended.")


def _cmd_serve(args: argparse.Namespace) -> int:
    from audiomoment.index.store import is_index
    from audiomoment.io.cache import default_cache_dir
    from audiomoment.server.config import ServerConfig

    db = Path(args.db)
    if not is_index(db):
        raise InputError(f"{db}: not an audiomoment index (build one with `audiomoment index "
                         "PATH... --db INDEX`)")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must lie in 0..65535, got {args.port}")
    if not 0 <= args.context <= 10:
        raise InputError(f"--context must lie in [0, 10] seconds, got {args.context}")
    for name in ("checkpoint", "tokenizer"):
        value = getattr(args, name)
        if value is not None and not Path(value).exists():
            raise InputError(f"--{name} {value}: no such file or folder")
    host = args.host.strip()
    config = ServerConfig.make(
        db, checkpoint=args.checkpoint, tokenizer=args.tokenizer,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        device=args.device, threads=args.threads, context_s=float(args.context), host=host,
    )
    warning = wide_bind_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    import uvicorn

    from audiomoment.server.app import create_app
    from audiomoment.server.http import uvicorn_options

    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    print(f"audiomoment: serving {db} at http://{shown}:{args.port}/ (Ctrl-C to stop)",
          file=sys.stderr)
    uvicorn.run(app, port=args.port, log_level=args.log_level, **uvicorn_options(config))
    return 0


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve", help="a local search page over an archive index (with a JSON API)",
        description="Serve a search page over an archive index: text queries, search by an "
                    "example clip, more like any moment; each moment plays with context, with "
                    "its recording's trace drawn. The JSON API's schema is at /openapi.json. "
                    "The index is read-only to the server; updates by `audiomoment index` "
                    "are picked up while it runs.",
        epilog=SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", required=True, help="the index folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--checkpoint", help="CLAP_weights_2023.pth for text and example queries "
                   "(default: the Hugging Face cache, else download on first query)")
    p.add_argument("--tokenizer", help="folder with GPT-2's vocab.json and merges.txt")
    p.add_argument("--context", type=float, default=1.5,
                   help="seconds played and cut around a moment by default (default 1.5)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--device", default="cpu", help="where the encoders run: cpu, cuda, cuda:N")
    p.add_argument("--cache-dir", help="cache folder (default ~/.cache/audiomoment)")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default warning)")
    p.set_defaults(handler=_cmd_serve)
