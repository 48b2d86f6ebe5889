"""Notebook 01 (seed 000): sync vs batch vs async."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {"requests": 200, "warmup": 5, "cap_requests": 300, "caps": [None, 2]}


def check(doc: dict[str, Any]) -> None:
    m = doc["metrics"]
    assert set(m["accuracy"]) == {"sync", "batch", "async"}
    for mode, acc in m["accuracy"].items():
        assert acc >= 0.95, f"{mode}: predictions match labels only {acc:.3f} of the time"
    assert {r["mode"] for r in m["modes"]} == {"sync", "batch", "async"}
    assert all(r["errors"] == 0 for r in m["modes"])
    rounds = [r for r in m["rounds"] if r["mode"] == "sync"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    caps = {str(r["max_inflight"]): r for r in m["caps"]}
    assert caps["2"]["peak_inflight"] <= 2 < caps["none"]["peak_inflight"]
    assert len(m["guidance"]) == 3
    assert doc["trace"] and doc["environment"]["cpu_count"]
