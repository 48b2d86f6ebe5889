"""Measured sweeps for seed 004's runtime questions, each returning a tidy table to set beside the predictions.

Every configuration runs on a fresh runtime (a fresh simulated NPU, so no engine carries a
backlog or clock from the previous one), with the real runners: ``AsyncRunner(workers=N,
max_inflight=N)`` (a closed loop: latency is the service latency), ``AsyncRuntime(parallel=p)``
(RBLN style: every request at once), batches through an ``AsyncRunner`` whose requests each
carry ``b`` samples, and Furiosa-style ``create_async`` queues fed by a producer thread.
Throughputs are samples per second; times are milliseconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lab.errors import ConfigError
from lab.runners import AsyncRunner, RunResult
from lab.runners.async_api import AsyncRuntime, create_async
from lab.runtimes import create_runtime
from lab.zoo import Workload

__all__ = [
    "batch_sweep",
    "batched",
    "bound_lines",
    "headline",
    "join_predictions",
    "littles_line",
    "measured_row",
    "modelled_stages",
    "pe_mode_sweep",
    "pe_utilization",
    "queue_api_run",
    "queue_sweep",
    "run_config",
    "verdicts",
    "worker_lines",
    "worker_sweep",
]


def pe_utilization(result: RunResult) -> float:
    """Busy fraction of the device's compute engines, averaged over engines (capacity used).

    Engines that never ran a job count as idle: their number comes from the simulator's stats
    (``metrics.extra["simulator"]["engines"]``) when present, else from the lanes seen.
    """
    m = result.metrics
    lanes = [k for k in m.utilization if k.split("/", 1)[0] == "device"]
    engines = [k for k in (m.extra.get("simulator") or {}).get("engines", {}) if k.split("/", 1)[0] == "device"]
    n = max(len(engines), len(lanes))
    return float(sum(m.utilization[k] for k in lanes) / n) if n else float("nan")


def measured_row(result: RunResult, *, batch: int = 1, **config: Any) -> dict[str, Any]:
    """One run as a flat row: the configuration, throughput (samples/s), latency, device use, checks.

    ``device_util`` is the compute engines' average busy fraction (:func:`pe_utilization`, what the
    utilisation law ``X S / engines`` predicts); ``device_busy`` the fraction of time any engine was busy.
    """
    m = result.metrics
    lat = m.latency_ns
    little = m.extra.get("littles_law", {})
    sim = m.extra.get("simulator", {})
    return {**config, "batch": batch, "throughput_rps": m.throughput_rps * batch, "latency_ms": lat["mean"] / 1e6,
            "p50_ms": lat["p50"] / 1e6, "p99_ms": lat["p99"] / 1e6, "device_util": pe_utilization(result),
            "device_busy": m.utilization_by_kind.get("device", np.nan), "overlap": m.overlap,
            "peak_inflight": m.peak_inflight, "errors": m.errors, "littles_law_ok": little.get("ok"),
            "host_kept_up": sim.get("host_kept_up")}


def batched(workload: Workload, batch: int, *, samples: int | None = None) -> tuple[np.ndarray, Callable[..., Any]]:
    """``workload``'s raw samples grouped ``batch`` per request, and the preprocessing that unpacks them.

    Returns:
        ``(groups, preprocess)``: ``groups[i]`` holds ``batch`` raw samples; ``preprocess`` turns the
        runner's ``(1, batch, ...)`` request into the model's ``(batch, ...)`` input.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    raw = workload.samples
    n = len(raw) if samples is None else samples
    count = max(1, n // batch)
    idx = np.arange(count * batch) % len(raw)
    groups = raw[idx].reshape((count, batch) + raw.shape[1:])
    base = workload.preprocess

    def preprocess(x: np.ndarray) -> Any:
        return base(x.reshape((-1,) + x.shape[2:]))

    return groups, preprocess


def run_config(workload: Workload, *, runtime: str = "simnpu", workers: int = 1, max_inflight: int | None = None,
               parallel: int | None = None, batch: int = 1, requests: int = 200, warmup: int = 8,
               runtime_options: Mapping[str, Any] | None = None) -> RunResult:
    """One measured run on a fresh runtime; ``metrics.extra`` gains the simulator's stats (``simulator``).

    Args:
        workload: model and samples.
        runtime: runtime name.
        workers, max_inflight: an ``AsyncRunner`` (ignored when ``parallel`` is set).
        parallel: 1 or 2 for an RBLN-style ``AsyncRuntime`` (every request submitted at once).
        batch: samples per request (``batch`` raw samples are grouped and unpacked by the preprocessing).
        requests, warmup: measured and warm-up requests (each of ``batch`` samples).
        runtime_options: e.g. ``preset``, ``pe_mode`` for the simulator. On other runtimes without
            ``threads``, the cores are split between the requests in flight (as :func:`lab.run` does).
    """
    opts = dict(runtime_options or {})
    if runtime != "simnpu" and "threads" not in opts:
        # as lab.run does: split the cores between the requests in flight instead of oversubscribing
        concurrent = parallel if parallel is not None else min(workers, max_inflight or workers)
        if concurrent > 1:
            opts["threads"] = max(1, (os.cpu_count() or 1) // concurrent)
    rt = create_runtime(runtime, workload.model_path, **opts)
    try:
        samples: Any = workload.samples
        pre = None
        if batch > 1:
            samples, pre = batched(workload, batch)
        if parallel is not None:
            runner: AsyncRunner = AsyncRuntime(rt, parallel=parallel, workload=workload, preprocess=pre)
        else:
            runner = AsyncRunner(rt, workers=workers, max_inflight=max_inflight, workload=workload, preprocess=pre)
        with runner:
            result = runner.run_all(samples, warmup=warmup, requests=requests)
        if hasattr(rt, "stats"):
            result.metrics.extra["simulator"] = rt.stats()
        result.config.update({"runtime": runtime, **opts, "batch": batch})
        return result
    finally:
        rt.close()


def _progress(items: list[Any], progress: bool, desc: str) -> Iterable[Any]:
    if not progress:
        return items
    from tqdm.auto import tqdm  # lazy

    return tqdm(items, desc=desc, leave=False)


def worker_sweep(workload: Workload, *, workers: Iterable[int] = range(1, 9), parallels: Iterable[int] = (1, 2),
                 requests: int = 200, warmup: int = 8, runtime: str = "simnpu",
                 runtime_options: Mapping[str, Any] | None = None, progress: bool = True
                 ) -> tuple[Any, dict[str, RunResult]]:
    """Measure ``AsyncRunner(workers=N, max_inflight=N)`` for each N and ``AsyncRuntime(parallel=p)`` for each p.

    Returns:
        ``(table, results)``: one :func:`measured_row` per configuration with ``kind`` (``workers``
        or ``parallel``), ``workers`` and ``max_inflight``; results keyed ``"workers=N"`` / ``"parallel=p"``.
    """
    import pandas as pd  # lazy

    configs = [("workers", int(w)) for w in workers] + [("parallel", int(p)) for p in parallels]
    rows, results = [], {}
    for kind, n in _progress(configs, progress, "worker sweep"):
        if kind == "workers":
            res = run_config(workload, runtime=runtime, workers=n, max_inflight=n, requests=requests, warmup=warmup,
                             runtime_options=runtime_options)
            rows.append(measured_row(res, kind=kind, workers=n, max_inflight=n))
        else:
            res = run_config(workload, runtime=runtime, parallel=n, requests=requests, warmup=warmup,
                             runtime_options=runtime_options)
            rows.append(measured_row(res, kind=kind, workers=n, max_inflight=None))
        results[f"{kind}={n}"] = res
    return pd.DataFrame(rows), results


def batch_sweep(workload: Workload, *, batches: Sequence[int] = (1, 2, 4, 8, 16), workers: int = 1,
                samples: int = 400, warmup: int = 2, runtime: str = "simnpu",
                runtime_options: Mapping[str, Any] | None = None, progress: bool = True
                ) -> tuple[Any, dict[str, RunResult]]:
    """Measure each batch size with ``workers`` workers (cap = workers) on about ``samples`` samples.

    Returns:
        ``(table, results)``: rows as :func:`measured_row` with ``batch`` and ``workers``; results keyed ``"batch=b"``.
    """
    import pandas as pd  # lazy

    rows, results = [], {}
    for b in _progress([int(b) for b in batches], progress, "batch sweep"):
        requests = max(20, samples // b)
        res = run_config(workload, runtime=runtime, workers=workers, max_inflight=workers, batch=b, requests=requests,
                         warmup=warmup, runtime_options=runtime_options)
        rows.append(measured_row(res, batch=b, workers=workers, max_inflight=workers))
        results[f"batch={b}"] = res
    return pd.DataFrame(rows), results


def pe_mode_sweep(workload: Workload, *, workers: Iterable[int] = (1, 4), requests: int = 200, warmup: int = 8,
                  runtime_options: Mapping[str, Any] | None = None, progress: bool = True
                  ) -> tuple[Any, dict[str, RunResult]]:
    """Measure the simulated NPU in single and fused PE mode at each worker count (cap = workers).

    Returns:
        ``(table, results)``: rows with ``pe_mode`` and ``workers``; results keyed ``"single/workers=N"``.
    """
    import pandas as pd  # lazy

    opts = dict(runtime_options or {})
    configs = [(mode, int(w)) for mode in ("single", "fused") for w in workers]
    rows, results = [], {}
    for mode, w in _progress(configs, progress, "PE modes"):
        res = run_config(workload, runtime="simnpu", workers=w, max_inflight=w, requests=requests, warmup=warmup,
                         runtime_options={**opts, "pe_mode": mode})
        rows.append(measured_row(res, pe_mode=mode, workers=w, max_inflight=w))
        results[f"{mode}/workers={w}"] = res
    return pd.DataFrame(rows), results


def queue_api_run(workload: Workload, *, workers: int = 2, input_queue_size: int = 4, output_queue_size: int = 64,
                  requests: int = 200, runtime: str = "simnpu", runtime_options: Mapping[str, Any] | None = None,
                  timeout_s: float = 60.0) -> tuple[RunResult, dict[str, Any]]:
    """Furiosa-style queues under a producer that submits as fast as the bounded input queue lets it.

    A producer thread calls ``submitter.submit(x, context=i)`` for every request (it blocks while
    the input queue is full), then closes the submitter; this thread receives every result with
    ``queue.recv(timeout)``. Latency runs from the start of each ``submit`` call.

    Returns:
        ``(result, facts)``: the :class:`~lab.runners.RunResult` from ``queue.collect()``; facts:
        ``received`` (contexts in completion order are checked against the submitted ones),
        ``blocked_ms`` (total time the producer spent blocked in ``submit``), ``max_blocked_ms``,
        ``in_order`` (whether results came back in submission order).

    Raises:
        RequestTimeout: a result did not come within ``timeout_s``.
    """
    rt = create_runtime(runtime, workload.model_path, **dict(runtime_options or {}))
    blocked: list[int] = []
    failure: list[BaseException] = []
    try:
        submitter, queue = create_async(rt, workers=workers, input_queue_size=input_queue_size,
                                        output_queue_size=output_queue_size, workload=workload)
        samples = workload.samples

        def produce() -> None:
            try:
                for i in range(requests):
                    t0 = time.perf_counter_ns()
                    submitter.submit(samples[i % len(samples)][None], context=i)
                    blocked.append(time.perf_counter_ns() - t0)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
            finally:
                submitter.close()

        producer = threading.Thread(target=produce, name="lab-queue-producer", daemon=True)
        producer.start()
        contexts = [queue.recv(timeout_s)[0] for _ in range(requests)]
        producer.join()
        if failure:
            raise failure[0]
        result = queue.collect()
        result.config.update({"runtime": runtime, **dict(runtime_options or {})})
        if hasattr(rt, "stats"):
            result.metrics.extra["simulator"] = rt.stats()
    finally:
        rt.close()
    facts = {"received": len(contexts), "all_received": sorted(contexts) == list(range(requests)),
             "in_order": contexts == sorted(contexts), "blocked_ms": sum(blocked) / 1e6,
             "max_blocked_ms": max(blocked, default=0) / 1e6, "workers": workers,
             "input_queue_size": input_queue_size}
    return result, facts


# -- the notebook's tables and sentences (computed from the data, never asserted) -------------------

def modelled_stages(describe: Mapping[str, Any]) -> Any:
    """The simulator's modelled stage times (ms) from ``SimNpuRuntime.describe()``, one row per stage."""
    import pandas as pd  # lazy

    st = describe.get("stages_ns", {})
    return pd.DataFrame([{"stage": k, "modelled_ms": v / 1e6} for k, v in st.items()]).set_index("stage")


def littles_line(result: RunResult) -> str:
    """Little's law on a run in one line."""
    c = result.metrics.extra.get("littles_law") or {}
    if c.get("ok") is None:
        return str(c.get("warning", "not checked"))
    verdict = "holds" if c["ok"] else "FAILS"
    return (f"{c['inflight_mean']:.2f} requests in flight on average; throughput x mean latency = "
            f"{c['throughput_x_latency']:.2f} ({c['relative_error']:+.1%}): {verdict} "
            f"(tolerance {c['tolerance']:.0%})")


def bound_lines(b: Any, reference: RunResult, model: Any) -> list[str]:
    """The bound, seed 004's bound, the reference run against them, and why it falls short."""
    from lab.analysis.idle import idle_attribution, idle_summary

    x = reference.metrics.throughput_rps
    util = pe_utilization(reference)
    bott = model.bottleneck
    lines = [f"bottleneck: {bott.label or bott.name}, {bott.service_ns / 1e6:.3f} ms per request on each of "
             f"{bott.servers} server(s) -> at most {b.bound_rps:,.1f} requests/s",
             f"seed 004's bound 1 / max(NPU {b.npu_ms:.3f} ms, other {b.other_ms:.3f} ms) = {b.seed_bound_rps:,.1f}/s: "
             + ("other time dominates: it is what a single stream of host+DMA work could sustain"
                if b.other_ms > b.npu_ms else "NPU time dominates"),
             f"the reference run ({reference.config.get('workers')} workers) reached {x:,.1f}/s = "
             f"{x / b.bound_rps:.0%} of the bound; NPU utilisation {util:.0%} (PEs' average busy fraction)",
             f"knee: {b.knee:.1f} requests in flight are needed to keep the bottleneck busy (R0 = "
             f"{b.latency_ms:.3f} ms for one request alone)"]
    summ = idle_summary(idle_attribution(reference))
    causes = sorted(((k, v) for k, v in summ.items() if k != "busy"), key=lambda kv: -kv[1])
    top = ", ".join(f"{k} {v:.0%}" for k, v in causes[:3] if v > 0)
    lines.append(f"the PEs were busy {summ['busy']:.0%} of the time; idle because: {top}")
    return lines


def worker_lines(advice: Any, side: Any, b: Any) -> list[str]:
    """The advisor's pick against the measured sweep, and the prediction's accuracy."""
    rows = side[side["kind"] == "workers"].set_index("workers")
    lines = []
    if advice.workers in rows.index:
        m = rows.loc[advice.workers]
        best_w = int(rows["measured_rps"].idxmax())
        top = rows.measured_rps.max()
        lines.append(f"measured at {advice.workers} workers: {m.measured_rps:,.1f}/s (predicted "
                     f"{advice.throughput_rps:,.1f}, {m.twin_error:+.1%}); measured best {top:,.1f}/s "
                     f"at {best_w} workers: the pick reaches {m.measured_rps / top:.0%} of it")
    err = side["twin_error"].abs()
    lines.append(f"twin: largest |error| over the sweep {err.max():.1%} ({side.loc[err.idxmax(), 'config']}), median "
                 f"{err.median():.1%}; MVA: largest {side['mva_error'].abs().max():.1%}")
    lines.append(f"seed 004's estimate of the worker count from the CPU:NPU time ratio: knee {b.knee:.1f} -> "
                 f"{int(-(-b.knee // 1))} workers")
    return lines


def queue_sweep(workload: Workload, model: Any, *, workers: int = 2, queue_sizes: Sequence[int] = (1, 4, 16),
                requests: int = 200, runtime_options: Mapping[str, Any] | None = None
                ) -> tuple[Any, dict[str, RunResult]]:
    """``create_async`` with each input queue size, measured (:func:`queue_api_run`) beside the twin's prediction.

    Returns:
        ``(table, results)``: per queue size: measured and predicted throughput and mean latency,
        the latency Little's law gives for a full queue ``(workers + queue + 1) / X``, peak
        requests in flight (measured) and its bound ``workers + queue + 1``, producer blocked time.
    """
    import pandas as pd  # lazy

    from lab.analysis.predict import relative_error
    from lab.analysis.twin import simulate

    rows, results = [], {}
    for q in queue_sizes:
        res, facts = queue_api_run(workload, workers=workers, input_queue_size=int(q), requests=requests,
                                   runtime_options=runtime_options)
        twin = simulate(model, workers=workers, requests=requests, load="burst", queue_size=int(q), spans=False)
        m = res.metrics
        x = m.throughput_rps
        rows.append({"queue_size": int(q), "workers": workers, "measured_rps": x, "twin_rps": twin.throughput_rps,
                     "rps_error": relative_error(twin.throughput_rps, x),
                     "measured_latency_ms": m.latency_ns["mean"] / 1e6,
                     "twin_latency_ms": twin.metrics.latency_ns["mean"] / 1e6,
                     "latency_error": relative_error(twin.metrics.latency_ns["mean"], m.latency_ns["mean"]),
                     "littles_latency_ms": (workers + q + 1) / x * 1e3, "peak_inflight": m.peak_inflight,
                     "inflight_bound": workers + int(q) + 1, "blocked_ms": facts["blocked_ms"],
                     "all_received": facts["all_received"], "littles_law_ok": m.extra["littles_law"]["ok"]})
        results[f"queue={q}"] = res
    return pd.DataFrame(rows), results


def join_predictions(predicted: Any, measured: Any, *, on: Sequence[str]) -> Any:
    """Predicted (:func:`~lab.analysis.predict.predict_variants`) beside measured rows, with relative errors."""
    import pandas as pd  # lazy

    on = list(on)
    p = predicted[on + ["throughput_rps", "latency_ms", "device_util"]].rename(
        columns={"throughput_rps": "predicted_rps", "latency_ms": "predicted_latency_ms",
                 "device_util": "predicted_device_util"})
    m = measured[on + ["throughput_rps", "latency_ms", "p50_ms", "device_util"]].rename(
        columns={"throughput_rps": "measured_rps", "latency_ms": "measured_latency_ms", "p50_ms": "measured_p50_ms",
                 "device_util": "measured_device_util"})
    out = pd.merge(m, p, on=on, how="left")
    out["rps_error"] = (out["predicted_rps"] - out["measured_rps"]) / out["measured_rps"]
    out["latency_error"] = (out["predicted_latency_ms"] - out["measured_latency_ms"]) / out["measured_latency_ms"]
    return out


def verdicts(*, side: Any, advice: Any, bounds: Any, queue: Any, batch: Any, batch_advice: Mapping[str, Any],
             pe: Any, pe_advice: Mapping[str, Any]) -> list[str]:
    """One sentence per lesson, each computed from the measured and predicted tables."""
    w = side[side["kind"] == "workers"].set_index("workers")
    one, best = w.iloc[0], w.loc[w["measured_rps"].idxmax()]
    out = [f"throughput vs latency: 1 worker {one.measured_rps:,.1f}/s at {one.measured_latency_ms:.3f} ms; "
           f"{int(best.name)} workers {best.measured_rps:,.1f}/s ({best.measured_rps / one.measured_rps:.1f}x) at "
           f"{best.measured_latency_ms:.3f} ms ({best.measured_latency_ms / one.measured_latency_ms:.2f}x latency)"]
    err = side["twin_error"].abs()
    within = "within" if err.max() <= 0.10 else "NOT within"
    out.append(f"prediction from one run: the twin is {within} 10 % of every measured configuration (largest "
               f"{err.max():.1%}); exact MVA, assuming exponential service, is off by up to "
               f"{side['mva_error'].abs().max():.1%} because the simulator's stages take constant times")
    out.append(f"workers: the advisor picks {advice.workers} ({advice.fraction:.0%} of the best predicted, "
               f"{advice.latency_cost_ms:+.3f} ms latency); the bound is {bounds.bound_rps:,.1f}/s, the measured best "
               f"{best.measured_rps / bounds.bound_rps:.0%} of it")
    q = queue.set_index("queue_size")
    bounded = bool((q["peak_inflight"] <= q["inflight_bound"]).all())
    out.append(f"queue API: peak in flight {'stayed within' if bounded else 'EXCEEDED'} workers + queue + 1 for every "
               f"queue size; latency grows with the queue ({q.measured_latency_ms.iloc[0]:.2f} -> "
               f"{q.measured_latency_ms.iloc[-1]:.2f} ms) while throughput stays "
               f"{q.measured_rps.min():,.0f}-{q.measured_rps.max():,.0f}/s, as Little's law predicts")
    b = batch.set_index("batch")
    lo, hi = b.index.min(), b.index.max()
    out.append(f"batch: {hi} samples per request give {b.loc[hi, 'measured_rps'] / b.loc[lo, 'measured_rps']:.2f}x the "
               f"samples/s of {lo} at {b.loc[hi, 'measured_latency_ms'] / b.loc[lo, 'measured_latency_ms']:.1f}x the "
               f"latency; for throughput the advisor picks batch {batch_advice['throughput'].batch}, for latency batch "
               f"{batch_advice['latency'].batch}")
    p = pe.set_index(["pe_mode", "workers"])
    w1, wn = pe["workers"].min(), pe["workers"].max()
    lat = {m: p.loc[(m, w1), "measured_p50_ms"] for m in ("single", "fused")}
    thr = {m: p.loc[(m, wn), "measured_rps"] for m in ("single", "fused")}
    lat_win, thr_win = min(lat, key=lat.get), max(thr, key=thr.get)
    out.append(f"PE mode: measured, {lat_win} has the lower median latency at {w1} worker(s) ({lat['fused']:.3f} vs "
               f"{lat['single']:.3f} ms fused vs single) and {thr_win} the higher throughput at {wn} workers "
               f"({thr['single']:,.1f} vs {thr['fused']:,.1f}/s single vs fused); the advisor said "
               f"{pe_advice['latency'].mode} for latency and {pe_advice['throughput'].mode} for throughput")
    return out


def headline(*, side: Any, advice: Any, bounds: Any, reference: RunResult, twin: Any, queue: Any, batch: Any,
             batch_advice: Mapping[str, Any], pe: Any, pe_advice: Mapping[str, Any]) -> dict[str, Any]:
    """Flat name -> scalar figures for the findings' ``headline``."""
    w = side[side["kind"] == "workers"].set_index("workers")
    par = side[side["kind"] == "parallel"].set_index("workers")
    out: dict[str, Any] = {
        "reference_rps": reference.metrics.throughput_rps,
        "bound_rps": bounds.bound_rps,
        "seed_bound_rps": bounds.seed_bound_rps,
        "knee": bounds.knee,
        "recommended_workers": advice.workers,
        "recommended_predicted_rps": advice.throughput_rps,
        "recommended_measured_rps": float(w.loc[advice.workers, "measured_rps"]) if advice.workers in w.index
        else float("nan"),
        "best_measured_rps": float(w["measured_rps"].max()),
        "max_abs_twin_error": float(side["twin_error"].abs().max()),
        "median_abs_twin_error": float(side["twin_error"].abs().median()),
        "max_abs_mva_error": float(side["mva_error"].abs().max()),
        "twin_seconds": twin.wall_s,
        "twin_requests": len(twin.records),
        "batch_throughput_goal": batch_advice["throughput"].batch,
        "batch_latency_goal": batch_advice["latency"].batch,
        "pe_mode_latency_goal": pe_advice["latency"].mode,
        "pe_mode_throughput_goal": pe_advice["throughput"].mode,
        "max_abs_batch_error": float(batch["rps_error"].abs().max()),
        "max_abs_pe_error": float(pe["rps_error"].abs().max()),
        "max_abs_queue_error": float(queue["rps_error"].abs().max()),
    }
    for n, row in w.iterrows():
        out[f"workers{n}_measured_rps"] = float(row.measured_rps)
        out[f"workers{n}_predicted_rps"] = float(row.twin_rps)
        out[f"workers{n}_error"] = float(row.twin_error)
    for n, row in par.iterrows():
        out[f"parallel{n}_measured_rps"] = float(row.measured_rps)
        out[f"parallel{n}_predicted_rps"] = float(row.twin_rps)
        out[f"parallel{n}_error"] = float(row.twin_error)
    return out
