"""The virtual-time twin: the runner and the device of a :class:`~lab.analysis.demand.PipelineModel`
replayed as a discrete-event simulation, producing a full predicted timeline in milliseconds of CPU.

It follows the same rules as the real runners and the simulated NPU (a simulator), without threads:

* **runner**: ``workers`` workers take requests from a FIFO queue (lowest-numbered idle worker
  first); picking one up takes the ``runner`` station's hand-off time. A worker holds its request
  from pick-up to completion, as an :class:`~lab.runners.AsyncRunner` worker does.
* **loads**: ``closed`` (``max_inflight`` requests in flight, default ``workers``; each completion
  admits the next after the model's admission time, like ``run_all`` under a cap), ``burst``
  (every request submitted at once, like ``run_all`` without a cap or a ``create_async`` submit
  loop) and ``poisson`` (seeded arrivals at ``rate_rps``, the schedule of :func:`lab.loadgen.poisson_arrivals`).
  With ``queue_size`` the runner's queue is bounded (``create_async``'s input queue): a full queue
  blocks the single submitter (``on_full="block"``; later arrivals wait behind it and latency
  counts from the moment the submitter got to the request) or drops the request (``"raise"``).
* **device**: each queue station serves in arrival order; a job goes to the server that frees
  first (ties to the lowest index) and starts at ``max(its arrival, that server's end)``, the
  simulator's engine rule, plus the station's measured lateness when it found the server idle;
  an ``in_order`` station (DMA out) serves jobs in the order the previous queue dispatched them.
* **service times**: ``empirical`` (resampled from the measured durations: the default),
  ``deterministic`` (the means) or ``exponential`` (with the means: the assumption under which
  MVA is exact, for checking it).

Spans land on the real lanes (``queue``, ``host/<worker>``, ``h2d/<i>``, ``device/<i>``,
``d2h/<i>``), so :func:`lab.plots.plot_timelines` draws the twin beside a measured run, and
:func:`lab.metrics.compute_metrics` measures it like one.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.analysis.demand import PipelineModel, Station
from lab.errors import ConfigError
from lab.metrics import Metrics, RequestRecord, compute_metrics
from lab.trace import LANE_QUEUE, Span, Trace

__all__ = ["LOADS", "SERVICES", "TwinRun", "simulate"]

#: Load shapes the twin drives.
LOADS = ("closed", "burst", "poisson")
#: Service time distributions.
SERVICES = ("empirical", "deterministic", "exponential")
#: Waits shorter than this are not drawn as queue spans (as in the runners).
MIN_QUEUE_SPAN_NS = 1_000

_ARRIVE, _STAGE, _FREE = 0, 1, 2


@dataclass
class TwinRun:
    """A predicted run: timeline, per-request records and metrics, as a measured run has.

    Attributes:
        trace: the predicted spans (empty with ``spans=False``); metadata says it is a twin.
        records: submission, start and end of every completed request.
        metrics: :func:`lab.metrics.compute_metrics` of the records and spans (no cold request).
        config: how it was run (model source, workers, cap, load, service times, seed).
        dropped: requests refused by a full queue (``on_full="raise"``).
        busy_ns: per station, total service time given (for utilisation without spans).
        horizon_ns: time of the last event.
        wall_s: host seconds the simulation took.
    """

    trace: Trace
    records: list[RequestRecord]
    metrics: Metrics
    config: dict[str, Any]
    dropped: int = 0
    busy_ns: dict[str, int] = field(default_factory=dict)
    horizon_ns: int = 0
    wall_s: float = 0.0

    @property
    def throughput_rps(self) -> float:
        """Samples per second in the steady window (jobs/s times the model's batch)."""
        return self.metrics.throughput_rps * int(self.config.get("batch", 1))

    def latencies_ns(self) -> np.ndarray:
        """Every completed request's latency (submission to completion)."""
        return np.array([r.latency_ns for r in self.records], dtype=np.int64)

    def utilization(self) -> dict[str, float]:
        """Per station, busy fraction of its servers over the whole run (queue stations)."""
        out = {}
        for name, busy in self.busy_ns.items():
            servers = int(self.config["servers"].get(name, 1))
            out[name] = busy / (servers * self.horizon_ns) if self.horizon_ns > 0 else math.nan
        return out

    def summary(self) -> str:
        """One line: what was simulated and what it predicts."""
        m = self.metrics
        return (f"twin ({self.config['load']}, {self.config['workers']} workers, {self.config['service']} service): "
                f"{m.requests} requests, {self.throughput_rps:,.1f} samples/s, latency p50 "
                f"{m.latency_ns['p50'] / 1e6:.3f} ms p99 {m.latency_ns['p99'] / 1e6:.3f} ms; simulated in "
                f"{self.wall_s * 1e3:.0f} ms")


def _draws(station: Station, n: int, service: str, rng: np.random.Generator) -> np.ndarray:
    mean = station.service_ns
    if mean <= 0:
        return np.zeros(n, dtype=np.int64)
    if service == "deterministic" or (service == "empirical" and station.samples_ns.size == 0):
        d = np.full(n, mean)
    elif service == "empirical":
        d = rng.choice(station.samples_ns, size=n)
    else:
        d = rng.exponential(mean, size=n)
    return np.rint(d).astype(np.int64)


def _late_draws(station: Station, n: int, service: str, rng: np.random.Generator) -> list[int] | None:
    """Lateness of each job if it finds ``station`` idle (None: the station has none)."""
    if not station.is_queue or station.late_ns <= 0:
        return None
    if service == "empirical" and station.late_samples_ns.size:
        d = rng.choice(station.late_samples_ns, size=n)
    elif service == "exponential":
        d = rng.exponential(station.late_ns, size=n)
    else:
        d = np.full(n, station.late_ns)
    return np.rint(d).astype(np.int64).tolist()


def _check(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")


def simulate(model: PipelineModel, *, workers: int = 1, max_inflight: int | None = None, requests: int = 10_000,
             load: str = "closed", rate_rps: float | None = None, queue_size: int | None = None,
             on_full: str = "block", service: str = "empirical", seed: int = 0, spans: bool = True) -> TwinRun:
    """Simulate ``requests`` requests through ``model`` in virtual time (see the module docstring).

    Args:
        model: stations and times (:func:`~lab.analysis.demand.model_from_run` and friends).
        workers: worker threads (an ``AsyncRuntime``'s ``parallel`` is its worker count).
        max_inflight: requests admitted at once in the ``closed`` load (default: ``workers``).
        requests: requests to complete (or drop).
        load: ``closed``, ``burst`` or ``poisson``.
        rate_rps: arrivals per second (``poisson``; jobs, not samples).
        queue_size: bound of the runner's queue (None: unbounded).
        on_full: ``block`` or ``raise`` when that queue is full.
        service: ``empirical``, ``deterministic`` or ``exponential``.
        seed: seeds service draws and arrivals.
        spans: record the timeline (False: records and metrics only, faster for sweeps).

    Returns:
        The :class:`TwinRun`.

    Raises:
        ConfigError: a bad option (the message names the expected values).
    """
    _check("workers", workers, 1)
    _check("max_inflight", max_inflight, 1, allow_none=True)
    _check("requests", requests, 1)
    _check("queue_size", queue_size, 1, allow_none=True)
    if load not in LOADS:
        raise ConfigError(f"load must be one of {list(LOADS)}, got {load!r}")
    if service not in SERVICES:
        raise ConfigError(f"service must be one of {list(SERVICES)}, got {service!r}")
    if on_full not in ("block", "raise"):
        raise ConfigError(f"on_full must be 'block' or 'raise', got {on_full!r}")
    if load == "poisson" and not (isinstance(rate_rps, (int, float)) and not isinstance(rate_rps, bool)
                                  and rate_rps > 0):
        raise ConfigError(f"a poisson load needs rate_rps > 0, got {rate_rps!r}")
    t_wall = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = requests
    stations = [s for s in model.stations if s.name != "runner"]
    handoff = (_draws(model.station("runner"), n, service, rng) if model.has("runner")
               else np.zeros(n, dtype=np.int64)).tolist()
    dur = [_draws(s, n, service, rng).tolist() for s in stations]  # lists: fast scalar access in the loop
    late = [_late_draws(s, n, service, rng) for s in stations]
    admission = int(round(model.admission_ns))
    K = len(stations)
    # queue state per station: server free times, dispatch counters, in-order buffers
    free = [[0] * (s.servers if s.is_queue else 0) for s in stations]
    dispatched = [0] * K
    next_seq = [0] * K
    held: list[dict[int, tuple[int, int]]] = [{} for _ in stations]
    busy = [0] * K
    seq_of = [0] * n
    # per job: submission, start (after the hand-off), end (-1 not yet, -2 dropped), worker
    submit = [0] * n
    start = [0] * n
    end = [-1] * n
    worker_of = [0] * n
    lane_names = []
    for s in stations:
        if s.is_queue:
            lane_names.append([f"{s.lane}/{i}" for i in range(s.servers)])
        else:
            lane_names.append(None)
    part_plan = []
    for s in stations:
        total = s.service_ns
        part_plan.append([(name, mean / total) for name, mean in s.parts if mean > 0] if total > 0 else [])

    delay_lanes = [None if s.is_queue else [f"{s.lane}/{w}" for w in range(workers)] for s in stations]
    is_queue = [s.is_queue for s in stations]
    in_order = [s.in_order for s in stations]
    # spans as columns, turned into Span objects once at the end (cheaper than one call per span)
    sp_lane: list[str] = []
    sp_name: list[str] = []
    sp_rid: list[int] = []
    sp_start: list[int] = []
    sp_end: list[int] = []

    heap: list[tuple[int, int, int, int, int]] = []
    heappush, heappop = heapq.heappush, heapq.heappop
    tick = itertools.count().__next__  # FIFO among events at the same time

    def push(t: int, kind: int, job: int, k: int) -> None:
        heappush(heap, (t, tick(), kind, job, k))

    idle = list(range(workers))  # a heap of idle worker indices
    heapq.heapify(idle)
    waiting: collections.deque[int] = collections.deque()
    blocked: collections.deque[int] = collections.deque()  # submissions the stuck submitter still has to make
    dropped = 0
    issued = n
    cap = max_inflight if max_inflight is not None else workers

    def draw(k: int, job: int, t0: int, d: int, lane: str) -> None:
        t = t0
        for name, frac in part_plan[k]:
            e = t + int(d * frac + 0.5)
            if e > t:
                sp_lane.append(lane)
                sp_name.append(name)
                sp_rid.append(job)
                sp_start.append(t)
                sp_end.append(e)
            t = e

    def advance(job: int, k: int, t: int) -> None:
        """``job`` reaches station ``k`` at ``t``: delays are walked through at once; a queue is an event."""
        nonlocal issued
        while k < K and not is_queue[k]:
            d = dur[k][job]
            if spans and d > 0 and part_plan[k]:
                draw(k, job, t, d, delay_lanes[k][worker_of[job]])
            t += d
            k += 1
        if k < K:
            heappush(heap, (t, tick(), _STAGE, job, k))
            return
        end[job] = t  # it leaves the last station: its worker frees, a closed loop admits the next
        heappush(heap, (t, tick(), _FREE, worker_of[job], 0))
        if closed and issued < n:
            heappush(heap, (t + admission, tick(), _ARRIVE, issued, 0))
            issued += 1

    def begin(job: int, w: int, t: int) -> None:
        """Worker ``w`` picks up ``job`` at ``t``; the chain starts after the hand-off."""
        worker_of[job] = w
        st = t + handoff[job]
        start[job] = st
        if spans and st - submit[job] >= MIN_QUEUE_SPAN_NS:
            sp_lane.append(LANE_QUEUE)
            sp_name.append("queue")
            sp_rid.append(job)
            sp_start.append(submit[job])
            sp_end.append(st)
        advance(job, 0, st)

    def enqueue(job: int, t: int) -> None:
        if idle:
            begin(job, heappop(idle), t)
        else:
            waiting.append(job)

    def room() -> bool:
        return queue_size is None or bool(idle) or len(waiting) < queue_size

    def arrive(job: int, t: int) -> None:
        """The request is due at ``t``: the submitter submits it, unless it is stuck on an earlier one."""
        nonlocal dropped
        if blocked:
            submit[job] = -1  # the call starts when the submitter gets free
            blocked.append(job)
            return
        submit[job] = t
        if room():
            enqueue(job, t)
        elif on_full == "raise":
            dropped += 1
            end[job] = -2
        else:
            blocked.append(job)

    def unblock(t: int) -> None:
        """Room in the queue at ``t``: the submitter's pending submissions go in while it lasts."""
        while blocked and room():
            job = blocked.popleft()
            if submit[job] < 0:
                submit[job] = t
            enqueue(job, t)
            if blocked and submit[blocked[0]] < 0:
                submit[blocked[0]] = t  # the submitter's next call starts now (and may block in turn)

    def serve(k: int, job: int, t: int) -> None:
        """Queue station ``k`` takes ``job`` (arrived at ``t``): the server that frees first, ties to the lowest."""
        d = dur[k][job]
        fr = free[k]
        if len(fr) == 1:
            best, best_start = 0, (t if t > fr[0] else fr[0])
        else:
            best, best_start = 0, -1
            for i, f in enumerate(fr):
                st = t if t > f else f
                if best_start < 0 or st < best_start:
                    best, best_start = i, st
        lk = late[k]
        if lk is not None and best_start == t:  # it found the engine idle: the engine may start late
            best_start += lk[job]
        e = best_start + d
        fr[best] = e
        busy[k] += d
        seq_of[job] = dispatched[k]
        dispatched[k] += 1
        if spans and d > 0:
            plan = part_plan[k]
            if len(plan) == 1:  # one span: the whole service
                sp_lane.append(lane_names[k][best])
                sp_name.append(plan[0][0])
                sp_rid.append(job)
                sp_start.append(best_start)
                sp_end.append(e)
            else:
                draw(k, job, best_start, d, lane_names[k][best])
        advance(job, k + 1, e)

    # initial submissions
    closed = load == "closed"
    if closed:
        issued = min(cap, n)
        for j in range(issued):
            push(0, _ARRIVE, j, 0)
    elif load == "burst":
        for j in range(n):
            push(0, _ARRIVE, j, 0)
    else:
        from lab.loadgen import poisson_arrivals  # lazy: loadgen imports the runners

        arrivals = poisson_arrivals(n, float(rate_rps), seed=seed).tolist()  # type: ignore[arg-type]
        for j in range(n):
            push(arrivals[j], _ARRIVE, j, 0)

    while heap:
        t, _, kind, job, k = heappop(heap)
        if kind == _STAGE:
            if in_order[k]:
                buf = held[k]
                buf[seq_of[job]] = (job, t)
                while next_seq[k] in buf:
                    jj, tt = buf.pop(next_seq[k])
                    next_seq[k] += 1
                    serve(k, jj, tt)
            else:
                serve(k, job, t)
        elif kind == _ARRIVE:
            arrive(job, t)
        else:  # _FREE: worker `job` is free at t
            if waiting:
                begin(waiting.popleft(), job, t)
            else:
                heappush(idle, job)
            unblock(t)

    done = [j for j in range(n) if end[j] >= 0]
    records = [RequestRecord(j, submit[j], start[j], end[j], True, False) for j in done]
    servers = {s.name: s.servers for s in stations if s.is_queue}
    out_spans = list(map(Span, sp_lane, sp_name, sp_rid, sp_start, sp_end)) if spans else []
    trace = Trace(spans=out_spans, metadata={
        "mode": "async", "device": f"virtual-time twin of: {model.device or 'a model'}", "runtime": "twin",
        "workers": workers, "max_inflight": max_inflight, "load": load, "service": service})
    metrics = compute_metrics(records, trace.spans, num_cold=0, extra={"num_cold": 0})
    horizon = max((end[j] for j in done), default=0)
    config = {"workers": workers, "max_inflight": max_inflight, "requests": requests, "load": load,
              "rate_rps": rate_rps, "queue_size": queue_size, "on_full": on_full, "service": service, "seed": seed,
              "batch": model.batch, "source": model.source, "servers": servers}
    return TwinRun(trace=trace, records=records, metrics=metrics, config=config, dropped=dropped,
                   busy_ns={s.name: busy[i] for i, s in enumerate(stations) if s.is_queue}, horizon_ns=horizon,
                   wall_s=time.perf_counter() - t_wall)

