"""PyTorch eager (or ``torch.compile``) on the CPU, as a lab runtime with upload / compute / download spans.

As for :mod:`lab.runtimes.onnx`, the three steps on a CPU are real copies that an
accelerator runtime would turn into transfers:

* ``upload``: copy of the request's arrays into the slot's preallocated input tensors;
* ``compute``: ``model(*inputs)`` under ``torch.inference_mode()``;
* ``download``: copy of the output tensors into fresh numpy arrays the caller owns.

Intra-op threads are process-wide in PyTorch: a runtime created with ``threads=n``
sets them on creation and restores the previous count on :meth:`TorchRuntime.close`
(:func:`set_torch_threads`, as ``torch.utils.benchmark`` does), so close runtimes in the
reverse order of creation when several set different counts.

torch is imported lazily: ``import lab`` never imports it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, DeviceError, LabError, ModelLoadError, RuntimeUnavailable
from lab.profiler import Profiler
from lab.runtimes.base import BaseRuntime, Inputs, TensorSpec, check_inputs

__all__ = [
    "TorchConstructors",
    "TORCH_WORKLOADS",
    "TorchRuntime",
    "TorchWorkload",
    "create_torch_runtime",
    "example_feed",
    "import_torch",
    "load_state_dict_model",
    "load_workload_model",
    "map_torch_exceptions",
    "model_outputs",
    "numpy_dtype",
    "set_torch_threads",
]

# torch dtypes a numpy array can hold (bfloat16 cannot: a model returning it is refused at load)
_NUMPY_DTYPES = {
    "float32": "float32", "float64": "float64", "float16": "float16", "int8": "int8", "uint8": "uint8",
    "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool",
}


def import_torch() -> Any:
    """Import torch, or raise :class:`~lab.errors.RuntimeUnavailable` saying how to install it."""
    try:
        import torch  # lazy: `import lab` must not import a backend
    except ImportError as exc:
        raise RuntimeUnavailable("PyTorch is not installed: pip install 'inference-lab[torch]'") from exc
    return torch


def numpy_dtype(dtype: Any) -> str:
    """The numpy dtype name of a torch dtype (``torch.float32`` -> ``"float32"``).

    Raises:
        ModelLoadError: numpy has no such dtype (``bfloat16``, complex, quantized).
    """
    name = str(dtype).removeprefix("torch.")
    try:
        return _NUMPY_DTYPES[name]
    except KeyError:
        raise ModelLoadError(f"tensor dtype {name} has no numpy equivalent; the lab supports "
                             f"{sorted(_NUMPY_DTYPES)} (cast in the model, e.g. .float())") from None


@contextmanager
def set_torch_threads(threads: int | None) -> Iterator[None]:
    """Set PyTorch's intra-op thread count inside the block, restore the previous count after.

    ``None`` leaves the count alone (like ``torch.utils.benchmark``'s ``set_torch_threads``).

    Raises:
        ConfigError: ``threads < 1``.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"threads must be >= 1 (or None for PyTorch's default), got {threads}")
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def map_torch_exceptions(what: str, error: type[LabError] = DeviceError) -> Iterator[None]:
    """Translate PyTorch's exceptions into ``error``, once, at the boundary.

    PyTorch raises ``RuntimeError`` (and subclasses such as ``torch.OutOfMemoryError``,
    ``torch.AcceleratorError``), ``ValueError``, ``TypeError``, ``IndexError`` and
    ``NotImplementedError`` from kernels and modules; ``torch.compile`` raises its own
    ``RuntimeError`` subclasses. Only backend calls run inside this block, so any
    non-lab exception there is the backend's.
    """
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        raise error(f"{what}: {type(exc).__name__}: {str(exc).strip()}") from exc


