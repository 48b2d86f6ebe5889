"""Throughput bounds: the bottleneck, the closed loop's asymptotic bounds, and seed 004's two-resource bound.

With ``D_k`` the time station ``k`` needs per job (``service / servers`` for a queue), ``R0`` a
job's latency alone (every service time, no waiting) and ``Z`` the think time (admission under
a cap), a closed loop of ``N`` requests in flight satisfies (Denning and Buzen's operational laws)::

    N / (Z + D_delay + N * sum_q S_q)  <=  X(N)  <=  min(N / (R0 + Z), 1 / max_k D_k)
    R(N) >= max(R0, N / X_max - Z)

The two upper asymptotes cross at ``N* = (R0 + Z) / max_k D_k``: fewer requests in flight leave
the bottleneck idle; more only add queueing (latency). Seed 004's rule of thumb is the
two-resource case: ``1 / max(NPU time, other time)``, with everything that is not NPU compute
(host work and DMA) lumped into one resource.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.analysis.demand import PipelineModel
from lab.errors import ConfigError

__all__ = ["Bounds", "asymptotic_bounds", "bounds", "knee", "seed_bound"]


@dataclass(frozen=True)
class Bounds:
    """The bounds of one model (throughputs in samples/s, times in ms).

    Attributes:
        bound_rps: the bottleneck bound ``1 / max_k D_k`` (times the batch).
        bottleneck: the station that sets it, and ``bottleneck_label`` in words.
        latency_ms: ``R0``, a job's latency alone.
        knee: ``N*``, requests in flight where the asymptotes cross.
        seed_bound_rps: seed 004's ``1 / max(NPU time, other time)``.
        npu_ms: NPU (compute) time per job, per engine in parallel.
        other_ms: everything else per job (host work, DMA, hand-offs), as one resource.
    """

    bound_rps: float
    bottleneck: str
    bottleneck_label: str
    latency_ms: float
    knee: float
    seed_bound_rps: float
    npu_ms: float
    other_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def knee(model: PipelineModel) -> float:
    """``N* = (R0 + Z) / max_k D_k``: the requests in flight at which the bottleneck can first be kept busy."""
    d_max = model.bottleneck.per_job_ns
    return (model.latency_ns + model.admission_ns) / d_max if d_max > 0 else math.inf


def seed_bound(model: PipelineModel) -> tuple[float, float, float]:
    """Seed 004's bound: ``(1 / max(NPU time, other time) in samples/s, NPU ns, other ns)``.

    NPU time is the compute station's time per job (``service / engines``); other time is the
    rest of a job's time (host, DMA, runner), as if one resource did it all.
    """
    if not model.has("compute"):
        raise ConfigError("seed 004's bound needs a device model with a 'compute' station "
                          f"(the simulated NPU), got stations {[s.name for s in model.stations]}")
    npu = model.station("compute").per_job_ns
    other = model.latency_ns - model.station("compute").service_ns
    worst = max(npu, other)
    return (model.batch * 1e9 / worst if worst > 0 else math.inf), npu, other


def bounds(model: PipelineModel) -> Bounds:
    """Every bound of ``model`` in one record."""
    b = model.bottleneck
    try:
        seed, npu, other = seed_bound(model)
    except ConfigError:
        seed, npu, other = math.nan, math.nan, math.nan
    return Bounds(bound_rps=model.bound_rps * model.batch, bottleneck=b.name, bottleneck_label=b.label or b.name,
                  latency_ms=model.latency_ns / 1e6, knee=knee(model), seed_bound_rps=seed, npu_ms=npu / 1e6,
                  other_ms=other / 1e6)


def asymptotic_bounds(model: PipelineModel, populations: Any) -> Any:
    """Upper and lower throughput bounds and the latency lower bound for each population.

    Args:
        model: the model.
        populations: requests in flight (an int or a sequence of ints >= 1).

    Returns:
        A ``pandas.DataFrame`` with ``population``, ``upper_rps``, ``lower_rps`` (samples/s),
        ``latency_lower_ms``, ``bound_rps`` (the bottleneck bound).

    Raises:
        ConfigError: a population below 1.
    """
    import pandas as pd  # lazy

    n = np.atleast_1d(np.asarray(populations, dtype=np.float64))
    if n.size == 0 or np.any(n < 1):
        raise ConfigError(f"populations must be >= 1, got {populations!r}")
    z, r0 = model.admission_ns, model.latency_ns
    x_max = model.bound_rps / 1e9  # jobs per ns
    upper = np.minimum(n / (r0 + z), x_max)
    delay = sum(s.service_ns for s in model.stations if not s.is_queue)
    queues = sum(s.service_ns for s in model.queues)
    lower = n / (z + delay + n * queues)
    lat_lower = np.maximum(r0, n / x_max - z) if x_max > 0 else np.full_like(n, r0)
    return pd.DataFrame({"population": n.astype(int), "upper_rps": upper * 1e9 * model.batch,
                         "lower_rps": lower * 1e9 * model.batch, "latency_lower_ms": lat_lower / 1e6,
                         "bound_rps": model.bound_rps * model.batch})
