"""Gantt timelines of a trace: one row per lane, bars coloured by stage, counters below."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.errors import ConfigError
from lab.trace import LANE_D2H, LANE_DEVICE, LANE_H2D, LANE_HOST, LANE_KINDS, LANE_QUEUE, Trace, lane_sort_key

__all__ = [
    "COLOR_BY",
    "LANE_KIND_COLORS",
    "OTHER_COLOR",
    "STAGE_COLORS",
    "TIME_UNITS",
    "TIMELINE_COLUMNS",
    "plot_timeline",
    "plot_timelines",
    "stage_color",
    "timeline_frame",
]

#: Display time units: name -> nanoseconds per unit.
TIME_UNITS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_UNIT_ALIASES = {"µs": "us", "μs": "us"}
_UNIT_LABELS = {"ns": "ns", "us": "µs", "ms": "ms", "s": "s"}

#: Fixed colours of known stage names, in pipeline order (also the legend order).
STAGE_COLORS: dict[str, str] = {
    "queue": "#bab0ac",
    "wait": "#9d9d9d",
    "batch": "#edc948",
    "pre": "#4e79a7",
    "preprocess": "#4e79a7",
    "upload": "#f28e2b",
    "h2d": "#f28e2b",
    "compute": "#e15759",
    "infer": "#b07aa1",
    "download": "#76b7b2",
    "d2h": "#76b7b2",
    "post": "#59a14f",
    "postprocess": "#59a14f",
}
#: Colours of lane kinds (``color_by="lane_kind"``), matching the stages that run there.
LANE_KIND_COLORS: dict[str, str] = {
    LANE_QUEUE: STAGE_COLORS["queue"],
    LANE_HOST: STAGE_COLORS["pre"],
    LANE_H2D: STAGE_COLORS["upload"],
    LANE_DEVICE: STAGE_COLORS["compute"],
    LANE_D2H: STAGE_COLORS["download"],
}
#: Colour of the folded "other" group (stages beyond :data:`MAX_GROUPS`).
OTHER_COLOR = "#7f7f7f"
#: Deterministic fallback colours for unknown names (picked by CRC-32 of the name).
_FALLBACK_COLORS: tuple[str, ...] = (
    "#9c755f", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
    "#17becf", "#bcbd22", "#8c564b", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)
#: Cyclic colours for ``color_by="request_id"`` (request id modulo its length).
_REQUEST_COLORS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
#: What ``color_by`` accepts.
COLOR_BY: tuple[str, ...] = ("name", "lane_kind", "lane", "request_id")
#: At most this many coloured groups (legend entries); the rest are folded into "other".
MAX_GROUPS = 20
#: Columns a span frame must have (``Trace.to_frame()`` has them all).
TIMELINE_COLUMNS: tuple[str, ...] = ("lane", "name", "request_id", "start_ns", "end_ns")

_OTHER = "other"
_NO_REQUEST = "no request"
_ROW_PX = 34  # height of one lane row, pixels
_COUNTER_PX = 170  # height of the counters row, pixels
_GL_LINE_PX = 14  # thickness of WebGL line segments, pixels


_HOVER = (  # {name}: the stage, literal or from customdata[3]
    "<b>{name}</b><br>lane: %{{y}}<br>request: %{{customdata[0]}}<br>start: %{{customdata[1]}}"
    "<br>duration: %{{customdata[2]}}<extra></extra>"
)


# -- computing ---------------------------------------------------------------------------
def _time_scale(time_unit: str) -> tuple[str, int, str]:
    """``(unit, ns per unit, label)`` of a display unit; ConfigError for an unknown one."""
    unit = _UNIT_ALIASES.get(time_unit, time_unit)
    if unit not in TIME_UNITS:
        raise ConfigError(f"time_unit must be one of {sorted(TIME_UNITS)}, got {time_unit!r}")
    return unit, TIME_UNITS[unit], _UNIT_LABELS[unit]


def _hashed_color(key: str, palette: Sequence[str] = _FALLBACK_COLORS) -> str:
    """A colour from ``palette`` chosen by CRC-32 of ``key``: the same in every process."""
    return palette[zlib.crc32(key.encode("utf-8")) % len(palette)]


def stage_color(name: str) -> str:
    """The colour of a stage: fixed for known stages, a deterministic fallback for others."""
    if name == _OTHER:
        return OTHER_COLOR
    return STAGE_COLORS.get(name) or _hashed_color(name)


def _group_color(color_by: str, group: str) -> str:
    if group == _OTHER:
        return OTHER_COLOR
    if color_by == "name":
        return stage_color(group)
    if color_by == "lane_kind":
        return LANE_KIND_COLORS.get(group) or _hashed_color(group)
    if color_by == "request_id":
        if group == _NO_REQUEST:
            return OTHER_COLOR
        return _REQUEST_COLORS[int(group.rsplit(" ", 1)[-1])]
    return _hashed_color(group)


def _ordered_lanes(frame: pd.DataFrame) -> list[str]:
    return sorted({str(lane) for lane in frame["lane"]}, key=lane_sort_key)


def _check_columns(frame: pd.DataFrame, required: Sequence[str], where: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{where}: the frame is missing columns {missing} (it has {list(frame.columns)}); "
            "build it with Trace.to_frame()"
        )


def _format_ns(ns: float) -> str:
    """A duration in a sensible unit: ``"850 ns"``, ``"12.3 µs"``, ``"2.00 ms"``, ``"1.50 s"``."""
    a = abs(ns)
    if a < 1_000:
        return f"{ns:.0f} ns"
    if a < 1_000_000:
        return f"{ns / 1e3:.3g} µs" if a < 100_000 else f"{ns / 1e3:.0f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:.3g} ms" if a < 100_000_000 else f"{ns / 1e6:.0f} ms"
    return f"{ns / 1e9:.3g} s"


def _start_decimals(unit: str) -> int:
    """Decimals that show a start time to the microsecond (ns: whole nanoseconds)."""
    return {"ns": 0, "us": 1, "ms": 3, "s": 6}[unit]


def _html(text: str) -> str:
    """``text`` shown literally in plotly's HTML-like labels."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attrs_text(attrs: Any) -> str:
    if not isinstance(attrs, Mapping) or not attrs:
        return ""
    return "<br>" + _html(", ".join(f"{k}={v}" for k, v in attrs.items()))


