"""The async styles the seeds teach, over any runtime.

* RBLN style (seed 002): ``rt = AsyncRuntime(runtime, parallel=2)``; ``await rt.async_run(x)``
  or ``task = rt.run(x); task.wait(timeout)``. ``parallel`` is the number of requests being
  prepared and run at once: with 2 (double buffering), the next input is preprocessed and
  uploaded while the device computes the current one; with 1, each request waits for the
  previous one to finish.
* Furiosa style (seed 004): ``submitter, queue = create_async(runtime, workers=N,
  input_queue_size=Q, output_queue_size=Q)``; ``submitter.submit(x, context=c)`` returns at
  once until the bounded input queue is full, then blocks (or raises
  :class:`~lab.errors.QueueFull` with ``on_full="raise"``); ``queue.recv(timeout)`` returns
  ``(context, outputs)`` in completion order. A failed request comes out of ``recv`` as
  :class:`~lab.errors.RequestFailed` carrying its context; the others are unaffected.

Both record the same spans as the runners (lanes ``host/<i>``, ``h2d``, ``device``, ``d2h``,
``queue``), and ``collect()`` turns what was run into a :class:`~lab.runners.RunResult`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, QueueFull, RequestFailed, RequestTimeout, RunnerClosed
from lab.metrics import RequestRecord
from lab.profiler import Profiler
from lab.runners.asynchronous import MIN_QUEUE_SPAN_NS, AsyncRunner
from lab.runners.base import Postprocess, Preprocess, RequestError, RunResult, build_result, resolve_stages
from lab.runtimes.base import Inputs, Runtime
from lab.trace import LANE_QUEUE

__all__ = ["AsyncRuntime", "CompletionQueue", "Submitter", "create_async"]


class AsyncRuntime(AsyncRunner):
    """RBLN-style asynchronous runtime over any lab runtime (``parallel`` 1 or 2, see the module doc).

    Example::

        rt = lab.AsyncRuntime(lab.create_runtime("simnpu", path), parallel=2)
        outputs = await asyncio.gather(*(rt.async_run(x) for x in inputs))
        task = rt.run(x); outputs = task.wait(timeout=1.0)
    """

    mode = "async"

    def __init__(self, runtime: Runtime, *, parallel: int = 1, workload: Any = None,
                 preprocess: Preprocess | None = None, postprocess: Postprocess | None = None,
                 profile: bool = True, clock: Clock = host_clock) -> None:
        if parallel not in (1, 2):
            raise ConfigError(f"parallel must be 1 or 2 (double buffering), got {parallel!r}")
        super().__init__(runtime, workers=parallel, max_inflight=None, workload=workload, preprocess=preprocess,
                         postprocess=postprocess, profile=profile, clock=clock)
        self.parallel = parallel

    def config(self) -> dict[str, Any]:
        """The runtime's settings, for findings."""
        return {**super().config(), "parallel": self.parallel, "api": "AsyncRuntime (RBLN style)"}


_END = object()


class _Shared:
    """State shared by a Submitter, its workers and its CompletionQueue."""

    def __init__(self, runtime: Runtime, workers: int, in_size: int, out_size: int, pre: Preprocess | None,
                 post: Postprocess | None, clock: Clock, profile: bool) -> None:
        self.runtime = runtime
        self.inq: queue.Queue[Any] = queue.Queue(maxsize=in_size)
        self.outq: queue.Queue[Any] = queue.Queue(maxsize=out_size)
        self.pre, self.post = pre, post
        self.clock = clock
        self.profile = profile
        self.profiler = Profiler(clock=clock, enabled=profile)
        self.records: list[RequestRecord] = []
        self.errors: list[RequestError] = []
        self.ids = itertools.count()
        self.closed = threading.Event()
        self.workers_left = workers
        self.lock = threading.Lock()


