"""``run_sweep``: a grid's points on Dask distributed, merged into one table and one report page.

Where the points run:

* by default a ``LocalCluster`` of **one single-threaded worker process** (``workers=1``), so
  the points run one after another and no measurement shares the machine with another;
  ``workers=N`` starts N such processes (faster, but on a machine with few cores concurrent
  measurements disturb each other: the report page says how many ran at once);
* with ``scheduler="tcp://host:8786"`` on an existing cluster. Each worker runs one point at a
  time whatever its thread count (see :mod:`lab.sweep.tasks`); every row says which worker ran
  it and carries that worker's environment. ``lab`` must be installed on the workers, and a
  notebook sweep needs the workers to share the client's file system (they write the outputs).

Outputs in ``output_dir``: ``sweep.csv`` (the merged table), ``sweep.json`` (format
``lab.sweep`` version 1: the spec, every row with its metrics and environment, the workers),
``traces/<point>.trace.json`` for bench points and ``index.html`` (the report page).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, RuntimeUnavailable
from lab.sweep.grid import SweepSpec

__all__ = ["SWEEP_FORMAT", "SWEEP_VERSION", "SweepResult", "run_sweep"]

logger = logging.getLogger(__name__)

#: ``sweep.json`` format history: 1 -- ``{"format", "version", "spec", "created", "cluster", "rows", "workers"}``.
SWEEP_FORMAT = "lab.sweep"
SWEEP_VERSION = 1

#: Row fields kept out of ``sweep.csv`` (nested; they are in ``sweep.json``).
_NESTED = ("metrics", "trace", "environment")


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` produced.

    Attributes:
        spec: The sweep.
        rows: One dict per point, in point order (``ok``, ``error``, parameters, metrics,
            ``worker``, ``started``/``finished``, ``environment``, ...).
        table: The merged table (a ``pandas.DataFrame``; nested fields left out).
        output_dir: Where the files went.
        index_path: The report page.
        cluster: How the points ran: ``{"scheduler", "local", "workers", "threads_per_worker"}``.
    """

    spec: SweepSpec
    rows: tuple[dict[str, Any], ...]
    table: Any
    output_dir: Path
    index_path: Path
    cluster: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when every point ran without an error."""
        return all(r.get("ok") for r in self.rows)


def _require_dask() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise RuntimeUnavailable("sweeps run on Dask distributed: pip install 'dask[distributed]'") from exc
    return distributed


def _point_id(i: int) -> str:
    return f"p{i:03d}"


def run_sweep(
    spec: SweepSpec,
    output_dir: str | os.PathLike[str],
    *,
    scheduler: str | None = None,
    workers: int = 1,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
) -> SweepResult:
    """Run every point of ``spec`` on Dask and write the merged table and report page.

    Args:
        spec: The sweep (see :func:`lab.sweep.load_grid`).
        output_dir: Where ``sweep.csv``, ``sweep.json``, traces and ``index.html`` go.
        scheduler: An existing Dask scheduler's address; None starts a LocalCluster.
        workers: LocalCluster worker processes (one thread each); ignored with ``scheduler``.
        on_row: Called with each row as its point completes (completion order).
        timeout: Seconds one notebook cell may run (notebook sweeps).

    Returns:
        The :class:`SweepResult`.

    Raises:
        ConfigError: ``workers`` < 1, or the scheduler cannot be reached.
        RuntimeUnavailable: Dask distributed is not installed.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    distributed = _require_dask()
    from lab.sweep.tasks import run_bench_point, run_notebook_point

    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    points = spec.expand()
    cluster = None
    started = time.perf_counter()
    if scheduler is None:
        # one thread per worker process: a worker never runs two measurements at once
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        address = cluster.scheduler_address
    else:
        address = scheduler
    try:
        try:
            client = distributed.Client(address, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from exc
        with client:
            info = client.scheduler_info()
            cluster_info = {
                "scheduler": address if scheduler is not None else "LocalCluster",
                "local": scheduler is None,
                "workers": len(info.get("workers", {})),
                "threads": {addr: w.get("nthreads") for addr, w in info.get("workers", {}).items()},
            }
            futures = []
            for i, params in enumerate(points):
                key = f"lab-sweep-{spec.name}-{_point_id(i)}-{os.urandom(4).hex()}"
                if spec.kind == "bench":
                    fut = client.submit(run_bench_point, i, params, trace=spec.traces, key=key, pure=False)
                else:
                    fut = client.submit(run_notebook_point, i, params, notebook=spec.notebook,
                                        output_dir=str(out / "points" / _point_id(i)), timeout=timeout, key=key,
                                        pure=False)
                futures.append(fut)
            rows: list[dict[str, Any]] = []
            for fut in distributed.as_completed(futures):
                row = fut.result()
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    finally:
        if cluster is not None:
            cluster.close()
    rows.sort(key=lambda r: r["point"])
    cluster_info["wall_s"] = time.perf_counter() - started
    cluster_info["max_concurrent"] = _max_concurrent(rows)
    return _write(spec, rows, out, cluster_info)


def _max_concurrent(rows: list[dict[str, Any]]) -> int:
    """The most points that ran at the same time (from their wall-clock intervals)."""
    events = []
    for r in rows:
        events.append((r["started"], 1))
        events.append((r["finished"], -1))
    peak = now = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        now += delta
        peak = max(peak, now)
    return peak


def _write(spec: SweepSpec, rows: list[dict[str, Any]], out: Path, cluster: dict[str, Any]) -> SweepResult:
    import pandas as pd

    from lab.findings import _clean
    from lab.sweep.page import write_sweep_page

    trace_dir = out / "traces"
    for row in rows:
        row["point_id"] = _point_id(row["point"])
        trace = row.pop("trace", None)
        row["trace_path"] = None
        if trace is not None:
            trace_dir.mkdir(exist_ok=True)
            path = trace_dir / f"{row['point_id']}.trace.json"
            path.write_text(json.dumps(_clean(trace)), encoding="utf-8")
            row["trace_path"] = str(path.relative_to(out))
    workers = {r["worker"] or f"pid {r['pid']}": r["environment"] for r in rows}
    flat = [{k: v for k, v in r.items() if k not in _NESTED} for r in rows]
    table = pd.DataFrame(flat)
    first = ["point_id", "ok", *spec.varied()]
    table = table[[*first, *(c for c in table.columns if c not in first and c != "point")]]
    table.to_csv(out / "sweep.csv", index=False)
    doc = {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "cluster": cluster,
        "rows": rows,
        "workers": workers,
    }
    (out / "sweep.json").write_text(json.dumps(_clean(doc), indent=1, allow_nan=False), encoding="utf-8")
    index = write_sweep_page(out, spec=spec, table=table, rows=rows, cluster=cluster, workers=workers)
    return SweepResult(spec=spec, rows=tuple(rows), table=table, output_dir=out, index_path=index, cluster=cluster)
