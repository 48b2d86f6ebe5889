"""Metrics of a run: latency percentiles, steady-window throughput, stages, utilisation, overlap.

All inputs are integer nanoseconds; :meth:`Metrics.to_dict` converts to milliseconds
for JSON and tables.

How each figure is measured:

* **latency** of a request: from its submission (the moment the caller handed it
  over) to the moment its outputs were ready; warm-up requests and the first (cold)
  request are excluded from the distribution, and the cold one is reported apart.
* **throughput**: completions per second in the *steady window*. With n >= 20
  measured requests, the window runs from the k-th to the (n-1-k)-th completion
  (k = n // 10), so ramp-up and drain are excluded; with fewer, it is the whole
  span from the first measured submission to the last completion.
* **stages**: per span name (pre, upload, compute, download, post, ...), the
  median and mean duration and the count.
* **utilisation** of a lane: the time it was busy (union of its spans) over the
  measurement window (first measured submission to last completion); also per
  lane kind (all ``device/*`` lanes together, etc.).
* **overlap**: the fraction of device-busy time during which a host or DMA lane was
  also busy: 0 when host and device take turns, near 1 when they are pipelined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from lab.trace import LANE_D2H, LANE_DEVICE, LANE_H2D, LANE_HOST, Span

__all__ = [
    "Metrics",
    "RequestRecord",
    "busy_ns",
    "compute_metrics",
    "latency_summary",
    "merge_intervals",
    "steady_throughput",
]

#: Percentiles reported for every latency distribution.
PERCENTILES = (50, 90, 99)
#: Below this many measured requests the whole run is the throughput window.
MIN_REQUESTS_FOR_TRIMMED_WINDOW = 20


class RequestRecord(NamedTuple):
    """When one request was submitted, started (admitted to a worker) and completed."""

    request_id: int
    submit_ns: int
    start_ns: int
    end_ns: int
    ok: bool = True
    warmup: bool = False

    @property
    def latency_ns(self) -> int:
        """``end_ns - submit_ns``: what the caller waited."""
        return self.end_ns - self.submit_ns


def latency_summary(latencies_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """min, mean, p50, p90, p99, max (ns, floats); NaN for an empty sample."""
    a = np.asarray(latencies_ns, dtype=np.float64)
    if a.size == 0:
        return {k: float("nan") for k in ("min", "mean", "p50", "p90", "p99", "max")}
    p50, p90, p99 = np.percentile(a, PERCENTILES)
    return {"min": float(a.min()), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(a.max())}


def steady_throughput(records: Sequence[RequestRecord]) -> tuple[float, int, int]:
    """Requests per second in the steady window; returns ``(rps, window_start_ns, window_end_ns)``."""
    if not records:
        return float("nan"), 0, 0
    ends = np.sort(np.fromiter((r.end_ns for r in records), dtype=np.int64, count=len(records)))
    n = len(ends)
    if n >= MIN_REQUESTS_FOR_TRIMMED_WINDOW:
        k = n // 10
        start, end = int(ends[k]), int(ends[n - 1 - k])
        completed = n - 1 - 2 * k
    else:
        start, end = min(r.submit_ns for r in records), int(ends[-1])
        completed = n
    if end <= start:
        return float("nan"), start, end
    return completed * 1e9 / (end - start), start, end


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals ``[starts[i], ends[i])`` as sorted, disjoint intervals."""
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    run_end = np.maximum.accumulate(e)
    # a new merged interval begins where a start is past every earlier end
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > run_end[:-1]
    idx = np.flatnonzero(new)
    merged_s = s[idx]
    merged_e = np.append(run_end[idx[1:] - 1], run_end[-1])
    return merged_s, merged_e


def _clip(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    s, e = np.clip(starts, lo, hi), np.clip(ends, lo, hi)
    keep = e > s
    return s[keep], e[keep]


def busy_ns(spans: Iterable[Span], lo: int, hi: int) -> int:
    """Nanoseconds within ``[lo, hi)`` covered by at least one of ``spans``."""
    spans = list(spans)
    if not spans:
        return 0
    s = np.fromiter((x.start_ns for x in spans), dtype=np.int64, count=len(spans))
    e = np.fromiter((x.end_ns for x in spans), dtype=np.int64, count=len(spans))
    ms, me = merge_intervals(*_clip(s, e, lo, hi))
    return int((me - ms).sum())


def _union_len(starts: np.ndarray, ends: np.ndarray) -> int:
    ms, me = merge_intervals(starts, ends)
    return int((me - ms).sum())


@dataclass(frozen=True)
class Metrics:
    """What a run measured (integer ns inside; :meth:`to_dict` gives milliseconds)."""

    requests: int
    errors: int
    warmup: int
    latency_ns: dict[str, float]
    first_latency_ns: float
    throughput_rps: float
    window_ns: tuple[int, int]
    stages_ns: dict[str, dict[str, float]]
    utilization: dict[str, float]
    utilization_by_kind: dict[str, float]
    overlap: float
    peak_inflight: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in milliseconds (the ``lab bench --json`` fields)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "warmup": self.warmup,
            "throughput_rps": self.throughput_rps,
            "latency_ms": {k: v / 1e6 for k, v in self.latency_ns.items()},
            "first_latency_ms": self.first_latency_ns / 1e6,
            "stages_ms": {name: st["p50"] / 1e6 for name, st in self.stages_ns.items()},
            "stages_detail_ms": {name: {k: (v / 1e6 if k != "count" else v) for k, v in st.items()}
                                 for name, st in self.stages_ns.items()},
            "utilization": dict(self.utilization),
            "utilization_by_kind": dict(self.utilization_by_kind),
            "overlap": self.overlap,
            "peak_inflight": self.peak_inflight,
            "window_ms": (self.window_ns[1] - self.window_ns[0]) / 1e6,
            **self.extra,
        }


