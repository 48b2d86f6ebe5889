"""The virtual-time twin: exact on hand-worked cases, equal to the simulated NPU in virtual time, in agreement
with exact MVA under exponential service, bounded queues obey Little's law, and it is fast."""

from __future__ import annotations

import numpy as np
import pytest

from lab.analysis import (
    PipelineModel,
    Station,
    model_from_run,
    model_from_stages,
    mva,
    predict,
    simulate,
)
from lab.analysis.demand import DELAY, QUEUE
from lab.clock import VirtualClock
from lab.errors import ConfigError
from lab.loadgen import poisson_arrivals
from lab.profiler import Profiler
from lab.runtimes.simnpu import SimNpuRuntime
from lab.zoo.digits import DATA_DIR, MODEL_FILE

MS = 1_000_000
DIGITS = str(DATA_DIR / MODEL_FILE)
TEACHING = {"quantize": 500_000, "upload": 1_000_640, "compute": 2_857_440, "download": 1_000_100,
            "dequantize": 78_125}


def test_one_worker_runs_requests_back_to_back() -> None:
    model = model_from_stages(TEACHING, engines=2, admission_ns=100_000)
    run = simulate(model, workers=1, max_inflight=1, requests=50, service="deterministic")
    r0 = sum(TEACHING.values())
    assert {r.latency_ns for r in run.records} == {r0}
    ends = [r.end_ns for r in sorted(run.records, key=lambda r: r.request_id)]
    assert np.all(np.diff(ends) == r0 + 100_000)  # think time between requests
    assert run.throughput_rps == pytest.approx(1e9 / (r0 + 100_000))


def test_enough_workers_saturate_the_bottleneck_exactly() -> None:
    model = model_from_stages(TEACHING, engines=2)
    run = simulate(model, workers=8, requests=2000, service="deterministic", spans=False)
    assert run.throughput_rps == pytest.approx(2e9 / TEACHING["compute"], rel=1e-3)
    assert run.utilization()["compute"] == pytest.approx(1.0, rel=0.01)


def test_spans_follow_the_simulators_rules() -> None:
    model = model_from_stages(TEACHING, engines=2, pre_ns=20_000, post_ns=20_000)
    run = simulate(model, workers=4, requests=200, service="deterministic")
    spans = run.trace.spans
    lanes = {s.lane for s in spans}
    assert {"h2d/0", "device/0", "device/1", "d2h/0", "host/0", "host/3"} <= lanes
    assert {s.name for s in spans} >= {"pre", "quantize", "upload", "compute", "download", "dequantize", "post"}
    for lane in lanes - {"queue"}:  # one job at a time on every lane
        ss = sorted((s for s in spans if s.lane == lane), key=lambda s: s.start_ns)
        assert all(a.end_ns <= b.start_ns for a, b in zip(ss, ss[1:], strict=False)), lane
    # DMA out copies back in the order compute was dispatched
    by = {(s.request_id, s.name): s for s in spans}
    order = sorted(range(200), key=lambda r: by[(r, "compute")].start_ns)
    downloads = [by[(r, "download")].start_ns for r in order]
    assert downloads == sorted(downloads)
    # every request goes host -> DMA in -> PE -> DMA out -> host
    for r in range(200):
        assert (by[(r, "quantize")].end_ns <= by[(r, "upload")].start_ns <= by[(r, "compute")].start_ns
                <= by[(r, "download")].start_ns <= by[(r, "dequantize")].start_ns)


def test_twin_equals_the_simulated_npu_in_virtual_time() -> None:
    """The same device rules: with the same Poisson arrivals the twin's DMA and PE spans equal the simulator's."""
    n, rate = 300, 600.0
    clk = VirtualClock()
    prof = Profiler(clock=clk)
    rt = SimNpuRuntime(DIGITS, preset="teaching", clock=clk, mode="timing")
    try:
        x = np.zeros((1, 1, 8, 8), dtype=np.float32)
        arrivals = poisson_arrivals(n, rate, seed=3)
        # one host slot per request: each quantize starts at its arrival, as with one worker per request
        futures = [rt.submit(x, request_id=i, slot=i, profiler=prof, arrival_ns=int(a)) for i, a in enumerate(arrivals)]
        rt.synchronize()
        for f in futures:
            f.result()
        stages = rt.modelled_stage_ns()
    finally:
        rt.close()
    sim = {(s.request_id, s.name): (s.lane, s.start_ns, s.end_ns) for s in prof.spans()
           if s.name in ("upload", "compute", "download")}
    model = model_from_stages(stages, engines=2)
    twin = simulate(model, workers=n, requests=n, load="poisson", rate_rps=rate, seed=3, service="deterministic")
    got = {(s.request_id, s.name): (s.lane, s.start_ns, s.end_ns) for s in twin.trace.spans
           if s.name in ("upload", "compute", "download")}
    assert len(sim) == 3 * n
    assert got == sim


