"""Predictions for a configuration (workers, in-flight cap) from a model, and their error against measurements.

Three methods, side by side:

* ``twin``: the virtual-time twin (:mod:`lab.analysis.twin`) replaying the measured service
  times: the lab's prediction.
* ``mva``: exact mean value analysis (:mod:`lab.analysis.mva`), exact for exponential service;
  pessimistic for a device whose stages take a constant time.
* ``bound``: the optimistic asymptote ``min(N / (R0 + Z), 1 / D_max)`` (:mod:`lab.analysis.bounds`).

Configurations follow the runners: ``workers`` threads and an in-flight cap ``max_inflight``.
With a cap (``run_all`` applies back-pressure) the loop is closed with ``min(workers, cap)``
requests being served and the cap's admission delay as think time; a cap above the worker
count adds ``cap - workers`` requests waiting for a worker, so by Little's law the latency is
``cap / X - Z``. Without a cap (``max_inflight=None``) ``run_all`` submits every request at once:
the same throughput as a closed loop of ``workers``, and a latency that depends on how many
requests there are, so the twin replays that burst (``requests`` of them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.analysis.demand import PipelineModel, what_if
from lab.analysis.mva import mva, open_loop
from lab.analysis.twin import simulate
from lab.errors import ConfigError

__all__ = ["METHODS", "Prediction", "compare", "predict", "predict_sweep", "predict_variants", "relative_error",
           "side_by_side"]

#: Prediction methods.
METHODS = ("twin", "mva", "bound")


@dataclass(frozen=True)
class Prediction:
    """What one method predicts for one configuration (throughput in samples/s, times in ms).

    Attributes:
        method: ``twin``, ``mva`` or ``bound``.
        workers, max_inflight: the configuration.
        throughput_rps: samples per second.
        latency_ms: mean latency (submission to completion).
        p99_ms: 99th percentile latency (twin only; NaN otherwise).
        utilization: per queue station, busy fraction of its servers.
        population: requests being served at once (``min(workers, cap)``).
    """

    method: str
    workers: int
    max_inflight: int | None
    throughput_rps: float
    latency_ms: float
    p99_ms: float = math.nan
    utilization: Mapping[str, float] = field(default_factory=dict)
    population: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (``util_<station>`` keys)."""
        d = {"method": self.method, "workers": self.workers, "max_inflight": self.max_inflight,
             "throughput_rps": self.throughput_rps, "latency_ms": self.latency_ms, "p99_ms": self.p99_ms,
             "population": self.population}
        d.update({f"util_{k}": v for k, v in self.utilization.items()})
        return d


def relative_error(predicted: float, measured: float) -> float:
    """``(predicted - measured) / measured`` (NaN when the measurement is missing or zero)."""
    if not (isinstance(measured, (int, float)) and math.isfinite(measured) and measured != 0):
        return math.nan
    return (predicted - measured) / measured


def _utilization_law(model: PipelineModel, jobs_per_s: float) -> dict[str, float]:
    return {s.name: jobs_per_s * s.service_ns / 1e9 / s.servers for s in model.queues}


