"""lab.widgets: controls edit a RunConfig, background runs stop for real, the explorer draws (headless)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lab
from lab.config import Mode, RunConfig
from lab.errors import ConfigError, RequestCancelled
from lab.widgets import (
    CONTROLLED_FIELDS,
    BackgroundRun,
    Explorer,
    ExplorerRun,
    RunControls,
    StoppableSamples,
    describe_config,
    find_predictor,
    metrics_table,
    planned_requests,
    predicted_vs_measured,
    timeline_window,
)

ROOT = Path(__file__).resolve().parents[1]
SIM = RunConfig(model="digits", runtime="simnpu", preset="teaching", requests=30, warmup=2)


# -- controls: they edit the config and nothing else --------------------------------------------


def test_controls_start_from_the_config_and_keep_uncontrolled_fields() -> None:
    config = RunConfig(model="digits", runtime="simnpu", preset="teaching", seed=7, threads=1, profile=True,
                       max_delay_ms=3.5)
    controls = RunControls(config)
    assert controls.config == config and controls.error is None
    controls.set(workers=3)
    assert controls.config == dataclasses.replace(config, workers=3)  # seed, threads, ... untouched


def test_controls_cover_the_issue_knobs() -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(CONTROLLED_FIELDS) <= fields
    assert {"model", "runtime", "preset", "mode", "workers", "max_inflight", "parallel", "batch_size", "load",
            "rate", "requests"} <= set(CONTROLLED_FIELDS)


def test_changing_widgets_as_a_user_builds_the_same_config_a_notebook_would() -> None:
    controls = RunControls(SIM)
    w = controls.widgets
    w["mode"].value = "async"  # what a click on the "async" toggle does
    w["workers"].value = 4
    w["max_inflight"].value = 8
    assert controls.config == RunConfig(model="digits", runtime="simnpu", preset="teaching", requests=30, warmup=2,
                                        mode="async", workers=4, max_inflight=8)
    assert controls.config.mode is Mode.ASYNC
    w["max_inflight"].label = "no cap"
    assert controls.config.max_inflight is None
    w["parallel"].label = "parallel=2"
    assert controls.config.parallel == 2
    w["preset"].label = "runtime default"
    assert controls.config.preset is None


def test_an_invalid_combination_keeps_the_last_valid_config_and_says_why() -> None:
    explorer = Explorer(SIM, live=False)
    controls = explorer.controls
    seen: list[tuple[Any, Any]] = []
    controls.on_change(lambda config, error: seen.append((config, error)))
    with pytest.raises(ConfigError, match="rate"):
        controls.set(load="poisson")
    assert controls.config == SIM  # unchanged
    assert "rate" in (controls.error or "") and "rate" in controls.message.value
    assert explorer.run_button.disabled
    with pytest.raises(ConfigError, match="rate"):
        explorer.run()
    controls.set(rate=250.0)
    assert controls.error is None and not explorer.run_button.disabled
    assert controls.config == dataclasses.replace(SIM, load="poisson", rate=250.0)
    assert seen[0][0] is None and seen[-1][0] == controls.config
    with pytest.raises(ConfigError, match="no control for"):
        controls.set(seed=3)


def test_set_config_shows_values_that_are_not_in_a_list() -> None:
    controls = RunControls()
    config = RunConfig(mode="async", max_inflight=3, runtime="simnpu", preset="atom", pe_mode="fused")
    controls.set_config(config)
    assert controls.config == config
    assert controls.widgets["max_inflight"].value == 3
    assert controls.widgets["pe_mode"].value == "fused"


def test_controls_grey_out_what_the_mode_ignores() -> None:
    controls = RunControls(RunConfig(mode="sync", runtime="onnx"))
    w = controls.widgets
    assert w["workers"].disabled and w["batch_size"].disabled and w["preset"].disabled and w["rate"].disabled
    controls.set(mode="async", runtime="simnpu")
    assert not w["workers"].disabled and not w["preset"].disabled and w["batch_size"].disabled
    controls.set(parallel=2)
    assert w["workers"].disabled and not w["parallel"].disabled
    controls.set(mode="batch", parallel=None)
    assert not w["batch_size"].disabled and w["parallel"].disabled


# -- background runs: progress and a real stop --------------------------------------------------


def test_stoppable_samples_count_and_refuse_after_stop() -> None:
    stop = threading.Event()
    taken: list[int] = []
    samples = StoppableSamples(np.arange(5), stop, taken.append)
    assert len(samples) == 5 and samples[3] == 3 and samples[0] == 0
    assert samples.taken == 2 and taken == [1, 2]
    stop.set()
    with pytest.raises(RequestCancelled, match="after 2 requests"):
        samples[1]


def test_planned_requests_rounds_batch_warmup_up() -> None:
    assert planned_requests(RunConfig(requests=10, warmup=3)) == 13
    assert planned_requests(RunConfig(mode="batch", batch_size=4, requests=10, warmup=3)) == 14
    assert planned_requests(RunConfig(mode="batch", batch_size=4, requests=10, warmup=3, load="offline")) == 13


def _fake_run(delay_s: float = 0.0) -> Any:
    """A run that takes every sample like a runner does, then returns a real result from the sync runner."""
    def run(config: RunConfig, *, workload: Any, runtime: Any, samples: Any) -> Any:
        for i in range(planned_requests(config)):
            samples[i % len(samples)]
            time.sleep(delay_s)
        return lab.SyncRunner(runtime, workload=workload).run_all(workload.samples[:4], requests=4)
    return run


def test_background_run_reports_progress_and_finishes() -> None:
    progress: list[tuple[int, int]] = []
    done = threading.Event()
    task = BackgroundRun(SIM, on_progress=lambda i, n: progress.append((i, n)), on_done=lambda t: done.set(),
                         progress_interval_s=0.0, run=_fake_run())
    assert task.state == "pending"
    task.start()
    assert task.wait(60) and done.is_set()
    assert task.state == "done" and task.error is None
    assert task.issued == task.total == 32
    assert progress[-1] == (32, 32) and len(progress) >= 32
    assert task.result.metrics.extra["accuracy"] is not None  # lab.run leaves it out for given samples
    with pytest.raises(RuntimeError, match="already started"):
        task.start()


def test_background_run_records_a_failure() -> None:
    def broken(config: RunConfig, **_kw: Any) -> Any:
        raise ValueError("boom")

    task = BackgroundRun(SIM, run=broken).start()
    assert task.wait(60)
    assert task.state == "failed" and isinstance(task.error, ValueError)


def test_stop_halts_the_fake_run_before_its_next_request() -> None:
    task = BackgroundRun(dataclasses.replace(SIM, requests=100_000), run=_fake_run(0.001)).start()
    while task.issued < 5:
        time.sleep(0.01)
    task.stop()
    assert task.wait(30)
    assert task.state == "stopped" and isinstance(task.error, RequestCancelled)
    assert task.issued < 100_000


@pytest.mark.parametrize("overrides", [
    {"mode": "async", "workers": 2},  # uncapped: every request is admitted at once
    {"mode": "sync"},
    {"mode": "batch", "batch_size": 8},
    {"mode": "async", "load": "closed", "concurrency": 4},
], ids=["async-uncapped", "sync", "batch", "closed-loop"])
def test_stop_really_stops_a_real_simulator_run(overrides: dict[str, Any]) -> None:
    # 20,000 requests at >= 2.9 ms of modelled compute would run for about a minute
    config = dataclasses.replace(SIM, requests=20_000, **overrides)
    task = BackgroundRun(config).start()
    deadline = time.monotonic() + 60
    while task.issued < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    stopped_at = time.monotonic()
    task.stop()
    assert task.wait(20), "the run did not end after stop()"
    assert time.monotonic() - stopped_at < 10
    assert task.state == "stopped"
    assert task._runtime is not None and task._runtime.is_closed


# -- views: what is drawn, computed without widgets ---------------------------------------------


def test_describe_config_names_the_knobs_the_mode_uses() -> None:
    assert describe_config(SIM) == "sync, digits on simnpu/teaching"
    assert describe_config(dataclasses.replace(SIM, mode="async", workers=4, max_inflight=2)) == (
        "async, workers=4, max_inflight=2, digits on simnpu/teaching")
    assert describe_config(dataclasses.replace(SIM, mode="async", parallel=2)).startswith("async, parallel=2")
    assert describe_config(RunConfig(mode="batch", batch_size=16, load="poisson", rate=100.0)) == (
        "batch, batch=16, load=poisson@100/s, digits on onnx")


@pytest.fixture(scope="module")
def two_runs() -> list[ExplorerRun]:
    a = dataclasses.replace(SIM, requests=40)
    b = dataclasses.replace(SIM, requests=40, mode="async", workers=2, load="closed", concurrency=2)
    return [ExplorerRun(1, a, lab.run(a)), ExplorerRun(2, b, lab.run(b))]


def test_timeline_window_keeps_the_first_measured_requests(two_runs: list[ExplorerRun]) -> None:
    for run in two_runs:
        window = timeline_window(run.result, 5)
        ids = sorted({s.request_id for s in window.spans if s.request_id >= 0})
        warm = run.config.warmup
        assert ids == list(range(warm, warm + 5)), ids
        assert window.origin_ns == min(s.start_ns for s in window.spans)


def test_metrics_table_puts_the_newest_run_first_with_a_ratio(two_runs: list[ExplorerRun]) -> None:
    table = metrics_table(two_runs)
    assert list(table.columns) == ["run 2", "run 1", "new / old"]
    rps = table.loc["throughput (req/s)"]
    assert rps["new / old"] == pytest.approx(rps["run 2"] / rps["run 1"])
    assert table.loc["errors", "run 2"] == 0
    assert list(metrics_table(two_runs[:1]).columns) == ["run 1"]


def test_predicted_vs_measured_uses_lab_analysis_when_it_offers_a_predictor(
        two_runs: list[ExplorerRun], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def predict_vs_measured(result: Any, config: Any = None) -> dict[str, dict[str, float]]:
        calls.append(config)
        return {"throughput_rps": {"predicted": 100.0, "measured": result.metrics.throughput_rps}}

    fake = types.ModuleType("lab.analysis")
    fake.predict_vs_measured = predict_vs_measured  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lab.analysis", fake)
    table = predicted_vs_measured(two_runs[1])
    assert table is not None and list(table.columns) == ["predicted", "measured"]
    assert calls == [two_runs[1].config]

    def broken(result: Any) -> Any:
        raise ZeroDivisionError

    assert predicted_vs_measured(two_runs[1], broken) is None  # a failing prediction is left out


def _no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``lab.analysis`` offer no prediction (an empty package, whatever is installed)."""
    monkeypatch.setitem(sys.modules, "lab.analysis", types.ModuleType("lab.analysis"))
    monkeypatch.setitem(sys.modules, "lab.analysis.cli", types.ModuleType("lab.analysis.cli"))


