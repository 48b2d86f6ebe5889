"""This machine's roofline: peak compute from a large matmul, peak bandwidth from a large copy, ops placed on it.

The roof is measured, not read from a spec sheet:

A peak is the *best* sample of its measurement (STREAM's convention: the fastest repetition),
not the median: on a shared machine the median mixes in time the probe spent descheduled,
and a roof is what the hardware can do. Ops are placed by their median.

* **compute**: a large square matmul (``Linear`` of ``(n, n)`` by ``(n, n)``: ``2 n^3`` FLOPs)
  on each runtime, PyTorch eager (MKL / oneDNN sgemm) and ONNX Runtime (MLAS Gemm); the
  best achieved FLOP/s is the compute roof;
* **memory**: a copy of a buffer much larger than the last-level cache (numpy ``copyto``,
  and PyTorch ``Tensor.copy_``, which uses every intra-op thread); a copy reads and writes
  each byte once, so ``2 * nbytes`` per call (STREAM's "copy" convention); the best is the
  memory (DRAM) roof;
* **cache**: the same copy on a 2 MiB buffer, which stays in the last-level cache of most
  CPUs: the roof of ops whose whole working set stays cached between calls. A benchmark
  that calls the same small op over and over keeps its weights and activations in cache,
  so such ops can sit *above* the DRAM roof (column ``above_roof``); the cache roof bounds them.

An op with intensity ``I`` (FLOPs per byte of least traffic, :attr:`lab.bench.ops.OpCase.bytes`)
can reach at most ``min(peak FLOP/s, I * peak bytes/s)``; :func:`place_on_roofline` says
how close each measured op came and which roof bounds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lab.bench.ops import MeasureOptions, default_backends, make_case, measure_torch, measurement_row, run_cases
from lab.clock import host_clock
from lab.errors import ConfigError
from lab.timing import measure

__all__ = [
    "CACHE_COPY_BYTES",
    "COPY_BYTES",
    "MATMUL_SIZE",
    "QUICK_COPY_BYTES",
    "QUICK_MATMUL_SIZE",
    "Roofline",
    "measure_peak_bandwidth",
    "measure_peak_compute",
    "measure_peaks",
    "place_on_roofline",
    "roofline_from_peaks",
    "roofline_summary",
]

#: Square matmul side for the compute roof (2 * 1024^3 = 2.1 GFLOP per call, tens of ms on a CPU core):
#: large enough to be compute bound, short enough for many samples (the peak is the best one), and
#: its three 4 MiB matrices stay in cache.
MATMUL_SIZE = 1024
QUICK_MATMUL_SIZE = 768
#: Bytes per copy for the memory roof: 256 MiB, far above any last-level cache.
COPY_BYTES = 256 * 2**20
#: CI size: 64 MiB read + 64 MiB written, still twice a 32 MiB L3.
QUICK_COPY_BYTES = 64 * 2**20
#: Bytes per copy for the cache roof: 2 MiB read + 2 MiB written, inside most last-level caches.
CACHE_COPY_BYTES = 2 * 2**20


@dataclass(frozen=True)
class Roofline:
    """Peak compute and memory bandwidth, and where they came from.

    Attributes:
        peak_flop_per_s: the compute roof.
        peak_byte_per_s: the memory (DRAM) roof.
        compute_source: how the compute roof was measured (``"onnx matmul 1024^3"``).
        memory_source: how the memory roof was measured (``"torch copy 256 MiB"``).
        cache_byte_per_s: the cache roof (a copy that stays in cache), or None when not measured.
        cache_source: how the cache roof was measured.
    """

    peak_flop_per_s: float
    peak_byte_per_s: float
    compute_source: str = ""
    memory_source: str = ""
    cache_byte_per_s: float | None = None
    cache_source: str = ""

    def __post_init__(self) -> None:
        if not (self.peak_flop_per_s > 0 and self.peak_byte_per_s > 0):
            raise ConfigError(f"a roofline needs positive peaks, got {self.peak_flop_per_s} FLOP/s and "
                              f"{self.peak_byte_per_s} B/s")

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte where the memory roof meets the compute roof."""
        return self.peak_flop_per_s / self.peak_byte_per_s

    def attainable_flop_per_s(self, intensity: float | np.ndarray, *, cache: bool = False) -> float | np.ndarray:
        """``min(peak FLOP/s, intensity * peak B/s)``: the most an op of that intensity can reach.

        Args:
            intensity: FLOPs per byte (scalar or array).
            cache: use the cache roof instead of the DRAM roof (ConfigError when it was not measured).
        """
        bandwidth = self.peak_byte_per_s
        if cache:
            if self.cache_byte_per_s is None:
                raise ConfigError("this roofline has no cache roof (measure_peaks measures one)")
            bandwidth = self.cache_byte_per_s
        return np.minimum(self.peak_flop_per_s, np.asarray(intensity, dtype=float) * bandwidth)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in GFLOP/s and GB/s."""
        return {"peak_gflop_per_s": self.peak_flop_per_s / 1e9, "peak_gb_per_s": self.peak_byte_per_s / 1e9,
                "cache_gb_per_s": None if self.cache_byte_per_s is None else self.cache_byte_per_s / 1e9,
                "ridge_flop_per_byte": self.ridge_intensity, "compute_source": self.compute_source,
                "memory_source": self.memory_source, "cache_source": self.cache_source}


def measure_peak_compute(*, backends: Sequence[str] | None = None, size: int = MATMUL_SIZE,
                         options: MeasureOptions | None = None, progress: bool = False) -> pd.DataFrame:
    """Achieved FLOP/s of one ``size`` x ``size`` by ``size`` x ``size`` matmul per backend.

    Returns:
        Rows of :func:`lab.bench.ops.run_cases` with ``kind = "compute"`` and ``method``.
    """
    if not isinstance(size, int) or size < 16:
        raise ConfigError(f"matmul size must be an integer >= 16, got {size!r}")
    case = make_case("linear", (size, size), study="roofline", label=f"matmul {size}^3")
    df = run_cases([case], backends=backends, options=options or MeasureOptions(), progress=progress,
                   desc="peak compute")
    return df.assign(kind="compute", method=[f"{b} matmul {size}^3" for b in df["backend"]])


def _copy_row(method: str, backend: str, fn: Any, nbytes: int, measure_fn: Any, kind: str) -> dict[str, Any]:
    t0 = host_clock()
    m = measure_fn(fn)
    t1 = host_clock()
    row = {"study": "roofline", "case": method, "op": "copy", "backend": backend, "kind": kind, "method": method}
    row.update(measurement_row(m, flops=0, nbytes=2 * nbytes, start_ns=t0, end_ns=t1))
    return row


def measure_peak_bandwidth(*, backends: Sequence[str] | None = None, nbytes: int = COPY_BYTES,
                           cache_nbytes: int | None = CACHE_COPY_BYTES,
                           options: MeasureOptions | None = None) -> pd.DataFrame:
    """Achieved bytes/s of a copy: numpy ``copyto`` always, ``Tensor.copy_`` when PyTorch is measured.

    Each call reads and writes ``nbytes`` (``bytes`` column: ``2 * nbytes``). The large copy
    (``kind = "memory"``) measures DRAM; the small one (``cache_nbytes``, ``kind = "cache"``) the cache.

    Returns:
        One row per (method, size), with the columns of :func:`lab.bench.ops.measurement_row`,
        ``kind`` and ``method``.
    """
    sizes = [("memory", nbytes)] + ([("cache", cache_nbytes)] if cache_nbytes else [])
    for _, size in sizes:
        if not isinstance(size, int) or size < 2**20:
            raise ConfigError(f"copy size must be at least 1 MiB, got {size!r}")
    options = options or MeasureOptions()
    backends = default_backends(backends)
    rows = []
    for kind, size in sizes:
        src = np.random.default_rng(options.seed).standard_normal(size // 4).astype(np.float32)
        dst = np.empty_like(src)
        label = f"{size / 2**20:.0f} MiB"
        rows.append(_copy_row(f"numpy copy {label}", "numpy", lambda d=dst, s=src: np.copyto(d, s), size,
                              lambda fn, lb=label: measure(fn, label=f"numpy copy {lb}", **options.timing()), kind))
        if "torch" in backends:
            from lab.runtimes.torch import import_torch

            torch = import_torch()
            tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
            rows.append(_copy_row(
                f"torch copy {label}", "torch", lambda d=tdst, s=tsrc: d.copy_(s), size,
                lambda fn, lb=label: measure_torch(fn, options=options, label=f"torch copy {lb}")[0], kind))
    return pd.DataFrame(rows)


def measure_peaks(*, backends: Sequence[str] | None = None, quick: bool = False, matmul_size: int | None = None,
                  copy_bytes: int | None = None, options: MeasureOptions | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Peak compute and bandwidth on this machine: :func:`measure_peak_compute` and :func:`measure_peak_bandwidth`.

    Args:
        backends: runtimes for the matmul (default every available one).
        quick: CI sizes (a 768^3 matmul, a 64 MiB copy) and the CI measurement preset.
        matmul_size: override the matmul side.
        copy_bytes: override the copy size.
        options: how to measure (default: :meth:`MeasureOptions.preset` for ``quick``).
        progress: show a progress bar for the matmuls.

    Returns:
        Columns ``kind`` (``compute`` / ``memory`` / ``cache``), ``method``, ``backend``, ``flops``, ``bytes``,
        ``latency_ns`` (median), ``min_ns`` (best), ``gflop_per_s`` / ``gb_per_s`` (at the median),
        ``best_gflop_per_s`` / ``best_gb_per_s`` (at the best sample: the peaks) and the other
        measurement columns.
    """
    options = options or MeasureOptions.preset(quick)
    size = matmul_size or (QUICK_MATMUL_SIZE if quick else MATMUL_SIZE)
    nbytes = copy_bytes or (QUICK_COPY_BYTES if quick else COPY_BYTES)
    compute = measure_peak_compute(backends=backends, size=size, options=options, progress=progress)
    memory = measure_peak_bandwidth(backends=backends, nbytes=nbytes, options=options)
    cols = ["kind", "method", "backend", "flops", "bytes", "latency_ns", "iqr_ns", "min_ns", "latency_ms",
            "gflop_per_s", "gb_per_s", "rel_iqr", "num_warnings", "warning", "start_ns", "end_ns"]
    peaks = pd.concat([compute[cols], memory[cols]], ignore_index=True)
    best_s = peaks["min_ns"].astype(float) / 1e9
    peaks["best_gflop_per_s"] = (peaks["flops"] / best_s / 1e9).where(peaks["flops"] > 0)
    peaks["best_gb_per_s"] = peaks["bytes"] / best_s / 1e9
    return peaks