def example_feed(specs: Sequence[TensorSpec], batch: int = 1) -> dict[str, np.ndarray]:
    """Zero arrays matching ``specs`` (dynamic dimensions: ``batch`` for the first, else 1)."""
    return {
        s.name: np.zeros(tuple((batch if i == 0 else 1) if d is None else d for i, d in enumerate(s.shape)),
                         dtype=s.dtype)
        for s in specs
    }


def _specs_from_example(example: Inputs) -> tuple[TensorSpec, ...]:
    """Input specs from example arrays: names kept (``input`` for a bare array), the batch axis dynamic."""
    feed = {"input": example} if isinstance(example, np.ndarray) else dict(example)
    specs = []
    for name, arr in feed.items():
        if not isinstance(arr, np.ndarray):
            raise ConfigError(f"example input {name!r}: expected a numpy array, got {type(arr).__name__}")
        numpy_dtype(arr.dtype)  # refuse dtypes the lab cannot round-trip
        shape: tuple[int | None, ...] = (None, *arr.shape[1:]) if arr.ndim else ()
        specs.append(TensorSpec(str(name), shape, str(arr.dtype)))
    return tuple(specs)


def model_outputs(out: Any) -> list[Any]:
    """The model's result as a list of tensors: a tensor, a tuple/list of tensors, or a dict (values in order).

    Raises:
        DeviceError: anything else (the runtime cannot download it).
    """
    torch = import_torch()
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    raise DeviceError(f"the model returned {type(out).__name__}; expected a tensor, or a tuple, list or dict "
                      "of tensors")


def _output_specs(outs: Sequence[Any], batch: int, names: Sequence[str] | None) -> tuple[TensorSpec, ...]:
    if names is None:
        names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    specs = []
    for name, o in zip(names, outs, strict=True):
        shape = tuple(None if (i == 0 and d == batch) else int(d) for i, d in enumerate(o.shape))
        specs.append(TensorSpec(name, shape, numpy_dtype(o.dtype)))
    return tuple(specs)


# -- workloads PyTorch can build -----------------------------------------------------------
@dataclass(frozen=True)
class TorchWorkload:
    """How to build a workload's model in PyTorch: the builder, its weights and its tensors.

    Attributes:
        builder: returns the untrained ``nn.Module``.
        state_file: the ``state_dict`` file name, in the workload's data directory.
        onnx_file: the ONNX export of the same model (so a runtime factory given the
            workload's ONNX path can find the PyTorch weights next to it).
        inputs: input specs (names match the ONNX model's, so runtimes are interchangeable).
        outputs: output specs.
        data_dir: default data directory.
    """

    builder: Callable[[], Any]
    state_file: str
    onnx_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    data_dir: Path


def _digits() -> TorchWorkload:
    from lab.zoo import digits  # lazy: keeps this module importable without the zoo's data

    return TorchWorkload(
        builder=digits.build_digits_cnn, state_file=digits.STATE_FILE, onnx_file=digits.MODEL_FILE,
        inputs=(TensorSpec("image", (None, 1, *digits.IMAGE_SHAPE), "float32"),),
        outputs=(TensorSpec("logits", (None, digits.NUM_CLASSES), "float32"),),
        data_dir=digits.DATA_DIR,
    )


#: name -> zero-argument factory of a :class:`TorchWorkload`.
TORCH_WORKLOADS: dict[str, Callable[[], TorchWorkload]] = {"digits": _digits}


