"""Clocks: integer nanoseconds everywhere inside the lab."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["MAX_SLEEP_S", "Clock", "FakeClock", "RealTimeClock", "SleepingClock", "VirtualClock", "host_clock"]

#: A clock is any callable returning integer nanoseconds on a monotonic timeline.
Clock = Callable[[], int]

#: The host clock: ``time.perf_counter_ns`` (monotonic, highest resolution available).
host_clock: Clock = time.perf_counter_ns


@runtime_checkable
class SleepingClock(Protocol):
    """A clock that can also wait: what simulated device engines hold jobs with.

    ``realtime`` is True for wall-clock time (:class:`RealTimeClock`) and False for virtual
    time (:class:`VirtualClock`), where sleeping advances the clock instead of waiting.
    """

    realtime: bool

    def __call__(self) -> int:
        """The current time, integer nanoseconds."""
        ...

    def sleep_until(self, deadline_ns: int) -> None:
        """Return once the clock reads ``deadline_ns`` or later."""
        ...


class FakeClock:
    """A deterministic clock for tests: each reading advances time by ``step_ns``.

    ``advance(ns)`` moves time forward explicitly, so a test can model a stage that
    "takes" a known duration without sleeping.
    """

    def __init__(self, start_ns: int = 0, step_ns: int = 0) -> None:
        self._now = int(start_ns)
        self._step = int(step_ns)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            now = self._now
            self._now += self._step
            return now

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns`` nanoseconds."""
        if ns < 0:
            raise ValueError(f"time only moves forward: advance() expected ns >= 0, got {ns}")
        with self._lock:
            self._now += int(ns)


#: The longest single ``time.sleep`` a :class:`RealTimeClock` takes, seconds; longer waits loop,
#: so a wait re-reads the clock at least this often.
MAX_SLEEP_S = 0.05


class RealTimeClock:
    """The host clock (``perf_counter_ns``) that can also sleep until a deadline.

    Device engines of the simulated NPU hold each job until its modelled end with
    :meth:`sleep_until`. Deadlines are absolute, so the overshoot of one sleep (the OS wakes
    a sleeping thread late, about 0.05-0.1 ms on Linux) delays that wake-up only: the next
    job's deadline is computed from the modelled end, not from the late wake-up, so
    overshoot never accumulates into throughput.

    Args:
        spin_ns: busy-wait (re-reading the clock) for the last ``spin_ns`` of each wait
            instead of sleeping, trading a core for accuracy. Default 0: never spin, because a
            spinning Python thread holds the GIL and a core that the host threads being
            measured need (the lab's machines have few cores).
    """

    realtime = True

    def __init__(self, *, spin_ns: int = 0) -> None:
        if isinstance(spin_ns, bool) or not isinstance(spin_ns, int) or spin_ns < 0:
            raise ValueError(f"spin_ns must be an integer >= 0, got {spin_ns!r}")
        self.spin_ns = spin_ns

    def __call__(self) -> int:
        return time.perf_counter_ns()

    def now(self) -> int:
        """The current time, integer nanoseconds (``perf_counter_ns``)."""
        return time.perf_counter_ns()

    def sleep_until(self, deadline_ns: int) -> None:
        """Block the calling thread until ``perf_counter_ns() >= deadline_ns`` (at once if past)."""
        spin = self.spin_ns
        while True:
            remaining = deadline_ns - time.perf_counter_ns()
            if remaining <= 0:
                return
            if remaining <= spin:
                continue  # spin: re-read the clock
            time.sleep(min((remaining - spin) / 1e9, MAX_SLEEP_S))


class VirtualClock:
    """Virtual time for exact, sleep-free tests and what-if runs: sleeping advances time instantly.

    ``sleep_until(deadline)`` moves the clock to ``max(now, deadline)`` and returns at once;
    time never goes back. Thread-safe. Code that reads ``now()`` from several threads sees
    whatever the latest sleeper set, so simulated components must compute their timelines
    from modelled times (as the simulated NPU's engines do) rather than from ``now()``.
    """

    realtime = False

    def __init__(self, start_ns: int = 0) -> None:
        self._now = int(start_ns)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._now

    def now(self) -> int:
        """The current virtual time, integer nanoseconds."""
        return self._now

    def sleep_until(self, deadline_ns: int) -> None:
        """Advance to ``deadline_ns`` if it is later than now; never blocks."""
        with self._lock:
            if deadline_ns > self._now:
                self._now = int(deadline_ns)

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns`` nanoseconds."""
        if ns < 0:
            raise ValueError(f"time only moves forward: advance() expected ns >= 0, got {ns}")
        with self._lock:
            self._now += int(ns)
