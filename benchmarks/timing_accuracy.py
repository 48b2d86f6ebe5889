"""Timing accuracy against a known truth: the simulated NPU (simulator) with known per-request durations.

For each duration (a :func:`lab.bench.timing_study.known_duration_npu`: every request is one
compute job of exactly that many milliseconds), two measurements side by side, interleaved
round after round (naive first in even rounds, the lab's first in odd ones):

* naive: ``lab.measure_naive(lambda: rt.submit(x))``, the host clock around the call that
  returns once the request is queued (seed 001's mistake);
* the lab's: ``lab.measure(lambda: rt.submit(x), synchronize=rt.synchronize)``.

Each is compared with the modelled duration; the table shows medians over rounds. A block
sweep (blocks of 1..100 calls at 1 ms, one synchronize per block) then fits
``block = fixed + n x per_call``: the fixed per-block cost explains what the lab's
measurement reads above the truth at small block sizes.

Usage: python benchmarks/timing_accuracy.py [--durations 0.5 1 2 5 10] [--rounds 3] [--clock real|virtual]
Last lines: ``naive_error: <median relative error of the naive measurement>`` and
``timing_error: <median |relative error| of the lab's measurement>`` (target <= 0.02).
"""

from __future__ import annotations

import argparse
import json
import time

from lab.bench import timing_study as study

TARGET = 0.02


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--durations", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0, 10.0], help="ms per request")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--naive-samples", type=int, default=30)
    ap.add_argument("--min-run-time", type=float, default=0.2, help="lab.measure min_run_time_s")
    ap.add_argument("--max-run-time", type=float, default=2.0, help="lab.measure max_run_time_s")
    ap.add_argument("--clock", choices=study.CLOCKS, default="real")
    ap.add_argument("--no-sweep", action="store_true", help="skip the block sweep")
    ap.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    with study.known_duration_npu(1_000_000) as probe:
        device = probe.device
    print(f"{device}; {args.clock} time; {args.rounds} round(s), interleaved; medians over rounds")
    runs = study.accuracy_table(args.durations, clock=args.clock, rounds=args.rounds,
                                naive_samples=args.naive_samples, min_run_time_s=args.min_run_time,
                                max_run_time_s=args.max_run_time)
    summary = study.accuracy_summary(runs)
    naive = summary[summary["method"] == study.METHOD_NAIVE].set_index("duration_ms")
    right = summary[summary["method"] == study.METHOD_LAB].set_index("duration_ms")

    print(f"{'true ms':>8s} | {'naive ms':>9s} {'naive err':>10s} | {'lab ms':>9s} {'lab err':>9s} "
          f"{'worst':>8s} {'blocks':>7s} {'warnings':>8s} | {'max late ms':>11s}")
    for d in right.index:
        r, n = right.loc[d], naive.loc[d]
        late = max(r.max_lateness_ms, n.max_lateness_ms)
        print(f"{r.true_ms:8.3f} | {n.median_ms:9.4f} {n.rel_error:+10.2%} | {r.median_ms:9.4f} {r.rel_error:+9.2%} "
              f"{r.worst_abs_rel_error:8.2%} {r.block_size:7g} {r.num_warnings:8d} | {late:11.2f}")

    sweep = fit = None
    if not args.no_sweep:
        sweep = study.block_sweep(1.0, block_sizes=(1, 2, 5, 10, 20, 50, 100), repeats=5)
        fit = study.block_cost_fit(sweep)
        print("\nblock sweep at 1 ms (real time), one synchronize per block of n calls: per-request error "
              + ", ".join(f"n={int(b.block_size)} {b.rel_error:+.2%}" for b in sweep.itertuples())
              + f"\nfit block = fixed + n x per_call: fixed {fit['fixed_us']:.0f} us per block, per_call "
              f"{fit['per_call_ms']:.4f} ms ({fit['rel_error']:+.2%} vs the truth)")

    timing_error = float(right["abs_rel_error"].median())
    naive_error = float(naive["rel_error"].median()) if naive["rel_error"].notna().any() else float("nan")
    verdict = "met" if timing_error <= TARGET else "MISSED"
    print(f"\nlab.measure: median |error| {timing_error:.2%} over {len(right)} durations "
          f"(target <= {TARGET:.0%}: {verdict}); blocks of {right['block_size'].median():g} call(s) (median)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": device, "clock": args.clock, "runs": runs.to_dict(orient="records"),
                       "summary": summary.to_dict(orient="records"),
                       "block_sweep": None if sweep is None else sweep.to_dict(orient="records"), "block_fit": fit,
                       "timing_error": timing_error, "naive_error": naive_error,
                       "seconds": time.perf_counter() - t0}, f, indent=2, default=str)
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(f"naive_error: {naive_error:.4f}")
    print(f"timing_error: {timing_error:.4f}")


if __name__ == "__main__":
    main()