def timeline_frame(
    trace: Trace | pd.DataFrame,
    *,
    time_unit: str = "ms",
    color_by: str = "name",
    origin_ns: int | None = None,
) -> pd.DataFrame:
    """The spans of a trace ready to draw: display times, colour group, colour and hover fields.

    Precondition: a frame must have columns ``lane``, ``name``, ``request_id``,
    ``start_ns`` and ``end_ns`` (as :meth:`lab.trace.Trace.to_frame` builds them);
    ``attrs`` is used when present.

    Args:
        trace: a trace, or its tidy frame.
        time_unit: display unit of ``start``, ``end`` and ``duration``: ns, us, ms or s.
        color_by: ``"name"`` (stage), ``"lane_kind"``, ``"lane"`` or ``"request_id"``.
        origin_ns: time zero; default the trace's ``origin_ns`` (a frame: its earliest start).

    Returns:
        One row per span, sorted by start, with the input columns plus ``lane_kind``,
        ``duration_ns``, ``start``, ``end``, ``duration`` (floats in ``time_unit``,
        from ``origin_ns``), ``group`` (the colour group, legend entry), ``color`` and
        ``hover_request``, ``hover_start`` and ``hover_duration`` (text; the duration
        in a sensible unit, followed by the span's attributes).

    Raises:
        ConfigError: missing columns, unknown ``time_unit`` or ``color_by``.
    """
    unit, factor, label = _time_scale(time_unit)
    if color_by not in COLOR_BY:
        raise ConfigError(f"color_by must be one of {list(COLOR_BY)}, got {color_by!r}")
    if isinstance(trace, Trace):
        frame = trace.to_frame()
        origin = trace.origin_ns if origin_ns is None else origin_ns
    elif isinstance(trace, pd.DataFrame):
        _check_columns(trace, TIMELINE_COLUMNS, "timeline")
        frame = trace.copy()
        origin = origin_ns
    else:
        raise ConfigError(f"expected a Trace or a span frame, got {type(trace).__name__}")
    start_ns = frame["start_ns"].to_numpy(dtype=np.int64)
    end_ns = frame["end_ns"].to_numpy(dtype=np.int64)
    if origin is None:
        origin = int(start_ns.min()) if len(start_ns) else 0
    frame["lane"] = frame["lane"].astype(str)
    frame["name"] = frame["name"].astype(str)
    frame["lane_kind"] = [lane.split("/", 1)[0] for lane in frame["lane"]]
    frame["duration_ns"] = end_ns - start_ns
    # Subtract in integers first: raw clock values (~1e13 ns) would lose precision as floats.
    frame["start"] = (start_ns - int(origin)) / factor
    frame["end"] = (end_ns - int(origin)) / factor
    frame["duration"] = (end_ns - start_ns) / factor
    frame = frame.sort_values("start_ns", kind="stable").reset_index(drop=True)

    if color_by == "request_id":
        rid = frame["request_id"].to_numpy(dtype=np.int64)
        n = len(_REQUEST_COLORS)
        group = np.where(rid < 0, _NO_REQUEST, np.char.add(f"request id mod {n} = ", (rid % n).astype(str)))
        frame["group"] = group.astype(object)
    else:
        frame["group"] = frame[color_by].astype(str)
    frame["group"] = _fold_groups(frame, color_by)
    frame["color"] = frame["group"].map(lambda g: _group_color(color_by, g))

    decimals = _start_decimals(unit)
    attrs = frame["attrs"] if "attrs" in frame.columns else [None] * len(frame)
    frame["hover_request"] = [str(r) if r >= 0 else "none" for r in frame["request_id"]]
    frame["hover_start"] = [f"{v:,.{decimals}f} {label}" for v in frame["start"]]
    frame["hover_duration"] = [
        _format_ns(d) + _attrs_text(a) for d, a in zip(frame["duration_ns"], attrs, strict=True)
    ]
    return frame