def load_workload_model(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[Any, TorchWorkload]:
    """Build workload ``name``'s model and load its shipped weights (CPU, eval mode).

    Raises:
        ConfigError: no PyTorch workload of that name.
        ModelLoadError: the weights file is missing or does not fit the model.
    """
    try:
        wl = TORCH_WORKLOADS[name]()
    except KeyError:
        raise ConfigError(f"unknown PyTorch workload {name!r}: expected one of {sorted(TORCH_WORKLOADS)}") from None
    root = Path(data_dir) if data_dir is not None else wl.data_dir
    model = load_state_dict_model(root / wl.state_file, wl.builder)
    return model, wl


def load_state_dict_model(path: str | os.PathLike[str], builder: Callable[[], Any]) -> Any:
    """``builder()`` with the weights of the ``state_dict`` file at ``path`` (CPU, eval mode).

    Raises:
        ModelLoadError: the file is missing, not a state dict, or its tensors do not fit the model.
    """
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"PyTorch weights not found: {str(path)!r}")
    with map_torch_exceptions(f"cannot read {str(path)!r} as a PyTorch state_dict", ModelLoadError):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{str(path)!r} holds a {type(state).__name__}, expected a state_dict (name -> tensor)")
    model = builder()
    with map_torch_exceptions(f"the weights in {str(path)!r} do not fit the model", ModelLoadError):
        model.load_state_dict(state)
    return model.eval()


class _Slot:
    """The preallocated input tensors of one in-flight request at one batch size, and numpy views of them."""

    __slots__ = ("tensors", "views")

    def __init__(self, tensors: list[Any], views: list[np.ndarray]) -> None:
        self.tensors = tensors
        self.views = views


class TorchConstructors:
    """``from_workload`` / ``from_state_dict`` for the PyTorch runtimes (CPU and CUDA).

    ``load_ns`` covers building the model and reading the weights as well as the
    constructor's own work. Subclasses check their device first in :meth:`_check_device`.
    """

    @classmethod
    def _check_device(cls, options: dict[str, Any]) -> None:
        """Raise before any weights are read if the device is missing (nothing to check on the CPU)."""

    @classmethod
    def from_workload(cls, name: str = "digits", *, data_dir: str | os.PathLike[str] | None = None,
                      **options: Any) -> Any:
        """The runtime for a shipped workload, built in PyTorch with its weights (e.g. ``"digits"``).

        Raises:
            ConfigError: unknown workload.
            ModelLoadError: the weights are missing or do not fit.
            RuntimeUnavailable: the device is missing (checked first).
        """
        cls._check_device(options)
        clock = options.get("clock", host_clock)
        t0 = clock()
        model, wl = load_workload_model(name, data_dir)
        t1 = clock()
        rt = cls(model, inputs=wl.inputs, outputs=wl.outputs, model_name=name, **options)  # type: ignore[call-arg]
        rt.load_ns += t1 - t0
        return rt

    @classmethod
    def from_state_dict(cls, path: str | os.PathLike[str], builder: Callable[[], Any], **options: Any) -> Any:
        """``builder()`` with the weights stored at ``path``; ``options`` as for the constructor.

        Raises:
            ModelLoadError: the file is missing or its weights do not fit the model.
            RuntimeUnavailable: the device is missing (checked first).
        """
        cls._check_device(options)
        clock = options.get("clock", host_clock)
        t0 = clock()
        model = load_state_dict_model(path, builder)
        t1 = clock()
        options.setdefault("model_name", Path(path).stem)
        rt = cls(model, **options)  # type: ignore[call-arg]
        rt.load_ns += t1 - t0
        return rt


