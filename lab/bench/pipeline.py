"""Seed 002's study: the four steps of an inference and how concurrency overlaps them.

Functions return tidy tables; the notebook ``02_concurrency_overlap`` calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lab.runners import AsyncRunner, RunResult, SyncRunner
from lab.runners.async_api import AsyncRuntime
from lab.runtimes import create_runtime
from lab.zoo import Workload

__all__ = ["HELPS", "HELPS_A_LITTLE", "double_buffering", "heavy_preprocess", "run_variant", "stage_table",
           "summarize", "verdict"]

#: parallel=2 "helps" above this throughput factor ...
HELPS = 1.25
#: ... "helps a little" above this one, and "does not help" below (run-to-run noise stays under it).
HELPS_A_LITTLE = 1.10


def verdict(speedup: float) -> str:
    """``helps`` / ``helps a little`` / ``does not help`` for a measured speed-up."""
    if speedup > HELPS:
        return "helps"
    return "helps a little" if speedup > HELPS_A_LITTLE else "does not help"


def heavy_preprocess(base: Callable[[np.ndarray], np.ndarray], upscale: int) -> Callable[[np.ndarray], np.ndarray]:
    """``base`` preprocessing after real host work: each image is decoded to ``upscale`` times its
    size (``np.kron``) and resized back by block means, like a loader decoding a large image.

    The result equals ``base``'s exactly (block means of repeated pixels), so accuracy is kept;
    the cost is real CPU time that grows with ``upscale**2``.
    """
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    block = np.ones((upscale, upscale), dtype=np.float32)

    def prep(samples: np.ndarray) -> np.ndarray:
        imgs = np.asarray(samples, dtype=np.float32)
        if upscale > 1:
            n, h, w = imgs.shape
            big = np.stack([np.kron(img, block) for img in imgs])  # "decode" to a large image
            imgs = big.reshape(n, h, upscale, w, upscale).mean(axis=(2, 4))  # resize back
        return base(np.rint(imgs).astype(np.uint8))

    return prep


def stage_table(runtime: Any) -> pd.DataFrame:
    """The simulator's modelled time per step of one request (ns and ms)."""
    stages = runtime.modelled_stage_ns()
    return pd.DataFrame([{"stage": k, "modelled_ms": v / 1e6} for k, v in stages.items()]).set_index("stage")


def run_variant(workload: Workload, *, kind: str, requests: int, preset: str, parallel: int = 1, workers: int = 1,
                preprocess: Callable[[np.ndarray], np.ndarray] | None = None, warmup: int = 2,
                runtime_options: Mapping[str, Any] | None = None) -> RunResult:
    """One measured run on a fresh simulated NPU.

    Args:
        kind: ``sync`` (SyncRunner), ``parallel`` (RBLN-style AsyncRuntime with ``parallel``)
            or ``workers`` (AsyncRunner with ``workers``).
    """
    rt = create_runtime("simnpu", workload.model_path, preset=preset, **dict(runtime_options or {}))
    try:
        if kind == "sync":
            runner: Any = SyncRunner(rt, workload=workload, preprocess=preprocess)
        elif kind == "parallel":
            runner = AsyncRuntime(rt, parallel=parallel, workload=workload, preprocess=preprocess)
        elif kind == "workers":
            runner = AsyncRunner(rt, workers=workers, workload=workload, preprocess=preprocess)
        else:
            raise ValueError(f"kind must be sync, parallel or workers, got {kind!r}")
        try:
            result = runner.run_all(workload.samples, warmup=warmup, requests=requests)
        finally:
            if isinstance(runner, AsyncRunner):
                runner.close()
        result.metrics.extra["simulator"] = rt.stats()
        result.metrics.extra["modelled_stage_ns"] = rt.modelled_stage_ns()
        return result
    finally:
        rt.close()


def summarize(results: Mapping[str, RunResult], labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per run: throughput, latency, per-stage p50, device utilisation, overlap, accuracy."""
    rows = []
    for name, res in results.items():
        m = res.metrics
        row = {"run": name, "throughput_rps": m.throughput_rps, "p50_ms": m.latency_ns["p50"] / 1e6,
               "p99_ms": m.latency_ns["p99"] / 1e6, "device_util": m.utilization_by_kind.get("device", np.nan),
               "dma_in_util": m.utilization_by_kind.get("h2d", np.nan), "overlap": m.overlap,
               "errors": m.errors}
        for stage in ("pre", "upload", "compute", "download"):
            row[f"{stage}_ms"] = m.stages_ns.get(stage, {}).get("p50", np.nan) / 1e6
        if labels is not None and res.predictions is not None and res.predictions.dtype != object:
            row["accuracy"] = res.accuracy(labels)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def double_buffering(cases: Mapping[str, dict[str, Any]], *, requests: int,
                     parallels: Sequence[int] = (1, 2)) -> tuple[pd.DataFrame, dict[str, RunResult]]:
    """parallel=1 vs 2 for each case; a verdict per case computed from the measured speed-up.

    Args:
        cases: name -> keyword arguments for :func:`run_variant` (workload, preset, preprocess, ...).

    Returns:
        ``(table, results)``: one row per case with throughput at each ``parallel``, the speed-up,
        the per-request host and DMA share, and the :func:`verdict`.
    """
    rows, results = [], {}
    for case, kwargs in cases.items():
        row: dict[str, Any] = {"case": case}
        for p in parallels:
            res = run_variant(kind="parallel", parallel=p, requests=requests, **kwargs)
            results[f"{case} / parallel={p}"] = res
            row[f"rps_parallel{p}"] = res.metrics.throughput_rps
        stages = results[f"{case} / parallel={parallels[0]}"].metrics
        st = {k: v["p50"] for k, v in stages.stages_ns.items()}
        per_request = sum(st.get(k, 0.0) for k in ("pre", "quantize", "upload", "compute", "download",
                                                    "dequantize", "post"))
        row["host_ms"] = (st.get("pre", 0.0) + st.get("quantize", 0.0) + st.get("post", 0.0)
                          + st.get("dequantize", 0.0)) / 1e6
        row["dma_ms"] = (st.get("upload", 0.0) + st.get("download", 0.0)) / 1e6
        row["compute_ms"] = st.get("compute", 0.0) / 1e6
        row["dma_share"] = (st.get("upload", 0.0) + st.get("download", 0.0)) / per_request if per_request else np.nan
        row["speedup"] = row[f"rps_parallel{parallels[-1]}"] / row[f"rps_parallel{parallels[0]}"]
        row["verdict"] = verdict(row["speedup"])
        sims = [results[f"{case} / parallel={p}"].metrics.extra.get("simulator", {}) for p in parallels]
        row["host_kept_up"] = all(s.get("host_kept_up", True) for s in sims)
        row["max_late_ms"] = max(s.get("max_lateness_ns", 0) for s in sims) / 1e6
        rows.append(row)
    return pd.DataFrame(rows).set_index("case"), results
