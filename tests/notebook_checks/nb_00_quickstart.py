"""Notebook 00: the quickstart explorer on the digits model and the simulator's teaching preset."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {"requests": 40, "warmup": 2}


def check(doc: dict[str, Any]) -> None:
    m = doc["metrics"]
    h = m["headline"]
    assert m["runs"] == 1 and m["run"].startswith("run 1: sync")
    assert "simulator" in m["device"]
    assert h["errors"] == 0 and h["throughput_rps"] > 0
    # the teaching preset models about 5.8 ms per request done one at a time (sync)
    assert 3.0 < h["p50_ms"] < 50.0, h["p50_ms"]
    assert h["accuracy"] >= 0.9
    p = doc["parameters"]
    assert p["runtime"] == "simnpu" and p["preset"] == "teaching" and p["requests"] == 40
