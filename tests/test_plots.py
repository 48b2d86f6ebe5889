"""Structure of the plots (traces, axes, values, hover, titles) without rendering anything."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from lab.errors import ConfigError
from lab.plots import (
    STAGE_COLORS,
    ecdf,
    plot_latency_cdf,
    plot_latency_histogram,
    plot_timeline,
    plot_timelines,
    stage_color,
    timeline_frame,
)
from lab.trace import Counter, Span, Trace

MS = 1_000_000
T0 = 10**13  # a realistic perf_counter_ns origin: must not cost precision


def pipeline_trace(n: int = 2, *, origin: int = T0, device: str = "cpu", mode: str = "async",
                   counters: bool = False) -> Trace:
    """``n`` requests: queue, pre on host/0, upload, compute, download, post; times in ms from ``origin``."""
    spans: list[Span] = []
    for i in range(n):
        t = origin + i * 10 * MS
        spans += [
            Span("device/0", "compute", i, t + 3 * MS, t + 7 * MS),  # out of lane order on purpose
            Span("queue", "queue", i, t, t + 1 * MS),
            Span("host/0", "pre", i, t + 1 * MS, t + 2 * MS),
            Span("h2d", "upload", i, t + 2 * MS, t + 3 * MS),
            Span("d2h", "download", i, t + 7 * MS, t + 8 * MS),
            Span("host/1", "post", i, t + 8 * MS, t + 9 * MS, {"batch": i}),
        ]
    cs = [Counter("inflight", origin + k * MS, float(k % 3)) for k in range(5)] if counters else []
    return Trace(spans=spans, counters=cs, metadata={"device": device, "mode": mode}, origin_ns=origin)


def by_name(fig: go.Figure) -> dict[str, go.Bar | go.Scattergl]:
    return {t.name: t for t in fig.data}


# -- timeline ------------------------------------------------------------------------------
def test_one_bar_trace_per_stage_in_pipeline_order() -> None:
    fig = plot_timeline(pipeline_trace(3))
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["queue", "pre", "upload", "compute", "download", "post"]
    assert all(isinstance(t, go.Bar) and t.orientation == "h" for t in fig.data)
    assert all(len(t.x) == 3 for t in fig.data)
    assert fig.layout.barmode == "overlay"  # stages share a lane row instead of being grouped side by side


def test_lanes_top_to_bottom_in_trace_order() -> None:
    trace = pipeline_trace()
    fig = plot_timeline(trace)
    assert list(fig.layout.yaxis.categoryarray) == trace.lanes == [
        "queue", "host/0", "host/1", "h2d", "device/0", "d2h"]
    assert fig.layout.yaxis.categoryorder == "array"
    assert fig.layout.yaxis.autorange == "reversed"  # first lane on top


def test_bar_base_and_length_in_the_chosen_unit() -> None:
    trace = Trace(spans=[Span("device/0", "compute", 7, T0 + 1_000_000, T0 + 3_000_000)], origin_ns=T0)
    bar = plot_timeline(trace).data[0]
    np.testing.assert_array_equal(bar.base, [1.0])
    np.testing.assert_array_equal(bar.x, [2.0])
    assert list(bar.y) == ["device/0"]
    us = plot_timeline(trace, time_unit="us").data[0]
    np.testing.assert_array_equal(us.base, [1000.0])
    np.testing.assert_array_equal(us.x, [2000.0])
    assert "µs" in plot_timeline(trace, time_unit="us").layout.xaxis.title.text
    ns = plot_timeline(trace, time_unit="ns").data[0]
    np.testing.assert_array_equal(ns.base, [1_000_000.0])


def test_hover_names_stage_lane_request_start_and_duration() -> None:
    trace = Trace(spans=[Span("device/0", "compute", 7, T0 + MS, T0 + 3 * MS)], origin_ns=T0)
    bar = plot_timeline(trace).data[0]
    template = bar.hovertemplate
    assert "compute" in template and "lane: %{y}" in template
    assert "request: %{customdata[0]}" in template and "start: %{customdata[1]}" in template
    assert "duration: %{customdata[2]}" in template
    assert list(bar.customdata[0]) == ["7", "1.000 ms", "2 ms"]


def test_hover_duration_unit_follows_the_duration() -> None:
    trace = Trace(spans=[Span("h2d", "upload", 1, 0, 12_300), Span("host/0", "pre", -1, 0, 850)])
    row = {t.name: list(t.customdata[0]) for t in plot_timeline(trace).data}
    assert row["upload"][2] == "12.3 µs"
    assert row["pre"][0] == "none" and row["pre"][2] == "850 ns"


def test_attrs_in_hover() -> None:
    fig = plot_timeline(pipeline_trace(1))
    assert "batch=0" in by_name(fig)["post"].customdata[0][2]


def test_stage_colour_is_stable_across_figures() -> None:
    a = plot_timeline(pipeline_trace(2))
    b = plot_timelines([Trace(spans=[Span("device/3", "compute", 0, 0, 5), Span("host/0", "mystery", 0, 5, 9)])])
    assert by_name(a)["compute"].marker.color == by_name(b)["compute"].marker.color == STAGE_COLORS["compute"]
    assert by_name(b)["mystery"].marker.color == stage_color("mystery")
    assert stage_color("mystery") == stage_color("mystery")  # CRC-based: same in every process
    assert len({stage_color(s) for s in ("queue", "pre", "upload", "compute", "download", "post")}) == 6


def test_webgl_line_segments_above_max_bars() -> None:
    trace = pipeline_trace(4)  # 24 spans
    assert all(isinstance(t, go.Bar) for t in plot_timeline(trace, max_bars=24).data)
    fig = plot_timeline(trace, max_bars=10)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert any("WebGL" in a.text for a in fig.layout.annotations)
    compute = by_name(fig)["compute"]
    x = np.asarray(compute.x, dtype=float)
    assert len(x) == 3 * 4
    np.testing.assert_array_equal(x[0:2], [3.0, 7.0])  # start, end in ms
    assert np.isnan(x[2])  # gap between segments
    assert list(compute.y[:3]) == ["device/0", "device/0", None]
    assert len(compute.customdata) == len(x) and compute.customdata[1][0] == "0"
    assert compute.line.width >= 8


def test_counters_in_a_second_row_sharing_x() -> None:
    fig = plot_timeline(pipeline_trace(2, counters=True))
    counter = by_name(fig)["inflight"]
    assert isinstance(counter, go.Scatter) and counter.line.shape == "hv"
    assert counter.xaxis == "x2" and counter.yaxis == "y2"
    assert by_name(fig)["compute"].yaxis == "y"
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    np.testing.assert_array_equal(counter.x, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert list(fig.layout.yaxis.categoryarray)[0] == "queue"
    no_counters = plot_timeline(pipeline_trace(2, counters=True), show_counters=False)
    assert "inflight" not in by_name(no_counters) and "xaxis2" not in no_counters.layout


def test_frame_input_and_missing_columns() -> None:
    frame = pipeline_trace(2).to_frame()
    fig = plot_timeline(frame)
    assert [t.name for t in fig.data][:2] == ["queue", "pre"]
    assert list(fig.layout.yaxis.categoryarray) == pipeline_trace().lanes
    np.testing.assert_array_equal(by_name(fig)["queue"].base, [0.0, 10.0])  # zero: earliest start
    with pytest.raises(ConfigError, match=r"missing columns \['lane', 'start_ns'\]"):
        plot_timeline(frame.drop(columns=["lane", "start_ns"]))


def test_bad_arguments() -> None:
    trace = pipeline_trace(1)
    with pytest.raises(ConfigError, match="time_unit"):
        plot_timeline(trace, time_unit="minutes")
    with pytest.raises(ConfigError, match="color_by"):
        plot_timeline(trace, color_by="colour")
    with pytest.raises(ConfigError, match="max_bars"):
        plot_timeline(trace, max_bars=-1)


def test_empty_trace_is_a_figure_saying_so() -> None:
    fig = plot_timeline(Trace())
    assert len(fig.data) == 0
    assert [a.text for a in fig.layout.annotations] == ["no spans"]
    fig = plot_timelines([Trace(), pipeline_trace(1)])
    assert "no spans" in [a.text for a in fig.layout.annotations]


def test_titles_say_mode_device_and_simulator() -> None:
    fig = plot_timeline(pipeline_trace(1, device="NPU-X (cycle simulator)", mode="batch"))
    title = fig.layout.title.text
    assert "batch" in title and "NPU-X" in title and "(simulator)" in title
    assert "(simulator)" in plot_timeline(pipeline_trace(1, device="Simulated NPU"), title="Mine").layout.title.text
    assert "simulator" not in plot_timeline(pipeline_trace(1, device="cpu")).layout.title.text.lower()
    assert plot_timeline(pipeline_trace(1, device="cpu"), title="Mine").layout.title.text == "Mine"


def test_colour_by_lane_kind_and_request() -> None:
    fig = plot_timeline(pipeline_trace(2), color_by="lane_kind")
    assert [t.name for t in fig.data] == ["queue", "host", "h2d", "device", "d2h"]
    host = by_name(fig)["host"]
    assert host.customdata[0][3] == "pre" and "customdata[3]" in host.hovertemplate  # stage still in the hover
    fig = plot_timeline(pipeline_trace(3), color_by="request_id")
    assert len(fig.data) == 3 and not any(t.showlegend for t in fig.data)


def test_many_stage_names_fold_into_other() -> None:
    spans = [Span("device/0", f"op{i}", 0, i, i + 1 + i) for i in range(40)] + [Span("host/0", "pre", 0, 0, 1)]
    fig = plot_timeline(Trace(spans=spans))
    names = [t.name for t in fig.data]
    assert len(names) <= 20 and names[0] == "pre" and names[-1] == "other"
    assert "op39" in names  # the longest stages keep their own colour
    assert by_name(fig)["other"].customdata[0][3] == "op0"


# -- several timelines ---------------------------------------------------------------------------
def test_timelines_stacked_with_shared_axis_and_single_legend() -> None:
    sync = pipeline_trace(2, mode="sync", origin=T0)
    batch = pipeline_trace(2, mode="batch", origin=5 * T0)
    fig = plot_timelines([sync, batch], ["sync", "batch"])
    assert [a.text for a in fig.layout.annotations] == ["sync", "batch"]
    assert len(fig.data) == 12
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert sorted(legend) == sorted(set(legend)) and len(legend) == 6
    # each relative to its own origin
    computes = [t for t in fig.data if t.name == "compute"]
    np.testing.assert_array_equal(computes[0].base, computes[1].base)
    assert {computes[0].yaxis, computes[1].yaxis} == {"y", "y2"}
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    assert list(fig.layout.yaxis2.categoryarray) == batch.lanes
    default = plot_timelines([sync, pipeline_trace(1, device="simulator")])
    assert "sync" in default.layout.annotations[0].text
    assert "(simulator)" in default.layout.annotations[1].text
    with pytest.raises(ConfigError, match="titles"):
        plot_timelines([sync], ["a", "b"])
    with pytest.raises(ConfigError):
        plot_timelines([])


# -- latency distributions --------------------------------------------------------------------
def test_ecdf_is_sorted_monotone_and_ends_at_one() -> None:
    values, fractions = ecdf([5, 1, 3, 3])
    np.testing.assert_array_equal(values, [1, 3, 3, 5])
    np.testing.assert_array_equal(fractions, [0.25, 0.5, 0.75, 1.0])
    assert ecdf([])[0].size == 0


def test_latency_cdf_series_monotone_ending_at_one() -> None:
    rng = np.random.default_rng(0)
    lat = {"sync": rng.integers(1 * MS, 5 * MS, 500), "async": rng.integers(2 * MS, 9 * MS, 20_000)}
    fig = plot_latency_cdf(lat, max_points=1000)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.legendgroup for t in lines] == ["sync", "async"]
    for t, values in zip(lines, lat.values(), strict=True):
        y = np.asarray(t.y)
        x = np.asarray(t.x)
        assert np.all(np.diff(y) >= 0) and np.all(np.diff(x) >= 0)
        assert y[-1] == 1.0 and y[0] == 0.0
        assert x[-1] == values.max() / MS and x[0] == values.min() / MS
        assert len(x) <= 1001
    assert "ms" in fig.layout.xaxis.title.text


def test_latency_cdf_percentile_markers() -> None:
    lat = np.arange(1, 101) * MS
    fig = plot_latency_cdf(lat, percentiles=(50, 99))
    markers = [t for t in fig.data if "markers" in t.mode]
    assert len(markers) == 1
    np.testing.assert_allclose(markers[0].x, np.percentile(lat, [50, 99]) / MS)
    np.testing.assert_array_equal(markers[0].y, [0.5, 0.99])
    assert markers[0].text[0].startswith("p50")
    assert len(fig.layout.shapes) == 2  # a guide line per percentile


def test_latency_cdf_empty_and_bad_input() -> None:
    fig = plot_latency_cdf([])
    assert [a.text for a in fig.layout.annotations] == ["no latencies"]
    with pytest.raises(ConfigError, match=">= 0"):
        plot_latency_cdf([1, -2])
    with pytest.raises(ConfigError, match="percentiles"):
        plot_latency_cdf([1, 2], percentiles=(0, 50))
    with pytest.raises(ConfigError, match="1-D"):
        plot_latency_cdf(np.zeros((2, 2)))


def test_latency_histogram_counts_every_request() -> None:
    lat = {"sync": [1 * MS, 2 * MS, 2 * MS, 9 * MS], "async": [3 * MS]}
    fig = plot_latency_histogram(lat, bins=8)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [int(np.sum(b.y)) for b in bars] == [4, 1]
    assert bars[0].marker.color != bars[1].marker.color
    assert len(fig.layout.shapes) == 6  # p50, p90, p99 per series
    assert [a.text for a in plot_latency_histogram([]).layout.annotations] == ["no latencies"]


def test_timeline_frame_is_the_computed_table() -> None:
    frame = timeline_frame(pipeline_trace(1), time_unit="ms")
    row = frame[frame["name"] == "compute"].iloc[0]
    assert (row["start"], row["end"], row["duration"]) == (3.0, 7.0, 4.0)
    assert row["color"] == STAGE_COLORS["compute"] and row["lane_kind"] == "device"
