"""Why the device sat idle: each idle moment of each device lane attributed to what the requests were doing.

Every request in flight is in one phase at a time (from its spans and record)::

    host        from its worker's pick-up to its arrival at the device (pre, quantize), and from
                the end of its last DMA/device span to its completion (dequantize, post)
    dma_in      from its arrival at the device to the end of its upload (queued for or in DMA in)
    queued      uploaded, waiting for a PE that is busy (first-free dispatch picked that one)
    dma_out     from the end of its compute to the end of its download

An idle moment of a device lane (no span on it) inside the window is attributed, in this order
of priority, to ``waiting for DMA in`` (some request is in ``dma_in``), ``queued on another PE``,
``waiting for host`` (some request is in ``host``), ``waiting for DMA out``, and otherwise
``no work queued`` (nothing in flight: the runner between requests, an open loop between arrivals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.errors import ConfigError
from lab.metrics import merge_intervals
from lab.trace import LANE_D2H, LANE_DEVICE, LANE_H2D, LANE_HOST

__all__ = ["CAUSES", "idle_attribution", "idle_summary"]

#: Causes in priority order (the last is what is left).
CAUSES = ("waiting for DMA in", "queued on another PE", "waiting for host", "waiting for DMA out", "no work queued")


def _intersect(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Intersection of two sorted, disjoint interval sets."""
    (as_, ae), (bs, be) = a, b
    out_s, out_e = [], []
    i = j = 0
    while i < as_.size and j < bs.size:
        s = max(as_[i], bs[j])
        e = min(ae[i], be[j])
        if e > s:
            out_s.append(s)
            out_e.append(e)
        if ae[i] < be[j]:
            i += 1
        else:
            j += 1
    return np.asarray(out_s, dtype=np.int64), np.asarray(out_e, dtype=np.int64)


