"""Latency distributions: empirical CDFs and histograms with percentile markers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import plotly.graph_objects as go

from lab.errors import ConfigError
from lab.plots.timeline import _time_scale

__all__ = [
    "MODE_COLORS",
    "Latencies",
    "ecdf",
    "plot_latency_cdf",
    "plot_latency_histogram",
]

#: Fixed colours of series named after a run mode, so sync/batch/async match across figures.
MODE_COLORS: dict[str, str] = {"sync": "#4e79a7", "batch": "#f28e2b", "async": "#59a14f"}
_SERIES_COLORS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
_SINGLE = "latency"
#: Latencies in integer ns: one sample, or named samples (lists or numpy arrays).
Latencies: TypeAlias = Mapping[str, Sequence[int] | np.ndarray] | Sequence[int] | np.ndarray


def ecdf(latencies_ns: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of a sample: sorted values and the fraction of values <= each.

    Args:
        latencies_ns: latencies in integer nanoseconds.

    Returns:
        ``(values, fractions)``: ``values`` sorted ascending (int64 ns), ``fractions[i]``
        = ``(i + 1) / n``, non-decreasing and ending at 1. Both empty for an empty sample.
    """
    values = np.sort(np.asarray(latencies_ns, dtype=np.int64).ravel())
    n = values.size
    return values, np.arange(1, n + 1, dtype=np.float64) / max(n, 1)


def _series(latencies: Latencies) -> dict[str, np.ndarray]:
    """Named int64 ns arrays, validated: 1-D, numeric, finite, non-negative (floats rounded to ns)."""
    items = latencies.items() if isinstance(latencies, Mapping) else [(_SINGLE, latencies)]
    out: dict[str, np.ndarray] = {}
    for name, values in items:
        a = np.asarray(values)
        if a.ndim != 1:
            raise ConfigError(f"latencies of {name!r} must be a 1-D sequence of ns, got shape {a.shape}")
        if a.size and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ConfigError(f"latencies of {name!r} must be numbers (integer ns), got dtype {a.dtype}")
        if a.size and not np.all(np.isfinite(a)):
            raise ConfigError(f"latencies of {name!r} contain NaN or infinity")
        if a.size and a.min() < 0:
            raise ConfigError(f"latencies of {name!r} must be >= 0 ns, got {a.min()}")
        out[str(name)] = np.rint(a).astype(np.int64) if a.size else np.zeros(0, dtype=np.int64)
    return out


def _series_color(name: str, index: int) -> str:
    """Mode names (sync, batch, async) get fixed colours; other series cycle a palette by position."""
    return MODE_COLORS.get(name) or _SERIES_COLORS[index % len(_SERIES_COLORS)]


def _check_percentiles(percentiles: Sequence[float]) -> list[float]:
    ps = [float(p) for p in percentiles]
    bad = [p for p in ps if not 0 < p <= 100]
    if bad:
        raise ConfigError(f"percentiles must be in (0, 100], got {bad}")
    return ps


def _pct_label(p: float) -> str:
    return f"p{p:g}"


def _thin(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices into ``range(n)``, evenly spaced, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.rint(np.linspace(0, n - 1, max_points)).astype(np.int64))


