"""Seed 001's study: measuring inference time correctly (sync vs async, naive vs synchronized, warm-up, repeats).

Functions run a measured experiment and return a tidy ``pandas.DataFrame`` (the notebook
``04_measuring_time`` and ``benchmarks/timing_accuracy.py`` call them); ``plot_*`` functions
draw those tables and return a ``go.Figure`` (never shown here).

The reference for "the truth" is the simulated NPU (simulator), whose durations are known:
:func:`known_duration_npu` builds one whose every request is a single compute job of exactly
``duration_ns`` (DMA, host conversion and FLOP cost set to zero, one fused compute engine), so
the time of one request and the time per request back to back are both ``duration_ns``.
Its ``submit()`` returns once the request is queued, like a CUDA kernel launch: timing
``submit()`` alone is the naive mistake of seed 001; ``lab.measure(submit,
synchronize=rt.synchronize)`` is the correct way.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lab.clock import Clock, RealTimeClock, VirtualClock, host_clock
from lab.errors import ConfigError, RuntimeUnavailable
from lab.profiler import Profiler
from lab.timing import Measurement, format_ns, measure, measure_naive, probe_clock
from lab.trace import Trace
from lab.zoo import Workload, load_workload

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lab.runtimes.simnpu import SimNpuRuntime

__all__ = [
    "BLOCK_BIAS_NOTICE",
    "CLOCKS",
    "KNOWN_DURATION_LAG_TOLERANCE_NS",
    "METHOD_LAB",
    "METHOD_NAIVE",
    "accuracy_summary",
    "accuracy_table",
    "accuracy_verdicts",
    "block_cost_fit",
    "block_sweep",
    "block_verdict",
    "clock_table",
    "cpu_sync_table",
    "cpu_sync_verdict",
    "cuda_comparison",
    "cuda_verdict",
    "dispatch_table",
    "dispatch_trace",
    "distribution_table",
    "distribution_verdicts",
    "first_call_table",
    "first_call_verdicts",
    "known_duration_npu",
    "noisy_neighbour",
    "overhead_verdicts",
    "plot_accuracy",
    "plot_block_sweep",
    "plot_first_calls",
    "plot_repeats",
    "repeat_samples",
    "repeat_series",
    "short_function_table",
    "warnings_table",
]

#: ``clock`` values of :func:`accuracy_table`: the simulator holds jobs in real time or in virtual time.
CLOCKS = ("real", "virtual")
#: Method names in the tables.
METHOD_NAIVE = "naive: host clock around submit()"
METHOD_LAB = "lab.measure(submit, synchronize)"
#: How late (ns) an engine of the known-duration device may wake before it re-anchors its device
#: clock. The simulator's default (1 ms) is shorter than Python's GIL switch interval (5 ms): a caller
#: submitting many requests back to back can keep an engine thread from waking on time, and each
#: re-anchoring slips the modelled schedule. With 20 ms the device keeps its schedule through such
#: hiccups (its ``stats()`` still reports the worst lateness, kept in the tables).
KNOWN_DURATION_LAG_TOLERANCE_NS = 20_000_000
#: :func:`block_verdict` calls a measurement's blocks too short when the fixed per-block cost adds more
#: than this to each call.
BLOCK_BIAS_NOTICE = 0.02


def _workload(workload: Workload | None) -> Workload:
    return workload if workload is not None else load_workload("digits")


def _ms(ns: float) -> float:
    return ns / 1e6


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}: expected a number > 0, got {value!r}")


# -- the reference device -------------------------------------------------------------------------
def known_duration_npu(duration_ns: int, *, workload: Workload | None = None, clock: Any = None,
                       lag_tolerance_ns: int = KNOWN_DURATION_LAG_TOLERANCE_NS,
                       queue_size: int = 256) -> SimNpuRuntime:
    """A simulated NPU (simulator) whose every request is one compute job of exactly ``duration_ns``.

    The ``teaching`` preset with DMA setup 0, a 10 TB/s link, float compute at 1e16 FLOP/s
    (the digits CNN's 0.68 MFLOP round to 0 ns), no host quantize/dequantize (``int8_only``
    off), one fused compute engine, and ``launch_ns = duration_ns``. Timing-only mode: the
    outputs are :class:`~lab.runtimes.simnpu.AbsentOutput` (nothing is computed, nothing faked).

    Args:
        duration_ns: the modelled duration of one request.
        workload: the model (default: digits); only its graph's bytes and FLOPs matter.
        clock: :class:`~lab.clock.RealTimeClock` (None: a new one) or :class:`~lab.clock.VirtualClock`.
        lag_tolerance_ns: see :data:`KNOWN_DURATION_LAG_TOLERANCE_NS`.
        queue_size: bound of each engine queue (``submit`` blocks when the first one is full).

    Returns:
        The runtime; ``sum(rt.modelled_stage_ns().values())`` is the truth to compare with.

    Raises:
        ConfigError: ``duration_ns`` is not a positive integer, or the model is too large for
            its FLOPs and bytes to round to zero (the modelled total would not be ``duration_ns``).
    """
    from lab.runtimes.simnpu import SimNpuRuntime  # lazy: reads the model with onnx

    if isinstance(duration_ns, bool) or not isinstance(duration_ns, int) or duration_ns < 1:
        raise ConfigError(f"duration_ns: expected an integer >= 1, got {duration_ns!r}")
    wl = _workload(workload)
    rt = SimNpuRuntime(
        wl.model_path, preset="teaching", pe_mode="fused", mode="timing", clock=clock,
        lag_tolerance_ns=lag_tolerance_ns, queue_size=queue_size,
        name="known-duration", description=f"teaching preset reduced to one compute job of {format_ns(duration_ns)}",
        int8_only=False, dma_setup_ns=0, link_bytes_per_s=10**13, peak_fp16_flops_per_s=10**16,
        launch_ns=duration_ns,
    )
    total = sum(rt.modelled_stage_ns().values())
    if total != duration_ns:
        rt.close()
        raise ConfigError(f"known_duration_npu: expected a modelled total of {duration_ns} ns for {wl.name}, got "
                          f"{total} ns (the model's FLOPs or bytes do not round to zero); use a smaller model")
    return rt


def _true_ns(rt: Any) -> int:
    return int(sum(rt.modelled_stage_ns().values()))


# -- 1. sync vs async dispatch ---------------------------------------------------------------------
def dispatch_trace(duration_ms: float = 2.0, *, requests: int = 3, workload: Workload | None = None) -> Trace:
    """Sync then async calls on a known-duration simulated NPU (simulator), as a trace (real time).

    ``requests`` calls of ``infer()`` (returns with the result: synchronous), then ``requests``
    calls of ``submit()`` (returns once queued: asynchronous), then one ``synchronize()``.
    Each call is a span on lane ``host/0`` named ``infer``, ``submit`` or ``synchronize``
    (host clock around the call); the device's own spans are on ``h2d/0``, ``device/0``, ``d2h/0``.
    Request ids: ``1..requests`` for ``infer``, ``requests+1..2*requests`` for ``submit``.

    Raises:
        ConfigError: ``requests < 1`` or ``duration_ms <= 0``.
    """
    _check_positive("duration_ms", duration_ms)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ConfigError(f"requests: expected an integer >= 1, got {requests!r}")
    wl = _workload(workload)
    x = wl.inputs(1)
    prof = Profiler()
    with known_duration_npu(round(duration_ms * 1e6), workload=wl) as rt:
        rt.infer(x)  # warm the path (threads, buffers) outside the trace
        clock = host_clock
        for rid in range(1, requests + 1):
            t0 = clock()
            rt.infer(x, request_id=rid, profiler=prof)
            prof.add("host/0", "infer", rid, t0, clock(), {"returns": "with the result"})
        for rid in range(requests + 1, 2 * requests + 1):
            t0 = clock()
            rt.submit(x, request_id=rid, profiler=prof)
            prof.add("host/0", "submit", rid, t0, clock(), {"returns": "once queued"})
        t0 = clock()
        rt.synchronize()
        prof.add("host/0", "synchronize", -1, t0, clock(), {"returns": "when all queued work is done"})
        device, true_ns = rt.device, _true_ns(rt)
    return prof.trace(device=device, mode="sync then async", modelled_request_ns=true_ns, duration_ms=duration_ms)


def dispatch_table(trace: Trace) -> pd.DataFrame:
    """Per request of :func:`dispatch_trace`: when its call returned vs when the device finished it.

    Returns:
        One row per request: ``request_id, api, returned_after_ms`` (host clock around the call),
        ``done_after_ms`` (end of its compute span, from the call's start), ``device_ms`` (its
        compute span), ``returned_before_done`` (the call returned before the work was done).
    """
    calls = {s.request_id: s for s in trace.spans if s.lane == "host/0" and s.name in ("infer", "submit")}
    compute = {s.request_id: s for s in trace.spans if s.name == "compute"}
    rows = []
    for rid in sorted(calls):
        call, comp = calls[rid], compute.get(rid)
        done = _ms(comp.end_ns - call.start_ns) if comp is not None else math.nan
        rows.append({
            "request_id": rid,
            "api": f"{call.name}() ({'sync' if call.name == 'infer' else 'async'})",
            "returned_after_ms": _ms(call.duration_ns),
            "done_after_ms": done,
            "device_ms": _ms(comp.duration_ns) if comp is not None else math.nan,
            "returned_before_done": bool(comp is not None and call.end_ns < comp.end_ns),
        })
    return pd.DataFrame(rows)


# -- 2. naive vs correct against the truth -------------------------------------------------------
def _row(m: Measurement, *, method: str, clock_kind: str, duration_ms: float, true_ns: int, rnd: int,
         stats: Mapping[str, Any] | None) -> dict[str, Any]:
    rel = (m.median_ns - true_ns) / true_ns
    return {
        "clock": clock_kind, "duration_ms": duration_ms, "true_ms": _ms(true_ns), "method": method, "round": rnd,
        "median_ms": _ms(m.median_ns), "mean_ms": _ms(m.mean_ns), "iqr_ms": _ms(m.iqr_ns),
        "rel_error": rel, "abs_rel_error": abs(rel), "block_size": m.block_size, "num_blocks": m.num_blocks,
        "first_call_ms": _ms(m.first_call_ns), "sync_overhead_us": m.sync_overhead_ns / 1e3,
        "clock_overhead_ns": m.clock_overhead_ns, "num_warnings": len(m.warnings), "warnings": list(m.warnings),
        "late_jobs": (stats or {}).get("late_jobs", 0),
        "max_lateness_ms": _ms((stats or {}).get("max_lateness_ns", 0)),
    }


def _naive_missing_row(*, clock_kind: str, duration_ms: float, true_ns: int, rnd: int) -> dict[str, Any]:
    return {
        "clock": clock_kind, "duration_ms": duration_ms, "true_ms": _ms(true_ns), "method": METHOD_NAIVE,
        "round": rnd, "median_ms": math.nan, "mean_ms": math.nan, "iqr_ms": math.nan, "rel_error": math.nan,
        "abs_rel_error": math.nan, "block_size": 1, "num_blocks": 0, "first_call_ms": math.nan,
        "sync_overhead_us": math.nan, "clock_overhead_ns": math.nan, "num_warnings": 0,
        "warnings": ["not defined in virtual time: engine threads move the virtual clock while submit() runs, "
                     "so the host clock around submit() reads whatever they set"],
        "late_jobs": 0, "max_lateness_ms": 0.0,
    }


def accuracy_table(durations_ms: Sequence[float], *, clock: str = "real", rounds: int = 1, naive_samples: int = 30,
                   min_run_time_s: float = 0.2, max_run_time_s: float = 2.0, workload: Workload | None = None,
                   progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Naive vs correct measurement of a known-duration simulated NPU (simulator), for each duration.

    One :func:`known_duration_npu` per duration (all created first). Then, round after round
    and interleaved (durations in turn; naive first in even rounds, ``lab.measure`` first in odd
    ones), each device is measured both ways:

    * naive: ``lab.measure_naive(lambda: rt.submit(x), num_samples=naive_samples)``, the host
      clock around the call that returns once the request is queued;
    * correct: ``lab.measure(lambda: rt.submit(x), synchronize=rt.synchronize)``, which waits
      for the device before every block-end clock read.

    Args:
        durations_ms: the known durations, ms per request.
        clock: ``real`` (engines hold jobs in real time: noisy, what a user sees) or ``virtual``
            (engine holds take no wall time and the clock is exact; naive is then not defined and
            its rows hold NaN with the reason in ``warnings``).
        rounds: measurements of each (duration, method); the ``round`` column tells them apart.
        naive_samples: samples of the naive measurement (all queued at once: at most ``queue_size``).
        min_run_time_s, max_run_time_s: ``lab.measure`` options (in virtual time: virtual seconds).
        workload: the model (default digits).
        progress: called with one line per measurement (e.g. ``print``).

    Returns:
        One row per (round, duration, method): ``clock, duration_ms, true_ms, method, round,
        median_ms, mean_ms, iqr_ms, rel_error`` ((median - true) / true), ``abs_rel_error,
        block_size, num_blocks, first_call_ms, sync_overhead_us, clock_overhead_ns,
        num_warnings, warnings`` (list of str), ``late_jobs, max_lateness_ms`` (the simulator's
        engines against their schedule during that measurement).

    Raises:
        ConfigError: an unknown ``clock``, no durations, a duration <= 0, ``rounds < 1`` or
            ``naive_samples`` outside 1..200.
    """
    if clock not in CLOCKS:
        raise ConfigError(f"clock: expected one of {list(CLOCKS)}, got {clock!r}")
    if not durations_ms:
        raise ConfigError("durations_ms: expected at least one duration, got none")
    for d in durations_ms:
        _check_positive("durations_ms", d)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds: expected an integer >= 1, got {rounds!r}")
    if not 1 <= naive_samples <= 200:
        raise ConfigError(f"naive_samples: expected 1..200 (they are queued at once), got {naive_samples}")
    wl = _workload(workload)
    x = wl.inputs(1)
    devices: list[tuple[float, Any, Any]] = []
    rows: list[dict[str, Any]] = []
    try:
        for d in durations_ms:
            clk = VirtualClock() if clock == "virtual" else RealTimeClock()
            devices.append((float(d), clk, known_duration_npu(round(d * 1e6), workload=wl, clock=clk)))
        for rnd in range(rounds):
            for d, clk, rt in devices:
                true_ns = _true_ns(rt)
                order = (METHOD_NAIVE, METHOD_LAB) if rnd % 2 == 0 else (METHOD_LAB, METHOD_NAIVE)
                for method in order:
                    rt.reset_stats()

                    def submit(rt: Any = rt) -> Any:
                        return rt.submit(x)

                    if method == METHOD_NAIVE:
                        if clock == "virtual":
                            rows.append(_naive_missing_row(clock_kind=clock, duration_ms=d, true_ns=true_ns, rnd=rnd))
                            continue
                        m = measure_naive(submit, num_samples=naive_samples, synchronize=rt.synchronize,
                                          label=f"{d:g} ms: naive")
                    else:
                        m = measure(submit, synchronize=rt.synchronize, min_run_time_s=min_run_time_s,
                                    max_run_time_s=max_run_time_s, clock=clk if clock == "virtual" else host_clock,
                                    label=f"{d:g} ms: lab.measure")
                    rt.synchronize()
                    rows.append(_row(m, method=method, clock_kind=clock, duration_ms=d, true_ns=true_ns, rnd=rnd,
                                     stats=rt.stats()))
                    if progress is not None:
                        r = rows[-1]
                        progress(f"round {rnd + 1}/{rounds} {d:g} ms {method}: {r['median_ms']:.4f} ms "
                                 f"({r['rel_error']:+.2%}, blocks of {r['block_size']})")
    finally:
        for _, _, rt in devices:
            rt.close()
    return pd.DataFrame(rows)


