"""``audiomoment serve``: a local search page over an archive index, with a JSON API.

* :mod:`audiomoment.server.config` — the server's settings and request limits;
* :mod:`audiomoment.server.state` — the index (re-snapshotted when a commit changes it), the
  query encoders (loaded on first use), the queries of recent searches, long-running work;
* :mod:`audiomoment.server.audio` — WAV bytes of a moment, and a recording streamed as WAV
  with byte ranges for the page's player;
* :mod:`audiomoment.server.app` — the FastAPI application (API, page, limits, errors);
* :mod:`audiomoment.server.http` — how ``serve`` runs uvicorn (HTTP/1.1 framing refused
  when malformed, deadlines for slow clients, bounded heads and connections);
* ``static/`` — the page (HTML, CSS, JavaScript), shipped with the package.
"""

from typing import Any

from audiomoment.server.config import ServerConfig


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`audiomoment.server.app.create_app` (imported on first use: the command line
    imports :mod:`audiomoment.server.config` without FastAPI)."""
    from audiomoment.server.app import create_app as create

    return create(*args, **kwargs)

__all__ = ["ServerConfig", "create_app"]
