"""A simulated NPU (a simulator, not a device): DMA engines and PEs as real threads with queues.

For users without an NPU, :class:`SimNpuRuntime` behaves like one, so the lab's real runners,
queues and asyncio code run against a device with real concurrency. Per simulated device::

    caller thread           h2d/<d> engine        device/<pe> engines      d2h/<d> engine     caller
    quantize (host/<slot>) -> upload (DMA in) -> compute (PE, one of N) -> download (DMA out) -> dequantize

Each engine is a thread with a bounded queue that holds each job for its modelled duration
(:mod:`lab.sim.cost`) on its own device clock (:mod:`lab.sim.engine`): a job starts at
max(its arrival, the previous job's modelled end), the thread sleeps until the modelled end,
and the span recorded is the modelled one, on the host timeline.

* **Lanes**: ``h2d/<device>``, ``device/<pe>`` (PEs numbered across devices: with 2 devices of
  2 single PEs, ``device/0``-``device/3``), ``d2h/<device>``; quantize and dequantize on the
  caller's ``host/<slot>``. Queue occupancy is recorded as counters ``queue:<lane>``.
* **PE modes**: ``single``: each PE is an engine with its share of the peak, and each request
  goes to the PE that frees first (by the modelled times; ties to the lowest index);
  ``fused``: one engine (lane ``device/<device>``) with every PE's peak.
* **Several devices** (``devices=2``): independent pipelines. ``spread="least-loaded"``
  (default) sends a request to the device whose modelled backlog clears first (ties to the
  lowest index: one request at a time always uses device 0); ``spread="slot"`` uses
  ``slot % devices``.
* **Order**: the DMA-out engine copies results back in dispatch order (a ring of output
  buffers), so with requests of equal size it is also the order compute finishes.
* **Host-side conversion** (int8-only presets, float I/O): ``quantize`` is held on the thread
  that calls :meth:`~SimNpuRuntime.submit`, ``dequantize`` on the first thread that calls
  :meth:`SimFuture.result` (spans on ``host/<slot>``).
* **Modes**: ``functional`` computes the true outputs with ONNX Runtime (one session, one
  intra-op thread per run) on the PE's thread, while the PE holds the job; a run that takes
  longer than the modelled compute time is counted in :meth:`~SimNpuRuntime.stats`
  (``functional_overruns``). The outputs are the float model's: int8 quantization error is
  not simulated. ``timing`` models time only and returns :class:`AbsentOutput` placeholders,
  never fake arrays. ``auto`` is functional when ONNX Runtime is installed and the model costs
  at most :data:`AUTO_FUNCTIONAL_MAX_FLOPS` per sample, else timing.
* **Back-pressure**: every engine queue holds ``queue_size`` jobs; when the DMA-in queue is
  full, ``submit`` blocks until it has room (a full PE queue stalls the DMA-in engine, and so on).
* **Inputs** are read during the upload, as a DMA engine reads host memory: do not modify an
  input array until its request is done.
* **Faults**: with ``fail_rate`` > 0 a seeded fraction of requests fails on the PE with
  :class:`~lab.errors.DeviceError`; each request resolves exactly once and the runtime stays usable.

Real time vs virtual time: with the default clock (:class:`~lab.clock.RealTimeClock`) engines
really sleep, so runners measure real latencies; stages shorter than the threads' own Python
overhead (tens of microseconds) cannot be kept, which :meth:`~SimNpuRuntime.stats` reports.
With a :class:`~lab.clock.VirtualClock` sleeps return at once and the spans are exactly the
model (tests, what-if sweeps); pass ``arrival_ns`` to ``submit`` to schedule arrivals.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import threading
import time
from typing import Any

import numpy as np

from lab.clock import RealTimeClock, SleepingClock
from lab.errors import ConfigError, DeviceError, InputError, LabError, RequestTimeout, RunnerClosed, RuntimeUnavailable
from lab.profiler import Profiler
from lab.runtimes.base import BaseRuntime, Inputs, TensorSpec, check_inputs
from lab.sim.cost import PE_MODES, StageTimes, stage_times
from lab.sim.engine import DEFAULT_LAG_TOLERANCE_NS, Engine, SimJob
from lab.sim.presets import NpuPreset, get_preset
from lab.trace import LANE_D2H, LANE_DEVICE, LANE_H2D, LANE_HOST

__all__ = [
    "AUTO_FUNCTIONAL_MAX_FLOPS",
    "MODES",
    "SPREADS",
    "AbsentOutput",
    "AbsentOutputError",
    "SimFuture",
    "SimNpuRuntime",
]

#: ``mode="auto"`` computes real outputs when the model costs at most this many FLOPs per
#: sample: 20 MFLOP is about 2 ms of one host core at ~10 GFLOP/s, within a teaching-preset
#: compute stage. The digits CNN (0.68 MFLOP) is functional; a ResNet-50 (8 GFLOP) is timing-only.
AUTO_FUNCTIONAL_MAX_FLOPS = 20_000_000

#: ``mode`` values.
MODES = ("auto", "functional", "timing")
#: ``spread`` values: how requests are spread over several devices.
SPREADS = ("least-loaded", "slot")


class AbsentOutputError(ConfigError):
    """A timing-only output was used as an array (it has a name, shape and dtype, no values)."""


def _absent_op(name: str) -> Any:
    def op(self: AbsentOutput, *args: Any, **kwargs: Any) -> Any:
        raise self._error(name)
    op.__name__ = name
    return op


class AbsentOutput:
    """What a timing-only simulation returns in place of an output: its name, shape and dtype, no values.

    Using it as an array (``np.asarray``, arithmetic, indexing, ``argmax``) raises
    :class:`AbsentOutputError`, so no result can silently come from fake data.
    """

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements the real output would have."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes the real output would have."""
        return self.size * self.dtype.itemsize

    def _error(self, what: str) -> AbsentOutputError:
        return AbsentOutputError(
            f"output {self.name!r} ({self.dtype}{list(self.shape)}) is absent: the simulated NPU ran in "
            f"timing-only mode, which models time and computes no values (tried: {what}); create the runtime "
            "with mode='functional' to get real outputs"
        )

    def __repr__(self) -> str:
        return f"AbsentOutput({self.name!r}, shape={self.shape}, dtype={self.dtype.name!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, AbsentOutput) and (self.name, self.shape, self.dtype)
                == (other.name, other.shape, other.dtype))

    def __hash__(self) -> int:
        return hash((self.name, self.shape, self.dtype.name))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self._error("conversion to a numpy array")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise self._error(f"numpy.{getattr(ufunc, '__name__', ufunc)}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise self._error(f"numpy.{getattr(func, '__name__', func)}")

    def __getattr__(self, name: str) -> Any:
        if name in _ARRAY_METHODS:  # the ndarray methods a caller is likely to try: a clear error
            raise self._error(f".{name}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


#: ndarray attributes that raise :class:`AbsentOutputError` (other unknown names: AttributeError).
_ARRAY_METHODS = frozenset({
    "T", "argmax", "argmin", "astype", "copy", "flatten", "item", "max", "mean", "min", "ravel", "reshape",
    "round", "squeeze", "std", "sum", "tobytes", "tolist", "transpose", "view",
})

for _name in ("__getitem__", "__setitem__", "__iter__", "__len__", "__bool__", "__float__", "__int__", "__index__",
              "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__pow__", "__matmul__", "__rmatmul__", "__neg__",
              "__abs__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(AbsentOutput, _name, _absent_op(_name))
del _name


class SimFuture:
    """The pending result of one :meth:`SimNpuRuntime.submit`.

    ``done()`` is True once the device has finished (outputs downloaded, or the request
    failed); ``result()`` then also performs the host-side dequantize, once, on the calling thread.
    """

    __slots__ = ("request_id", "_event", "_lock", "_post_lock", "_outputs", "_error", "_post")

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._outputs: list[Any] | None = None
        self._error: BaseException | None = None
        self._post: Any = None

    def _set(self, outputs: list[Any] | None, error: BaseException | None) -> bool:
        """Resolve once; False (and no change) if already resolved."""
        with self._lock:
            if self._event.is_set():
                return False
            self._outputs, self._error = outputs, error
            self._event.set()
            return True

    def done(self) -> bool:
        """True when the device has finished the request (result or error)."""
        return self._event.is_set()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The request's error, or None if it succeeded (waits like :meth:`result`)."""
        if not self._event.wait(timeout):
            raise RequestTimeout(f"request {self.request_id} not done after {timeout} s")
        return self._error

    def result(self, timeout: float | None = None) -> list[Any]:
        """Wait for the outputs (``timeout`` in seconds, None: forever) and return them.

        Raises:
            RequestTimeout: not done within ``timeout`` (the request goes on; call again).
            DeviceError: the request failed on the simulated device (fault injection).
            RunnerClosed: the runtime was closed before the request finished.
        """
        if not self._event.wait(timeout):
            raise RequestTimeout(f"request {self.request_id} not done after {timeout} s")
        if self._error is not None:
            raise self._error
        if self._post is not None:
            with self._post_lock:
                post, self._post = self._post, None
                if post is not None:
                    post()
        return list(self._outputs or ())

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self._error is not None else "done")
        return f"<SimFuture request {self.request_id} {state}>"


class _Device:
    """One simulated device: its engines and the DMA-in engine's dispatch state."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.h2d: Engine | None = None
        self.pes: list[Engine] = []
        self.d2h: Engine | None = None
        self.pe_free_ns: list[int] = []  # modelled time each PE frees up (dispatch estimate)
        self.next_seq = 0
        self.backlog_ns = 0  # modelled time this device's bottleneck clears (least-loaded spread)

    @property
    def engines(self) -> list[Engine]:
        return [e for e in (self.h2d, *self.pes, self.d2h) if e is not None]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class SimNpuRuntime(BaseRuntime):
    """A simulated NPU (simulator) running an ONNX model; see the module docstring.

    Args:
        model_path: an ``.onnx`` file (its graph gives FLOPs and bytes; functional mode runs it).
        preset: a preset name (``teaching``, ``warboy``, ``atom``) or an :class:`~lab.sim.NpuPreset`.
        pe_mode: ``single`` or ``fused`` (None: the preset's ``default_pe_mode``).
        devices: independent simulated devices.
        mode: ``auto``, ``functional`` or ``timing``.
        fail_rate: fraction of requests that fail on the PE, in [0, 1) (seeded).
        seed: seeds the fault injection.
        clock: :class:`~lab.clock.RealTimeClock` (default) or :class:`~lab.clock.VirtualClock`.
        queue_size: bound of every engine's queue.
        spread: ``least-loaded`` or ``slot``: how requests are spread over devices.
        lag_tolerance_ns: how late an engine may be before a job counts as late
            (:mod:`lab.sim.engine`).
        **overrides: preset fields to replace (``launch_ns=200_000``), see
            :meth:`~lab.sim.NpuPreset.with_overrides`.

    Raises:
        ConfigError: a bad option or preset field.
        ModelLoadError: the model cannot be read.
        RuntimeUnavailable: ``mode="functional"`` without ONNX Runtime, or no ``onnx`` package.
    """

    name = "simnpu"

    def __init__(self, model_path: str | os.PathLike[str], *, preset: str | NpuPreset = "teaching",
                 pe_mode: str | None = None, devices: int = 1, mode: str = "auto", fail_rate: float = 0.0,
                 seed: int = 0, clock: SleepingClock | None = None, queue_size: int = 64,
                 spread: str = "least-loaded", lag_tolerance_ns: int = DEFAULT_LAG_TOLERANCE_NS,
                 **overrides: Any) -> None:
        super().__init__()
        t_load = time.perf_counter_ns()
        self.preset = get_preset(preset).with_overrides(**overrides)
        self.pe_mode = self.preset.default_pe_mode if pe_mode is None else pe_mode
        if self.pe_mode not in PE_MODES:
            raise ConfigError(f"pe_mode: expected one of {list(PE_MODES)} (or None), got {pe_mode!r}")
        self.devices = _check_int("devices", devices, 1)
        self.queue_size = _check_int("queue_size", queue_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.lag_tolerance_ns = _check_int("lag_tolerance_ns", lag_tolerance_ns, 0)
        if mode not in MODES:
            raise ConfigError(f"mode: expected one of {list(MODES)}, got {mode!r}")
        if spread not in SPREADS:
            raise ConfigError(f"spread: expected one of {list(SPREADS)}, got {spread!r}")
        self.spread = spread
        if isinstance(fail_rate, bool) or not isinstance(fail_rate, (int, float)) or not 0 <= fail_rate < 1:
            raise ConfigError(f"fail_rate: expected a number in [0, 1), got {fail_rate!r}")
        self.fail_rate = float(fail_rate)
        if clock is None:
            clock = RealTimeClock()
        if not callable(clock) or not callable(getattr(clock, "sleep_until", None)):
            raise ConfigError(
                "clock: expected a clock with sleep_until(deadline_ns) (lab.clock.RealTimeClock or VirtualClock), "
                f"got {type(clock).__name__}")
        self.clock = clock
        self.realtime = bool(getattr(clock, "realtime", True))

        from lab.zoo.onnx_cost import model_cost  # lazy: imports onnx

        self.model_path = os.fspath(model_path)
        self.cost = model_cost(self.model_path, batch=1)
        self.inputs = tuple(TensorSpec(t.name, t.declared_shape, t.dtype) for t in self.cost.inputs)
        self.outputs = tuple(TensorSpec(t.name, t.declared_shape, t.dtype) for t in self.cost.outputs)
        self._batch_axis = bool(self.inputs and self.inputs[0].shape and self.inputs[0].shape[0] is None)
        self.requested_mode = mode
        self.mode = self._resolve_mode(mode)
        self._session: Any = None
        if self.mode == "functional":
            self._open_session()
        self._stages: dict[int, StageTimes] = {}
        self._absent: dict[int, tuple[AbsentOutput, ...]] = {}
        self.precision = self.stages(1).precision

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._numbers = itertools.count()
        self._rng = random.Random(self.seed)
        self._pending: dict[int, SimJob] = {}
        self._host_free: dict[int, int] = {}  # virtual time: when each caller slot's host thread is free
        self._counts = {"submitted": 0, "completed": 0, "failed": 0, "closed_unfinished": 0}
        self._overruns = 0
        self._max_overrun_ns = 0
        self._stats_lock = threading.Lock()
        self._devices = [self._build_device(d) for d in range(self.devices)]
        for dev in self._devices:
            for engine in dev.engines:
                engine.start()
        pes = f"{self.preset.num_pes} PEs {self.pe_mode}"
        where = f"{self.devices} devices x {pes}" if self.devices > 1 else pes
        timing = ", timing-only" if self.mode == "timing" else ""
        self.device = f"simulated NPU (simulator): {self.preset.name} preset, {where}{timing}"
        self.load_ns = time.perf_counter_ns() - t_load

    # -- setup -----------------------------------------------------------------------
    def _resolve_mode(self, mode: str) -> str:
        if mode != "auto":
            return mode
        try:
            import onnxruntime  # noqa: F401 - only asking whether it is installed
        except ImportError:
            return "timing"
        return "functional" if self.cost.flops <= AUTO_FUNCTIONAL_MAX_FLOPS else "timing"

    def _open_session(self) -> None:
        from lab.errors import ModelLoadError
        from lab.runtimes.onnx import _LOAD_ERRORS, _import_ort, map_ort_exceptions

        try:
            ort = _import_ort()
        except RuntimeUnavailable as exc:
            raise RuntimeUnavailable(f"mode='functional' needs ONNX Runtime ({exc}); or use mode='timing'") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # PE threads run concurrently, one core each
        opts.log_severity_level = 3
        with map_ort_exceptions(_LOAD_ERRORS, f"cannot load {self.model_path!r} as an ONNX model", ModelLoadError):
            self._session = ort.InferenceSession(self.model_path, sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        self._out_names = [o.name for o in self.outputs]

    def _build_device(self, d: int) -> _Device:
        dev = _Device(d)
        common: dict[str, Any] = {"clock": self.clock, "queue_size": self.queue_size,
                                  "lag_tolerance_ns": self.lag_tolerance_ns, "closing": self._closing}
        num_engines = self.preset.num_pes if self.pe_mode == "single" else 1
        dev.d2h = Engine(f"{LANE_D2H}/{d}", "download", duration=lambda j: j.stages.download_ns,
                         forward=self._complete, work=lambda j: {"bytes": j.stages.download_bytes},
                         in_order=True, **common)
        for k in range(num_engines):
            lane = f"{LANE_DEVICE}/{d * num_engines + k}"
            dev.pes.append(Engine(lane, "compute", duration=lambda j: j.stages.compute_ns, forward=dev.d2h.put,
                                  work=self._compute, **common))
        dev.pe_free_ns = [0] * num_engines
        dev.h2d = Engine(f"{LANE_H2D}/{d}", "upload", duration=lambda j: j.stages.upload_ns,
                         forward=functools.partial(self._dispatch, dev), work=self._upload, **common)
        return dev

    # -- the cost model --------------------------------------------------------------
    def stages(self, batch: int = 1) -> StageTimes:
        """The modelled :class:`~lab.sim.cost.StageTimes` of one request of ``batch`` samples."""
        st = self._stages.get(batch)
        if st is None:
            if not self._batch_axis and batch != 1:
                raise ConfigError(f"batch: the model has a fixed batch dimension, expected 1, got {batch!r}")
            st = self._stages[batch] = stage_times(self.cost, self.preset, pe_mode=self.pe_mode, batch=batch)
        return st

    def modelled_stage_ns(self, batch: int = 1) -> dict[str, int]:
        """Modelled ns of ``quantize``, ``upload``, ``compute``, ``download``, ``dequantize`` for one request."""
        return self.stages(batch).as_dict()

    # -- engine callbacks (run on engine threads) ------------------------------------
    def _upload(self, job: SimJob) -> dict[str, Any]:
        if self._session is not None:  # the DMA reads the caller's arrays now: keep a copy for compute
            job.feed = {k: np.array(v, copy=True) for k, v in job.feed.items()}
        else:
            job.feed = None
        return {"bytes": job.stages.upload_bytes}

    def _dispatch(self, dev: _Device, job: SimJob) -> None:
        """After the upload: send the job to the PE that frees first (modelled; ties to the lowest index)."""
        ready = job.ready_ns
        best, best_start = 0, -1
        for k, free in enumerate(dev.pe_free_ns):
            start = ready if ready > free else free
            if best_start < 0 or start < best_start:
                best, best_start = k, start
        dev.pe_free_ns[best] = best_start + job.stages.compute_ns
        job.pe = best
        job.seq = dev.next_seq
        dev.next_seq += 1
        dev.pes[best].put(job)

    def _compute(self, job: SimJob) -> dict[str, Any]:
        attrs: dict[str, Any] = {"flops": job.stages.flops}
        if job.fail:
            lane = f"{LANE_DEVICE}/{job.device * len(self._devices[job.device].pes) + job.pe}"
            job.error = DeviceError(
                f"simulated device fault on {job.label} ({lane}; injected with fail_rate={self.fail_rate}, "
                f"seed={self.seed})")
            attrs["error"] = "DeviceError"
            return attrs
        if self._session is None:
            job.outputs = list(self._absent_outputs(job.batch))
            return attrs
        from lab.runtimes.onnx import _RUN_ERRORS, map_ort_exceptions

        t0 = time.perf_counter_ns()  # host time is always real time, whatever the simulation clock
        try:
            with map_ort_exceptions(_RUN_ERRORS, f"onnxruntime failed on {job.label}"):
                job.outputs = self._session.run(self._out_names, job.feed)
        except LabError as exc:
            job.error = exc
            attrs["error"] = type(exc).__name__
            return attrs
        host_ns = time.perf_counter_ns() - t0
        over = host_ns - job.stages.compute_ns
        if over > 0:
            with self._stats_lock:
                self._overruns += 1
                if over > self._max_overrun_ns:
                    self._max_overrun_ns = over
        job.feed = None
        return attrs

    def _complete(self, job: SimJob) -> None:
        """The last engine is done with ``job``: resolve its future exactly once."""
        with self._lock:
            if self._pending.pop(job.number, None) is None:
                return  # already failed by close()
            if job.error is not None:
                job.future._set(None, job.error)
                self._counts["failed"] += 1
            else:
                post = None
                if job.stages.dequantize_ns:
                    post = functools.partial(self._dequantize, job)
                job.future._post = post
                job.future._set(job.outputs, None)
                self._counts["completed"] += 1
            job.feed = None
            if not self._pending:
                self._idle.notify_all()

    def _absent_outputs(self, batch: int) -> tuple[AbsentOutput, ...]:
        out = self._absent.get(batch)
        if out is None:
            out = tuple(
                AbsentOutput(t.name, (batch, *t.shape[1:]) if t.declared_shape[:1] == (None,) else t.shape, t.dtype)
                for t in self.cost.outputs)
            self._absent[batch] = out
        return out

    # -- host-side stages (caller threads) -------------------------------------------
    def _host_start(self, slot: int, earliest: int, duration: int) -> int:
        """Start of a host stage on ``slot``'s thread: now in real time, modelled in virtual time."""
        if self.realtime:
            now = self.clock()
            return now if now > earliest else earliest
        with self._lock:
            free = self._host_free.get(slot, 0)
            start = earliest if earliest > free else free
            self._host_free[slot] = start + duration
        return start

    def _dequantize(self, job: SimJob) -> None:
        st = job.stages
        start = self._host_start(job.slot, job.ready_ns, st.dequantize_ns)
        end = start + st.dequantize_ns
        self.clock.sleep_until(end)
        if job.profiler is not None:
            job.profiler.add(f"{LANE_HOST}/{job.slot}", "dequantize", job.request_id, start, end,
                             {"bytes": st.dequantize_bytes})

    # -- the Runtime API -------------------------------------------------------------
    def submit(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0, profiler: Profiler | None = None,
               arrival_ns: int | None = None) -> SimFuture:
        """Enqueue one request (or batch) and return at once with its :class:`SimFuture`.

        Returns after the host-side quantize (int8-only presets, float inputs), which is held on
        the calling thread, and once the request is in the DMA-in queue: before any DMA or
        compute. Blocks while that queue is full.

        Args:
            inputs: one array or a name -> array mapping, matching :attr:`inputs` exactly.
            request_id: the id spans and errors carry.
            slot: the caller's slot: host lane ``host/<slot>`` (and the device with ``spread="slot"``).
            profiler: where spans and counters go (None: not recorded).
            arrival_ns: when the request arrives (default: now). With a virtual clock this
                schedules arrivals; in real time a future arrival waits until then.

        Raises:
            InputError: the inputs do not match the model (nothing is queued).
            RunnerClosed: the runtime is closed (or was closed while this call waited for room).
        """
        if self._closed:
            self._check_open()
        feed = check_inputs(self.inputs, inputs)
        batch = int(next(iter(feed.values())).shape[0]) if self._batch_axis else 1
        if batch < 1:
            raise InputError(f"input {self.inputs[0].name!r}: expected a batch of at least 1 sample, got 0")
        st = self.stages(batch)
        prof = profiler if profiler is not None and profiler.enabled else None
        clock = self.clock
        if arrival_ns is None:
            arrival_ns = clock()
        elif self.realtime and arrival_ns > clock():
            clock.sleep_until(arrival_ns)
        start = self._host_start(slot, arrival_ns, st.quantize_ns)
        ready = start + st.quantize_ns
        if st.quantize_ns:
            clock.sleep_until(ready)
            if prof is not None:
                prof.add(f"{LANE_HOST}/{slot}", "quantize", request_id, start, ready, {"bytes": st.quantize_bytes})
        future = SimFuture(request_id)
        with self._lock:
            if self._closed:
                raise RunnerClosed(f"runtime {self.name!r} is closed; create a new one")
            number = next(self._numbers)
            fail = self.fail_rate > 0 and self._rng.random() < self.fail_rate
            dev = self._choose_device(slot, ready, st)
            job = SimJob(number, request_id, ready_ns=ready, stages=st, slot=slot, device=dev.index, batch=batch,
                         feed=feed, profiler=prof, fail=fail, future=future)
            self._pending[number] = job
            self._counts["submitted"] += 1
        assert dev.h2d is not None
        if not dev.h2d.put(job):
            raise RunnerClosed(f"runtime {self.name!r} was closed while {job.label} waited for queue space")
        return future

    def _choose_device(self, slot: int, ready: int, st: StageTimes) -> _Device:
        devs = self._devices
        if len(devs) == 1:
            return devs[0]
        if self.spread == "slot":
            return devs[slot % len(devs)]
        best = min(devs, key=lambda d: (max(ready, d.backlog_ns), d.index))
        engines = len(best.pes)
        bottleneck = max(st.upload_ns, st.compute_ns // engines, st.download_ns)
        best.backlog_ns = max(ready, best.backlog_ns) + bottleneck
        return best

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[Any]:
        """``submit(...).result()``: run one request through every stage and return its outputs.

        Returns:
            Numpy arrays in functional mode; :class:`AbsentOutput` placeholders in timing mode.

        Raises:
            InputError: inputs do not match the model.
            DeviceError: an injected fault (the runtime stays usable).
            RunnerClosed: the runtime was closed.
        """
        return self.submit(inputs, request_id=request_id, slot=slot, profiler=profiler).result()

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until every request submitted so far has left the device (result or error).

        Raises:
            RequestTimeout: still busy after ``timeout`` seconds.
            RunnerClosed: the runtime is closed.
        """
        if self._closed:
            self._check_open()
        with self._lock:
            if not self._idle.wait_for(lambda: not self._pending, timeout):
                raise RequestTimeout(f"{len(self._pending)} requests still on the simulated NPU after {timeout} s")

    @property
    def num_inflight(self) -> int:
        """Requests submitted and not yet finished by the device."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        """Whether the host kept up with the modelled time, and request counts.

        Returns:
            ``submitted``, ``completed``, ``failed``, ``closed_unfinished``, ``inflight``;
            ``late_jobs`` and ``max_lateness_ns`` over all engines; ``resyncs`` (times an
            engine re-anchored its device clock because the host fell behind);
            ``functional_overruns`` and ``max_functional_overrun_ns`` (ONNX Runtime took longer
            than the modelled compute); ``host_kept_up`` (no late job, no overrun);
            ``engines``: lane -> per-engine numbers; ``clock``: ``real time`` or ``virtual``.
        """
        engines = {e.lane: e.stats() for dev in self._devices for e in dev.engines}
        with self._lock:
            counts = dict(self._counts)
            inflight = len(self._pending)
        late = sum(e["late_jobs"] for e in engines.values())
        return {
            **counts, "inflight": inflight,
            "late_jobs": late,
            "max_lateness_ns": max((e["max_lateness_ns"] for e in engines.values()), default=0),
            "resyncs": sum(e["resyncs"] for e in engines.values()),
            "functional_overruns": self._overruns,
            "max_functional_overrun_ns": self._max_overrun_ns,
            "lag_tolerance_ns": self.lag_tolerance_ns,
            "host_kept_up": late == 0 and self._overruns == 0,
            "clock": "real time" if self.realtime else "virtual",
            "engines": engines,
        }

    def reset_stats(self) -> None:
        """Zero lateness, overrun and request counters, e.g. between two measured runs (call while idle)."""
        for dev in self._devices:
            for engine in dev.engines:
                engine.reset_stats()
        with self._stats_lock:
            self._overruns = self._max_overrun_ns = 0
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)

    @property
    def lanes(self) -> list[str]:
        """The engines' lanes, in pipeline order per device."""
        return [e.lane for dev in self._devices for e in (dev.h2d, *dev.pes, dev.d2h) if e is not None]

    def describe(self) -> dict[str, Any]:
        """Facts for findings: it is a simulator, its preset, modes, model cost and modelled stages."""
        d = super().describe()
        st = self.stages(1)
        d.update({
            "simulator": True,
            "model": self.model_path,
            "preset": self.preset.to_dict(),
            "pe_mode": self.pe_mode,
            "devices": self.devices,
            "mode": self.mode,
            "requested_mode": self.requested_mode,
            "precision": self.precision,
            "fail_rate": self.fail_rate,
            "seed": self.seed,
            "queue_size": self.queue_size,
            "spread": self.spread,
            "clock": "real time" if self.realtime else "virtual",
            "lanes": self.lanes,
            "model_cost": {"flops": self.cost.flops, "macs": self.cost.macs, "input_bytes": self.cost.input_bytes,
                           "output_bytes": self.cost.output_bytes, "params": self.cost.params,
                           "params_bytes": self.cost.params_bytes, "num_nodes": self.cost.num_nodes},
            "stages_ns": st.as_dict(),
            "stage_bytes": {"upload": st.upload_bytes, "download": st.download_bytes,
                            "quantize": st.quantize_bytes, "dequantize": st.dequantize_bytes},
        })
        return d

    def close(self) -> None:
        """Fail unfinished requests with :class:`~lab.errors.RunnerClosed`, stop and join every engine.

        Each engine finishes at most the job it is holding (real time: it wakes within 20 ms);
        idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.values())
            self._pending.clear()
            for job in pending:
                job.future._set(None, RunnerClosed(f"{job.label} was not finished when the simulated NPU was closed"))
            self._counts["closed_unfinished"] += len(pending)
            self._idle.notify_all()
        self._closing.set()
        for dev in self._devices:
            for engine in dev.engines:  # pipeline order: an engine's forwards land before its successor stops
                engine.stop()
        self._session = None
        super().close()

    def __enter__(self) -> SimNpuRuntime:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
