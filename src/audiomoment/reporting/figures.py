"""The report's figures with matplotlib's Agg canvas (no display, no global pyplot state).

* :func:`trace_figure` (Figure 2 style): top, a query's smoothed trace with the ground-truth
  windows and the predicted windows shaded, and the posterior of the relevant component on a
  second axis with the threshold; bottom, the histogram of the smoothed trace values with the
  two fitted Gaussians (each scaled by its mixture weight).
* :func:`metric_bars_figure` (Figure 3 style): grouped bars, one group per metric, one bar per
  system, one panel per dataset.

Plotted items carry a ``gid`` so tests (and readers of the objects) can count them:
"ground-truth", "prediction", "gaussian-relevant", "gaussian-background", "bar".
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from audiomoment.io.atomic import atomic_path
from audiomoment.method.localize import LocalizationResult

GT_COLOR = "#2ca02c"
PRED_COLOR = "#ff7f0e"
TRACE_COLOR = "#1f77b4"
POSTERIOR_COLOR = "#9467bd"
COMPONENT_COLORS = ("#d62728", "#7f7f7f")  # relevant, background


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure drawn on its own Agg canvas."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def gaussian_pdf(x: NDArray[np.float64], mean: float, variance: float) -> NDArray[np.float64]:
    """Normal density at ``x`` (N,) -> (N,)."""
    return np.exp(-0.5 * (x - mean) ** 2 / variance) / np.sqrt(2 * np.pi * variance)


def trace_figure(
    result: LocalizationResult,
    gt_windows: ArrayLike = (),
    *,
    title: str = "",
    hop_s: float = 1.0,
    threshold: float = 0.45,
    n_predicted: int = 3,
    bins: int = 30,
) -> Figure:
    """Figure 2 style panel pair for one query.

    Parameters
    ----------
    result : the query's localisation (trace, smoothed, posterior (T,); mixture parameters
        (2,) [relevant, background]; windows (K, 3) ranked).
    gt_windows : (G, 2) ground-truth [start_s, end_s] windows (may be empty).
    title : figure title (the query text, say).
    hop_s : seconds per frame; frame t is drawn at its centre (t + 0.5) * hop_s.
    threshold : posterior level drawn as a dashed line.
    n_predicted : how many of the ranked windows to shade (the first is the top-1 answer).
    bins : histogram bins.
    """
    smoothed = np.asarray(result.smoothed, dtype=np.float64)
    times = (np.arange(len(smoothed)) + 0.5) * hop_s
    gt = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    predicted = np.asarray(result.windows, dtype=np.float64).reshape(-1, 3)[:n_predicted]

    fig = new_figure(9.0, 5.6)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
    for k, (start, end) in enumerate(gt):
        span = top.axvspan(start, end, color=GT_COLOR, alpha=0.22, lw=0,
                           label="ground truth" if k == 0 else None)
        span.set_gid("ground-truth")
    for k, (start, end, _) in enumerate(predicted):
        span = top.axvspan(start, end, facecolor="none", edgecolor=PRED_COLOR, hatch="//",
                           lw=1.2, alpha=1.0 if k == 0 else 0.5,
                           label="predicted" if k == 0 else None)
        span.set_gid("prediction")
        top.text((start + end) / 2, 0.98, f"#{k + 1}", transform=top.get_xaxis_transform(),
                 ha="center", va="top", fontsize=8, color=PRED_COLOR, fontweight="bold")
    top.plot(times, result.trace, color=TRACE_COLOR, alpha=0.3, lw=0.8, label="trace")
    top.plot(times, smoothed, color=TRACE_COLOR, lw=1.6, label="smoothed trace")
    top.set_xlim(0, max(len(smoothed) * hop_s, float(gt.max(initial=0.0))))
    top.set_xlabel("time (s)")
    top.set_ylabel("trace")
    post_ax = top.twinx()
    post_ax.plot(times, result.posterior, color=POSTERIOR_COLOR, lw=1.0, ls="-",
                 label="posterior (relevant)")
    post_ax.axhline(threshold, color=POSTERIOR_COLOR, lw=0.8, ls="--",
                    label=f"threshold {threshold:g}")
    post_ax.set_ylim(-0.02, 1.02)
    post_ax.set_ylabel("posterior", color=POSTERIOR_COLOR)
    handles = top.get_legend_handles_labels()
    more = post_ax.get_legend_handles_labels()
    fig.legend(handles[0] + more[0], handles[1] + more[1], loc="outside lower center",
               fontsize=7, ncols=6, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)

    bottom.hist(smoothed, bins=bins, density=True, color=TRACE_COLOR, alpha=0.35,
                label="smoothed trace values")
    if not result.degenerate and np.all(np.isfinite(result.means)):
        span = float(np.ptp(smoothed)) or 1.0
        grid = np.linspace(smoothed.min() - 0.1 * span, smoothed.max() + 0.1 * span, 400)
        names = ("relevant", "background")
        for k in range(2):
            w, mu, var = (float(result.weights[k]), float(result.means[k]),
                          float(result.variances[k]))
            (line,) = bottom.plot(grid, w * gaussian_pdf(grid, mu, var),
                                  color=COMPONENT_COLORS[k], lw=1.6,
                                  label=f"{names[k]}: w={w:.2f}, $\\mu$={mu:.3f}")
            line.set_gid(f"gaussian-{names[k]}")
            bottom.axvline(mu, color=COMPONENT_COLORS[k], lw=0.8, ls=":")
        bottom.set_title(
            f"$\\Delta = |\\mu_{{rel}} - \\mu_{{bg}}|$ = {result.delta:.3f}", fontsize=9
        )
    else:
        bottom.set_title("constant trace: no mixture fitted", fontsize=9)
    bottom.set_xlabel("smoothed trace value")
    bottom.set_ylabel("density")
    bottom.legend(fontsize=7, loc="upper right")
    return fig


def metric_bars_figure(
    values: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    metrics: Sequence[str],
    *,
    title: str = "",
) -> Figure:
    """Figure 3 style grouped bars.

    ``values``: dataset label -> system name -> metric -> value (percent; None: no bar).
    One panel per dataset, one group per metric, one bar per system (same colour across
    panels). Bars carry gid "bar" and the label "<system>".
    """
    datasets = list(values)
    if not datasets:
        raise ValueError("no dataset to plot")
    systems = list(dict.fromkeys(s for d in datasets for s in values[d]))
    colors = [f"C{i % 10}" for i in range(len(systems))]
    fig = new_figure(max(6.0, 1.1 * len(metrics) * max(1, len(systems)) / 2 + 3),
                     3.4 * len(datasets))
    axes = np.atleast_1d(fig.subplots(len(datasets), 1, squeeze=False)[:, 0])
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(metrics))
    for ax, dataset in zip(axes, datasets, strict=True):
        for i, system in enumerate(systems):
            per_metric = values[dataset].get(system, {})
            heights = [per_metric.get(m) for m in metrics]
            keep = [j for j, h in enumerate(heights) if h is not None]
            if not keep:
                continue
            bars = ax.bar(x[keep] - 0.4 + width * (i + 0.5), [heights[j] for j in keep], width,
                          color=colors[i], label=system)
            for bar in bars:
                bar.set_gid("bar")
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
        ax.set_xticks(x, list(metrics))
        ax.set_ylabel("percent")
        ax.set_title(dataset, fontsize=10)
        ax.set_ylim(0, max(5.0, 1.15 * max(
            (v for s in values[dataset].values() for v in s.values() if v is not None),
            default=0.0)))
        ax.legend(fontsize=7, ncols=min(4, len(systems)), loc="upper right")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> bytes:
    """Write the figure as a PNG file atomically; returns the bytes written."""
    data = png_bytes(fig, dpi)
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(data)
    return data
