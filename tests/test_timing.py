"""lab.timing on fake clocks and fake work: exact block sizes, statistics, warnings, sync order, naive vs right."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lab.clock import FakeClock
from lab.errors import ConfigError
from lab.timing import (
    MIN_SAMPLES,
    OVERHEAD_RATIO,
    Measurement,
    Timer,
    format_ns,
    measure,
    measure_naive,
    probe_clock,
)


class FakeDevice:
    """An asynchronous device on a fake clock: a launch costs the host ``launch_ns`` and queues
    ``work_ns`` of device work, which runs after the work queued before it; ``sync()`` waits for
    all of it (plus ``sync_ns`` of its own)."""

    def __init__(self, clock: FakeClock, *, launch_ns: int, work_ns: int, sync_ns: int = 0) -> None:
        self.clock = clock
        self.launch_ns, self.work_ns, self.sync_ns = launch_ns, work_ns, sync_ns
        self.busy_until = 0
        self.launches = 0

    def launch(self) -> None:
        now = self.clock()
        self.busy_until = max(now, self.busy_until) + self.work_ns
        self.clock.advance(self.launch_ns)
        self.launches += 1

    def sync(self) -> None:
        now = self.clock()
        self.clock.advance(max(0, self.busy_until - now) + self.sync_ns)


def costs(clock: FakeClock, ns: int):
    return lambda: clock.advance(ns)


# -- the algorithm, pinned ---------------------------------------------------------------
def test_block_size_is_the_smallest_that_makes_clock_overhead_a_thousandth_of_a_block() -> None:
    # each clock read costs 50 ns, a call 1000 ns: blocks must last >= 50 / 1e-3 = 50 us.
    # calibration: n=1 -> 1050 ns; n=ceil(50/1.05)=48 -> 48050 ns; n=ceil(48*50/48.05)=50 -> 50050 ns, done.
    clock = FakeClock(step_ns=50)
    m = measure(costs(clock, 1000), clock=clock, min_run_time_s=1e-3, warmup=2, label="fake")
    assert m.block_size == 50
    assert m.clock_overhead_ns == 50 and m.clock_resolution_ns == 50 and m.sync_overhead_ns == 0
    assert set(m.samples_ns) == {1001.0}  # (50 calls + one clock read) / 50
    # blocks end 50100 ns apart on this clock; the first with >= 1 ms of measuring is the 20th
    assert m.num_blocks == 20
    assert m.median_ns == 1001.0 and m.iqr_ns == 0 and m.rel_iqr == 0
    assert m.first_call_ns == 1050 and m.warmup_ns == (1050.0, 1050.0)
    assert m.label == "fake" and m.clock_name == "FakeClock" and not m.is_synchronized
    assert m.warnings == ()


def test_sync_overhead_counts_in_block_sizing() -> None:
    clock = FakeClock(step_ns=10)
    dev = FakeDevice(clock, launch_ns=100, work_ns=1000, sync_ns=490)
    m = measure(dev.launch, synchronize=dev.sync, clock=clock, min_run_time_s=1e-3)
    # the probe reads the clock inside sync() too: 10 + 490 ns
    assert m.sync_overhead_ns == 500 and m.clock_overhead_ns == 10
    # floor 510 ns -> a block must last >= 510 us, i.e. about 510 calls of ~1 us
    assert m.block_size * m.median_ns * OVERHEAD_RATIO >= 510
    assert 500 <= m.block_size < 520


def test_synchronize_is_called_before_every_block_end_clock_read() -> None:
    log: list[str] = []
    inner = FakeClock(step_ns=20)

    def clock() -> int:
        log.append("clock")
        return inner()

    def fn() -> None:
        log.append("fn")
        inner.advance(1000)

    def sync() -> None:
        log.append("sync")
        inner.advance(30)

    m = measure(fn, synchronize=sync, clock=clock, min_run_time_s=1e-3)
    assert m.is_synchronized
    # every clock read that follows calls of fn must have a sync between the last fn and the read
    pending = False
    reads_after_work = 0
    for event in log:
        if event == "fn":
            pending = True
        elif event == "sync":
            pending = False
        elif event == "clock":
            assert not pending, "the clock was read while work could still be in flight"
            reads_after_work += 1
    assert reads_after_work >= m.num_blocks
    # first call, 3 warm-ups, 5 probes, >= 1 calibration block, then one per measured block
    assert log.count("sync") >= 1 + 3 + 5 + 1 + m.num_blocks


def test_naive_timing_under_reports_async_work_and_measure_gets_it_right() -> None:
    clock = FakeClock()
    dev = FakeDevice(clock, launch_ns=100, work_ns=10_000, sync_ns=500)
    naive = measure_naive(dev.launch, num_samples=50, synchronize=dev.sync, clock=clock)
    right = measure(dev.launch, synchronize=dev.sync, clock=clock, min_run_time_s=5e-3)
    assert naive.is_naive and naive.block_size == 1 and naive.num_blocks == 50
    assert naive.median_ns == 100  # the launch, not the work
    assert naive.sync_overhead_ns == 0 and not naive.is_synchronized
    assert dev.busy_until <= clock()  # the naive run's work was drained, untimed, before `measure`
    assert right.median_ns == pytest.approx(10_000, rel=0.01)  # the device work
    assert right.median_ns / naive.median_ns > 90
    assert any(w.startswith("naive timing") for w in naive.warnings)
    assert not any(w.startswith("naive timing") for w in right.warnings)


def test_first_call_is_timed_apart_and_flagged_as_an_outlier() -> None:
    clock = FakeClock(step_ns=1)
    calls = []

    def fn() -> None:
        clock.advance(100_000 if not calls else 1_000)
        calls.append(1)

    m = measure(fn, clock=clock, min_run_time_s=1e-3, warmup=1)
    assert m.first_call_ns == 100_001
    assert max(m.samples_ns) < 1_010  # never part of the samples
    first = [w for w in m.warnings if w.startswith("first call is an outlier")]
    assert len(first) == 1 and "100 us" in first[0]


def test_spread_never_converging_stops_at_max_run_time_and_warns() -> None:
    clock = FakeClock()
    n = [0]

    def fn() -> None:  # fast and slow calls alternate: one-call blocks differ 3x
        n[0] += 1
        clock.advance(3_000 if n[0] % 2 else 1_000)

    m = measure(fn, clock=clock, min_run_time_s=1e-3, max_run_time_s=5e-3)
    assert m.block_size == 1  # the floor is the clock's unit, 1 ns: any call of >= 1 us is a long enough block
    assert sum(m.samples_ns) * m.block_size >= 5e6  # ran to max_run_time_s
    assert m.rel_iqr > 0.1
    assert any(w.startswith("spread too wide") for w in m.warnings)


def test_adaptive_loop_stops_early_once_the_spread_is_small() -> None:
    clock = FakeClock()
    m = measure(costs(clock, 10_000), clock=clock, min_run_time_s=1e-3, max_run_time_s=1.0)
    elapsed = sum(m.samples_ns) * m.block_size
    assert 1e6 <= elapsed < 2e6 and m.num_blocks >= MIN_SAMPLES


def test_options_are_checked() -> None:
    fn = lambda: None  # noqa: E731
    for bad in ({"warmup": -1}, {"min_run_time_s": 0}, {"max_run_time_s": 0.1, "min_run_time_s": 0.2},
                {"target_rel_iqr": 0}):
        with pytest.raises(ConfigError):
            Timer(fn, **bad)
    with pytest.raises(ConfigError, match="num_samples"):
        measure_naive(fn, num_samples=0)


def test_timer_measure_equals_measure_function() -> None:
    a, b = FakeClock(step_ns=50), FakeClock(step_ns=50)
    ma = Timer(costs(a, 1000), clock=a, min_run_time_s=1e-3).measure()
    mb = measure(costs(b, 1000), clock=b, min_run_time_s=1e-3)
    assert ma == mb
    naive = Timer(costs(a, 1000), clock=a, warmup=0).measure_naive(num_samples=7)
    assert naive.num_blocks == 7 and naive.warmup_ns == () and naive.is_naive


def test_real_host_clock_smoke() -> None:
    m = measure(lambda: sum(range(50)), min_run_time_s=0.01, max_run_time_s=0.05)
    assert m.block_size > 1 and m.median_ns > 0 and m.clock_name == "perf_counter_ns"
    assert m.clock_overhead_ns * m.block_size > 0
    assert probe_clock()[0] > 0


# -- Measurement: statistics and warnings --------------------------------------------------
def test_statistics_match_numpy() -> None:
    samples = (5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0)
    m = Measurement(samples_ns=samples, block_size=4)
    arr = np.array(samples)
    assert m.num_blocks == 7
    assert m.median_ns == np.median(arr)
    assert m.iqr_ns == pytest.approx(np.percentile(arr, 75) - np.percentile(arr, 25))
    assert m.mean_ns == pytest.approx(arr.mean()) and m.min_ns == 1.0
    assert m.rel_iqr == pytest.approx(m.iqr_ns / m.median_ns)
    assert m.percentile_ns(90) == pytest.approx(np.percentile(arr, 90))


def test_measurement_is_frozen_and_normalises_its_samples() -> None:
    m = Measurement(samples_ns=[1, 2, 3], warmup_ns=[7])  # type: ignore[arg-type]
    assert m.samples_ns == (1.0, 2.0, 3.0) and m.warmup_ns == (7.0,)
    with pytest.raises(AttributeError):
        m.block_size = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="num_blocks"):
        Measurement(samples_ns=(1.0,), num_blocks=2)


@pytest.mark.parametrize(
    "kwargs,prefix",
    [
        ({"samples_ns": (100.0, 100.0, 150.0, 200.0, 200.0, 200.0)}, "spread too wide"),
        ({"samples_ns": (100.0,) * 6, "clock_overhead_ns": 50.0}, "blocks too short for the clock"),
        ({"samples_ns": (100.0,) * 6, "block_size": 1000, "sync_overhead_ns": 200.0}, "blocks too short"),
        ({"samples_ns": (100.0,) * 6, "block_size": 10_000, "clock_resolution_ns": 15_600_000.0},
         "blocks too short"),
        ({"samples_ns": (100.0,) * 6, "first_call_ns": 250.0}, "first call is an outlier"),
        ({"samples_ns": (100.0,) * 3}, "too few samples: 3 block(s)"),
        ({"samples_ns": (100.0,) * 6, "is_naive": True}, "naive timing"),
    ],
)
def test_each_warning(kwargs, prefix: str) -> None:
    m = Measurement(**kwargs)
    assert [w for w in m.warnings if w.startswith(prefix)], m.warnings
    assert m.has_warnings


def test_no_warning_for_a_clean_measurement() -> None:
    m = Measurement(samples_ns=(100.0, 101.0, 99.0, 100.0, 100.0), block_size=10_000, first_call_ns=190.0,
                    clock_overhead_ns=50.0, clock_resolution_ns=1.0)
    assert m.warnings == () and not m.has_warnings


def test_to_dict_is_json_ready_in_milliseconds() -> None:
    m = Measurement(samples_ns=(1e6, 2e6, 3e6, 4e6, 5e6), block_size=2, warmup_ns=(9e6,), label="x")
    d = json.loads(json.dumps(m.to_dict()))
    assert d["median_ms"] == 3.0 and d["samples_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert d["first_call_ms"] is None and d["warmup_ms"] == [9.0] and d["block_size"] == 2
    assert d["num_blocks"] == 5 and d["label"] == "x" and isinstance(d["warnings"], list)
    assert Measurement(samples_ns=()).to_dict()["median_ms"] is None


def test_empty_measurement_statistics_are_nan() -> None:
    m = Measurement(samples_ns=())
    assert math.isnan(m.median_ns) and math.isnan(m.rel_iqr)
    assert m.warnings[0].startswith("too few samples")


@pytest.mark.parametrize("ns,text", [(850, "850 ns"), (1500, "1.5 us"), (2_340_000, "2.34 ms"),
                                     (3e9, "3 s"), (math.nan, "n/a")])
def test_format_ns(ns: float, text: str) -> None:
    assert format_ns(ns) == text


def test_str_names_the_median_and_blocks() -> None:
    text = str(Measurement(samples_ns=(2e6,) * 5, block_size=3, label="model"))
    assert text.startswith("model: median 2 ms") and "5 blocks x 3 calls" in text


def test_blocks_grow_to_amortise_a_completion_path_an_idle_synchronize_does_not_show() -> None:
    # synchronize() costs 1 us on an idle device but 200 us more when it has work to wait for
    # (a driver noticing the queue drained, a waiting thread scheduled): blocks must make that small
    from lab.timing import COMPLETION_RATIO

    clock = FakeClock(step_ns=10)

    class SlowCompletion(FakeDevice):
        def sync(self) -> None:
            pending = self.busy_until > self.clock()
            super().sync()
            if pending:
                self.clock.advance(200_000)

    dev = SlowCompletion(clock, launch_ns=100, work_ns=1_000_000, sync_ns=1_000)
    m = measure(dev.launch, synchronize=dev.sync, clock=clock, min_run_time_s=0.5, max_run_time_s=5.0)
    assert m.completion_overhead_ns == pytest.approx(201_000, rel=0.01)
    assert m.block_size == 41  # ceil(201 us / (0.5% x 1 ms))
    assert m.median_ns == pytest.approx(1_000_000, rel=COMPLETION_RATIO)
    assert not any(w.startswith("blocks too short") for w in m.warnings)
