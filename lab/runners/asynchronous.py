"""The asynchronous runner: many requests in flight on a pool of workers (MLPerf Server-like).

The runner owns a private asyncio event loop on a background thread, so it works the
same from a script, from a notebook (whose loop is already running) and from other
threads:

* ``await runner.async_run(x)`` from any event loop (RBLN ``async_run`` style);
* ``handle = runner.run(x)`` then ``handle.wait(timeout)`` from any thread (RBLN ``run()``);
* ``runner.run_all(samples)`` / ``await runner.async_run_all(samples)`` for a measured run.

A request is *admitted* when it gets one of ``max_inflight`` slots (unbounded when
None), then a worker thread (one of ``workers``) runs pre, upload, compute, download
and post on it with its own runtime slot. Time spent waiting for admission is a span
on the ``queue`` lane. ``run_all`` applies back-pressure: it hands the next request
over only when a slot is free, like an app that caps its concurrent predictions
because memory grows with work in flight (seed 000).

Cancelling a request frees its slot: at once if it has not started, else as soon as
its worker finishes the step it is in. A failed request raises its own error in its
own caller; the others complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import threading
import tracemalloc
from collections.abc import Callable
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
        """Ask to cancel; True if the request will not deliver outputs."""
        return self._future.cancel() or self._future.cancelled()

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
        self.inflight = 0


class AsyncRunner:
    """Concurrent requests on ``workers`` threads with at most ``max_inflight`` admitted at once.

    Args:
        runtime: any :class:`~lab.runtimes.base.Runtime` whose ``infer`` may be called from
            several threads with distinct slots (ONNX Runtime sessions can).
        workers: worker threads (>= 1); worker ``i`` uses runtime slot ``i`` and lane ``host/i``.
        max_inflight: cap on admitted requests (None: no cap).
        workload, preprocess, postprocess, profile, clock: as for :class:`~lab.runners.SyncRunner`.
    """

    mode = "async"

    def __init__(self, runtime: Runtime, *, workers: int = 2, max_inflight: int | None = None,
                 workload: Any = None, preprocess: Preprocess | None = None,
                 postprocess: Postprocess | None = None, profile: bool = True, clock: Clock = host_clock) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
        if max_inflight is not None and (not isinstance(max_inflight, int) or max_inflight < 1):
            raise ConfigError(f"max_inflight must be an integer >= 1 or None, got {max_inflight!r}")
        self.runtime = runtime
        self.workers = workers
        self.max_inflight = max_inflight
        self.preprocess, self.postprocess = resolve_stages(workload, preprocess, postprocess)
        self.profile = profile
        self.clock = clock
        self._ids = itertools.count()
        self._slot_ids = itertools.count()
        self._local = threading.local()
        self._closed = False
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-worker",
                                           initializer=self._init_worker)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab-async-loop", daemon=True)
        self._thread.start()
        self._sem: asyncio.Semaphore | None = None
        if max_inflight is not None:
            self._sem = self._call_in_loop(lambda: asyncio.Semaphore(max_inflight))
        self._stream = _RunState(clock, profile)

    # -- plumbing --------------------------------------------------------------------
    def _call_in_loop(self, fn: Callable[[], Any]) -> Any:
        async def _make() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(_make(), self._loop).result()

    def _init_worker(self) -> None:
        self._local.slot = next(self._slot_ids)

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerClosed("this AsyncRunner is closed; create a new one")

    def config(self) -> dict[str, Any]:
        """The runner's settings, for findings."""
        return {"mode": self.mode, "workers": self.workers, "max_inflight": self.max_inflight,
                "profile": self.profile}

    def _work(self, state: _RunState, rid: int, x: Inputs) -> tuple[list[np.ndarray], Any, int]:
        """Runs on a worker thread: pre, the runtime's three steps, post."""
        slot = self._local.slot
        lane = f"host/{slot}"
        prof = state.profiler
        start = self.clock()
        if self.preprocess is not None:
            with prof.record("pre", lane=lane, request_id=rid):
                x = self.preprocess(x)
        out = self.runtime.infer(x, request_id=rid, slot=slot, profiler=prof)
        pred = None
        if self.postprocess is not None:
            with prof.record("post", lane=lane, request_id=rid):
                pred = self.postprocess(out)
        return out, pred, start

    async def _request(self, state: _RunState, rid: int, x: Inputs, submit_ns: int, *, admitted: bool,
                       warmup: bool = False) -> list[np.ndarray]:
        """Runs in the runner's loop: admission, hand-off to a worker, bookkeeping."""
        loop = asyncio.get_running_loop()
        sem = self._sem
        if sem is not None and not admitted:
            await sem.acquire()
        admit_ns = self.clock()
        if admit_ns - submit_ns >= MIN_QUEUE_SPAN_NS:
            state.profiler.add(LANE_QUEUE, "queue", rid, submit_ns, admit_ns)
        state.inflight += 1
        state.profiler.counter("inflight", state.inflight, admit_ns)
        cfut = self._pool.submit(self._work, state, rid, x)
        fut = asyncio.wrap_future(cfut, loop=loop)
        released = False

        def release() -> None:
            state.inflight -= 1
            state.profiler.counter("inflight", state.inflight)
            if sem is not None:
                sem.release()

        def release_later(_: Any) -> None:  # runs on the worker thread when it finishes
            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:  # the loop is closed: the runner is gone, nothing to free
                pass

        try:
            out, pred, start = await asyncio.shield(fut)
        except asyncio.CancelledError:
            if cfut.cancel():  # never started: free the slot now
                release()
            else:  # running: free the slot when the worker is done with it
                cfut.add_done_callback(release_later)
            released = True
            state.records.append(RequestRecord(rid, submit_ns, admit_ns, self.clock(), False, warmup))
            state.errors.append(RequestError(rid, RequestCancelled(f"request {rid} was cancelled")))
            raise
        except Exception as exc:
            state.records.append(RequestRecord(rid, submit_ns, admit_ns, self.clock(), False, warmup))
            state.errors.append(RequestError(rid, exc))
            state.results[rid] = (None, None)
            raise
        finally:
            if not released:
                release()
        end = self.clock()
        state.records.append(RequestRecord(rid, submit_ns, start, end, True, warmup))
        state.results[rid] = (out, pred)
        return out

    # -- single requests -------------------------------------------------------------
    def run(self, x: Inputs) -> RequestHandle:
        """Submit one request (``x`` with a leading batch axis); returns at once with a handle."""
        self._check_open()
        rid = next(self._ids)
        fut = asyncio.run_coroutine_threadsafe(
            self._request(self._stream, rid, x, self.clock(), admitted=False), self._loop)
        return RequestHandle(fut, rid)

    async def async_run(self, x: Inputs) -> list[np.ndarray]:
        """``await`` one request's outputs from any event loop; cancelling the await cancels the request."""
        return await asyncio.wrap_future(self.run(x)._future)

    def collect(self) -> RunResult:
        """Metrics and trace of the requests made with :meth:`run` / :meth:`async_run` so far (then reset)."""
        state, self._stream = self._stream, _RunState(self.clock, self.profile)
        ids = sorted(r.request_id for r in state.records)
        return self._result(state, ids, np.asarray(ids, dtype=np.int64), warmup=0, extra={})

    # -- measured runs ---------------------------------------------------------------
    async def _run_all(self, state: _RunState, samples: Any, plan: np.ndarray, warmup: int) -> None:
        loop = asyncio.get_running_loop()
        tasks = []
        sem = self._sem
        for rid, i in enumerate(plan.tolist()):
            if sem is not None:
                await sem.acquire()  # back-pressure: hand a request over only when a slot is free
            x = take(samples, i)
            tasks.append(loop.create_task(
                self._request(state, rid, x, self.clock(), admitted=True, warmup=rid < warmup)))
        await asyncio.gather(*tasks, return_exceptions=True)

    def run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None,
                measure_memory: bool = False) -> RunResult:
        """Run ``warmup`` + ``requests`` requests concurrently and measure them (blocks the caller).

        Safe to call from a notebook cell: the requests run on the runner's own loop.

        Args:
            samples: raw samples with a leading axis (cycled when ``requests`` exceeds them).
            warmup: leading requests left out of the metrics.
            requests: measured requests (default: one per sample).
            measure_memory: trace Python heap allocations (numpy arrays included) and report
                ``peak_memory_bytes``; tracing slows allocation, so time such runs apart.
        """
        self._check_open()
        n, plan = sample_plan(samples, warmup=warmup, requests=requests)
        state = _RunState(self.clock, self.profile)
        if measure_memory:
            tracemalloc.start()
            tracemalloc.reset_peak()
        try:
            fut = asyncio.run_coroutine_threadsafe(self._run_all(state, samples, plan, warmup), self._loop)
            fut.result()
        finally:
            extra: dict[str, Any] = {}
            if measure_memory:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                extra["peak_memory_bytes"] = peak
        return self._result(state, list(range(len(plan))), plan, warmup=warmup, extra=extra, samples=n)

    async def async_run_all(self, samples: Any, *, warmup: int = 0, requests: int | None = None) -> RunResult:
        """``await``-able :meth:`run_all` for code already inside an event loop."""
        self._check_open()
        n, plan = sample_plan(samples, warmup=warmup, requests=requests)
        state = _RunState(self.clock, self.profile)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            self._run_all(state, samples, plan, warmup), self._loop))
        return self._result(state, list(range(len(plan))), plan, warmup=warmup, extra={}, samples=n)

    def _result(self, state: _RunState, ids: list[int], plan: np.ndarray, *, warmup: int,
                extra: dict[str, Any], samples: int | None = None) -> RunResult:
        outputs = [state.results.get(rid, (None, None))[0] for rid in ids]
        predictions = [state.results.get(rid, (None, None))[1] for rid in ids] if self.postprocess else None
        cfg = {**self.config(), **({"samples": samples} if samples is not None else {})}
        return build_result(self.mode, runtime=self.runtime, outputs=outputs, predictions=predictions,
                            sample_indices=plan, warmup=warmup, errors=sorted(state.errors, key=lambda e: e.request_id),
                            records=state.records, trace=state.profiler.trace(), config=cfg, extra=extra)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Cancel requests not yet started, finish running ones, join every thread. Idempotent."""
        if self._closed:
            return
        self._closed = True

        async def _cancel_all() -> None:
            current = asyncio.current_task()
            for t in asyncio.all_tasks():
                if t is not current:
                    t.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> AsyncRunner:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