def predict(model: PipelineModel, *, workers: int = 1, max_inflight: int | None = None, method: str = "twin",
            requests: int = 4000, service: str = "empirical", seed: int = 0, warmup: int = 0,
            rate_rps: float | None = None) -> Prediction:
    """Predict throughput, latency and utilisation of one configuration.

    Args:
        model: the stations (:func:`~lab.analysis.demand.model_from_run`).
        workers: worker threads (an ``AsyncRuntime``'s ``parallel``).
        max_inflight: the in-flight cap (None: every request submitted at once, see the module docstring).
        method: ``twin``, ``mva`` or ``bound``.
        requests: requests the twin simulates (without a cap: the burst size, as measured).
        service: the twin's service times (``empirical``, ``deterministic``, ``exponential``).
        seed: the twin's seed.
        warmup: leading requests of a burst left out of the latency (as the runners' warm-up).
        rate_rps: an open loop instead: Poisson arrivals at this many requests (jobs) per second
            (``mva`` then means the open-loop estimate of :func:`~lab.analysis.mva.open_loop`).

    Raises:
        ConfigError: unknown method or a bad configuration.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {list(METHODS)}, got {method!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if max_inflight is not None and (isinstance(max_inflight, bool) or not isinstance(max_inflight, int)
                                     or max_inflight < 1):
        raise ConfigError(f"max_inflight must be an integer >= 1 or None, got {max_inflight!r}")
    if rate_rps is not None:
        return _predict_open(model, workers=workers, method=method, rate_rps=rate_rps, requests=requests,
                             service=service, seed=seed)
    capped = max_inflight is not None
    pop = min(workers, max_inflight) if capped else workers
    z = model.admission_ns if capped else 0.0
    b = model.batch
    if method == "twin":
        if capped:
            run = simulate(model, workers=workers, max_inflight=max_inflight, requests=requests, load="closed",
                           service=service, seed=seed, spans=False)
        else:
            run = simulate(model.replace(admission_ns=0.0), workers=workers, requests=requests + warmup,
                           load="burst", service=service, seed=seed, spans=False)
        recs = [r for r in run.records if r.request_id >= warmup]
        lat = [r.latency_ns for r in recs]
        x_jobs = run.metrics.throughput_rps
        lat_sorted = sorted(lat)
        p99 = lat_sorted[min(len(lat_sorted) - 1, int(0.99 * len(lat_sorted)))] / 1e6 if lat else math.nan
        return Prediction("twin", workers, max_inflight, x_jobs * b, (sum(lat) / len(lat)) / 1e6 if lat else math.nan,
                          p99, _utilization_law(model, x_jobs), pop)
    if method == "mva":
        res = mva(model.replace(admission_ns=z), pop)
        x_jobs = float(res.throughput_rps[-1])
        if capped and max_inflight > workers:
            lat = (max_inflight / x_jobs * 1e9 - z) / 1e6  # Little's law over the whole cap
        elif capped:
            lat = float(res.latency_ns[-1]) / 1e6
        else:  # a burst of `requests`: request i completes at about i / X
            lat = ((requests + 1) / 2 / x_jobs * 1e9) / 1e6 if requests > workers else float(res.latency_ns[-1]) / 1e6
        return Prediction("mva", workers, max_inflight, x_jobs * b, lat, math.nan, _utilization_law(model, x_jobs), pop)
    x_max = model.bound_rps
    x_jobs = min(pop / ((model.latency_ns + z) / 1e9), x_max)
    lat = max(model.latency_ns, pop / x_max * 1e9 - z) / 1e6 if math.isfinite(x_max) else model.latency_ns / 1e6
    return Prediction("bound", workers, max_inflight, x_jobs * b, lat, math.nan, _utilization_law(model, x_jobs), pop)


def _predict_open(model: PipelineModel, *, workers: int, method: str, rate_rps: float, requests: int, service: str,
                  seed: int) -> Prediction:
    b = model.batch
    if method == "twin":
        run = simulate(model.replace(admission_ns=0.0), workers=workers, requests=requests, load="poisson",
                       rate_rps=rate_rps, service=service, seed=seed, spans=False)
        lat = sorted(r.latency_ns for r in run.records)
        x_jobs = run.metrics.throughput_rps
        return Prediction("twin", workers, None, x_jobs * b, sum(lat) / len(lat) / 1e6,
                          lat[min(len(lat) - 1, int(0.99 * len(lat)))] / 1e6, _utilization_law(model, x_jobs), workers)
    if method == "mva":
        est = open_loop(model, rate_rps)
        x_jobs = rate_rps if est.stable else model.bound_rps
        return Prediction("mva", workers, None, x_jobs * b, est.latency_ns / 1e6, math.nan,
                          _utilization_law(model, x_jobs), workers)
    x_jobs = min(rate_rps, model.bound_rps)
    return Prediction("bound", workers, None, x_jobs * b, model.latency_ns / 1e6, math.nan,
                      _utilization_law(model, x_jobs), workers)


def predict_sweep(model: PipelineModel, workers: Iterable[int] = range(1, 9), *, cap: str = "workers",
                  methods: Sequence[str] = METHODS, requests: int = 4000, service: str = "empirical", seed: int = 0
                  ) -> Any:
    """Predictions for several worker counts and methods, as a tidy ``pandas.DataFrame``.

    Args:
        model: the model.
        workers: worker counts.
        cap: ``"workers"`` (cap = workers: a closed loop, latency is the service latency) or
            ``"none"`` (every request at once).
        methods: which of :data:`METHODS`.
        requests, service, seed: for the twin.

    Returns:
        One row per (workers, method): ``workers, method, throughput_rps, latency_ms, p99_ms,
        population, util_<station>...``.
    """
    import pandas as pd  # lazy

    if cap not in ("workers", "none"):
        raise ConfigError(f"cap must be 'workers' or 'none', got {cap!r}")
    rows = []
    for w in workers:
        for m in methods:
            p = predict(model, workers=int(w), max_inflight=int(w) if cap == "workers" else None, method=m,
                        requests=requests, service=service, seed=seed)
            rows.append(p.to_dict())
    return pd.DataFrame(rows)


def compare(predicted: Any, measured: Any, *, on: Sequence[str] = ("workers",),
            values: Sequence[str] = ("throughput_rps", "latency_ms")) -> Any:
    """Predicted next to measured, with the relative error of each value, one row per configuration and method.

    Args:
        predicted: tidy predictions (:func:`predict_sweep`), with a ``method`` column.
        measured: measured rows with the ``on`` columns and ``values``.
        on: the configuration columns to join on.
        values: the figures to compare.

    Returns:
        ``on + [method] + for each value: <value>_predicted, <value>_measured, <value>_error``.
    """
    import pandas as pd  # lazy

    on = list(on)
    meas = measured[on + [v for v in values if v in measured.columns]].rename(
        columns={v: f"{v}_measured" for v in values})
    pred = predicted[on + ["method"] + [v for v in values if v in predicted.columns]].rename(
        columns={v: f"{v}_predicted" for v in values})
    out = pd.merge(pred, meas, on=on, how="inner")
    for v in values:
        if f"{v}_predicted" in out and f"{v}_measured" in out:
            out[f"{v}_error"] = (out[f"{v}_predicted"] - out[f"{v}_measured"]) / out[f"{v}_measured"]
    return out


def side_by_side(model: PipelineModel, measured: Any, *, methods: Sequence[str] = ("twin", "mva"),
                 requests: int | None = None, warmup: int = 0, service: str = "empirical", seed: int = 0) -> Any:
    """Every measured configuration with what each method predicted for it, and the errors.

    Args:
        model: the model (from one measured run).
        measured: rows with ``workers`` and ``max_inflight`` (NaN/None: every request at once, as an
            ``AsyncRuntime(parallel=p)`` run), ``throughput_rps``, ``latency_ms`` and optionally
            ``kind``, ``device_util`` (e.g. :func:`lab.analysis.studies.worker_sweep`).
        methods: prediction methods.
        requests: for uncapped rows, the burst size the twin replays (default: 4000).
        warmup, service, seed: for the twin.

    Returns:
        One row per measured configuration: ``config``, ``workers``, ``max_inflight``,
        ``measured_rps``; per method ``<m>_rps``, ``<m>_error``, ``<m>_latency_ms``,
        ``<m>_latency_error``; ``measured_latency_ms``; ``measured_device_util`` and
        ``predicted_device_util`` (utilisation law on the twin's throughput) when the device is modelled.
    """
    import pandas as pd  # lazy

    rows = []
    for _, m in measured.iterrows():
        w = int(m["workers"])
        cap = m.get("max_inflight")
        cap = None if cap is None or (isinstance(cap, float) and math.isnan(cap)) else int(cap)
        kind = m.get("kind", "workers" if cap is not None else "parallel")
        label = f"{kind}={w}" if kind in ("workers", "parallel") else f"{kind}, workers={w}"
        row: dict[str, Any] = {"config": label, "kind": kind, "workers": w, "max_inflight": cap,
                               "measured_rps": float(m["throughput_rps"]),
                               "measured_latency_ms": float(m["latency_ms"])}
        for method in methods:
            p = predict(model, workers=w, max_inflight=cap, method=method, service=service, seed=seed,
                        requests=requests if (requests is not None and cap is None) else 4000, warmup=warmup)
            row[f"{method}_rps"] = p.throughput_rps
            row[f"{method}_error"] = relative_error(p.throughput_rps, row["measured_rps"])
            row[f"{method}_latency_ms"] = p.latency_ms
            row[f"{method}_latency_error"] = relative_error(p.latency_ms, row["measured_latency_ms"])
            if method == methods[0] and "compute" in p.utilization:
                row["predicted_device_util"] = p.utilization["compute"]
        if "device_util" in m:
            row["measured_device_util"] = float(m["device_util"])
        if "littles_law_ok" in m:
            row["littles_law_ok"] = m["littles_law_ok"]
        rows.append(row)
    return pd.DataFrame(rows)


def predict_variants(model: PipelineModel, stages: Any, *, batches: Sequence[int] = (1,),
                     pe_modes: Sequence[Any] = (None,), workers: Sequence[int] = (1,), host_scaling: str = "linear",
                     method: str = "twin", requests: int = 4000) -> Any:
    """Predictions for other batch sizes and PE modes (what-ifs through the simulator's cost model).

    Args:
        model: a device model (measured at ``model.batch``).
        stages: ``(batch, pe_mode) -> stage ns`` (:func:`lab.analysis.advisor.stage_function`).
        batches, pe_modes, workers: the grid (``pe_mode`` None: the model's own).
        host_scaling: how host pre/post scale with the batch (:func:`~lab.analysis.demand.what_if`).

    Returns:
        One row per (batch, pe_mode, workers), cap = workers: ``throughput_rps`` (samples/s),
        ``latency_ms``, ``device_util``, ``engines``.
    """
    import pandas as pd  # lazy

    rows = []
    for b in batches:
        for mode in pe_modes:
            mb = what_if(model, stages(int(b), mode), batch=int(b), host_scaling=host_scaling,
                         label=f"batch {b}, {mode or 'same'} PE")
            for w in workers:
                p = predict(mb, workers=int(w), max_inflight=int(w), method=method, requests=requests)
                rows.append({"batch": int(b), "pe_mode": mode, "workers": int(w), "throughput_rps": p.throughput_rps,
                             "latency_ms": p.latency_ms, "device_util": p.utilization.get("compute", math.nan),
                             "engines": mb.station("compute").servers})
    return pd.DataFrame(rows)
