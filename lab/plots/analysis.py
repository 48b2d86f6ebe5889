"""Predicted next to measured: throughput vs workers, latency vs throughput, utilisation, device idle gaps, batch.

Every function takes the tidy tables :mod:`lab.analysis` computes and returns a ``go.Figure``
(never shown). Predictions are lines, one colour per method; measurements are black markers
whose hover gives the relative error against the twin where both exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import ConfigError

__all__ = [
    "CAUSE_COLORS",
    "METHOD_COLORS",
    "plot_batch_tradeoff",
    "plot_idle_gaps",
    "plot_latency_vs_throughput",
    "plot_throughput_vs_workers",
    "plot_utilization",
]

#: Line colour per prediction method (and black for measurements).
METHOD_COLORS: dict[str, str] = {"twin": "#4e79a7", "mva": "#f28e2b", "bound": "#9c9c9c", "measured": "#111111"}
_METHOD_NAMES = {"twin": "predicted: virtual-time twin", "mva": "predicted: exact MVA (exponential service)",
                 "bound": "bound: min(N / R0, 1 / D_max)"}
#: Fill colour per idle cause (lab.analysis.idle.CAUSES) and for busy time.
CAUSE_COLORS: dict[str, str] = {
    "busy": "#59a14f",
    "waiting for DMA in": "#4e79a7",
    "queued on another PE": "#b07aa1",
    "waiting for host": "#f28e2b",
    "waiting for DMA out": "#76b7b2",
    "no work queued": "#d3d3d3",
}


def _need(frame: Any, columns: list[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} needs columns {columns}, missing {missing} (got {list(frame.columns)})")


def _twin_error(measured: pd.DataFrame, predicted: pd.DataFrame, key: str, value: str) -> list[str]:
    twin = predicted[predicted["method"] == "twin"].set_index(key)[value] if "method" in predicted else pd.Series()
    out = []
    for k, v in zip(measured[key], measured[value], strict=True):
        p = twin.get(k)
        out.append(f"twin predicted {p:,.1f} ({(p - v) / v:+.1%})" if p is not None and v else "")
    return out


def _line(method: str) -> dict[str, Any]:
    return dict(color=METHOD_COLORS.get(method), dash="dash" if method == "bound" else None)


def plot_throughput_vs_workers(predicted: pd.DataFrame, measured: pd.DataFrame | None = None, *,
                               bounds: pd.DataFrame | None = None, title: str | None = None) -> go.Figure:
    """Throughput against worker count: predicted lines per method, measured markers, bound asymptotes.

    Args:
        predicted: :func:`lab.analysis.predict.predict_sweep` output (``workers, method, throughput_rps``).
        measured: rows with ``workers`` and ``throughput_rps`` (e.g. :func:`lab.analysis.studies.worker_sweep`,
            ``kind == "workers"`` rows); an optional ``label`` column names the markers.
        bounds: :func:`lab.analysis.bounds.asymptotic_bounds` output, drawn dashed.
        title: figure title.

    Raises:
        ConfigError: missing columns.
    """
    _need(predicted, ["workers", "method", "throughput_rps"], "predicted")
    fig = go.Figure()
    if bounds is not None:
        _need(bounds, ["population", "upper_rps", "bound_rps"], "bounds")
        fig.add_trace(go.Scatter(x=bounds["population"], y=bounds["upper_rps"], mode="lines",
                                 name=_METHOD_NAMES["bound"], line=dict(color=METHOD_COLORS["bound"], dash="dash")))
        if "lower_rps" in bounds:
            fig.add_trace(go.Scatter(x=bounds["population"], y=bounds["lower_rps"], mode="lines",
                                     name="bound: pessimistic (every job queues behind all others)",
                                     line=dict(color=METHOD_COLORS["bound"], dash="dot")))
    for method, g in predicted.groupby("method", sort=False):
        if method == "bound" and bounds is not None:
            continue
        g = g.sort_values("workers")
        fig.add_trace(go.Scatter(x=g["workers"], y=g["throughput_rps"], mode="lines+markers",
                                 name=_METHOD_NAMES.get(str(method), str(method)),
                                 line=_line(str(method)),
                                 marker=dict(size=5),
                                 hovertemplate="%{x} workers: %{y:,.1f} samples/s<extra>" + str(method) + "</extra>"))
    if measured is not None:
        _need(measured, ["workers", "throughput_rps"], "measured")
        err = _twin_error(measured, predicted, "workers", "throughput_rps")
        fig.add_trace(go.Scatter(x=measured["workers"], y=measured["throughput_rps"], mode="markers", name="measured",
                                 marker=dict(color=METHOD_COLORS["measured"], size=10, symbol="circle-open",
                                             line=dict(width=2)),
                                 customdata=err, hovertemplate="%{x} workers: measured %{y:,.1f} samples/s<br>"
                                                               "%{customdata}<extra>measured</extra>"))
    fig.update_layout(title=title or "Throughput vs workers: predicted lines, measured points",
                      xaxis_title="workers (= requests in flight)", yaxis_title="throughput (samples/s)",
                      yaxis_rangemode="tozero", hovermode="closest", legend=dict(orientation="h", y=-0.2))
    return fig


def plot_latency_vs_throughput(predicted: pd.DataFrame, measured: pd.DataFrame | None = None, *,
                               title: str | None = None) -> go.Figure:
    """Mean latency against throughput as workers grow: the price of throughput.

    Args:
        predicted: ``workers, method, throughput_rps, latency_ms`` (:func:`~lab.analysis.predict.predict_sweep`).
        measured: ``workers, throughput_rps, latency_ms``.

    Raises:
        ConfigError: missing columns.
    """
    _need(predicted, ["workers", "method", "throughput_rps", "latency_ms"], "predicted")
    fig = go.Figure()
    for method, g in predicted.groupby("method", sort=False):
        g = g.sort_values("workers")
        fig.add_trace(go.Scatter(x=g["throughput_rps"], y=g["latency_ms"], mode="lines+markers",
                                 name=_METHOD_NAMES.get(str(method), str(method)), text=g["workers"],
                                 line=_line(str(method)),
                                 hovertemplate="%{text} workers: %{x:,.1f} samples/s, %{y:.3f} ms<extra>"
                                               + str(method) + "</extra>"))
    if measured is not None:
        _need(measured, ["workers", "throughput_rps", "latency_ms"], "measured")
        fig.add_trace(go.Scatter(x=measured["throughput_rps"], y=measured["latency_ms"], mode="markers+text",
                                 name="measured", text=[f"{w}" for w in measured["workers"]], textposition="top center",
                                 marker=dict(color=METHOD_COLORS["measured"], size=10, symbol="circle-open",
                                             line=dict(width=2)),
                                 hovertemplate="%{text} workers: measured %{x:,.1f} samples/s, %{y:.3f} ms"
                                               "<extra>measured</extra>"))
    fig.update_layout(title=title or "Latency vs throughput (labels: workers)", xaxis_title="throughput (samples/s)",
                      yaxis_title="mean latency (ms)", yaxis_rangemode="tozero", xaxis_rangemode="tozero",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def plot_utilization(frame: pd.DataFrame, *, x: str = "workers", measured: str = "device_util_measured",
                     predicted: str = "device_util_predicted", title: str | None = None) -> go.Figure:
    """Device utilisation per configuration: measured bars beside predicted bars (0..1).

    Args:
        frame: one row per configuration with ``x``, ``measured`` and ``predicted`` columns.

    Raises:
        ConfigError: missing columns.
    """
    _need(frame, [x, measured, predicted], "frame")
    labels = [str(v) for v in frame[x]]
    fig = go.Figure([
        go.Bar(x=labels, y=frame[measured], name="measured", marker_color=METHOD_COLORS["measured"],
               hovertemplate="%{x}: measured %{y:.1%}<extra></extra>"),
        go.Bar(x=labels, y=frame[predicted], name="predicted (X x S / servers)", marker_color=METHOD_COLORS["twin"],
               hovertemplate="%{x}: predicted %{y:.1%}<extra></extra>"),
    ])
    fig.update_layout(title=title or "Device (NPU) utilisation", barmode="group", xaxis_title=x,
                      yaxis=dict(title="busy fraction of the device", range=[0, 1.05], tickformat=".0%"))
    return fig


def plot_idle_gaps(table: pd.DataFrame | Mapping[str, Mapping[str, float]], *, by: str = "lane",
                   title: str | None = None) -> go.Figure:
    """Where the device's time went: busy, and each idle cause, as stacked horizontal bars.

    Args:
        table: :func:`lab.analysis.idle.idle_attribution` output (``lane, cause, fraction``; rows per
            ``by``), or ``{run name: idle_summary(...)}`` to compare runs.
        by: the column naming a bar (``lane``, or ``run`` for a mapping).

    Raises:
        ConfigError: missing columns or an empty table.
    """
    if isinstance(table, Mapping):
        table = pd.DataFrame([{"run": name, "cause": c, "fraction": f} for name, summ in table.items()
                              for c, f in summ.items()])
        by = "run"
    _need(table, [by, "cause", "fraction"], "table")
    if table.empty:
        raise ConfigError("table is empty: nothing to draw")
    bars = list(dict.fromkeys(table[by].tolist()))
    fig = go.Figure()
    for cause in CAUSE_COLORS:
        sub = table[table["cause"] == cause].set_index(by)["fraction"]
        if sub.sum() <= 0:
            continue
        fig.add_trace(go.Bar(y=bars, x=[float(sub.get(b, 0.0)) for b in bars], name=cause, orientation="h",
                             marker_color=CAUSE_COLORS[cause],
                             hovertemplate="%{y}: " + cause + " %{x:.1%}<extra></extra>"))
    fig.update_layout(title=title or "Device time: busy, or idle and why", barmode="stack",
                      xaxis=dict(title="fraction of the window", range=[0, 1.0], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25),
                      height=180 + 40 * len(bars))
    return fig


def plot_batch_tradeoff(predicted: pd.DataFrame, measured: pd.DataFrame | None = None, *,
                        title: str | None = None) -> go.Figure:
    """Throughput and latency against batch size, predicted (lines) and measured (markers), side by side.

    Args:
        predicted: ``batch, throughput_rps, latency_ms`` (one method).
        measured: ``batch, throughput_rps, latency_ms``.

    Raises:
        ConfigError: missing columns.
    """
    _need(predicted, ["batch", "throughput_rps", "latency_ms"], "predicted")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["throughput (samples/s)", "latency per request (ms)"])
    p = predicted.sort_values("batch")
    for col, value in ((1, "throughput_rps"), (2, "latency_ms")):
        fig.add_trace(go.Scatter(x=p["batch"], y=p[value], mode="lines+markers", name="predicted (twin)",
                                 line=dict(color=METHOD_COLORS["twin"]), showlegend=col == 1), row=1, col=col)
        if measured is not None:
            _need(measured, ["batch", value], "measured")
            fig.add_trace(go.Scatter(x=measured["batch"], y=measured[value], mode="markers", name="measured",
                                     marker=dict(color=METHOD_COLORS["measured"], size=10, symbol="circle-open",
                                                 line=dict(width=2)), showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="batch size", type="log", dtick=0.30102999566, row=1, col=col)
        fig.update_yaxes(rangemode="tozero", row=1, col=col)
    fig.update_layout(title=title or "Batch size: throughput vs latency", legend=dict(orientation="h", y=-0.25))
    return fig
