"""The advisor: workers / in-flight cap, batch size and PE mode recommended from predictions, never asserted.

* **Workers** (seed 004, "Worker 수 최적화"): the smallest worker count (and the same in-flight
  cap) whose predicted throughput reaches :data:`TARGET` (95 %) of the best predicted over
  1..``max_workers``, with its latency cost against one worker. More workers past that point
  only queue requests (latency grows, throughput does not) and hold more memory.
* **Batch** (seed 004, small models): per batch size, the throughput (samples/s) and latency at
  its own recommended worker count; for a throughput goal the smallest batch reaching 95 % of
  the best (within a latency budget, if given); for a latency goal the lowest latency (within a
  throughput floor, if given).
* **PE mode** (seed 004, single vs fused PE): latency at one worker and best throughput of each
  mode; a latency goal takes the lower latency, a throughput goal the higher throughput. The
  seed's rule of thumb (fused wins throughput too when a single PE takes more than twice the
  fused time) is computed next to the prediction, and whether they agree is reported.

What-if stage times come from a *stage function* ``(batch, pe_mode) -> stage ns`` such as
:func:`stage_function` for the simulated NPU (its cost model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.analysis.demand import PipelineModel, simulator_stages, what_if
from lab.analysis.predict import predict
from lab.errors import ConfigError

__all__ = [
    "TARGET",
    "BatchAdvice",
    "PeModeAdvice",
    "StageFunction",
    "WorkerAdvice",
    "recommend_batch",
    "recommend_pe_mode",
    "recommend_workers",
    "stage_function",
]

#: A recommendation must reach this fraction of the best predicted throughput.
TARGET = 0.95
#: ``(batch, pe_mode) -> {"quantize", "upload", "compute", "download", "dequantize", "engines"}`` in ns.
StageFunction = Callable[[int, "str | None"], Mapping[str, float]]


def stage_function(runtime: Any = None, *, model_path: str | None = None, preset: Any = None,
                   **overrides: Any) -> StageFunction:
    """The simulated NPU's stage times for any batch and PE mode, from a runtime or a model path and preset.

    Args:
        runtime: a :class:`~lab.runtimes.simnpu.SimNpuRuntime` (its preset with overrides and model cost).
        model_path, preset, overrides: without a runtime, the model file and preset (name or
            :class:`~lab.sim.presets.NpuPreset`) with field overrides.

    Raises:
        ConfigError: neither a simulator runtime nor a model path.
    """
    if runtime is not None:
        if not hasattr(runtime, "cost") or not hasattr(runtime, "preset"):
            raise ConfigError(f"stage_function needs the simulated NPU runtime, got {type(runtime).__name__}")
        from lab.sim.cost import stage_times

        cost, p = runtime.cost, runtime.preset

        def from_runtime(batch: int, pe_mode: str | None) -> Mapping[str, float]:
            mode = runtime.pe_mode if pe_mode is None else pe_mode
            st = stage_times(cost, p, pe_mode=mode, batch=batch)
            return {**st.as_dict(), "engines": p.num_pes if mode == "single" else 1}

        return from_runtime
    if model_path is None:
        raise ConfigError("stage_function needs a simulated NPU runtime or model_path= (and preset=)")

    def from_path(batch: int, pe_mode: str | None) -> Mapping[str, float]:
        return simulator_stages(model_path, preset if preset is not None else "teaching", pe_mode=pe_mode,
                                batch=batch, **overrides)

    return from_path


@dataclass(frozen=True)
class WorkerAdvice:
    """The worker count to use (see the module docstring).

    Attributes:
        workers: the recommendation; run it with ``max_inflight=workers``.
        throughput_rps: its predicted samples/s; ``latency_ms`` its predicted mean latency.
        best_rps, best_workers: the best predicted throughput and where it is reached.
        fraction: ``throughput_rps / best_rps``.
        latency_cost_ms: latency at ``workers`` minus latency at one worker.
        single_rps, single_latency_ms: one worker's predictions.
        method: prediction method; target: the fraction required.
        table: the sweep (``workers, throughput_rps, latency_ms, fraction``).
    """

    workers: int
    throughput_rps: float
    latency_ms: float
    best_rps: float
    best_workers: int
    fraction: float
    latency_cost_ms: float
    single_rps: float
    single_latency_ms: float
    method: str
    target: float
    table: Any = field(repr=False, compare=False, default=None)

    @property
    def max_inflight(self) -> int:
        """The in-flight cap to pair with the workers (one request per worker: no queue in front of them)."""
        return self.workers

    def text(self) -> str:
        """The recommendation in one sentence, with its numbers."""
        return (f"workers={self.workers} (max_inflight={self.max_inflight}): predicted {self.throughput_rps:,.1f} "
                f"samples/s, {self.fraction:.0%} of the best {self.best_rps:,.1f} (at {self.best_workers} workers), "
                f"latency {self.latency_ms:.3f} ms ({self.latency_cost_ms:+.3f} ms vs one worker, "
                f"{self.throughput_rps / self.single_rps:.2f}x its throughput) [{self.method}]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the table left out)."""
        return {"workers": self.workers, "max_inflight": self.max_inflight, "throughput_rps": self.throughput_rps,
                "latency_ms": self.latency_ms, "best_rps": self.best_rps, "best_workers": self.best_workers,
                "fraction": self.fraction, "latency_cost_ms": self.latency_cost_ms, "single_rps": self.single_rps,
                "single_latency_ms": self.single_latency_ms, "method": self.method, "target": self.target}


