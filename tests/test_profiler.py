"""The profiler: spans on a fake clock, threads, errors, disabled cost."""

from __future__ import annotations

import threading

import pytest

from lab.clock import FakeClock
from lab.profiler import NULL_PROFILER, Profiler


def test_record_uses_the_injected_clock() -> None:
    clock = FakeClock(start_ns=100, step_ns=5)
    prof = Profiler(clock=clock)
    with prof.record("pre", lane="host/0", request_id=3):
        pass
    (span,) = prof.spans()
    assert span == ("host/0", "pre", 3, 100, 105, None)


def test_default_lane_is_per_thread() -> None:
    prof = Profiler(clock=FakeClock(step_ns=1))
    with prof.lane_scope("host/7"):
        with prof.record("a"):
            pass
    with prof.record("b"):
        pass
    lanes = {s.name: s.lane for s in prof.spans()}
    assert lanes["a"] == "host/7"
    assert lanes["b"] == f"host/{threading.current_thread().name}"


def test_failed_block_marks_the_span_and_reraises() -> None:
    prof = Profiler(clock=FakeClock(step_ns=1))
    with pytest.raises(KeyError):
        with prof.record("post", lane="host/0"):
            raise KeyError("x")
    assert prof.spans()[0].attrs == {"error": "KeyError"}


def test_threads_lose_no_spans() -> None:
    prof = Profiler(clock=FakeClock(step_ns=1))

    def work(i: int) -> None:
        for j in range(2000):
            with prof.record("s", lane=f"host/{i}", request_id=j):
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert prof.num_spans == 8000
    for i in range(4):
        assert sorted(s.request_id for s in prof.spans() if s.lane == f"host/{i}") == list(range(2000))


def test_disabled_profiler_records_nothing() -> None:
    with NULL_PROFILER.record("x"):
        pass
    NULL_PROFILER.add("h2d", "upload", 0, 0, 1)
    NULL_PROFILER.counter("inflight", 1)
    assert NULL_PROFILER.num_spans == 0 and NULL_PROFILER.trace().counters == []


def test_trace_carries_metadata_and_counters() -> None:
    prof = Profiler(clock=FakeClock(step_ns=1))
    prof.counter("inflight", 2, t_ns=50)
    t = prof.trace(mode="sync")
    assert t.metadata == {"mode": "sync"} and t.counters[0].value == 2.0
