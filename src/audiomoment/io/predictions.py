"""Prediction rows: the one place where they are built, written, read and validated.

One JSON object per query: ``qid``, ``query``, ``vid``, ``pred_relevant_windows``
([[start_s, end_s, score], ...], best first), plus this project's ``delta`` (the fitted
mixture's mean separation; the standard evaluation ignores extra fields).

Every command that reads predictions (``evaluate``, ``report``, ``package-submission``) checks
them with :func:`inspect_predictions`, which follows what the standard moment-retrieval
evaluation (QVHighlights / lighthouse ``eval.py``) can score:

* refused, naming the file and line: a row that is not an object; a missing ``qid`` or
  ``pred_relevant_windows``; a qid that is not a string or an integer, repeated, or (given
  the annotations) not annotated; a window that is not [start, end, score] or [start, end]
  of finite numbers, or has start > end; windows with and without a score in one file; a
  ``delta`` that is not a finite number.
* scored, with a warning line counting them: windows of zero length (start = end; the
  standard IoU gives them 0 with every ground-truth window, whose length is > 0), windows
  starting before 0 or ending after the query's duration, rows without any window (misses).
* ``[start, end]`` windows without a score are accepted (``scored`` False): R1 can be
  computed, mAP cannot.

A submission demands more (every annotated query exactly once, at least one window, windows
inside the recording): ``audiomoment.reporting.submission`` adds its own rules to those of
:func:`inspect_predictions` (``require_scores=True`` refuses windows without a score).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiomoment.errors import InputError
from audiomoment.io.annotations import iter_jsonl
from audiomoment.io.atomic import write_with
from audiomoment.io.validation import finite_number, is_finite_number

if TYPE_CHECKING:
    from audiomoment.method.localize import LocalizationResult

WINDOW_FIELD = "pred_relevant_windows"
SCORED = "[start, end, score]"
UNSCORED = "[start, end]"

# ---------------------------------------------------------------------------------------------
# Building and writing rows
# ---------------------------------------------------------------------------------------------


def make_row(
    annotation: Mapping, windows: Iterable[Sequence[float]], delta: float | None = None
) -> dict:
    """The output row of one query.

    ``annotation``: its annotation row (``qid``, ``query``, ``vid`` are copied);
    ``windows``: (K, 3) [start_s, end_s, score], best first; ``delta``: added when given.
    """
    row = {
        "qid": annotation["qid"],
        "query": annotation["query"],
        "vid": annotation["vid"],
        WINDOW_FIELD: [[float(s), float(e), float(sc)] for s, e, sc in windows],
    }
    if delta is not None:
        row["delta"] = float(delta)
    return row


def prediction_row(annotation: Mapping, result: LocalizationResult) -> dict:
    """The output row of one query from its annotation row and localisation result."""
    return make_row(annotation, result.windows, result.delta)


def write_predictions(path: str | os.PathLike[str], rows: Iterable[Mapping]) -> None:
    """Write rows as JSON Lines, atomically (temporary file + rename)."""

    def fill(handle) -> None:  # type: ignore[no-untyped-def]
        for row in rows:
            handle.write(json.dumps(row, allow_nan=False) + "\n")

    write_with(path, fill)


# ---------------------------------------------------------------------------------------------
# Validating rows
# ---------------------------------------------------------------------------------------------


def window_problem(
    window: Any, k: int, width: int | None = None
) -> tuple[str | None, tuple[float, ...]]:
    """Check window ``k`` (1-based) of a row: (problem or None, its values).

    ``width``: 3 for [start, end, score], 2 for [start, end], None for either. A problem is
    a window that is not a list of that many finite numbers, or has start > end.
    """
    shape = {3: SCORED, 2: UNSCORED}.get(width or 0, f"{SCORED} or {UNSCORED}")
    if not isinstance(window, list) or len(window) not in ((width,) if width else (2, 3)):
        return f"window {k} is not {shape}: {window!r}", ()
    values = tuple(finite_number(v) for v in window)
    if any(v is None for v in values):
        return f"window {k} has a non-numeric or non-finite value: {window!r}", ()
    numbers = tuple(v for v in values if v is not None)
    if numbers[0] > numbers[1]:
        return f"window {k} has start > end: {window!r}", ()
    return None, numbers


def check_window(window: Any, where: str, k: int, width: int | None = None) -> tuple[float, ...]:
    """The values of one window; :class:`InputError` ``"<where>: <problem>"`` otherwise."""
    problem, values = window_problem(window, k, width)
    if problem:
        raise InputError(f"{where}: {problem}")
    return values


@dataclass
class PredictionCheck:
    """What :func:`inspect_predictions` found in a sequence of prediction rows.

    errors : row position (0-based) -> ``"<source>:<line>: <problem>"``, in file order; the
        first problem of each refused row.
    warnings : one line per kind of scored-but-notable window or row (see the counts).
    scored : True when the windows are [start, end, score], False when they are
        [start, end] (no mAP), None when no row has a window.
    n_rows, n_windows : rows and windows seen.
    n_zero_length : windows with start = end (IoU 0 with any ground-truth window).
    n_before_zero : windows starting before 0 s.
    n_past_duration : windows ending after their query's annotated duration.
    n_empty : rows without any window (scored as misses).
    """

    errors: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scored: bool | None = None
    n_rows: int = 0
    n_windows: int = 0
    n_zero_length: int = 0
    n_before_zero: int = 0
    n_past_duration: int = 0
    n_empty: int = 0

    def raise_first(self) -> None:
        """Raise :class:`InputError` with the first error, if any."""
        if self.errors:
            raise InputError(next(iter(self.errors.values())))


class _Tally:
    """Windows of one kind: how many, in how many rows, first line."""

    def __init__(self) -> None:
        self.windows = 0
        self.rows = 0
        self.first: int | None = None

    def add(self, count: int, line: int) -> None:
        if count:
            self.windows += count
            self.rows += 1
            self.first = line if self.first is None else self.first


def annotation_for(annotations_by_qid: Mapping, qid: str | int) -> Mapping | None:
    """The annotation row of ``qid``, keyed by the qid itself or its string form."""
    found = annotations_by_qid.get(qid)
    return annotations_by_qid.get(str(qid)) if found is None else found


class _RowChecker:
    """The per-row rules, with what earlier rows fixed: seen qids and the window layout."""

    def __init__(self, annotations_by_qid: Mapping | None, require_scores: bool) -> None:
        self.annotations = annotations_by_qid
        self.require_scores = require_scores
        self.first_line: dict[Any, int] = {}
        self.width: int | None = 3 if require_scores else None
        self.width_line = 0

    def windows(self, windows: list, line: int) -> tuple[str | None, list[tuple[float, ...]]]:
        values: list[tuple[float, ...]] = []
        for k, w in enumerate(windows, start=1):
            message, v = window_problem(w, k, self.width)
            mixed = (message and self.width is not None and not self.require_scores
                     and window_problem(w, k)[0] is None)  # fine, unlike the earlier ones
            if mixed:
                shape = SCORED if self.width == 3 else UNSCORED
                message = (f"window {k} is not {shape} like the windows on line "
                           f"{self.width_line}: {w!r}")
            if message:
                return message, []
            if self.width is None:
                self.width, self.width_line = len(v), line
            values.append(v)
        return None, values

    def row(
        self, row: Any, line: int
    ) -> tuple[str | None, list[tuple[float, ...]], Mapping | None]:
        """(first problem or None, the row's window values, its annotation)."""
        if not isinstance(row, Mapping):
            return "expected a JSON object", [], None
        for name in ("qid", WINDOW_FIELD):
            if name not in row:
                return f"missing field '{name}'", [], None
        qid = row["qid"]
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            return f"qid must be a string or an integer, got {qid!r}", [], None
        if qid in self.first_line:
            return f"duplicate qid {qid!r} (first on line {self.first_line[qid]})", [], None
        self.first_line[qid] = line
        annotation = None
        if self.annotations is not None:
            annotation = annotation_for(self.annotations, qid)
            if annotation is None:
                return f"qid {qid!r} is not in the annotations", [], None
            if annotation.get("qid", qid) != qid:
                return (f"qid {qid!r} does not match the annotation's qid "
                        f"{annotation['qid']!r}"), [], None
        if not isinstance(row[WINDOW_FIELD], list):
            return f"{WINDOW_FIELD} must be a list", [], None
        if "delta" in row and not is_finite_number(row["delta"]):
            return f"delta must be a finite number, got {row['delta']!r}", [], None
        message, values = self.windows(row[WINDOW_FIELD], line)
        return message, values, annotation


def inspect_predictions(
    rows: Sequence[Any],
    source: str,
    annotations_by_qid: Mapping | None = None,
    *,
    line_numbers: Sequence[int] | None = None,
    require_scores: bool = False,
    stop_at_first_error: bool = False,
) -> PredictionCheck:
    """Validate prediction rows with the rules of the module docstring; never raises.

    ``source``: the file name used in messages; ``annotations_by_qid``: annotation rows
    keyed by qid or its string form (None: qids and durations are not checked);
    ``line_numbers``: each row's 1-based line (default: its position);
    ``require_scores``: refuse [start, end] windows; ``stop_at_first_error``: return at the
    first refused row (its counts then cover the rows before it).
    """
    numbers = list(line_numbers) if line_numbers is not None else range(1, len(rows) + 1)
    check = PredictionCheck(n_rows=len(rows))
    checker = _RowChecker(annotations_by_qid, require_scores)
    past_end, zero, before, empty = _Tally(), _Tally(), _Tally(), _Tally()
    for position, (line, row) in enumerate(zip(numbers, rows, strict=True)):
        message, values, annotation = checker.row(row, line)
        if message:
            check.errors[position] = f"{source}:{line}: {message}"
            if stop_at_first_error:
                break
            continue
        check.n_windows += len(values)
        zero.add(sum(v[0] == v[1] for v in values), line)
        before.add(sum(v[0] < 0 for v in values), line)
        duration = finite_number(annotation.get("duration")) if annotation is not None else None
        if duration is not None:
            past_end.add(sum(v[1] > duration for v in values), line)
        if not values:
            empty.add(1, line)

    check.scored = None if checker.width is None or check.n_windows == 0 else (
        checker.width == 3)
    check.n_zero_length, check.n_before_zero = zero.windows, before.windows
    check.n_past_duration, check.n_empty = past_end.windows, empty.windows
    if past_end.windows:
        check.warnings.append(
            f"{source}: {past_end.windows} window(s) in {past_end.rows} row(s) end after the "
            f"query's duration (first on line {past_end.first})"
        )
    if empty.windows:
        check.warnings.append(
            f"{source}: {empty.windows} row(s) have no window and score as misses "
            f"(first on line {empty.first})"
        )
    if zero.windows:
        check.warnings.append(
            f"{source}: {zero.windows} window(s) in {zero.rows} row(s) have zero length "
            "(start = end) and score IoU 0 with every ground-truth window, as in the standard "
            f"evaluation (first on line {zero.first})"
        )
    if before.windows:
        check.warnings.append(
            f"{source}: {before.windows} window(s) in {before.rows} row(s) start before 0 s "
            f"(first on line {before.first})"
        )
    return check


def check_predictions(
    rows: Sequence[Any],
    annotations_by_qid: Mapping | None,
    source: str,
    *,
    line_numbers: Sequence[int] | None = None,
    require_scores: bool = False,
) -> list[str]:
    """Validate prediction rows; return the warnings, raise :class:`InputError` on the first
    error (``"<source>:<line>: <problem>"``). Rules: :func:`inspect_predictions`."""
    check = inspect_predictions(
        rows, source, annotations_by_qid, line_numbers=line_numbers,
        require_scores=require_scores, stop_at_first_error=True,
    )
    check.raise_first()
    return check.warnings


def read_prediction_file(
    path: str | os.PathLike[str],
    annotations_by_qid: Mapping | None = None,
    *,
    require_scores: bool = False,
) -> tuple[list[dict], PredictionCheck]:
    """Read and validate a predictions JSON Lines file (blank lines are skipped).

    Raises :class:`InputError` naming the file (and line) for a missing or empty file, a line
    that is not JSON or the first error of :func:`inspect_predictions`. Returns the rows in
    file order and what the check found (warnings, counts, whether windows carry a score).
    """
    p = Path(path)
    numbers: list[int] = []
    rows: list[Any] = []
    for number, row in iter_jsonl(p):
        numbers.append(number)
        rows.append(row)
    check = inspect_predictions(
        rows, str(p), annotations_by_qid, line_numbers=numbers,
        require_scores=require_scores, stop_at_first_error=True,
    )
    check.raise_first()
    return rows, check


def read_predictions(
    path: str | os.PathLike[str],
    annotations_by_qid: Mapping | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    require_scores: bool = False,
) -> list[dict]:
    """:func:`read_prediction_file`'s rows; its warnings go to ``on_warning``, by default
    :func:`warnings.warn`."""
    rows, check = read_prediction_file(path, annotations_by_qid, require_scores=require_scores)
    for message in check.warnings:
        if on_warning is None:
            warnings.warn(message, stacklevel=2)
        else:
            on_warning(message)
    return rows
