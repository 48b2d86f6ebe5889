"""Per-resource service demand: a queueing model of the runner and device, derived from a measured run.

A request (a *job*: one sample, or one batch) visits a chain of *stations*; each is either a
**delay** (work every worker does on its own thread, no waiting for anyone) or a **queue** with
``servers`` identical servers taking jobs first come, first served (DMA engines, processing
elements, CPU cores). On the simulated NPU (a simulator) the chain is::

    runner      delay   hand-off from the runner's queue to a worker thread
    host_in     delay   pre + quantize on the worker's thread (+ unaccounted worker time before the device)
    dma_in      queue   DMA engine host -> device           (1 server per device)
    compute     queue   processing elements                  (num_pes servers in single-PE mode, 1 fused)
    dma_out     queue   DMA engine device -> host, in order  (1 server per device)
    host_out    delay   dequantize + post (+ wake-up and other worker time after the device)

On a CPU runtime (ONNX Runtime, PyTorch CPU) nothing is shared but the cores: every span of a
request (pre, upload, compute, download, post) is CPU work, so the chain is ``runner`` (delay),
``cpu`` (a queue with one server per core) and ``host`` (delay: the worker's remaining time).
Intra-op threading and the GIL are not modelled; predictions on CPU runtimes carry that error,
and the lab reports it.

How :func:`model_from_run` measures each number (integer ns in, float ns means out):

* jobs are the measured requests (warm-ups, the cold first request and failures excluded);
* a job's **device residence** runs from its arrival at the device (the end of the last host
  span before its first DMA/device span: the quantize on the simulator) to the end of its last
  DMA/device span; stage service times are the span durations (summed per job);
* **host overhead** is the worker time inside the request not covered by a span:
  ``(arrival at the device - worker start) - host spans before`` and
  ``(end - leaving the device) - host spans after``;
* **lateness** of a DMA/device span is how long after both its job was ready (its previous stage
  ended) and its lane was free it started: the simulator re-anchors an engine's clock when its
  host thread falls behind (a loaded machine). It happens when an *idle* engine is woken late, not
  while it works through a backlog, so a queue station keeps the lateness of the jobs that found
  it idle (``late_ns``, ``late_samples_ns``) and the twin and MVA add it only to such jobs;
* **runner hand-off** is ``start - max(previous end on the same worker, submit)``: how long a
  worker takes to pick up work that is waiting for it;
* **admission** (outside the latency, only with an in-flight cap): ``submit - the completion
  that freed its slot``, the closed loop's think time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.errors import ConfigError
from lab.metrics import RequestRecord
from lab.trace import LANE_D2H, LANE_DEVICE, LANE_H2D, LANE_HOST, LANE_QUEUE, Span, Trace

__all__ = [
    "DELAY",
    "QUEUE",
    "PipelineModel",
    "Station",
    "measured_jobs",
    "model_from_run",
    "model_from_stages",
    "simulator_stages",
    "what_if",
]

DELAY = "delay"
QUEUE = "queue"
#: Samples kept per station for the twin's empirical resampling.
MAX_SAMPLES = 4096
_DEVICE_KINDS = (LANE_H2D, LANE_DEVICE, LANE_D2H)
_SIM_DEVICE = re.compile(r"(?:(\d+) devices x )?(\d+) PEs (single|fused)")


@dataclass(frozen=True)
class Station:
    """One resource a job visits.

    Attributes:
        name: ``runner``, ``host_in``, ``dma_in``, ``compute``, ``dma_out``, ``host_out``, ``cpu``, ``host``.
        kind: :data:`DELAY` (each worker has its own: no waiting) or :data:`QUEUE` (``servers`` shared, FIFO).
        service_ns: mean time one job holds one server (or the delay), ns.
        servers: identical servers of a queue (ignored for a delay).
        in_order: a queue that serves jobs in the order the previous queue dispatched them
            (the simulator's DMA-out ring), even when a later job is ready first.
        lane: lane kind of the twin's spans (``host``, ``h2d``, ``device``, ``d2h``, ``cpu``).
        parts: ``(span name, mean ns)`` drawn one after another by the twin (the rest of the
            service time is unaccounted overhead and drawn as a gap).
        samples_ns: measured per-job service times (for the twin's empirical resampling).
        label: the resource in words, for tables.
        late_ns: mean lateness of a job that finds the queue idle (the start is pushed back by it).
        late_samples_ns: the measured lateness of each job that found it idle.
    """

    name: str
    kind: str
    service_ns: float
    servers: int = 1
    in_order: bool = False
    lane: str = LANE_HOST
    parts: tuple[tuple[str, float], ...] = ()
    samples_ns: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    label: str = ""
    late_ns: float = 0.0
    late_samples_ns: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in (DELAY, QUEUE):
            raise ConfigError(f"station {self.name!r}: kind must be {DELAY!r} or {QUEUE!r}, got {self.kind!r}")
        if not (math.isfinite(self.service_ns) and self.service_ns >= 0):
            raise ConfigError(
                f"station {self.name!r}: service_ns must be a finite number >= 0, got {self.service_ns!r}")
        if isinstance(self.servers, bool) or not isinstance(self.servers, int) or self.servers < 1:
            raise ConfigError(f"station {self.name!r}: servers must be an integer >= 1, got {self.servers!r}")
        object.__setattr__(self, "samples_ns", np.asarray(self.samples_ns, dtype=np.float64).ravel())
        object.__setattr__(self, "late_samples_ns", np.asarray(self.late_samples_ns, dtype=np.float64).ravel())
        if not (math.isfinite(self.late_ns) and self.late_ns >= 0):
            raise ConfigError(f"station {self.name!r}: late_ns must be a finite number >= 0, got {self.late_ns!r}")

    @property
    def is_queue(self) -> bool:
        """True for a shared FIFO station."""
        return self.kind == QUEUE

    @property
    def per_job_ns(self) -> float:
        """Time the station as a whole needs per job: ``service / servers`` for a queue (0 for a delay)."""
        return self.service_ns / self.servers if self.is_queue else 0.0

    @property
    def capacity_rps(self) -> float:
        """Jobs per second the station can sustain (infinite for a delay or a zero service time)."""
        if not self.is_queue or self.service_ns <= 0:
            return math.inf
        return self.servers * 1e9 / self.service_ns

    @property
    def cv2(self) -> float:
        """Squared coefficient of variation of the measured service times (0: constant; 1: exponential-like)."""
        s = self.samples_ns
        if s.size < 2 or s.mean() <= 0:
            return 0.0
        return float(s.var() / s.mean() ** 2)

    def with_service(self, service_ns: float, *, servers: int | None = None,
                     parts: Sequence[tuple[str, float]] | None = None) -> Station:
        """A copy with a new mean service time; measured samples are shifted by the change (variability kept)."""
        delta = service_ns - self.service_ns
        samples = np.maximum(self.samples_ns + delta, 0.0) if self.samples_ns.size else self.samples_ns
        return dataclasses.replace(self, service_ns=float(service_ns), samples_ns=samples,
                                   servers=self.servers if servers is None else servers,
                                   parts=self.parts if parts is None else tuple(parts))


@dataclass(frozen=True)
class PipelineModel:
    """The chain of stations one job visits, plus the closed loop's think time.

    Attributes:
        stations: in visiting order.
        admission_ns: time from a completion to the next admission under an in-flight cap
            (outside the latency; the closed loop's think time).
        batch: samples per job (throughputs in samples/s multiply jobs/s by it).
        device: the device in words (a simulator says so).
        source: where the numbers come from (a measured run, the simulator's cost model, ...).
        info: facts for what-if questions (runtime, preset, PE mode, model path, workers, ...).
    """

    stations: tuple[Station, ...]
    admission_ns: float = 0.0
    batch: int = 1
    device: str = ""
    source: str = ""
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.stations:
            raise ConfigError("a pipeline model needs at least one station, got none")
        names = [s.name for s in self.stations]
        if len(set(names)) != len(names):
            raise ConfigError(f"station names must be unique, got {names}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch must be an integer >= 1, got {self.batch!r}")

    def station(self, name: str) -> Station:
        """The station called ``name``.

        Raises:
            ConfigError: no such station (the message lists them).
        """
        for s in self.stations:
            if s.name == name:
                return s
        raise ConfigError(f"no station {name!r}: expected one of {[s.name for s in self.stations]}")

    def has(self, name: str) -> bool:
        """True when a station called ``name`` exists."""
        return any(s.name == name for s in self.stations)

    @property
    def queues(self) -> tuple[Station, ...]:
        """The shared (queue) stations."""
        return tuple(s for s in self.stations if s.is_queue)

    @property
    def latency_ns(self) -> float:
        """R0: the latency of a job alone (every service time and lateness, no waiting)."""
        return float(sum(s.service_ns + s.late_ns for s in self.stations))

    @property
    def bottleneck(self) -> Station:
        """The queue with the largest time per job (``service / servers``)."""
        queues = self.queues
        if not queues:
            raise ConfigError("the model has no shared station, so it has no bottleneck")
        return max(queues, key=lambda s: s.per_job_ns)

    @property
    def bound_rps(self) -> float:
        """The bottleneck bound in jobs/s: ``min over queues of servers / service``."""
        return min((s.capacity_rps for s in self.queues), default=math.inf)

    def replace(self, **changes: Any) -> PipelineModel:
        """A copy with fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_station(self, station: Station) -> PipelineModel:
        """A copy with the station of the same name replaced."""
        self.station(station.name)
        return self.replace(stations=tuple(station if s.name == station.name else s for s in self.stations))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: stations in ms, admission, batch, device, source."""
        return {
            "stations": [{"name": s.name, "kind": s.kind, "servers": s.servers if s.is_queue else None,
                          "service_ms": s.service_ns / 1e6, "late_ms": s.late_ns / 1e6, "cv2": s.cv2,
                          "in_order": s.in_order,
                          "label": s.label, "parts_ms": {k: v / 1e6 for k, v in s.parts}} for s in self.stations],
            "admission_ms": self.admission_ns / 1e6,
            "batch": self.batch,
            "latency_ms": self.latency_ns / 1e6,
            "bound_rps": self.bound_rps * self.batch,
            "bottleneck": self.bottleneck.name if self.queues else None,
            "device": self.device,
            "source": self.source,
        }

    def table(self) -> Any:
        """One row per station: kind, servers, mean service (ms), time per job (ms), capacity (samples/s), cv2."""
        import pandas as pd  # lazy: import lab must not import pandas

        rows = [{"station": s.name, "resource": s.label, "kind": s.kind, "servers": s.servers if s.is_queue else None,
                 "service_ms": s.service_ns / 1e6, "late_ms": s.late_ns / 1e6,
                 "per_job_ms": s.per_job_ns / 1e6 if s.is_queue else None,
                 "capacity_sps": s.capacity_rps * self.batch if s.is_queue else None, "cv2": s.cv2,
                 "bottleneck": bool(self.queues) and s is self.bottleneck} for s in self.stations]
        return pd.DataFrame(rows).set_index("station")


# -- measured jobs ------------------------------------------------------------------------

@dataclass
class _Job:
    rid: int
    submit: int
    start: int
    end: int
    worker: str | None = None
    host_before: list[tuple[str, int]] = field(default_factory=list)
    host_after: list[tuple[str, int]] = field(default_factory=list)
    host_spans: list[tuple[int, int, str]] = field(default_factory=list)
    dev_first: int = -1
    dev_last: int = -1
    dev_lanes: set[str] = field(default_factory=set)
    upload: int = 0
    compute: int = 0
    download: int = 0
    # lateness of the job's span at each engine when it found the engine idle (None: it queued)
    late: dict[str, int] = field(default_factory=dict)
    arrive: int = 0


def measured_jobs(records: Sequence[RequestRecord], *, num_cold: int = 1) -> list[RequestRecord]:
    """The records the run's metrics measure: not warm-up, not failed, not among the ``num_cold`` first ids."""
    by_id = sorted(records, key=lambda r: r.request_id)
    return [r for r in by_id[num_cold:] if r.ok and not r.warmup]


def _kind(lane: str, cache: dict[str, str]) -> str:
    k = cache.get(lane)
    if k is None:
        k = cache[lane] = lane.split("/", 1)[0]
    return k


def _collect(records: Sequence[RequestRecord], spans: Sequence[Span], num_cold: int) -> list[_Job]:
    jobs = {r.request_id: _Job(r.request_id, r.submit_ns, r.start_ns, r.end_ns)
            for r in measured_jobs(records, num_cold=num_cold)}
    kinds: dict[str, str] = {}
    device_spans: dict[str, list[Span]] = {}  # every DMA/device span by lane, measured or not
    for s in spans:
        kind = _kind(s.lane, kinds)
        if kind in _DEVICE_KINDS:
            device_spans.setdefault(s.lane, []).append(s)
        job = jobs.get(s.request_id)
        if job is None:
            continue
        if kind == LANE_HOST:
            job.host_spans.append((s.start_ns, s.end_ns, s.name))
            if job.worker is None:
                job.worker = s.lane
        elif kind in _DEVICE_KINDS:
            if kind == LANE_DEVICE:
                job.dev_lanes.add(s.lane)
            if job.dev_first < 0 or s.start_ns < job.dev_first:
                job.dev_first = s.start_ns
            if s.end_ns > job.dev_last:
                job.dev_last = s.end_ns
    out = [j for j in jobs.values() if j.dev_first >= 0]
    for j in out:
        arrive = j.start
        for s0, s1, name in j.host_spans:
            if s1 <= j.dev_first:
                j.host_before.append((name, s1 - s0))
                arrive = max(arrive, s1)
            else:
                j.host_after.append((name, s1 - s0))
        j.arrive = min(arrive, j.dev_first)
    # each DMA/device span's duration, and its *lateness*: how long after both the job was ready (its
    # previous stage ended) and the lane was free it started (the simulator re-anchors an engine's
    # clock when its host thread falls behind)
    ready_at = {j.rid: j.arrive for j in out}
    prev_end: dict[tuple[str, int, int], int] = {}
    for lane, lane_spans in device_spans.items():
        lane_spans.sort(key=lambda x: x.start_ns)
        last = None
        for sp in lane_spans:
            prev_end[(lane, sp.request_id, sp.start_ns)] = last if last is not None else sp.start_ns
            last = sp.end_ns if last is None else max(last, sp.end_ns)
    per_job: dict[int, list[Span]] = {}
    for lane_spans in device_spans.values():
        for sp in lane_spans:
            if sp.request_id in ready_at:
                per_job.setdefault(sp.request_id, []).append(sp)
    by_rid = {j.rid: j for j in out}
    for rid, sps in per_job.items():
        j = by_rid[rid]
        ready = ready_at[rid]
        for sp in sorted(sps, key=lambda x: x.start_ns):
            free_at = prev_end[(sp.lane, sp.request_id, sp.start_ns)]
            base = max(ready, free_at)
            d = sp.end_ns - sp.start_ns
            kind = _kind(sp.lane, kinds)
            if kind == LANE_H2D:
                j.upload += d
            elif kind == LANE_DEVICE:
                j.compute += d
            else:
                j.download += d
            if ready >= free_at:  # the engine was idle when the job was ready: any delay is lateness
                j.late[kind] = j.late.get(kind, 0) + max(0, sp.start_ns - base)
            ready = max(ready, sp.end_ns)
    return sorted(out, key=lambda j: j.rid)


def _handoff_ns(jobs: Sequence[_Job]) -> np.ndarray:
    """Per job: ``start - max(previous end on the same worker, submit)`` (the worker's pick-up time)."""
    by_worker: dict[str, list[_Job]] = {}
    for j in jobs:
        if j.worker is not None:
            by_worker.setdefault(j.worker, []).append(j)
    out = []
    for seq in by_worker.values():
        seq.sort(key=lambda j: j.start)
        for prev, nxt in zip(seq, seq[1:], strict=False):
            out.append(max(0, nxt.start - max(prev.end, nxt.submit)))
    if not out:  # no worker lanes: the time from submission to start, a looser figure
        out = [max(0, j.start - j.submit) for j in jobs]
    return np.asarray(out, dtype=np.float64)


def _admission_ns(records: Sequence[RequestRecord], cap: int | None, num_cold: int) -> np.ndarray:
    """Under a cap, submission ``j`` waits for completion ``j - cap``: how long after it the request was admitted."""
    if not cap:
        return np.zeros(0)
    recs = sorted(records, key=lambda r: r.request_id)
    if len(recs) <= cap + num_cold:
        return np.zeros(0)
    ends = np.sort(np.fromiter((r.end_ns for r in recs), dtype=np.int64, count=len(recs)))
    subs = np.fromiter((r.submit_ns for r in recs), dtype=np.int64, count=len(recs))
    j = np.arange(cap, len(recs))
    gaps = subs[j] - ends[j - cap]
    gaps = gaps[j >= cap + num_cold]
    return np.maximum(gaps, 0).astype(np.float64)


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else 0.0


def _thin(a: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size > MAX_SAMPLES:
        a = a[np.linspace(0, a.size - 1, MAX_SAMPLES).astype(np.int64)]
    return a


def _parts(groups: Sequence[list[tuple[str, int]]]) -> tuple[tuple[str, float], ...]:
    """Mean ns per span name over jobs (a job without a name contributes 0), first-seen order."""
    totals: dict[str, float] = {}
    for g in groups:
        for name, d in g:
            totals[name] = totals.get(name, 0.0) + d
    n = max(len(groups), 1)
    return tuple((k, v / n) for k, v in totals.items())


def _sim_topology(device: str) -> tuple[int, int, str] | None:
    """``(devices, num_pes, pe_mode)`` from the simulated NPU's device string, or None."""
    m = _SIM_DEVICE.search(device or "")
    if m is None:
        return None
    return int(m.group(1) or 1), int(m.group(2)), m.group(3)


def _is_simulator(runtime_name: str, device: str) -> bool:
    return runtime_name == "simnpu" or "simulat" in (device or "").lower()


def model_from_run(result: Any, *, engines: int | None = None, devices: int | None = None,
                   cores: int | None = None, batch: int | None = None, shared: bool | None = None) -> PipelineModel:
    """Derive every station's service time from one measured run (see the module docstring).

    Args:
        result: a :class:`~lab.runners.RunResult` (anything with ``trace``, ``records``,
            ``metrics`` and ``config``), with spans recorded (``profile=True``).
        engines: compute servers (PEs); default from the run (the simulator's device string:
            ``num_pes`` in single-PE mode, 1 fused, times devices).
        devices: DMA engines per direction; default from the run (simulated devices, else 1).
        cores: servers of the CPU station of a CPU runtime (default ``os.cpu_count()``).
        batch: samples per job (default: the run's ``batch_size`` in batch mode, else 1).
        shared: True for a device shared by all workers (simulated NPU), False for per-worker
            lanes on CPU cores (ONNX Runtime, PyTorch CPU); default from the runtime name.

    Returns:
        The :class:`PipelineModel`; ``info`` holds the run's runtime, device, workers, cap,
        preset, PE mode and model path where known.

    Raises:
        ConfigError: no measured request with DMA/device spans (profiling off, or every request failed).
    """
    trace: Trace = result.trace
    config: Mapping[str, Any] = getattr(result, "config", {}) or {}
    meta = trace.metadata
    runtime_name = str(config.get("runtime") or meta.get("runtime") or "")
    device = str(meta.get("device") or config.get("device") or "")
    num_cold = int(result.metrics.extra.get("num_cold", 1)) if hasattr(result, "metrics") else 1
    jobs = _collect(result.records, trace.spans, num_cold)
    if not jobs:
        raise ConfigError(
            "the run has no measured request with DMA or device spans: expected a profiled run "
            f"(profile=True) with at least one successful measured request, got {len(result.records)} records and "
            f"{len(trace.spans)} spans")
    if batch is None:
        batch = int(config.get("batch_size", 1)) if str(config.get("mode", "")) == "batch" else 1
    load = config.get("load") or config.get("scenario")
    cap = config.get("max_inflight")
    if load == "closed":
        cap = config.get("concurrency")
    elif load == "single":
        cap = 1
    simulator = _is_simulator(runtime_name, device)
    if shared is None:
        shared = simulator
    handoff = _handoff_ns(jobs)
    if str(config.get("mode", meta.get("mode", ""))) in ("sync", "batch") and not load:
        # one request (or batch) after another: the runner's time between them is the loop's think time
        seq = sorted(jobs, key=lambda j: j.submit)
        admission = np.array([max(0, b.submit - a.end) for a, b in zip(seq, seq[1:], strict=False)], dtype=np.float64)
        cap = 1
    else:
        admission = _admission_ns(result.records, cap if isinstance(cap, int) else None, num_cold)

    info: dict[str, Any] = {"runtime": runtime_name, "device": device, "workers": config.get("workers"),
                            "max_inflight": cap, "parallel": config.get("parallel"), "mode": config.get("mode"),
                            "jobs": len(jobs)}
    for key in ("preset", "pe_mode", "model_path"):
        if config.get(key) is not None:
            info[key] = config[key]

    runner = Station("runner", DELAY, _mean(handoff), lane=LANE_QUEUE, samples_ns=_thin(handoff),
                     label="runner hand-off to a worker")
    before = [j.host_before for j in jobs]
    after = [j.host_after for j in jobs]
    span_in = np.array([sum(d for _, d in g) for g in before], dtype=np.float64)
    span_out = np.array([sum(d for _, d in g) for g in after], dtype=np.float64)
    arrive = np.array([j.arrive - j.start for j in jobs], dtype=np.float64)
    leave = np.array([j.end - j.dev_last for j in jobs], dtype=np.float64)
    host_in = np.maximum(arrive, span_in)
    host_out = np.maximum(leave, span_out)
    up = np.array([j.upload for j in jobs], dtype=np.float64)
    comp = np.array([j.compute for j in jobs], dtype=np.float64)
    down = np.array([j.download for j in jobs], dtype=np.float64)
    late = {k: np.array([j.late[k] for j in jobs if k in j.late], dtype=np.float64) for k in _DEVICE_KINDS}
    info["lateness_ms"] = {name: _mean(late[k]) / 1e6 for name, k in
                           (("upload", LANE_H2D), ("compute", LANE_DEVICE), ("download", LANE_D2H))}
    info["idle_arrivals"] = {name: late[k].size / len(jobs) for name, k in
                             (("upload", LANE_H2D), ("compute", LANE_DEVICE), ("download", LANE_D2H))}

    if shared:
        topo = _sim_topology(device)
        n_dev = devices or (topo[0] if topo else 1)
        if engines is None:
            if topo is not None:
                engines = n_dev * (topo[1] if topo[2] == "single" else 1)
            else:
                engines = len(set().union(*(j.dev_lanes for j in jobs))) or 1
        if topo is not None:
            info.setdefault("pe_mode", topo[2])
            info["num_pes"] = topo[1]
            info["devices"] = n_dev
        def lateness(kind: str) -> dict[str, Any]:
            return {"late_ns": _mean(late[kind]), "late_samples_ns": _thin(late[kind])}

        stations = [
            runner,
            Station("host_in", DELAY, _mean(host_in), lane=LANE_HOST, parts=_parts(before), samples_ns=_thin(host_in),
                    label="host, per worker: before the device"),
            Station("dma_in", QUEUE, _mean(up), servers=n_dev, lane=LANE_H2D, parts=(("upload", _mean(up)),),
                    samples_ns=_thin(up), label="DMA in (host to device)", **lateness(LANE_H2D)),
            Station("compute", QUEUE, _mean(comp), servers=int(engines), lane=LANE_DEVICE,
                    parts=(("compute", _mean(comp)),), samples_ns=_thin(comp),
                    label=f"device compute ({engines} engine{'s' if engines != 1 else ''})", **lateness(LANE_DEVICE)),
            Station("dma_out", QUEUE, _mean(down), servers=n_dev, in_order=simulator, lane=LANE_D2H,
                    parts=(("download", _mean(down)),), samples_ns=_thin(down), label="DMA out (device to host)",
                    **lateness(LANE_D2H)),
            Station("host_out", DELAY, _mean(host_out), lane=LANE_HOST, parts=_parts(after),
                    samples_ns=_thin(host_out), label="host, per worker: after the device"),
        ]
        # a stage the run never had (no DMA on this device) is dropped, not modelled as free
        stations = [s for s in stations if s.kind == DELAY or s.service_ns > 0]
    else:
        cores = cores or os.cpu_count() or 1
        cpu_parts = [j.host_before + [("upload", j.upload), ("compute", j.compute), ("download", j.download)]
                     + j.host_after for j in jobs]
        cpu = span_in + up + comp + down + span_out
        # worker time inside the request not covered by a span (Python, hand-offs between stages)
        other = np.maximum((np.array([j.end - j.start for j in jobs], dtype=np.float64)) - cpu, 0.0)
        stations = [
            runner,
            Station("cpu", QUEUE, _mean(cpu), servers=int(cores), lane="cpu", parts=_parts(cpu_parts),
                    samples_ns=_thin(cpu), label=f"CPU cores ({cores}): every stage of the request"),
            Station("host", DELAY, _mean(other), lane=LANE_HOST, samples_ns=_thin(other),
                    label="worker time outside spans"),
        ]
        info["cores"] = cores
    where = f"{config.get('mode', meta.get('mode', 'a'))} run"
    workers = config.get("workers") or config.get("parallel")
    if workers:
        where += f", {workers} worker{'s' if workers != 1 else ''}"
    return PipelineModel(stations=tuple(stations), admission_ns=_mean(admission), batch=int(batch), device=device,
                         source=f"measured: {where}, {len(jobs)} requests", info=info)


# -- models from a cost model (what-if) ------------------------------------------------------

def simulator_stages(model_path: str | os.PathLike[str], preset: Any = "teaching", *, pe_mode: str | None = None,
                     batch: int = 1, **overrides: Any) -> dict[str, int]:
    """The simulated NPU's modelled stage times (ns) for ``batch`` samples in ``pe_mode``, without a runtime.

    Returns:
        ``{"quantize", "upload", "compute", "download", "dequantize"}`` in ns, plus ``"engines"``
        (compute servers per device: ``num_pes`` single, 1 fused).
    """
    from lab.sim.cost import stage_times
    from lab.sim.presets import get_preset
    from lab.zoo.onnx_cost import model_cost  # lazy: imports onnx

    p = get_preset(preset).with_overrides(**overrides)
    mode = p.default_pe_mode if pe_mode is None else pe_mode
    st = stage_times(model_cost(os.fspath(model_path), batch=1), p, pe_mode=mode, batch=batch)
    return {**st.as_dict(), "engines": p.num_pes if mode == "single" else 1}


def model_from_stages(stages: Mapping[str, float], *, engines: int = 1, devices: int = 1, pre_ns: float = 0.0,
                      post_ns: float = 0.0, overhead_ns: float = 0.0, handoff_ns: float = 0.0,
                      admission_ns: float = 0.0, batch: int = 1, device: str = "", source: str = "stage times"
                      ) -> PipelineModel:
    """A device model from stage times alone (no measured run), e.g. the simulator's cost model.

    Args:
        stages: ``quantize``, ``upload``, ``compute``, ``download``, ``dequantize`` in ns (missing: 0).
        engines: compute servers; devices: DMA engines per direction.
        pre_ns, post_ns: host pre/postprocessing per job; overhead_ns: other worker time per job
            (split evenly before and after the device); handoff_ns, admission_ns: as in :class:`PipelineModel`.

    Stations get deterministic service times (no measured samples).
    """
    g = {k: float(stages.get(k, 0.0)) for k in ("quantize", "upload", "compute", "download", "dequantize")}
    half = overhead_ns / 2
    parts_in = tuple((k, v) for k, v in (("pre", pre_ns), ("quantize", g["quantize"])) if v > 0)
    parts_out = tuple((k, v) for k, v in (("dequantize", g["dequantize"]), ("post", post_ns)) if v > 0)
    stations = [
        Station("runner", DELAY, handoff_ns, lane=LANE_QUEUE, label="runner hand-off to a worker"),
        Station("host_in", DELAY, pre_ns + g["quantize"] + half, parts=parts_in,
                label="host, per worker: before the device"),
        Station("dma_in", QUEUE, g["upload"], servers=devices, lane=LANE_H2D, parts=(("upload", g["upload"]),),
                label="DMA in (host to device)"),
        Station("compute", QUEUE, g["compute"], servers=engines * devices, lane=LANE_DEVICE,
                parts=(("compute", g["compute"]),), label=f"device compute ({engines * devices} engines)"),
        Station("dma_out", QUEUE, g["download"], servers=devices, in_order=True, lane=LANE_D2H,
                parts=(("download", g["download"]),), label="DMA out (device to host)"),
        Station("host_out", DELAY, post_ns + g["dequantize"] + half, parts=parts_out,
                label="host, per worker: after the device"),
    ]
    stations = [s for s in stations if s.kind == DELAY or s.service_ns > 0]
    return PipelineModel(stations=tuple(stations), admission_ns=admission_ns, batch=batch, device=device,
                         source=source)


def _part(station: Station, name: str) -> float:
    return dict(station.parts).get(name, 0.0)


def what_if(model: PipelineModel, stages: Mapping[str, float], *, engines: int | None = None,
            batch: int | None = None, host_scaling: str = "linear", label: str | None = None) -> PipelineModel:
    """The model with new device stage times (another batch size or PE mode), host work adjusted.

    ``stages`` replaces ``upload``/``compute``/``download`` service times and the ``quantize`` /
    ``dequantize`` parts of the host stations (what the simulator's cost model gives for the new
    configuration, :func:`simulator_stages`). Host ``pre``/``post`` scale with the batch ratio
    (``host_scaling="linear"``, an upper estimate: per-call overheads do not grow) or stay as
    measured (``"fixed"``); other worker overhead is per job and kept.

    Args:
        model: a simulated-NPU model (:func:`model_from_run` or :func:`model_from_stages`).
        stages: new stage ns (keys as :func:`simulator_stages`; ``engines`` there is used too).
        engines: compute servers (default: ``stages["engines"]`` times the model's devices, else unchanged).
        batch: the new samples per job (default unchanged).
        host_scaling: ``linear`` or ``fixed``.
        label: appended to the model's source.

    Raises:
        ConfigError: not a device model, or a bad ``host_scaling``.
    """
    if host_scaling not in ("linear", "fixed"):
        raise ConfigError(f"host_scaling must be 'linear' or 'fixed', got {host_scaling!r}")
    if not model.has("compute"):
        raise ConfigError("what_if needs a device model with a 'compute' station, got "
                          f"{[s.name for s in model.stations]}")
    batch = model.batch if batch is None else batch
    ratio = batch / model.batch if host_scaling == "linear" else 1.0
    devices = int(model.info.get("devices", 1) or 1)
    if engines is None and "engines" in stages:
        engines = int(stages["engines"]) * devices
    new: list[Station] = []
    for s in model.stations:
        if s.name == "host_in" or s.name == "host_out":
            conv = "quantize" if s.name == "host_in" else "dequantize"
            host = "pre" if s.name == "host_in" else "post"
            old_conv, old_host = _part(s, conv), _part(s, host)
            new_conv = float(stages.get(conv, old_conv))
            new_host = old_host * ratio
            parts = [(k, new_conv if k == conv else new_host if k == host else v) for k, v in s.parts]
            if conv not in dict(s.parts) and new_conv > 0:
                parts.append((conv, new_conv))
            s = s.with_service(s.service_ns - old_conv - old_host + new_conv + new_host, parts=parts)
        elif s.name in ("dma_in", "compute", "dma_out"):
            key = {"dma_in": "upload", "compute": "compute", "dma_out": "download"}[s.name]
            if key in stages:
                ns = float(stages[key])
                s = s.with_service(ns, servers=engines if (s.name == "compute" and engines) else None,
                                   parts=((key, ns),))
                if s.name == "compute":
                    plural = "s" if s.servers != 1 else ""
                    s = dataclasses.replace(s, label=f"device compute ({s.servers} engine{plural})")
        new.append(s)
    source = model.source + (f"; what-if: {label}" if label else "; what-if")
    return model.replace(stations=tuple(new), batch=batch, source=source)
