"""lab.analysis: MVA and bounds against hand-worked cases and an independent Markov-chain solution, the
open-loop estimate, stage times derived from hand-built traces, Little's law, idle attribution, the
advisor, predictions, plots and the CLI. Unit tests use synthetic traces and virtual time; the few that
run the real simulator assert loosely."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from fakes import FakeRuntime

from lab.analysis import (
    PipelineModel,
    Station,
    asymptotic_bounds,
    bounds,
    check_littles_law,
    erlang_c,
    idle_attribution,
    idle_summary,
    knee,
    model_from_run,
    model_from_stages,
    mva,
    mva_network,
    open_loop,
    predict,
    predict_sweep,
    recommend_batch,
    recommend_pe_mode,
    recommend_workers,
    seed_bound,
    stage_function,
    what_if,
)
from lab.analysis.demand import DELAY, QUEUE
from lab.analysis.predict import compare, relative_error
from lab.clock import FakeClock
from lab.errors import ConfigError
from lab.metrics import RequestRecord, compute_metrics
from lab.runners import SyncRunner
from lab.trace import Span, Trace
from lab.zoo.digits import DATA_DIR, MODEL_FILE

MS = 1_000_000
DIGITS = str(DATA_DIR / MODEL_FILE)


# -- exact MVA ----------------------------------------------------------------------------

def test_mva_single_queue_without_think_time_is_saturated_from_one_job() -> None:
    X, R, Q, U = mva_network([2.0], [1], 4)
    assert np.allclose(X, [0.5] * 4)  # one server, always busy: 1 / S
    assert np.allclose(R[:, 0], [2.0, 4.0, 6.0, 8.0])  # n jobs: wait for n - 1 ahead
    assert np.allclose(Q[:, 0], [1, 2, 3, 4]) and np.allclose(U[:, 0], 1.0)


def test_mva_two_queues_and_think_time_match_the_hand_worked_recursion() -> None:
    # CPU 5 ms, disk 3 ms, think 20 ms. By hand:
    # N=1: R = 5 + 3, X = 1/28.
    # N=2: R1 = 5 (1 + 5/28) = 165/28, R2 = 3 (1 + 3/28) = 93/28, X = 2 / (20 + 258/28) = 56/818.
    X, R, _, _ = mva_network([5.0, 3.0], [1, 1], 3, think_ns=20.0)
    assert X[0] == pytest.approx(1 / 28)
    assert R[1, 0] == pytest.approx(165 / 28) and R[1, 1] == pytest.approx(93 / 28)
    assert X[1] == pytest.approx(56 / 818)
    # N=3: Q(2) = X(2) R(2); R_k(3) = S_k (1 + Q_k(2)); X(3) = 3 / (20 + R1 + R2)
    q1, q2 = 56 / 818 * 165 / 28, 56 / 818 * 93 / 28
    assert X[2] == pytest.approx(3 / (20 + 5 * (1 + q1) + 3 * (1 + q2)))


def test_mva_multi_server_station_matches_its_birth_death_chain() -> None:
    # one 2-server station (S = 1) and a delay (Z = 1), N = 3. Birth-death chain on k jobs at the station:
    # up rates (3 - k)/Z, down rates min(k, 2)/S -> p1 = 3 p0, p2 = 3 p0, p3 = 1.5 p0 -> p0 = 2/17,
    # X = p1 * 1 + (p2 + p3) * 2 = 24/17.
    X, _, _, _ = mva_network([1.0], [2], 3, think_ns=1.0)
    assert X[1] == pytest.approx(1.0)  # N = 2: both served at once, X = 2 / (Z + S)
    assert X[2] == pytest.approx(24 / 17)


def _ctmc_throughput(n: int, z: float, s1: float, s2: float, c2: int) -> float:
    """Closed network delay(Z) -> 1-server(S1) -> c2-server(S2) -> delay, solved as a Markov chain."""
    states = [(a, b) for a in range(n + 1) for b in range(n + 1 - a)]  # jobs at station 1, at station 2
    index = {st: i for i, st in enumerate(states)}
    Q = np.zeros((len(states), len(states)))
    for (a, b), i in index.items():
        d = n - a - b
        moves = []
        if d > 0:
            moves.append(((a + 1, b), d / z))
        if a > 0:
            moves.append(((a - 1, b + 1), 1 / s1))
        if b > 0:
            moves.append(((a, b - 1), min(b, c2) / s2))
        for st, rate in moves:
            Q[i, index[st]] += rate
            Q[i, i] -= rate
    A = np.vstack([Q.T, np.ones(len(states))])
    rhs = np.zeros(len(states) + 1)
    rhs[-1] = 1
    pi = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return float(sum(pi[index[(a, b)]] * min(b, c2) / s2 for a, b in states))


@pytest.mark.parametrize(("z", "s1", "s2", "c2"), [(3.0, 1.0, 2.86, 2), (0.5, 2.0, 1.0, 3), (1.0, 1.0, 4.0, 2)])
def test_mva_is_exact_against_an_independent_markov_chain(z: float, s1: float, s2: float, c2: int) -> None:
    X, _, _, _ = mva_network([s1, s2], [1, c2], 6, think_ns=z)
    for n in range(1, 7):
        assert X[n - 1] == pytest.approx(_ctmc_throughput(n, z, s1, s2, c2), rel=1e-9)


def test_mva_delay_stations_and_enough_servers_add_no_waiting() -> None:
    X, R, _, _ = mva_network([1.0, 2.0], [None, 8], 5)
    assert np.allclose(R, [[1.0, 2.0]] * 5) and np.allclose(X, np.arange(1, 6) / 3.0)


def test_mva_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="one server count per station"):
        mva_network([1.0, 2.0], [1], 2)
    with pytest.raises(ConfigError, match="population must be an integer >= 1"):
        mva_network([1.0], [1], 0)
    with pytest.raises(ConfigError, match="finite and >= 0"):
        mva_network([-1.0], [1], 2)
    with pytest.raises(ConfigError, match="servers must be integers >= 1 or None"):
        mva_network([1.0], [0], 2)


def _teaching_like(**kw: Any) -> PipelineModel:
    stages = {"quantize": 0.5 * MS, "upload": 1.0 * MS, "compute": 2.86 * MS, "download": 1.0 * MS,
              "dequantize": 0.08 * MS}
    return model_from_stages(stages, engines=2, **kw)


def test_mva_of_a_model_uses_its_stations_and_admission_as_think_time() -> None:
    model = _teaching_like(admission_ns=0.2 * MS)
    res = mva(model, 8)
    # one job: no waiting, X = 1 / (R0 + Z)
    assert res.throughput_rps[0] == pytest.approx(1e9 / (model.latency_ns + 0.2 * MS))
    assert res.latency_ns[0] == pytest.approx(model.latency_ns)
    assert np.all(np.diff(res.throughput_rps) > 0) and res.throughput_rps[-1] < model.bound_rps
    at = res.at(4)
    assert at["utilization"]["compute"] == pytest.approx(res.throughput_rps[3] * 2.86e-3 / 2)
    assert list(res.frame().columns[:3]) == ["population", "throughput_rps", "latency_ms"]


# -- bounds -------------------------------------------------------------------------------

def test_bounds_of_a_hand_worked_model() -> None:
    model = _teaching_like()
    # R0 = 0.5 + 1 + 2.86 + 1 + 0.08 = 5.44 ms; bottleneck: compute 2.86 / 2 = 1.43 ms -> 699.3/s
    assert model.latency_ns == pytest.approx(5.44 * MS)
    b = bounds(model)
    assert b.bottleneck == "compute" and b.bound_rps == pytest.approx(1e3 / 1.43)
    assert b.knee == pytest.approx(5.44 / 1.43) == knee(model)
    # seed 004: NPU 1.43 ms vs other 5.44 - 2.86 = 2.58 ms -> 1 / 2.58 ms
    x, npu, other = seed_bound(model)
    assert (npu, other) == (pytest.approx(1.43 * MS), pytest.approx(2.58 * MS))
    assert x == pytest.approx(1e3 / 2.58) == b.seed_bound_rps
    t = asymptotic_bounds(model, [1, 2, 8])
    assert t["upper_rps"].tolist() == pytest.approx([1e3 / 5.44, 2e3 / 5.44, 1e3 / 1.43])
    assert t["latency_lower_ms"].iloc[2] == pytest.approx(8 * 1.43)
    with pytest.raises(ConfigError, match="populations must be >= 1"):
        asymptotic_bounds(model, [0])


def test_mva_lies_between_the_asymptotic_bounds() -> None:
    model = _teaching_like(admission_ns=0.3 * MS, pre_ns=0.2 * MS)
    res = mva(model, 12)
    t = asymptotic_bounds(model, range(1, 13))
    assert np.all(t["lower_rps"].to_numpy() <= res.throughput_rps * (1 + 1e-12))
    assert np.all(res.throughput_rps <= t["upper_rps"].to_numpy() * (1 + 1e-12))


def test_seed_bound_needs_a_compute_station() -> None:
    cpu = PipelineModel(stations=(Station("cpu", QUEUE, 1.0 * MS, servers=2),))
    with pytest.raises(ConfigError, match="compute"):
        seed_bound(cpu)
    assert math.isnan(bounds(cpu).seed_bound_rps)


# -- open loop ----------------------------------------------------------------------------

def test_erlang_c_hand_worked() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # (a^2/2 * 2/(2-a)) / (1 + a + that) = 1/3
    with pytest.raises(ConfigError, match="offered load < servers"):
        erlang_c(2, 2.0)


def test_open_loop_is_exact_for_mm1_and_md1() -> None:
    mm1 = PipelineModel(stations=(Station("q", QUEUE, 1.0 * MS, samples_ns=[0.0, 2.0 * MS]),))  # cv2 = 1
    assert mm1.station("q").cv2 == pytest.approx(1.0)
    est = open_loop(mm1, 500.0)
    assert est.stable and est.latency_ns == pytest.approx(2.0 * MS)  # S / (1 - rho), rho = 0.5
    md1 = PipelineModel(stations=(Station("q", QUEUE, 1.0 * MS),))  # constant service
    assert open_loop(md1, 500.0).latency_ns == pytest.approx(1.5 * MS)  # Pollaczek-Khinchine: S + rho S / 2(1-rho)
    over = open_loop(md1, 1500.0)
    assert not over.stable and math.isinf(over.latency_ns) and over.bottleneck == "q"
    with pytest.raises(ConfigError, match="rate_rps must be a number > 0"):
        open_loop(md1, 0)


# -- stage times from a measured run --------------------------------------------------------

SIM_DEVICE = "simulated NPU (simulator): teaching preset, 2 PEs single"


def _sim_like_run(late_ns: int = 0) -> SimpleNamespace:
    """Four sequential requests (id 0 cold) on worker host/0, spans as the simulator records them."""
    spans, records = [], []
    t = 0
    for rid in range(4):
        submit = t
        start = submit + int(0.05 * MS)
        arrive = start + int(0.7 * MS)
        spans += [Span("host/0", "pre", rid, start, start + int(0.2 * MS)),
                  Span("host/0", "quantize", rid, start + int(0.2 * MS), arrive),
                  Span("h2d/0", "upload", rid, arrive, arrive + MS)]
        c0 = arrive + MS + (late_ns if rid == 2 else 0)
        c1 = c0 + int(2.86 * MS)
        spans += [Span("device/0", "compute", rid, c0, c1), Span("d2h/0", "download", rid, c1, c1 + MS)]
        d1 = c1 + MS
        spans += [Span("host/0", "dequantize", rid, d1 + int(0.1 * MS), d1 + int(0.18 * MS)),
                  Span("host/0", "post", rid, d1 + int(0.18 * MS), d1 + int(0.2 * MS))]
        end = d1 + int(0.25 * MS)
        records.append(RequestRecord(rid, submit, start, end))
        t = end + int(0.2 * MS)
    trace = Trace(spans=spans, metadata={"device": SIM_DEVICE, "runtime": "simnpu"})
    metrics = compute_metrics(records, spans)
    return SimpleNamespace(trace=trace, records=records, metrics=metrics,
                           config={"mode": "async", "workers": 1, "max_inflight": 1})


def test_model_from_a_hand_built_simulator_run() -> None:
    model = model_from_run(_sim_like_run())
    assert [s.name for s in model.stations] == ["runner", "host_in", "dma_in", "compute", "dma_out", "host_out"]
    st = {s.name: s for s in model.stations}
    assert st["runner"].service_ns == pytest.approx(0.05 * MS)
    assert st["host_in"].service_ns == pytest.approx(0.7 * MS)
    assert dict(st["host_in"].parts) == {"pre": pytest.approx(0.2 * MS), "quantize": pytest.approx(0.5 * MS)}
    assert (st["dma_in"].service_ns, st["compute"].service_ns, st["dma_out"].service_ns) == (
        pytest.approx(MS), pytest.approx(2.86 * MS), pytest.approx(MS))
    assert st["compute"].servers == 2 and st["dma_in"].servers == 1 and st["dma_out"].in_order
    assert st["host_out"].service_ns == pytest.approx(0.25 * MS)
    assert model.admission_ns == pytest.approx(0.2 * MS)  # completion -> next admission under the cap of 1
    assert model.info["jobs"] == 3 and model.info["pe_mode"] == "single" and "simulator" in model.device
    assert model.bound_rps == pytest.approx(2e9 / (2.86 * MS))


def test_lateness_is_kept_for_jobs_that_found_the_engine_idle() -> None:
    model = model_from_run(_sim_like_run(late_ns=int(0.3 * MS)))
    compute = model.station("compute")
    # request 2's compute started 0.3 ms after its upload ended on an idle PE: 0.3 over 3 idle arrivals
    assert compute.service_ns == pytest.approx(2.86 * MS)  # the engine's service time is unchanged
    assert compute.late_ns == pytest.approx(0.1 * MS)
    assert sorted(compute.late_samples_ns.tolist()) == pytest.approx([0.0, 0.0, 0.3 * MS])
    assert model.info["lateness_ms"]["compute"] == pytest.approx(0.1)
    assert model.station("dma_out").late_ns == 0.0
    assert model.latency_ns == pytest.approx(model_from_run(_sim_like_run()).latency_ns + 0.1 * MS)


def test_mva_adds_lateness_only_when_a_server_is_idle() -> None:
    # one queue (S = 1) with lateness 0.5, no think time: N = 1 always finds it idle; N = 2: the
    # arrival theorem sees U(1) = 1 / 1.5, so P(idle) = 1/3
    X, R, _, _ = mva_network([1.0], [1], 2, late_ns=[0.5])
    assert R[0, 0] == pytest.approx(1.5) and X[0] == pytest.approx(1 / 1.5)
    q1 = 1.0  # one job, always at the station
    assert R[1, 0] == pytest.approx(1.0 * (1 + q1) + 0.5 * (1 - 1 / 1.5))
    with pytest.raises(ConfigError, match="late_ns must give one finite value"):
        mva_network([1.0], [1], 2, late_ns=[-1.0])


def test_model_of_a_cpu_runtime_is_one_station_of_cores() -> None:
    clock = FakeClock()
    rt = FakeRuntime(clock, upload_ns=10, compute_ns=100, download_ns=20)
    res = SyncRunner(rt, clock=clock).run_all(np.ones((5, 4), dtype=np.float32))
    model = model_from_run(res, cores=4)
    assert [s.name for s in model.stations] == ["runner", "cpu", "host"]
    assert model.station("cpu").service_ns == 130 and model.station("cpu").servers == 4
    assert model.bound_rps == pytest.approx(4e9 / 130)


def test_model_from_run_needs_device_spans() -> None:
    run = _sim_like_run()
    run.trace = Trace(spans=[s for s in run.trace.spans if s.lane.startswith("host")])
    with pytest.raises(ConfigError, match="no measured request with DMA or device spans"):
        model_from_run(run)


def test_what_if_swaps_stage_times_and_scales_host_work() -> None:
    model = model_from_run(_sim_like_run())
    fused = what_if(model, {"upload": MS, "compute": 2.18 * MS, "download": MS, "engines": 1})
    assert fused.station("compute").servers == 1 and fused.station("compute").service_ns == 2.18 * MS
    b4 = what_if(model, {"quantize": 2.0 * MS, "dequantize": 0.32 * MS}, batch=4)
    # host_in: pre 0.2 ms x 4 + quantize 2.0 ms (new) + unaccounted 0 = 2.8 ms
    assert b4.batch == 4 and b4.station("host_in").service_ns == pytest.approx(2.8 * MS)
    fixed = what_if(model, {"quantize": 2.0 * MS}, batch=4, host_scaling="fixed")
    assert fixed.station("host_in").service_ns == pytest.approx(2.2 * MS)
    with pytest.raises(ConfigError, match="host_scaling"):
        what_if(model, {}, host_scaling="cubic")


def test_station_validation_names_what_was_expected() -> None:
    with pytest.raises(ConfigError, match="kind must be 'delay' or 'queue'"):
        Station("x", "server", 1.0)
    with pytest.raises(ConfigError, match="servers must be an integer >= 1"):
        Station("x", QUEUE, 1.0, servers=0)
    with pytest.raises(ConfigError, match="station names must be unique"):
        PipelineModel(stations=(Station("a", DELAY, 1.0), Station("a", DELAY, 1.0)))


# -- Little's law -----------------------------------------------------------------------------

def _closed_loop_records(n: int = 60, population: int = 2, service: int = 10_000) -> list[RequestRecord]:
    return [RequestRecord(k, (k // population) * service, (k // population) * service,
                          (k // population + 1) * service) for k in range(n)]


def test_littles_law_holds_for_a_steady_closed_loop() -> None:
    recs = _closed_loop_records()
    m = compute_metrics(recs, [])
    out = check_littles_law(recs, m)
    assert out["ok"] is True and out["inflight_mean"] == pytest.approx(2.0)
    assert out["throughput_x_latency"] == pytest.approx(2.0) and out["warning"] is None


def test_littles_law_fails_with_a_growing_queue_and_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # arrivals every 1 us into one server taking 2 us: the queue (and each latency) keeps growing
    recs = [RequestRecord(i, i * 1_000, max(i * 1_000, i * 2_000), (i + 1) * 2_000) for i in range(100)]
    m = compute_metrics(recs, [])
    with caplog.at_level(logging.WARNING, logger="lab"):
        out = check_littles_law(recs, m)
    assert out["ok"] is False and abs(out["relative_error"]) > 0.10
    assert "Little's law check failed" in caplog.text and out["warning"].startswith("Little's law")


def test_every_measured_run_carries_the_littles_law_check() -> None:
    clock = FakeClock()
    res = SyncRunner(FakeRuntime(clock), clock=clock).run_all(np.ones((30, 4), dtype=np.float32))
    out = res.metrics.extra["littles_law"]
    assert out["ok"] is True and out["inflight_mean"] == pytest.approx(1.0)
    assert "littles_law" in res.metrics.to_dict()


def test_littles_law_without_a_window_is_not_checked() -> None:
    recs = [RequestRecord(0, 0, 0, 10)]
    out = check_littles_law(recs, compute_metrics(recs, [], num_cold=0), warn=False)
    assert out["ok"] is None and "not checked" in out["warning"]


# -- idle attribution -------------------------------------------------------------------------

def test_idle_gaps_are_attributed_to_what_the_request_was_doing() -> None:
    spans = [Span("host/0", "pre", 0, 0, 2 * MS), Span("h2d/0", "upload", 0, 2 * MS, 3 * MS),
             Span("device/0", "compute", 0, 3 * MS, 6 * MS), Span("d2h/0", "download", 0, 6 * MS, 7 * MS),
             Span("host/0", "post", 0, 7 * MS, 8 * MS)]
    run = SimpleNamespace(trace=Trace(spans=spans), records=[RequestRecord(0, 0, 0, 8 * MS)])
    t = idle_attribution(run, window=(0, 10 * MS))
    got = dict(zip(t["cause"], t["fraction"], strict=True))
    assert got == {"busy": pytest.approx(0.3), "waiting for host": pytest.approx(0.3),
                   "waiting for DMA in": pytest.approx(0.1), "waiting for DMA out": pytest.approx(0.1),
                   "queued on another PE": 0.0, "no work queued": pytest.approx(0.2)}
    assert sum(idle_summary(t).values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="end > start"):
        idle_attribution(run, window=(5, 5))


# -- predictions and the advisor ----------------------------------------------------------------

def test_predictions_of_each_method_for_one_and_many_workers() -> None:
    model = _teaching_like()
    one = {m: predict(model, workers=1, max_inflight=1, method=m, service="deterministic") for m in
           ("twin", "mva", "bound")}
    for p in one.values():  # one request at a time: every method agrees exactly
        assert p.throughput_rps == pytest.approx(1e9 / model.latency_ns, rel=1e-3)
        assert p.latency_ms == pytest.approx(model.latency_ns / 1e6, rel=1e-3)
    many = predict(model, workers=8, max_inflight=8, method="twin", service="deterministic")
    assert many.throughput_rps == pytest.approx(model.bound_rps, rel=0.01)
    assert many.utilization["compute"] == pytest.approx(1.0, rel=0.01)
    # a cap above the workers: same throughput, K / X latency (Little)
    over = predict(model, workers=2, max_inflight=6, method="mva")
    two = predict(model, workers=2, max_inflight=2, method="mva")
    assert over.throughput_rps == pytest.approx(two.throughput_rps)
    assert over.latency_ms == pytest.approx(6 / two.throughput_rps * 1e3)
    with pytest.raises(ConfigError, match="method must be one of"):
        predict(model, method="guess")


def test_predict_sweep_and_compare_give_errors_per_configuration() -> None:
    model = _teaching_like()
    pred = predict_sweep(model, [1, 2], methods=("twin", "bound"), requests=500, service="deterministic")
    assert set(pred["method"]) == {"twin", "bound"} and len(pred) == 4
    measured = pd.DataFrame({"workers": [1, 2], "throughput_rps": [170.0, 340.0], "latency_ms": [5.5, 5.6]})
    out = compare(pred, measured)
    row = out[(out.workers == 1) & (out.method == "bound")].iloc[0]
    assert row.throughput_rps_error == pytest.approx((1e9 / model.latency_ns - 170) / 170)
    assert relative_error(110.0, 100.0) == pytest.approx(0.1) and math.isnan(relative_error(1.0, 0.0))


def test_recommend_workers_on_the_bound_is_hand_checkable() -> None:
    model = PipelineModel(stations=(Station("host", DELAY, 4.5 * MS), Station("dev", QUEUE, 1.5 * MS)))
    # X(N) = min(N / 6 ms, 1 / 1.5 ms): 167, 333, 500, 667, ... -> 95 % of 667 first reached at N = 4
    adv = recommend_workers(model, max_workers=8, method="bound")
    assert adv.workers == 4 and adv.max_inflight == 4 and adv.fraction == pytest.approx(1.0)
    assert adv.best_rps == pytest.approx(1e3 / 1.5) and adv.latency_cost_ms == pytest.approx(0.0)
    assert "workers=4" in adv.text()
    assert recommend_workers(model, max_workers=8, method="bound", target=0.7).workers == 3


def test_pe_mode_and_batch_recommendations_for_the_teaching_preset() -> None:
    stages = stage_function(model_path=DIGITS, preset="teaching")
    model = what_if(model_from_run(_sim_like_run()), stages(1, "single"), label="teaching, single PE")
    lat = recommend_pe_mode(model, stages, goal="latency", max_workers=6, requests=600)
    thr = recommend_pe_mode(model, stages, goal="throughput", max_workers=6, requests=600)
    # fused: one engine with both PEs' peak -> a lone request finishes sooner; single: two engines -> more throughput
    assert lat.mode == "fused" and thr.mode == "single"
    assert lat.agrees and thr.agrees and thr.compute_ratio == pytest.approx(2.857 / 2.179, rel=0.01)
    t = thr.table.set_index("pe_mode")
    assert t.loc["single", "engines"] == 2 and t.loc["fused", "engines"] == 1
    b_thr = recommend_batch(model, stages, batches=(1, 2, 4, 8), goal="throughput", max_workers=4, requests=400)
    b_lat = recommend_batch(model, stages, batches=(1, 2, 4, 8), goal="latency", max_workers=4, requests=400)
    table = b_thr.table.set_index("batch")
    assert table.loc[8, "throughput_rps"] > table.loc[1, "throughput_rps"]  # launch and DMA setup amortised
    assert b_thr.batch > 1 and b_lat.batch == 1
    with pytest.raises(ConfigError, match="latency budget"):
        recommend_batch(model, stages, batches=(1, 2), latency_budget_ms=0.001, max_workers=2, requests=200)


# -- plots ----------------------------------------------------------------------------------

def test_analysis_plots_draw_predicted_lines_and_measured_points() -> None:
    from lab.plots.analysis import (
        plot_batch_tradeoff,
        plot_idle_gaps,
        plot_latency_vs_throughput,
        plot_throughput_vs_workers,
        plot_utilization,
    )

    model = _teaching_like()
    pred = predict_sweep(model, [1, 2, 3], requests=300, service="deterministic")
    meas = pd.DataFrame({"workers": [1, 2, 3], "throughput_rps": [170.0, 330.0, 480.0], "latency_ms": [5.5] * 3})
    fig = plot_throughput_vs_workers(pred, meas, bounds=asymptotic_bounds(model, [1, 2, 3]))
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert "measured" in names and any("twin" in n for n in names) and any("MVA" in n for n in names)
    measured_trace = next(t for t in fig.data if t.name == "measured")
    assert list(measured_trace.y) == [170.0, 330.0, 480.0] and "%" in measured_trace.customdata[0]
    assert len(plot_latency_vs_throughput(pred, meas).data) == 4
    util = pd.DataFrame({"workers": [1, 2], "device_util_measured": [0.2, 0.4], "device_util_predicted": [0.2, 0.41]})
    assert [t.name for t in plot_utilization(util).data] == ["measured", "predicted (X x S / servers)"]
    gaps = plot_idle_gaps({"1 worker": {"busy": 0.3, "waiting for host": 0.7},
                           "4": {"busy": 0.9, "no work queued": 0.1}})
    assert {t.name for t in gaps.data} == {"busy", "waiting for host", "no work queued"}
    bt = plot_batch_tradeoff(pd.DataFrame({"batch": [1, 2], "throughput_rps": [1.0, 2.0], "latency_ms": [1.0, 1.5]}))
    assert len(bt.data) == 2
    with pytest.raises(ConfigError, match="missing"):
        plot_throughput_vs_workers(pd.DataFrame({"workers": [1]}))


# -- the command line (the real simulator, short runs, loose asserts) ------------------------------

def test_bench_json_gains_bound_prediction_and_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "--runtime", "simnpu", "--mode", "async", "--workers", "2", "--max-inflight", "2",
               "--requests", "60", "--warmup", "4", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert 600 < doc["bound_rps"] <= 701  # teaching preset: 2 PEs x 2.86 ms (lateness can only lower it)
    assert doc["predicted_rps"] > 0 and abs(doc["prediction_error"]) < 0.5
    assert doc["prediction"]["model"]["bottleneck"] == "compute"
    assert "predicted" in capsys.readouterr().out


def test_advise_prints_recommendations_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    out = tmp_path / "advice.json"
    rc = main(["advise", "--runtime", "simnpu", "--requests", "40", "--warmup", "2", "--max-workers", "3",
               "--batches", "1,2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "simulator" in text and "recommend: workers=" in text and "recommend PE mode" in text
    doc = json.loads(out.read_text())
    assert 1 <= doc["workers"]["workers"] <= 3 and doc["pe_mode"]["mode"] in ("single", "fused")
    assert doc["batch"]["batch"] in (1, 2) and doc["bounds"]["bottleneck"] == "compute"


def test_advise_rejects_bad_batches_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["advise", "--runtime", "simnpu", "--batches", "1,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batches must be comma-separated integers" in err[0]


def test_import_lab_analysis_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, lab, lab.analysis; heavy = [m for m in ('torch', 'onnxruntime', 'plotly', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"



def test_pe_utilization_counts_engines_that_never_ran() -> None:
    from lab.analysis.studies import pe_utilization

    metrics = SimpleNamespace(utilization={"device/0": 0.6, "h2d/0": 0.3},
                              extra={"simulator": {"engines": {"device/0": {}, "device/1": {}, "h2d/0": {}}}})
    assert pe_utilization(SimpleNamespace(metrics=metrics)) == pytest.approx(0.3)  # (0.6 + 0) / 2 PEs


def test_side_by_side_predicts_each_measured_configuration() -> None:
    from lab.analysis import side_by_side

    model = _teaching_like()
    measured = pd.DataFrame({"kind": ["workers", "parallel"], "workers": [1, 2], "max_inflight": [1, None],
                             "throughput_rps": [180.0, 360.0], "latency_ms": [5.5, 80.0], "device_util": [0.1, 0.2]})
    out = side_by_side(model, measured, requests=50, service="deterministic").set_index("config")
    assert list(out.index) == ["workers=1", "parallel=2"]
    assert out.loc["workers=1", "twin_rps"] == pytest.approx(1e9 / model.latency_ns, rel=1e-3)
    assert out.loc["workers=1", "twin_error"] == pytest.approx(out.loc["workers=1", "twin_rps"] / 180 - 1)
    # a burst of 50 on 2 workers: the mean request waits behind half of it
    assert out.loc["parallel=2", "twin_latency_ms"] > 10 * out.loc["workers=1", "twin_latency_ms"]
    assert out.loc["workers=1", "predicted_device_util"] == pytest.approx(
        out.loc["workers=1", "twin_rps"] * 2.86e-3 / 2, rel=1e-6)
