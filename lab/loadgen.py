"""Load generators (MLPerf LoadGen's scenarios) and dynamic batching.

Scenarios, each driving a *system under test* that has ``run(x, arrival_ns=...) -> handle``
and ``collect() -> RunResult`` (an :class:`~lab.runners.AsyncRunner`, an
:class:`~lab.runners.async_api.AsyncRuntime` or a :class:`DynamicBatcher`):

* ``single`` (SingleStream): one request at a time; the next is issued when the last completes.
* ``closed`` (closed loop at concurrency N): N requests outstanding; each completion issues one.
* ``poisson`` (Server): an open loop with seeded Poisson arrivals at ``rate`` requests/s.
  Latency runs from each request's *scheduled* arrival, so time a request spent waiting
  because the generator or the system fell behind is not hidden (no coordinated omission).
* ``offline`` (Offline): every request issued at once.
"""

from __future__ import annotations

import enum
import itertools
import queue
import threading
import time
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, RunnerClosed
from lab.metrics import RequestRecord
from lab.profiler import Profiler
from lab.runners.asynchronous import MIN_QUEUE_SPAN_NS, RequestHandle
from lab.runners.base import Postprocess, Preprocess, RequestError, RunResult, build_result, resolve_stages, take
from lab.runtimes.base import Inputs, Runtime
from lab.trace import LANE_QUEUE

__all__ = ["DynamicBatcher", "Scenario", "poisson_arrivals", "run_load"]


class Scenario(str, enum.Enum):
    """MLPerf LoadGen scenarios (lab names)."""

    SINGLE = "single"
    CLOSED = "closed"
    POISSON = "poisson"
    OFFLINE = "offline"


def poisson_arrivals(num: int, rate_rps: float, *, seed: int = 0) -> np.ndarray:
    """Arrival offsets (int64 ns from 0) of a seeded Poisson process at ``rate_rps`` requests/s."""
    if not rate_rps or rate_rps <= 0:
        raise ConfigError(f"a Poisson load needs rate > 0 requests/s, got {rate_rps!r}")
    gaps = np.random.default_rng(seed).exponential(1e9 / rate_rps, size=num)
    return np.cumsum(gaps).astype(np.int64) - int(gaps[0])  # the first request arrives at 0


def _sleep_until(deadline_ns: int, clock: Clock) -> None:
    """Wait for ``deadline_ns`` on ``clock`` (a virtual clock with ``sleep_until`` advances instantly)."""
    virtual = getattr(clock, "sleep_until", None)
    if virtual is not None:
        virtual(deadline_ns)
        return
    remaining = deadline_ns - clock()
    if remaining > 0:
        time.sleep(remaining / 1e9)  # overshoot delays issue, but latency counts from the schedule