def _fold_groups(frame: pd.DataFrame, color_by: str) -> pd.Series:
    """Keep at most MAX_GROUPS groups (known stages first, then by total time); fold the rest."""
    groups = frame["group"]
    if color_by == "request_id" or groups.nunique() <= MAX_GROUPS:
        return groups
    totals = frame.groupby("group", sort=False)["duration_ns"].sum()
    known = [g for g in totals.index if color_by == "name" and g in STAGE_COLORS]
    rest = totals.drop(known).sort_values(ascending=False, kind="stable")
    keep = set(known) | set(rest.index[: max(MAX_GROUPS - 1 - len(known), 0)])
    return groups.where(groups.isin(keep), _OTHER)


def _group_order(frame: pd.DataFrame, color_by: str) -> list[str]:
    """Legend order: known stages in pipeline order, then by first appearance, "other" last."""
    seen = list(dict.fromkeys(frame["group"]))  # frame is sorted by start
    rank = {name: i for i, name in enumerate(STAGE_COLORS)} if color_by == "name" else {}
    if color_by == "lane_kind":
        rank = {k: i for i, k in enumerate(LANE_KINDS)}
    if color_by == "lane":
        return sorted(seen, key=lambda g: (g == _OTHER, lane_sort_key(g)))
    return sorted(seen, key=lambda g: (g == _OTHER, g == _NO_REQUEST, rank.get(g, len(rank)), seen.index(g)))


# -- rendering ---------------------------------------------------------------------------
def _template_literal(text: str) -> str:
    """``text`` shown literally in a hover template (no HTML, no ``%{...}`` placeholders)."""
    return _html(text).replace("%{", "%\u200b{")


