"""Notebook 02 (seed 002): CPU / DMA / NPU overlap on the simulated NPU."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {"samples": 20}


def check(doc: dict[str, Any]) -> None:
    m = doc["metrics"]
    runs = {r["run"]: r for r in m["concurrency"]}
    assert set(runs) >= {"sync", "parallel=1", "parallel=2"}
    assert all(r["errors"] == 0 for r in runs.values())
    assert runs["sync"]["overlap"] == 0.0 and runs["parallel=2"]["overlap"] > 0.2
    # the simulator's 1 ms DMA and ~2 ms compute overlap: concurrency must buy throughput
    assert m["headline"]["concurrent_speedup"] > 1.3
    cases = {r["case"]: r for r in m["double_buffering"]}
    assert len(cases) == 6 and all(r["verdict"] in ("helps", "helps a little", "does not help") for r in cases.values())
    assert cases["large I/O on a slow link"]["dma_share"] > cases["large I/O (UNet depth 512x512)"]["dma_share"]
    assert all(r["accuracy"] >= 0.95 for r in runs.values())
    assert "simulator" in m["simulator"]["device"]