def test_no_predictor_means_no_prediction_table(two_runs: list[ExplorerRun], monkeypatch: pytest.MonkeyPatch) -> None:
    _no_analysis(monkeypatch)
    assert find_predictor() is None
    assert predicted_vs_measured(two_runs[0]) is None


def test_the_lab_analysis_bench_prediction_is_shown_when_present(two_runs: list[ExplorerRun]) -> None:
    pytest.importorskip("lab.analysis.cli")
    if find_predictor() is None:
        pytest.skip("lab.analysis offers no prediction function")
    table = predicted_vs_measured(two_runs[0])
    assert table is not None and {"predicted", "measured"} <= set(table.columns)
    if "throughput (req/s)" in table.index and table.loc["throughput (req/s)", "predicted"] is not None:
        row = table.loc["throughput (req/s)"]
        assert row["predicted"] == pytest.approx(row["measured"], rel=0.5)


# -- the explorer, headless --------------------------------------------------------------------


def test_explorer_runs_twice_and_draws_both_runs_on_one_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_analysis(monkeypatch)
    explorer = Explorer(SIM, live=False, timeline_requests=6)
    assert explorer.summary().startswith("Explorer: no run yet")
    task = explorer.run(wait=True, timeout=60)
    assert task.state == "done" and len(explorer.runs) == 1
    assert explorer.progress.value == explorer.progress.max == task.total
    explorer.controls.set(mode="async", workers=2)
    explorer.run_button.click()  # what a press of Run does
    assert explorer.wait(60)
    assert [r.number for r in explorer.runs] == [1, 2]
    assert explorer.runs[1].config == dataclasses.replace(SIM, mode="async", workers=2)
    fig = explorer.figure
    assert fig.layout.title.text.startswith("Timeline of run 2 (top) vs run 1")
    subtitles = [a.text for a in fig.layout.annotations]
    assert subtitles[0].startswith("run 2: async, workers=2") and subtitles[1].startswith("run 1: sync")
    assert fig.layout.xaxis.matches is not None or fig.layout.xaxis2.matches is not None  # one time axis
    assert "run 2: async" in explorer.status.value and "req/s" in explorer.status.value
    assert "run 2" in explorer.metrics_view.value and "new / old" in explorer.metrics_view.value
    assert explorer.prediction_view.value == ""
    # headless: the figure lives in an Output widget, and the display output carries it as plotly JSON
    assert not explorer.live and explorer.figure_view.outputs
    bundle = explorer._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "application/vnd.plotly.v1+json"} <= set(bundle)
    json.dumps(bundle)
    assert "run 2: async" in bundle["text/plain"]


