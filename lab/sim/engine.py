"""Device engines: real threads with bounded queues that hold each job for its modelled duration.

An :class:`Engine` is one DMA engine or one processing element. Its thread takes jobs from
a bounded ``queue.Queue`` and, for each, keeps its own *device clock*::

    start = max(job.ready_ns, end of this engine's previous job)   # modelled, not measured
    end   = start + duration(job)
    clock.sleep_until(end)                                         # hold the job
    record span (lane, stage, start, end); job.ready_ns = end; forward(job)

Because ``start`` and ``end`` are computed from modelled times, the overshoot of each sleep
(the OS wakes a thread about 0.1 ms late) delays that thread's wake-up but never the next
job's modelled start: overshoot does not accumulate into throughput, and the spans on the
timeline are the modelled ones.

In real time the engine also checks that the host keeps up. When it picks a job up more than
``lag_tolerance_ns`` after the job's modelled start (its thread was descheduled, or the
functional computation took longer than the modelled time), it *re-anchors* its device clock
at the real time (counted in ``resyncs``) rather than let the modelled timeline run ahead of
reality without bound; a job that starts or finishes more than ``lag_tolerance_ns`` late is
counted in ``late_jobs`` and its lateness in ``max_lateness_ns``. With a virtual clock
(``clock.realtime`` False) nothing is ever late: the timeline is exactly the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from lab.clock import SleepingClock

__all__ = ["DEFAULT_LAG_TOLERANCE_NS", "HOLD_SLICE_NS", "PUT_POLL_S", "STOP", "Engine", "SimJob"]

#: How late (ns) an engine may start or finish a job before it counts as late (and, at the
#: start, before the device clock is re-anchored). Well above one sleep's overshoot (~0.1 ms).
DEFAULT_LAG_TOLERANCE_NS = 1_000_000
#: In real time, a long hold wakes at least this often (ns) to notice ``close()``.
HOLD_SLICE_NS = 20_000_000
#: A blocked ``put`` re-checks for ``close()`` this often (seconds).
PUT_POLL_S = 0.02

#: Put on an engine's queue to stop its thread.
STOP: Any = object()


class SimJob:
    """One request travelling through the engines (the runtime fills the fields it uses).

    Attributes:
        number: the runtime's own sequence number (unique, in submission order).
        request_id: the caller's id (-1: none), used in spans.
        label: ``"request 7"`` (or ``"request #12"`` without an id), used in errors.
        slot: the caller's slot (host lane ``host/<slot>``).
        device: index of the device it runs on.
        pe: index of the PE within the device (set at dispatch).
        seq: position in its device's dispatch order (in-order engines process by it).
        ready_ns: modelled time the job is ready for its next engine.
        stages: the modelled :class:`~lab.sim.cost.StageTimes` of the request.
        profiler: where spans and counters go (None: nowhere).
        error: set when the job failed; later engines pass it through without holding it.
    """

    __slots__ = ("number", "request_id", "label", "slot", "device", "pe", "seq", "ready_ns", "stages", "batch",
                 "feed", "profiler", "fail", "outputs", "error", "future")

    def __init__(self, number: int, request_id: int, *, ready_ns: int, stages: Any = None, slot: int = 0,
                 device: int = 0, batch: int = 1, feed: Any = None, profiler: Any = None, fail: bool = False,
                 future: Any = None) -> None:
        self.number = number
        self.request_id = request_id
        self.label = f"request {request_id}" if request_id >= 0 else f"request #{number}"
        self.slot = slot
        self.device = device
        self.pe = 0
        self.seq = number
        self.ready_ns = ready_ns
        self.stages = stages
        self.batch = batch
        self.feed = feed
        self.profiler = profiler
        self.fail = fail
        self.outputs: Any = None
        self.error: BaseException | None = None
        self.future = future


class Engine:
    """One engine thread (see the module docstring for its timing rules).

    Args:
        lane: the timeline lane of its spans (``h2d/0``, ``device/1``, ``d2h/0``).
        stage: the name of its spans (``upload``, ``compute``, ``download``).
        clock: a clock with ``sleep_until`` (:class:`~lab.clock.RealTimeClock` or
            :class:`~lab.clock.VirtualClock`).
        duration: the job's modelled duration on this engine, ns.
        forward: called (on this thread) with each finished job; may block, e.g. on the next
            engine's full queue.
        work: called (on this thread) at the start of each job; does the job's real work
            (functional computation, fault injection) and returns the span's attributes.
        queue_size: bound of the job queue; a full queue blocks :meth:`put`.
        in_order: process jobs in ``job.seq`` order (0, 1, 2, ...) whatever order they arrive in.
        lag_tolerance_ns: see :data:`DEFAULT_LAG_TOLERANCE_NS`.
        closing: set by the owner on close; jobs are then dropped, not held.
    """

    def __init__(self, lane: str, stage: str, *, clock: SleepingClock, duration: Callable[[SimJob], int],
                 forward: Callable[[SimJob], Any], work: Callable[[SimJob], Mapping[str, Any] | None] | None = None,
                 queue_size: int = 64, in_order: bool = False,
                 lag_tolerance_ns: int = DEFAULT_LAG_TOLERANCE_NS, closing: threading.Event | None = None) -> None:
        self.lane = lane
        self.stage = stage
        self.counter_name = f"queue:{lane}"
        self.clock = clock
        self.realtime = bool(getattr(clock, "realtime", True))
        self.duration = duration
        self.forward = forward
        self.work = work
        self.in_order = in_order
        self.lag_tolerance_ns = int(lag_tolerance_ns)
        self.closing = closing if closing is not None else threading.Event()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.free_ns = 0  # modelled end of the previous job: this engine's device clock
        # statistics (written by this engine's thread only)
        self.jobs = 0
        self.late_jobs = 0
        self.max_lateness_ns = 0
        self.resyncs = 0
        self.busy_ns = 0
        self._occupancy = 0  # jobs queued or held here (also counts the in-order buffer)
        self._occ_lock = threading.Lock()
        self._held: dict[int, SimJob] = {}
        self._next_seq = 0
        self.thread = threading.Thread(target=self._run, name=f"simnpu-{lane}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the thread; returns self."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop after the jobs already queued (dropped if closing) and join it."""
        while self.thread.is_alive():
            try:
                self.queue.put(STOP, timeout=PUT_POLL_S)
                break
            except queue.Full:
                continue
        self.thread.join()

    # -- queue -----------------------------------------------------------------------
    def put(self, job: SimJob) -> bool:
        """Queue ``job``, blocking while the queue is full; False if closing while blocked."""
        self._occupancy_change(job, +1, job.ready_ns)
        q = self.queue
        while True:
            try:
                q.put(job, timeout=PUT_POLL_S)
                return True
            except queue.Full:
                if self.closing.is_set():
                    self._occupancy_change(job, -1, job.ready_ns)
                    return False

    def _occupancy_change(self, job: SimJob, delta: int, t_ns: int) -> None:
        with self._occ_lock:
            self._occupancy += delta
            value = self._occupancy
        prof = job.profiler
        if prof is not None:
            prof.counter(self.counter_name, value, t_ns)

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        get = self.queue.get
        while True:
            job = get()
            if job is STOP:
                return
            if not self.in_order:
                self._process(job)
                continue
            self._held[job.seq] = job
            while self._next_seq in self._held:
                nxt = self._held.pop(self._next_seq)
                self._next_seq += 1
                self._process(nxt)

    def _process(self, job: SimJob) -> None:
        if self.closing.is_set():
            self._occupancy_change(job, -1, job.ready_ns)
            return  # its future was failed by close()
        if job.error is not None:  # failed upstream: pass it on without holding it
            self._occupancy_change(job, -1, job.ready_ns)
            self.forward(job)
            return
        clock = self.clock
        tolerance = self.lag_tolerance_ns
        duration = self.duration(job)
        start = job.ready_ns if job.ready_ns > self.free_ns else self.free_ns
        lateness = 0
        if self.realtime:
            lag = clock() - start
            if lag > tolerance:  # the host fell behind: re-anchor the device clock at now
                self.resyncs += 1
                start += lag
                lateness = lag
        end = start + duration
        attrs = None
        if self.work is not None:
            try:
                attrs = self.work(job)
            except Exception as exc:  # noqa: BLE001 - the error belongs to this job; the engine goes on
                job.error = exc
                attrs = {"error": type(exc).__name__}
        self._hold(end)
        if self.realtime:
            late = clock() - end
            if late > lateness:
                lateness = late
        if lateness > tolerance:
            self.late_jobs += 1
        if lateness > self.max_lateness_ns:
            self.max_lateness_ns = lateness
        self.jobs += 1
        self.busy_ns += duration
        self.free_ns = end
        job.ready_ns = end
        prof = job.profiler
        if prof is not None:
            prof.add(self.lane, self.stage, job.request_id, start, end, attrs)
        self._occupancy_change(job, -1, end)
        if not self.closing.is_set():
            self.forward(job)

    def _hold(self, end_ns: int) -> None:
        """Sleep until ``end_ns``; in real time, in slices so that ``close()`` is noticed."""
        clock = self.clock
        if not self.realtime:
            clock.sleep_until(end_ns)
            return
        while True:
            now = clock()
            if now >= end_ns or self.closing.is_set():
                return
            clock.sleep_until(min(end_ns, now + HOLD_SLICE_NS))

    # -- statistics ------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Zero the counters (call while idle: the engine thread writes them without a lock)."""
        self.jobs = self.late_jobs = self.max_lateness_ns = self.resyncs = self.busy_ns = 0

    def stats(self) -> dict[str, Any]:
        """Jobs held, late jobs, worst lateness, re-anchorings and modelled busy time (ns)."""
        return {"lane": self.lane, "jobs": self.jobs, "late_jobs": self.late_jobs,
                "max_lateness_ns": self.max_lateness_ns, "resyncs": self.resyncs, "busy_ns": self.busy_ns,
                "occupancy": self._occupancy}
