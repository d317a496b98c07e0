"""Reading annotation files: JSON Lines with qid, query, vid, duration, relevant_windows.

The lighthouse / DCASE 2026 Task 6 layout. ``relevant_windows`` is absent from blind test
sets. Rows are returned as plain dicts (what the standard evaluation reads), validated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from audiomoment.errors import InputError
from audiomoment.io.validation import file_name_problem, finite_number


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line of a JSON Lines file.

    Raises :class:`InputError` naming the file for a missing file, an empty file or a line
    that is not valid JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    seen_any = False
    # bytes that are not UTF-8 become lone surrogates, found line by line below
    with open(p, encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"{p}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise InputError(f"{p}:{number}: not valid JSON (nested too deeply)") from None
            seen_any = True
            yield number, value
    if not seen_any:
        raise InputError(f"{p}: file is empty")


def check_windows(windows: Any, where: str, duration: float | None = None) -> None:
    """Validate a list of [start, end] windows in seconds (0 <= start <= end, finite)."""
    if not isinstance(windows, list):
        raise InputError(f"{where}: relevant_windows must be a list of [start, end]")
    for w in windows:
        if not isinstance(w, list) or len(w) != 2:
            raise InputError(f"{where}: relevant window {w!r} is not [start, end]")
        s, e = finite_number(w[0]), finite_number(w[1])
        if s is None or e is None:
            raise InputError(
                f"{where}: relevant window {w!r} has a non-numeric or non-finite bound"
            )
        if s < 0 or e < s:
            raise InputError(f"{where}: relevant window {w!r} must satisfy 0 <= start <= end")


def read_annotations(path: str | os.PathLike[str], require_windows: bool = False) -> list[dict]:
    """Read and validate an annotation file.

    Each row needs ``qid`` (string or integer, unique), ``query`` (string), ``vid`` (string)
    and ``duration`` (seconds, > 0); ``relevant_windows`` is optional unless
    ``require_windows``. Returns the rows in file order.
    """
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for number, row in iter_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object")
        for field in ("qid", "query", "vid", "duration"):
            if field not in row:
                raise InputError(f"{where}: missing field '{field}'")
        qid = row["qid"]
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            raise InputError(f"{where}: qid must be a string or an integer, got {qid!r}")
        key = qid_key(qid)
        if key in seen:
            raise InputError(f"{where}: duplicate qid {qid!r} (first on line {seen[key]})")
        seen[key] = number
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise InputError(f"{where}: query must be a non-empty string")
        if not isinstance(row["vid"], str) or not row["vid"]:
            raise InputError(f"{where}: vid must be a non-empty string")
        for field in ("qid", "vid"):  # each names a feature file
            if problem := file_name_problem(str(row[field])):
                raise InputError(f"{where}: {field} {row[field]!r} {problem}")
        duration = finite_number(row["duration"])
        if duration is None or duration <= 0:
            raise InputError(
                f"{where}: duration must be a positive number, got {row['duration']!r}"
            )
        if "relevant_windows" in row:
            check_windows(row["relevant_windows"], where)
        elif require_windows:
            raise InputError(f"{where}: missing field 'relevant_windows' (needed for evaluation)")
        rows.append(row)
    return rows


def qid_key(qid: str | int) -> str:
    """The string form of a qid, used for file names and lookups."""
    return str(qid)


def by_qid(rows: Sequence[dict]) -> dict[str, dict]:
    """Rows keyed by :func:`qid_key`."""
    return {qid_key(r["qid"]): r for r in rows}
