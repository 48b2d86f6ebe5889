"""RBLN-style AsyncRuntime, Furiosa-style create_async, load generators and dynamic batching."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fakes import FakeRuntime, SteppingClock, argmax_post, samples

from lab.clock import FakeClock
from lab.errors import ConfigError, QueueFull, RequestFailed, RequestTimeout, RunnerClosed
from lab.loadgen import DynamicBatcher, poisson_arrivals, run_load
from lab.runners import AsyncRunner
from lab.runners.async_api import AsyncRuntime, create_async


def test_async_runtime_both_styles() -> None:
    clock = FakeClock()
    with AsyncRuntime(FakeRuntime(clock), parallel=2, clock=clock) as rt:
        assert rt.run(np.ones((1, 4), np.float32)).wait(5)[0].tolist() == [[2, 2, 2, 2]]

        async def main() -> list[float]:
            outs = await asyncio.gather(*(rt.async_run(np.full((1, 4), i, np.float32)) for i in range(6)))
            return [o[0][0, 0].item() for o in outs]

        assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
        assert rt.config()["parallel"] == 2


@pytest.mark.parametrize("parallel", [0, 3, "2"])
def test_async_runtime_parallel_is_1_or_2(parallel) -> None:
    with pytest.raises(ConfigError, match="parallel must be 1 or 2"):
        AsyncRuntime(FakeRuntime(FakeClock()), parallel=parallel)


def test_queue_api_round_trip_with_contexts() -> None:
    clock = FakeClock()
    submitter, q = create_async(FakeRuntime(clock), workers=2, input_queue_size=4, output_queue_size=4,
                                postprocess=argmax_post, clock=clock)
    got: dict[str, int] = {}

    def consume() -> None:
        for context, pred in q:
            got[context] = int(pred[0])

    t = threading.Thread(target=consume)
    t.start()
    xs = samples(10)
    for i in range(10):
        submitter.submit(xs[i:i + 1], context=f"req-{i}")
    submitter.close()
    t.join(10)
    assert got == {f"req-{i}": 3 for i in range(10)}
    res = q.collect()
    assert res.metrics.errors == 0 and len(res.records) == 10


def test_queue_api_failure_reaches_its_context_alone() -> None:
    clock = FakeClock()
    submitter, q = create_async(FakeRuntime(clock, fail_ids={1}), workers=1, input_queue_size=8, clock=clock)
    for i in range(3):
        submitter.submit(np.ones((1, 4), np.float32), context=i)
    submitter.close()
    outcomes = []
    while True:
        try:
            ctx, out = q.recv(timeout=5)
            outcomes.append((ctx, "ok"))
        except RequestFailed as exc:
            outcomes.append((exc.context, type(exc.error).__name__))
        except RunnerClosed:
            break
    assert sorted(outcomes) == [(0, "ok"), (1, "DeviceError"), (2, "ok")]


def test_queue_api_bounded_input_raises_or_times_out() -> None:
    gate = threading.Event()
    clock = FakeClock()
    rt = FakeRuntime(clock, gate=gate)
    submitter, q = create_async(rt, workers=1, input_queue_size=1, on_full="raise", clock=clock)
    submitter.submit(np.ones((1, 4), np.float32))  # taken by the worker, held at the gate
    assert rt.entered.wait(5)
    submitter.submit(np.ones((1, 4), np.float32))  # fills the queue
    with pytest.raises(QueueFull, match="input queue full"):
        submitter.submit(np.ones((1, 4), np.float32))
    submitter.on_full = "block"
    with pytest.raises(QueueFull):
        submitter.submit(np.ones((1, 4), np.float32), timeout=0.05)
    with pytest.raises(RequestTimeout):
        q.recv(timeout=0.01)
    gate.set()
    submitter.close()
    assert len(list(q)) == 2
    with pytest.raises(RunnerClosed):
        submitter.submit(np.ones((1, 4), np.float32))


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"input_queue_size": 0}, {"on_full": "drop"}])
def test_queue_api_bad_settings(kwargs) -> None:
    with pytest.raises(ConfigError):
        create_async(FakeRuntime(FakeClock()), **kwargs)


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    a = poisson_arrivals(20000, 1000.0, seed=3)
    assert (a == poisson_arrivals(20000, 1000.0, seed=3)).all() and a[0] == 0
    assert np.diff(a).mean() == pytest.approx(1e6, rel=0.03)
    with pytest.raises(ConfigError):
        poisson_arrivals(5, 0)


def test_poisson_latency_counts_from_the_scheduled_arrival() -> None:
    clock = SteppingClock()
    with AsyncRunner(FakeRuntime(clock, compute_ns=100), workers=1, clock=clock) as runner:
        res = run_load(runner, samples(8), scenario="poisson", requests=50, rate=1e6, clock=clock)
    assert len(res.records) == 50 and not res.errors
    arrivals = poisson_arrivals(50, 1e6, seed=0)
    t0 = min(r.submit_ns for r in res.records)
    assert sorted(r.submit_ns - t0 for r in res.records) == sorted(arrivals.tolist())
    assert res.metrics.extra["load"]["offered_rps"] == 1e6


@pytest.mark.parametrize("scenario,conc,peak", [("single", 1, 1), ("closed", 3, 3), ("offline", 1, 20)])
def test_closed_single_offline(scenario: str, conc: int, peak: int) -> None:
    clock = FakeClock()
    with AsyncRunner(FakeRuntime(clock), workers=3, clock=clock) as runner:
        res = run_load(runner, samples(5), scenario=scenario, requests=20, warmup=2, concurrency=conc, clock=clock)
    assert len(res.records) == 20 and not res.errors
    assert res.sample_indices.tolist() == [i % 5 for i in range(20)]
    assert res.metrics.peak_inflight <= peak
    if scenario == "offline":
        assert len({r.submit_ns for r in res.records}) == 1


def test_dynamic_batching_reports_effective_batch_sizes() -> None:
    clock = FakeClock()
    gate = threading.Event()
    rt = FakeRuntime(clock, gate=gate)
    # max_delay 0: a batch takes what is already queued, up to max_batch, and never waits
    b = DynamicBatcher(rt, max_batch=4, max_delay_ms=0, postprocess=argmax_post, clock=clock)
    first = b.run(np.ones((1, 4), np.float32))
    assert rt.entered.wait(5)  # a batch of one, held at the gate
    handles = [b.run(samples(10)[i:i + 1]) for i in range(10)]  # queued while the device is busy
    gate.set()
    first.wait(5)
    outs = [h.wait(5)[0] for h in handles]
    b.close()
    res = b.collect()
    assert [o.tolist() for o in outs] == [(samples(10)[i:i + 1] * 2).tolist() for i in range(10)]
    sizes = res.metrics.extra["batch_sizes"]
    assert sizes["max"] == 4 and sizes["batches"] == 4  # 1, then 4, 4, 2
    assert sizes["histogram"] == [0, 1, 1, 0, 2]
    assert res.predictions.tolist() == [0] + [3] * 10  # ones argmax to 0; the samples to 3


def test_dynamic_batching_max_delay_closes_small_batches() -> None:
    clock = SteppingClock()
    with DynamicBatcher(FakeRuntime(clock), max_batch=8, max_delay_ms=0.0, clock=clock) as b:
        for _ in range(3):
            b.run(np.ones((1, 4), np.float32)).wait(5)
        res = b.collect()
    assert res.metrics.extra["batch_sizes"]["max"] == 1


@pytest.mark.parametrize("kwargs", [{"max_batch": 0, "max_delay_ms": 1}, {"max_batch": 2, "max_delay_ms": -1}])
def test_dynamic_batching_bad_settings(kwargs) -> None:
    with pytest.raises(ConfigError):
        DynamicBatcher(FakeRuntime(FakeClock()), **kwargs)