def _check_target(target: float) -> None:
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise ConfigError(f"target must be a fraction in (0, 1], got {target!r}")


def recommend_workers(model: PipelineModel, *, max_workers: int = 16, target: float = TARGET, method: str = "twin",
                      requests: int = 4000, seed: int = 0) -> WorkerAdvice:
    """The smallest worker count (cap = workers) predicted to reach ``target`` of the best throughput.

    Raises:
        ConfigError: ``max_workers`` < 1 or a bad target/method.
    """
    import pandas as pd  # lazy

    _check_target(target)
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ConfigError(f"max_workers must be an integer >= 1, got {max_workers!r}")
    preds = [predict(model, workers=w, max_inflight=w, method=method, requests=requests, seed=seed)
             for w in range(1, max_workers + 1)]
    best = max(preds, key=lambda p: p.throughput_rps)
    pick = next(p for p in preds if p.throughput_rps >= target * best.throughput_rps)
    table = pd.DataFrame([{"workers": p.workers, "throughput_rps": p.throughput_rps, "latency_ms": p.latency_ms,
                           "fraction": p.throughput_rps / best.throughput_rps} for p in preds])
    return WorkerAdvice(workers=pick.workers, throughput_rps=pick.throughput_rps, latency_ms=pick.latency_ms,
                        best_rps=best.throughput_rps, best_workers=best.workers,
                        fraction=pick.throughput_rps / best.throughput_rps,
                        latency_cost_ms=pick.latency_ms - preds[0].latency_ms, single_rps=preds[0].throughput_rps,
                        single_latency_ms=preds[0].latency_ms, method=method, target=target, table=table)


@dataclass(frozen=True)
class BatchAdvice:
    """The batch size to use for a goal.

    Attributes:
        goal: ``throughput`` or ``latency``.
        batch: the recommendation, with ``workers`` (its own worker recommendation).
        throughput_rps, latency_ms: predicted at that batch and worker count.
        reason: the rule applied, with numbers.
        table: per batch: ``batch, workers, throughput_rps, latency_ms, latency_1_ms, fraction``.
    """

    goal: str
    batch: int
    workers: int
    throughput_rps: float
    latency_ms: float
    reason: str
    table: Any = field(repr=False, compare=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the table left out)."""
        return {"goal": self.goal, "batch": self.batch, "workers": self.workers, "throughput_rps": self.throughput_rps,
                "latency_ms": self.latency_ms, "reason": self.reason}


def _goal(goal: str) -> None:
    if goal not in ("throughput", "latency"):
        raise ConfigError(f"goal must be 'throughput' or 'latency', got {goal!r}")


def recommend_batch(model: PipelineModel, stages: StageFunction, *, batches: Sequence[int] = (1, 2, 4, 8, 16, 32),
                    goal: str = "throughput", max_workers: int = 8, latency_budget_ms: float | None = None,
                    min_rps: float | None = None, target: float = TARGET, method: str = "twin",
                    host_scaling: str = "linear", requests: int = 2000) -> BatchAdvice:
    """Predict every batch size at its own recommended worker count and pick one for ``goal``.

    Args:
        model: a device model measured at some batch (``model.batch``).
        stages: the stage function (:func:`stage_function`).
        batches: candidate batch sizes.
        goal: ``throughput`` (smallest batch within ``target`` of the best, latency within
            ``latency_budget_ms``) or ``latency`` (lowest latency, throughput at least ``min_rps``).
        max_workers, target, method, requests: for :func:`recommend_workers`.
        host_scaling: how host pre/post scale with the batch (:func:`~lab.analysis.demand.what_if`).

    Raises:
        ConfigError: bad goal, no batches, or no batch meets the budget / floor.
    """
    import pandas as pd  # lazy

    _goal(goal)
    _check_target(target)
    if not batches:
        raise ConfigError("batches must name at least one batch size, got none")
    rows = []
    for b in batches:
        mb = what_if(model, stages(int(b), None), batch=int(b), host_scaling=host_scaling, label=f"batch {b}")
        adv = recommend_workers(mb, max_workers=max_workers, target=target, method=method, requests=requests)
        rows.append({"batch": int(b), "workers": adv.workers, "throughput_rps": adv.throughput_rps,
                     "latency_ms": adv.latency_ms, "latency_1_ms": adv.single_latency_ms,
                     "single_rps": adv.single_rps})
    table = pd.DataFrame(rows)
    best = table["throughput_rps"].max()
    table["fraction"] = table["throughput_rps"] / best
    if goal == "throughput":
        ok = table if latency_budget_ms is None else table[table["latency_ms"] <= latency_budget_ms]
        if ok.empty:
            raise ConfigError(f"no batch size meets the latency budget of {latency_budget_ms} ms: the lowest predicted "
                              f"is {table['latency_ms'].min():.3f} ms")
        top = ok["throughput_rps"].max()
        row = ok[ok["throughput_rps"] >= target * top].sort_values("batch").iloc[0]
        budget = f" within {latency_budget_ms} ms" if latency_budget_ms is not None else ""
        reason = (f"smallest batch reaching {target:.0%} of the best throughput{budget} ({top:,.1f} samples/s): "
                  f"batch {int(row.batch)} gives {row.throughput_rps:,.1f} samples/s at {int(row.workers)} workers, "
                  f"{row.throughput_rps / table.loc[table.batch == table.batch.min(), 'throughput_rps'].iloc[0]:.2f}x "
                  f"batch {int(table.batch.min())}, latency {row.latency_ms:.3f} ms")
    else:
        ok = table if min_rps is None else table[table["throughput_rps"] >= min_rps]
        if ok.empty:
            raise ConfigError(f"no batch size reaches {min_rps} samples/s: the highest predicted is {best:,.1f}")
        row = ok.sort_values(["latency_ms", "batch"]).iloc[0]
        floor = f" with at least {min_rps:,.0f} samples/s" if min_rps is not None else ""
        reason = (f"lowest predicted latency{floor}: batch {int(row.batch)} at {int(row.workers)} workers, "
                  f"{row.latency_ms:.3f} ms and {row.throughput_rps:,.1f} samples/s")
    return BatchAdvice(goal=goal, batch=int(row.batch), workers=int(row.workers),
                       throughput_rps=float(row.throughput_rps), latency_ms=float(row.latency_ms), reason=reason,
                       table=table)


@dataclass(frozen=True)
class PeModeAdvice:
    """Single vs fused PE for a goal.

    Attributes:
        goal: ``throughput`` or ``latency``; mode: the recommendation.
        reason: the comparison with numbers.
        compute_ratio: single-PE compute time over fused compute time.
        rule_of_thumb: what seed 004's rule says (``fused`` for latency; for throughput ``single``
            unless ``compute_ratio > 2``); agrees: whether the prediction says the same.
        table: per mode: ``pe_mode, engines, compute_ms, latency_1_ms, workers, throughput_rps, latency_ms``.
    """

    goal: str
    mode: str
    reason: str
    compute_ratio: float
    rule_of_thumb: str
    agrees: bool
    table: Any = field(repr=False, compare=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the table left out)."""
        return {"goal": self.goal, "mode": self.mode, "reason": self.reason, "compute_ratio": self.compute_ratio,
                "rule_of_thumb": self.rule_of_thumb, "agrees": self.agrees}


