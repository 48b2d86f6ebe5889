"""Seed 004's batch-size study for small models, and single vs fused PE on the simulated NPU (simulator).

A small model leaves a device idle between tiny jobs: per-call overheads (a runtime call, a
kernel launch, a DMA setup) dominate. A bigger batch amortises them: throughput grows with the
batch until the work itself dominates, while a request waits for its whole batch
(:func:`batch_sweep` on ONNX Runtime, :func:`simulated_batch_sweep` on the simulated NPU (simulator)).
:func:`batching_knee` finds where batching stops paying.

Single vs fused PE (seed 004): a Warboy-like NPU has two processing elements, used as two
independent devices (``single``: more requests at once) or fused into one (``fused``: one request
faster). A CPU has no such switch: its cores are not fused or split by a compiler; the closest
analogue, one request on every core vs one request per core, is :func:`core_split_study`. The
simulator models the NPU's choice (``pe_mode``): :func:`pe_mode_study` runs it in virtual time,
exactly as modelled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lab.bench.quantization import _session, measure_interleaved, predict_top1
from lab.errors import ConfigError, InputError

__all__ = [
    "batch_summary",
    "batch_sweep",
    "batching_knee",
    "core_split_study",
    "pe_mode_study",
    "pe_summary",
    "simulated_batch_sweep",
]


def _check_sizes(batch_sizes: Sequence[int]) -> list[int]:
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"expected batch sizes >= 1, got {list(batch_sizes)!r}")
    return sizes


def _take(inputs: np.ndarray, b: int) -> np.ndarray:
    idx = np.arange(b) % len(inputs)
    return np.ascontiguousarray(inputs[idx])


def batch_sweep(model_path: str | os.PathLike[str], inputs: np.ndarray, batch_sizes: Sequence[int], *,
                labels: np.ndarray | None = None, threads: int | None = None,
                max_run_time_s: float = 2.0) -> pd.DataFrame:
    """Latency and throughput of one ``session.run`` per batch size, with accuracy at each size.

    Every batch size's calls are interleaved (:func:`~lab.bench.quantization.measure_interleaved`),
    one batch of the first ``b`` inputs (cycled) per call. Latency is the batch's time: every
    request of a batch waits for all of it (the time to *collect* a batch from arriving requests
    comes on top and is not counted). Accuracy runs every input through batches of ``b``.

    Args:
        model_path: an ONNX model with a dynamic batch axis.
        inputs: preprocessed model inputs ``(N, ...)``.
        batch_sizes: sizes to try.
        labels: class per input (accuracy); None: no accuracy.
        threads: ONNX Runtime intra-op threads.
        max_run_time_s: time budget of the interleaved timing.

    Returns:
        One row per batch size: ``batch``, ``latency_ms``, ``latency_iqr_ms``, ``per_sample_us``,
        ``throughput_sps`` (samples/s), ``speedup`` (throughput over batch 1's, or over the
        smallest size), ``gain_vs_previous`` (over the previous size), ``accuracy``.

    Raises:
        ConfigError: no batch size, or a size < 1.
        InputError: no inputs, or labels of the wrong length.
    """
    sizes = _check_sizes(batch_sizes)
    x = np.asarray(inputs)
    if len(x) == 0:
        raise InputError("batch_sweep: expected at least one input, got none")
    if labels is not None and len(labels) != len(x):
        raise InputError(f"batch_sweep: expected {len(x)} labels, got {len(labels)}")
    sess = _session(model_path, threads=threads)
    name = sess.get_inputs()[0].name
    fns, accuracy = {}, {}
    for b in sizes:
        batch = _take(x, b)
        fns[str(b)] = lambda batch=batch: sess.run(None, {name: batch})
        if labels is not None:
            preds = np.concatenate([predict_top1(sess.run(None, {name: np.ascontiguousarray(x[i:i + b])})[0])
                                    for i in range(0, len(x), b)])
            accuracy[b] = float(np.mean(preds == np.asarray(labels)))
    timed = measure_interleaved(fns, max_run_time_s=max_run_time_s)
    rows = []
    for b in sizes:
        m = timed[str(b)]
        rows.append({"batch": b, "latency_ms": m.median_ns / 1e6, "latency_iqr_ms": m.iqr_ns / 1e6,
                     "per_sample_us": m.median_ns / b / 1e3, "throughput_sps": b / (m.median_ns / 1e9),
                     "accuracy": accuracy.get(b)})
    table = pd.DataFrame(rows)
    table["speedup"] = table["throughput_sps"] / table["throughput_sps"].iloc[0]
    table["gain_vs_previous"] = table["throughput_sps"] / table["throughput_sps"].shift(1)
    return table


def batching_knee(table: pd.DataFrame, *, min_gain: float = 1.10, column: str = "throughput_sps") -> int:
    """Where batching stops paying: the smallest batch within ``min_gain`` of the best throughput.

    Larger batches than the knee buy less than ``min_gain`` more throughput (10% by default)
    while every request waits for a bigger batch. Defined against the best throughput of the
    sweep, not the next size, so one noisy point cannot move it much.

    Raises:
        ConfigError: ``min_gain`` < 1 or an empty table.
    """
    if not min_gain >= 1:
        raise ConfigError(f"batching_knee: expected min_gain >= 1, got {min_gain!r}")
    if table.empty:
        raise ConfigError("batching_knee: expected a non-empty batch table")
    t = table.sort_values("batch")
    best = float(t[column].max())
    return int(t.loc[t[column] * min_gain >= best, "batch"].iloc[0])


def batch_summary(table: pd.DataFrame, *, where: str, min_gain: float = 1.10,
                  column: str = "throughput_sps") -> str:
    """The batch study's verdict for one sweep (``where``: e.g. ``"ONNX Runtime CPU"``)."""
    knee = batching_knee(table, min_gain=min_gain, column=column)
    t = table.set_index("batch")
    first = int(t.index.min())
    best = int(t[column].idxmax())
    lat = "latency_ms" if "latency_ms" in t else "latency_us"
    unit = "ms" if lat == "latency_ms" else "us"
    acc = t["accuracy"].dropna() if "accuracy" in t else pd.Series(dtype=float)
    acc_text = (f"; accuracy {acc.min():.1%}" + ("" if acc.max() == acc.min() else f" to {acc.max():.1%}")
                + " at every size") if len(acc) else ""
    return (f"{where}: throughput {t.loc[first, column]:,.0f}/s at batch {first} -> {t.loc[knee, column]:,.0f}/s at "
            f"batch {knee} ({t.loc[knee, column] / t.loc[first, column]:.1f}x), best {t.loc[best, column]:,.0f}/s at "
            f"batch {best}; latency {t.loc[first, lat]:.3g} -> {t.loc[knee, lat]:.3g} {unit}{acc_text}. Batching stops "
            f"paying at batch {knee}: larger batches add less than {min_gain - 1:.0%} throughput and only wait longer.")


