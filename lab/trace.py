"""Spans and traces: what ran where and when, in integer nanoseconds.

A :class:`Span` is ``(lane, name, request_id, start_ns, end_ns, attrs)``. A lane is a
row of the timeline: its *kind* comes before an optional ``/`` and a sub-lane, e.g.
``host/0`` (host worker 0), ``h2d`` (host-to-device copies), ``device/1`` (processing
element or stream 1), ``d2h`` (device-to-host copies), ``queue`` (waiting for a slot).

A :class:`Trace` holds spans, counters (value over time, e.g. queue occupancy) and
metadata (device, mode, parameters, environment). It exports the Chrome trace event
format, which opens in Perfetto (https://ui.perfetto.dev) and ``chrome://tracing``,
and imports Chrome-format traces, including ONNX Runtime's profiler output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lab.errors import TraceFormatError

__all__ = [
    "LANE_D2H",
    "LANE_DEVICE",
    "LANE_H2D",
    "LANE_HOST",
    "LANE_KINDS",
    "LANE_QUEUE",
    "Counter",
    "Span",
    "Trace",
    "lane_kind",
    "lane_sort_key",
]

LANE_HOST = "host"
LANE_H2D = "h2d"
LANE_DEVICE = "device"
LANE_D2H = "d2h"
LANE_QUEUE = "queue"
#: Lane kinds in timeline order (top to bottom); unknown kinds sort after these.
LANE_KINDS: tuple[str, ...] = (LANE_QUEUE, LANE_HOST, LANE_H2D, LANE_DEVICE, LANE_D2H)

_LANE_TITLES = {
    LANE_QUEUE: "queue (waiting for a slot)",
    LANE_HOST: "host CPU",
    LANE_H2D: "DMA in (host to device)",
    LANE_DEVICE: "device compute",
    LANE_D2H: "DMA out (device to host)",
}

# Chrome trace event phases (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU).
PHASE_COMPLETE = "X"
PHASE_COUNTER = "C"
PHASE_METADATA = "M"


class Span(NamedTuple):
    """One timed piece of work on one lane, for one request (``request_id`` -1: none)."""

    lane: str
    name: str
    request_id: int
    start_ns: int
    end_ns: int
    attrs: Mapping[str, Any] | None = None

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns


class Counter(NamedTuple):
    """A sampled value over time (e.g. requests in flight), drawn as a step line."""

    name: str
    t_ns: int
    value: float


def lane_kind(lane: str) -> str:
    """The kind of a lane: ``"host/0"`` -> ``"host"``, ``"d2h"`` -> ``"d2h"``."""
    return lane.split("/", 1)[0]


def lane_sort_key(lane: str) -> tuple[int, str, int, str]:
    """Sort key putting lanes in timeline order: queue, host/0, host/1, ..., h2d, device/*, d2h, others."""
    kind, _, sub = lane.partition("/")
    rank = LANE_KINDS.index(kind) if kind in LANE_KINDS else len(LANE_KINDS)
    return (rank, kind, int(sub) if sub.isdigit() else -1, sub)


@dataclass
class Trace:
    """Spans, counters and metadata of one run.

    Times are integer nanoseconds on the clock that recorded them (by default the
    host's ``perf_counter_ns``); ``origin_ns`` is the zero of exported timelines.
    """

    spans: list[Span] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    origin_ns: int | None = None

    def __post_init__(self) -> None:
        if self.origin_ns is None:
            self.origin_ns = min((s.start_ns for s in self.spans), default=0)

    # -- queries -----------------------------------------------------------------
    @property
    def lanes(self) -> list[str]:
        """Lanes in timeline order (queue, host workers, DMA in, device, DMA out)."""
        return sorted({s.lane for s in self.spans}, key=lane_sort_key)

    @property
    def start_ns(self) -> int:
        """Start of the earliest span (0 for an empty trace)."""
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        """End of the latest span (0 for an empty trace)."""
        return max((s.end_ns for s in self.spans), default=0)

    def select(self, *, lane_kind_: str | None = None, name: str | None = None) -> list[Span]:
        """Spans whose lane kind and/or name match."""
        return [
            s
            for s in self.spans
            if (lane_kind_ is None or lane_kind(s.lane) == lane_kind_) and (name is None or s.name == name)
        ]

    def head(self, num_requests: int) -> Trace:
        """A trace of the first ``num_requests`` requests (by id) and the counters in their time range.

        Spans with no request (id -1) are kept when they overlap that range. Useful to draw a
        readable window of a long run.
        """
        keep = [s for s in self.spans if 0 <= s.request_id < num_requests]
        end = max((s.end_ns for s in keep), default=self.origin_ns or 0)
        keep += [s for s in self.spans if s.request_id < 0 and s.start_ns < end]
        counters = [c for c in self.counters if c.t_ns <= end]
        return Trace(spans=keep, counters=counters, metadata=dict(self.metadata), origin_ns=self.origin_ns)

    def to_frame(self) -> Any:
        """A tidy ``pandas.DataFrame``, one row per span.

        Columns: ``lane``, ``lane_kind``, ``name``, ``request_id``, ``start_ns``,
        ``end_ns``, ``duration_ns``, ``attrs``.
        """
        import pandas as pd  # lazy: pandas is only needed for analysis and plots

        rows = [
            (s.lane, lane_kind(s.lane), s.name, s.request_id, s.start_ns, s.end_ns, s.end_ns - s.start_ns, s.attrs)
            for s in self.spans
        ]
        return pd.DataFrame(
            rows,
            columns=["lane", "lane_kind", "name", "request_id", "start_ns", "end_ns", "duration_ns", "attrs"],
        )

    def extend(self, other: Trace) -> None:
        """Append another trace's spans and counters (same clock assumed)."""
        self.spans.extend(other.spans)
        self.counters.extend(other.counters)
        self.origin_ns = min(self.origin_ns or 0, other.origin_ns or 0) if self.spans else other.origin_ns

    # -- Chrome trace format ---------------------------------------------------------
    def to_chrome(self) -> dict[str, Any]:
        """The trace as a Chrome trace-event JSON object (``{"traceEvents": [...]}``).

        One process per lane kind (host, DMA in, device, DMA out, queue) and one thread
        per lane, each named through metadata events so Perfetto labels the rows.
        Timestamps are microseconds (floats, keeping nanosecond precision) from
        ``origin_ns``.
        """
        origin = self.origin_ns or 0
        kinds = sorted({lane_kind(lane) for lane in self.lanes}, key=lambda k: lane_sort_key(k))
        pid_of = {k: i + 1 for i, k in enumerate(kinds)}
        tid_of: dict[str, int] = {}
        events: list[dict[str, Any]] = []
        device_name = self.metadata.get("device")
        for kind, pid in pid_of.items():
            title = _LANE_TITLES.get(kind, kind)
            if kind in (LANE_DEVICE, LANE_H2D, LANE_D2H) and device_name:
                title = f"{title} [{device_name}]"
            events.append({"ph": PHASE_METADATA, "name": "process_name", "pid": pid, "tid": 0, "args": {"name": title}})
            events.append({"ph": PHASE_METADATA, "name": "process_sort_index", "pid": pid, "tid": 0,
                           "args": {"sort_index": pid}})
        for i, lane in enumerate(self.lanes):
            tid_of[lane] = i + 1
            pid = pid_of[lane_kind(lane)]
            events.append({"ph": PHASE_METADATA, "name": "thread_name", "pid": pid, "tid": i + 1,
                           "args": {"name": lane}})
            events.append({"ph": PHASE_METADATA, "name": "thread_sort_index", "pid": pid, "tid": i + 1,
                           "args": {"sort_index": i + 1}})
        for s in self.spans:
            args: dict[str, Any] = {"request_id": s.request_id}
            if s.attrs:
                args.update({k: _jsonable(v) for k, v in s.attrs.items()})
            events.append({
                "ph": PHASE_COMPLETE, "name": s.name, "cat": lane_kind(s.lane),
                "pid": pid_of[lane_kind(s.lane)], "tid": tid_of[s.lane],
                "ts": (s.start_ns - origin) / 1000.0, "dur": (s.end_ns - s.start_ns) / 1000.0, "args": args,
            })
        counter_pid = len(pid_of) + 1
        if self.counters:
            events.append({"ph": PHASE_METADATA, "name": "process_name", "pid": counter_pid, "tid": 0,
                           "args": {"name": "counters"}})
        for c in self.counters:
            events.append({"ph": PHASE_COUNTER, "name": c.name, "pid": counter_pid, "tid": 0,
                           "ts": (c.t_ns - origin) / 1000.0, "args": {c.name: c.value}})
        return {
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {k: _jsonable(v) for k, v in self.metadata.items()},
        }

    def save_chrome(self, path: str | os.PathLike[str]) -> str:
        """Write the Chrome trace JSON to ``path`` and return the path as a string."""
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_chrome(), f)
        return path

    @classmethod
    def from_chrome(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | os.PathLike[str]) -> Trace:
        """Read a Chrome trace: the lab's own, ONNX Runtime's profile, or any ``X``-event trace.

        Lanes come from thread names when metadata names them, else from the event's
        category (``cat``) or ``pid/tid``. Timestamps (microseconds) become integer ns.

        Raises:
            TraceFormatError: the data is not a Chrome trace.
        """
        if isinstance(data, (str, os.PathLike)):
            try:
                with open(data, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                raise TraceFormatError(f"cannot read a Chrome trace from {os.fspath(data)!r}: {exc}") from exc
        if isinstance(data, Mapping):
            events = data.get("traceEvents")
            metadata = dict(data.get("otherData") or {})
        else:
            events, metadata = data, {}
        if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
            raise TraceFormatError(
                "expected a Chrome trace: a list of events or an object with 'traceEvents'; "
                f"got {type(events).__name__}"
            )
        thread_names: dict[tuple[Any, Any], str] = {}
        for e in events:
            if e.get("ph") == PHASE_METADATA and e.get("name") == "thread_name":
                thread_names[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name"))
        spans: list[Span] = []
        counters: list[Counter] = []
        for e in events:
            ph = e.get("ph")
            if ph == PHASE_COMPLETE:
                try:
                    start = round(float(e["ts"]) * 1000)
                    end = start + round(float(e.get("dur", 0)) * 1000)
                except (KeyError, TypeError, ValueError) as exc:
                    raise TraceFormatError(f"a complete ('X') event needs numeric 'ts' and 'dur': {e!r}") from exc
                lane = (thread_names.get((e.get("pid"), e.get("tid")))
                        or str(e.get("cat") or f"{e.get('pid')}/{e.get('tid')}"))
                args = dict(e.get("args") or {})
                rid = args.pop("request_id", -1)
                spans.append(Span(lane, str(e.get("name")), int(rid) if isinstance(rid, (int, float)) else -1,
                                  start, end, args or None))
            elif ph == PHASE_COUNTER:
                for name, value in (e.get("args") or {}).items():
                    counters.append(Counter(str(name), round(float(e["ts"]) * 1000), float(value)))
        return cls(spans=spans, counters=counters, metadata=metadata, origin_ns=0)


def _jsonable(value: Any) -> Any:
    """Make a metadata or attribute value JSON-serialisable (numpy scalars, tuples, enums)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    enum_value = getattr(value, "value", None)
    if enum_value is not None and isinstance(enum_value, (str, int)):
        return enum_value
    return str(value)


def spans_from_tuples(rows: Iterable[tuple[Any, ...]]) -> list[Span]:
    """Build spans from raw ``(lane, name, request_id, start_ns, end_ns, attrs)`` tuples."""
    return [Span(*r) for r in rows]
