"""Settings of the search server and the bounds every request is held to."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

#: Host header names of this machine.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Limits:
    """Bounds on requests; larger ones are refused with a 4xx JSON error.

    query_chars : longest text query (characters). upload_bytes : largest uploaded example
    clip (bytes); ``request_bytes`` bounds any request body. example_s : longest example
    clip (seconds of audio). top : most moments per search. clip_s : longest moment a clip
    request may cover (seconds, context excluded). context_s : most context on each side of
    a clip (seconds). page : most recordings per page of the recordings list.

    The connection's bounds (what ``audiomoment serve`` gives uvicorn, see
    :mod:`audiomoment.server.http`): header_s : seconds a client has to send a request's
    whole request line and headers, from the connection's start or the previous answer
    (then the connection is closed, with a 408 when part of a request came). body_idle_s :
    seconds a request body may pause between two pieces (then a 408). keep_alive_s :
    seconds an idle connection is kept after an answer. header_bytes : largest request line
    and header block (bytes; larger: a 431). connections : most connections at once (a
    request over it is answered 503 by uvicorn).
    """

    query_chars: int = 500
    upload_bytes: int = 20 * 1024 * 1024
    request_bytes: int = 21 * 1024 * 1024
    example_s: float = 120.0
    top: int = 100
    clip_s: float = 120.0
    context_s: float = 10.0
    page: int = 500
    header_s: float = 10.0
    body_idle_s: float = 30.0
    keep_alive_s: float = 5.0
    header_bytes: int = 16 * 1024
    connections: int = 64


@dataclass(frozen=True)
class ServerConfig:
    """What ``audiomoment serve`` runs with.

    db : the index folder (opened read-only). checkpoint, tokenizer : MS-CLAP 2023 weights
    and GPT-2 tokenizer folder for text and example queries (None: Hugging Face cache, else
    download). cache_dir : cache for the checkpoint's digest (None: no cache). device,
    threads : where and with how many CPU threads the encoders run. context_s : seconds of
    context the page plays and cuts around a moment by default. host : the address served
    (decides which Host headers are accepted). limits : request bounds.
    """

    db: Path
    checkpoint: Path | None = None
    tokenizer: Path | None = None
    cache_dir: Path | None = None
    device: str = "cpu"
    threads: int | None = None
    context_s: float = 1.5
    host: str = "127.0.0.1"
    limits: Limits = Limits()

    @classmethod
    def make(cls, db: str | os.PathLike[str], **kwargs: object) -> ServerConfig:
        """A config with path arguments given as strings or paths (None kept)."""
        for key in ("checkpoint", "tokenizer", "cache_dir"):
            value = kwargs.get(key)
            if value is not None and not isinstance(value, Path):
                kwargs[key] = Path(str(value))
        return cls(db=Path(db), **kwargs)  # type: ignore[arg-type]

    def allowed_hosts(self) -> list[str]:
        """Host header values accepted: loopback names when bound to loopback (a page of
        another site cannot reach the server through a rebound DNS name), any when bound
        wider."""
        if is_loopback(self.host):
            name = self.host.strip().lower()
            name = f"[{name.strip('[]')}]" if ":" in name else name
            return sorted(LOOPBACK_NAMES | {name})
        return ["*"]