def roofline_from_peaks(peaks: pd.DataFrame, *, backend: str | None = None) -> Roofline:
    """The roof from :func:`measure_peaks`: the best matmul rate (of ``backend``, or of all) and the best copy.

    Both use the ``best_*`` columns (the fastest sample of each measurement).

    Raises:
        ConfigError: no compute or no memory row (for that backend).
    """
    compute = peaks[peaks["kind"] == "compute"]
    if backend is not None:
        compute = compute[compute["backend"] == backend]
    memory = peaks[peaks["kind"] == "memory"]
    cache = peaks[peaks["kind"] == "cache"]
    if compute.empty or memory.empty:
        raise ConfigError(f"peaks need a compute and a memory row{f' for {backend!r}' if backend else ''}; "
                          f"got kinds {sorted(set(peaks['kind']))} and backends {sorted(set(peaks['backend']))}")
    c = compute.loc[compute["best_gflop_per_s"].idxmax()]
    m = memory.loc[memory["best_gb_per_s"].idxmax()]
    k = None if cache.empty else cache.loc[cache["best_gb_per_s"].idxmax()]
    return Roofline(float(c["best_gflop_per_s"]) * 1e9, float(m["best_gb_per_s"]) * 1e9,
                    f"{c['method']} (best sample)", f"{m['method']} (best sample)",
                    None if k is None else float(k["best_gb_per_s"]) * 1e9,
                    "" if k is None else f"{k['method']} (best sample)")


