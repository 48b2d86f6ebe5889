"""Notebook 03 (seed 004, runtime side): predictions from one run beside measurements on the simulated NPU."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {"requests": 60, "max_workers": 5, "queue_sizes": [1, 8], "queue_requests": 60,
                         "batches": [1, 4, 16], "batch_samples": 96, "pe_workers": [1, 4], "twin_requests": 10000,
                         "progress": False}


def check(doc: dict[str, Any]) -> None:
    m = doc["metrics"]
    h = m["headline"]
    # predicted, measured and error for every worker count and parallel 1/2
    for key in [f"workers{n}" for n in range(1, 6)] + ["parallel1", "parallel2"]:
        assert h[f"{key}_measured_rps"] > 0 and h[f"{key}_predicted_rps"] > 0, key
        err = (h[f"{key}_predicted_rps"] - h[f"{key}_measured_rps"]) / h[f"{key}_measured_rps"]
        assert abs(err - h[f"{key}_error"]) < 1e-9, key
    # a shared 2-core CI machine is noisy (one short run can lose 20 %); the benchmark's interleaved medians
    # hold the 10 % target, CI checks the median and bounds the worst case
    assert h["median_abs_twin_error"] < 0.15, h["median_abs_twin_error"]
    assert h["max_abs_twin_error"] < 0.5, h["max_abs_twin_error"]
    # teaching preset: 2 PEs x 2.857 ms bound the digits model at 700/s; the seed's lumped bound is lower
    assert 690 < h["bound_rps"] < 701 and h["seed_bound_rps"] < h["bound_rps"]
    assert 1 <= h["recommended_workers"] <= 5 and h["recommended_measured_rps"] > 0
    assert h["best_measured_rps"] <= 1.02 * h["bound_rps"]
    assert h["twin_requests"] == 10000 and h["twin_seconds"] < 10
    # the simulator's cost model: fused PE is faster alone, two single PEs serve more
    assert h["pe_mode_latency_goal"] == "fused" and h["pe_mode_throughput_goal"] == "single"
    assert h["batch_latency_goal"] == 1 and h["batch_throughput_goal"] > 1
    batch = {r["batch"]: r for r in m["batch"]}
    assert batch[16]["measured_rps"] > 1.5 * batch[1]["measured_rps"]  # launch and DMA setup amortised
    assert batch[16]["measured_latency_ms"] > batch[1]["measured_latency_ms"]
    pe = {(r["pe_mode"], r["workers"]): r for r in m["pe_modes"]}
    assert pe[("fused", 1)]["measured_p50_ms"] < pe[("single", 1)]["measured_p50_ms"]  # 5.4 vs 6.1 ms modelled
    assert pe[("single", 4)]["measured_rps"] > pe[("fused", 4)]["measured_rps"]
    for q in m["queue"]:  # bounded queues bound the requests in flight
        assert q["all_received"] and q["peak_inflight"] <= q["inflight_bound"], q
    assert all(r["errors"] == 0 for r in [m["reference"]]) and m["reference"]["littles_law"]["ok"] is not None
    assert len(m["verdicts"]) == 6 and "simulator" in m["simulator"]["device"]
