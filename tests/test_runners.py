"""Runners on a fake runtime and a fake clock: exact, and no sleeping."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fakes import FakeRuntime, argmax_post, samples

from lab.clock import FakeClock
from lab.errors import ConfigError, DeviceError, InputError, RequestCancelled, RequestTimeout, RunnerClosed
from lab.runners import AsyncRunner, BatchRunner, SyncRunner


def test_sync_outputs_in_order_and_exact_times() -> None:
    clock = FakeClock()
    rt = FakeRuntime(clock)
    res = SyncRunner(rt, postprocess=argmax_post, clock=clock).run_all(samples(5), warmup=1, requests=5)
    assert [o[0].tolist() for o in res.outputs[1:]] == [(samples(5)[i:i + 1] * 2).tolist() for i in range(5)]
    assert res.sample_indices.tolist() == [0, 0, 1, 2, 3, 4]
    assert res.metrics.requests == 5 and res.metrics.warmup == 1
    # every request takes exactly upload + compute + download on the fake clock
    assert res.metrics.latency_ns["p50"] == 130 and res.metrics.first_latency_ns == 130
    assert res.metrics.stages_ns["compute"]["p50"] == 100
    assert res.metrics.overlap == 0.0
    assert res.predictions.tolist() == [3] * 6


def test_sync_failed_request_does_not_stop_the_others() -> None:
    clock = FakeClock()
    res = SyncRunner(FakeRuntime(clock, fail_ids={2}), clock=clock).run_all(samples(4))
    assert [e.request_id for e in res.errors] == [2]
    assert isinstance(res.errors[0].error, DeviceError)
    assert res.outputs[2] is None and all(res.outputs[i] is not None for i in (0, 1, 3))
    assert res.metrics.errors == 1 and res.metrics.requests == 2  # 4 minus the cold one minus the failed one


def test_sync_bad_input_names_expected_and_received() -> None:
    runner = SyncRunner(FakeRuntime(FakeClock()))
    with pytest.raises(InputError, match=r"expected shape .*\(1, 5\)"):
        runner.run(np.zeros((1, 5), np.float32))
    with pytest.raises(InputError, match="expected dtype float32, got float64"):
        runner.run(np.zeros((1, 4)))
    with pytest.raises(InputError, match="expected rank 2"):
        runner.run(np.zeros(4, np.float32))
    assert runner.run(np.ones((1, 4), np.float32))[0].tolist() == [[2, 2, 2, 2]]  # still usable


@pytest.mark.parametrize("policy,run_as", [("dynamic", 2), ("pad", 4)])
def test_batch_partial_last_batch(policy: str, run_as: int) -> None:
    clock = FakeClock()
    rt = FakeRuntime(clock)
    res = BatchRunner(rt, batch_size=4, partial=policy, postprocess=argmax_post, clock=clock).run_all(
        samples(10), requests=10)
    assert len(res.outputs) == 10
    assert [o[0].tolist() for o in res.outputs] == [(samples(10)[i:i + 1] * 2).tolist() for i in range(10)]
    assert res.metrics.extra["batches"]["partial"] == {"size": 2, "policy": policy, "run_as": run_as,
                                                        "padded": run_as - 2}
    assert res.metrics.extra["batches"]["batches"] == 3
    # the first batch is cold as a whole; latency of a request is its batch's time
    assert res.metrics.requests == 6 and res.metrics.latency_ns["p50"] == 130


def test_batch_warmup_is_whole_batches() -> None:
    clock = FakeClock()
    res = BatchRunner(FakeRuntime(clock), batch_size=4, clock=clock).run_all(samples(8), warmup=1, requests=8)
    assert res.warmup == 4 and res.metrics.extra["batches"]["warmup_batches"] == 1
    assert res.sample_indices[4:].tolist() == list(range(8))


def test_batch_fixed_axis_rejects_other_sizes() -> None:
    with pytest.raises(ConfigError, match="fixed at 1"):
        BatchRunner(FakeRuntime(FakeClock(), batch=1), batch_size=4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_size_must_be_positive(bad) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        BatchRunner(FakeRuntime(FakeClock()), batch_size=bad)


def test_async_outputs_in_request_order() -> None:
    clock = FakeClock()
    rt = FakeRuntime(clock)
    with AsyncRunner(rt, workers=3, max_inflight=4, postprocess=argmax_post, clock=clock) as runner:
        res = runner.run_all(samples(20), warmup=2, requests=40)
    assert len(res.outputs) == 42 and not res.errors
    for rid, out in enumerate(res.outputs):
        i = res.sample_indices[rid]
        assert out[0].tolist() == (samples(20)[i:i + 1] * 2).tolist()
    assert res.metrics.peak_inflight <= 4
    assert rt.slots_seen <= {0, 1, 2}


def test_async_run_wait_and_await() -> None:
    clock = FakeClock()
    with AsyncRunner(FakeRuntime(clock), workers=2, clock=clock) as runner:
        h = runner.run(np.ones((1, 4), np.float32))
        assert h.wait(5)[0].tolist() == [[2, 2, 2, 2]]

        async def main() -> list[list[float]]:
            outs = await asyncio.gather(*(runner.async_run(np.full((1, 4), i, np.float32)) for i in range(5)))
            return [o[0][0, 0].item() for o in outs]

        assert asyncio.run(main()) == [0, 2, 4, 6, 8]
        collected = runner.collect()
        assert collected.metrics.requests + 1 == 6  # all six requests, the first one cold


def test_async_failure_reaches_its_own_caller_only() -> None:
    clock = FakeClock()
    with AsyncRunner(FakeRuntime(clock, fail_ids={3}), workers=2, clock=clock) as runner:
        res = runner.run_all(samples(8))
        assert [e.request_id for e in res.errors] == [3]
        assert res.outputs[3] is None and sum(o is not None for o in res.outputs) == 7
        handles = [runner.run(np.ones((1, 4), np.float32)) for _ in range(3)]
        assert all(h.wait(5)[0].shape == (1, 4) for h in handles)  # still usable


def test_async_bad_input_error_in_wait() -> None:
    with AsyncRunner(FakeRuntime(FakeClock()), workers=1) as runner:
        with pytest.raises(InputError, match="expected dtype float32"):
            runner.run(np.zeros((1, 4))).wait(5)


def test_async_timeout_then_cancel_frees_the_slot() -> None:
    gate = threading.Event()
    clock = FakeClock()
    rt = FakeRuntime(clock, gate=gate)
    with AsyncRunner(rt, workers=1, max_inflight=1, clock=clock) as runner:
        first = runner.run(np.ones((1, 4), np.float32))  # holds the only slot until the gate opens
        queued = runner.run(np.ones((1, 4), np.float32))  # waits for admission
        with pytest.raises(RequestTimeout):
            queued.wait(0.05)
        assert queued.cancel()
        with pytest.raises(RequestCancelled):
            queued.wait(5)
        gate.set()
        assert first.wait(5)[0].shape == (1, 4)
        # the cancelled request gave its slot back: a new one is admitted and completes
        assert runner.run(np.ones((1, 4), np.float32)).wait(5)[0].shape == (1, 4)
        assert rt.calls == 2


def test_async_running_request_cannot_be_cancelled_and_frees_its_slot_when_done() -> None:
    gate = threading.Event()
    clock = FakeClock()
    rt = FakeRuntime(clock, gate=gate)
    with AsyncRunner(rt, workers=1, max_inflight=1, clock=clock) as runner:
        running = runner.run(np.ones((1, 4), np.float32))
        assert rt.entered.wait(5)  # the worker is inside infer, held by the gate
        assert not running.cancel()  # started: it runs to completion, as in concurrent.futures
        nxt = runner.run(np.ones((1, 4), np.float32))
        with pytest.raises(RequestTimeout):
            nxt.wait(0.05)  # the only slot is still held by the running request
        gate.set()
        assert running.wait(5)[0].shape == (1, 4)
        assert nxt.wait(5)[0].shape == (1, 4)


def test_async_await_cancellation_cancels_a_pending_request() -> None:
    gate = threading.Event()
    clock = FakeClock()
    rt = FakeRuntime(clock, gate=gate)
    with AsyncRunner(rt, workers=1, max_inflight=1, clock=clock) as runner:
        first = runner.run(np.ones((1, 4), np.float32))

        async def main() -> None:
            task = asyncio.ensure_future(runner.async_run(np.ones((1, 4), np.float32)))
            await asyncio.sleep(0)  # let the task submit (an event-loop turn, not a timed sleep)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        gate.set()
        first.wait(5)
        assert runner.run(np.ones((1, 4), np.float32)).wait(5)[0].shape == (1, 4)
        assert rt.calls == 2  # the cancelled request never ran


def test_async_close_joins_threads_and_refuses_new_work() -> None:
    runner = AsyncRunner(FakeRuntime(FakeClock()), workers=2)
    runner.run(np.ones((1, 4), np.float32)).wait(5)
    runner.close()
    runner.close()  # idempotent
    assert not any(t.is_alive() for t in runner._threads)
    with pytest.raises(RunnerClosed):
        runner.run(np.ones((1, 4), np.float32))


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"max_inflight": 0}, {"workers": "2"}])
def test_async_bad_settings(kwargs) -> None:
    with pytest.raises(ConfigError):
        AsyncRunner(FakeRuntime(FakeClock()), **kwargs)


def test_run_all_rejects_empty_samples() -> None:
    with pytest.raises(InputError, match="empty"):
        SyncRunner(FakeRuntime(FakeClock())).run_all(np.zeros((0, 4), np.float32))
