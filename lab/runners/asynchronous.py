"""The asynchronous runner: many requests in flight on a pool of workers (MLPerf Server-like).

Three ways to use it, all thread-safe:

* ``await runner.async_run(x)`` from any asyncio event loop (RBLN ``async_run`` style) --
  the caller's loop is never blocked, and cancelling the ``await`` cancels the request
  if it has not started;
* ``handle = runner.run(x)`` then ``handle.wait(timeout)`` from any thread (RBLN ``run()``);
* ``runner.run_all(samples)`` (blocking, safe inside a notebook) or
  ``await runner.async_run_all(samples)`` for a measured run.

The core is threads, not the caller's event loop, so it behaves the same in a script,
in Jupyter (whose loop is already running) and under papermill: ``workers`` threads
take admitted requests from a queue and each runs pre, upload, compute, download and
post with its own runtime slot (lane ``host/<i>``, runtime slot ``i``). Completion
resolves a :class:`concurrent.futures.Future`, which asyncio callers await through
``asyncio.wrap_future``.

Admission: at most ``max_inflight`` requests are admitted at once (None: no cap).
``run()`` never blocks: a request over the cap waits in a pending list and is admitted
when a slot frees. ``run_all`` applies back-pressure instead: it hands the next request
over only when a slot is free, like an app that caps its concurrent predictions because
memory grows with work in flight (seed 000). Time from submission to a worker picking
the request up is a span on the ``queue`` lane.

Cancelling a request that has not started frees its slot at once; a request that has
started runs to completion (``cancel()`` returns False), as in ``concurrent.futures``.
A failed request raises its own error in its own caller; the others complete.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import itertools
import queue
import threading
import tracemalloc
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, RequestCancelled, RequestTimeout, RunnerClosed
from lab.metrics import RequestRecord
from lab.profiler import Profiler
from lab.runners.base import (
    Postprocess,
    Preprocess,
    RequestError,
    RunResult,
    build_result,
    resolve_stages,
    sample_plan,
    take,
)
from lab.runtimes.base import Inputs, Runtime
from lab.trace import LANE_QUEUE

__all__ = ["AsyncRunner", "RequestHandle"]

#: Waits shorter than this are not drawn as queue spans (they would be clock noise).
MIN_QUEUE_SPAN_NS = 1_000


class RequestHandle:
    """A request in flight: ``wait(timeout)`` for its outputs, ``cancel()`` to give up on it."""

    __slots__ = ("_future", "request_id")

    def __init__(self, future: cf.Future[Any], request_id: int) -> None:
        self._future = future
        self.request_id = request_id

    def wait(self, timeout: float | None = None) -> list[np.ndarray]:
        """Block until the outputs are ready (``timeout`` in seconds, None: forever).

        Raises:
            RequestTimeout: not done within ``timeout`` (the request goes on; wait again or cancel).
            RequestCancelled: the request was cancelled.
            Exception: the request's own error (e.g. :class:`~lab.errors.InputError`).
        """
        try:
            return self._future.result(timeout)
        except cf.TimeoutError:
            raise RequestTimeout(f"request {self.request_id} not done after {timeout} s") from None
        except cf.CancelledError:
            raise RequestCancelled(f"request {self.request_id} was cancelled") from None

    def cancel(self) -> bool:
        """Cancel if not started yet (its slot is freed at once); False if it is running or done."""
        return self._future.cancel()

    def done(self) -> bool:
        """True when outputs, an error or a cancellation is final."""
        return self._future.done()


class _RunState:
    """Everything one measured run (or the stream of single requests) collects."""

    def __init__(self, clock: Clock, profile: bool) -> None:
        self.profiler = Profiler(clock=clock, enabled=profile)
        self.records: list[RequestRecord] = []
        self.results: dict[int, tuple[list[np.ndarray] | None, Any]] = {}
        self.errors: list[RequestError] = []


class _Job:
    __slots__ = ("state", "rid", "x", "future", "submit_ns", "warmup")

    def __init__(self, state: _RunState, rid: int, x: Inputs, future: cf.Future[Any], submit_ns: int,
                 warmup: bool) -> None:
        self.state = state
        self.rid = rid
        self.x = x
        self.future = future
        self.submit_ns = submit_ns
        self.warmup = warmup


_STOP = object()


class AsyncRunner:
    """Concurrent requests on ``workers`` threads with at most ``max_inflight`` admitted at once.

    Args:
        runtime: any :class:`~lab.runtimes.base.Runtime` whose ``infer`` may be called from
            several threads with distinct slots (ONNX Runtime sessions can).
        workers: worker threads (>= 1).
        max_inflight: cap on admitted requests (None: no cap).
        workload, preprocess, postprocess, profile, clock: as for :class:`~lab.runners.SyncRunner`.
    """

    mode = "async"

    def __init__(self, runtime: Runtime, *, workers: int = 2, max_inflight: int | None = None,
                 workload: Any = None, preprocess: Preprocess | None = None,
                 postprocess: Postprocess | None = None, profile: bool = True, clock: Clock = host_clock) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
        if max_inflight is not None and (isinstance(max_inflight, bool) or not isinstance(max_inflight, int)
                                         or max_inflight < 1):
            raise ConfigError(f"max_inflight must be an integer >= 1 or None, got {max_inflight!r}")
        self.runtime = runtime
        self.workers = workers
        self.max_inflight = max_inflight
        self.preprocess, self.postprocess = resolve_stages(workload, preprocess, postprocess)
        self.profile = profile
        self.clock = clock
        self._ids = itertools.count()
        self._closed = False
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # admission: `_inflight` admitted requests; over the cap, run() parks jobs in `_pending`
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._inflight = 0
        self._pending: collections.deque[_Job] = collections.deque()
        self._stream = _RunState(clock, profile)
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"lab-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def config(self) -> dict[str, Any]:
        """The runner's settings, for findings."""
        return {"mode": self.mode, "workers": self.workers, "max_inflight": self.max_inflight,
                "profile": self.profile}

    # -- admission -------------------------------------------------------------------
    def _admit(self, job: _Job, *, block: bool) -> None:
        cap = self.max_inflight
        with self._lock:
            if self._closed:
                raise RunnerClosed("this AsyncRunner is closed; create a new one")
            if cap is not None and self._inflight >= cap:
                if not block:
                    self._pending.append(job)
                    return
                while self._inflight >= cap:
                    self._slot_freed.wait()
                    if self._closed:
                        raise RunnerClosed("this AsyncRunner was closed while waiting for a slot")
                job.submit_ns = self.clock()  # back-pressure: the request is handed over only now
            self._inflight += 1
            inflight = self._inflight
        self._enqueue(job, inflight)

    def _enqueue(self, job: _Job, inflight: int) -> None:
        job.state.profiler.counter("inflight", inflight)
        job.future.add_done_callback(lambda _, state=job.state: self._release(state))
        self._jobs.put(job)

    def _release(self, state: _RunState) -> None:
        """A request is done (result, error or cancellation): its slot goes to the next pending one."""
        with self._lock:
            while self._pending:
                job = self._pending.popleft()
                if job.future.cancelled():
                    continue  # cancelled while pending: never admitted, nothing to free
                inflight = self._inflight
                break
            else:
                job = None
                self._inflight -= 1
                inflight = self._inflight
                self._slot_freed.notify()
        if job is not None:
            self._enqueue(job, inflight)
        else:
            state.profiler.counter("inflight", inflight)

    # -- workers ---------------------------------------------------------------------
    def _worker(self, slot: int) -> None:
        lane = f"host/{slot}"
        clock, infer = self.clock, self.runtime.infer
        get = self._jobs.get
        while True:
            job = get()
            if job is _STOP:
                return
            fut = job.future
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled before it started; its slot was freed by the cancel
            state, rid = job.state, job.rid
            prof = state.profiler
            start = clock()
            if start - job.submit_ns >= MIN_QUEUE_SPAN_NS:
                prof.add(LANE_QUEUE, "queue", rid, job.submit_ns, start)
            try:
                x = job.x
                if self.preprocess is not None:
                    with prof.record("pre", lane=lane, request_id=rid):
                        x = self.preprocess(x)
                out = infer(x, request_id=rid, slot=slot, profiler=prof)
                pred = None
                if self.postprocess is not None:
                    with prof.record("post", lane=lane, request_id=rid):
                        pred = self.postprocess(out)
            except BaseException as exc:  # noqa: BLE001 - the error belongs to this request alone
                state.records.append(RequestRecord(rid, job.submit_ns, start, clock(), False, job.warmup))
                state.errors.append(RequestError(rid, exc))
                state.results[rid] = (None, None)
                fut.set_exception(exc)
                continue
            end = clock()
            state.records.append(RequestRecord(rid, job.submit_ns, start, end, True, job.warmup))
            state.results[rid] = (out, pred)
            fut.set_result(out)

    # -- single requests -------------------------------------------------------------
    def run(self, x: Inputs, *, arrival_ns: int | None = None) -> RequestHandle:
        """Submit one request (``x`` with a leading batch axis); returns at once with a handle.

        Args:
            x: the request's input.
            arrival_ns: when the request *should* have arrived (a load generator's schedule);
                latency is measured from it, so time lost before submission is not hidden.
                Default: now.
        """
        if self._closed:
            raise RunnerClosed("this AsyncRunner is closed; create a new one")
        rid = next(self._ids)
        fut: cf.Future[Any] = cf.Future()
        submit = self.clock() if arrival_ns is None else arrival_ns
        self._admit(_Job(self._stream, rid, x, fut, submit, False), block=False)
        return RequestHandle(fut, rid)

    async def async_run(self, x: Inputs) -> list[np.ndarray]:
        """``await`` one request's outputs from any event loop; cancelling the await cancels the request."""
        return await asyncio.wrap_future(self.run(x)._future)

    def collect(self) -> RunResult:
        """Metrics and trace of the requests made with :meth:`run` / :meth:`async_run` so far (then reset)."""
        state, self._stream = self._stream, _RunState(self.clock, self.profile)
        for job in list(self._pending):
            if job.state is state and job.future.cancel():
                state.errors.append(RequestError(job.rid, RequestCancelled(f"request {job.rid} was cancelled")))
        ids = sorted(r.request_id for r in state.records)
        return self._result(state, ids, np.asarray(ids, dtype=np.int64), warmup=0, extra={})

    # -- measured runs ---------------------------------------------------------------
    def _submit_all(self, state: _RunState, samples: Any, plan: np.ndarray, warmup: int) -> list[cf.Future[Any]]:
        futures = []
        clock = self.clock
        for rid, i in enumerate(plan.tolist()):
            fut: cf.Future[Any] = cf.Future()
            # block=True: back-pressure; the next request is taken only when a slot is free
            self._admit(_Job(state, rid, take(samples, i), fut, clock(), rid < warmup), block=True)
            futures.append(fut)
        return futures

    def run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None,
                measure_memory: bool = False) -> RunResult:
        """Run ``warmup`` + ``requests`` requests concurrently and measure them (blocks the caller).

        Args:
            samples: raw samples with a leading axis (cycled when ``requests`` exceeds them).
            warmup: leading requests left out of the metrics.
            requests: measured requests (default: one per sample).
            measure_memory: trace Python heap allocations (numpy arrays included) and report
                ``peak_memory_bytes``; tracing slows allocation, so time such runs apart.
        """
        if self._closed:
            raise RunnerClosed("this AsyncRunner is closed; create a new one")
        n, plan = sample_plan(samples, warmup=warmup, requests=requests)
        state = _RunState(self.clock, self.profile)
        extra: dict[str, Any] = {}
        if measure_memory:
            tracemalloc.start()
            tracemalloc.reset_peak()
        try:
            cf.wait(self._submit_all(state, samples, plan, warmup))
        finally:
            if measure_memory:
                extra["peak_memory_bytes"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        return self._result(state, list(range(len(plan))), plan, warmup=warmup, extra=extra, samples=n)

    async def async_run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None) -> RunResult:
        """``await``-able :meth:`run_all` for code inside an event loop (the loop is never blocked)."""
        return await asyncio.to_thread(self.run_all, samples, warmup=warmup, requests=requests)

    def _result(self, state: _RunState, ids: list[int], plan: np.ndarray, *, warmup: int,
                extra: dict[str, Any], samples: int | None = None) -> RunResult:
        outputs = [state.results.get(rid, (None, None))[0] for rid in ids]
        predictions = [state.results.get(rid, (None, None))[1] for rid in ids] if self.postprocess else None
        cfg = {**self.config(), **({"samples": samples} if samples is not None else {})}
        return build_result(self.mode, runtime=self.runtime, outputs=outputs, predictions=predictions,
                            sample_indices=plan, warmup=warmup,
                            errors=sorted(state.errors, key=lambda e: e.request_id),
                            records=state.records, trace=state.profiler.trace(), config=cfg, extra=extra)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Cancel requests not yet started, let running ones finish, join every thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = list(self._pending), collections.deque()
            self._slot_freed.notify_all()
        for job in pending:
            job.future.cancel()
        while True:  # admitted but not started: cancel (a worker that took one first runs it)
            try:
                self._jobs.get_nowait().future.cancel()
            except queue.Empty:
                break
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            t.join()

    def __enter__(self) -> AsyncRunner:
        if self._closed:
            raise RunnerClosed("this AsyncRunner is closed; create a new one")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