def _span_traces(
    frame: pd.DataFrame, color_by: str, *, webgl: bool, legend_seen: set[str] | None = None
) -> list[go.Bar | go.Scattergl]:
    """One plotly trace per colour group: bars, or WebGL line segments when ``webgl``."""
    traces: list[go.Bar | go.Scattergl] = []
    show_legend = color_by != "request_id"
    for group in _group_order(frame, color_by):
        g = frame[frame["group"] == group]
        color = g["color"].iloc[0]
        # Hover fields per span; the lane is the y value, and the stage is written into the
        # template unless the trace mixes stages (other colourings, the folded group).
        mixed = color_by != "name" or group == _OTHER
        columns = ["hover_request", "hover_start", "hover_duration"]
        custom = g[columns + ["name"] if mixed else columns].to_numpy(dtype=object)
        if mixed:
            custom[:, 3] = [_html(n) for n in custom[:, 3]]
        hover = _HOVER.format(name="%{customdata[3]}" if mixed else _template_literal(group))
        legend = show_legend and (legend_seen is None or group not in legend_seen)
        if legend_seen is not None:
            legend_seen.add(group)
        common: dict[str, Any] = dict(name=group, legendgroup=group, showlegend=legend,
                                      hovertemplate=hover)
        if not webgl:
            traces.append(go.Bar(
                orientation="h", base=g["start"].to_numpy(), x=g["duration"].to_numpy(),
                y=g["lane"].to_numpy(), customdata=custom, marker=dict(color=color, line=dict(width=0)),
                **common,
            ))
            continue
        n = len(g)
        x = np.full(3 * n, np.nan)
        x[0::3] = g["start"].to_numpy()
        x[1::3] = g["end"].to_numpy()
        y = np.empty(3 * n, dtype=object)
        y[0::3] = g["lane"].to_numpy()
        y[1::3] = y[0::3]
        custom3 = np.repeat(custom, 3, axis=0)
        custom3[2::3] = ""  # gap points are never hovered
        traces.append(go.Scattergl(
            x=x, y=y, mode="lines", connectgaps=False, customdata=custom3,
            line=dict(color=color, width=_GL_LINE_PX), **common,
        ))
    return traces


def _counter_traces(
    trace: Trace, origin_ns: int, factor: int, label: str, *, webgl: bool
) -> list[go.Scatter | go.Scattergl]:
    """One step line per counter name, in order of first sample."""
    by_name: dict[str, list[tuple[int, float]]] = {}
    for c in trace.counters:
        by_name.setdefault(c.name, []).append((c.t_ns, c.value))
    out: list[go.Scatter | go.Scattergl] = []
    cls = go.Scattergl if webgl else go.Scatter
    for name, samples in by_name.items():
        samples.sort(key=lambda s: s[0])
        t = np.fromiter((s[0] for s in samples), dtype=np.int64, count=len(samples))
        v = np.fromiter((s[1] for s in samples), dtype=np.float64, count=len(samples))
        out.append(cls(
            x=(t - int(origin_ns)) / factor, y=v, mode="lines", name=name, legendgroup="counter:" + name,
            line=dict(shape="hv", width=1.5, color=_hashed_color("counter:" + name)),
            hovertemplate=f"{_template_literal(name)}: %{{y}}<br>at %{{x:,.3f}} {label}<extra></extra>",
        ))
    return out


def _describe(metadata: Mapping[str, Any]) -> str:
    """``"async mode on <device> (simulator)"`` from a trace's metadata (may be empty)."""
    mode = metadata.get("mode")
    device = metadata.get("device")
    mode = getattr(mode, "value", mode)
    parts = []
    if mode:
        parts.append(f"{mode} mode")
    if device:
        parts.append(f"on {device}")
    return _simulator_tag(" ".join(parts), metadata)


def _simulator_tag(text: str, metadata: Mapping[str, Any]) -> str:
    """Append "(simulator)" when the device is a simulator (unless the text already says so)."""
    device = str(metadata.get("device") or "")
    if "simulat" in device.lower() and "(simulator)" not in text:
        return f"{text} (simulator)".strip()
    return text


def _lane_axis(lanes: Sequence[str]) -> dict[str, Any]:
    return dict(type="category", categoryorder="array", categoryarray=list(lanes), autorange="reversed",
                title=None)


