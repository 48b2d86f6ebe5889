"""Every notebook runs under papermill with quick parameters; a notebook missing here fails the suite."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from lab.findings import load_findings

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))

#: quick parameters per notebook stem (output_dir and quick are added by the test)
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "01_sync_batch_async": {"requests": 200, "warmup": 5, "cap_requests": 300, "caps": [None, 2]},
    "02_concurrency_overlap": {"samples": 20},
}


def _check_01(doc: dict[str, Any]) -> None:
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


def _check_02(doc: dict[str, Any]) -> None:
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
    assert "simulator" in doc["metrics"]["simulator"]["device"]


CHECKS = {"01_sync_batch_async": _check_01, "02_concurrency_overlap": _check_02}


def test_every_notebook_has_quick_params_and_a_check() -> None:
    stems = {p.stem for p in NOTEBOOKS}
    assert stems, "no notebooks found"
    assert set(QUICK_PARAMS) == stems, f"not tested notebooks: {sorted(stems - set(QUICK_PARAMS))}"
    assert set(CHECKS) == stems


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import papermill as pm

    out_dir = tmp_path / "results"
    params = {"quick": True, "output_dir": str(out_dir), **QUICK_PARAMS[path.stem]}
    with caplog.at_level(logging.WARNING, logger="papermill"):
        pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False)
    unknown = [r.getMessage() for r in caplog.records if "Passed unknown parameter" in r.getMessage()]
    assert not unknown, unknown
    doc = load_findings(out_dir / f"{path.stem}.findings.json")
    assert doc["parameters"]["quick"] is True
    assert (out_dir / doc["trace"]).is_file()
    CHECKS[path.stem](doc)
