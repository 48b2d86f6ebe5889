"""lab.bench.timing_study: exact checks on virtual time and synthetic tables; a few loose real-time runs."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from lab.bench import timing_study as study
from lab.clock import VirtualClock
from lab.errors import ConfigError, RuntimeUnavailable
from lab.trace import Span, Trace

LAB, NAIVE = study.METHOD_LAB, study.METHOD_NAIVE


def test_importing_the_study_imports_no_backend_and_no_plotting() -> None:
    code = ("import sys, lab.bench.timing_study; "
            "print([m for m in ('torch', 'onnxruntime', 'plotly') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the reference device --------------------------------------------------------------------------
def test_known_duration_npu_is_one_compute_job_of_exactly_the_duration() -> None:
    with study.known_duration_npu(1_234_567, clock=VirtualClock()) as rt:
        assert rt.modelled_stage_ns() == {"quantize": 0, "upload": 0, "compute": 1_234_567, "download": 0,
                                          "dequantize": 0}
        assert rt.device.startswith("simulated NPU (simulator)")
        assert rt.pe_mode == "fused" and rt.mode == "timing"
        assert rt.lag_tolerance_ns == study.KNOWN_DURATION_LAG_TOLERANCE_NS


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_known_duration_npu_refuses_a_bad_duration(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"duration_ns: expected an integer >= 1, got"):
        study.known_duration_npu(bad)  # type: ignore[arg-type]


# -- naive vs correct -----------------------------------------------------------------------------
def test_virtual_time_measure_equals_the_modelled_duration_exactly() -> None:
    table = study.accuracy_table([0.5, 2.0], clock="virtual", rounds=2, min_run_time_s=0.01)
    assert len(table) == 2 * 2 * 2  # rounds x durations x methods
    right = table[table["method"] == LAB]
    assert list(right["median_ms"]) == [0.5, 2.0, 0.5, 2.0]
    assert (right["rel_error"] == 0).all() and (right["block_size"] == 1).all()
    assert (right["num_warnings"] == 0).all() and (right["late_jobs"] == 0).all()
    naive = table[table["method"] == NAIVE]
    assert naive["median_ms"].isna().all()
    assert all("not defined in virtual time" in w[0] for w in naive["warnings"])
    summary = study.accuracy_summary(table)
    lab_rows = summary[summary["method"] == LAB]
    assert list(lab_rows["rounds"]) == [2, 2] and (lab_rows["abs_rel_error"] == 0).all()


def test_real_time_naive_times_the_enqueue_and_measure_waits_for_the_device() -> None:
    # loose bounds: a noisy 2-core machine; the truth is 3 ms per request
    table = study.accuracy_table([3.0], clock="real", naive_samples=10, min_run_time_s=0.02, max_run_time_s=0.2)
    rows = table.set_index("method")
    assert rows.loc[NAIVE, "median_ms"] < 0.3 * 3.0
    assert rows.loc[NAIVE, "rel_error"] < -0.7
    assert "naive timing" in rows.loc[NAIVE, "warnings"][0]
    assert 0.98 * 3.0 < rows.loc[LAB, "median_ms"] < 1.5 * 3.0
    assert rows.loc[LAB, "true_ms"] == 3.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clock": "wall"}, r"clock: expected one of \['real', 'virtual'\], got 'wall'"),
    ({"durations_ms": []}, "expected at least one duration"),
    ({"durations_ms": [1.0, -2.0]}, r"durations_ms: expected a number > 0, got -2.0"),
    ({"rounds": 0}, r"rounds: expected an integer >= 1, got 0"),
    ({"naive_samples": 0}, r"naive_samples: expected 1..200"),
])
def test_accuracy_table_checks_its_options(kwargs: dict, message: str) -> None:
    args = {"durations_ms": [1.0], **kwargs}
    with pytest.raises(ConfigError, match=message):
        study.accuracy_table(args.pop("durations_ms"), **args)


def _synthetic_runs() -> pd.DataFrame:
    rows = []
    for rnd, (lab_ms, naive_ms) in enumerate([(1.10, 0.010), (1.20, 0.020), (1.30, 0.030)]):
        for method, med in ((LAB, lab_ms), (NAIVE, naive_ms)):
            rows.append({"clock": "real", "duration_ms": 1.0, "true_ms": 1.0, "method": method, "round": rnd,
                         "median_ms": med, "rel_error": med - 1.0, "abs_rel_error": abs(med - 1.0),
                         "block_size": 1 + rnd, "num_warnings": 1 if method == NAIVE else 0,
                         "warnings": ["naive timing: ..."] if method == NAIVE else [], "late_jobs": rnd,
                         "max_lateness_ms": 0.5 * rnd})
    return pd.DataFrame(rows)


def test_accuracy_summary_takes_medians_over_rounds() -> None:
    s = study.accuracy_summary(_synthetic_runs()).set_index("method")
    assert s.loc[LAB, "median_ms"] == pytest.approx(1.2)
    assert s.loc[LAB, "rel_error"] == pytest.approx(0.2)
    assert s.loc[LAB, "worst_abs_rel_error"] == pytest.approx(0.3)
    assert s.loc[LAB, "block_size"] == 2 and s.loc[LAB, "late_jobs"] == 3 and s.loc[LAB, "max_lateness_ms"] == 1.0
    assert s.loc[NAIVE, "median_ms"] == pytest.approx(0.02) and s.loc[NAIVE, "num_warnings"] == 3


def test_accuracy_verdicts_and_warnings_table_are_computed_from_the_table() -> None:
    runs = _synthetic_runs()
    virtual = runs[runs["method"] == LAB].assign(clock="virtual", median_ms=1.0, rel_error=0.0, abs_rel_error=0.0)
    lines = study.accuracy_verdicts(study.accuracy_summary(pd.concat([runs, virtual], ignore_index=True)))
    assert lines[0].startswith("1 ms per request: lab.measure 1.2 ms (+20.00%, blocks of 2); naive 0.02 ms (-98.00%)")
    assert "50x shorter than the work" in lines[0]
    assert "equal to the truth" in lines[1]
    w = study.warnings_table(runs)
    assert w.to_dict(orient="records") == [
        {"method": NAIVE, "warning": "naive timing", "count": 3, "example": "naive timing: ..."}]


# -- blocks -------------------------------------------------------------------------------------------
def test_block_cost_fit_recovers_slope_and_intercept_exactly() -> None:
    n = np.array([1, 2, 5, 10, 50])
    sweep = pd.DataFrame({"block_size": n, "true_ms": 1.0, "block_ms": 0.15 + n * 1.0})
    fit = study.block_cost_fit(sweep)
    assert fit["per_call_ms"] == pytest.approx(1.0) and fit["fixed_us"] == pytest.approx(150.0)
    assert fit["rel_error"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="at least 2 distinct block sizes"):
        study.block_cost_fit(sweep.iloc[:1])


def test_block_verdict_predicts_lab_measure_error_from_the_fixed_cost() -> None:
    n = np.array([1, 10, 100])
    sweep = pd.DataFrame({"block_size": n, "true_ms": 1.0, "block_ms": 0.2 + n * 1.0,
                          "per_call_ms": (0.2 + n) / n, "rel_error": 0.2 / n})
    text = study.block_verdict(sweep, study.block_cost_fit(sweep), study.accuracy_summary(_synthetic_runs()))
    assert "Each block costs 200 us" in text and "20.0% of a 1 ms request" in text and "0.20% with 100 calls" in text
    assert "lab.measure used blocks of 2 call(s) at 1 ms: this fixed cost predicts +10.0%" in text
    assert text.endswith("not for the completion path paid when work is pending.")
    runs = _synthetic_runs().assign(block_size=200)
    text = study.block_verdict(sweep, study.block_cost_fit(sweep), study.accuracy_summary(runs))
    assert "predicts +0.1%" in text and text.endswith("long enough to make this cost negligible.")


def test_block_sweep_real_time_per_call_time_falls_towards_the_truth() -> None:
    sweep = study.block_sweep(2.0, block_sizes=(1, 20), repeats=2)
    assert list(sweep["block_size"]) == [1, 20] and (sweep["repeats"] == 2).all()
    one, twenty = sweep.iloc[0], sweep.iloc[1]
    assert one.rel_error > -0.02 and twenty.rel_error > -0.02  # a synchronized block never reads short
    assert abs(twenty.rel_error) < 0.2  # loose: a noisy machine
    with pytest.raises(ConfigError, match=r"block_sizes: expected integers >= 1, got \[0\]"):
        study.block_sweep(1.0, block_sizes=[0])


# -- sync vs async ------------------------------------------------------------------------------------
def test_dispatch_table_from_a_synthetic_trace() -> None:
    trace = Trace(spans=[
        Span("host/0", "infer", 1, 0, 2_100_000), Span("device/0", "compute", 1, 50_000, 2_050_000),
        Span("host/0", "submit", 2, 2_200_000, 2_230_000), Span("device/0", "compute", 2, 2_230_000, 4_230_000),
        Span("host/0", "synchronize", -1, 2_230_000, 4_400_000),
    ])
    rows = study.dispatch_table(trace).set_index("request_id")
    assert rows.loc[1, "api"] == "infer() (sync)" and not rows.loc[1, "returned_before_done"]
    assert rows.loc[1, "returned_after_ms"] == 2.1 and rows.loc[1, "done_after_ms"] == 2.05
    assert rows.loc[2, "api"] == "submit() (async)" and rows.loc[2, "returned_before_done"]
    assert rows.loc[2, "returned_after_ms"] == pytest.approx(0.03) and rows.loc[2, "done_after_ms"] == 2.03
    assert rows.loc[2, "device_ms"] == 2.0


def test_dispatch_trace_real_time() -> None:
    trace = study.dispatch_trace(1.0, requests=2)
    assert "(simulator)" in trace.metadata["device"] and trace.metadata["modelled_request_ns"] == 1_000_000
    names = [s.name for s in trace.spans if s.lane == "host/0"]
    assert names == ["infer", "infer", "submit", "submit", "synchronize"]
    table = study.dispatch_table(trace)
    assert list(table["returned_before_done"]) == [False, False, True, True]
    assert (table["device_ms"] == 1.0).all()
    with pytest.raises(ConfigError, match="requests: expected an integer >= 1, got 0"):
        study.dispatch_trace(1.0, requests=0)


# -- distributions ------------------------------------------------------------------------------------
def test_distribution_table_measures_how_outliers_pull_the_mean() -> None:
    t = study.distribution_table({"a": [10_000] * 9 + [110_000], "b": [11_000] * 10}).set_index("series")
    a = t.loc["a"]
    assert (a.n, a.median_us, a.mean_us, a.max_us) == (10, 10.0, 20.0, 110.0)
    assert a.outliers == 1 and a.outlier_share == 0.1 and a.mean_over_median == 2.0
    assert a.mean_without_outliers_us == 10.0 and a.mean_pull == 1.0 and a.outlier_time_share == 110 / 200
    assert t.loc["b", "outliers"] == 0 and t.loc["b", "mean_pull"] == 0.0
    lines = study.distribution_verdicts(t.reset_index(), baseline="a")
    assert "1 of 10 samples (10.0%) above twice the median take 55% of the time and pull the mean +100%" in lines[0]
    assert lines[-1] == ("a -> b: the median moved +10.0%, the mean -45.0%: the median is the steadier summary "
                         "of the same work here.")
    with pytest.raises(ConfigError, match="expected at least one sample"):
        study.distribution_table({"empty": []})
    with pytest.raises(ConfigError, match="outlier_ratio: expected > 1"):
        study.distribution_table({"a": [1]}, outlier_ratio=1.0)


def test_noisy_neighbour_runs_only_inside_its_block() -> None:
    def alive() -> bool:
        return any(t.name == "noisy-neighbour" for t in threading.enumerate())

    with study.noisy_neighbour(0.5, 2.0):
        assert alive()
    assert not alive()
    with pytest.raises(ConfigError, match="busy_ms must be below period_ms"):
        with study.noisy_neighbour(3.0, 2.0):
            pass


def test_repeat_samples_are_per_call_ns_without_the_first_and_warmup_calls() -> None:
    calls = []
    s = study.repeat_samples(lambda: calls.append(1), num_samples=50, warmup=5)
    assert s.dtype == np.int64 and s.shape == (50,) and (s >= 0).all()
    assert len(calls) == 1 + 5 + 50


# -- overhead, CPU, first call, CUDA --------------------------------------------------------------------
def test_clock_table_probes_each_clock() -> None:
    t = study.clock_table(num_reads=101).set_index("clock")
    assert list(t.index) == ["perf_counter_ns", "monotonic_ns", "time_ns", "process_time_ns"]
    assert (t["overhead_ns"] >= 0).all() and (t["resolution_ns"] >= 1).all()
    assert bool(t.loc["perf_counter_ns", "monotonic"]) and not bool(t.loc["time_ns", "monotonic"])


def test_short_function_table_and_overhead_verdicts() -> None:
    short = study.short_function_table({"empty": lambda: None}, naive_samples=200, min_run_time_s=0.01,
                                       max_run_time_s=0.05)
    row = short.iloc[0]
    assert row.function == "empty" and row.block_size > 1 and row.naive_ns > 0 and row.blocked_ns > 0
    assert row.naive_over_blocked == pytest.approx(row.naive_ns / row.blocked_ns)
    lines = study.overhead_verdicts(study.clock_table(num_reads=101), short)
    assert lines[0].startswith("perf_counter_ns costs") and lines[1].startswith("empty: naive")


def _unavailable(model_path: object, **options: object) -> object:
    raise RuntimeUnavailable("the test's backend is not installed")


def test_first_call_and_cpu_sync_tables_on_onnx_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.runtimes import RUNTIMES

    monkeypatch.setitem(RUNTIMES, "missing", _unavailable)
    first = study.first_call_table(runtimes=("onnx", "missing"), min_run_time_s=0.01, max_run_time_s=0.05)
    onnx, missing = first.iloc[0], first.iloc[1]
    assert onnx.status.startswith("ran on") and len(onnx.warmup_ms) == 3 and onnx.first_ms > 0
    assert onnx.first_over_median == pytest.approx(onnx.first_ms / onnx.median_ms)
    assert missing.status == "skipped: the test's backend is not installed" and math.isnan(missing.median_ms)
    lines = study.first_call_verdicts(first)
    assert lines[0].startswith("onnx: the first call took") and lines[1] == f"missing: {missing.status}."
    cpu = study.cpu_sync_table(runtimes=("onnx", "missing"), naive_samples=50, min_run_time_s=0.01,
                               max_run_time_s=0.05)
    assert 0.2 < cpu.iloc[0].naive_over_synchronized < 5  # both see the work; loose: a noisy machine
    assert cpu.iloc[1].status.startswith("skipped") and math.isnan(cpu.iloc[1].naive_ms)
    assert study.cpu_sync_verdict(cpu)[0].startswith("onnx (CPU, synchronous): naive")


def test_cuda_comparison_says_skipped_without_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: covered by test_cuda_comparison_on_a_gpu")
    table = study.cuda_comparison()
    assert len(table) == 1 and table.iloc[0]["method"] == "all"
    assert table.iloc[0]["status"].startswith("skipped: no CUDA (") and math.isnan(table.iloc[0]["median_ms"])
    assert study.cuda_verdict(table) == table.iloc[0]["status"]


@pytest.mark.gpu
def test_cuda_comparison_on_a_gpu() -> None:
    table = study.cuda_comparison(size=256, depth=4, event_samples=10, min_run_time_s=0.05, max_run_time_s=0.5)
    by = {m.split(":")[0].split("(")[0].strip(): r for m, r in table.set_index("method").iterrows()}
    assert set(by) == {"naive", "lab.measure", "CUDA events around model"}
    assert abs(by["lab.measure"]["over_events"] - 1) <= 0.10
    assert by["naive"]["over_events"] < 0.5
    assert study.cuda_verdict(table).startswith("ran on ")


# -- plots ----------------------------------------------------------------------------------------------
def test_plots_return_figures_with_one_trace_per_series() -> None:
    summary = study.accuracy_summary(_synthetic_runs())
    fig = study.plot_accuracy(summary)
    assert [t.name for t in fig.data] == [f"{LAB} (real time)", f"{NAIVE} (real time)", "measured = true"]
    sweep = pd.DataFrame({"block_size": [1, 10], "true_ms": 1.0, "per_call_ms": [1.2, 1.02], "rel_error": [0.2, 0.02],
                          "fixed_us": [200.0, 200.0]})
    assert len(study.plot_block_sweep(sweep).data) == 1
    first = pd.DataFrame([{"runtime": "onnx", "first_ms": 1.0, "warmup_ms": [0.2, 0.1], "median_ms": 0.05}])
    assert list(study.plot_first_calls(first).data[0].x) == ["first call", "warm-up 1", "warm-up 2", "median"]
    fig = study.plot_repeats({"quiet": [1000, 2000, 3000], "noisy": [1000, 9000]}, bins=5)
    assert [t.type for t in fig.data] == ["bar", "scatter", "bar", "scatter"]
    assert fig.data[0].name == "quiet: median 2 us, mean 2 us"
    with pytest.raises(ConfigError, match="expected positive samples"):
        study.plot_repeats({"empty": []})
