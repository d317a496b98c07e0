"""Plain-text tables for the terminal: headline metrics per system, the delta breakdown.

``audiomoment evaluate`` and ``audiomoment demo`` print these; the report's Markdown and HTML
tables are in :mod:`audiomoment.reporting.tables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audiomoment.errors import InputError
from audiomoment.evaluation.metrics import HEADLINE_KEYS
from audiomoment.reporting.tables import DELTA_BINS


def headline(metrics: Mapping) -> dict[str, float]:
    """{"R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP"} from an evaluation's ``"brief"`` block.

    Raises :class:`InputError` when the block or one of its five entries is missing.
    """
    brief = metrics.get("brief")
    if not isinstance(brief, Mapping):
        raise InputError("metrics: no 'brief' block")
    missing = [v for v in HEADLINE_KEYS.values() if v not in brief]
    if missing:
        raise InputError(f"metrics: 'brief' block has no '{missing[0]}'")
    return {k: brief[v] for k, v in HEADLINE_KEYS.items()}


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_table(rows: Mapping[str, Mapping]) -> str:
    """Plain-text table of the headline metrics (percent), one row per system.

    ``rows`` maps a system name to the output of
    :func:`~audiomoment.evaluation.metrics.evaluate` or of :func:`headline`.
    """
    columns = list(HEADLINE_KEYS)
    name_width = max([len("system"), *(len(name) for name in rows)])
    widths = [max(len(c), 6) for c in columns]

    def line(name: str, cells: list[str]) -> str:
        padded = (cell.rjust(w) for cell, w in zip(cells, widths, strict=True))
        return "  ".join([name.ljust(name_width), *padded])

    lines = [line("system", columns)]
    for name, values in rows.items():
        values = headline(values) if "brief" in values else values
        lines.append(line(name, [_cell(values.get(c)) for c in columns]))
    return "\n".join(lines)


def format_delta_breakdown(metrics: Mapping) -> str:
    """Plain-text table of the ``"delta_breakdown"`` block (bin, range, n, mean top-1 IoU %).

    ``metrics``: the output of :func:`~audiomoment.reporting.tables.evaluate_with_breakdown`.
    """
    breakdown = metrics.get("delta_breakdown")
    if not breakdown:
        return "no delta breakdown (the predictions carry no numeric 'delta')"
    range_width = max(len(r) for r in DELTA_BINS.values())
    lines = [f"{'bin':<4}  {'range':<{range_width}}  {'n':>6}  {'mean IoU':>8}"]
    for name, label in DELTA_BINS.items():
        entry = breakdown.get(name, {})
        lines.append(
            f"{name:<4}  {label:<{range_width}}  {entry.get('n', 0):>6}  "
            f"{_cell(entry.get('mean_iou')):>8}"
        )
    return "\n".join(lines)