def _subtract(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``a`` minus ``b`` (sorted, disjoint interval sets)."""
    (as_, ae), (bs, be) = a, b
    out_s, out_e = [], []
    j = 0
    for s, e in zip(as_.tolist(), ae.tolist(), strict=True):
        cur = s
        while j < bs.size and be[j] <= cur:
            j += 1
        k = j
        while k < bs.size and bs[k] < e:
            if bs[k] > cur:
                out_s.append(cur)
                out_e.append(int(bs[k]))
            cur = max(cur, int(be[k]))
            k += 1
        if cur < e:
            out_s.append(cur)
            out_e.append(e)
    return np.asarray(out_s, dtype=np.int64), np.asarray(out_e, dtype=np.int64)


def _length(a: tuple[np.ndarray, np.ndarray]) -> int:
    return int((a[1] - a[0]).sum())


def _union(starts: list[int], ends: list[int], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.clip(np.asarray(starts, dtype=np.int64), lo, hi)
    e = np.clip(np.asarray(ends, dtype=np.int64), lo, hi)
    keep = e > s
    return merge_intervals(s[keep], e[keep])


def idle_attribution(result: Any, *, window: tuple[int, int] | None = None) -> Any:
    """Per device lane, idle time by cause (see the module docstring).

    Args:
        result: a run (``trace``, ``records``, ``metrics``) or a :class:`~lab.analysis.twin.TwinRun`.
        window: ``(start_ns, end_ns)``; default the run's steady window (``metrics.window_ns``).

    Returns:
        A ``pandas.DataFrame``: ``lane, cause, idle_ms, fraction`` (of the lane's window time),
        one row per lane and cause in :data:`CAUSES` order, plus ``busy`` rows (``cause="busy"``).

    Raises:
        ConfigError: no device spans, or an empty window.
    """
    import pandas as pd  # lazy

    lo, hi = window if window is not None else result.metrics.window_ns
    if hi <= lo:
        raise ConfigError(f"the window must have end > start, got {(lo, hi)}")
    phases: dict[str, tuple[list[int], list[int]]] = {k: ([], []) for k in ("host", "dma_in", "queued", "dma_out")}
    per: dict[int, dict[str, Any]] = {}
    lanes: dict[str, tuple[list[int], list[int]]] = {}
    for s in result.trace.spans:
        kind = s.lane.split("/", 1)[0]
        if kind == LANE_DEVICE:
            ls = lanes.setdefault(s.lane, ([], []))
            ls[0].append(s.start_ns)
            ls[1].append(s.end_ns)
        if s.request_id < 0 or kind not in (LANE_HOST, LANE_H2D, LANE_DEVICE, LANE_D2H):
            continue
        p = per.setdefault(s.request_id, {"host": [], "up_end": None, "c0": None, "c1": None, "d_end": None,
                                          "first": None})
        if kind == LANE_HOST:
            p["host"].append((s.start_ns, s.end_ns))
            continue
        p["first"] = s.start_ns if p["first"] is None else min(p["first"], s.start_ns)
        if kind == LANE_H2D:
            p["up_end"] = s.end_ns if p["up_end"] is None else max(p["up_end"], s.end_ns)
        elif kind == LANE_DEVICE:
            p["c0"] = s.start_ns if p["c0"] is None else min(p["c0"], s.start_ns)
            p["c1"] = s.end_ns if p["c1"] is None else max(p["c1"], s.end_ns)
        else:
            p["d_end"] = s.end_ns if p["d_end"] is None else max(p["d_end"], s.end_ns)
    if not lanes:
        raise ConfigError("the run has no device spans (lanes device/*): expected a profiled run on a device runtime")
    for rec in result.records:
        p = per.get(rec.request_id)
        if p is None or p["c0"] is None:
            continue
        first = p["first"]
        arrive = max([rec.start_ns] + [e for _, e in p["host"] if e <= first])
        arrive = min(arrive, first)
        phases["host"][0].append(rec.start_ns)
        phases["host"][1].append(arrive)
        up_end = p["up_end"] if p["up_end"] is not None else arrive
        phases["dma_in"][0].append(arrive)
        phases["dma_in"][1].append(up_end)
        phases["queued"][0].append(up_end)
        phases["queued"][1].append(p["c0"])
        out_start = p["c1"]
        if p["d_end"] is not None:
            phases["dma_out"][0].append(p["c1"])
            phases["dma_out"][1].append(p["d_end"])
            out_start = p["d_end"]
        phases["host"][0].append(out_start)
        phases["host"][1].append(rec.end_ns)
    unions = {k: _union(v[0], v[1], lo, hi) for k, v in phases.items()}
    order = [("waiting for DMA in", "dma_in"), ("queued on another PE", "queued"), ("waiting for host", "host"),
             ("waiting for DMA out", "dma_out")]
    total = hi - lo
    rows = []
    full = (np.array([lo], dtype=np.int64), np.array([hi], dtype=np.int64))
    for lane in sorted(lanes, key=lambda x: (len(x), x)):
        busy = _union(lanes[lane][0], lanes[lane][1], lo, hi)
        remaining = _subtract(full, busy)
        rows.append({"lane": lane, "cause": "busy", "idle_ms": 0.0, "fraction": _length(busy) / total})
        for cause, key in order:
            part = _intersect(remaining, unions[key])
            rows.append({"lane": lane, "cause": cause, "idle_ms": _length(part) / 1e6,
                         "fraction": _length(part) / total})
            remaining = _subtract(remaining, part)
        rows.append({"lane": lane, "cause": "no work queued", "idle_ms": _length(remaining) / 1e6,
                     "fraction": _length(remaining) / total})
    return pd.DataFrame(rows)


def idle_summary(table: Any) -> dict[str, float]:
    """Fractions of all device-lane time by cause (``busy`` and each of :data:`CAUSES`), summing to 1."""
    lanes = table["lane"].nunique()
    by = table.groupby("cause")["fraction"].sum() / max(lanes, 1)
    return {c: float(by.get(c, 0.0)) for c in ("busy", *CAUSES)}
