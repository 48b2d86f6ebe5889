"""What one sweep point runs on a Dask worker, and the row it sends back.

Every task takes its worker's *run lock* first, so a worker runs one measurement at a time
even when it has several threads (an existing cluster's workers usually do): runs on one
worker never overlap and disturb each other. Rows carry the worker's address, its
environment (:func:`lab.env.collect_environment`, run on the worker) and wall-clock times.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["run_bench_point", "run_notebook_point", "worker_info"]

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def worker_info() -> dict[str, Any]:
    """Who is running this task: the Dask worker's address, name and threads, the process and host."""
    info: dict[str, Any] = {"worker": None, "worker_name": None, "worker_threads": None, "pid": os.getpid()}
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):  # not inside a Dask worker (a direct call, a test)
        return info
    info.update({"worker": w.address, "worker_name": str(w.name), "worker_threads": w.state.nthreads})
    return info


def _run_lock(worker: str | None) -> threading.Lock:
    """One lock per worker (per process and worker address, so in-process workers do not share)."""
    key = f"{os.getpid()}:{worker}"
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _flat_metrics(m: Mapping[str, Any]) -> dict[str, Any]:
    lat = m.get("latency_ms", {})
    util = m.get("utilization_by_kind", {})
    return {
        "throughput_rps": m.get("throughput_rps"),
        "p50_ms": lat.get("p50"),
        "p90_ms": lat.get("p90"),
        "p99_ms": lat.get("p99"),
        "mean_ms": lat.get("mean"),
        "first_ms": m.get("first_latency_ms"),
        "device_busy": util.get("device"),
        "host_busy": util.get("host"),
        "overlap": m.get("overlap"),
        "peak_inflight": m.get("peak_inflight"),
        "requests_measured": m.get("requests"),
        "errors": m.get("errors"),
        "accuracy": m.get("accuracy"),
        "load_ms": m.get("load_ms"),
    }


def _wrap(point: int, params: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """Run ``body()`` under the worker's run lock and build the row around what it returns."""
    from lab.env import collect_environment

    who = worker_info()
    queued = time.perf_counter()
    with _run_lock(who["worker"]):
        waited = time.perf_counter() - queued
        started, t0 = _now(), time.perf_counter()
        row: dict[str, Any] = {"point": point, **params}
        try:
            row.update(body())
            row.setdefault("ok", True)
            row.setdefault("error", None)
        except Exception as exc:  # noqa: BLE001 - one failed point must not lose the sweep
            row.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        duration = time.perf_counter() - t0
        finished = _now()
    row.update({**who, "started": started, "finished": finished, "duration_s": duration,
                "lock_wait_s": waited, "environment": collect_environment()})
    return row


def run_bench_point(point: int, params: Mapping[str, Any], *, trace: bool = True) -> dict[str, Any]:
    """``lab.run(RunConfig(**params))`` on this worker; the row holds the config, metrics and (optionally) trace."""

    def body() -> dict[str, Any]:
        from lab.api import run
        from lab.config import RunConfig

        result = run(RunConfig(**params))
        m = result.metrics.to_dict()
        out: dict[str, Any] = {
            "device": result.trace.metadata.get("device"),
            **_flat_metrics(m),
            "ok": result.metrics.errors == 0,
            "error": "; ".join(str(e) for e in result.errors[:3]) or None,
            "metrics": m,
        }
        if trace:
            out["trace"] = result.trace.to_chrome()
        return out

    return _wrap(point, params, body)


def run_notebook_point(point: int, params: Mapping[str, Any], *, notebook: str, output_dir: str,
                       timeout: float | None = None) -> dict[str, Any]:
    """Execute ``notebook`` with papermill and ``params`` into ``output_dir``; the row holds its key findings.

    ``quick`` in ``params`` is passed on as the notebook's ``quick``. Notebook sweeps write
    their outputs to ``output_dir``, so the workers must see the same file system as the client.
    """

    def body() -> dict[str, Any]:
        from lab.findings import load_findings
        from lab.report.index import key_findings
        from lab.report.notebook import execute_notebook

        extra = dict(params)
        quick = bool(extra.pop("quick", False))
        executed = execute_notebook(notebook, output_dir, parameters=extra, quick=quick, timeout=timeout,
                                    figures=False)
        out: dict[str, Any] = {"ok": executed.ok, "error": executed.error,
                               "executed": str(executed.notebook_path),
                               "html": str(executed.html_path) if executed.html_path else None,
                               "findings": str(executed.findings_path) if executed.findings_path else None}
        if executed.findings_path is not None:
            doc = load_findings(executed.findings_path)
            metrics = doc.get("metrics")
            if isinstance(metrics, Mapping):
                # a finding named like a parameter must not hide the parameter's value
                out.update({(f"finding.{k}" if k in params else k): v for k, v in key_findings(metrics)})
            out["device"] = (doc.get("environment") or {}).get("gpu") or "cpu"
        return out

    return _wrap(point, params, body)