def test_go_live_swaps_in_a_figure_widget_with_the_same_traces() -> None:
    import plotly.graph_objects as go

    explorer = Explorer(SIM, live=None, timeline_requests=4)
    assert not explorer.live and explorer.probe is not None
    explorer.run(wait=True, timeout=60)
    explorer._on_probe(explorer.probe, {"event": "rendered"}, [])  # what the rendered probe's browser sends
    assert explorer.live and isinstance(explorer.figure_view, go.FigureWidget)
    assert explorer.figure_box.children == (explorer.figure_view,)
    assert len(explorer.figure_view.data) == len(explorer.figure.data)
    assert "lab-explorer-live" in explorer.widget._dom_classes
    explorer.controls.set(mode="batch", batch_size=4)
    explorer.run(wait=True, timeout=60)
    assert explorer.figure_view.layout.title.text.startswith("Timeline of run 2")


def test_a_stopped_run_keeps_the_last_drawing() -> None:
    explorer = Explorer(dataclasses.replace(SIM, requests=20), live=False)
    explorer.run(wait=True, timeout=60)
    drawn = explorer.figure
    explorer.controls.set(requests=20_000)
    task = explorer.run()
    while task.issued < 10:
        time.sleep(0.02)
    explorer.stop()
    assert explorer.wait(20)
    assert task.state == "stopped" and len(explorer.runs) == 1 and explorer.figure is drawn
    assert explorer.status.value.startswith("stopped after") and explorer.progress.bar_style == "warning"
    assert not explorer.run_button.disabled and explorer.stop_button.disabled


