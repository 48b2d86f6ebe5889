"""Exactly-once delivery under injected faults: the simulated NPU fails 1 % of jobs."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from lab.clock import VirtualClock
from lab.errors import DeviceError, RequestFailed, RunnerClosed
from lab.runners import AsyncRunner
from lab.runners.async_api import create_async
from lab.runtimes.simnpu import SimNpuRuntime
from lab.zoo import load_workload

N = 10_000


@pytest.fixture()
def faulty():
    wl = load_workload("digits")
    # virtual time: the engines' holds take no wall time, so 10,000 requests run in seconds
    rt = SimNpuRuntime(wl.model_path, preset="teaching", fail_rate=0.01, seed=7, clock=VirtualClock(),
                       mode="timing")
    yield wl, rt
    rt.close()


def test_async_runner_10k_requests_1pct_faults_exactly_once(faulty) -> None:
    wl, rt = faulty
    inputs = wl.inputs(64)
    with AsyncRunner(rt, workers=4, max_inflight=32) as runner:
        res = runner.run_all(inputs, warmup=0, requests=N)
        ids = collections.Counter(r.request_id for r in res.records)
        assert len(ids) == N and set(ids.values()) == {1}, "a request was lost or delivered twice"
        failed = {e.request_id for e in res.errors}
        assert all(isinstance(e.error, DeviceError) and f"request {e.request_id}" in str(e.error) for e in res.errors)
        assert 0.005 * N < len(failed) < 0.02 * N
        assert all((res.outputs[i] is None) == (i in failed) for i in range(N))
        assert sum(not r.ok for r in res.records) == len(failed)
        assert runner._inflight == 0 and not runner._pending, "a slot leaked"
        assert rt.num_inflight == 0
        # still usable
        rt.fail_rate = 0.0
        assert len(runner.run(inputs[:1]).wait(10)) == 1


def test_queue_api_faults_reach_their_own_context(faulty) -> None:
    wl, rt = faulty
    inputs = wl.inputs(16)
    submitter, q = create_async(rt, workers=2, input_queue_size=16, output_queue_size=16)
    import threading

    seen: collections.Counter[int] = collections.Counter()
    failed: set[int] = set()

    def consume() -> None:
        while True:
            try:
                ctx, _ = q.recv(timeout=30)
                seen[ctx] += 1
            except RequestFailed as exc:
                seen[exc.context] += 1
                failed.add(exc.context)
            except RunnerClosed:
                return

    t = threading.Thread(target=consume)
    t.start()
    for i in range(2000):
        submitter.submit(inputs[i % 16:i % 16 + 1], context=i)
    submitter.close()
    t.join(60)
    assert not t.is_alive()
    assert len(seen) == 2000 and set(seen.values()) == {1}
    assert 0 < len(failed) < 100
    assert np.isclose(len(failed) / 2000, 0.01, atol=0.008)
