"""Notebook 04 (seed 001): measuring inference time correctly, against the simulator's known durations.

Tolerances (the quick run is checked; these bounds hold on a loaded 2-core CI machine):

* virtual time is exact: ``lab.measure`` must equal the modelled duration to 1e-9;
* the naive host clock around ``submit()`` times the enqueue (tens of microseconds) of requests of
  1 and 5 ms: it must read under 20 % of the truth (typically 1-3 %);
* ``lab.measure`` in real time waits for the device, so it never reads short (> -2 %); its blocks
  carry the simulator's completion path (~0.2 ms per block here), so it may read long, but it must
  be at least 3x closer to the truth than the naive reading;
* blocks of 50 one-millisecond requests and the regression slope must land within 5 % of the
  truth in the quick run (2 % in a full run): the ~0.2 ms fixed cost is 0.4 % of a 50 ms block,
  and 5 % leaves room for a 1-2 ms hiccup of a loaded CI runner inside one block.
"""

from __future__ import annotations

import math
from typing import Any

QUICK: dict[str, Any] = {"durations_ms": [1.0, 5.0], "repeat_samples_n": 1000}

NAIVE = "naive: host clock around submit()"
LAB = "lab.measure(submit, synchronize)"


def check(doc: dict[str, Any]) -> None:
    m, h = doc["metrics"], doc["metrics"]["headline"]
    quick = doc["parameters"]["quick"]
    tol = 0.05 if quick else 0.02
    assert "simulated NPU (simulator)" in m["simulator"]["device"]
    assert m["simulator"]["simulator"] is True

    # 1. sync vs async: infer() returns after its work, submit() before it
    dispatch = m["dispatch"]
    assert {r["api"] for r in dispatch} == {"infer() (sync)", "submit() (async)"}
    for r in dispatch:
        if r["api"].startswith("submit"):
            assert r["returned_before_done"] and r["returned_after_ms"] < r["device_ms"], r
        else:
            assert not r["returned_before_done"] and r["returned_after_ms"] >= r["device_ms"], r

    # 2. naive vs correct against the known duration
    rows = {(r["clock"], r["duration_ms"], r["method"]): r for r in m["accuracy"]}
    durations = doc["parameters"]["durations_ms"]
    assert len(rows) == 4 * len(durations)
    for d in durations:
        virtual = rows[("virtual", d, LAB)]
        assert virtual["true_ms"] == d and abs(virtual["rel_error"]) <= 1e-9, virtual
        naive, right = rows[("real", d, NAIVE)], rows[("real", d, LAB)]
        assert naive["median_ms"] < 0.2 * d, naive
        assert right["rel_error"] > -0.02, right
        assert abs(right["rel_error"]) * 3 < abs(naive["rel_error"]), (right, naive)
    assert h["virtual_lab_rel_error_max"] <= 1e-9
    assert h["naive_underreport_factor"] >= 5
    assert h["naive_rel_error_median"] < -0.8
    assert any(w["method"] == NAIVE and w["warning"] == "naive timing" for w in m["warnings"])

    # 3. blocks: the fixed cost amortised, and removed by the regression slope
    sweep = m["block_sweep"]
    biggest = max(sweep, key=lambda r: r["block_size"])
    smallest = min(sweep, key=lambda r: r["block_size"])
    assert abs(biggest["rel_error"]) <= tol, biggest
    assert abs(m["block_fit"]["rel_error"]) <= tol, m["block_fit"]
    assert biggest["rel_error"] < smallest["rel_error"], (smallest, biggest)
    assert m["block_fit"]["fixed_us"] > 0

    # 4. first call of a fresh runtime
    calls = {r["runtime"]: r for r in m["first_calls"]}
    assert set(calls) == {"onnx", "torch"}
    for name, r in calls.items():
        assert r["status"].startswith("ran on"), r
        assert r["first_over_median"] > 2, f"{name}: the cold first call should stand out: {r}"
        assert len(r["warmup_ms"]) == 3

    # 5. repeats: right-skewed, the median steadier than the mean
    dist = {r["series"]: r for r in m["distribution"]}
    quiet, noisy = dist["quiet"], dist["noisy neighbour"]
    assert quiet["n"] == noisy["n"] == doc["parameters"]["repeat_samples_n"]
    for r in (quiet, noisy):
        assert r["mean_us"] >= r["median_us"], r
    assert noisy["mean_pull"] > 0.05, noisy
    assert abs(noisy["median_us"] / quiet["median_us"] - 1) < abs(noisy["mean_us"] / quiet["mean_us"] - 1)

    # 6. timer overhead
    assert 0 < h["clock_overhead_ns"] < 5_000
    assert h["empty_call_naive_over_blocked"] > 1.5

    # 7. CPU torch is synchronous: naive and synchronized agree
    assert 0.5 < h["torch_cpu_naive_over_synchronized"] < 2.0

    # 8. CUDA: ran with sane numbers, or said why not
    cuda = m["cuda"]
    if h["cuda_ran"]:
        by = {r["method"].split(":")[0].split("(")[0].strip(): r for r in cuda["rows"]}
        assert abs(by["lab.measure"]["over_events"] - 1) <= 0.10, cuda
        assert by["naive"]["over_events"] < 0.5, cuda
    else:
        assert cuda["status"].startswith("skipped: no CUDA"), cuda
        assert all(r["median_ms"] is None or math.isnan(r["median_ms"]) for r in cuda["rows"])