def run_load(sut: Any, samples: Any, *, scenario: Scenario | str, requests: int, warmup: int = 0,
             concurrency: int = 1, rate: float | None = None, seed: int = 0, clock: Clock = host_clock,
             timeout_s: float | None = None) -> RunResult:
    """Drive ``sut`` with one scenario and return the measured run.

    Args:
        sut: the system under test (``run(x, arrival_ns=...)`` returning a handle, and ``collect()``).
        samples: raw samples (cycled).
        scenario: single, closed, poisson or offline.
        requests: measured requests.
        warmup: requests run first (one at a time) and left out of the result.
        concurrency: outstanding requests in the closed loop.
        rate: arrivals per second for poisson.
        seed: seeds the Poisson schedule.
        timeout_s: give up waiting for completions after this long (None: wait).

    Returns:
        The :class:`~lab.runners.RunResult`; ``metrics.extra["load"]`` holds the scenario,
        offered and achieved rates.
    """
    scenario = Scenario(scenario)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ConfigError(f"requests must be an integer >= 1, got {requests!r}")
    if scenario is Scenario.CLOSED and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigError(f"closed loop concurrency must be an integer >= 1, got {concurrency!r}")
    n = len(samples)
    if n == 0:
        raise ConfigError("samples is empty: expected at least one sample")
    for i in range(warmup):
        sut.run(take(samples, i % n)).wait(timeout_s)
    sut.collect()  # drop the warm-up from the measured stream

    handles: list[RequestHandle] = []
    sample_of: dict[int, int] = {}
    t_issue0 = clock()
    if scenario in (Scenario.SINGLE, Scenario.CLOSED):
        slots = threading.Semaphore(1 if scenario is Scenario.SINGLE else concurrency)
        for i in range(requests):
            slots.acquire()
            h = sut.run(take(samples, i % n))
            h._future.add_done_callback(lambda _f: slots.release())
            handles.append(h)
            sample_of[h.request_id] = i % n
    elif scenario is Scenario.POISSON:
        offsets = poisson_arrivals(requests, rate or 0.0, seed=seed)
        t0 = clock()
        for i, off in enumerate(offsets.tolist()):
            arrival = t0 + off
            _sleep_until(arrival, clock)
            h = sut.run(take(samples, i % n), arrival_ns=arrival)
            handles.append(h)
            sample_of[h.request_id] = i % n
    else:  # offline: everything at once, all arriving at the same moment
        t0 = clock()
        for i in range(requests):
            h = sut.run(take(samples, i % n), arrival_ns=t0)
            handles.append(h)
            sample_of[h.request_id] = i % n
    issue_ns = clock() - t_issue0
    for h in handles:
        try:
            h.wait(timeout_s)
        except Exception:  # noqa: BLE001,S110 - each failure is recorded in the result's errors
            pass
    result = sut.collect()
    ids = sorted(r.request_id for r in result.records)
    result.sample_indices = np.asarray([sample_of.get(i, -1) for i in ids], dtype=np.int64)
    result.config.update({"scenario": scenario.value, "concurrency": concurrency, "rate": rate, "seed": seed})
    result.metrics.extra["load"] = {
        "scenario": scenario.value,
        "offered_rps": rate if scenario is Scenario.POISSON else None,
        "achieved_rps": result.metrics.throughput_rps,
        "issue_s": issue_ns / 1e9,
        "concurrency": concurrency if scenario is Scenario.CLOSED else None,
    }
    return result


class _Pending:
    __slots__ = ("rid", "x", "future", "arrival_ns")

    def __init__(self, rid: int, x: Inputs, future: Any, arrival_ns: int) -> None:
        self.rid, self.x, self.future, self.arrival_ns = rid, x, future, arrival_ns


