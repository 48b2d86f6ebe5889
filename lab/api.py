"""``lab.run(config)``: the one call notebooks, the CLI and widgets use to measure a configuration."""

from __future__ import annotations

from typing import Any

from lab.config import Mode, RunConfig
from lab.runners import AsyncRunner, BatchRunner, RunResult, SyncRunner
from lab.runtimes import Runtime, create_runtime
from lab.zoo import Workload, load_workload

__all__ = ["make_runner", "make_sut", "run"]


def make_runner(config: RunConfig, runtime: Runtime, workload: Workload | None = None) -> Any:
    """The runner ``config.mode`` names, over ``runtime``, with ``workload``'s pre/postprocessing."""
    if config.mode is Mode.SYNC:
        return SyncRunner(runtime, workload=workload, profile=config.profile)
    if config.parallel is not None and config.mode is Mode.ASYNC:
        from lab.runners.async_api import AsyncRuntime

        return AsyncRuntime(runtime, parallel=config.parallel, workload=workload, profile=config.profile)
    if config.mode is Mode.BATCH:
        return BatchRunner(runtime, batch_size=config.batch_size, partial=config.partial, workload=workload,
                           profile=config.profile)
    return AsyncRunner(runtime, workers=config.workers, max_inflight=config.max_inflight, workload=workload,
                       profile=config.profile)


def make_sut(config: RunConfig, runtime: Runtime, workload: Workload | None = None) -> Any:
    """The system under test a load generator drives: dynamic batcher, AsyncRuntime or AsyncRunner."""
    from lab.loadgen import DynamicBatcher
    from lab.runners.async_api import AsyncRuntime

    if config.mode is Mode.BATCH:
        return DynamicBatcher(runtime, max_batch=config.batch_size, max_delay_ms=config.max_delay_ms,
                              workload=workload, profile=config.profile)
    if config.parallel is not None:
        return AsyncRuntime(runtime, parallel=config.parallel, workload=workload, profile=config.profile)
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
                                                           **config.runtime_options())
    data = workload.samples if samples is None else samples
    try:
        if config.load is not None:
            from lab.loadgen import run_load

            sut = make_sut(config, rt, workload)
            try:
                result = run_load(sut, data, scenario=config.load, requests=config.requests, warmup=config.warmup,
                                  concurrency=config.concurrency, rate=config.rate, seed=config.seed)
            finally:
                sut.close()
        else:
            runner = make_runner(config, rt, workload)
            try:
                result = runner.run_all(data, warmup=config.warmup, requests=config.requests)
            finally:
                if isinstance(runner, AsyncRunner):
                    runner.close()
    finally:
        if own:
            rt.close()
    result.config.update(config.to_dict())
    result.config["model_path"] = str(workload.model_path)
    acc = result.accuracy(workload.labels) if samples is None else None
    result.metrics.extra.update({"accuracy": acc, "load_ms": rt.load_ns / 1e6})
    return result
