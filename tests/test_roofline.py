"""The machine roofline (lab.bench.roofline) and its plots (lab.plots.roofline): roof math, placement, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from lab.bench import ops, roofline
from lab.bench.roofline import Roofline
from lab.errors import ConfigError
from lab.plots import roofline as rplots

ROOF = Roofline(100e9, 10e9, "matmul", "copy", 50e9, "small copy")
TINY = ops.MeasureOptions(warmup=0, min_run_time_s=0.001, max_run_time_s=0.01)


def test_roof_math() -> None:
    assert ROOF.ridge_intensity == pytest.approx(10.0)
    np.testing.assert_allclose(ROOF.attainable_flop_per_s(np.array([0.5, 10.0, 40.0])), [5e9, 100e9, 100e9])
    assert ROOF.attainable_flop_per_s(1.0, cache=True) == pytest.approx(50e9)
    assert ROOF.to_dict()["peak_gflop_per_s"] == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="no cache roof"):
        Roofline(1e9, 1e9).attainable_flop_per_s(1.0, cache=True)
    with pytest.raises(ConfigError, match="positive peaks"):
        Roofline(0.0, 1e9)


def _peaks() -> pd.DataFrame:
    return pd.DataFrame([
        {"kind": "compute", "method": "torch matmul", "backend": "torch", "best_gflop_per_s": 80.0,
         "best_gb_per_s": 1.0},
        {"kind": "compute", "method": "onnx matmul", "backend": "onnx", "best_gflop_per_s": 90.0,
         "best_gb_per_s": 1.0},
        {"kind": "memory", "method": "numpy copy", "backend": "numpy", "best_gflop_per_s": np.nan,
         "best_gb_per_s": 12.0},
        {"kind": "memory", "method": "torch copy", "backend": "torch", "best_gflop_per_s": np.nan,
         "best_gb_per_s": 15.0},
        {"kind": "cache", "method": "numpy copy 2 MiB", "backend": "numpy", "best_gflop_per_s": np.nan,
         "best_gb_per_s": 60.0},
    ])


def test_roofline_from_peaks_takes_the_best() -> None:
    roof = roofline.roofline_from_peaks(_peaks())
    assert roof.peak_flop_per_s == pytest.approx(90e9) and roof.compute_source.startswith("onnx matmul")
    assert roof.peak_byte_per_s == pytest.approx(15e9) and roof.cache_byte_per_s == pytest.approx(60e9)
    assert roofline.roofline_from_peaks(_peaks(), backend="torch").peak_flop_per_s == pytest.approx(80e9)
    with pytest.raises(ConfigError, match="compute and a memory row"):
        roofline.roofline_from_peaks(_peaks(), backend="tpu")


def _points() -> pd.DataFrame:
    return pd.DataFrame({
        "study": ["a", "a", "b", "b"], "backend": ["torch", "onnx", "torch", "onnx"],
        "case": ["relu", "conv", "gemv", "transpose"], "op": ["relu", "conv2d", "linear", "transpose"],
        # relu: 1 FLOP/8 B at 1 ms; conv: 100 FLOP/B, 50 GFLOP/s; gemv: 0.5 FLOP/B faster than DRAM; layout: 0 FLOPs
        "flops": [1_000_000, 50_000_000, 20_000_000, 0], "bytes": [8_000_000, 500_000, 40_000_000, 2_000_000],
        "latency_ns": [1_000_000, 1_000_000, 1_000_000, 1_000_000],
    })


def test_place_on_roofline() -> None:
    placed = roofline.place_on_roofline(_points(), ROOF).set_index("case")
    assert list(placed["bound"]) == ["memory", "compute", "memory", "data movement"]
    # relu: intensity 0.125 -> attainable 1.25 GFLOP/s; achieved 1 GFLOP/s
    assert placed.loc["relu", "attainable_gflop_per_s"] == pytest.approx(1.25)
    assert placed.loc["relu", "roof_fraction"] == pytest.approx(0.8)
    assert placed.loc["conv", "roof_fraction"] == pytest.approx(0.5)
    assert bool(placed.loc["gemv", "above_roof"]) and placed.loc["gemv", "roof_fraction"] == pytest.approx(4.0)
    assert placed.loc["gemv", "cache_roof_fraction"] == pytest.approx(0.8)
    assert np.isnan(placed.loc["transpose", "roof_fraction"])
    assert placed.loc["transpose", "bandwidth_fraction"] == pytest.approx(0.2)
    summary = roofline.roofline_summary(roofline.place_on_roofline(_points(), ROOF))
    assert summary.loc[("b", "torch"), "above_roof"] == 1 and summary["ops"].sum() == 4
    with pytest.raises(ConfigError, match="lack column"):
        roofline.place_on_roofline(_points().drop(columns="bytes"), ROOF)
    with pytest.raises(ConfigError, match="place_on_roofline"):
        roofline.roofline_summary(_points())


def test_measured_peaks_have_every_kind() -> None:
    peaks = roofline.measure_peaks(matmul_size=64, copy_bytes=2**20, options=TINY, progress=False)
    have = ops.available_backends()
    assert set(peaks.loc[peaks["kind"] == "compute", "backend"]) == set(have)
    assert set(peaks["kind"]) == {"compute", "memory", "cache"}
    assert (peaks["min_ns"] > 0).all() and (peaks["min_ns"] <= peaks["latency_ns"]).all()
    compute = peaks[peaks["kind"] == "compute"]
    assert (compute["flops"] == 2 * 64**3).all()
    memory = peaks[peaks["kind"] == "memory"]
    assert (memory["bytes"] == 2 * 2**20).all()  # read + write
    assert (peaks["best_gb_per_s"] >= peaks["gb_per_s"] * 0.999).all()  # the best sample is the fastest
    roof = roofline.roofline_from_peaks(peaks)
    assert roof.peak_flop_per_s > 0 and roof.cache_byte_per_s is not None
    with pytest.raises(ConfigError):
        roofline.measure_peak_bandwidth(nbytes=10, options=TINY)
    with pytest.raises(ConfigError):
        roofline.measure_peak_compute(size=3, options=TINY)


def test_plot_roofline() -> None:
    fig = rplots.plot_roofline(_points(), ROOF)
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert names[:2] == ["DRAM roof", "cache roof"]
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == 3  # the layout op has no FLOPs: left out, and the title says so
    assert "1 op(s) without FLOPs left out" in fig.layout.title.text
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    roof_trace = fig.data[0]
    assert max(roof_trace.y) == pytest.approx(100.0)  # flat at the compute peak (GFLOP/s)
    two = rplots.plot_roofline(_points(), {"torch": ROOF, "onnx": Roofline(50e9, 10e9)}, symbol=None)
    assert {"DRAM roof (torch)", "DRAM roof (onnx)", "cache roof (torch)"} <= {t.name for t in two.data}
    with pytest.raises(ConfigError, match="lacks column"):
        rplots.plot_roofline(_points().drop(columns="latency_ns"), ROOF)
    with pytest.raises(ConfigError, match="no row has FLOPs"):
        rplots.plot_roofline(_points().assign(flops=0), ROOF)


def test_plot_bandwidth_and_sweep() -> None:
    fig = rplots.plot_bandwidth(_points(), ROOF)
    assert len(fig.data) == 4 + 2  # one line per (backend, op), then the DRAM and cache peak lines
    assert [list(t.y) for t in fig.data[-2:]] == [[10.0, 10.0], [50.0, 50.0]]
    assert list(fig.data[-1].x) == [500_000.0, 40_000_000.0]  # spanning the points
    sweep = pd.DataFrame({"backend": ["torch"] * 3 + ["onnx"] * 3, "sweep": ["K"] * 6, "size": [1, 2, 3] * 2,
                          "gflop_per_s": [1.0, 2.0, 3.0, 2.0, 3.0, 4.0], "case": list("abcdef")})
    fig = rplots.plot_rate_sweep(sweep, x="size", dash="sweep", text="case", peak=10.0, log_x=True)
    assert [t.name for t in fig.data] == ["torch · K", "onnx · K", "peak 10"]
    assert list(fig.data[0].y) == [1.0, 2.0, 3.0] and fig.layout.xaxis.type == "log"
    assert list(fig.data[-1].y) == [10.0, 10.0]
    with pytest.raises(ConfigError, match="lacks column"):
        rplots.plot_rate_sweep(sweep, x="nope")