def _zeros_input(rt: Any, batch: int) -> np.ndarray:
    spec = rt.inputs[0]
    shape = tuple(batch if i == 0 and d is None else (d if d is not None else 1) for i, d in enumerate(spec.shape))
    return np.zeros(shape, dtype=spec.dtype)


def _virtual(model_path: str | os.PathLike[str], *, preset: str, pe_mode: str | None, batch: int, requests: int,
             host_threads: int, **overrides: Any) -> dict[str, Any]:
    """``requests`` requests of ``batch`` arriving together, on a virtual clock: latency alone, throughput, busy."""
    from lab.clock import VirtualClock
    from lab.profiler import Profiler
    from lab.runtimes.simnpu import SimNpuRuntime

    out: dict[str, Any] = {}
    for n in (1, requests):
        clk = VirtualClock()
        prof = Profiler(clock=clk)
        with SimNpuRuntime(model_path, preset=preset, pe_mode=pe_mode, mode="timing", clock=clk,
                           queue_size=max(64, n + 1), **overrides) as rt:
            x = _zeros_input(rt, batch)
            futures = [rt.submit(x, request_id=i, slot=i % host_threads, profiler=prof, arrival_ns=0)
                       for i in range(n)]
            rt.synchronize()
            for f in futures:
                f.result()
            st = rt.stages(batch)
            device, engines = rt.device, rt.preset.num_pes if rt.pe_mode == "single" else 1
        spans = prof.spans()
        end = max(s.end_ns for s in spans)
        if n == 1:
            out["latency_us"] = end / 1e3
            out["stages"] = st
        else:
            busy = sum(s.end_ns - s.start_ns for s in spans if s.lane.startswith("device/"))
            out["makespan_us"] = end / 1e3
            out["throughput_sps"] = n * batch / (end / 1e9)
            out["device_util"] = busy / (end * engines)
    out["device"] = device
    return out


def simulated_batch_sweep(model_path: str | os.PathLike[str], batch_sizes: Sequence[int], *,
                          preset: str = "warboy", pe_mode: str | None = None, requests: int = 32,
                          host_threads: int = 1, **overrides: Any) -> pd.DataFrame:
    """The batch study on the simulated NPU (simulator), in virtual time (exactly the model).

    Per batch size: ``requests`` batches arrive at once (offline) for the throughput; one batch
    alone for the latency. Per-batch costs (DMA setup, launch) are paid once per batch, so a
    tiny model gains until compute and transfer sizes dominate.

    Returns:
        One row per batch size: ``batch``, modelled stage times (``quantize_us`` ...
        ``dequantize_us``), ``latency_us`` (one batch alone), ``throughput_sps`` (samples/s),
        ``device_util`` (compute engines' busy share during the offline run), ``speedup``,
        ``device``.
    """
    rows = []
    for b in _check_sizes(batch_sizes):
        r = _virtual(model_path, preset=preset, pe_mode=pe_mode, batch=b, requests=requests,
                     host_threads=host_threads, **overrides)
        stages = {f"{k}_us": ns / 1e3 for k, ns in r["stages"].as_dict().items()}
        rows.append({"batch": b, **stages, "latency_us": r["latency_us"], "throughput_sps": r["throughput_sps"],
                     "device_util": r["device_util"], "device": r["device"]})
    table = pd.DataFrame(rows)
    table["speedup"] = table["throughput_sps"] / table["throughput_sps"].iloc[0]
    return table