class DynamicBatcher:
    """Server-side dynamic batching: requests are grouped up to ``max_batch`` or ``max_delay_ms``.

    A batch closes when it holds ``max_batch`` requests or when its first request has waited
    ``max_delay_ms``, whichever comes first; it then runs as one batch on the runtime and each
    request gets its own slice of the outputs. The effective batch sizes are reported in
    ``metrics.extra["batch_sizes"]``. One executor thread runs batches; the request queue is
    bounded (``queue_size``): ``run`` blocks while it is full.
    """

    mode = "dynamic-batch"

    def __init__(self, runtime: Runtime, *, max_batch: int, max_delay_ms: float, queue_size: int = 1024,
                 workload: Any = None, preprocess: Preprocess | None = None, postprocess: Postprocess | None = None,
                 profile: bool = True, clock: Clock = host_clock) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if not max_delay_ms >= 0:
            raise ConfigError(f"max_delay_ms must be >= 0, got {max_delay_ms!r}")
        self.runtime = runtime
        self.max_batch = max_batch
        self.max_delay_ns = int(max_delay_ms * 1e6)
        self.preprocess, self.postprocess = resolve_stages(workload, preprocess, postprocess)
        self.profile = profile
        self.clock = clock
        self._q: queue.Queue[_Pending | None] = queue.Queue(maxsize=queue_size)
        self._ids = itertools.count()
        self._new_state()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="lab-batcher", daemon=True)
        self._thread.start()

    def _new_state(self) -> None:
        self._profiler = Profiler(clock=self.clock, enabled=self.profile)
        self._records: list[RequestRecord] = []
        self._errors: list[RequestError] = []
        self._results: dict[int, Any] = {}
        self._batch_sizes: list[int] = []

    def config(self) -> dict[str, Any]:
        """Settings, for findings."""
        return {"mode": self.mode, "max_batch": self.max_batch, "max_delay_ms": self.max_delay_ns / 1e6}

    def run(self, x: Inputs, *, arrival_ns: int | None = None) -> RequestHandle:
        """Queue one request (leading batch axis of 1); returns a handle at once unless the queue is full."""
        import concurrent.futures as cf

        if self._closed:
            raise RunnerClosed("this DynamicBatcher is closed")
        fut: cf.Future[Any] = cf.Future()
        rid = next(self._ids)
        self._q.put(_Pending(rid, x, fut, self.clock() if arrival_ns is None else arrival_ns))
        return RequestHandle(fut, rid)

    def _loop(self) -> None:
        clock = self.clock
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            deadline = first.arrival_ns + self.max_delay_ns
            stop = False
            while len(batch) < self.max_batch:
                wait = (deadline - clock()) / 1e9
                try:
                    item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        prof, clock = self._profiler, self.clock
        rid0 = live[0].rid
        start = clock()
        for p in live:
            if start - p.arrival_ns >= MIN_QUEUE_SPAN_NS:
                prof.add(LANE_QUEUE, "queue", p.rid, p.arrival_ns, start)
        attrs = {"size": len(live), "request_ids": [p.rid for p in live]}
        self._batch_sizes.append(len(live))
        try:
            x = _concat([p.x for p in live])
            if self.preprocess is not None:
                with prof.record("pre", lane="host/0", request_id=rid0, attrs=attrs):
                    x = self.preprocess(x)
            out = self.runtime.infer(x, request_id=rid0, slot=0, profiler=prof)
            preds = None
            if self.postprocess is not None:
                with prof.record("post", lane="host/0", request_id=rid0, attrs=attrs):
                    preds = np.asarray(self.postprocess(out))
        except Exception as exc:  # noqa: BLE001 - the batch's error goes to its own requests only
            end = clock()
            for p in live:
                self._records.append(RequestRecord(p.rid, p.arrival_ns, start, end, False, False))
                self._errors.append(RequestError(p.rid, exc))
                p.future.set_exception(exc)
            return
        end = clock()
        for j, p in enumerate(live):
            mine = [o[j:j + 1] for o in out]
            self._records.append(RequestRecord(p.rid, p.arrival_ns, start, end, True, False))
            self._results[p.rid] = (mine, None if preds is None else preds[j])
            p.future.set_result(mine)

    def collect(self) -> RunResult:
        """Metrics and trace of the requests since the last collect (then reset)."""
        profiler, records, errors, results, sizes = (self._profiler, self._records, self._errors, self._results,
                                                     self._batch_sizes)
        self._new_state()
        ids = sorted(r.request_id for r in records)
        sizes_arr = np.asarray(sizes or [0])
        return build_result(
            self.mode, runtime=self.runtime, outputs=[results.get(i, (None, None))[0] for i in ids],
            predictions=[results.get(i, (None, None))[1] for i in ids] if self.postprocess else None,
            sample_indices=np.asarray(ids, dtype=np.int64), warmup=0,
            errors=sorted(errors, key=lambda e: e.request_id), records=records, trace=profiler.trace(),
            config=self.config(),
            extra={"batch_sizes": {"mean": float(sizes_arr.mean()), "max": int(sizes_arr.max()),
                                   "batches": len(sizes), "histogram": np.bincount(sizes_arr).tolist()}})

    def close(self) -> None:
        """Finish queued requests and join the batch thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _concat(xs: list[Inputs]) -> Inputs:
    if isinstance(xs[0], dict):
        return {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}  # type: ignore[index]
    return np.concatenate(xs)  # type: ignore[arg-type]