class TorchRuntime(TorchConstructors, BaseRuntime):
    """A PyTorch model on the CPU (eager, or ``torch.compile``), behind the lab's runtime protocol.

    Args:
        model: the ``nn.Module`` (put in eval mode; not copied).
        inputs: input specs, in ``forward``'s argument order (first dimension None: dynamic batch).
        example_inputs: instead of ``inputs``: example arrays (a bare array is named ``input``) whose
            shapes give the specs, with a dynamic batch axis.
        outputs: output specs; None: found by running one zero batch at load (``load_ns`` then
            includes that first forward, so pass them to keep the first request cold).
        threads: intra-op threads, set now and restored by :meth:`close` (None: leave as is).
        compile: False (eager), True (``torch.compile`` default mode) or a ``torch.compile`` mode
            name (``"reduce-overhead"``, ``"max-autotune"``); compilation happens on the first call
            (and again for a new batch size, until dynamo marks the batch axis dynamic).
        clock: the clock spans are measured with.
        model_name: a name for findings (default: the module's class name).

    Raises:
        ConfigError: neither or both of ``inputs``/``example_inputs``, or ``threads < 1``.
        ModelLoadError: the model cannot be compiled or run on the example (with ``outputs=None``).
        RuntimeUnavailable: PyTorch is not installed.

    Example::

        with TorchRuntime.from_workload("digits", threads=1) as rt:
            logits = rt.infer(images)[0]
    """

    name = "torch"

    def __init__(self, model: Any, *, inputs: Sequence[TensorSpec] | None = None,
                 example_inputs: Inputs | None = None, outputs: Sequence[TensorSpec] | None = None,
                 threads: int | None = None, compile: bool | str = False, clock: Clock = host_clock,
                 model_name: str | None = None) -> None:
        super().__init__()
        torch = import_torch()
        self._torch = torch
        self.clock = clock
        self.threads = threads
        self.compile = compile
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__} "
                              "(for a workload use TorchRuntime.from_workload(name))")
        if (inputs is None) == (example_inputs is None):
            raise ConfigError("pass exactly one of inputs= (TensorSpecs) or example_inputs= (numpy arrays)")
        self.inputs = tuple(inputs) if inputs is not None else _specs_from_example(example_inputs)  # type: ignore[arg-type]
        self.model_name = model_name or type(model).__name__
        self._restore = ExitStack()
        self._restore.enter_context(set_torch_threads(threads))  # undone by close()
        try:
            t0 = clock()
            self.module = model.eval()
            self._forward = self._compiled(model) if compile else model
            if outputs is None:
                feed = example_feed(self.inputs) if example_inputs is None \
                    else check_inputs(self.inputs, example_inputs)
                arrays = [feed[s.name] for s in self.inputs]
                batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
                with map_torch_exceptions(f"{self.model_name} failed on its example input", ModelLoadError), \
                        torch.inference_mode():
                    outs = model_outputs(self._forward(*[torch.from_numpy(np.array(a)) for a in arrays]))
                self.outputs = _output_specs(outs, batch, None)
            else:
                self.outputs = tuple(outputs)
            self.load_ns = clock() - t0
        except BaseException:
            self._restore.close()
            raise
        self.device = f"cpu (torch {torch.__version__}, {torch.get_num_threads()} intra-op threads)"
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._slots_lock = threading.Lock()
        self._inference_mode = torch.inference_mode
        self._tensor_type = torch.Tensor
        self._fast: tuple[np.dtype[Any], tuple[int | None, ...], int] | None = None
        if len(self.inputs) == 1 and self.inputs[0].shape and self.inputs[0].shape[0] is None \
                and all(d is not None for d in self.inputs[0].shape[1:]):
            spec = self.inputs[0]
            self._fast = (np.dtype(spec.dtype), tuple(spec.shape[1:]), len(spec.shape))

    def _compiled(self, model: Any) -> Any:
        torch = self._torch
        mode = None if self.compile is True else str(self.compile)
        with map_torch_exceptions(f"torch.compile failed for {self.model_name}", ModelLoadError):
            return torch.compile(model, mode=mode)

    # -- requests ----------------------------------------------------------------------
    def _slot(self, slot: int, arrays: list[np.ndarray]) -> _Slot:
        key = (slot, arrays[0].shape[0] if arrays and arrays[0].ndim else 0)
        s = self._slots.get(key)
        if s is None:
            with self._slots_lock:
                s = self._slots.get(key)
                if s is None:
                    torch = self._torch
                    tensors = [torch.from_numpy(np.empty(a.shape, dtype=a.dtype)) for a in arrays]
                    s = self._slots[key] = _Slot(tensors, [t.numpy() for t in tensors])
        return s

    def _arrays(self, inputs: Inputs) -> list[np.ndarray]:
        fast = self._fast
        if fast is not None and type(inputs) is np.ndarray and inputs.dtype == fast[0] \
                and inputs.shape[1:] == fast[1] and inputs.ndim == fast[2]:
            return [inputs]
        feed = check_inputs(self.inputs, inputs)
        return [feed[s.name] for s in self.inputs]

    def infer(self, inputs: Inputs, *, request_id: int = -1, slot: int = 0,
              profiler: Profiler | None = None) -> list[np.ndarray]:
        """Run one request or batch; see the module docstring for what each span measures.

        Raises:
            InputError: inputs do not match the model (the runtime stays usable).
            DeviceError: PyTorch failed while running (the runtime stays usable).
            RunnerClosed: the runtime was closed.
        """
        if self._closed:
            self._check_open()
        arrays = self._arrays(inputs)
        s = self._slot(slot, arrays)
        clock = self.clock
        t0 = clock()
        for view, arr in zip(s.views, arrays, strict=True):
            np.copyto(view, arr)
        t1 = clock()
        try:
            with self._inference_mode():
                out = self._forward(*s.tensors)
        except Exception as exc:  # only the backend call is inside: translate at the boundary
            with map_torch_exceptions(f"torch failed on request {request_id}"):
                raise exc
        t2 = clock()
        if type(out) is self._tensor_type:
            outputs = [out.numpy().copy()]
        else:
            outputs = [o.numpy().copy() for o in model_outputs(out)]
        t3 = clock()
        if profiler is not None and profiler.enabled:
            self._record_stages(profiler, slot, request_id, t0, t1, t2, t3)
        return outputs

    def synchronize(self) -> None:
        """Nothing to wait for: CPU eager work is done when ``infer`` returns (kept for one API)."""
        self._check_open()

    def describe(self) -> dict[str, Any]:
        """Facts for findings."""
        d = super().describe()
        d.update({
            "model": self.model_name, "threads": self.threads, "compile": self.compile,
            "torch": self._torch.__version__,
            "num_parameters": int(sum(p.numel() for p in self.module.parameters())),
        })
        return d

    def close(self) -> None:
        """Drop the buffers and restore the thread count this runtime set. Idempotent."""
        if not self._closed:
            self._slots = {}
            self._restore.close()
        super().close()