def plot_latency_cdf(
    latencies: Latencies,
    *,
    time_unit: str = "ms",
    title: str | None = None,
    percentiles: Sequence[float] = (50, 90, 99),
    log_x: bool = False,
    max_points: int = 2000,
) -> go.Figure:
    """Empirical CDF of request latencies, one step line per series, percentiles marked.

    Percentiles use :func:`numpy.percentile` (linear interpolation), as
    :func:`lab.metrics.latency_summary` does, so the markers match reported metrics.

    Args:
        latencies: latencies in integer ns: one sequence, or ``{series name: sequence}``
            (e.g. ``{"sync": ..., "async": ...}``; mode names get fixed colours; empty
            series are skipped).
        time_unit: x axis unit: ns, us, ms or s.
        title: figure title (default "Latency CDF").
        percentiles: percentiles to mark, each in (0, 100].
        log_x: logarithmic latency axis (for long tails).
        max_points: per series, draw at most this many CDF points (the first and last
            are kept, so the curve still ends at 1); percentiles use every value.

    Returns:
        The figure (not shown); with no latencies at all, an annotation says so.

    Raises:
        ConfigError: latencies not 1-D, negative or not finite; bad percentiles or unit.
    """
    _unit, factor, label = _time_scale(time_unit)
    ps = _check_percentiles(percentiles)
    if max_points < 2:
        raise ConfigError(f"max_points must be >= 2, got {max_points}")
    series = _series(latencies)
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        if values.size == 0:  # nothing to draw (its colour slot stays reserved)
            continue
        color = _series_color(name, i)
        legend = f"{name} (n={values.size:,})"
        xs, fs = ecdf(values)
        keep = _thin(xs.size, max_points)
        x = np.concatenate([[xs[0]], xs[keep]]) / factor  # start the step at 0 on the first value
        y = np.concatenate([[0.0], fs[keep]])
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line=dict(shape="hv", color=color, width=2), name=legend,
            legendgroup=name, hovertemplate=f"{name}<br>%{{y:.1%}} of requests ≤ %{{x:.4g}} {label}<extra></extra>",
        ))
        if ps:
            values_p = np.percentile(values, ps) / factor
            fig.add_trace(go.Scatter(
                x=values_p, y=np.asarray(ps) / 100.0, mode="markers+text", name=f"{name} percentiles",
                legendgroup=name, showlegend=False, marker=dict(color=color, size=9, symbol="diamond"),
                text=[f"{_pct_label(p)} {v:.4g} {label}" for p, v in zip(ps, values_p, strict=True)],
                textposition="middle right", textfont=dict(color=color, size=11),
                hovertemplate=f"{name} %{{text}}<extra></extra>",
            ))
    for p in ps:
        fig.add_hline(y=p / 100.0, line=dict(dash="dot", width=1, color="#9d9d9d"))
    if not fig.data:
        fig.add_annotation(text="no latencies", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=16, color="#7f7f7f"))
    fig.update_layout(
        title=dict(text=title if title is not None else "Latency CDF"), hovermode="closest",
        xaxis=dict(title=dict(text=f"latency ({label})"), type="log" if log_x else "linear"),
        yaxis=dict(title=dict(text="fraction of requests ≤ latency"), range=[0, 1.05], tickformat=".0%"),
    )
    return fig


def plot_latency_histogram(
    latencies: Latencies,
    *,
    time_unit: str = "ms",
    title: str | None = None,
    bins: int = 50,
    percentiles: Sequence[float] = (50, 90, 99),
    log_y: bool = False,
) -> go.Figure:
    """Histogram of request latencies, series overlaid on shared bins, percentiles as lines.

    Args:
        latencies: latencies in integer ns: one sequence, or ``{series name: sequence}``.
        time_unit: x axis unit: ns, us, ms or s.
        title: figure title (default "Latency histogram").
        bins: number of bins spanning all series.
        percentiles: percentiles to draw as vertical lines, each in (0, 100].
        log_y: logarithmic count axis (to see the tail).

    Returns:
        The figure (not shown); with no latencies at all, an annotation says so.

    Raises:
        ConfigError: bad latencies, ``bins`` < 1, bad percentiles or unit.
    """
    _unit, factor, label = _time_scale(time_unit)
    ps = _check_percentiles(percentiles)
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    series = {k: v for k, v in _series(latencies).items() if v.size}
    fig = go.Figure()
    if series:
        everything = np.concatenate(list(series.values())) / factor
        edges = np.histogram_bin_edges(everything, bins=bins)
        centers = (edges[:-1] + edges[1:]) / 2
        widths = np.diff(edges)
        overlay = len(series) > 1
        for i, (name, values) in enumerate(series.items()):
            color = _series_color(name, i)
            counts, _ = np.histogram(values / factor, bins=edges)
            fig.add_trace(go.Bar(
                x=centers, y=counts, width=widths, name=f"{name} (n={values.size:,})", legendgroup=name,
                marker=dict(color=color, line=dict(width=0)), opacity=0.6 if overlay else 1.0,
                hovertemplate=f"{name}<br>%{{x:.4g}} {label}: %{{y}} requests<extra></extra>",
            ))
            for p, v in zip(ps, np.percentile(values, ps) / factor, strict=True):
                fig.add_vline(x=float(v), line=dict(dash="dot", width=1.5, color=color),
                              annotation=dict(text=_pct_label(p), font=dict(color=color, size=10)),
                              annotation_position="top")
    else:
        fig.add_annotation(text="no latencies", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=16, color="#7f7f7f"))
    fig.update_layout(
        title=dict(text=title if title is not None else "Latency histogram"), barmode="overlay", bargap=0,
        xaxis=dict(title=dict(text=f"latency ({label})")),
        yaxis=dict(title=dict(text="requests"), type="log" if log_y else "linear"),
    )
    return fig