def place_on_roofline(results: pd.DataFrame, roof: Roofline) -> pd.DataFrame:
    """Add where each measured op stands against ``roof``.

    Args:
        results: rows with ``flops``, ``bytes`` and ``latency_ns`` (any study table).
        roof: the machine's roofline.

    Returns:
        A copy with ``attainable_gflop_per_s`` (the DRAM roof at the op's intensity),
        ``roof_fraction`` (achieved / attainable FLOP/s), ``bandwidth_fraction`` (achieved / DRAM
        peak bytes per second), ``above_roof`` (faster than the roof allows: left of the ridge,
        its working set stayed in cache; right of it, the matmul probe fell short of this op),
        ``cache_roof_fraction`` (achieved / the cache roof's attainable, when measured) and
        ``bound``: ``"memory"`` left of the ridge, ``"compute"`` right of it, ``"data movement"``
        for ops with no FLOPs (placed by bandwidth alone).

    Raises:
        ConfigError: a required column is missing.
    """
    missing = {"flops", "bytes", "latency_ns"} - set(results.columns)
    if missing:
        raise ConfigError(f"place_on_roofline: results lack column(s) {sorted(missing)}")
    out = results.copy()
    secs = out["latency_ns"].astype(float) / 1e9
    intensity = out["flops"] / out["bytes"].where(out["bytes"] > 0)
    achieved = out["flops"] / secs
    attainable = pd.Series(roof.attainable_flop_per_s(intensity.fillna(0).to_numpy()), index=out.index)
    has_flops = out["flops"] > 0
    out["intensity"] = intensity
    out["attainable_gflop_per_s"] = (attainable / 1e9).where(has_flops)
    out["roof_fraction"] = (achieved / attainable).where(has_flops)
    out["bandwidth_fraction"] = out["bytes"] / secs / roof.peak_byte_per_s
    out["above_roof"] = np.where(has_flops, out["roof_fraction"] > 1, out["bandwidth_fraction"] > 1)
    if roof.cache_byte_per_s is not None:
        cache = pd.Series(roof.attainable_flop_per_s(intensity.fillna(0).to_numpy(), cache=True), index=out.index)
        out["cache_roof_fraction"] = (achieved / cache).where(has_flops, out["bytes"] / secs / roof.cache_byte_per_s)
    else:
        out["cache_roof_fraction"] = np.nan
    out["bound"] = np.where(~has_flops, "data movement",
                            np.where(intensity < roof.ridge_intensity, "memory", "compute"))
    return out


