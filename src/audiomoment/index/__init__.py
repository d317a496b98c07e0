"""The archive index: embed a collection once, then search all of it for moments.

The small interface: :class:`ArchiveIndex` (a folder; ``snapshot()`` to read, ``writer()`` to
change), :func:`index_audio` / :func:`index_features` / :func:`index_embeddings` to fill it,
:func:`search_archive` to query it.
"""

from audiomoment.index.ingest import index_audio, index_embeddings, index_features
from audiomoment.index.search import ArchiveMoment, ArchiveSearch, search_archive
from audiomoment.index.store import ArchiveIndex, ModelSpec, Snapshot

__all__ = [
    "ArchiveIndex",
    "ArchiveMoment",
    "ArchiveSearch",
    "ModelSpec",
    "Snapshot",
    "index_audio",
    "index_embeddings",
    "index_features",
    "search_archive",
]
