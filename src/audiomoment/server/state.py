"""What the server holds between requests.

* :class:`IndexState`: the index, read-only. Every request asks the manifest for its
  generation (one small SQLite read) and takes a new :class:`Snapshot` when a commit of
  ``audiomoment index`` changed it, so an index updated while the server runs is seen
  without a restart, and each request works on one consistent state.
* :class:`ClapQueryEncoder`: MS-CLAP 2023's text encoder and audio encoder, each loaded on
  first use (the page shows the loading as it happens), checked against the checkpoint
  digest the index records.
* :class:`QueryStore`: the query vectors of recent searches by id, so that the page can ask
  for a recording's trace of a query it searched with (an uploaded clip included).
* :class:`Activity`: long work in progress (loading a model, searching), for the status
  endpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from audiomoment.errors import InputError
from audiomoment.index.store import ArchiveIndex, Snapshot
from audiomoment.server.config import ServerConfig

if TYPE_CHECKING:
    from audiomoment.clap.model import ClapModel


class Unavailable(Exception):
    """The index cannot be read, or a query encoder cannot be loaded (missing weights,
    offline, wrong checkpoint). ``str()`` is the answer's message, which names no path of
    the server; ``log`` is the full reason for the server's log (paths included)."""

    def __init__(self, message: str, log: str | None = None) -> None:
        super().__init__(message)
        self.log = message if log is None else log


#: A quoted absolute path ('/a b/c.wav' or "~/x"): the whole quoted text.
_QUOTED_PATH = re.compile(r"""(['"])(?:~|\.{1,2})?/[^'"]*\1""")
#: An absolute path among words, or a file:// URL: from its first / (not inside a word,
#: number or other URL) to the next space, quote, bracket or separator; a colon followed by
#: more of the path (/a/b:c/d, /x.py:12) is part of it, one followed by a space is not.
_BARE_PATH = re.compile(
    r"""(?:\bfile://|(?<![\w.~:/-]))~?/(?:[^\s'"()\[\]<>,;:]|:(?=[^\s'"()\[\]<>,;:]))*""")
#: What a path of the server is replaced with.
HIDDEN_PATH = "<path>"


def without_paths(message: str) -> str:
    """``message`` with the server's filesystem paths taken out, for an answer to a client.

    A leading ``/some/path: `` (how errors name their file) is dropped whole, spaces in the
    path included; a quoted absolute path and an absolute path among words become
    ``<path>``; so does a ``file://`` URL. Relative paths are not recognised: the server
    names its files absolutely. Nor is the rest of an unquoted path with a space in it
    (other than the leading one): only its part up to the space becomes ``<path>``.
    """
    text = message.strip()
    if text[:1] in ("/", "~") and ": " in text:
        text = text.split(": ", 1)[1]
    text = _QUOTED_PATH.sub(HIDDEN_PATH, text)
    return _BARE_PATH.sub(_hide, text)


def _hide(match: re.Match[str]) -> str:
    """A bare path's replacement: a lone "/" stays, a sentence's full stop is kept."""
    path = match.group()
    if len(path) == 1:
        return path
    return HIDDEN_PATH + "." if path.endswith(".") else HIDDEN_PATH


def _absolute(path: Path | None) -> Path | None:
    """``path`` made absolute (symbolic links kept), so that messages naming it are
    recognised by :func:`without_paths`."""
    return None if path is None else Path(os.path.abspath(path))


class IndexState:
    """The index behind the server: the latest committed snapshot, re-taken on change."""

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.index = ArchiveIndex(os.path.abspath(db))
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The snapshot of the index's current generation (a new one after a commit)."""
        generation = self.index.generation()
        current = self._snapshot
        if current is not None and current.generation == generation:
            return current
        with self._lock:
            current = self._snapshot
            if current is None or current.generation != generation:
                current = self.index.snapshot()
                self._snapshot = current
            return current


