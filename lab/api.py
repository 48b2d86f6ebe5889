"""``lab.run(config)``: the one call notebooks, the CLI and widgets use to measure a configuration."""

from __future__ import annotations

from typing import Any

from lab.config import Mode, RunConfig
from lab.runners import AsyncRunner, BatchRunner, RunResult, SyncRunner
from lab.runtimes import Runtime, create_runtime
from lab.zoo import Workload, load_workload

__all__ = ["make_runner", "run"]


def make_runner(config: RunConfig, runtime: Runtime, workload: Workload | None = None) -> Any:
    """The runner ``config.mode`` names, over ``runtime``, with ``workload``'s pre/postprocessing."""
    if config.mode is Mode.SYNC:
        return SyncRunner(runtime, workload=workload, profile=config.profile)
    if config.mode is Mode.BATCH:
        return BatchRunner(runtime, batch_size=config.batch_size, partial=config.partial, workload=workload,
                           profile=config.profile)
    return AsyncRunner(runtime, workers=config.workers, max_inflight=config.max_inflight, workload=workload,
                       profile=config.profile)


def run(config: RunConfig, *, workload: Workload | None = None, runtime: Runtime | None = None,
        samples: Any = None) -> RunResult:
    """Measure ``config``: load the workload and a fresh runtime, run, close what was opened.

    A fresh runtime per call means the first request is truly cold (session creation is
    reported apart as ``load_ms``). Pass ``runtime`` to reuse a warm one.

    Returns:
        The run's result; ``metrics.extra`` gains ``accuracy`` (when labels exist) and ``load_ms``.
    """
    workload = workload if workload is not None else load_workload(config.model)
    own = runtime is None
    rt = runtime if runtime is not None else create_runtime(config.runtime, workload.model_path,
                                                           **({"threads": config.threads} if config.threads else {}))
    runner = make_runner(config, rt, workload)
    try:
        result = runner.run_all(workload.samples if samples is None else samples,
                                warmup=config.warmup, requests=config.requests)
    finally:
        if isinstance(runner, AsyncRunner):
            runner.close()
        if own:
            rt.close()
    result.config.update(config.to_dict())
    result.config["model_path"] = str(workload.model_path)
    acc = result.accuracy(workload.labels) if samples is None else None
    result.metrics.extra.update({"accuracy": acc, "load_ms": rt.load_ns / 1e6})
    return result