def recommend_pe_mode(model: PipelineModel, stages: StageFunction, *, goal: str = "latency", max_workers: int = 8,
                      target: float = TARGET, method: str = "twin", requests: int = 2000) -> PeModeAdvice:
    """Predict both PE modes (at the model's batch) and pick one for ``goal``.

    Raises:
        ConfigError: a bad goal, or a model without a compute station.
    """
    import pandas as pd  # lazy

    _goal(goal)
    rows = []
    for mode in ("single", "fused"):
        st = stages(model.batch, mode)
        mm = what_if(model, st, batch=model.batch, label=f"{mode} PE")
        adv = recommend_workers(mm, max_workers=max_workers, target=target, method=method, requests=requests)
        rows.append({"pe_mode": mode, "engines": mm.station("compute").servers, "compute_ms": st["compute"] / 1e6,
                     "latency_1_ms": adv.single_latency_ms, "workers": adv.workers,
                     "throughput_rps": adv.best_rps, "latency_ms": adv.latency_ms})
    table = pd.DataFrame(rows).set_index("pe_mode")
    ratio = float(table.loc["single", "compute_ms"] / table.loc["fused", "compute_ms"])
    if goal == "latency":
        mode = str(table["latency_1_ms"].idxmin())
        rule = "fused"
        reason = (f"one request alone: fused {table.loc['fused', 'latency_1_ms']:.3f} ms vs single "
                  f"{table.loc['single', 'latency_1_ms']:.3f} ms")
    else:
        mode = str(table["throughput_rps"].idxmax())
        rule = "fused" if ratio > 2 else "single"
        reason = (f"best throughput: single {table.loc['single', 'throughput_rps']:,.1f} samples/s "
                  f"({int(table.loc['single', 'engines'])} engines) vs fused "
                  f"{table.loc['fused', 'throughput_rps']:,.1f} (1 engine); single-PE compute is {ratio:.2f}x fused")
    if math.isclose(table.loc["single", "throughput_rps" if goal == "throughput" else "latency_1_ms"],
                    table.loc["fused", "throughput_rps" if goal == "throughput" else "latency_1_ms"], rel_tol=0.01):
        reason += " (within 1 %: either)"
    return PeModeAdvice(goal=goal, mode=mode, reason=reason, compute_ratio=ratio, rule_of_thumb=rule,
                        agrees=mode == rule, table=table.reset_index())
