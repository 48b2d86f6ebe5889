"""Prediction accuracy: throughput predicted from ONE measured run vs measured, for workers 1..8 and parallel 1/2.

On the simulated NPU (a simulator; teaching preset, digits model) each round measures a reference
run (``AsyncRunner(workers=R, max_inflight=R)``), derives every stage's service time from it
(:func:`lab.analysis.model_from_run`) and predicts every configuration with the virtual-time twin
and with exact MVA; then it measures each configuration (``AsyncRunner(workers=N, max_inflight=N)``
and the RBLN-style ``AsyncRuntime(parallel=p)``, every request at once), each on a fresh runtime.
Rounds interleave all configurations; the table gives medians over rounds, the error is
``median predicted / median measured - 1``. The same is done on ONNX Runtime (CPU), where the
model is one station of CPU cores and the error is reported as it is.

Usage: python benchmarks/prediction_accuracy.py [--rounds 3] [--requests 300] [--reference 2] [--max-workers 8]
Last line: ``max_prediction_error_simnpu: <max |error| of the twin over the simulator's configurations>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lab.analysis import model_from_run, predict
from lab.analysis.studies import run_config
from lab.zoo import load_workload


def _configs(max_workers: int, parallels: tuple[int, ...]) -> list[tuple[str, int]]:
    return [("workers", n) for n in range(1, max_workers + 1)] + [("parallel", p) for p in parallels]


def _measure(wl, runtime: str, kind: str, n: int, requests: int, warmup: int, opts: dict) -> float:  # noqa: ANN001
    if kind == "workers":
        res = run_config(wl, runtime=runtime, workers=n, max_inflight=n, requests=requests, warmup=warmup,
                         runtime_options=opts)
    else:
        res = run_config(wl, runtime=runtime, parallel=n, requests=requests, warmup=warmup, runtime_options=opts)
    return res.metrics.throughput_rps


def _predict(model, kind: str, n: int, method: str, requests: int, warmup: int) -> float:  # noqa: ANN001
    if kind == "workers":
        return predict(model, workers=n, max_inflight=n, method=method).throughput_rps
    return predict(model, workers=n, max_inflight=None, method=method, requests=requests,
                   warmup=warmup).throughput_rps


def study(runtime: str, configs: list[tuple[str, int]], *, rounds: int, requests: int, warmup: int, reference: int,
          opts: dict) -> list[dict]:
    """Interleaved rounds; returns one row per configuration with medians."""
    wl = load_workload("digits")
    meas: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    twin: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    mva: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    bound: list[float] = []
    for _ in range(rounds):
        ref = run_config(wl, runtime=runtime, workers=reference, max_inflight=reference, requests=requests,
                         warmup=warmup, runtime_options=opts)
        model = model_from_run(ref)
        bound.append(model.bound_rps)
        for c in configs:
            twin[c].append(_predict(model, *c, "twin", requests, warmup))
            mva[c].append(_predict(model, *c, "mva", requests, warmup))
            meas[c].append(_measure(wl, runtime, *c, requests, warmup, opts))
    rows = []
    for c in configs:
        m, t, v = statistics.median(meas[c]), statistics.median(twin[c]), statistics.median(mva[c])
        label = f"AsyncRunner(workers={c[1]}, max_inflight={c[1]})" if c[0] == "workers" else \
            f"AsyncRuntime(parallel={c[1]})"
        rows.append({"config": label, "measured": m, "twin": t, "twin_error": t / m - 1, "mva": v,
                     "mva_error": v / m - 1, "bound": statistics.median(bound)})
    return rows


def _print(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'configuration':42s} {'measured':>9s} {'twin':>9s} {'error':>7s} {'MVA':>9s} {'error':>7s} {'bound':>8s}")
    for r in rows:
        print(f"{r['config']:42s} {r['measured']:9.1f} {r['twin']:9.1f} {r['twin_error']:+7.1%} {r['mva']:9.1f} "
              f"{r['mva_error']:+7.1%} {r['bound']:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--reference", type=int, default=2, help="workers of the measured reference run")
    ap.add_argument("--max-workers", type=int, default=8)
    ap.add_argument("--preset", default="teaching")
    ap.add_argument("--onnx-max-workers", type=int, default=4)
    ap.add_argument("--skip-onnx", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = study("simnpu", _configs(args.max_workers, (1, 2)), rounds=args.rounds, requests=args.requests,
                warmup=args.warmup, reference=args.reference, opts={"preset": args.preset})
    _print(f"simulated NPU (simulator), {args.preset} preset, digits; samples/s, medians of {args.rounds} interleaved "
           f"rounds; predictions from one measured run with {args.reference} workers", sim)
    if not args.skip_onnx:
        cpu = study("onnx", _configs(args.onnx_max_workers, (1, 2)), rounds=args.rounds, requests=args.requests * 4,
                    warmup=args.warmup, reference=args.reference, opts={})
        print()
        _print(f"ONNX Runtime (CPU), digits; the model: one station of CPU cores (threads and the GIL not modelled); "
               f"{args.requests * 4} requests per run", cpu)
        print(f"max |twin error| on ONNX Runtime CPU: {max(abs(r['twin_error']) for r in cpu):.3f}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(f"max_prediction_error_simnpu: {max(abs(r['twin_error']) for r in sim):.3f}")


if __name__ == "__main__":
    main()