# -- imports and the executed quickstart --------------------------------------------------------


def test_import_lab_and_lab_widgets_stay_light() -> None:
    code = ("import sys, lab; heavy = ('ipywidgets', 'plotly', 'pandas', 'dask', 'anywidget'); "
            "print([m for m in heavy if m in sys.modules]); import lab.widgets; "
            "print([m for m in ('plotly', 'pandas', 'anywidget', 'dask') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout


@pytest.mark.notebook
def test_the_executed_quickstart_stays_small(tmp_path: Path) -> None:
    import nbformat
    import papermill as pm

    out = tmp_path / "00_quickstart.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "00_quickstart.ipynb"), str(out), kernel_name="python3",
                        parameters={"quick": True, "output_dir": str(tmp_path / "results"), "requests": 30},
                        cwd=str(ROOT / "notebooks"), progress_bar=False)
    size = out.stat().st_size
    assert size < 1_000_000, f"executed quickstart is {size:,} bytes"
    nb = nbformat.read(out, as_version=4)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert not [m for m in state.values() if "FigureWidget" in str(m.get("model_name"))
                or len(json.dumps(m)) > 200_000]
    plotly = "application/vnd.plotly.v1+json"
    display = [o for c in nb.cells for o in c.get("outputs", []) if plotly in o.get("data", {})]
    assert len(display) == 1  # the explorer's output carries its figure for exports


def test_a_failed_run_is_shown_and_raised_when_waited_for() -> None:
    explorer = Explorer(RunConfig(model="digits", runtime="no-such-runtime"), live=False)
    with pytest.raises(ConfigError, match="unknown runtime 'no-such-runtime'"):
        explorer.run(wait=True, timeout=60)
    assert explorer.task is not None and explorer.task.state == "failed" and explorer.runs == []
    assert explorer.status.value.startswith("failed after") and "unknown runtime" in explorer.status.value
    assert explorer.progress.bar_style == "danger" and not explorer.run_button.disabled
