"""The command line's analysis: ``lab bench``'s predicted fields and ``python -m lab advise``.

``bench`` adds ``bound_rps`` (the bottleneck bound), ``predicted_rps`` (the virtual-time twin's
throughput for the run's own configuration, from the stage times the run measured) and
``prediction_error`` (``(predicted - measured) / measured``): a model that explains its own
run has a small error; a large one says something is not modelled (the GIL, intra-op threads
competing for cores on a CPU runtime).

``advise`` measures one reference run (an ``AsyncRunner`` with ``--workers`` workers and the same
cap), derives the stage times, and prints the bounds and the recommendations: workers / in-flight
cap, and on the simulated NPU (its cost model gives the what-ifs) batch size and PE mode for the
``--goal``. With ``--verify`` it measures the recommended worker count and prints the error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

__all__ = ["add_advise_parser", "bench_prediction", "run_advise"]


def bench_prediction(result: Any, config: Any) -> dict[str, Any]:
    """``bound_rps``, ``predicted_rps``, ``prediction_error`` and how they were made, for a ``lab bench`` run.

    Args:
        result: the measured :class:`~lab.runners.RunResult`.
        config: its :class:`~lab.config.RunConfig`.

    Returns:
        The three fields (None when the run cannot be modelled: no spans, dynamic batching) and
        ``prediction`` (method, the model's stations, or why there is no prediction).
    """
    from lab.analysis.demand import model_from_run
    from lab.analysis.predict import predict, relative_error

    out: dict[str, Any] = {"bound_rps": None, "predicted_rps": None, "prediction_error": None}
    mode = getattr(config.mode, "value", config.mode)
    if mode == "batch" and config.load is not None:
        out["prediction"] = {"note": "not modelled: dynamic batching (batch mode under a load generator)"}
        return out
    try:
        model = model_from_run(result)
    except ConfigError as exc:
        out["prediction"] = {"note": f"not modelled: {exc}"}
        return out
    kwargs: dict[str, Any] = {"requests": 4000}
    if mode in ("sync", "batch") or config.load == "single":
        kwargs.update(workers=1, max_inflight=1)
    elif config.load == "closed":
        kwargs.update(workers=config.workers if config.parallel is None else config.parallel,
                      max_inflight=config.concurrency)
    elif config.load == "poisson":
        # the same seeded schedule as the measured run (its realised rate, not only the nominal one)
        kwargs.update(workers=config.workers if config.parallel is None else config.parallel,
                      rate_rps=float(config.rate), requests=config.requests, seed=config.seed)
    else:
        workers = config.parallel if config.parallel is not None else config.workers
        cap = None if config.load == "offline" else config.max_inflight
        kwargs.update(workers=workers, max_inflight=cap)
        if cap is None:
            kwargs.update(requests=config.requests, warmup=config.warmup)
    pred = predict(model, method="twin", **kwargs)
    measured = result.metrics.throughput_rps
    out.update({"bound_rps": model.bound_rps * model.batch, "predicted_rps": pred.throughput_rps,
                "prediction_error": relative_error(pred.throughput_rps, measured),
                "prediction": {"method": "virtual-time twin (lab.analysis.twin) on the run's own stage times",
                               "workers": pred.workers, "max_inflight": pred.max_inflight,
                               "predicted_latency_ms": pred.latency_ms, "model": model.to_dict()}})
    return out


def add_advise_parser(sub: Any, positive: Any, nonnegative: Any) -> argparse.ArgumentParser:
    """Add the ``advise`` subcommand to ``sub`` (the CLI's own argument types: ``positive(name)``
    builds an integer >= 1 type, ``nonnegative`` parses an integer >= 0)."""
    a = sub.add_parser("advise", help="measure one run, predict other configurations, recommend one")
    a.add_argument("--model", default="digits", help="workload name (e.g. digits)")
    a.add_argument("--runtime", default="simnpu", help="runtime name: simnpu (the simulated NPU), onnx, ...")
    a.add_argument("--preset", default=None, help="simulated NPU preset: teaching, warboy, atom")
    a.add_argument("--pe-mode", choices=["single", "fused"], default=None, help="simulated NPU PE mode")
    a.add_argument("--workers", type=positive("workers"), default=2, help="workers of the measured reference run")
    a.add_argument("--requests", type=positive("requests"), default=200, help="requests of the reference run")
    a.add_argument("--warmup", type=nonnegative, default=8)
    a.add_argument("--goal", choices=["throughput", "latency"], default="throughput")
    a.add_argument("--max-workers", type=positive("max-workers"), default=8)
    a.add_argument("--batches", default="1,2,4,8,16", help="batch sizes to consider (simulated NPU)")
    a.add_argument("--latency-budget-ms", type=float, default=None, help="throughput goal: keep latency under this")
    a.add_argument("--method", choices=["twin", "mva"], default="twin", help="prediction method")
    a.add_argument("--verify", action="store_true", help="measure the recommended worker count and print the error")
    a.add_argument("--json", dest="json_path", help="write everything as JSON here")
    return a


def _batches(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--batches must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"--batches must name integers >= 1, got {text!r}")
    return values


def _measure(args: argparse.Namespace, workers: int, workload: Any) -> Any:
    from lab.api import run
    from lab.config import RunConfig

    cfg = RunConfig(model=args.model, runtime=args.runtime, mode="async", workers=workers, max_inflight=workers,
                    requests=args.requests, warmup=args.warmup, preset=args.preset, pe_mode=args.pe_mode)
    return run(cfg, workload=workload)


def run_advise(args: argparse.Namespace) -> int:
    """Run ``advise`` (see the module docstring); returns the exit status."""
    from lab.analysis.advisor import recommend_batch, recommend_pe_mode, recommend_workers, stage_function
    from lab.analysis.bounds import bounds
    from lab.analysis.demand import model_from_run
    from lab.analysis.predict import predict, relative_error
    from lab.zoo import load_workload

    batches = _batches(args.batches)
    workload = load_workload(args.model)
    ref = _measure(args, args.workers, workload)
    m = ref.metrics
    device = ref.trace.metadata.get("device", "")
    if "simulat" in device.lower():
        print(f"device: {device} -- a simulator: modelled times, not a real NPU")
    else:
        print(f"device: {device}")
    print(f"measured reference: {args.workers} workers (max_inflight={args.workers}), {m.requests} requests: "
          f"{m.throughput_rps:,.1f} samples/s, mean latency {m.latency_ns['mean'] / 1e6:.3f} ms")
    model = model_from_run(ref)
    stations = " | ".join(f"{s.name} {s.service_ns / 1e6:.3f} ms" + (f" x{s.servers}" if s.is_queue else "")
                          for s in model.stations)
    print(f"stage times per request (xN: servers): {stations}")
    b = bounds(model)
    seed = f"; seed 004's 1/max(NPU, other) = {b.seed_bound_rps:,.1f}" if math.isfinite(b.seed_bound_rps) else ""
    print(f"bounds: {b.bottleneck} ({b.bottleneck_label}) limits throughput to {b.bound_rps:,.1f} samples/s; "
          f"knee at {b.knee:.1f} requests in flight{seed}")
    own = predict(model, workers=args.workers, max_inflight=args.workers, method=args.method)
    own_err = relative_error(own.throughput_rps, m.throughput_rps)
    print(f"the reference run predicted back: {own.throughput_rps:,.1f} samples/s ({own_err:+.1%})")
    adv = recommend_workers(model, max_workers=args.max_workers, method=args.method)
    print(f"recommend: {adv.text()}")
    doc: dict[str, Any] = {"device": device, "reference": {"workers": args.workers, **m.to_dict()},
                           "model": model.to_dict(), "bounds": b.to_dict(),
                           "reference_prediction": own.to_dict(), "reference_error": own_err,
                           "workers": adv.to_dict(), "goal": args.goal}
    if model.has("compute") and args.runtime == "simnpu":
        from lab.runtimes import create_runtime

        opts = {k: v for k, v in (("preset", args.preset), ("pe_mode", args.pe_mode)) if v is not None}
        with create_runtime("simnpu", workload.model_path, mode="timing", **opts) as rt:
            stages = stage_function(rt)
            try:
                ba = recommend_batch(model, stages, batches=batches, goal=args.goal, max_workers=args.max_workers,
                                     latency_budget_ms=args.latency_budget_ms, method=args.method)
                print(f"recommend batch ({args.goal}): batch {ba.batch} at {ba.workers} workers: {ba.reason}")
                doc["batch"] = ba.to_dict()
            except ConfigError as exc:
                print(f"recommend batch ({args.goal}): none: {exc}")
                doc["batch"] = {"error": str(exc)}
            pe = recommend_pe_mode(model, stages, goal=args.goal, max_workers=args.max_workers, method=args.method)
            agree = "agrees" if pe.agrees else "disagrees"
            print(f"recommend PE mode ({args.goal}): {pe.mode}: {pe.reason}; seed 004's rule of thumb says "
                  f"{pe.rule_of_thumb} ({agree})")
            doc["pe_mode"] = pe.to_dict()
    else:
        print("batch and PE-mode what-ifs need the simulated NPU's cost model (--runtime simnpu); on this runtime "
              "measure them: python -m lab bench --mode batch --batch-size B")
    if args.verify:
        check = _measure(args, adv.workers, workload)
        x = check.metrics.throughput_rps
        lat = check.metrics.latency_ns["mean"] / 1e6
        print(f"verify: measured {adv.workers} workers: {x:,.1f} samples/s (predicted {adv.throughput_rps:,.1f}, "
              f"{relative_error(adv.throughput_rps, x):+.1%}), latency {lat:.3f} ms (predicted {adv.latency_ms:.3f}, "
              f"{relative_error(adv.latency_ms, lat):+.1%})")
        doc["verify"] = {"workers": adv.workers, "measured_rps": x, "measured_latency_ms": lat,
                         "throughput_error": relative_error(adv.throughput_rps, x),
                         "latency_error": relative_error(adv.latency_ms, lat)}
    if args.json_path:
        import json

        from lab.findings import _clean

        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(_clean(doc), f, indent=2, allow_nan=False)
        print(f"wrote {args.json_path}")
    return 0 if not ref.errors else 1
