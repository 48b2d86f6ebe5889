"""Pipeline efficiency on the simulated NPU (a simulator): throughput over the bottleneck bound.

The teaching preset runs the digits model with millisecond-scale engines (DMA in, PEs, DMA out).
The bound is 1 / (the slowest engine's time per request): each DMA engine's per-request time,
and the PEs' compute time divided by the number of PEs working in parallel (single-PE mode).
Host stages (preprocessing, quantize) run on the worker threads, so they bound throughput
only through the number of workers, not as one engine. Each configuration runs on a fresh
simulator; throughput is the steady-window figure of :mod:`lab.metrics`.

Usage: python benchmarks/pipeline_efficiency.py [--requests 400] [--max-workers 8] [--preset teaching]
Last line: ``pipeline_efficiency: <best throughput / bound>`` (target >= 0.95).
"""

from __future__ import annotations

import argparse

from lab.runners import AsyncRunner
from lab.runners.async_api import AsyncRuntime
from lab.runtimes import create_runtime
from lab.zoo import load_workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--max-workers", type=int, default=8)
    ap.add_argument("--preset", default="teaching")
    args = ap.parse_args()

    wl = load_workload("digits")
    with create_runtime("simnpu", wl.model_path, preset=args.preset) as probe:
        stages = probe.modelled_stage_ns()
        pes = probe.preset.num_pes if probe.pe_mode == "single" else 1
        device = probe.device
    engines = {"DMA in": stages["upload"], f"PEs ({pes} in parallel)": stages["compute"] / pes,
               "DMA out": stages["download"]}
    slowest = max(engines, key=engines.get)
    bound = 1e9 / engines[slowest]
    print(f"{device}; digits model; {args.requests} requests per configuration")
    print("engine time per request (ms): " + ", ".join(f"{k} {v / 1e6:.3f}" for k, v in engines.items())
          + f"; bound = 1 / {slowest} = {bound:.1f} req/s")
    print(f"{'configuration':28s} {'req/s':>9s} {'efficiency':>11s} {'device util':>12s} {'host kept up':>13s}")

    configs = [("parallel", p) for p in (1, 2)] + [("workers", w) for w in range(1, args.max_workers + 1)]
    best = 0.0
    for kind, n in configs:
        with create_runtime("simnpu", wl.model_path, preset=args.preset) as rt:
            runner = (AsyncRuntime(rt, parallel=n, workload=wl) if kind == "parallel"
                      else AsyncRunner(rt, workers=n, workload=wl))
            with runner:
                res = runner.run_all(wl.samples, warmup=8, requests=args.requests)
            stats = rt.stats()
        rps = res.metrics.throughput_rps
        eff = rps / bound
        best = max(best, eff)
        label = f"AsyncRuntime(parallel={n})" if kind == "parallel" else f"AsyncRunner(workers={n})"
        print(f"{label:28s} {rps:9.1f} {eff:11.3f} {res.metrics.utilization_by_kind.get('device', 0):12.3f} "
              f"{str(stats['host_kept_up']):>13s}")
    print(f"pipeline_efficiency: {best:.3f}")


if __name__ == "__main__":
    main()