def _product_form_model() -> PipelineModel:
    return PipelineModel(stations=(
        Station("think", DELAY, 3 * MS, samples_ns=[3 * MS]),
        Station("dma", QUEUE, 1 * MS, lane="h2d"),
        Station("pe", QUEUE, 2.86 * MS, servers=2, lane="device"),
        Station("out", QUEUE, 0.8 * MS, lane="d2h"),
    ))


@pytest.mark.parametrize("workers", [1, 3, 6])
def test_twin_with_exponential_service_agrees_with_exact_mva(workers: int) -> None:
    model = _product_form_model()
    exact = mva(model, workers).at(workers)
    twin = simulate(model, workers=workers, requests=30_000, service="exponential", seed=11, spans=False)
    assert twin.throughput_rps == pytest.approx(exact["throughput_rps"], rel=0.03)
    assert np.mean(twin.latencies_ns()) / 1e6 == pytest.approx(exact["latency_ms"], rel=0.05)


def test_constant_service_queues_less_than_mva_predicts() -> None:
    model = model_from_stages(TEACHING, engines=2)
    for w in (3, 4, 5):
        det = predict(model, workers=w, max_inflight=w, method="twin", service="deterministic")
        exact = predict(model, workers=w, max_inflight=w, method="mva")
        bound = predict(model, workers=w, max_inflight=w, method="bound")
        assert exact.throughput_rps < det.throughput_rps <= bound.throughput_rps * (1 + 1e-3)  # window edges


def test_bounded_queue_caps_in_flight_and_latency_follows_littles_law() -> None:
    model = model_from_stages(TEACHING, engines=2)
    w, q = 2, 4
    run = simulate(model, workers=w, requests=3000, load="burst", queue_size=q, service="deterministic",
                   spans=False)
    x = run.metrics.throughput_rps
    # saturated: w being served, q waiting, one blocked in submit
    assert run.metrics.peak_inflight == w + q + 1
    assert run.metrics.latency_ns["mean"] / 1e9 == pytest.approx((w + q + 1) / x, rel=0.01)


def test_a_full_queue_drops_with_on_full_raise() -> None:
    model = model_from_stages(TEACHING, engines=2)
    run = simulate(model, workers=1, requests=500, load="poisson", rate_rps=2_000.0, queue_size=2,
                   on_full="raise", service="deterministic", spans=False)
    assert run.dropped > 0 and run.dropped + len(run.records) == 500
    assert run.metrics.peak_inflight <= 1 + 2


def test_twin_replays_a_measured_run(tmp_path: object) -> None:
    """A real (short) run on the simulated NPU: the twin from its stage times predicts it back (loose)."""
    import lab
    from lab.runners import AsyncRunner
    from lab.runtimes import create_runtime

    wl = lab.load_workload("digits")
    with create_runtime("simnpu", wl.model_path, preset="teaching") as rt, \
            AsyncRunner(rt, workers=2, max_inflight=2, workload=wl) as runner:
        res = runner.run_all(wl.samples, warmup=4, requests=80)
    model = model_from_run(res)
    p = predict(model, workers=2, max_inflight=2)
    assert p.throughput_rps == pytest.approx(res.metrics.throughput_rps, rel=0.25)
    twin = simulate(model, workers=2, max_inflight=2, requests=40)
    assert set(twin.trace.lanes) >= {"h2d/0", "device/0", "device/1", "d2h/0", "host/0", "host/1"}


def test_ten_thousand_requests_with_a_full_timeline() -> None:
    model = model_from_stages(TEACHING, engines=2, pre_ns=20_000, post_ns=20_000, handoff_ns=50_000)
    run = simulate(model, workers=4, requests=10_000)
    assert len(run.records) == 10_000 and len(run.trace.spans) >= 8 * 10_000 - 10
    assert run.metrics.requests == 10_000 and run.metrics.utilization
    assert run.wall_s < 10.0  # loose on a shared machine; typically a few hundred ms (see the benchmark)
    assert "twin" in run.summary() and "virtual-time twin" in run.trace.metadata["device"]


def test_simulate_rejects_bad_options() -> None:
    model = model_from_stages(TEACHING, engines=2)
    with pytest.raises(ConfigError, match="load must be one of"):
        simulate(model, load="spiky")
    with pytest.raises(ConfigError, match="rate_rps > 0"):
        simulate(model, load="poisson")
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        simulate(model, workers=0)
    with pytest.raises(ConfigError, match="service must be one of"):
        simulate(model, service="uniform")


def test_lateness_delays_jobs_that_find_the_engine_idle_and_no_others() -> None:
    model = PipelineModel(stations=(Station("dev", QUEUE, 1.0 * MS, late_ns=0.5 * MS),))
    alone = simulate(model, workers=1, requests=100, service="deterministic")
    assert {r.latency_ns for r in alone.records} == {int(1.5 * MS)}
    busy = simulate(model, workers=4, requests=2000, service="deterministic", spans=False)
    assert busy.throughput_rps == pytest.approx(1e3, rel=1e-3)  # a backlog: never idle, never late