def accuracy_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Medians over rounds of :func:`accuracy_table`, one row per (clock, duration, method).

    Returns:
        ``clock, duration_ms, true_ms, method, rounds, median_ms`` (median of the rounds' medians),
        ``rel_error`` (of that median), ``abs_rel_error, worst_abs_rel_error`` (over rounds),
        ``block_size`` (median), ``num_warnings`` (total), ``late_jobs`` (total), ``max_lateness_ms``.
    """
    rows = []
    for (clk, d, method), g in table.groupby(["clock", "duration_ms", "method"], sort=True):
        true_ms = float(g["true_ms"].iloc[0])
        med = float(g["median_ms"].median()) if g["median_ms"].notna().any() else math.nan
        rel = (med - true_ms) / true_ms
        rows.append({
            "clock": clk, "duration_ms": d, "true_ms": true_ms, "method": method, "rounds": len(g),
            "median_ms": med, "rel_error": rel, "abs_rel_error": abs(rel),
            "worst_abs_rel_error": float(g["abs_rel_error"].max()),
            "block_size": float(g["block_size"].median()), "num_warnings": int(g["num_warnings"].sum()),
            "late_jobs": int(g["late_jobs"].sum()), "max_lateness_ms": float(g["max_lateness_ms"].max()),
        })
    return pd.DataFrame(rows)


# -- 3. blocks: the fixed cost of a synchronize ---------------------------------------------------
def block_sweep(duration_ms: float = 1.0, *, block_sizes: Sequence[int] = (1, 2, 5, 10, 20, 50), repeats: int = 5,
                workload: Workload | None = None) -> pd.DataFrame:
    """Per-request time of blocks of ``n`` back-to-back ``submit()`` calls and one ``synchronize()``.

    The known-duration simulated NPU (simulator), in real time, runs the requests of a block one after the
    other, so a block takes ``n x true + fixed``, where ``fixed`` is what one block costs on
    top of the device work: clock reads, the ``synchronize()`` call, and the device's
    completion path (here the simulator's engine threads waking up, a few hundred
    microseconds; on a GPU the driver's). Per request that is ``true + fixed / n``: the longer
    the block, the smaller the bias. Block sizes are interleaved within each repeat.

    Returns:
        One row per block size: ``block_size, true_ms, per_call_ms`` (median over repeats),
        ``rel_error, block_ms`` (median), ``fixed_us`` (median block minus ``n x true``), ``repeats``.

    Raises:
        ConfigError: ``duration_ms <= 0``, no block sizes or one < 1, ``repeats < 1``.
    """
    _check_positive("duration_ms", duration_ms)
    if not block_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in block_sizes):
        raise ConfigError(f"block_sizes: expected integers >= 1, got {list(block_sizes)}")
    if repeats < 1:
        raise ConfigError(f"repeats: expected >= 1, got {repeats}")
    wl = _workload(workload)
    x = wl.inputs(1)
    blocks: dict[int, list[int]] = {n: [] for n in block_sizes}
    with known_duration_npu(round(duration_ms * 1e6), workload=wl) as rt:
        true_ns = _true_ns(rt)
        for _ in range(2):  # warm the path
            rt.submit(x)
        rt.synchronize()
        submit, sync, clock = rt.submit, rt.synchronize, host_clock
        for _ in range(repeats):
            for n in block_sizes:
                t0 = clock()
                for _ in itertools.repeat(None, n):
                    submit(x)
                sync()
                blocks[n].append(clock() - t0)
    rows = []
    for n, times in blocks.items():
        block = float(np.median(times))
        per_call = block / n
        rows.append({"block_size": n, "true_ms": _ms(true_ns), "per_call_ms": _ms(per_call),
                     "rel_error": (per_call - true_ns) / true_ns, "block_ms": _ms(block),
                     "fixed_us": (block - n * true_ns) / 1e3, "repeats": len(times)})
    return pd.DataFrame(rows)


def block_cost_fit(sweep: pd.DataFrame) -> dict[str, float]:
    """Least-squares line ``block = fixed + n x per_call`` through :func:`block_sweep`'s medians.

    The slope is the device time per request with the fixed per-block cost removed, the
    intercept that cost: the regression a benchmark can use when it cannot put events on the device.

    Returns:
        ``per_call_ms`` (slope), ``fixed_us`` (intercept), ``rel_error`` (slope vs ``true_ms``).

    Raises:
        ConfigError: fewer than two distinct block sizes.
    """
    n = sweep["block_size"].to_numpy(dtype=float)
    if len(np.unique(n)) < 2:
        raise ConfigError(f"block_cost_fit: expected at least 2 distinct block sizes, got {sorted(set(n))}")
    slope, intercept = np.polyfit(n, sweep["block_ms"].to_numpy(dtype=float), 1)
    true_ms = float(sweep["true_ms"].iloc[0])
    return {"per_call_ms": float(slope), "fixed_us": float(intercept) * 1e3,
            "rel_error": (float(slope) - true_ms) / true_ms}


# -- 4. warm-up and the first call -----------------------------------------------------------------
def first_call_table(workload: Workload | None = None, *, runtimes: Sequence[str] = ("onnx", "torch"),
                     threads: int | None = 1, warmup: int = 3, min_run_time_s: float = 0.2,
                     max_run_time_s: float = 1.0,
                     runtime_options: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """First call of a fresh runtime vs its warm-up calls vs the median, one row per runtime.

    Each runtime is created here (``create_runtime(name, workload.model_path)``; its load time is
    ``load_ms``), then measured with ``lab.measure(lambda: rt.infer(x), synchronize=rt.synchronize)``:
    the very first call is timed apart (``first_ms``), then ``warmup`` calls one by one, then blocks.
    A runtime that is not installed gets a row with ``status`` saying so and NaN times.

    Args:
        threads: intra-op threads of every runtime (None: the backend's default). One by default:
            on a small machine shared with other work, two threads of a small model wait on each
            other (an OpenMP barrier whose partner was descheduled) and calls take 10-100x longer
            at random, which measures the machine's load rather than the runtime.
        runtime_options: per runtime name, more constructor options (override ``threads``).

    Returns:
        ``runtime, status, load_ms, first_ms, warmup_ms`` (list), ``median_ms, iqr_ms,
        first_over_median, warnings`` (list of str).
    """
    from lab.runtimes import create_runtime

    wl = _workload(workload)
    x = wl.inputs(1)
    rows = []
    for name in runtimes:
        opts = {"threads": threads, **dict((runtime_options or {}).get(name, {}))}
        try:
            rt = create_runtime(name, wl.model_path, **opts)
        except RuntimeUnavailable as exc:
            rows.append({"runtime": name, "status": f"skipped: {exc}", "load_ms": math.nan, "first_ms": math.nan,
                         "warmup_ms": [], "median_ms": math.nan, "iqr_ms": math.nan, "first_over_median": math.nan,
                         "warnings": []})
            continue
        try:
            m = measure(lambda rt=rt: rt.infer(x), synchronize=getattr(rt, "synchronize", None), warmup=warmup,
                        min_run_time_s=min_run_time_s, max_run_time_s=max_run_time_s, label=f"{name} {wl.name}")
            rows.append({"runtime": name, "status": f"ran on {getattr(rt, 'device', name)}",
                         "load_ms": _ms(getattr(rt, "load_ns", math.nan)), "first_ms": _ms(m.first_call_ns),
                         "warmup_ms": [_ms(w) for w in m.warmup_ns], "median_ms": _ms(m.median_ns),
                         "iqr_ms": _ms(m.iqr_ns), "first_over_median": m.first_call_ns / m.median_ns,
                         "warnings": list(m.warnings)})
        finally:
            rt.close()
    return pd.DataFrame(rows)


# -- 5. repeats are a distribution ------------------------------------------------------------------
@contextmanager
def noisy_neighbour(busy_ms: float = 1.0, period_ms: float = 10.0) -> Iterator[None]:
    """A background thread that busy-loops ``busy_ms`` in pure Python every ``period_ms``, inside the block.

    Pure Python holds the interpreter lock, so a call measured meanwhile waits for it now and
    then: real interference, like another process taking the CPU, that makes some samples slow.

    Raises:
        ConfigError: ``busy_ms`` or ``period_ms`` <= 0, or ``busy_ms >= period_ms``.
    """
    _check_positive("busy_ms", busy_ms)
    _check_positive("period_ms", period_ms)
    if busy_ms >= period_ms:
        raise ConfigError(f"busy_ms must be below period_ms, got busy_ms={busy_ms}, period_ms={period_ms}")
    stop = threading.Event()
    busy_ns, idle_s = round(busy_ms * 1e6), (period_ms - busy_ms) / 1e3

    def loop() -> None:
        clock = time.perf_counter_ns
        while not stop.is_set():
            end = clock() + busy_ns
            while clock() < end:
                pass
            stop.wait(idle_s)

    thread = threading.Thread(target=loop, name="noisy-neighbour", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def repeat_samples(fn: Callable[[], Any], *, num_samples: int = 2000, warmup: int = 20,
                   max_run_time_s: float = 10.0) -> np.ndarray:
    """Per-call times (int64 ns) of a synchronous call, each timed alone with the host clock.

    For work that is done when the call returns (CPU inference), the host clock around one
    call is the right way to time it (seed 001); each sample carries one clock read of
    overhead (see :func:`clock_table`). The first call and ``warmup`` calls are left out.
    """
    m = measure_naive(fn, num_samples=num_samples, warmup=warmup, max_run_time_s=max_run_time_s)
    return np.asarray(m.samples_ns, dtype=np.int64)


def distribution_table(samples: Mapping[str, Sequence[int] | np.ndarray], *,
                       outlier_ratio: float = 2.0) -> pd.DataFrame:
    """Statistics of repeated samples and how much their outliers pull the mean.

    An outlier here is a sample above ``outlier_ratio`` x the median.

    Returns:
        One row per series: ``series, n, median_us, mean_us, p90_us, p99_us, max_us,
        mean_over_median, outliers, outlier_share, mean_without_outliers_us``, ``mean_pull``
        (mean / mean without outliers - 1: how far the outliers alone move the mean) and
        ``outlier_time_share`` (share of the total time spent in outliers).

    Raises:
        ConfigError: an empty series or ``outlier_ratio <= 1``.
    """
    if not outlier_ratio > 1:
        raise ConfigError(f"outlier_ratio: expected > 1, got {outlier_ratio}")
    rows = []
    for name, values in samples.items():
        a = np.asarray(values, dtype=np.float64)
        if a.size == 0:
            raise ConfigError(f"series {name!r}: expected at least one sample, got none")
        med, mean = float(np.median(a)), float(a.mean())
        out = a > outlier_ratio * med
        kept = a[~out]
        mean_kept = float(kept.mean()) if kept.size else math.nan
        rows.append({
            "series": name, "n": int(a.size), "median_us": med / 1e3, "mean_us": mean / 1e3,
            "p90_us": float(np.percentile(a, 90)) / 1e3, "p99_us": float(np.percentile(a, 99)) / 1e3,
            "max_us": float(a.max()) / 1e3, "mean_over_median": mean / med if med else math.nan,
            "outliers": int(out.sum()), "outlier_share": float(out.mean()),
            "mean_without_outliers_us": mean_kept / 1e3, "mean_pull": mean / mean_kept - 1 if kept.size else math.nan,
            "outlier_time_share": float(a[out].sum() / a.sum()) if a.sum() else 0.0,
        })
    return pd.DataFrame(rows)


def repeat_series(workload: Workload | None = None, *, num_samples: int = 2000, busy_ms: float = 1.0,
                  period_ms: float = 2.0) -> dict[str, np.ndarray]:
    """Repeated per-call samples of ``workload`` on ONNX Runtime (one thread): quiet, then with a noisy neighbour.

    Returns:
        ``{"quiet": ns, "noisy neighbour": ns}`` (int64 arrays of :func:`repeat_samples`), measured on
        one session, one after the other; the neighbour is :func:`noisy_neighbour` (``busy_ms``, ``period_ms``).

    Raises:
        RuntimeUnavailable: ONNX Runtime is not installed.
    """
    from lab.runtimes import create_runtime

    wl = _workload(workload)
    x = wl.inputs(1)
    with create_runtime("onnx", wl.model_path, threads=1) as rt:
        def call() -> Any:
            return rt.infer(x)

        quiet = repeat_samples(call, num_samples=num_samples)
        with noisy_neighbour(busy_ms, period_ms):
            noisy = repeat_samples(call, num_samples=num_samples)
    return {"quiet": quiet, "noisy neighbour": noisy}


# -- 6. timer overhead ------------------------------------------------------------------------------
_CLOCKS: dict[str, Clock] = {
    "perf_counter_ns": time.perf_counter_ns,
    "monotonic_ns": time.monotonic_ns,
    "time_ns": time.time_ns,
    "process_time_ns": time.process_time_ns,
}


def clock_table(num_reads: int = 1001) -> pd.DataFrame:
    """Cost and observed resolution of Python's clocks, from back-to-back reads.

    Returns:
        One row per clock: ``clock, overhead_ns`` (median difference of consecutive reads),
        ``resolution_ns`` (smallest positive step seen), ``declared_resolution_ns``
        (``time.get_clock_info``), ``monotonic``, ``measures`` (wall time or CPU time).
    """
    rows = []
    for name, clock in _CLOCKS.items():
        overhead, resolution = probe_clock(clock, num_reads)
        info = time.get_clock_info(name.removesuffix("_ns"))
        rows.append({"clock": name, "overhead_ns": overhead, "resolution_ns": resolution,
                     "declared_resolution_ns": info.resolution * 1e9, "monotonic": info.monotonic,
                     "measures": "CPU time of this process" if name.startswith("process") else "wall time"})
    return pd.DataFrame(rows)


def short_function_table(functions: Mapping[str, Callable[[], Any]] | None = None, *,
                         workload: Workload | None = None, naive_samples: int = 2000, min_run_time_s: float = 0.2,
                         max_run_time_s: float = 1.0) -> pd.DataFrame:
    """Naive per-call timing vs ``lab.measure``'s blocks, for functions of shrinking duration.

    A naive sample is ``t1 - t0`` around one call: it includes one clock read and is
    quantised by the clock's resolution, so for a function shorter than the clock's own cost
    it mostly measures the clock. ``lab.measure`` times blocks of many calls and divides.

    Args:
        functions: name -> function. None: an empty call, a numpy add of 16 floats, and
            ``workload`` (default digits) on ONNX Runtime with one thread (left out when ONNX
            Runtime is not installed; its session is closed at the end).

    Returns:
        One row per function: ``function, naive_ns, blocked_ns, block_size, clock_overhead_ns,
        naive_over_blocked, clock_share_of_naive`` (clock overhead / naive sample), ``warnings``
        (``lab.measure``'s, list of str).
    """
    closers: list[Callable[[], None]] = []
    if functions is None:
        a, b = np.ones(16, dtype=np.float32), np.ones(16, dtype=np.float32)
        out = np.empty_like(a)
        functions = {"empty call (lambda: None)": lambda: None,
                     "numpy add, 16 floats": lambda: np.add(a, b, out=out)}
        try:
            from lab.runtimes import create_runtime

            wl = _workload(workload)
            rt = create_runtime("onnx", wl.model_path, threads=1)
            closers.append(rt.close)
            x = wl.inputs(1)
            functions[f"{wl.name} on ONNX Runtime (1 thread)"] = lambda: rt.infer(x)
        except RuntimeUnavailable:
            pass
    rows = []
    try:
        for name, fn in functions.items():
            naive = measure_naive(fn, num_samples=naive_samples, warmup=10, max_run_time_s=max_run_time_s)
            blocked = measure(fn, min_run_time_s=min_run_time_s, max_run_time_s=max_run_time_s, label=name)
            rows.append({
                "function": name, "naive_ns": naive.median_ns, "blocked_ns": blocked.median_ns,
                "block_size": blocked.block_size, "clock_overhead_ns": blocked.clock_overhead_ns,
                "naive_over_blocked": naive.median_ns / blocked.median_ns if blocked.median_ns > 0 else math.inf,
                "clock_share_of_naive": (blocked.clock_overhead_ns / naive.median_ns if naive.median_ns > 0
                                         else math.nan),
                "warnings": list(blocked.warnings),
            })
    finally:
        for close in closers:
            close()
    return pd.DataFrame(rows)


# -- 7. CPU eager work is synchronous ---------------------------------------------------------------
def cpu_sync_table(workload: Workload | None = None, *, runtimes: Sequence[str] = ("torch",), threads: int | None = 1,
                   naive_samples: int = 200, min_run_time_s: float = 0.2, max_run_time_s: float = 1.0,
                   runtime_options: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Naive vs synchronized timing of CPU runtimes, where both should agree.

    PyTorch eager on the CPU computes inside the call (``synchronize()`` has nothing to wait
    for), so the host clock around one call sees the work: naive and ``lab.measure`` agree up
    to noise and the clock overhead, unlike on an asynchronous device.

    Args:
        threads: intra-op threads of every runtime (see :func:`first_call_table`).
        runtime_options: per runtime name, more constructor options (override ``threads``).

    Returns:
        One row per runtime: ``runtime, status, naive_ms, synchronized_ms, naive_over_synchronized,
        sync_overhead_ns, block_size``; a runtime that is not installed gets ``status`` saying so.
    """
    from lab.runtimes import create_runtime

    wl = _workload(workload)
    x = wl.inputs(1)
    rows = []
    for name in runtimes:
        try:
            rt = create_runtime(name, wl.model_path,
                                **{"threads": threads, **dict((runtime_options or {}).get(name, {}))})
        except RuntimeUnavailable as exc:
            rows.append({"runtime": name, "status": f"skipped: {exc}", "naive_ms": math.nan,
                         "synchronized_ms": math.nan, "naive_over_synchronized": math.nan,
                         "sync_overhead_ns": math.nan, "block_size": 0})
            continue
        try:
            sync = getattr(rt, "synchronize", None)
            right = measure(lambda rt=rt: rt.infer(x), synchronize=sync, min_run_time_s=min_run_time_s,
                            max_run_time_s=max_run_time_s, label=f"{name}: synchronized")
            naive = measure_naive(lambda rt=rt: rt.infer(x), num_samples=naive_samples, synchronize=sync,
                                  label=f"{name}: naive")
            rows.append({"runtime": name, "status": f"ran on {getattr(rt, 'device', name)}",
                         "naive_ms": _ms(naive.median_ns), "synchronized_ms": _ms(right.median_ns),
                         "naive_over_synchronized": naive.median_ns / right.median_ns,
                         "sync_overhead_ns": right.sync_overhead_ns, "block_size": right.block_size})
        finally:
            rt.close()
    return pd.DataFrame(rows)


# -- 8. CUDA events -------------------------------------------------------------------------------
def cuda_comparison(*, size: int = 512, channels: int = 32, depth: int = 8, event_samples: int = 30,
                    min_run_time_s: float = 0.2, max_run_time_s: float = 2.0) -> pd.DataFrame:
    """Seed 001 on a GPU: the host clock around ``model(x)`` vs synchronized blocks vs CUDA events.

    Runs only when CUDA is available (:func:`lab.cuda_clock.import_torch_cuda`); a conv net of
    ``depth`` 3x3 convolutions with ``channels`` channels on a ``1x3xsize x size`` input (random
    weights, built here) is timed three ways:

    * naive: ``perf_counter`` around ``model(x)``, no synchronize (measures the kernel launches);
    * ``lab.measure(forward, synchronize=torch.cuda.synchronize)``;
    * CUDA events: ``start.record(); model(x); end.record(); synchronize; start.elapsed_time(end)``
      (:func:`lab.cuda_clock.measure_events`, the seed's code).

    Returns:
        Without CUDA: one row, ``method="all"``, ``status="skipped: no CUDA (<why>)"``, NaN times.
        With CUDA: one row per method: ``method, status, median_ms, iqr_ms, block_size, over_events``
        (median / the events' median), ``warnings`` (list of str).
    """
    from lab.cuda_clock import import_torch_cuda, measure_events

    try:
        torch, dev = import_torch_cuda()
    except RuntimeUnavailable as exc:
        return pd.DataFrame([{"method": "all", "status": f"skipped: no CUDA ({exc})", "median_ms": math.nan,
                              "iqr_ms": math.nan, "block_size": 0, "over_events": math.nan, "warnings": []}])
    layers: list[Any] = [torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).to(dev).eval()
    x = torch.randn(1, 3, size, size, device=dev)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    name = torch.cuda.get_device_name(dev)
    # few naive samples: a call launches ~2 x depth kernels; CUDA's launch queue (~1024 entries) must not fill,
    # or launches would block and the naive timing would look right by accident
    naive = measure_naive(forward, num_samples=10, warmup=2, synchronize=torch.cuda.synchronize, label="naive")
    right = measure(forward, synchronize=torch.cuda.synchronize, min_run_time_s=min_run_time_s,
                    max_run_time_s=max_run_time_s, label="lab.measure")
    events = measure_events(forward, num_samples=event_samples, warmup=3, block_size=1, label="CUDA events")
    rows = []
    for method, m in (("naive: host clock around model(x)", naive),
                      ("lab.measure(forward, synchronize=torch.cuda.synchronize)", right),
                      ("CUDA events around model(x) + synchronize", events)):
        rows.append({"method": method, "status": f"ran on {name}", "median_ms": _ms(m.median_ns),
                     "iqr_ms": _ms(m.iqr_ns), "block_size": m.block_size,
                     "over_events": m.median_ns / events.median_ns, "warnings": list(m.warnings)})
    return pd.DataFrame(rows)


# -- plots (render second) ----------------------------------------------------------------------------
def plot_accuracy(summary: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Measured vs true duration per method (log-log), with the line measured = true.

    Args:
        summary: :func:`accuracy_summary` (or :func:`accuracy_table`) output.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = {METHOD_NAIVE: "#e15759", METHOD_LAB: "#4e79a7"}
    valid = summary.dropna(subset=["median_ms"])
    for (clk, method), g in valid.groupby(["clock", "method"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["true_ms"], y=g["median_ms"], mode="markers+lines", name=f"{method} ({clk} time)",
            marker=dict(size=10, color=colors.get(method), symbol="circle" if clk == "real" else "diamond-open"),
            line=dict(dash="solid" if clk == "real" else "dot", color=colors.get(method)),
            customdata=np.stack([g["rel_error"]], axis=-1),
            hovertemplate="true %{x:.3g} ms<br>measured %{y:.4g} ms<br>error %{customdata[0]:+.2%}<extra></extra>"))
    if len(summary):
        lo, hi = float(summary["true_ms"].min()), float(summary["true_ms"].max())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="measured = true",
                                 line=dict(color="#9d9d9d", dash="dash")))
    fig.update_layout(title=dict(text=title or "Measured vs true duration, simulated NPU (simulator)"),
                      xaxis=dict(title=dict(text="true (modelled) duration per request (ms)"), type="log"),
                      yaxis=dict(title=dict(text="measured median (ms)"), type="log"), hovermode="closest")
    return fig


def plot_block_sweep(sweep: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Per-request time vs calls per block (log x), with the true duration as a line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=sweep["block_size"], y=sweep["per_call_ms"], mode="markers+lines",
                             name="measured per request", marker=dict(size=9, color="#4e79a7"),
                             customdata=np.stack([sweep["rel_error"], sweep["fixed_us"]], axis=-1),
                             hovertemplate="%{x} calls per block<br>%{y:.4g} ms per call<br>error %{customdata[0]:+.2%}"
                                           "<br>fixed cost %{customdata[1]:.0f} us per block<extra></extra>"))
    if len(sweep):
        true_ms = float(sweep["true_ms"].iloc[0])
        fig.add_hline(y=true_ms, line=dict(dash="dash", color="#59a14f"),
                      annotation=dict(text=f"true {true_ms:g} ms"), annotation_position="bottom right")
    fig.update_layout(title=dict(text=title or "Per-request time vs calls per synchronize, simulated NPU (simulator)"),
                      xaxis=dict(title=dict(text="calls per block (one synchronize per block)"), type="log"),
                      yaxis=dict(title=dict(text="time per request (ms)")), hovermode="closest")
    return fig


def plot_first_calls(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """First call, each warm-up call and the median per runtime (ms, log y)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f")
    for i, row in enumerate(table[table["median_ms"].notna()].itertuples(index=False)):
        labels = ["first call"] + [f"warm-up {k + 1}" for k in range(len(row.warmup_ms))] + ["median"]
        values = [row.first_ms, *row.warmup_ms, row.median_ms]
        fig.add_trace(go.Bar(x=labels, y=values, name=row.runtime, marker=dict(color=palette[i % len(palette)]),
                             hovertemplate=f"{row.runtime}<br>%{{x}}: %{{y:.4g}} ms<extra></extra>"))
    fig.update_layout(title=dict(text=title or "First call vs warm calls on a fresh runtime"), barmode="group",
                      yaxis=dict(title=dict(text="ms per call"), type="log"), xaxis=dict(title=dict(text="call")))
    return fig


def plot_repeats(samples: Mapping[str, Sequence[int] | np.ndarray], *, bins: int = 60,
                 title: str | None = None) -> go.Figure:
    """Histogram (log-spaced bins) and CDF of repeated samples, median (solid) and mean (dashed) marked.

    Raises:
        ConfigError: an empty series, or ``bins < 1``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if bins < 1:
        raise ConfigError(f"bins: expected >= 1, got {bins}")
    series = {k: np.asarray(v, dtype=np.float64) / 1e3 for k, v in samples.items()}
    for k, v in series.items():
        if v.size == 0 or v.min() <= 0:
            raise ConfigError(f"series {k!r}: expected positive samples (ns), got {v.size} samples")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("histogram (log-spaced bins)", "CDF"))
    if not series:
        return fig
    everything = np.concatenate(list(series.values()))
    edges = np.geomspace(everything.min(), everything.max() * 1.0001, bins + 1)
    palette = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b")
    for i, (name, v) in enumerate(series.items()):
        color = palette[i % len(palette)]
        med, mean = float(np.median(v)), float(v.mean())
        label = f"{name}: median {med:.3g} us, mean {mean:.3g} us"
        counts, _ = np.histogram(v, bins=edges)
        fig.add_trace(go.Bar(x=np.sqrt(edges[:-1] * edges[1:]), y=counts, width=np.diff(edges), name=label,
                             legendgroup=name, marker=dict(color=color, line=dict(width=0)), opacity=0.6,
                             hovertemplate=f"{name}<br>%{{x:.3g}} us: %{{y}} samples<extra></extra>"), row=1, col=1)
        xs = np.sort(v)
        fig.add_trace(go.Scatter(x=xs, y=np.arange(1, xs.size + 1) / xs.size, mode="lines", name=f"{name} CDF",
                                 legendgroup=name, showlegend=False, line=dict(color=color, shape="hv")), row=1, col=2)
        for col in (1, 2):
            fig.add_vline(x=med, line=dict(color=color, width=2), row=1, col=col)
            fig.add_vline(x=mean, line=dict(color=color, width=2, dash="dash"), row=1, col=col)
    fig.update_xaxes(type="log", title_text="time per call (us)")
    fig.update_yaxes(title_text="samples", type="log", row=1, col=1)
    fig.update_yaxes(title_text="fraction of samples ≤ x", range=[0, 1.1], row=1, col=2)
    fig.update_layout(title=dict(text=title or "Repeated samples: median (solid) and mean (dashed)"),
                      barmode="overlay", bargap=0, legend=dict(orientation="h", y=-0.2))
    return fig


# -- verdicts: sentences computed from the tables ----------------------------------------------------
def _split(summary: pd.DataFrame, clock: str = "real") -> tuple[pd.DataFrame, pd.DataFrame]:
    part = summary[summary["clock"] == clock]
    naive = part[part["method"] == METHOD_NAIVE].set_index("duration_ms")
    right = part[part["method"] == METHOD_LAB].set_index("duration_ms")
    return naive, right


def accuracy_verdicts(summary: pd.DataFrame) -> list[str]:
    """One sentence per duration (real time), then one for virtual time, from :func:`accuracy_summary`."""
    out = []
    naive, right = _split(summary, "real")
    for d in right.index:
        r = right.loc[d]
        line = (f"{d:g} ms per request: lab.measure {r.median_ms:.4g} ms ({r.rel_error:+.2%}, "
                f"blocks of {r.block_size:g})")
        if d in naive.index and not math.isnan(naive.loc[d, "median_ms"]):
            nv = naive.loc[d]
            line += (f"; naive {nv.median_ms:.4g} ms ({nv.rel_error:+.2%}): it timed the enqueue, "
                     f"{r.true_ms / nv.median_ms:,.0f}x shorter than the work")
        out.append(line + ".")
    _, virt = _split(summary, "virtual")
    if len(virt):
        worst = float(virt["abs_rel_error"].max())
        how = "equal to the truth" if worst == 0 else f"within {worst:.2e} of the truth"
        out.append(f"Virtual time (engine holds take no wall time, the clock is exact): lab.measure is {how} at "
                   "every duration: the method itself has no bias; what remains in real time comes from the host "
                   "(thread wake-ups, sleep overshoot, noise).")
    return out


def block_verdict(sweep: pd.DataFrame, fit: Mapping[str, float], summary: pd.DataFrame | None = None) -> str:
    """What the fixed per-block cost does to a measurement, and what it predicts for ``lab.measure``'s blocks."""
    true_ms = float(sweep["true_ms"].iloc[0])
    fixed_ms = fit["fixed_us"] / 1e3
    one = sweep.loc[sweep["block_size"].idxmin()]
    big = sweep.loc[sweep["block_size"].idxmax()]
    text = (f"Each block costs {fit['fixed_us']:.0f} us on top of the device work (the fitted intercept): "
            f"{fixed_ms / true_ms:.1%} of a {true_ms:g} ms request with one call per block (measured "
            f"{one.rel_error:+.1%}), {fixed_ms / (big.block_size * true_ms):.2%} with {int(big.block_size)} calls "
            f"(measured {big.rel_error:+.2%}). The slope, {fit['per_call_ms']:.4f} ms per request, is within "
            f"{abs(fit['rel_error']):.2%} of the truth: the fixed cost is removed, not averaged in.")
    if summary is not None:
        _, right = _split(summary, "real")
        if len(right):
            d = min(right.index, key=lambda v: abs(v - true_ms))
            r = right.loc[d]
            predicted = fixed_ms / (r.block_size * r.true_ms)
            text += (f" lab.measure used blocks of {r.block_size:g} call(s) at {d:g} ms: this fixed cost predicts "
                     f"{predicted:+.1%} per request, it measured {r.rel_error:+.1%}. ")
            if predicted > BLOCK_BIAS_NOTICE:
                text += ("Its blocks are too short for this cost: their size accounts for the clock read and a "
                         "synchronize() on an idle device, not for the completion path paid when work is pending.")
            else:
                text += "Its blocks are long enough to make this cost negligible."
    return text


def first_call_verdicts(table: pd.DataFrame) -> list[str]:
    """One sentence per runtime of :func:`first_call_table`."""
    out = []
    for r in table.itertuples(index=False):
        if math.isnan(r.median_ms):
            out.append(f"{r.runtime}: {r.status}.")
            continue
        warm = ", ".join(f"{w:.3g}" for w in r.warmup_ms)
        slow_warmups = sum(1 for w in r.warmup_ms if w > 2 * r.median_ms)
        out.append(f"{r.runtime}: the first call took {r.first_ms:.3g} ms, {r.first_over_median:,.1f}x the median "
                   f"{r.median_ms:.3g} ms (loading took {r.load_ms:,.0f} ms apart); warm-up calls {warm} ms: "
                   f"{slow_warmups} of {len(r.warmup_ms)} still above twice the median.")
    return out


def distribution_verdicts(table: pd.DataFrame, *, baseline: str = "quiet") -> list[str]:
    """How median and mean moved between :func:`distribution_table`'s series, and how far outliers pull the mean."""
    rows = table.set_index("series")
    out = []
    for name, r in rows.iterrows():
        out.append(f"{name}: median {r.median_us:.3g} us, mean {r.mean_us:.3g} us ({r.mean_over_median:.2f}x the "
                   f"median); {int(r.outliers)} of {int(r.n)} samples ({r.outlier_share:.1%}) above twice the "
                   f"median take {r.outlier_time_share:.0%} of the time and pull the mean {r.mean_pull:+.0%}.")
    if baseline in rows.index:
        b = rows.loc[baseline]
        for name, r in rows.drop(index=baseline).iterrows():
            dm, dmean = r.median_us / b.median_us - 1, r.mean_us / b.mean_us - 1
            which = "median" if abs(dm) < abs(dmean) else "mean"
            out.append(f"{baseline} -> {name}: the median moved {dm:+.1%}, the mean {dmean:+.1%}: the {which} is "
                       "the steadier summary of the same work here.")
    return out


def overhead_verdicts(clocks: pd.DataFrame, short: pd.DataFrame) -> list[str]:
    """Clock cost and what it does to naive per-call timing of short functions."""
    pc = clocks.set_index("clock").loc["perf_counter_ns"]
    out = [f"perf_counter_ns costs {pc.overhead_ns:.0f} ns per read and was seen to step by {pc.resolution_ns:.0f} ns "
           f"(declared resolution {pc.declared_resolution_ns:g} ns)."]
    for r in short.itertuples(index=False):
        out.append(f"{r.function}: naive {format_ns(r.naive_ns)} per call vs {format_ns(r.blocked_ns)} in blocks of "
                   f"{r.block_size:,}: naive/blocked {r.naive_over_blocked:.2f}; one clock read is "
                   f"{r.clock_share_of_naive:.0%} of a naive sample.")
    return out


def cpu_sync_verdict(cpu: pd.DataFrame, summary: pd.DataFrame | None = None) -> list[str]:
    """CPU runtimes: naive and synchronized agree; contrasted with submit() of the simulated NPU (simulator)."""
    out = []
    for r in cpu.itertuples(index=False):
        if math.isnan(r.naive_ms):
            out.append(f"{r.runtime}: {r.status}.")
            continue
        out.append(f"{r.runtime} (CPU, synchronous): naive {r.naive_ms:.4g} ms vs synchronized {r.synchronized_ms:.4g} "
                   f"ms, ratio {r.naive_over_synchronized:.2f}: the call returns when the work is done.")
    if summary is not None:
        naive, _ = _split(summary, "real")
        naive = naive.dropna(subset=["median_ms"])
        if len(naive):
            ratio = float((naive["median_ms"] / naive["true_ms"]).median())
            out.append(f"simulated NPU (simulator), asynchronous submit(): naive / true {ratio:.3f} (median over "
                       "durations): the call returns long before the work is done.")
    return out


def cuda_verdict(cuda: pd.DataFrame) -> str:
    """One sentence from :func:`cuda_comparison`."""
    if (cuda["method"] == "all").any():
        return str(cuda["status"].iloc[0])
    rows = cuda.set_index("method")
    naive = rows.iloc[0]
    right = rows.iloc[1]
    events = rows.iloc[2]
    return (f"{events.status}: CUDA events {events.median_ms:.4g} ms; lab.measure with torch.cuda.synchronize "
            f"{right.median_ms:.4g} ms ({right.over_events - 1:+.1%} vs events); naive host clock "
            f"{naive.median_ms:.4g} ms ({naive.over_events:.1%} of the events' time): it timed the kernel launches.")


def warnings_table(table: pd.DataFrame) -> pd.DataFrame:
    """How often each kind of warning appeared, per method, in :func:`accuracy_table`'s rows.

    Returns:
        ``method, warning`` (the text before its first ``:``), ``count``, ``example`` (one full text).
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in table.itertuples(index=False):
        for w in r.warnings:
            key = (r.method, w.split(":", 1)[0])
            row = rows.setdefault(key, {"method": key[0], "warning": key[1], "count": 0, "example": w})
            row["count"] += 1
    return pd.DataFrame(list(rows.values()), columns=["method", "warning", "count", "example"])
