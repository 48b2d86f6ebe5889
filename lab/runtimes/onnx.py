"""ONNX Runtime on the CPU, as a lab runtime with upload / compute / download spans.

On the CPU there is no separate device memory, so the three steps are:

* ``upload``: the copy of the request's input into the slot's *bound* input buffer
  (an array ONNX Runtime reads in place through IO binding);
* ``compute``: ``run_with_iobinding`` on that buffer;
* ``download``: the copy out of ONNX Runtime's bound output buffers into fresh arrays
  the caller owns.

They are real copies that an accelerator runtime would turn into DMA transfers; on a
CPU they are memory-bandwidth bound and small, and the timeline shows exactly that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, DeviceError, InputError, LabError, ModelLoadError, RuntimeUnavailable
from lab.profiler import Profiler
from lab.runtimes.base import BaseRuntime, Inputs, TensorSpec, check_inputs

__all__ = ["OnnxRuntime", "map_ort_exceptions"]

# ONNX Runtime's tensor type strings -> numpy dtypes.
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}

# Which lab error each ONNX Runtime exception becomes (at load time / at run time).
# Every exception class onnxruntime's C++ binding defines must appear here (a test checks).
_LOAD_ERRORS = {
    "NoSuchFile": ModelLoadError, "InvalidProtobuf": ModelLoadError, "InvalidGraph": ModelLoadError,
    "NoModel": ModelLoadError, "ModelLoaded": ModelLoadError, "NotImplemented": ModelLoadError,
    "Fail": ModelLoadError, "InvalidArgument": ModelLoadError, "RuntimeException": ModelLoadError,
    "EPFail": ModelLoadError, "EngineError": ModelLoadError, "ModelLoadCanceled": ModelLoadError,
    "ModelRequiresCompilation": ModelLoadError, "NotFound": ModelLoadError, "DeviceReset": ModelLoadError,
}
_RUN_ERRORS = {
    "InvalidArgument": InputError, "Fail": DeviceError, "RuntimeException": DeviceError, "EPFail": DeviceError,
    "NotImplemented": DeviceError, "NoSuchFile": DeviceError, "NoModel": DeviceError, "ModelLoaded": DeviceError,
    "InvalidProtobuf": DeviceError, "InvalidGraph": DeviceError, "EngineError": DeviceError,
    "ModelLoadCanceled": DeviceError, "ModelRequiresCompilation": DeviceError, "NotFound": DeviceError,
    "DeviceReset": DeviceError,
}


def _import_ort() -> Any:
    try:
        import onnxruntime  # lazy: `import lab` must not import a backend
    except ImportError as exc:
        raise RuntimeUnavailable("ONNX Runtime is not installed: pip install 'inference-lab[onnx]'") from exc
    return onnxruntime


@contextmanager
def map_ort_exceptions(table: dict[str, type[LabError]], what: str,
                       default: type[LabError] = DeviceError) -> Iterator[None]:
    """Translate ONNX Runtime's exceptions into the lab's, once, at the boundary.

    Only backend calls run inside this block, so any exception there is the backend's:
    its own classes map through ``table``; others (``run_with_iobinding`` raises a plain
    ``RuntimeError``) become ``default``.
    """
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        mapped = table.get(type(exc).__name__, default)
        raise mapped(f"{what}: {type(exc).__name__}: {str(exc).strip()}") from exc


class _Slot:
    """The bound buffers of one in-flight request at one batch size."""

    __slots__ = ("binding", "buffers")

    def __init__(self, binding: Any, buffers: dict[str, np.ndarray]) -> None:
        self.binding = binding
        self.buffers = buffers


class OnnxRuntime(BaseRuntime):
    """ONNX Runtime on the CPU (``CPUExecutionProvider``).

    Args:
        model_path: an ``.onnx`` file.
        threads: intra-op threads per request (None: ONNX Runtime's default, one per core).
        clock: the clock spans are measured with.
        graph_optimization: ONNX Runtime's level: ``"all"`` (default), ``"extended"``, ``"basic"``, ``"disabled"``.

    Raises:
        ModelLoadError: the file is missing or not an ONNX model.
        RuntimeUnavailable: ONNX Runtime is not installed.
    """

    name = "onnx"

    def __init__(self, model_path: str | os.PathLike[str], *, threads: int | None = None,
                 clock: Clock = host_clock, graph_optimization: str = "all") -> None:
        super().__init__()
        ort = _import_ort()
        self._ort = ort
        self.model_path = os.fspath(model_path)
        self.clock = clock
        self.threads = threads
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1 (or None for the default), got {threads}")
        if not os.path.isfile(self.model_path):
            raise ModelLoadError(f"model file not found: {self.model_path!r}")
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        if graph_optimization not in levels:
            raise ConfigError(f"graph_optimization must be one of {sorted(levels)}, got {graph_optimization!r}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = levels[graph_optimization]
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = threads
        t0 = clock()
        with map_ort_exceptions(_LOAD_ERRORS, f"cannot load {self.model_path!r} as an ONNX model", ModelLoadError):
            self.session = ort.InferenceSession(self.model_path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.load_ns = clock() - t0
        self.inputs = tuple(self._spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(self._spec(a) for a in self.session.get_outputs())
        self.device = f"cpu ({ort.get_device()}, onnxruntime {ort.__version__})"
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._slots_lock = threading.Lock()
        self._out_names = [o.name for o in self.outputs]
        # single-input models whose only dynamic axis is the batch: validated by _fast_feed
        self._fast: tuple[str, np.dtype[Any], tuple[int, ...], int] | None = None
        if len(self.inputs) == 1 and all(d is not None for d in self.inputs[0].shape[1:]) and self.inputs[0].shape:
            spec = self.inputs[0]
            self._fast = (spec.name, np.dtype(spec.dtype), tuple(spec.shape[1:]), len(spec.shape))  # type: ignore[arg-type]
            if spec.shape[0] is not None:
                self._fast = None  # a fixed batch axis needs the full check
        # The public IOBinding wrapper re-checks WebGPU graph capture on every call (~3 us);
        # call the C++ session directly when this ONNX Runtime exposes it, else the wrapper.
        c_sess = getattr(self.session, "_sess", None)
        run_options = ort.RunOptions()
        if c_sess is not None and hasattr(c_sess, "run_with_iobinding"):
            self._run_with_iobinding = lambda b: c_sess.run_with_iobinding(b._iobinding, run_options)
        else:
            self._run_with_iobinding = self.session.run_with_iobinding

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        dtype = _ORT_TYPES.get(arg.type)
        if dtype is None:
            raise ModelLoadError(f"tensor {arg.name!r} has type {arg.type}, which the lab does not support")
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
        return TensorSpec(arg.name, shape, dtype)

    def _slot(self, slot: int, feed: dict[str, np.ndarray]) -> _Slot:
        first = next(iter(feed.values()))
        key = (slot, first.shape[0] if first.ndim else 0)
        s = self._slots.get(key)
        if s is None:
            with self._slots_lock:
                s = self._slots.get(key)
                if s is None:
                    binding = self.session.io_binding()
                    buffers = {}
                    for name, arr in feed.items():
                        buf = np.empty(arr.shape, dtype=arr.dtype)
                        binding.bind_cpu_input(name, buf)  # ONNX Runtime reads this memory in place
                        buffers[name] = buf
                    for name in self._out_names:
                        binding.bind_output(name, "cpu")
                    s = self._slots[key] = _Slot(binding, buffers)
        return s

    def _fast_feed(self, inputs: Inputs) -> dict[str, np.ndarray] | None:
        """The common case checked in a few attribute reads: one array of the right dtype and shape."""
        fast = self._fast
        if fast is not None and type(inputs) is np.ndarray and inputs.dtype == fast[1] \
                and inputs.shape[1:] == fast[2] and inputs.ndim == fast[3]:
            return {fast[0]: inputs}
        return None

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[np.ndarray]:
        """Run one request or batch; see the module docstring for what each span measures.

        Raises:
            InputError: inputs do not match the model (the runtime stays usable).
            DeviceError: ONNX Runtime failed while running.
            RunnerClosed: the runtime was closed.
        """
        if self._closed:
            self._check_open()
        feed = self._fast_feed(inputs) or check_inputs(self.inputs, inputs)
        s = self._slot(slot, feed)
        clock = self.clock
        t0 = clock()
        for name, arr in feed.items():
            np.copyto(s.buffers[name], arr)
        t1 = clock()
        try:
            self._run_with_iobinding(s.binding)
        except Exception as exc:  # only the backend call is inside: translate at the boundary
            with map_ort_exceptions(_RUN_ERRORS, f"onnxruntime failed on request {request_id}"):
                raise exc
        t2 = clock()
        outputs = s.binding.copy_outputs_to_cpu()
        t3 = clock()
        if profiler is not None and profiler.enabled:
            self._record_stages(profiler, slot, request_id, t0, t1, t2, t3)
        return outputs

    def describe(self) -> dict[str, Any]:
        """Facts for findings."""
        d = super().describe()
        d.update({"model": self.model_path, "threads": self.threads, "provider": "CPUExecutionProvider"})
        return d

    def close(self) -> None:
        """Drop the session and every bound buffer."""
        self._slots = {}
        self.session = None
        super().close()
