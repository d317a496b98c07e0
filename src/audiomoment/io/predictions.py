"""Prediction rows, as the standard moment-retrieval evaluation reads them.

One JSON object per query: ``qid``, ``query``, ``vid``, ``pred_relevant_windows``
([[start_s, end_s, score], ...], best first), plus this project's ``delta`` (the fitted
mixture's mean separation; the standard evaluation ignores extra fields).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from audiomoment.io.atomic import write_with
from audiomoment.method.localize import LocalizationResult


def prediction_row(annotation: Mapping, result: LocalizationResult) -> dict:
    """The output row of one query from its annotation row and localisation result."""
    return {
        "qid": annotation["qid"],
        "query": annotation["query"],
        "vid": annotation["vid"],
        "pred_relevant_windows": [[float(s), float(e), float(sc)] for s, e, sc in result.windows],
        "delta": float(result.delta),
    }


def write_predictions(path: str | os.PathLike[str], rows: Iterable[Mapping]) -> None:
    """Write rows as JSON Lines, atomically (temporary file + rename)."""

    def fill(handle) -> None:  # type: ignore[no-untyped-def]
        for row in rows:
            handle.write(json.dumps(row, allow_nan=False) + "\n")

    write_with(path, fill)
