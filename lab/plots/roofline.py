"""Roofline plots: measured ops against this machine's compute and memory roofs, and rate sweeps beside the peak."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.errors import ConfigError

__all__ = [
    "BACKEND_COLORS",
    "ROOFLINE_COLUMNS",
    "plot_bandwidth",
    "plot_rate_sweep",
    "plot_roofline",
]

#: Fixed colours per runtime, so PyTorch and ONNX Runtime match across figures.
BACKEND_COLORS: dict[str, str] = {"torch": "#e15759", "onnx": "#4e79a7", "numpy": "#59a14f"}
_SERIES_COLORS: tuple[str, ...] = ("#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
_SYMBOLS: tuple[str, ...] = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down",
                             "pentagon", "hexagon")
_DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot", "longdash")
#: Columns :func:`plot_roofline` needs: FLOPs and bytes per call and the median latency (ns).
ROOFLINE_COLUMNS: tuple[str, ...] = ("flops", "bytes", "latency_ns")


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{what}: the table lacks column(s) {missing}; it has {list(df.columns)}")


def _color(key: str, index: int) -> str:
    return BACKEND_COLORS.get(key, _SERIES_COLORS[index % len(_SERIES_COLORS)])


def _roofs(roof: Any) -> dict[str, Any]:
    """A :class:`~lab.bench.roofline.Roofline` or a mapping name -> Roofline, as a dict."""
    if isinstance(roof, Mapping):
        if not roof:
            raise ConfigError("expected at least one roofline")
        return dict(roof)
    return {"": roof}


def _hline(fig: go.Figure, xs: Sequence[float], y: float, name: str, color: str, dash: str) -> None:
    """A horizontal reference line as a trace (``add_hline`` misplaces lines on log axes)."""
    lo, hi = float(min(xs)), float(max(xs))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[y, y], mode="lines", name=name, line={"color": color, "dash": dash},
                             hovertemplate=f"{name}<extra></extra>"))


def _hover(df: pd.DataFrame, label: str) -> list[str]:
    out = []
    for r in df.itertuples(index=False):
        row = r._asdict()
        out.append(f"{row.get(label, '')}<br>{row.get('backend', '')} · {row.get('study', '')}<br>"
                   f"median {row['latency_ns'] / 1e6:.4g} ms<br>{row['flops'] / 1e6:.4g} MFLOP, "
                   f"{row['bytes'] / 1e6:.4g} MB")
    return out


def plot_roofline(points: pd.DataFrame, roof: Any, *, color: str = "backend", symbol: str | None = "study",
                  label: str = "case", title: str | None = None) -> go.Figure:
    """Every measured op with FLOPs at (intensity, achieved GFLOP/s) under the machine's roofs, log-log.

    The roofs are the DRAM one (solid: compute peak and large-copy bandwidth) and, when measured,
    the cache one (dotted: small-copy bandwidth), which bounds ops whose working set stays cached.

    Precondition: ``points`` has :data:`ROOFLINE_COLUMNS` (``flops``, ``bytes``, ``latency_ns``) plus
    the ``color`` and ``symbol`` columns; ops without FLOPs (layout ops) cannot sit on a
    roofline and are left out (the title says how many; see :func:`plot_bandwidth`).

    Args:
        points: one row per measured op (any study table of :mod:`lab.bench`).
        roof: a :class:`lab.bench.roofline.Roofline`, or name -> Roofline (one roof line each).
        color: column giving the colour (default the runtime).
        symbol: column giving the marker symbol, or None.
        label: column named in the hover text.
        title: figure title.

    Returns:
        The figure: one trace per roof, one scatter trace per (color, symbol) group.

    Raises:
        ConfigError: a required column is missing or nothing has FLOPs.
    """
    _require(points, [*ROOFLINE_COLUMNS, color, *([symbol] if symbol else [])], "plot_roofline")
    roofs = _roofs(roof)
    placed = points[(points["flops"] > 0) & (points["bytes"] > 0) & (points["latency_ns"] > 0)]
    left_out = len(points) - len(placed)
    if placed.empty:
        raise ConfigError("plot_roofline: no row has FLOPs > 0, bytes > 0 and a latency")
    intensity = placed["flops"] / placed["bytes"]
    rate = placed["flops"] / (placed["latency_ns"] / 1e9) / 1e9
    lo = min(float(intensity.min()), *(r.ridge_intensity for r in roofs.values())) / 4
    hi = max(float(intensity.max()), *(r.ridge_intensity for r in roofs.values())) * 4
    xs = np.geomspace(lo, hi, 200)
    fig = go.Figure()
    for i, (name, r) in enumerate(roofs.items()):
        ys = r.attainable_flop_per_s(xs) / 1e9
        suffix = f" ({name})" if name else ""
        line_color = "#333333" if not name else _color(name, i)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=f"DRAM roof{suffix}",
            line={"color": line_color, "width": 2, "dash": _DASHES[i % len(_DASHES)]},
            hovertemplate=(f"roof{suffix}<br>peak {r.peak_flop_per_s / 1e9:.1f} GFLOP/s ({r.compute_source})<br>"
                           f"{r.peak_byte_per_s / 1e9:.1f} GB/s ({r.memory_source})<br>"
                           "intensity %{x:.3g} FLOP/B -> %{y:.3g} GFLOP/s<extra></extra>")))
        if r.cache_byte_per_s is not None:
            fig.add_trace(go.Scatter(
                x=xs, y=r.attainable_flop_per_s(xs, cache=True) / 1e9, mode="lines", name=f"cache roof{suffix}",
                line={"color": line_color, "width": 1, "dash": "dot"},
                hovertemplate=(f"cache roof{suffix}<br>{r.cache_byte_per_s / 1e9:.1f} GB/s ({r.cache_source})<br>"
                               "intensity %{x:.3g} FLOP/B -> %{y:.3g} GFLOP/s<extra></extra>")))
    color_keys = list(dict.fromkeys(placed[color].astype(str)))
    symbol_keys = list(dict.fromkeys(placed[symbol].astype(str))) if symbol else [""]
    for ci, ck in enumerate(color_keys):
        for si, sk in enumerate(symbol_keys):
            mask = (placed[color].astype(str) == ck) & ((placed[symbol].astype(str) == sk) if symbol else True)
            if not mask.any():
                continue
            part = placed[mask]
            fig.add_trace(go.Scatter(
                x=intensity[mask], y=rate[mask], mode="markers", name=" · ".join(k for k in (ck, sk) if k),
                marker={"color": _color(ck, ci), "symbol": _SYMBOLS[si % len(_SYMBOLS)], "size": 9,
                        "line": {"width": 0.5, "color": "#222222"}},
                text=_hover(part, label), hovertemplate="%{text}<br>%{x:.3g} FLOP/B, %{y:.3g} GFLOP/s<extra></extra>"))
    note = f" ({left_out} op(s) without FLOPs left out)" if left_out else ""
    fig.update_layout(
        title=(title or "Roofline of this machine: measured ops under the measured roofs") + note,
        xaxis={"type": "log", "title": "arithmetic intensity (FLOP per byte of least traffic)"},
        yaxis={"type": "log", "title": "achieved GFLOP/s (median latency)"},
        legend={"title": {"text": f"{color}{' · ' + symbol if symbol else ''}"}}, template="plotly_white")
    return fig


def plot_bandwidth(points: pd.DataFrame, roof: Any, *, x: str = "bytes", color: str = "backend",
                   symbol: str | None = "op", label: str = "case", title: str | None = None) -> go.Figure:
    """Achieved bytes per second of each op (e.g. layout ops, which have no FLOPs) against the copy roof.

    Precondition: ``points`` has ``bytes``, ``latency_ns``, ``x``, ``color`` (and ``symbol``) columns.

    Args:
        points: one row per measured op.
        roof: a :class:`lab.bench.roofline.Roofline` (or name -> Roofline): its memory peak is drawn.
        x: column on the (log) x axis (default the bytes moved per call).
        color: column giving the colour.
        symbol: column giving the marker symbol, or None.
        label: column named in the hover text.
        title: figure title.

    Raises:
        ConfigError: a required column is missing.
    """
    _require(points, ["bytes", "latency_ns", x, color, *([symbol] if symbol else [])], "plot_bandwidth")
    df = points[(points["latency_ns"] > 0) & (points["bytes"] > 0)]
    gbps = df["bytes"] / (df["latency_ns"] / 1e9) / 1e9
    fig = go.Figure()
    color_keys = list(dict.fromkeys(df[color].astype(str)))
    symbol_keys = list(dict.fromkeys(df[symbol].astype(str))) if symbol else [""]
    for ci, ck in enumerate(color_keys):
        for si, sk in enumerate(symbol_keys):
            mask = (df[color].astype(str) == ck) & ((df[symbol].astype(str) == sk) if symbol else True)
            if not mask.any():
                continue
            part = df[mask].sort_values(x)
            fig.add_trace(go.Scatter(
                x=part[x], y=gbps[part.index], mode="lines+markers", name=" · ".join(k for k in (ck, sk) if k),
                line={"color": _color(ck, ci), "dash": _DASHES[si % len(_DASHES)]},
                marker={"symbol": _SYMBOLS[si % len(_SYMBOLS)], "size": 8},
                text=[str(v) for v in part.get(label, part.index)],
                hovertemplate="%{text}<br>%{y:.3g} GB/s<extra></extra>"))
    xs = df[x].astype(float)
    for i, (name, r) in enumerate(_roofs(roof).items()):
        suffix = f" ({name})" if name else ""
        _hline(fig, xs, r.peak_byte_per_s / 1e9,
               f"DRAM copy peak{suffix}: {r.peak_byte_per_s / 1e9:.1f} GB/s ({r.memory_source})", "#333333",
               _DASHES[i % len(_DASHES)])
        if r.cache_byte_per_s is not None:
            _hline(fig, xs, r.cache_byte_per_s / 1e9,
                   f"cache copy peak{suffix}: {r.cache_byte_per_s / 1e9:.1f} GB/s ({r.cache_source})", "#777777", "dot")
    fig.update_layout(title=title or "Achieved bandwidth against the measured copy peak",
                      xaxis={"type": "log", "title": x}, yaxis={"type": "log", "title": "achieved GB/s"},
                      template="plotly_white")
    return fig


def plot_rate_sweep(points: pd.DataFrame, *, x: str, y: str = "gflop_per_s", color: str = "backend",
                    dash: str | None = None, text: str | None = None, peak: float | None = None,
                    log_x: bool = False, log_y: bool = False, mode: str = "lines+markers",
                    title: str | None = None) -> go.Figure:
    """A sweep: ``y`` (achieved rate or latency) against ``x``, one line per (``color``, ``dash``) group.

    Precondition: ``points`` has the ``x``, ``y``, ``color`` (and ``dash``, ``text``) columns.

    Args:
        points: a study table.
        x: the swept column (``"size"``, ``"flops"``, ``"layers"`` ...).
        y: the measured column (``"gflop_per_s"``, ``"latency_ms"`` ...).
        color: column giving the colour (default the runtime).
        dash: column giving the line style (e.g. the sweep: ``"K"`` / ``"N"``), or None.
        text: column labelling each point (shown on hover, and beside markers with ``mode="markers+text"``).
        peak: a reference value of ``y`` drawn as a horizontal line (e.g. the matmul peak in GFLOP/s).
        log_x: log x axis.
        log_y: log y axis.
        mode: plotly scatter mode (``"lines+markers"``, ``"markers"``, ``"markers+text"``).
        title: figure title.

    Raises:
        ConfigError: a required column is missing.
    """
    _require(points, [x, y, color, *([dash] if dash else []), *([text] if text else [])], "plot_rate_sweep")
    fig = go.Figure()
    color_keys = list(dict.fromkeys(points[color].astype(str)))
    dash_keys = list(dict.fromkeys(points[dash].astype(str))) if dash else [""]
    for ci, ck in enumerate(color_keys):
        for di, dk in enumerate(dash_keys):
            mask = (points[color].astype(str) == ck) & ((points[dash].astype(str) == dk) if dash else True)
            if not mask.any():
                continue
            part = points[mask].sort_values(x)
            labels = [str(v) for v in part[text]] if text else None
            fig.add_trace(go.Scatter(
                x=part[x], y=part[y], mode=mode, name=" · ".join(k for k in (ck, dk) if k),
                line={"color": _color(ck, ci), "dash": _DASHES[di % len(_DASHES)]},
                marker={"color": _color(ck, ci), "symbol": _SYMBOLS[di % len(_SYMBOLS)], "size": 8},
                text=labels, textposition="top center",
                hovertemplate=(("%{text}<br>" if labels else "") + f"{x} %{{x}}<br>{y} %{{y:.4g}}<extra></extra>")))
    if peak is not None:
        _hline(fig, points[x].astype(float), peak, f"peak {peak:.4g}", "#333333", "dot")
    fig.update_layout(title=title or f"{y} vs {x}", template="plotly_white",
                      xaxis={"type": "log" if log_x else "linear", "title": x},
                      yaxis={"type": "log" if log_y else "linear", "title": y})
    return fig
