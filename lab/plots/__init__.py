"""Plots of traces, latencies and predictions (imports plotly; ``import lab`` does not import this package)."""

from __future__ import annotations

from lab.plots.analysis import (
    plot_batch_tradeoff,
    plot_idle_gaps,
    plot_latency_vs_throughput,
    plot_throughput_vs_workers,
    plot_utilization,
)
from lab.plots.distributions import ecdf, plot_latency_cdf, plot_latency_histogram
from lab.plots.roofline import plot_bandwidth, plot_rate_sweep, plot_roofline
from lab.plots.timeline import STAGE_COLORS, plot_timeline, plot_timelines, stage_color, timeline_frame

__all__ = [
    "STAGE_COLORS",
    "ecdf",
    "plot_batch_tradeoff",
    "plot_idle_gaps",
    "plot_latency_cdf",
    "plot_latency_histogram",
    "plot_latency_vs_throughput",
    "plot_throughput_vs_workers",
    "plot_timeline",
    "plot_timelines",
    "plot_bandwidth",
    "plot_rate_sweep",
    "plot_roofline",
    "plot_utilization",
    "stage_color",
    "timeline_frame",
]
