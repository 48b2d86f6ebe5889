"""Seed 000's study: sync vs batch vs async prediction, cold vs warm, and the in-flight cap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lab.runners import AsyncRunner, BatchRunner, RunResult, SyncRunner
from lab.runtimes import create_runtime
from lab.zoo import Workload

__all__ = ["cap_sweep", "conversion_rounds", "mode_table", "when_to_use"]


def _runner(mode: str, runtime: Any, workload: Workload, *, batch_size: int, workers: int,
            max_inflight: int | None = None) -> Any:
    if mode == "sync":
        return SyncRunner(runtime, workload=workload)
    if mode == "batch":
        return BatchRunner(runtime, batch_size=batch_size, workload=workload)
    if mode == "async":
        return AsyncRunner(runtime, workers=workers, max_inflight=max_inflight, workload=workload)
    raise ValueError(f"mode must be sync, batch or async, got {mode!r}")


def conversion_rounds(workload: Workload, *, runtime: str = "onnx", modes: Sequence[str] = ("sync", "batch", "async"),
                      rounds: int = 4, inputs_per_round: int = 4, workers: int = 4,
                      runtime_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The seed's table: time to convert ``inputs_per_round`` inputs, round after round, per mode.

    Each mode gets a *fresh* runtime, so round 1 is cold (first execution after loading),
    as in the seed; the load itself (session creation) is reported apart in ``load_ms``.
    A round's time runs from its first submission to its last output (host clock).

    Returns:
        One row per (mode, round): ``mode, round, ms, load_ms, ok``.
    """
    rows = []
    for mode in modes:
        rt = create_runtime(runtime, workload.model_path, **dict(runtime_options or {}))
        runner = _runner(mode, rt, workload, batch_size=inputs_per_round, workers=workers)
        try:
            for r in range(rounds):
                idx = (np.arange(inputs_per_round) + r * inputs_per_round) % workload.num_samples
                res = runner.run_all(workload.samples[idx], warmup=0, requests=inputs_per_round)
                t0 = min(rec.submit_ns for rec in res.records)
                t1 = max(rec.end_ns for rec in res.records)
                rows.append({"mode": mode, "round": r + 1, "ms": (t1 - t0) / 1e6, "load_ms": rt.load_ns / 1e6,
                             "ok": not res.errors})
        finally:
            if isinstance(runner, AsyncRunner):
                runner.close()
            rt.close()
    return pd.DataFrame(rows)


def mode_table(results: Mapping[str, RunResult], labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per mode: throughput, latency percentiles, cold request, accuracy, overlap, utilisation."""
    rows = []
    for mode, res in results.items():
        m = res.metrics
        rows.append({
            "mode": mode,
            "throughput_rps": m.throughput_rps,
            "p50_ms": m.latency_ns["p50"] / 1e6,
            "p90_ms": m.latency_ns["p90"] / 1e6,
            "p99_ms": m.latency_ns["p99"] / 1e6,
            "first_ms": m.first_latency_ns / 1e6,
            "compute_p50_ms": m.stages_ns.get("compute", {}).get("p50", float("nan")) / 1e6,
            "device_util": m.utilization_by_kind.get("device", float("nan")),
            "overlap": m.overlap,
            "peak_inflight": m.peak_inflight,
            "accuracy": res.accuracy(labels),
            "errors": m.errors,
        })
    return pd.DataFrame(rows).set_index("mode")


def cap_sweep(workload: Workload, *, caps: Sequence[int | None], workers: int, requests: int,
              runtime: str = "onnx", runtime_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Async runs with different in-flight caps: peak in-flight, peak memory, latency, throughput.

    Each cap is measured twice on one warm runtime: once for time, once with Python's
    allocation tracing on for peak memory (tracing slows allocation, so the timed run
    has it off). Memory is the peak of Python-heap allocations during the run, numpy
    arrays included: the request buffers, futures and tasks that in-flight work holds.
    """
    rows = []
    rt = create_runtime(runtime, workload.model_path, **dict(runtime_options or {}))
    try:
        SyncRunner(rt, workload=workload).run_all(workload.samples, warmup=0, requests=min(20, requests))  # warm
        for cap in caps:
            with AsyncRunner(rt, workers=workers, max_inflight=cap, workload=workload) as runner:
                timed = runner.run_all(workload.samples, warmup=0, requests=requests)
                mem = runner.run_all(workload.samples, warmup=0, requests=requests, measure_memory=True)
            m = timed.metrics
            rows.append({
                "max_inflight": "none" if cap is None else cap,
                "peak_inflight": m.peak_inflight,
                "peak_memory_kib": mem.metrics.extra["peak_memory_bytes"] / 1024,
                "p50_ms": m.latency_ns["p50"] / 1e6,
                "p99_ms": m.latency_ns["p99"] / 1e6,
                "throughput_rps": m.throughput_rps,
                "errors": m.errors + mem.metrics.errors,
            })
    finally:
        rt.close()
    return pd.DataFrame(rows)


def when_to_use(modes: pd.DataFrame, caps: pd.DataFrame | None = None) -> list[str]:
    """The seed's guidance on which mode fits when, stated with this run's numbers.

    Args:
        modes: :func:`mode_table` output with rows sync, batch, async.
        caps: optional :func:`cap_sweep` output.
    """
    s, b, a = (modes.loc[m] for m in ("sync", "batch", "async"))
    out = []
    lowest = modes["p50_ms"].idxmin()
    out.append(
        f"Sync: p50 latency {s.p50_ms:.3f} ms at {s.throughput_rps:,.0f} req/s. It fits when inputs arrive "
        f"further apart than {s.p50_ms:.3f} ms (the model's latency), one at a time; "
        + ("it has the lowest latency of the three here." if lowest == "sync" else
           f"here {lowest} has the lowest p50 ({modes.loc[lowest].p50_ms:.3f} ms).")
    )
    gain_b = b.throughput_rps / s.throughput_rps
    out.append(
        f"Batch: {gain_b:.2f}x sync throughput ({b.throughput_rps:,.0f} req/s), but every request waits for its "
        f"whole batch: p50 {b.p50_ms:.3f} ms vs {s.p50_ms:.3f} ms. It fits when inputs are available together "
        "(a fixed quantity of work); partial batches, UI granularity and no cancellation are its costs."
    )
    gain_a = a.throughput_rps / s.throughput_rps
    line = (
        f"Async: {gain_a:.2f}x sync throughput ({a.throughput_rps:,.0f} req/s) with host and device work "
        f"overlapping {a.overlap:.0%} of device time; it fits a stream of inputs arriving over time in an "
        "asynchronous context."
    )
    if caps is not None and len(caps) > 1:
        unc = caps[caps["max_inflight"] == "none"]
        capped = caps[caps["max_inflight"] != "none"]
        if len(unc) and len(capped):
            best = capped.loc[capped["throughput_rps"].idxmax()]
            u = unc.iloc[0]
            line += (
                f" Without a cap {int(u.peak_inflight)} requests were in flight at once and memory peaked at "
                f"{u.peak_memory_kib:,.0f} KiB (p99 {u.p99_ms:.1f} ms); capped at {best.max_inflight}, "
                f"{int(best.peak_inflight)} in flight, {best.peak_memory_kib:,.0f} KiB, p99 {best.p99_ms:.2f} ms, "
                f"{best.throughput_rps / u.throughput_rps:.0%} of the uncapped throughput."
            )
    out.append(line)
    return out