def _no_spans(fig: go.Figure, xref: str = "paper", yref: str = "paper") -> None:
    fig.add_annotation(text="no spans", x=0.5, y=0.5, xref=xref, yref=yref, showarrow=False,
                       font=dict(size=16, color="#7f7f7f"))


def plot_timeline(
    trace: Trace | pd.DataFrame,
    *,
    title: str | None = None,
    color_by: str = "name",
    time_unit: str = "ms",
    max_bars: int = 5000,
    show_counters: bool = True,
) -> go.Figure:
    """A Gantt chart of a trace: one row per lane (queue, host, DMA in, device, DMA out).

    Bars are coloured by stage with a colour that is the same in every figure (see
    :func:`stage_color`); hovering shows stage, lane, request, start and duration.
    Above ``max_bars`` spans the bars become WebGL line segments (an annotation says
    so), which keeps 100k spans responsive. Counters (e.g. ``inflight``) are drawn as
    step lines in a second row sharing the time axis.

    Precondition: a frame must have columns ``lane``, ``name``, ``request_id``,
    ``start_ns`` and ``end_ns`` (as :meth:`lab.trace.Trace.to_frame` builds them); a
    frame has no counters or metadata, and its time zero is its earliest start.

    Args:
        trace: the trace (or its tidy frame) to draw.
        title: figure title; default from metadata: mode and device. When the device
            is a simulator, "(simulator)" is added to any title that lacks it.
        color_by: ``"name"`` (stage), ``"lane_kind"``, ``"lane"`` or ``"request_id"``
            (cyclic colours, no legend).
        time_unit: x axis unit: ns, us, ms or s (time since the trace's origin).
        max_bars: above this many spans, draw WebGL line segments instead of bars.
        show_counters: draw the trace's counters in a second row, when it has any.

    Returns:
        The figure (not shown).

    Raises:
        ConfigError: missing frame columns, unknown ``time_unit``/``color_by``, negative ``max_bars``.
    """
    if max_bars < 0:
        raise ConfigError(f"max_bars must be >= 0, got {max_bars}")
    unit, factor, label = _time_scale(time_unit)
    frame = timeline_frame(trace, time_unit=unit, color_by=color_by)
    is_trace = isinstance(trace, Trace)
    metadata: Mapping[str, Any] = trace.metadata if is_trace else {}
    origin = trace.origin_ns if is_trace else (int(frame["start_ns"].min()) if len(frame) else 0)
    lanes = trace.lanes if is_trace else _ordered_lanes(frame)
    counters = show_counters and is_trace and bool(trace.counters)
    webgl = len(frame) > max_bars

    if counters:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                            row_heights=[max(len(lanes), 2) * _ROW_PX, _COUNTER_PX])
    else:
        fig = go.Figure()
    where: dict[str, int] = {"row": 1, "col": 1} if counters else {}
    for t in _span_traces(frame, color_by, webgl=webgl):
        fig.add_trace(t, **where)
    if counters:
        for t in _counter_traces(trace, int(origin or 0), factor, label, webgl=len(trace.counters) > max_bars):
            fig.add_trace(t, row=2, col=1)
        names = list(dict.fromkeys(c.name for c in trace.counters))
        fig.update_yaxes(title_text=names[0] if len(names) == 1 else "value", rangemode="tozero", row=2, col=1)
        fig.update_xaxes(title_text=f"time since start ({label})", row=2, col=1)
    else:
        fig.update_xaxes(title_text=f"time since start ({label})")
    fig.update_layout(yaxis=_lane_axis(lanes))

    default = "Timeline"
    described = _describe(metadata)
    if described:
        default = f"Timeline: {described}"
    fig.update_layout(
        title=dict(text=_simulator_tag(title, metadata) if title is not None else default),
        barmode="overlay", bargap=0.25, hovermode="closest", legend=dict(title=dict(text=color_by)),
        height=140 + max(len(lanes), 2) * _ROW_PX + (_COUNTER_PX if counters else 0),
    )
    if frame.empty:
        _no_spans(fig, "x domain" if counters else "paper", "y domain" if counters else "paper")
    elif webgl:
        fig.add_annotation(
            text=f"{len(frame):,} spans > max_bars={max_bars:,}: drawn as WebGL line segments",
            xref="paper", yref="paper", x=1.0, y=1.0, xanchor="right", yanchor="bottom", showarrow=False,
            font=dict(size=11, color="#7f7f7f"),
        )
    return fig