def compute_metrics(records: Sequence[RequestRecord], spans: Sequence[Span], *, num_cold: int = 1,
                    extra: dict[str, Any] | None = None) -> Metrics:
    """Derive :class:`Metrics` from per-request records and the run's spans.

    The first ``num_cold`` records (lowest request ids: the first request, or the
    whole first batch) are cold; they, and records flagged ``warmup``, are left out
    of the latency distribution and the throughput window.
    """
    by_id = sorted(records, key=lambda r: r.request_id)
    cold = by_id[0] if by_id else None
    measured = [r for r in by_id[num_cold:] if r.ok and not r.warmup] if by_id else []
    if not measured and cold is not None and cold.ok and not cold.warmup:
        measured = [cold]  # a one-request run: report what there is
    latencies = [r.latency_ns for r in measured]
    rps, w0, w1 = steady_throughput(measured)
    lo = min((r.submit_ns for r in measured), default=0)
    hi = max((r.end_ns for r in measured), default=0)
    window = max(hi - lo, 1)
    stages: dict[str, dict[str, float]] = {}
    utilization: dict[str, float] = {}
    utilization_by_kind: dict[str, float] = {}
    overlap = float("nan")
    if spans:
        # columns once (zip(*) runs in C), then numpy: this stays fast for 100k spans
        lanes_t, names_t, rids_t, starts_t, ends_t, _ = zip(*spans, strict=True)
        rids = np.asarray(rids_t, dtype=np.int64)
        starts = np.asarray(starts_t, dtype=np.int64)
        ends = np.asarray(ends_t, dtype=np.int64)
        names = np.asarray(names_t, dtype=object)
        lanes = np.asarray(lanes_t, dtype=object)
        ids = np.fromiter((r.request_id for r in measured), dtype=np.int64, count=len(measured))
        in_stage = np.isin(rids, ids) | ((rids == -1) & (starts >= lo) & (starts < hi))
        durs = (ends - starts).astype(np.float64)
        for name in dict.fromkeys(names[in_stage].tolist()):  # first-seen order
            d = durs[in_stage & (names == name)]
            stages[name] = {"p50": float(np.median(d)), "mean": float(d.mean()), "count": int(d.size)}
        cs, ce = np.clip(starts, lo, hi), np.clip(ends, lo, hi)
        keep = ce > cs
        cs, ce, lanes = cs[keep], ce[keep], lanes[keep]
        kinds = np.asarray([lane.split("/", 1)[0] for lane in lanes.tolist()], dtype=object)
        for lane in sorted(set(lanes.tolist())):
            m = lanes == lane
            utilization[lane] = _union_len(cs[m], ce[m]) / window
        for kind in sorted(set(kinds.tolist())):
            m = kinds == kind
            utilization_by_kind[kind] = _union_len(cs[m], ce[m]) / window
        dev = kinds == LANE_DEVICE
        other = (kinds == LANE_HOST) | (kinds == LANE_H2D) | (kinds == LANE_D2H)
        dev_busy = _union_len(cs[dev], ce[dev])
        if dev_busy > 0:
            # |D & O| = |D| + |O| - |D u O| for unions of intervals
            other_busy = _union_len(cs[other], ce[other])
            both = _union_len(cs[dev | other], ce[dev | other])
            overlap = (dev_busy + other_busy - both) / dev_busy

    # peak in flight: the most requests between submission and completion at once
    # (at equal times a completion counts before a submission)
    peak = 0
    if by_id:
        t = np.fromiter((x for r in by_id for x in (r.submit_ns, r.end_ns)), dtype=np.int64, count=2 * len(by_id))
        delta = np.tile(np.array([1, -1], dtype=np.int64), len(by_id))
        order = np.lexsort((delta, t))
        peak = int(np.cumsum(delta[order]).max())

    return Metrics(
        requests=len(measured),
        errors=sum(1 for r in by_id if not r.ok),
        warmup=sum(1 for r in by_id if r.warmup),
        latency_ns=latency_summary(latencies),
        first_latency_ns=float(cold.latency_ns) if cold is not None else float("nan"),
        throughput_rps=rps,
        window_ns=(w0, w1),
        stages_ns=stages,
        utilization=utilization,
        utilization_by_kind=utilization_by_kind,
        overlap=overlap,
        peak_inflight=peak,
        extra=dict(extra or {}),
    )