class Activity:
    """Long work in progress, by label, for the page's progress line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[int, tuple[str, float]] = {}
        self._next = 0

    @contextlib.contextmanager
    def track(self, label: str) -> Iterator[None]:
        with self._lock:
            key = self._next
            self._next += 1
            self._tasks[key] = (label, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._tasks.pop(key, None)

    def current(self) -> list[dict[str, Any]]:
        """[{label, seconds}] of the work running now, oldest first."""
        now = time.monotonic()
        with self._lock:
            return [{"label": label, "seconds": round(now - t0, 1)}
                    for label, t0 in self._tasks.values()]


class QueryStore:
    """The last ``capacity`` query vectors by id (an id is a digest of the vector)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

    @staticmethod
    def key(vector: NDArray[np.floating]) -> str:
        data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        return hashlib.sha256(data).hexdigest()[:24]

    def put(self, vector: NDArray[np.floating]) -> str:
        """Remember a (dim,) query vector; returns its id."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1).copy()
        key = self.key(v)
        with self._lock:
            self._items[key] = v
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> NDArray[np.float32] | None:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v


class QueryEncoder(Protocol):
    """Turns text or an example clip into joint-space query vectors."""

    def text(self, texts: list[str], checkpoint_sha256: str | None) -> NDArray[np.float32]:
        """(Q, dim) unit vectors of Q texts."""
        ...

    def clip(self, path: Path, start_s: float | None, end_s: float | None,
             checkpoint_sha256: str | None) -> NDArray[np.float32]:
        """(dim,) unit vector of an example clip (a part of it with start/end, seconds)."""
        ...

    def status(self) -> dict[str, str]:
        """State of each encoder: "not loaded", "loading", "ready" or "failed: <why>"."""
        ...


class ClapQueryEncoder:
    """MS-CLAP 2023's encoders for queries, each part loaded once on first use.

    Text queries are remembered (the last ``text_cache`` of them). Both parts run one
    request at a time (the CPU is shared with the search itself).
    """

    def __init__(self, config: ServerConfig, activity: Activity, text_cache: int = 256) -> None:
        self.config = config
        self.activity = activity
        self._models: dict[str, ClapModel] = {}
        self._state = {"text": "not loaded", "audio": "not loaded"}
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._texts: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._text_cache = text_cache

    def status(self) -> dict[str, str]:
        return dict(self._state)

    def _model(self, part: str, checkpoint_sha256: str | None) -> ClapModel:
        from audiomoment.clap.model import load_clap

        with self._load_lock:
            model = self._models.get(part)
            if model is None:
                what = "text encoder (GPT-2)" if part == "text" else "audio encoder (HTS-AT)"
                self._state[part] = "loading"
                try:
                    with self.activity.track(f"loading the {what}"):
                        model = load_clap(
                            _absolute(self.config.checkpoint), _absolute(self.config.tokenizer),
                            audio=part == "audio", text=part == "text",
                            threads=self.config.threads, device=self.config.device,
                        )
                        model.checkpoint_digest(self.config.cache_dir)
                except InputError as exc:
                    public = f"cannot load the {what}: {without_paths(str(exc))}"
                    self._state[part] = f"failed: {without_paths(str(exc))}"
                    raise Unavailable(public, f"cannot load the {what}: {exc}") from None
                except Exception as exc:  # unreadable weights, no memory, ...
                    reason = f"{type(exc).__name__}: {exc}"
                    self._state[part] = f"failed: {without_paths(reason)}"
                    raise Unavailable(f"cannot load the {what}: {without_paths(reason)}",
                                      f"cannot load the {what}: {reason}") from None
                self._models[part] = model
                self._state[part] = "ready"
        digest = model.checkpoint_digest(self.config.cache_dir)
        if checkpoint_sha256 is not None and digest != checkpoint_sha256:
            why = (f"not the checkpoint this index was built with (sha256 {digest[:12]}... vs "
                   f"{checkpoint_sha256[:12]}...); start the server with --checkpoint naming "
                   "that file")
            raise Unavailable(f"the server's checkpoint is {why}", f"{model.checkpoint}: {why}")
        return model

    def text(self, texts: list[str], checkpoint_sha256: str | None) -> NDArray[np.float32]:
        from audiomoment.index.queries import text_queries

        model = self._model("text", checkpoint_sha256)
        with self._run_lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
            if missing:
                with self.activity.track("encoding the text query"):
                    vectors = text_queries(model, missing)
                for t, v in zip(missing, vectors, strict=True):
                    self._texts[t] = np.asarray(v, dtype=np.float32)
            found = np.stack([self._texts[t] for t in texts])
            while len(self._texts) > self._text_cache:
                self._texts.popitem(last=False)
        return found

    def clip(self, path: Path, start_s: float | None, end_s: float | None,
             checkpoint_sha256: str | None) -> NDArray[np.float32]:
        from audiomoment.index.queries import clip_query

        model = self._model("audio", checkpoint_sha256)
        with self._run_lock, self.activity.track("encoding the example clip"):
            return clip_query(model, path, start_s, end_s)