def create_torch_runtime(model: Any, *, cuda: bool = False, **options: Any) -> BaseRuntime:
    """The registry's factory: a PyTorch runtime from a module, a workload name or a workload's file.

    Args:
        model: an ``nn.Module`` (``inputs=`` or ``example_inputs=`` in ``options``); a workload
            name (``"digits"``); or the path of a workload's ONNX export or ``state_dict``
            (``data/digits_cnn.onnx``): the PyTorch weights next to it are loaded.
        cuda: :class:`~lab.runtimes.torch_cuda.TorchCudaRuntime` instead of the CPU runtime.
        options: constructor options.

    Raises:
        ModelLoadError: a path that is no known workload's file.
    """
    if cuda:
        from lab.runtimes.torch_cuda import TorchCudaRuntime

        cls: Any = TorchCudaRuntime
    else:
        cls = TorchRuntime
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text in TORCH_WORKLOADS:
            return cls.from_workload(text, **options)  # type: ignore[no-any-return]
        path = Path(text)
        for name, factory in TORCH_WORKLOADS.items():
            wl = factory()
            if path.name in (wl.onnx_file, wl.state_file):
                return cls.from_workload(name, data_dir=path.parent, **options)  # type: ignore[no-any-return]
        raise ModelLoadError(
            f"the PyTorch runtime cannot load {text!r}: it builds known workloads "
            f"({sorted(TORCH_WORKLOADS)}) from their state_dict, or takes an nn.Module "
            "(TorchRuntime(module, inputs=...) or TorchRuntime.from_state_dict(path, builder, inputs=...))"
        )
    return cls(model, **options)  # type: ignore[no-any-return]
