"""Metrics: hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.metrics import RequestRecord, busy_ns, compute_metrics, latency_summary, merge_intervals, steady_throughput
from lab.trace import Span


def test_latency_summary_of_known_values() -> None:
    s = latency_summary(list(range(1, 101)))
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)


def test_latency_summary_empty_is_nan() -> None:
    assert all(math.isnan(v) for v in latency_summary([]).values())


def test_merge_intervals() -> None:
    s, e = merge_intervals(np.array([5, 0, 2, 20]), np.array([8, 3, 6, 21]))
    assert s.tolist() == [0, 20] and e.tolist() == [8, 21]


def test_busy_is_the_union_clipped_to_the_window() -> None:
    spans = [Span("device/0", "c", 0, 0, 10), Span("device/0", "c", 1, 5, 15), Span("device/0", "c", 2, 30, 40)]
    assert busy_ns(spans, 0, 100) == 25
    assert busy_ns(spans, 10, 35) == 10


def test_steady_window_small_run_uses_everything() -> None:
    recs = [RequestRecord(i, i * 10, i * 10, i * 10 + 10) for i in range(5)]
    rps, lo, hi = steady_throughput(recs)
    assert (lo, hi) == (0, 50) and rps == pytest.approx(5 / 50e-9)


def test_steady_window_trims_ramp_and_drain() -> None:
    # 100 requests completing every 10 ns after a slow start: the window skips the first/last 10
    recs = [RequestRecord(i, 0, 0, 1000 + i * 10) for i in range(100)]
    rps, lo, hi = steady_throughput(recs)
    assert (lo, hi) == (1100, 1890)
    assert rps == pytest.approx(79 / 790e-9)


def _sync_like(n: int, pre: int, compute: int) -> tuple[list[RequestRecord], list[Span]]:
    recs, spans, t = [], [], 0
    for i in range(n):
        spans.append(Span("host/0", "pre", i, t, t + pre))
        spans.append(Span("device/0", "compute", i, t + pre, t + pre + compute))
        recs.append(RequestRecord(i, t, t, t + pre + compute))
        t += pre + compute
    return recs, spans


def test_sequential_run_has_no_overlap() -> None:
    recs, spans = _sync_like(10, pre=30, compute=70)
    m = compute_metrics(recs, spans)
    assert m.overlap == 0.0
    assert m.utilization_by_kind["device"] == pytest.approx(0.7)
    assert m.utilization_by_kind["host"] == pytest.approx(0.3)
    assert m.requests == 9 and m.first_latency_ns == 100
    assert m.stages_ns["compute"]["p50"] == 70 and m.stages_ns["compute"]["count"] == 9
    assert m.peak_inflight == 1


def test_pipelined_run_overlaps() -> None:
    # pre of request i+1 runs on host/1 while request i computes
    spans, recs = [], []
    for i in range(10):
        t = i * 100
        spans.append(Span("host/1", "pre", i + 1, t, t + 100))
        spans.append(Span("device/0", "compute", i, t, t + 100))
        recs.append(RequestRecord(i, t - 100, t - 100, t + 100))
    m = compute_metrics(recs, spans)
    assert m.overlap == pytest.approx(1.0)
    assert m.peak_inflight == 2


def test_warmup_and_failed_requests_are_excluded() -> None:
    recs = [RequestRecord(0, 0, 0, 500, warmup=True), RequestRecord(1, 500, 500, 600),
            RequestRecord(2, 600, 600, 700, ok=False), RequestRecord(3, 700, 700, 800)]
    m = compute_metrics(recs, [])
    assert m.requests == 2 and m.errors == 1 and m.warmup == 1 and m.first_latency_ns == 500


def test_to_dict_is_in_milliseconds() -> None:
    recs, spans = _sync_like(3, pre=1_000_000, compute=2_000_000)
    d = compute_metrics(recs, spans).to_dict()
    assert d["latency_ms"]["p50"] == pytest.approx(3.0)
    assert d["stages_ms"] == {"pre": pytest.approx(1.0), "compute": pytest.approx(2.0)}
