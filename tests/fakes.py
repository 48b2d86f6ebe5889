"""A fake runtime on a fake clock: exact, sleep-free runner tests."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from lab.clock import FakeClock
from lab.errors import DeviceError
from lab.profiler import Profiler
from lab.runtimes.base import BaseRuntime, Inputs, TensorSpec, check_inputs


class FakeRuntime(BaseRuntime):
    """Doubles its input; each stage "takes" a fixed time on a FakeClock; fails on chosen requests.

    ``gate``: when set, ``infer`` waits on it (lets a test hold a request mid-flight, no sleeping).
    """

    name = "fake"
    device = "fake device (test double)"

    def __init__(self, clock: FakeClock, *, upload_ns: int = 10, compute_ns: int = 100, download_ns: int = 20,
                 fail_ids: set[int] | None = None, gate: threading.Event | None = None,
                 batch: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.inputs = (TensorSpec("x", (batch, 4), "float32"),)
        self.outputs = (TensorSpec("y", (batch, 4), "float32"),)
        self.durations = (upload_ns, compute_ns, download_ns)
        self.fail_ids = fail_ids or set()
        self.gate = gate
        self.calls = 0
        self.slots_seen: set[int] = set()
        self._lock = threading.Lock()
        self.entered = threading.Event()  # set when a call reaches the gate

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[np.ndarray]:
        self._check_open()
        feed = check_inputs(self.inputs, inputs)
        with self._lock:
            self.calls += 1
            self.slots_seen.add(slot)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if request_id in self.fail_ids:
            raise DeviceError(f"injected failure on request {request_id}")
        t = [self.clock()]
        for d in self.durations:
            self.clock.advance(d)
            t.append(self.clock())
        if profiler is not None:
            profiler.add(f"h2d/{slot}", "upload", request_id, t[0], t[1])
            profiler.add(f"device/{slot}", "compute", request_id, t[1], t[2])
            profiler.add(f"d2h/{slot}", "download", request_id, t[2], t[3])
        return [feed["x"] * 2]


def samples(n: int = 10) -> np.ndarray:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4)


def argmax_post(outputs: Any) -> np.ndarray:
    return np.argmax(outputs[0], axis=1)


class SteppingClock(FakeClock):
    """A FakeClock that a load generator can "sleep" on: ``sleep_until`` jumps forward, never back."""

    def sleep_until(self, deadline_ns: int) -> None:
        now = self()
        if deadline_ns > now:
            self.advance(deadline_ns - now)
