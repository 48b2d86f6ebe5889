"""PyTorch on a CUDA GPU: pinned buffers, a copy stream each way, a compute stream, events per stage.

One request on slot ``s`` goes through::

    host/<s>    stage_in   numpy input -> the slot's pinned host input buffer   (host memcpy)
    host/<s>    launch     enqueue the three stages below (returns at once)
    h2d/<s>     upload     pinned -> the slot's device input buffer, H2D stream  (DMA)
    device/<s>  compute    model(*inputs) on the compute stream, after the upload's end event
    d2h/<s>     download   device output -> the request's pinned output, D2H stream, after
                           the compute's end event                              (DMA)
    host/<s>    stage_out  pinned output -> fresh numpy arrays the caller owns  (host memcpy)

The device spans are CUDA event pairs mapped onto the host clock
(:class:`~lab.cuda_clock.CudaEventClock`), so they sit on the same timeline as the host
spans. Each slot has its own pinned host and device input buffers; each request gets its
pinned output from PyTorch's caching host allocator (reused once its copy is done). With
two slots, the upload of one request runs while the other computes and a download
drains: the copy engines and the SMs work at the same time, for real.

Reusing a slot waits only for what its buffers still serve, through events: the host
waits (``event.synchronize``) for the slot's previous *upload* before overwriting the
pinned input, and the H2D stream waits (``wait_event``, no host block) for the slot's
previous *compute* before overwriting the device input. That is the back-pressure of
double buffering: with two slots the host runs at most two requests ahead of the device.

``submit()`` returns a :class:`CudaJob` at once; ``job.result()`` waits for it;
``synchronize()`` waits for everything in flight; ``infer()`` is ``submit().result()``.
torch is imported lazily: ``import lab`` never imports it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from types import MappingProxyType
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, LabError, ModelLoadError, RequestTimeout
from lab.profiler import Profiler
from lab.runtimes.base import BaseRuntime, Inputs, TensorSpec, check_inputs
from lab.runtimes.torch import (
    TorchConstructors,
    _output_specs,
    _specs_from_example,
    example_feed,
    map_torch_exceptions,
    model_outputs,
    numpy_dtype,
    set_torch_threads,
)

__all__ = [
    "EVENT_SPAN_ATTRS",
    "STAGE_NAMES",
    "CudaJob",
    "TorchCudaRuntime",
    "stage_spans",
    "throughput_bound_per_s",
]

#: Device stage names, in pipeline order, and the lane kind each is drawn on.
STAGE_NAMES: tuple[tuple[str, str], ...] = (("h2d", "upload"), ("device", "compute"), ("d2h", "download"))
#: Attributes of every span whose times come from CUDA events (shared, read-only).
EVENT_SPAN_ATTRS: Mapping[str, Any] = MappingProxyType({"clock": "cuda-event"})
#: How long ``CudaJob.result(timeout)`` sleeps between polls of the final event.
_POLL_S = 50e-6


def stage_spans(slot: int, request_id: int, event_ns: Sequence[int],
                attrs: Mapping[str, Any] | None = EVENT_SPAN_ATTRS) -> list[tuple[Any, ...]]:
    """The three device span rows of one request from its six event times (host ns).

    Args:
        slot: the request's slot (lanes ``h2d/<slot>``, ``device/<slot>``, ``d2h/<slot>``).
        request_id: the request.
        event_ns: upload start, upload end, compute start, compute end, download start, download end.
        attrs: attributes of each span.

    Returns:
        ``(lane, name, request_id, start_ns, end_ns, attrs)`` rows, as :meth:`Profiler.add` takes them.

    A stage whose mapped end precedes its start (float32 rounding of ``elapsed_time`` far
    from the anchor) is clamped to zero length rather than drawn backwards.

    Raises:
        ValueError: not six times.
    """
    if len(event_ns) != 6:
        raise ValueError(f"expected 6 event times (start/end of upload, compute, download), got {len(event_ns)}")
    rows = []
    for i, (kind, name) in enumerate(STAGE_NAMES):
        start = int(event_ns[2 * i])
        end = max(start, int(event_ns[2 * i + 1]))
        rows.append((f"{kind}/{slot}", name, request_id, start, end, attrs))
    return rows


def throughput_bound_per_s(h2d_ns: float, compute_ns: float, d2h_ns: float, host_ns: float = 0.0) -> float:
    """Requests per second a perfect pipeline reaches: ``1 / max(stage times)``.

    With a copy stream each way and a compute stream the stages overlap, so the slowest
    one sets the pace; run serially the pace is ``1 / sum``. ``host_ns`` is the host's
    own per-request work (staging copies, launch), a stage too.

    Raises:
        ValueError: a stage time is negative, or all are zero.
    """
    stages = (h2d_ns, compute_ns, d2h_ns, host_ns)
    if min(stages) < 0:
        raise ValueError(f"stage times must be >= 0, got {stages}")
    slowest = max(stages)
    if slowest <= 0:
        raise ValueError("at least one stage time must be > 0")
    return 1e9 / slowest


# The two calls below have no CPU equivalent; they are module functions so a test can stand in a
# synchronous CPU fake for CUDA and exercise the runtime's own logic on a machine without a GPU.
def _pinned_empty(torch: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """A page-locked host tensor (from PyTorch's caching host allocator)."""
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def _record_stream(tensor: Any, stream: Any) -> None:
    """Tell the caching allocator ``tensor`` is in use on ``stream`` until the work queued there now is done."""
    tensor.record_stream(stream)


class _SlotState:
    """The input buffers of one slot (per input shapes) and the last request that used them."""

    __slots__ = ("lock", "last", "inputs", "lane")

    def __init__(self, slot: int) -> None:
        self.lock = threading.Lock()
        self.last: CudaJob | None = None
        self.inputs: dict[tuple[tuple[int, ...], ...], tuple[list[Any], list[Any], list[np.ndarray]]] = {}
        self.lane = f"host/{slot}"


class CudaJob:
    """One submitted request: :meth:`result` waits for it and returns its outputs.

    Attributes:
        request_id: the request's id.
        slot: the slot whose input buffers it uses.
        event_ns: once finished, the six stage event times on the host clock (upload start/end,
            compute start/end, download start/end); None before.
    """

    __slots__ = ("_runtime", "request_id", "slot", "_lane", "_events", "_out_pinned", "_profiler", "_copy",
                 "_lock", "_outputs", "_error", "_finished", "event_ns")

    def __init__(self, runtime: TorchCudaRuntime, request_id: int, slot: int, lane: str, events: list[Any],
                 out_pinned: list[Any], profiler: Profiler | None, copy: bool) -> None:
        self._runtime = runtime
        self.request_id = request_id
        self.slot = slot
        self._lane = lane
        self._events: list[Any] | None = events
        self._out_pinned = out_pinned
        self._profiler = profiler
        self._copy = copy
        self._lock = threading.Lock()
        self._outputs: list[np.ndarray] | None = None
        self._error: BaseException | None = None
        self._finished = False
        self.event_ns: tuple[int, ...] | None = None

    def done(self) -> bool:
        """True when the request's download has completed (``result()`` will not wait on the device)."""
        events = self._events
        if self._finished or events is None:
            return True
        # if the job finished meanwhile, its events may serve another job: trust _finished then
        return bool(events[5].query()) or self._finished

    def result(self, timeout: float | None = None) -> list[np.ndarray]:
        """Wait for the request and return its outputs.

        With ``copy_outputs=True`` (the default) they are fresh pageable arrays; with
        False, numpy views of this request's own pinned output tensors (kept alive by the
        arrays; pinned memory stays locked while you hold them).

        Raises:
            RequestTimeout: not done within ``timeout`` seconds (the job keeps running).
            DeviceError: CUDA failed while running it.
        """
        if timeout is not None:
            deadline = time.monotonic() + timeout
            while not self.done():
                if time.monotonic() >= deadline:
                    raise RequestTimeout(f"request {self.request_id} (slot {self.slot}) not done after {timeout} s")
                time.sleep(_POLL_S)
        self._finish()
        if self._error is not None:
            raise self._error
        assert self._outputs is not None
        return self._outputs

    # -- used by the runtime ---------------------------------------------------------------
    # Waits on the device happen outside the job's lock, so a thread asking for the result never
    # holds up one that is enqueueing; the lock guards only the events, which go back to the
    # runtime's pool when the job finishes (a released event may already serve another job).
    def _wait_uploaded(self) -> None:
        """Host wait until this job's upload is done (its slot's pinned input may be overwritten)."""
        events = self._events
        if not self._finished and events is not None:
            events[1].synchronize()  # at worst, a reused event makes this wait for a later upload

    def _gate(self, stream: Any) -> None:
        """Make ``stream`` wait (on the device) until this job's compute is done (its device input is free)."""
        with self._lock:  # held: waiting on a reused event could chain a stream behind its own future work
            if not self._finished and self._events is not None:
                stream.wait_event(self._events[3])

    def _finish(self) -> None:
        """Wait for the download, map the event times, record spans, copy the outputs out (once)."""
        events = self._events
        if self._finished or events is None:
            return
        try:
            events[5].synchronize()  # outside the lock; errors are raised again below, translated
        except Exception:  # noqa: BLE001
            pass
        with self._lock:
            if self._finished:
                return
            rt = self._runtime
            try:
                with map_torch_exceptions(f"CUDA failed on request {self.request_id}"):
                    events[5].synchronize()
                    to_host = rt.event_clock.to_host_ns
                    self.event_ns = tuple(to_host(e) for e in events)
                clock = rt.clock
                t0 = clock()
                views = [p.numpy() for p in self._out_pinned]
                self._outputs = [v.copy() for v in views] if self._copy else views
                t1 = clock()
                if self._copy:
                    self._out_pinned = []  # back to the caching host allocator
                prof = self._profiler
                if prof is not None and prof.enabled:
                    rows = stage_spans(self.slot, self.request_id, self.event_ns)
                    if self._copy:
                        rows.append((self._lane, "stage_out", self.request_id, t0, t1, None))
                    prof._rows.extend(rows)
            except LabError as exc:
                self._error = exc
            finally:
                self._finished = True
                self._events = None
                rt._release_events(events)


class TorchCudaRuntime(TorchConstructors, BaseRuntime):
    """A PyTorch model on a CUDA GPU with copy/compute streams and per-slot double buffering.

    Args:
        model: the ``nn.Module`` (moved to the device in place and put in eval mode).
        inputs: input specs (first dimension None: dynamic batch), or
        example_inputs: example arrays whose shapes give the specs.
        outputs: output specs; None: found by running one zero batch at load.
        device: CUDA device (None: the current one; an index; ``"cuda:1"``).
        num_slots: slots ``submit(slot=None)`` rotates over (2: double buffering). Runners
            may pass any slot number; each gets its own buffers on first use.
        compile: as for :class:`~lab.runtimes.torch.TorchRuntime` (``"reduce-overhead"``
            brings CUDA graphs with their own stream handling: time it, don't assume).
        threads: PyTorch's host intra-op threads, set now and restored by :meth:`close`, as for
            the CPU runtime (accepted so one configuration drives every device; GPU work ignores it).
        clock: the host clock; device event times are mapped onto it.
        model_name: a name for findings.

    Raises:
        RuntimeUnavailable: PyTorch is missing or sees no CUDA device.
        ConfigError: bad options.
        ModelLoadError: the model cannot be moved, compiled or run on the example.
    """

    name = "torch-cuda"

    def __init__(self, model: Any, *, inputs: Sequence[TensorSpec] | None = None,
                 example_inputs: Inputs | None = None, outputs: Sequence[TensorSpec] | None = None,
                 device: Any = None, num_slots: int = 2, compile: bool | str = False,
                 threads: int | None = None, clock: Clock = host_clock, model_name: str | None = None) -> None:
        super().__init__()
        from lab.cuda_clock import import_torch_cuda  # lazy: imports torch

        torch, dev = import_torch_cuda(device)  # RuntimeUnavailable without CUDA, before anything else
        self._torch = torch
        self.torch_device = dev
        self.clock = clock
        if num_slots < 1:
            raise ConfigError(f"num_slots must be >= 1, got {num_slots}")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__} "
                              "(for a workload use TorchCudaRuntime.from_workload(name))")
        if (inputs is None) == (example_inputs is None):
            raise ConfigError("pass exactly one of inputs= (TensorSpecs) or example_inputs= (numpy arrays)")
        self.inputs = tuple(inputs) if inputs is not None else _specs_from_example(example_inputs)  # type: ignore[arg-type]
        self.num_slots = num_slots
        self.compile = compile
        self.model_name = model_name or type(model).__name__
        self.threads = threads
        self._restore = ExitStack()
        self._restore.enter_context(set_torch_threads(threads))  # undone by close()
        try:
            self._load(model, dev, example_inputs, outputs)
        except BaseException:
            self._restore.close()
            raise
        self._slots: dict[int, _SlotState] = {}
        self._slots_lock = threading.Lock()
        self._enqueue_lock = threading.Lock()  # one request's enqueues stay together on the shared streams
        self._rotation = itertools.cycle(range(num_slots))
        self._pending: deque[CudaJob] = deque()  # submitted, not dropped yet; oldest first
        self._pending_lock = threading.Lock()
        self._free_events: list[list[Any]] = []
        self._events_lock = threading.Lock()

    def _load(self, model: Any, dev: Any, example_inputs: Inputs | None,
              outputs: Sequence[TensorSpec] | None) -> None:
        from lab.cuda_clock import CudaEventClock

        torch, clock = self._torch, self.clock
        t0 = clock()
        with map_torch_exceptions(f"cannot move {self.model_name} to {dev}", ModelLoadError):
            self.module = model.to(dev).eval()
            self._h2d = torch.cuda.Stream(dev)
            self._compute = torch.cuda.Stream(dev)
            self._d2h = torch.cuda.Stream(dev)
        if self.compile:
            mode = None if self.compile is True else str(self.compile)
            with map_torch_exceptions(f"torch.compile failed for {self.model_name}", ModelLoadError):
                self._forward = torch.compile(self.module, mode=mode)
        else:
            self._forward = self.module
        if outputs is None:
            feed = example_feed(self.inputs) if example_inputs is None else check_inputs(self.inputs, example_inputs)
            arrays = [feed[s.name] for s in self.inputs]
            batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
            with map_torch_exceptions(f"{self.model_name} failed on its example input", ModelLoadError), \
                    torch.inference_mode():
                outs = model_outputs(self._forward(*[torch.from_numpy(np.array(a)).to(dev) for a in arrays]))
                torch.cuda.synchronize(dev)
            self.outputs = _output_specs(outs, batch, None)
        else:
            self.outputs = tuple(outputs)
        self.event_clock = CudaEventClock(dev, clock=clock)  # anchored after the load's device work
        self.load_ns = clock() - t0
        props = torch.cuda.get_device_properties(dev)
        self.device = f"{dev} ({props.name}, torch {torch.__version__}, CUDA {torch.version.cuda})"

    @classmethod
    def _check_device(cls, options: dict[str, Any]) -> None:
        from lab.cuda_clock import import_torch_cuda  # lazy: imports torch

        import_torch_cuda(options.get("device"))  # RuntimeUnavailable without CUDA, before the weights are read

    # -- buffers and events ------------------------------------------------------------------
    def _state(self, slot: int) -> _SlotState:
        s = self._slots.get(slot)
        if s is None:
            if slot < 0:
                raise ConfigError(f"slot must be >= 0, got {slot}")
            with self._slots_lock:
                s = self._slots.setdefault(slot, _SlotState(slot))
        return s

    def _input_buffers(self, s: _SlotState, arrays: list[np.ndarray]) -> tuple[list[Any], list[Any], list[np.ndarray]]:
        key = tuple(a.shape for a in arrays)
        bufs = s.inputs.get(key)
        if bufs is None:
            torch = self._torch
            with map_torch_exceptions("cannot allocate the slot's input buffers"):
                pinned = [_pinned_empty(torch, a.shape, getattr(torch, str(a.dtype))) for a in arrays]
                device = [torch.empty(a.shape, dtype=p.dtype, device=self.torch_device) for a, p in
                          zip(arrays, pinned, strict=True)]
            bufs = s.inputs[key] = (pinned, device, [p.numpy() for p in pinned])
        return bufs

    def _acquire_events(self) -> list[Any]:
        with self._events_lock:
            if self._free_events:
                return self._free_events.pop()
        return [self._torch.cuda.Event(enable_timing=True) for _ in range(6)]

    def _release_events(self, events: list[Any]) -> None:
        with self._events_lock:
            self._free_events.append(events)

    def _finish_done(self) -> None:
        """Drop finished jobs from the head of the pending list; never waits on the device.

        Jobs are finished by whoever calls ``result()``, so each one's output copy shows on its
        own thread. Only when results go uncollected (more than two jobs per slot pending) does
        this finish completed jobs itself, so their pinned outputs do not pile up.
        """
        limit = 2 * max(self.num_slots, len(self._slots))
        while True:
            with self._pending_lock:
                if not self._pending:
                    return
                job = self._pending[0]
                if not job._finished:
                    if len(self._pending) <= limit or not job.done():
                        return
                self._pending.popleft()
            job._finish()

    # -- requests ----------------------------------------------------------------------
    def submit(self, inputs: Inputs, *, request_id: int = -1, slot: int | None = None,
               profiler: Profiler | None = None, copy_outputs: bool = True) -> CudaJob:
        """Queue one request and return once it is staged and enqueued (not when it is done).

        Args:
            inputs: as for ``infer``; checked before anything is queued.
            request_id: the request's id in spans.
            slot: whose input buffers to use; None: the next of ``num_slots`` in rotation.
            profiler: receives the host spans now and the device spans when the job finishes.
            copy_outputs: False: ``result()`` returns views of the request's own pinned outputs
                (no host copy; see :meth:`CudaJob.result`).

        Raises:
            InputError: inputs do not match the model (nothing was queued; the runtime stays usable).
            DeviceError: PyTorch or CUDA failed while queueing.
            RunnerClosed: the runtime was closed.
        """
        self._check_open()
        feed = check_inputs(self.inputs, inputs)
        arrays = [feed[spec.name] for spec in self.inputs]
        if slot is None:
            with self._pending_lock:
                slot = next(self._rotation)
        s = self._state(slot)
        torch, clock = self._torch, self.clock
        with s.lock:
            pinned_in, device_in, views = self._input_buffers(s, arrays)
            prev = s.last
            if prev is not None:
                prev._wait_uploaded()  # the pinned input still feeds the previous upload until then
            t0 = clock()
            for view, arr in zip(views, arrays, strict=True):
                np.copyto(view, arr)
            t1 = clock()
            ev = self._acquire_events()
            try:
                with self._enqueue_lock, torch.inference_mode(), \
                        map_torch_exceptions(f"torch failed while queueing request {request_id}"):
                    if prev is not None:
                        prev._gate(self._h2d)  # the device input still feeds the previous compute
                    ev[0].record(self._h2d)
                    with torch.cuda.stream(self._h2d):
                        for d, p in zip(device_in, pinned_in, strict=True):
                            d.copy_(p, non_blocking=True)
                    ev[1].record(self._h2d)
                    self._compute.wait_event(ev[1])
                    ev[2].record(self._compute)
                    with torch.cuda.stream(self._compute):
                        outs = model_outputs(self._forward(*device_in))
                    ev[3].record(self._compute)
                    for o in outs:
                        numpy_dtype(o.dtype)  # refuse what numpy cannot hold before copying it
                    self._d2h.wait_event(ev[3])
                    ev[4].record(self._d2h)
                    out_pinned = []
                    with torch.cuda.stream(self._d2h):
                        for o in outs:
                            p = _pinned_empty(torch, tuple(o.shape), o.dtype)
                            p.copy_(o, non_blocking=True)
                            _record_stream(o, self._d2h)  # the allocator must not reuse it before the copy
                            out_pinned.append(p)
                    ev[5].record(self._d2h)
            except BaseException:
                self._release_events(ev)
                raise
            t2 = clock()
            job = CudaJob(self, request_id, slot, s.lane, ev, out_pinned, profiler, copy_outputs)
            s.last = job
            with self._pending_lock:
                self._pending.append(job)
        if profiler is not None and profiler.enabled:
            profiler._rows.extend(((s.lane, "stage_in", request_id, t0, t1, None),
                                   (s.lane, "launch", request_id, t1, t2, None)))
        self._finish_done()  # keeps the pending list (and the pinned outputs it may hold) short
        return job

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[np.ndarray]:
        """``submit(...).result()``: run one request or batch and return fresh output arrays.

        Raises:
            InputError: inputs do not match the model (the runtime stays usable).
            DeviceError: PyTorch or CUDA failed.
            RunnerClosed: the runtime was closed.
        """
        return self.submit(inputs, request_id=request_id, slot=slot, profiler=profiler).result()

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until every request submitted so far has left the device (result or error), then the device.

        Each request is finished on the way (spans recorded, outputs copied out); a failed
        request keeps its error for its own ``result()``. Re-anchors the event clock when
        its anchor is older than :data:`~lab.cuda_clock.MAX_ANCHOR_AGE_NS` and nothing is pending.

        Raises:
            RequestTimeout: requests still on the device after ``timeout`` seconds.
            DeviceError: CUDA failed while synchronising the device.
            RunnerClosed: the runtime is closed.
        """
        self._check_open()
        from lab.cuda_clock import MAX_ANCHOR_AGE_NS

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._pending_lock:
                if not self._pending:
                    break
                job = self._pending[0]
            if deadline is not None:
                while not job.done():
                    if time.monotonic() >= deadline:
                        raise RequestTimeout(f"{len(self._pending)} request(s) still on {self.torch_device} "
                                             f"after {timeout} s")
                    time.sleep(_POLL_S)
            job._finish()
            with self._pending_lock:
                if self._pending and self._pending[0] is job:
                    self._pending.popleft()
        with map_torch_exceptions("CUDA failed while synchronising"):
            self._torch.cuda.synchronize(self.torch_device)
            with self._pending_lock:
                if not self._pending and self.event_clock.anchor_age_ns > MAX_ANCHOR_AGE_NS:
                    self.event_clock.anchor()

    def describe(self) -> dict[str, Any]:
        """Facts for findings."""
        d = super().describe()
        d.update({
            "model": self.model_name, "num_slots": self.num_slots, "compile": self.compile,
            "threads": self.threads, "streams": ["h2d", "compute", "d2h"], "pinned_host_buffers": True,
            "torch": self._torch.__version__, "cuda": self._torch.version.cuda,
            **{f"event_{k}": v for k, v in self.event_clock.describe().items()},
        })
        return d

    def close(self) -> None:
        """Finish what is in flight, free the buffers and streams. Idempotent."""
        if not self._closed:
            try:
                self.synchronize()
            except LabError:
                pass  # closing must not fail because a request did; that request reports it itself
            self._slots = {}
            self._free_events = []
            self._restore.close()
        super().close()
