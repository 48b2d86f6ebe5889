"""Runner dispatch overhead per request at saturation, beside a bare ThreadPoolExecutor and ORT run_async.

All variants run the same preprocessed digits inputs through ONNX Runtime in one process,
interleaved round by round, every request submitted at once (saturation); the figure is
wall time / requests, median over rounds. Overhead = a variant's time per request minus
the bare ThreadPoolExecutor's (same worker count, one intra-op thread per session.run, so
ONNX Runtime's spinning threads do not fight the workers for the 2 cores): what the lab's
bookkeeping (admission, futures, spans, records) costs on top of plain threads. For the
lab's runners the request phase (first submission to last completion, from their own
records) is the dispatch figure; the time to build the result afterwards (trace and
metrics, once per run) is shown in its own column. ONNX Runtime's own ``run_async`` (its
thread pool and callbacks; it needs intra_op_num_threads >= 2, so its session has 2) is
shown for reference.

Usage: python benchmarks/dispatch_overhead.py [--requests 3000] [--rounds 7] [--workers 2]
Last line: ``dispatch_overhead_us: <AsyncRunner minus bare pool, us per request>`` (target <= 50).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import threading
import time

import onnxruntime as ort

from lab.runners import AsyncRunner
from lab.runners.async_api import create_async
from lab.runtimes.onnx import OnnxRuntime
from lab.zoo import load_workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    n, w = args.requests, args.workers

    wl = load_workload("digits")
    inputs = wl.inputs(n)
    xs = [inputs[i:i + 1] for i in range(n)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(wl.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    async_opts = ort.SessionOptions()
    async_opts.intra_op_num_threads = 2  # run_async needs >= 2
    async_sess = ort.InferenceSession(str(wl.model_path), sess_options=async_opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rt = OnnxRuntime(wl.model_path, threads=1)
    pool = cf.ThreadPoolExecutor(max_workers=w)
    runner = AsyncRunner(rt, workers=w)

    def bare_pool() -> float:
        t0 = time.perf_counter_ns()
        futs = [pool.submit(sess.run, None, {name: x}) for x in xs]
        for f in futs:
            f.result()
        return (time.perf_counter_ns() - t0) / n

    def ort_run_async() -> float:
        done = threading.Event()
        left = [n]
        lock = threading.Lock()

        def callback(outputs, user_data, err) -> None:  # noqa: ANN001 - ORT's callback signature
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    done.set()

        t0 = time.perf_counter_ns()
        for x in xs:
            async_sess.run_async(None, {name: x}, callback, None)
        done.wait()
        return (time.perf_counter_ns() - t0) / n

    build_ns: list[float] = []

    def async_runner() -> float:
        t0 = time.perf_counter_ns()
        res = runner.run_all(inputs, warmup=0, requests=n)
        total = time.perf_counter_ns() - t0
        assert not res.errors
        phase = max(r.end_ns for r in res.records) - min(r.submit_ns for r in res.records)
        build_ns.append((total - phase) / n)
        return phase / n

    def queue_api() -> float:
        submitter, q = create_async(rt, workers=w, input_queue_size=64, output_queue_size=64)
        t0 = time.perf_counter_ns()
        reader = threading.Thread(target=lambda: [None for _ in q])
        reader.start()
        for x in xs:
            submitter.submit(x)
        submitter.close()
        reader.join()
        return (time.perf_counter_ns() - t0) / n

    variants = {
        f"bare ThreadPoolExecutor({w}) + session.run": bare_pool,
        "ONNX Runtime session.run_async": ort_run_async,
        f"lab AsyncRunner(workers={w}), spans on": async_runner,
        f"lab create_async(workers={w}) queues, spans on": queue_api,
    }
    for fn in variants.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            samples[k].append(fn())
    runner.close()
    pool.shutdown()
    rt.close()

    base = statistics.median(samples[f"bare ThreadPoolExecutor({w}) + session.run"])
    print(f"digits CNN, {n} requests submitted at once x {args.rounds} rounds, interleaved; medians")
    print(f"{'variant':50s} {'us/request':>11s} {'vs bare pool us':>16s} {'+ result us':>12s}")
    for k, v in samples.items():
        med = statistics.median(v)
        extra = f"{statistics.median(build_ns) / 1e3:12.2f}" if k.startswith("lab AsyncRunner") else f"{'':>12s}"
        print(f"{k:50s} {med / 1e3:11.2f} {(med - base) / 1e3:16.2f} {extra}")
    overhead = (statistics.median(samples[f"lab AsyncRunner(workers={w}), spans on"]) - base) / 1e3
    print(f"dispatch_overhead_us: {overhead:.2f}")


if __name__ == "__main__":
    main()