class Submitter:
    """The sending half of :func:`create_async`: ``submit(x, context=...)``, then ``close()``."""

    def __init__(self, shared: _Shared, on_full: str) -> None:
        self._s = shared
        self.on_full = on_full

    def submit(self, x: Inputs, *, context: Any = None, timeout: float | None = None) -> int:
        """Queue one request; returns its request id.

        Returns at once while the input queue has room. When it is full: blocks (up to
        ``timeout`` seconds, then :class:`~lab.errors.QueueFull`) with ``on_full="block"``,
        or raises :class:`~lab.errors.QueueFull` at once with ``on_full="raise"``.

        Raises:
            RunnerClosed: after :meth:`close`.
        """
        s = self._s
        if s.closed.is_set():
            raise RunnerClosed("this submitter is closed; create a new one with create_async()")
        rid = next(s.ids)
        item = (rid, x, context, s.clock())
        try:
            if self.on_full == "raise":
                s.inq.put_nowait(item)
            else:
                s.inq.put(item, timeout=timeout)
        except queue.Full:
            raise QueueFull(f"input queue full ({s.inq.maxsize} requests waiting); request {rid} not queued") from None
        return rid

    def close(self) -> None:
        """No more requests: workers finish what is queued, then the completion queue ends. Idempotent."""
        s = self._s
        if s.closed.is_set():
            return
        s.closed.set()
        for _ in range(s.workers_left):
            s.inq.put(_END)  # blocks while the queue is full: the workers are draining it

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CompletionQueue:
    """The receiving half of :func:`create_async`: ``recv(timeout)`` -> ``(context, outputs)``."""

    def __init__(self, shared: _Shared, threads: list[threading.Thread]) -> None:
        self._s = shared
        self._threads = threads
        self._ended = False

    def recv(self, timeout: float | None = None) -> tuple[Any, list[np.ndarray]]:
        """The next completed request as ``(context, outputs)``, in completion order.

        Raises:
            RequestTimeout: nothing completed within ``timeout`` seconds.
            RequestFailed: that request failed (``.context`` and ``.error`` say which and why).
            RunnerClosed: the submitter was closed and every request has been received.
        """
        if self._ended:
            raise RunnerClosed("every request has been received and the submitter is closed")
        try:
            item = self._s.outq.get(timeout=timeout)
        except queue.Empty:
            raise RequestTimeout(f"no request completed within {timeout} s") from None
        if item is _END:
            self._ended = True
            for t in self._threads:
                t.join()
            raise RunnerClosed("every request has been received and the submitter is closed")
        context, outputs, error = item
        if error is not None:
            raise RequestFailed(context, error) from error
        return context, outputs

    def __iter__(self) -> Iterator[tuple[Any, list[np.ndarray]]]:
        """Iterate ``(context, outputs)`` until the submitter is closed and drained (failures raise)."""
        while True:
            try:
                yield self.recv()
            except RunnerClosed:
                return

    def collect(self) -> RunResult:
        """Metrics and trace of every request so far (call after the queue is drained)."""
        s = self._s
        records = sorted(s.records, key=lambda r: r.request_id)
        ids = [r.request_id for r in records]
        return build_result("async", runtime=s.runtime, outputs=[None] * len(ids), predictions=None,
                            sample_indices=np.asarray(ids, dtype=np.int64), warmup=0,
                            errors=sorted(s.errors, key=lambda e: e.request_id), records=records,
                            trace=s.profiler.trace(), config={"api": "create_async (Furiosa style)",
                                                              "workers": len(self._threads),
                                                              "input_queue_size": s.inq.maxsize,
                                                              "output_queue_size": s.outq.maxsize})


def _worker(s: _Shared, slot: int) -> None:
    lane = f"host/{slot}"
    prof, clock = s.profiler, s.clock
    while True:
        item = s.inq.get()
        if item is _END:
            with s.lock:
                s.workers_left -= 1
                last = s.workers_left == 0
            if last:
                s.outq.put(_END)
            return
        rid, x, context, submit = item
        start = clock()
        if start - submit >= MIN_QUEUE_SPAN_NS:
            prof.add(LANE_QUEUE, "queue", rid, submit, start)
        try:
            if s.pre is not None:
                with prof.record("pre", lane=lane, request_id=rid):
                    x = s.pre(x)
            out = s.runtime.infer(x, request_id=rid, slot=slot, profiler=prof)
            if s.post is not None:
                with prof.record("post", lane=lane, request_id=rid):
                    out = s.post(out)
            error = None
        except Exception as exc:  # noqa: BLE001 - the error goes to this request's receiver alone
            out, error = None, exc
            s.errors.append(RequestError(rid, exc))
        s.records.append(RequestRecord(rid, submit, start, clock(), error is None, False))
        s.outq.put((context, out, error))  # blocks while the output queue is full: back-pressure


def create_async(runtime: Runtime, *, workers: int = 1, input_queue_size: int = 8, output_queue_size: int = 8,
                 on_full: str = "block", workload: Any = None, preprocess: Preprocess | None = None,
                 postprocess: Postprocess | None = None, profile: bool = True,
                 clock: Clock = host_clock) -> tuple[Submitter, CompletionQueue]:
    """Furiosa-style queue API: ``workers`` threads between two bounded queues.

    Args:
        runtime: any lab runtime.
        workers: worker threads (each with its own runtime slot).
        input_queue_size: requests that may wait for a worker before ``submit`` blocks/raises.
        output_queue_size: completed requests that may wait for ``recv`` before workers block.
        on_full: ``"block"`` or ``"raise"`` when the input queue is full.
        workload, preprocess, postprocess: as for the runners; with a postprocess, ``recv``
            returns its result instead of the raw outputs.

    Returns:
        ``(submitter, completion_queue)``. Close the submitter when done; iterate or ``recv``
        the queue until it raises :class:`~lab.errors.RunnerClosed`.
    """
    for name, value in (("workers", workers), ("input_queue_size", input_queue_size),
                        ("output_queue_size", output_queue_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if on_full not in ("block", "raise"):
        raise ConfigError(f"on_full must be 'block' or 'raise', got {on_full!r}")
    pre, post = resolve_stages(workload, preprocess, postprocess)
    shared = _Shared(runtime, workers, input_queue_size, output_queue_size, pre, post, clock, profile)
    threads = [threading.Thread(target=_worker, args=(shared, i), name=f"lab-queue-worker-{i}", daemon=True)
               for i in range(workers)]
    for t in threads:
        t.start()
    return Submitter(shared, on_full), CompletionQueue(shared, threads)