def pe_mode_study(models: dict[str, str | os.PathLike[str]], *, preset: str = "warboy", requests: int = 32,
                  host_threads: int = 2, batch: int = 1, **overrides: Any) -> pd.DataFrame:
    """Single vs fused PE on the simulated NPU (simulator), in virtual time, for each model.

    ``single``: each PE is its own engine with its share of the peak; requests go to the PE that
    frees first. ``fused``: one engine with every PE's peak. Latency is one request alone;
    throughput is ``requests`` arriving together, submitted from ``host_threads`` host threads
    (the host's quantize/dequantize run on them).

    Returns:
        One row per (model, pe_mode): ``compute_us``, ``latency_us``, ``throughput_rps``,
        ``device_util``, ``device``; plus per model ``single_over_fused`` (compute time ratio:
        the seed says fused wins throughput too when it exceeds 2).
    """
    rows = []
    for model, path in models.items():
        per_mode = {}
        for mode in ("single", "fused"):
            r = _virtual(path, preset=preset, pe_mode=mode, batch=batch, requests=requests, host_threads=host_threads,
                         **overrides)
            per_mode[mode] = r
            rows.append({"model": model, "pe_mode": mode, "compute_us": r["stages"].compute_ns / 1e3,
                         "latency_us": r["latency_us"], "throughput_rps": r["throughput_sps"] / batch,
                         "device_util": r["device_util"], "device": r["device"]})
        ratio = per_mode["single"]["stages"].compute_ns / per_mode["fused"]["stages"].compute_ns
        for row in rows[-2:]:
            row["single_over_fused"] = ratio
    return pd.DataFrame(rows)


def _better(single: float, fused: float, *, lower: bool) -> str:
    """``"single PE"`` / ``"fused PE"`` for the better value, ``"either (within 1%)"`` when they are that close."""
    if abs(single - fused) <= 0.01 * max(abs(single), abs(fused)):
        return "either (within 1%)"
    return "single PE" if (single < fused) == lower else "fused PE"


def pe_summary(table: pd.DataFrame) -> list[str]:
    """The seed's advice (fused for latency, single for throughput) checked against the simulated runs."""
    out = []
    for model, t in table.groupby("model", sort=False):
        t = t.set_index("pe_mode")
        s, f = t.loc["single"], t.loc["fused"]
        lat = _better(s.latency_us, f.latency_us, lower=True)
        thr = _better(s.throughput_rps, f.throughput_rps, lower=False)
        ratio = float(s.single_over_fused)
        rule = "fused" if ratio > 2 else "single"
        out.append(
            f"{model} (simulator): latency single {s.latency_us:.1f} us vs fused {f.latency_us:.1f} us -> {lat}; "
            f"throughput single {s.throughput_rps:,.0f}/s vs fused {f.throughput_rps:,.0f}/s -> {thr}. Single-PE "
            f"compute is {ratio:.2f}x fused (launch cost included), so the seed's rule (fused wins throughput too "
            f"above 2x) predicts {rule} PE for throughput: "
            + ("confirmed." if thr.startswith(rule) else "not what ran."))
    return out


def core_split_study(model_path: str | os.PathLike[str], inputs: np.ndarray, *, requests: int = 200,
                     cores: int | None = None) -> pd.DataFrame:
    """The CPU's nearest analogue of fused vs single PE: one request on every core vs one request per core.

    ``fused-like``: one request at a time (MLPerf single stream) on a runtime with ``cores``
    intra-op threads; ``single-like``: a closed loop of ``cores`` outstanding requests on
    ``cores`` workers with one thread each. Both are :class:`~lab.runners.AsyncRunner` systems
    driven by :func:`lab.loadgen.run_load` on ONNX Runtime: real runs, host clock.

    Returns:
        Two rows: ``layout``, ``threads_per_request``, ``concurrent``, ``p50_ms``, ``throughput_rps``, ``errors``.
    """
    from lab.loadgen import run_load
    from lab.runners import AsyncRunner
    from lab.runtimes.onnx import OnnxRuntime

    cores = cores if cores is not None else max(1, os.cpu_count() or 1)
    x = np.asarray(inputs)
    rows = []
    for label, threads, concurrent in (("fused-like: 1 request x all cores", cores, 1),
                                       ("single-like: 1 request per core", 1, cores)):
        with OnnxRuntime(model_path, threads=threads) as rt, \
                AsyncRunner(rt, workers=concurrent, profile=True) as sut:
            res = run_load(sut, x, scenario="single" if concurrent == 1 else "closed", requests=requests,
                           warmup=3, concurrency=concurrent)
        m = res.metrics
        rows.append({"layout": label, "threads_per_request": threads, "concurrent": concurrent,
                     "p50_ms": m.latency_ns["p50"] / 1e6, "throughput_rps": m.throughput_rps, "errors": m.errors})
    return pd.DataFrame(rows)
