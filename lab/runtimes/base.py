"""The runtime protocol: the part of a device runtime that runners and profilers use.

A runtime executes one request (or one batch) in three steps and reports each as a
span: ``upload`` (host to device, lane ``h2d/<slot>``), ``compute`` (lane
``device/<slot>``) and ``download`` (device to host, lane ``d2h/<slot>``). A *slot* is
a set of buffers that one in-flight request uses; runners give each concurrent worker
its own slot so requests never share buffers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lab.errors import InputError, RunnerClosed
from lab.profiler import Profiler

__all__ = ["BaseRuntime", "Inputs", "Runtime", "TensorSpec", "check_inputs"]

#: A request's inputs: one array (single-input models) or a name -> array mapping.
Inputs = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic dimension) and dtype of a model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        """E.g. ``image: float32[batch, 1, 8, 8]``."""
        dims = ", ".join("batch" if (d is None and i == 0) else ("?" if d is None else str(d))
                         for i, d in enumerate(self.shape))
        return f"{self.name}: {self.dtype}[{dims}]"


@runtime_checkable
class Runtime(Protocol):
    """The part of a device runtime that runners and the profiler use."""

    name: str
    device: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    load_ns: int

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[np.ndarray]:
        """Run one request (or batch) through upload, compute and download; return the outputs."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for findings: runtime name, device, model, inputs, outputs, options."""
        ...

    def close(self) -> None:
        """Free the runtime's resources; later calls raise :class:`~lab.errors.RunnerClosed`."""
        ...


def check_inputs(specs: Sequence[TensorSpec], inputs: Inputs) -> dict[str, np.ndarray]:
    """Match ``inputs`` to the model's input specs, or raise an error naming expected vs received.

    Dtypes are never cast silently: a float64 array for a float32 input is an error, because a
    hidden conversion is exactly the kind of host cost this lab exists to show.

    Raises:
        InputError: wrong names, count, type, rank, shape or dtype.
    """
    if isinstance(inputs, np.ndarray):
        if len(specs) != 1:
            raise InputError(
                f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                "pass a mapping name -> array, got a single array"
            )
        feed = {specs[0].name: inputs}
    elif isinstance(inputs, Mapping):
        expected = {s.name for s in specs}
        got = set(inputs)
        if got != expected:
            raise InputError(f"expected inputs named {sorted(expected)}, got {sorted(map(str, got))}")
        feed = dict(inputs)
    else:
        raise InputError(f"expected a numpy array or a mapping name -> array, got {type(inputs).__name__}")
    for spec in specs:
        arr = feed[spec.name]
        if not isinstance(arr, np.ndarray):
            raise InputError(f"input {spec.name!r}: expected a numpy array, got {type(arr).__name__}")
        if arr.ndim != len(spec.shape):
            raise InputError(
                f"input {spec.name!r}: expected rank {len(spec.shape)} ({spec.describe()}), "
                f"got rank {arr.ndim} with shape {tuple(arr.shape)}"
            )
        for dim, (want, have) in enumerate(zip(spec.shape, arr.shape, strict=True)):
            if want is not None and want != have:
                raise InputError(
                    f"input {spec.name!r}: expected shape {spec.describe()}, got {tuple(arr.shape)} "
                    f"(dimension {dim} is {have}, expected {want})"
                )
        if arr.dtype != np.dtype(spec.dtype):
            raise InputError(
                f"input {spec.name!r}: expected dtype {spec.dtype}, got {arr.dtype} "
                "(convert in preprocessing; the lab never casts silently)"
            )
    return feed


class BaseRuntime:
    """Shared lifecycle for runtimes: closed state, the context-manager protocol, and the
    RBLN-style async calls every runtime answers: ``await runtime.async_run(x)`` and
    ``task = runtime.run(x); task.wait(timeout)``, with ``runtime.parallel`` (1, or 2 for
    double buffering) requests prepared and run at once. They go through an
    :class:`~lab.runners.async_api.AsyncRuntime` the runtime creates on first use and closes
    with itself.
    """

    name = "base"
    device = "unknown"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    load_ns = 0
    #: requests the RBLN-style ``run`` / ``async_run`` prepare and run at once (1 or 2)
    parallel = 1

    def __init__(self) -> None:
        self._closed = False
        self._async: Any = None
        self._lanes: dict[int, tuple[str, str, str]] = {}  # slot -> its (h2d, device, d2h) lane names

    def _record_stages(self, profiler: Profiler, slot: int, request_id: int, t0: int, t1: int, t2: int,
                       t3: int) -> None:
        """Record upload ``[t0, t1)``, compute ``[t1, t2)`` and download ``[t2, t3)`` on the slot's lanes.

        One ``list.extend`` of three tuples: the cheapest way to record three spans on the hot path.
        """
        lanes = self._lanes.get(slot)
        if lanes is None:
            lanes = self._lanes.setdefault(slot, (f"h2d/{slot}", f"device/{slot}", f"d2h/{slot}"))
        profiler._rows.extend(((lanes[0], "upload", request_id, t0, t1, None),
                               (lanes[1], "compute", request_id, t1, t2, None),
                               (lanes[2], "download", request_id, t2, t3, None)))

    def _async_runtime(self) -> Any:
        self._check_open()
        if self._async is None or self._async.parallel != self.parallel:
            from lab.runners.async_api import AsyncRuntime  # lazy: runners import this module

            if self._async is not None:
                self._async.close()
            self._async = AsyncRuntime(self, parallel=self.parallel)  # type: ignore[arg-type]
        return self._async

    def run(self, x: Inputs) -> Any:
        """Start one request and return a task at once; ``task.wait(timeout)`` gives its outputs."""
        return self._async_runtime().run(x)

    async def async_run(self, x: Inputs) -> list[np.ndarray]:
        """``await`` one request's outputs (the caller's event loop is never blocked)."""
        return await self._async_runtime().async_run(x)

    @property
    def is_closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerClosed(f"runtime {self.name!r} is closed; create a new one")

    def close(self) -> None:
        """Free resources (and the async helper's threads). Idempotent."""
        if getattr(self, "_async", None) is not None:
            self._async.close()
            self._async = None
        self._closed = True

    def __enter__(self) -> BaseRuntime:
        self._check_open()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Facts for findings."""
        return {
            "runtime": self.name,
            "device": self.device,
            "inputs": [s.describe() for s in self.inputs],
            "outputs": [s.describe() for s in self.outputs],
            "load_ms": self.load_ns / 1e6,
        }
