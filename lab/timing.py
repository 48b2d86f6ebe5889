"""Timing done right: a cold first call apart, warm-up, blocks sized against clock and sync overhead.

``measure(fn, synchronize=...)`` is the correct way to time a call whose work may finish
later than the call returns (a CUDA kernel launch, a queued NPU job): it calls
``synchronize()`` before every block-end clock read, so the device work is counted, and
it sizes blocks so the clock and the synchronisation cost at most :data:`OVERHEAD_RATIO`
of a block. :func:`measure_naive` is the wrong way, kept on purpose so a notebook can
show both side by side: the host clock around one call, no synchronisation.

Both return a :class:`Measurement`: raw per-call samples in nanoseconds, how they were
taken, statistics derived lazily (median and IQR first), and warnings that say when not
to trust the numbers. Nothing here imports torch: ``synchronize`` is any callable, e.g.
``torch.cuda.synchronize`` or a runtime's ``synchronize``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.clock import Clock, host_clock
from lab.errors import ConfigError

__all__ = [
    "COMPLETION_RATIO",
    "FIRST_CALL_OUTLIER_RATIO",
    "IQR_WARN_RATIO",
    "MAX_BLOCK_SIZE",
    "MAX_CALIBRATION_ROUNDS",
    "MIN_SAMPLES",
    "NUM_CLOCK_PROBES",
    "NUM_COMPLETION_PROBES",
    "NUM_SYNC_PROBES",
    "OVERHEAD_RATIO",
    "WARN_FEW_SAMPLES",
    "WARN_FIRST_CALL",
    "WARN_NAIVE",
    "WARN_SHORT_BLOCK",
    "WARN_WIDE_SPREAD",
    "Measurement",
    "Timer",
    "format_ns",
    "measure",
    "measure_naive",
    "probe_clock",
]

#: Clock reads plus one ``synchronize()`` may cost at most this fraction of a block
#: (torch's ``_estimate_block_size`` uses 1e-4 for the clock alone; a device sync costs
#: microseconds, so 1e-3 keeps blocks at a few milliseconds on a GPU).
OVERHEAD_RATIO = 1e-3
#: Above this IQR / median the result carries :data:`WARN_WIDE_SPREAD` (torch: ``_IQR_WARN_THRESHOLD``).
IQR_WARN_RATIO = 0.10
#: A first call slower than this many medians carries :data:`WARN_FIRST_CALL`.
FIRST_CALL_OUTLIER_RATIO = 2.0
#: Fewer blocks than this: :data:`WARN_FEW_SAMPLES`; the adaptive loop never stops before this many.
MIN_SAMPLES = 5
#: Back-to-back clock reads taken to estimate the clock's overhead and resolution.
NUM_CLOCK_PROBES = 65
#: ``synchronize()`` calls timed alone (device idle) to estimate its cost.
NUM_SYNC_PROBES = 5
#: Upper bound on calls per block (a clock that does not advance would otherwise grow it forever).
MAX_BLOCK_SIZE = 10_000_000
#: Calibration blocks at most (each one also warms up).
MAX_CALIBRATION_ROUNDS = 8
#: Blocks of ``n`` and of ``2n`` calls timed this many times each (the fastest kept) to estimate what a
#: block costs beyond its calls when work is pending: the device's completion path (see :meth:`Timer.measure`).
NUM_COMPLETION_PROBES = 5
#: The completion path may cost at most this fraction of a block. It is a one-sided bias (it only adds time),
#: so this bounds the error it causes; it is looser than :data:`OVERHEAD_RATIO` because a completion path of
#: hundreds of microseconds (a simulated or interrupt-driven device) would otherwise need blocks of seconds.
COMPLETION_RATIO = 0.005

WARN_WIDE_SPREAD = (
    "spread too wide: the IQR is {rel_iqr:.1%} of the median ({iqr} of {median}), above {limit:.0%}; "
    "the machine is noisy (other processes, frequency scaling) or the work varies from call to call; "
    "rerun, raise max_run_time_s, or look at the raw samples"
)
WARN_SHORT_BLOCK = (
    "blocks too short for the clock: a block takes {block} (median), and clock overhead {clock} + "
    "synchronize {sync} (completion path {completion}, clock resolution {resolution}) is {share:.2%} of it, "
    "above {limit:.1%}; the overhead biases every sample upwards: use more calls per block"
)
WARN_FIRST_CALL = (
    "first call is an outlier: it took {first}, {ratio:.1f}x the median {median}; that is the cold start "
    "(allocation, lazy initialisation, compilation, cold caches), reported apart as first_call and "
    "excluded from the samples"
)
WARN_FEW_SAMPLES = (
    "too few samples: {num} block(s), fewer than {min}; median and IQR of so few samples are unreliable; "
    "raise max_run_time_s"
)
WARN_NAIVE = (
    "naive timing: the host clock around a single call with no synchronize(); work the call leaves "
    "running on a device (CUDA kernels, queued DMA) is not counted, and clock overhead is not amortised"
)


def format_ns(ns: float) -> str:
    """A duration in nanoseconds as text in a readable unit: ``"1.23 ms"``, ``"850 ns"``."""
    if ns is None or math.isnan(ns):
        return "n/a"
    a = abs(ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if a >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default ``percentile`` method)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _rel_iqr(values: Sequence[float]) -> float:
    s = sorted(values)
    med = _quantile(s, 0.5)
    iqr = _quantile(s, 0.75) - _quantile(s, 0.25)
    if med == 0:
        return 0.0 if iqr == 0 else math.inf
    return iqr / med


def _ms(ns: float) -> float | None:
    return None if math.isnan(ns) else ns / 1e6


def _clock_name(clock: Clock) -> str:
    return str(getattr(clock, "__qualname__", None) or type(clock).__name__)


@dataclass(frozen=True)
class Measurement:
    """Raw per-call samples of one measurement and how they were taken; statistics are derived lazily.

    Attributes:
        samples_ns: per-call time of each block (block time / ``block_size``), in order.
        block_size: calls per block.
        num_blocks: number of blocks (``len(samples_ns)``; filled in when left at -1).
        first_call_ns: the first (cold) call, timed apart; never part of the samples. NaN: not measured.
        warmup_ns: the warm-up calls, each timed alone (with ``synchronize()`` unless naive).
        clock_overhead_ns: median cost of one clock read (back-to-back reads).
        sync_overhead_ns: median cost of ``synchronize()`` on an idle device, clock cost removed.
        label: what was measured.
        clock_resolution_ns: smallest step the clock was seen to take.
        is_naive: taken by :func:`measure_naive` (no synchronize, one call per sample).
        is_synchronized: a ``synchronize`` callable was called before each block-end clock read.
        clock_name: the clock's name (``perf_counter_ns``, ``FakeClock``, ``cuda-event``).
        completion_overhead_ns: what a block costs beyond its calls when work is pending (clock
            reads, ``synchronize()``, the device's completion path): the intercept of block time over
            calls per block, 0 when not estimated.
    """

    samples_ns: tuple[float, ...]
    block_size: int = 1
    num_blocks: int = -1
    first_call_ns: float = math.nan
    warmup_ns: tuple[float, ...] = ()
    clock_overhead_ns: float = 0.0
    sync_overhead_ns: float = 0.0
    label: str = ""
    clock_resolution_ns: float = 0.0
    is_naive: bool = False
    is_synchronized: bool = False
    clock_name: str = field(default="")
    completion_overhead_ns: float = 0.0

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ (lists in, tuples of floats kept)
        object.__setattr__(self, "samples_ns", tuple(float(s) for s in self.samples_ns))
        object.__setattr__(self, "warmup_ns", tuple(float(s) for s in self.warmup_ns))
        if self.num_blocks == -1:
            object.__setattr__(self, "num_blocks", len(self.samples_ns))
        elif self.num_blocks != len(self.samples_ns):
            raise ValueError(f"num_blocks is {self.num_blocks} but there are {len(self.samples_ns)} samples")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    # -- statistics (computed once, on first use) --------------------------------------
    @functools.cached_property
    def _sorted(self) -> tuple[float, ...]:
        return tuple(sorted(self.samples_ns))

    @functools.cached_property
    def median_ns(self) -> float:
        """Median per-call time (NaN without samples)."""
        return _quantile(self._sorted, 0.5)

    @functools.cached_property
    def iqr_ns(self) -> float:
        """Interquartile range of the per-call samples (75th minus 25th percentile)."""
        return _quantile(self._sorted, 0.75) - _quantile(self._sorted, 0.25)

    @functools.cached_property
    def mean_ns(self) -> float:
        """Mean per-call time (sensitive to outliers; prefer the median)."""
        return math.fsum(self.samples_ns) / len(self.samples_ns) if self.samples_ns else math.nan

    @functools.cached_property
    def min_ns(self) -> float:
        """Fastest per-call sample."""
        return self._sorted[0] if self._sorted else math.nan

    @functools.cached_property
    def rel_iqr(self) -> float:
        """IQR / median: the spread relative to the typical value (0 for identical samples)."""
        if not self.samples_ns:
            return math.nan
        med = self.median_ns
        if med == 0:
            return 0.0 if self.iqr_ns == 0 else math.inf
        return self.iqr_ns / med

    def percentile_ns(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the per-call samples, linear interpolation."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        return _quantile(self._sorted, q / 100)

    @functools.cached_property
    def warnings(self) -> tuple[str, ...]:
        """Why not to trust this result, one concrete sentence each (empty when all is well)."""
        out: list[str] = []
        if self.is_naive:
            out.append(WARN_NAIVE)
        if self.num_blocks < MIN_SAMPLES:
            out.append(WARN_FEW_SAMPLES.format(num=self.num_blocks, min=MIN_SAMPLES))
        if not self.samples_ns:
            return tuple(out)
        med = self.median_ns
        if self.rel_iqr > IQR_WARN_RATIO:
            out.append(WARN_WIDE_SPREAD.format(rel_iqr=self.rel_iqr, iqr=format_ns(self.iqr_ns),
                                               median=format_ns(med), limit=IQR_WARN_RATIO))
        block_ns = med * self.block_size
        floor = max(self.clock_overhead_ns + self.sync_overhead_ns, self.clock_resolution_ns,
                    self.completion_overhead_ns * OVERHEAD_RATIO / COMPLETION_RATIO)
        if floor > 0 and floor > OVERHEAD_RATIO * block_ns:
            share = floor / block_ns if block_ns > 0 else math.inf
            out.append(WARN_SHORT_BLOCK.format(block=format_ns(block_ns), clock=format_ns(self.clock_overhead_ns),
                                               sync=format_ns(self.sync_overhead_ns),
                                               completion=format_ns(self.completion_overhead_ns),
                                               resolution=format_ns(self.clock_resolution_ns),
                                               share=share, limit=OVERHEAD_RATIO))
        if not math.isnan(self.first_call_ns):
            # the first call is a block of one: compare its work, not the clock/sync cost around it
            first_work = max(0.0, self.first_call_ns - self.clock_overhead_ns - self.sync_overhead_ns)
            if med > 0 and first_work > FIRST_CALL_OUTLIER_RATIO * med:
                out.append(WARN_FIRST_CALL.format(first=format_ns(self.first_call_ns), ratio=first_work / med,
                                                  median=format_ns(med)))
        return tuple(out)

    @property
    def has_warnings(self) -> bool:
        """True when :attr:`warnings` is not empty."""
        return bool(self.warnings)

    @property
    def method(self) -> str:
        """How the samples were taken, in words."""
        if self.is_naive:
            return "naive: host clock around one call, no synchronize"
        sync = "synchronize() before each block-end clock read" if self.is_synchronized else "no synchronize given"
        return f"blocked: {self.block_size} call(s) per block, {sync}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary and raw samples; times are milliseconds (floats), NaN becomes None."""
        return {
            "label": self.label,
            "method": self.method,
            "is_naive": self.is_naive,
            "is_synchronized": self.is_synchronized,
            "clock": self.clock_name,
            "median_ms": _ms(self.median_ns),
            "iqr_ms": _ms(self.iqr_ns),
            "mean_ms": _ms(self.mean_ns),
            "min_ms": _ms(self.min_ns),
            "rel_iqr": None if math.isnan(self.rel_iqr) or math.isinf(self.rel_iqr) else self.rel_iqr,
            "first_call_ms": _ms(self.first_call_ns),
            "warmup_ms": [s / 1e6 for s in self.warmup_ns],
            "clock_overhead_ms": self.clock_overhead_ns / 1e6,
            "clock_resolution_ms": self.clock_resolution_ns / 1e6,
            "sync_overhead_ms": self.sync_overhead_ns / 1e6,
            "completion_overhead_ms": self.completion_overhead_ns / 1e6,
            "block_size": self.block_size,
            "num_blocks": self.num_blocks,
            "samples_ms": [s / 1e6 for s in self.samples_ns],
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        head = f"{self.label}: " if self.label else ""
        text = (f"{head}median {format_ns(self.median_ns)} (IQR {format_ns(self.iqr_ns)}, "
                f"{self.num_blocks} blocks x {self.block_size} calls; first call {format_ns(self.first_call_ns)})")
        if self.is_naive:
            text += " [naive]"
        return text


def probe_clock(clock: Clock = host_clock, num_reads: int = NUM_CLOCK_PROBES) -> tuple[float, float]:
    """The clock's own cost and resolution, from back-to-back reads.

    Returns:
        ``(overhead_ns, resolution_ns)``: the median difference between consecutive reads,
        and the smallest positive one (1 ns, the unit, when the clock never moved).
    """
    reads = [clock() for _ in range(num_reads)]
    diffs = sorted(b - a for a, b in itertools.pairwise(reads))
    positive = [d for d in diffs if d > 0]
    return float(_quantile(diffs, 0.5)), float(positive[0] if positive else 1)


def _check_options(warmup: int, min_run_time_s: float, max_run_time_s: float, target_rel_iqr: float) -> None:
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    if not min_run_time_s > 0:
        raise ConfigError(f"min_run_time_s must be > 0, got {min_run_time_s}")
    if not max_run_time_s >= min_run_time_s:
        raise ConfigError(f"max_run_time_s ({max_run_time_s}) must be >= min_run_time_s ({min_run_time_s})")
    if not target_rel_iqr > 0:
        raise ConfigError(f"target_rel_iqr must be > 0, got {target_rel_iqr}")


def _nothing() -> None:
    return None


class Timer:
    """Measures one callable correctly; :meth:`measure` is the algorithm, see its docstring.

    Args:
        fn: the work, called with no arguments (bind arguments with a lambda or ``functools.partial``).
        synchronize: blocks until work ``fn`` queued on a device is done (``torch.cuda.synchronize``,
            ``runtime.synchronize``). None: ``fn`` is synchronous (CPU work).
        warmup: calls after the first one, before calibration and measurement.
        min_run_time_s: measure at least this long (clock time) before the spread may stop the loop.
        max_run_time_s: stop measuring after this long, whatever the spread.
        target_rel_iqr: stop once IQR / median is at most this (and enough samples and time were taken).
        clock: integer-ns clock (inject a :class:`~lab.clock.FakeClock` in tests).
        label: what is measured, carried into the result.

    Raises:
        ConfigError: an option is out of range.
    """

    def __init__(self, fn: Callable[[], Any], *, synchronize: Callable[[], None] | None = None, warmup: int = 3,
                 min_run_time_s: float = 0.2, max_run_time_s: float = 2.0, target_rel_iqr: float = 0.05,
                 clock: Clock = host_clock, label: str = "") -> None:
        _check_options(warmup, min_run_time_s, max_run_time_s, target_rel_iqr)
        self.fn = fn
        self.synchronize = synchronize
        self.warmup = warmup
        self.min_run_time_s = min_run_time_s
        self.max_run_time_s = max_run_time_s
        self.target_rel_iqr = target_rel_iqr
        self.clock = clock
        self.label = label

    def _time_block(self, n: int) -> int:
        """Clock time of ``n`` calls plus one ``synchronize()``, read after the sync."""
        fn, sync, clock = self.fn, self.synchronize or _nothing, self.clock
        t0 = clock()
        for _ in itertools.repeat(None, n):
            fn()
        sync()  # before the clock read: asynchronous device work belongs to this block
        return clock() - t0

    def measure(self) -> Measurement:
        """Measure ``fn`` with blocks sized against clock and sync overhead; stop on a small spread.

        At a high level it executes the following pseudo-code (``time(x)`` is
        ``t0 = clock(); x; t1 = clock(); t1 - t0``)::

            first_call = time(fn(); synchronize())            # cold start, reported apart
            warmup_ns  = [time(fn(); synchronize()) for _ in range(warmup)]
            clock_overhead = median(diff(back-to-back clock reads))
            resolution     = min(positive diff(back-to-back clock reads))
            sync_overhead  = median(time(synchronize()) for 5 probes) - clock_overhead
            floor = max(clock_overhead + sync_overhead, resolution)

            n = 1                                             # calibration (also warms up)
            repeat at most 8 times:
                block = time(n x fn(); synchronize())
                if floor <= OVERHEAD_RATIO * block: break     # overhead <= 0.1% of a block
                n = max(n + 1, ceil(n * floor / (OVERHEAD_RATIO * block)))

            if synchronize is given:                          # a sync with work pending costs more
                one = min(time(n x fn(); synchronize()) for 5 probes)
                two = min(time(2n x fn(); synchronize()) for 5 probes)
                completion = max(0, 2 * one - two)            # intercept of block time over calls
                if completion > COMPLETION_RATIO * one:       # at most max_run / 10 per block
                    n = ceil(completion / (COMPLETION_RATIO * (one - completion) / n))

            samples = []; start = clock()
            loop:
                t0 = clock(); n x fn(); synchronize(); t1 = clock()   # sync BEFORE the read
                samples.append((t1 - t0) / n)
                if t1 - start >= max_run_time: break
                if t1 - start >= min_run_time and len(samples) >= MIN_SAMPLES
                        and iqr(samples) / median(samples) <= target_rel_iqr: break

        The spread is checked at geometrically spaced sample counts (every ~12% more
        samples), so a long run costs O(n log n), not O(n^2 log n). Raw samples are kept;
        the overheads are reported, not subtracted (blocks make them negligible, and the
        result warns when they are not).

        Returns:
            The :class:`Measurement`; read its ``warnings`` before its median.
        """
        clock, fn = self.clock, self.fn
        sync = self.synchronize or _nothing
        t0 = clock()
        fn()
        sync()
        first_ns = clock() - t0
        warmup_ns = [self._time_block(1) for _ in range(self.warmup)]

        clock_overhead, resolution = probe_clock(clock)
        sync_overhead = 0.0
        if self.synchronize is not None:
            probes = []
            for _ in range(NUM_SYNC_PROBES):
                t0 = clock()
                sync()
                probes.append(clock() - t0)
            sync_overhead = max(0.0, _quantile(sorted(probes), 0.5) - clock_overhead)
        floor = max(clock_overhead + sync_overhead, resolution)

        max_run_ns = self.max_run_time_s * 1e9
        n = 1
        for _ in range(MAX_CALIBRATION_ROUNDS):
            block = self._time_block(n)
            if floor <= OVERHEAD_RATIO * block or block >= max_run_ns or n >= MAX_BLOCK_SIZE:
                break
            if block <= 0:  # the clock did not move: grow blindly
                n = min(n * 10, MAX_BLOCK_SIZE)
            else:
                n = min(max(n + 1, math.ceil(n * floor / (OVERHEAD_RATIO * block))), MAX_BLOCK_SIZE)

        completion = 0.0
        if self.synchronize is not None and n < MAX_BLOCK_SIZE:
            # synchronize() on an idle device (the probes above) misses what it costs with work pending: the
            # device's completion path (a driver noticing the queue drained, a waiting thread scheduled).
            # It is the intercept of block time over calls per block: blocks of n and 2n, fastest of a few.
            one = min(self._time_block(n) for _ in range(NUM_COMPLETION_PROBES))
            two = min(self._time_block(2 * n) for _ in range(NUM_COMPLETION_PROBES))
            completion = float(max(0, 2 * one - two))
            if completion > COMPLETION_RATIO * one and one < max_run_ns:
                per_call = max(one - completion, 1.0) / n
                most = max(n, int(max_run_ns / (2 * MIN_SAMPLES) / per_call))  # >= 2 x MIN_SAMPLES blocks fit
                n = min(max(n, math.ceil(completion / (COMPLETION_RATIO * per_call))), most, MAX_BLOCK_SIZE)

        min_run_ns = self.min_run_time_s * 1e9
        target = self.target_rel_iqr
        samples: list[float] = []
        next_check = MIN_SAMPLES
        start = clock()
        repeat = itertools.repeat
        while True:
            b0 = clock()
            for _ in repeat(None, n):
                fn()
            sync()  # before the clock read: asynchronous device work belongs to this block
            b1 = clock()
            samples.append((b1 - b0) / n)
            elapsed = b1 - start
            if elapsed >= max_run_ns:
                break
            if elapsed >= min_run_ns and len(samples) >= next_check:
                if _rel_iqr(samples) <= target:
                    break
                next_check = len(samples) + max(1, len(samples) // 8)

        return Measurement(
            samples_ns=tuple(samples), block_size=n, first_call_ns=float(first_ns),
            warmup_ns=tuple(float(w) for w in warmup_ns), clock_overhead_ns=clock_overhead,
            sync_overhead_ns=sync_overhead, label=self.label, clock_resolution_ns=resolution,
            is_naive=False, is_synchronized=self.synchronize is not None, clock_name=_clock_name(clock),
            completion_overhead_ns=completion,
        )

    def measure_naive(self, *, num_samples: int = 100) -> Measurement:
        """The wrong way, with this timer's options: see :func:`measure_naive`."""
        return measure_naive(self.fn, num_samples=num_samples, warmup=self.warmup,
                             max_run_time_s=self.max_run_time_s, synchronize=self.synchronize,
                             clock=self.clock, label=self.label)


def measure(fn: Callable[[], Any], *, synchronize: Callable[[], None] | None = None, warmup: int = 3,
            min_run_time_s: float = 0.2, max_run_time_s: float = 2.0, target_rel_iqr: float = 0.05,
            clock: Clock = host_clock, label: str = "") -> Measurement:
    """Measure ``fn`` correctly: ``Timer(fn, **options).measure()``; see :meth:`Timer.measure`.

    Example::

        m = measure(lambda: model(x), synchronize=torch.cuda.synchronize, label="resnet18 b1")
        print(m, m.warnings)

    Raises:
        ConfigError: an option is out of range.
    """
    return Timer(fn, synchronize=synchronize, warmup=warmup, min_run_time_s=min_run_time_s,
                 max_run_time_s=max_run_time_s, target_rel_iqr=target_rel_iqr, clock=clock,
                 label=label).measure()


def measure_naive(fn: Callable[[], Any], *, num_samples: int = 100, warmup: int = 3, max_run_time_s: float = 2.0,
                  synchronize: Callable[[], None] | None = None, clock: Clock = host_clock,
                  label: str = "") -> Measurement:
    """The wrong way, on purpose: the host clock around each single call, no synchronisation.

    This is what ``start = time.perf_counter(); model(x); end = time.perf_counter()``
    measures. The first call is timed apart and ``warmup`` calls follow, as in
    :func:`measure`, so a side-by-side comparison differs only in the synchronisation and
    the blocking: for asynchronous work each sample is the *launch* time, not the work.

    Args:
        num_samples: timed calls, one per sample.
        warmup: calls after the first one, before the samples (also timed naively).
        max_run_time_s: stop early once this much clock time went into the samples.
        synchronize: when given, called once after the last sample, untimed, only so that
            work left queued does not leak into whatever is measured next.
        clock: integer-ns clock.
        label: what is measured.

    Returns:
        A :class:`Measurement` with ``is_naive=True`` (and :data:`WARN_NAIVE` among its warnings).

    Raises:
        ConfigError: ``num_samples < 1`` or ``warmup < 0``.
    """
    if num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    clock_overhead, resolution = probe_clock(clock)
    times: list[float] = []
    max_run_ns = max_run_time_s * 1e9
    spent = 0
    for i in range(1 + warmup + num_samples):
        t0 = clock()
        fn()
        t1 = clock()  # no synchronize(): the mistake this function exists to show
        times.append(float(t1 - t0))
        if i > warmup:
            spent += t1 - t0
            if spent >= max_run_ns:
                break
    if synchronize is not None:
        synchronize()
    return Measurement(
        samples_ns=tuple(times[1 + warmup:]), block_size=1, first_call_ns=times[0],
        warmup_ns=tuple(times[1:1 + warmup]), clock_overhead_ns=clock_overhead, sync_overhead_ns=0.0,
        label=label, clock_resolution_ns=resolution, is_naive=True, is_synchronized=False,
        clock_name=_clock_name(clock),
    )
