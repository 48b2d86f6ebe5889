"""A thread-safe span recorder: ``with prof.record("pre"): ...``.

Recording a span costs two clock reads and one ``list.append`` (atomic under the GIL,
so threads need no lock); a disabled profiler costs one attribute check. Spans are
kept as raw tuples and become :class:`~lab.trace.Span` objects only when
:meth:`Profiler.trace` is called, off the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from lab.clock import Clock, host_clock
from lab.trace import LANE_HOST, Counter, Span, Trace

__all__ = ["NULL_PROFILER", "Profiler"]


class _Record:
    """Context manager returned by :meth:`Profiler.record` (a small class: cheaper than a generator)."""

    __slots__ = ("_prof", "_lane", "_name", "_rid", "_attrs", "_start")

    def __init__(self, prof: Profiler, lane: str, name: str, rid: int, attrs: Mapping[str, Any] | None) -> None:
        self._prof = prof
        self._lane = lane
        self._name = name
        self._rid = rid
        self._attrs = attrs
        self._start = 0

    def __enter__(self) -> _Record:
        self._start = self._prof.clock()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        end = self._prof.clock()
        attrs = self._attrs
        if ev is not None:
            attrs = {**(attrs or {}), "error": type(ev).__name__}
        self._prof._rows.append((self._lane, self._name, self._rid, self._start, end, attrs))


class _NullRecord:
    __slots__ = ()

    def __enter__(self) -> _NullRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_RECORD = _NullRecord()


class Profiler:
    """Collects spans and counters from any number of threads.

    Args:
        clock: integer-nanosecond clock (inject a :class:`~lab.clock.FakeClock` in tests).
        enabled: when False, ``record`` and ``add`` do nothing and cost almost nothing.

    Example::

        prof = Profiler()
        with prof.lane_scope("host/0"):
            with prof.record("pre", request_id=7):
                x = preprocess(sample)
        trace = prof.trace(mode="sync")
    """

    def __init__(self, *, clock: Clock = host_clock, enabled: bool = True) -> None:
        self.clock = clock
        self.enabled = enabled
        self._rows: list[tuple[Any, ...]] = []
        self._counters: list[Counter] = []
        self._local = threading.local()

    # -- lanes -----------------------------------------------------------------------
    @property
    def current_lane(self) -> str:
        """The calling thread's default lane (``host/<thread name>`` unless set)."""
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = f"{LANE_HOST}/{threading.current_thread().name}"
        return lane

    def set_lane(self, lane: str | None) -> None:
        """Set the calling thread's default lane (None: back to ``host/<thread name>``)."""
        self._local.lane = lane

    def lane_scope(self, lane: str) -> _LaneScope:
        """Context manager setting the calling thread's default lane, restoring it after."""
        return _LaneScope(self, lane)

    # -- recording -------------------------------------------------------------------
    def record(self, name: str, *, lane: str | None = None, request_id: int = -1,
               attrs: Mapping[str, Any] | None = None) -> _Record | _NullRecord:
        """Time the ``with`` block as a span named ``name`` (on ``lane``, else the thread's lane).

        A span whose block raised carries ``attrs["error"]`` with the exception's type.
        """
        if not self.enabled:
            return _NULL_RECORD
        return _Record(self, lane if lane is not None else self.current_lane, name, request_id, attrs)

    def add(self, lane: str, name: str, request_id: int, start_ns: int, end_ns: int,
            attrs: Mapping[str, Any] | None = None) -> None:
        """Add a span measured elsewhere (the fast path runtimes use)."""
        if self.enabled:
            self._rows.append((lane, name, request_id, start_ns, end_ns, attrs))

    def counter(self, name: str, value: float, t_ns: int | None = None) -> None:
        """Record a counter sample (e.g. requests in flight) at ``t_ns`` (default: now)."""
        if self.enabled:
            self._counters.append(Counter(name, self.clock() if t_ns is None else t_ns, float(value)))

    # -- results ---------------------------------------------------------------------
    @property
    def num_spans(self) -> int:
        """Number of spans recorded so far."""
        return len(self._rows)

    def spans(self) -> list[Span]:
        """A snapshot of the spans recorded so far, in recording order."""
        return [Span(*r) for r in list(self._rows)]

    def trace(self, **metadata: Any) -> Trace:
        """A :class:`~lab.trace.Trace` of everything recorded so far, with ``metadata``."""
        return Trace(spans=self.spans(), counters=list(self._counters), metadata=dict(metadata))

    def clear(self) -> None:
        """Forget every span and counter recorded so far."""
        self._rows = []
        self._counters = []


class _LaneScope:
    __slots__ = ("_prof", "_lane", "_prev")

    def __init__(self, prof: Profiler, lane: str) -> None:
        self._prof = prof
        self._lane = lane
        self._prev: str | None = None

    def __enter__(self) -> _LaneScope:
        self._prev = getattr(self._prof._local, "lane", None)
        self._prof._local.lane = self._lane
        return self

    def __exit__(self, *exc: object) -> None:
        self._prof._local.lane = self._prev


#: A disabled profiler: pass it where spans are not wanted.
NULL_PROFILER = Profiler(enabled=False)
