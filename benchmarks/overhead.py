"""Per-request runner overhead against a bare ``session.run`` loop, on the digits model.

Every variant runs the same preprocessed inputs in the same process, interleaved
round by round (so drift on a shared machine hits all of them alike), and the median
over rounds is reported. Throughput is requests over the wall time of the request
loop; for the runners that is the span from the first submission to the last output
(their own request records), so building the result afterwards is not counted.

Usage: python benchmarks/overhead.py [--requests 2000] [--rounds 7] [--threads N]
Last line: ``sync_profiled_throughput_ratio: <runner / bare>`` (target >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from lab.runners import AsyncRunner, BatchRunner, SyncRunner
from lab.runtimes.onnx import OnnxRuntime
from lab.zoo import load_workload


def bare_loop(sess: ort.InferenceSession, name: str, xs: list[np.ndarray]) -> float:
    run = sess.run
    t0 = time.perf_counter_ns()
    for x in xs:
        run(None, {name: x})
    return (time.perf_counter_ns() - t0) / len(xs)


def runner_ns_per_request(runner, inputs: np.ndarray, n: int) -> float:
    res = runner.run_all(inputs, warmup=0, requests=n)
    assert not res.errors, res.errors[:3]
    t0 = min(r.submit_ns for r in res.records)
    t1 = max(r.end_ns for r in res.records)
    return (t1 - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own)")
    args = ap.parse_args()

    wl = load_workload("digits")
    inputs = wl.inputs(args.requests)  # preprocessed once: both sides get identical arrays
    xs = [inputs[i:i + 1] for i in range(args.requests)]
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(wl.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    kw = {"threads": args.threads} if args.threads else {}
    rt = OnnxRuntime(wl.model_path, **kw)

    variants = {
        "bare session.run loop": lambda: bare_loop(sess, name, xs),
        "SyncRunner, profiling on": lambda: runner_ns_per_request(SyncRunner(rt, profile=True), inputs, args.requests),
        "SyncRunner, profiling off": lambda: runner_ns_per_request(SyncRunner(rt, profile=False), inputs,
                                                                   args.requests),
        "BatchRunner(batch_size=1), profiling on": lambda: runner_ns_per_request(
            BatchRunner(rt, batch_size=1), inputs, args.requests),
    }
    async_runner = AsyncRunner(rt, workers=1, max_inflight=1)
    variants["AsyncRunner(workers=1, max_inflight=1), profiling on"] = lambda: runner_ns_per_request(
        async_runner, inputs, args.requests)

    for fn in variants.values():  # warm every path once (sessions, bindings, threads)
        fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            samples[k].append(fn())
    async_runner.close()
    rt.close()

    bare = statistics.median(samples["bare session.run loop"])
    print(f"digits CNN, {args.requests} requests x {args.rounds} rounds, interleaved; medians")
    print(f"{'variant':55s} {'us/request':>11s} {'overhead us':>12s} {'throughput vs bare':>19s}")
    for k, v in samples.items():
        med = statistics.median(v)
        print(f"{k:55s} {med / 1e3:11.2f} {(med - bare) / 1e3:12.2f} {bare / med:19.3f}")
    ratio = bare / statistics.median(samples["SyncRunner, profiling on"])
    print(f"sync_profiled_throughput_ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