def roofline_summary(placed: pd.DataFrame) -> pd.DataFrame:
    """Per study and backend: how many ops, which roof bounds them, and how close they came (medians).

    Args:
        placed: the output of :func:`place_on_roofline`.

    Returns:
        Index ``(study, backend)``; columns ``ops``, ``memory_bound``, ``compute_bound``,
        ``data_movement``, ``above_roof``, ``median_roof_fraction``, ``best_roof_fraction``,
        ``median_bandwidth_fraction``.
    """
    _require_placed(placed)
    g = placed.groupby(["study", "backend"], sort=False)
    return pd.DataFrame({
        "ops": g.size(),
        "memory_bound": g["bound"].apply(lambda b: int((b == "memory").sum())),
        "compute_bound": g["bound"].apply(lambda b: int((b == "compute").sum())),
        "data_movement": g["bound"].apply(lambda b: int((b == "data movement").sum())),
        "above_roof": g["above_roof"].sum().astype(int),
        "median_roof_fraction": g["roof_fraction"].median(),
        "best_roof_fraction": g["roof_fraction"].max(),
        "median_bandwidth_fraction": g["bandwidth_fraction"].median(),
    })


def _require_placed(placed: pd.DataFrame) -> None:
    missing = {"study", "backend", "bound", "roof_fraction", "bandwidth_fraction", "above_roof"} \
        - set(placed.columns)
    if missing:
        raise ConfigError(f"roofline_summary: expected the output of place_on_roofline; missing {sorted(missing)}")