def plot_timelines(
    traces: Sequence[Trace],
    titles: Sequence[str] | None = None,
    *,
    shared_x: bool = True,
    time_unit: str = "ms",
    color_by: str = "name",
    max_bars: int = 5000,
) -> go.Figure:
    """Several timelines stacked vertically (e.g. sync, batch, async) on one time axis.

    Each trace is drawn relative to its own origin, so runs recorded at different
    times line up at zero. A stage has the same colour and one legend entry across
    all rows (clicking it toggles that stage everywhere). Counters are not drawn.

    Precondition: every element is a :class:`~lab.trace.Trace` (frames: use
    :func:`plot_timeline` one at a time).

    Args:
        traces: the traces, top to bottom.
        titles: one subplot title per trace; default from each trace's mode and device
            ("(simulator)" is added to a title lacking it when its device is a simulator).
        shared_x: link the x axes (zooming one zooms all).
        time_unit: x axis unit: ns, us, ms or s.
        color_by: as in :func:`plot_timeline`.
        max_bars: per trace, above this many spans draw WebGL line segments (said in its title).

    Returns:
        The figure (not shown).

    Raises:
        ConfigError: no traces, a non-trace, ``titles`` of the wrong length, unknown
            ``time_unit``/``color_by``, negative ``max_bars``.
    """
    traces = list(traces)
    if not traces:
        raise ConfigError("plot_timelines needs at least one trace")
    bad = [type(t).__name__ for t in traces if not isinstance(t, Trace)]
    if bad:
        raise ConfigError(f"plot_timelines expects Trace objects, got {bad}")
    if titles is not None and len(titles) != len(traces):
        raise ConfigError(f"got {len(titles)} titles for {len(traces)} traces")
    if max_bars < 0:
        raise ConfigError(f"max_bars must be >= 0, got {max_bars}")
    unit, _factor, label = _time_scale(time_unit)

    frames = [timeline_frame(t, time_unit=unit, color_by=color_by) for t in traces]
    subtitles: list[str] = []
    for i, (t, frame) in enumerate(zip(traces, frames, strict=True)):
        if titles is not None:
            text = _simulator_tag(titles[i], t.metadata)
        else:
            text = _describe(t.metadata) or f"trace {i + 1}"
        if len(frame) > max_bars:
            text += f" ({len(frame):,} spans, drawn as WebGL line segments)"
        subtitles.append(text)

    rows = len(traces)
    heights = [max(len(t.lanes), 2) for t in traces]
    spacing = min(0.08, 0.5 / rows) if rows > 1 else 0.0
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=shared_x, vertical_spacing=spacing,
                        row_heights=heights, subplot_titles=subtitles)
    seen: set[str] = set()
    for i, (t, frame) in enumerate(zip(traces, frames, strict=True), start=1):
        for plotly_trace in _span_traces(frame, color_by, webgl=len(frame) > max_bars, legend_seen=seen):
            fig.add_trace(plotly_trace, row=i, col=1)
        fig.update_yaxes(_lane_axis(t.lanes), row=i, col=1)
        if frame.empty:
            suffix = "" if i == 1 else str(i)
            _no_spans(fig, f"x{suffix} domain", f"y{suffix} domain")
    fig.update_xaxes(title_text=f"time since start ({label})", row=rows, col=1)
    if not shared_x:
        fig.update_xaxes(title_text=f"time since start ({label})")
    fig.update_layout(
        title=dict(text="Timelines"), barmode="overlay", bargap=0.25, hovermode="closest",
        legend=dict(title=dict(text=color_by)), height=120 + sum(heights) * _ROW_PX + 60 * rows,
    )
    return fig
