"""Clocks: integer nanoseconds everywhere inside the lab."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "FakeClock", "host_clock"]

#: A clock is any callable returning integer nanoseconds on a monotonic timeline.
Clock = Callable[[], int]

#: The host clock: ``time.perf_counter_ns`` (monotonic, highest resolution available).
host_clock: Clock = time.perf_counter_ns


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
