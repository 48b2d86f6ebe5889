"""Plots of traces and latencies (imports plotly; ``import lab`` does not import this package)."""

from __future__ import annotations

from lab.plots.distributions import ecdf, plot_latency_cdf, plot_latency_histogram
from lab.plots.timeline import STAGE_COLORS, plot_timeline, plot_timelines, stage_color, timeline_frame

__all__ = [
    "STAGE_COLORS",
    "ecdf",
    "plot_latency_cdf",
    "plot_latency_histogram",
    "plot_timeline",
    "plot_timelines",
    "stage_color",
    "timeline_frame",
]
