"""Seed 003's op suite: its ops (three stacked layers) and its sweeps, timed on PyTorch eager and ONNX Runtime.

An :class:`OpCase` is one small model: an op (:data:`OPS`) applied ``depth`` times to an
input shape, with the op's parameters. From it the lab builds, with the same seeded weights,

* a PyTorch eager callable (``torch.nn.functional`` calls on the weights, run under
  ``torch.inference_mode()`` with the intra-op thread count of
  :func:`lab.runtimes.torch.set_torch_threads`), and
* an ONNX graph written with ``onnx.helper`` (no exporter: seconds saved per shape), run by a
  bare ONNX Runtime session with its input and output bound once (IO binding), so the
  timed call is the graph alone.

Both compute the same function (a test checks their outputs agree). Every latency is a
:func:`lab.measure` (first call apart, warm-up, blocks sized against clock overhead,
median and IQR). Counting conventions (:mod:`lab.zoo.onnx_cost`'s, so the counts agree):

* FLOPs: a multiply-add is 2 FLOPs for Conv and Linear (biases not counted); ReLU,
  BatchNorm, LayerNorm and Upsample count 1 FLOP per output element (an approximation);
  layout ops (Transpose, Reshape, PixelShuffle) count 0;
* bytes: the least memory traffic of each layer, input + weights + output, float32,
  summed over the layers (what a roofline needs); a PyTorch ``reshape`` of a contiguous
  tensor is a view and moves nothing, which its latency shows.

The op table uses the seed's shapes: ``(4, 4096)`` for Linear (4096 -> 4096), and the seed's
NHWC ``(1, 32, 32, 128)`` as NCHW ``(1, 128, 32, 32)`` for the rest (LayerNorm and Transpose
take the NHWC tensor as written: LayerNorm over its 128 channels, Transpose NHWC -> NCHW).
The seed does not give the conv's kernel: the lab uses 3x3, padding 1, 128 -> 128 channels;
Upsample doubles H and W each layer. PyTorch's ``permute`` is a view, so the lab's
Transpose materialises it (``.contiguous()``), as ONNX Runtime and TFLite do.

ONNX Runtime's optimiser folds chained layout ops (three Transposes become one Identity),
which would time nothing: layout cases therefore run with graph optimisations disabled
(column ``ort_optimization``); every other case runs at ``"all"`` (NCHWc convolutions).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lab.bench import seed003
from lab.clock import host_clock
from lab.errors import ConfigError, RuntimeUnavailable
from lab.timing import Measurement, measure
from lab.trace import Span, Trace

__all__ = [
    "BACKENDS",
    "BYTES_PER_ELEMENT",
    "DIM_QUANT_MAX_PENALTY",
    "LAYOUT_OPS",
    "OPS",
    "RATE_GAIN_MIN",
    "RATIO_PENALTY_MIN",
    "SEED_DEPTH",
    "SEED_LINEAR_SHAPE",
    "SEED_OPS",
    "SEED_TENSOR_SHAPE",
    "STUDIES",
    "MeasureOptions",
    "OpCase",
    "available_backends",
    "case_output",
    "channel_ratio_cases",
    "channel_ratio_sweep",
    "compare_channel_ratio",
    "compare_kernel_size",
    "compare_op_table",
    "conv_cases",
    "conv_sweep",
    "default_backends",
    "dim_quantization_cases",
    "dim_quantization_sweep",
    "kernel_size_cases",
    "kernel_size_sweep",
    "layout_cases",
    "layout_sweep",
    "layout_table",
    "linear_cases",
    "linear_sweep",
    "make_case",
    "measure_onnx",
    "measure_torch",
    "measurement_row",
    "measurement_trace",
    "op_table",
    "op_verdicts",
    "ort_executed_ops",
    "padding_cases",
    "padding_overhead",
    "padding_sweep",
    "run_cases",
    "run_study",
    "seed_op_cases",
    "study_cases",
]

#: The runtimes the studies run on: PyTorch eager (CPU) and ONNX Runtime (CPU).
BACKENDS: tuple[str, ...] = ("torch", "onnx")
#: Every op an :class:`OpCase` can hold.
OPS: tuple[str, ...] = ("conv2d", "relu", "linear", "batchnorm", "layernorm", "upsample_bilinear",
                        "upsample_nearest", "transpose", "reshape", "pixel_shuffle")
#: Ops that only move data (0 FLOPs).
LAYOUT_OPS = frozenset({"transpose", "reshape", "pixel_shuffle"})
#: The seed's op table, in its column order.
SEED_OPS: tuple[str, ...] = ("conv2d", "relu", "linear", "batchnorm", "layernorm", "upsample_bilinear",
                             "upsample_nearest", "transpose")
#: The seed stacks three layers of each op (single-op models were distorted on TFLite).
SEED_DEPTH = 3
#: The seed's Linear input: batch 4, 4096 features.
SEED_LINEAR_SHAPE: tuple[int, int] = (4, 4096)
#: The seed's ``(1, 32, 32, 128)`` NHWC tensor as PyTorch's NCHW.
SEED_TENSOR_SHAPE: tuple[int, int, int, int] = (1, 128, 32, 32)
#: float32.
BYTES_PER_ELEMENT = 4
_OPSET = 17
_IR_VERSION = 8  # onnx 1.23 writes IR 11+ by default; ONNX Runtime builds may read only up to an older one


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


# --------------------------------------------------------------------------- op kinds
class _Kind:
    """How one op kind is shaped, counted, and built in PyTorch and ONNX (a layer of an :class:`OpCase`)."""

    name = ""
    rank: tuple[int, ...] = (4,)
    defaults: dict[str, Any] = {}

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        if len(shape) not in self.rank:
            raise ConfigError(f"{self.name}: expected an input of rank {' or '.join(map(str, self.rank))}, "
                              f"received shape {shape}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        return shape

    def weights(self, shape: tuple[int, ...], p: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def weight_elements(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 0

    def constants(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {}

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return _numel(out)  # 1 FLOP per output element (lab.zoo.onnx_cost's rule)

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        raise NotImplementedError

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        raise NotImplementedError


class _Conv(_Kind):
    name = "conv2d"
    defaults = {"out_channels": None, "kernel": 3, "padding": 0, "stride": 1}

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        super().check(shape, p)
        if p["kernel"] < 1 or p["padding"] < 0 or p["stride"] < 1:
            raise ConfigError(f"conv2d: expected kernel >= 1, padding >= 0, stride >= 1, received {dict(p)}")
        if min(self.out_shape(shape, p)[2:]) < 1:
            raise ConfigError(f"conv2d: a {p['kernel']}x{p['kernel']} kernel does not fit input {shape} "
                              f"with padding {p['padding']}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        n, c, h, w = shape
        k, pad, s = p["kernel"], p["padding"], p["stride"]
        cout = p["out_channels"] or c
        return (n, cout, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)

    def weights(self, shape: tuple[int, ...], p: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        cin, k = shape[1], p["kernel"]
        cout = p["out_channels"] or cin
        std = 1.0 / math.sqrt(cin * k * k)  # keeps activations near unit variance through the stack
        return {"weight": (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32),
                "bias": (rng.standard_normal(cout) * 0.01).astype(np.float32)}

    def weight_elements(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> int:
        cout = p["out_channels"] or shape[1]
        return cout * shape[1] * p["kernel"] ** 2 + cout

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 2 * _numel(out) * shape[1] * p["kernel"] ** 2

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        conv, weight, bias = torch.nn.functional.conv2d, w["weight"], w["bias"]
        stride, pad = p["stride"], p["padding"]
        return lambda x: conv(x, weight, bias, stride, pad)

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        k, pad, s = p["kernel"], p["padding"], p["stride"]
        return [helper.make_node("Conv", [x, names["weight"], names["bias"]], [y], kernel_shape=[k, k],
                                 pads=[pad] * 4, strides=[s, s])]


class _Relu(_Kind):
    name = "relu"
    rank = (2, 3, 4)

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        return torch.nn.functional.relu  # type: ignore[no-any-return]

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("Relu", [x], [y])]


class _Linear(_Kind):
    name = "linear"
    rank = (2,)
    defaults = {"out_features": None}

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        return (shape[0], p["out_features"] or shape[1])

    def weights(self, shape: tuple[int, ...], p: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        k = shape[1]
        n = p["out_features"] or k
        return {"weight": (rng.standard_normal((n, k)) / math.sqrt(k)).astype(np.float32),
                "bias": (rng.standard_normal(n) * 0.01).astype(np.float32)}

    def weight_elements(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> int:
        n = p["out_features"] or shape[1]
        return n * shape[1] + n

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 2 * shape[0] * shape[1] * out[1]

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        linear, weight, bias = torch.nn.functional.linear, w["weight"], w["bias"]
        return lambda x: linear(x, weight, bias)

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("Gemm", [x, names["weight"], names["bias"]], [y], transB=1)]


class _BatchNorm(_Kind):
    name = "batchnorm"
    eps = 1e-5

    def weights(self, shape: tuple[int, ...], p: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = shape[1]
        return {"scale": (1 + 0.1 * rng.standard_normal(c)).astype(np.float32),
                "bias": (0.1 * rng.standard_normal(c)).astype(np.float32),
                "mean": (0.1 * rng.standard_normal(c)).astype(np.float32),
                "var": (1 + 0.1 * np.abs(rng.standard_normal(c))).astype(np.float32)}

    def weight_elements(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 4 * shape[1]

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        bn, eps = torch.nn.functional.batch_norm, self.eps
        mean, var, scale, bias = w["mean"], w["var"], w["scale"], w["bias"]
        return lambda x: bn(x, mean, var, scale, bias, False, 0.0, eps)

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("BatchNormalization", [x, names["scale"], names["bias"], names["mean"],
                                                        names["var"]], [y], epsilon=self.eps)]


class _LayerNorm(_Kind):
    name = "layernorm"
    rank = (2, 3, 4)
    eps = 1e-5

    def weights(self, shape: tuple[int, ...], p: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = shape[-1]
        return {"scale": (1 + 0.1 * rng.standard_normal(c)).astype(np.float32),
                "bias": (0.1 * rng.standard_normal(c)).astype(np.float32)}

    def weight_elements(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 2 * shape[-1]

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        ln, eps, scale, bias = torch.nn.functional.layer_norm, self.eps, w["scale"], w["bias"]
        normalized = (int(scale.shape[0]),)
        return lambda x: ln(x, normalized, scale, bias, eps)

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("LayerNormalization", [x, names["scale"], names["bias"]], [y], axis=-1,
                                 epsilon=self.eps)]


class _Upsample(_Kind):
    defaults = {"scale": 2}

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"upsample_{mode}"

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        super().check(shape, p)
        if not isinstance(p["scale"], int) or p["scale"] < 1:
            raise ConfigError(f"{self.name}: expected an integer scale >= 1, received {p['scale']!r}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        n, c, h, w = shape
        return (n, c, h * p["scale"], w * p["scale"])

    def constants(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        s = float(p["scale"])
        return {"scales": np.array([1.0, 1.0, s, s], dtype=np.float32)}

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        interpolate, s = torch.nn.functional.interpolate, float(p["scale"])
        if self.mode == "bilinear":
            return lambda x: interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        return lambda x: interpolate(x, scale_factor=s, mode="nearest")

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        if self.mode == "bilinear":  # = torch's bilinear with align_corners=False
            attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        else:  # = torch's "nearest"
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        return [helper.make_node("Resize", [x, "", names["scales"]], [y], **attrs)]


class _Transpose(_Kind):
    name = "transpose"
    rank = (2, 3, 4)
    defaults = {"perm": (0, 3, 1, 2)}  # NHWC -> NCHW, the seed's transpose

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        super().check(shape, p)
        if sorted(p["perm"]) != list(range(len(shape))):
            raise ConfigError(f"transpose: perm {p['perm']} is not a permutation of the {len(shape)} axes of {shape}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(shape[i] for i in p["perm"])

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 0

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        perm = tuple(p["perm"])
        return lambda x: x.permute(perm).contiguous()  # permute alone is a view: materialise it

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("Transpose", [x], [y], perm=list(p["perm"]))]


class _Reshape(_Kind):
    name = "reshape"
    rank = (1, 2, 3, 4)
    defaults = {"shape": (-1, 1)}  # the seed's (1, 64, 64, C) -> (C * 64 * 64, 1)

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        super().check(shape, p)
        target = tuple(p["shape"])
        known = _numel([d for d in target if d != -1])
        if target.count(-1) > 1 or known == 0 or (_numel(shape) % known if -1 in target else _numel(shape) != known):
            raise ConfigError(f"reshape: cannot reshape {shape} to {target}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        target = tuple(int(d) for d in p["shape"])
        known = _numel([d for d in target if d != -1])
        return tuple(_numel(shape) // known if d == -1 else d for d in target)

    def constants(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"shape": np.array(self.out_shape(shape, p), dtype=np.int64)}

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 0

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        target = tuple(p["shape"])
        return lambda x: x.reshape(target)  # a view of a contiguous tensor: nothing moves

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("Reshape", [x, names["shape"]], [y])]


class _PixelShuffle(_Kind):
    name = "pixel_shuffle"
    defaults = {"factor": 2}

    def check(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> None:
        super().check(shape, p)
        r = p["factor"]
        if not isinstance(r, int) or r < 1 or shape[1] % (r * r):
            raise ConfigError(f"pixel_shuffle: channels {shape[1]} must be a multiple of factor**2 = {r * r}")

    def out_shape(self, shape: tuple[int, ...], p: Mapping[str, Any]) -> tuple[int, ...]:
        n, c, h, w = shape
        r = p["factor"]
        return (n, c // (r * r), h * r, w * r)

    def flops(self, shape: tuple[int, ...], out: tuple[int, ...], p: Mapping[str, Any]) -> int:
        return 0

    def torch_layer(self, torch: Any, w: Mapping[str, Any], p: Mapping[str, Any]) -> Callable[[Any], Any]:
        shuffle, r = torch.nn.functional.pixel_shuffle, p["factor"]
        return lambda x: shuffle(x, r)

    def onnx_nodes(self, helper: Any, x: str, y: str, names: Mapping[str, str], p: Mapping[str, Any]) -> list[Any]:
        return [helper.make_node("DepthToSpace", [x], [y], blocksize=p["factor"], mode="CRD")]  # = pixel_shuffle


_KINDS: dict[str, _Kind] = {k.name: k for k in (
    _Conv(), _Relu(), _Linear(), _BatchNorm(), _LayerNorm(), _Upsample("bilinear"), _Upsample("nearest"),
    _Transpose(), _Reshape(), _PixelShuffle(),
)}


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class OpCase:
    """One small model: ``op`` applied ``depth`` times in a row, starting from ``input_shape``.

    Build with :func:`make_case` (it fills in the op's defaults and checks the shapes).

    Attributes:
        op: one of :data:`OPS`.
        input_shape: the input (NCHW for convolutions, ``(M, K)`` for Linear).
        params: the op's parameters as ``(name, value)`` pairs (see :func:`make_case`).
        depth: layers in a row (each takes the previous one's output).
        study: the study it belongs to (a column of the results).
        label: a short name for tables and traces.
        coords: the sweep coordinates, ``(name, value)`` pairs that become columns (``("sweep", "K")``).
    """

    op: str
    input_shape: tuple[int, ...]
    params: tuple[tuple[str, Any], ...] = ()
    depth: int = 1
    study: str = ""
    label: str = ""
    coords: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def kind(self) -> _Kind:
        """The op's implementation."""
        return _KINDS[self.op]

    @property
    def p(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def is_layout(self) -> bool:
        """True for ops that only move data (:data:`LAYOUT_OPS`)."""
        return self.op in LAYOUT_OPS

    @property
    def layer_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(input shape, output shape)`` of every layer."""
        shapes, shape, p = [], self.input_shape, self.p
        for _ in range(self.depth):
            out = self.kind.out_shape(shape, p)
            shapes.append((shape, out))
            shape = out
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The last layer's output shape."""
        return self.layer_shapes[-1][1]

    @property
    def flops(self) -> int:
        """FLOPs of one call, all layers (conventions in the module docstring)."""
        p = self.p
        return sum(self.kind.flops(i, o, p) for i, o in self.layer_shapes)

    @property
    def weight_elements(self) -> int:
        """Weight elements of all layers (from the shapes: no weights are drawn)."""
        p = self.p
        return sum(self.kind.weight_elements(i, p) for i, _ in self.layer_shapes)

    @property
    def bytes(self) -> int:
        """Least memory traffic of one call: each layer reads its input and weights and writes its output."""
        moved = sum(_numel(i) + _numel(o) for i, o in self.layer_shapes) + self.weight_elements
        return moved * BYTES_PER_ELEMENT

    @property
    def ort_optimization(self) -> str:
        """The ONNX Runtime graph optimisation level this case runs at (see the module docstring)."""
        return "disabled" if self.is_layout else "all"

    def weights(self, seed: int = 0) -> list[dict[str, np.ndarray]]:
        """Seeded weights of every layer (float32), shared by the PyTorch and ONNX builds."""
        rng = np.random.default_rng(seed)
        p = self.p
        return [self.kind.weights(i, p, rng) for i, _ in self.layer_shapes]

    def example_input(self, seed: int = 0) -> np.ndarray:
        """A seeded standard-normal float32 input."""
        return np.random.default_rng(seed + 1_000_003).standard_normal(self.input_shape).astype(np.float32)

    def torch_callable(self, seed: int = 0) -> tuple[Callable[[], Any], Any]:
        """``(fn, x)``: ``fn()`` runs the layers on the input tensor ``x`` in PyTorch eager.

        Raises:
            RuntimeUnavailable: PyTorch is not installed.
        """
        from lab.runtimes.torch import import_torch

        torch = import_torch()
        p = self.p
        layers = [self.kind.torch_layer(torch, {k: torch.from_numpy(v) for k, v in w.items()}, p)
                  for w in self.weights(seed)]
        x = torch.from_numpy(self.example_input(seed))

        def run() -> Any:
            y = x
            for layer in layers:
                y = layer(y)
            return y

        return run, x

    def onnx_model(self, seed: int = 0) -> Any:
        """The case as an ``onnx.ModelProto`` (opset 17), input ``x``, output ``y``, the same weights.

        Raises:
            RuntimeUnavailable: the ``onnx`` package is not installed.
        """
        onnx = _import_onnx()
        helper, numpy_helper = onnx.helper, onnx.numpy_helper
        p = self.p
        nodes, inits = [], []
        for i, ((shape, _), w) in enumerate(zip(self.layer_shapes, self.weights(seed), strict=True)):
            names = {}
            for key, arr in {**w, **self.kind.constants(shape, p)}.items():
                names[key] = f"l{i}.{key}"
                inits.append(numpy_helper.from_array(arr, names[key]))
            x = "x" if i == 0 else f"t{i}"
            y = "y" if i == self.depth - 1 else f"t{i + 1}"
            nodes += self.kind.onnx_nodes(helper, x, y, names, p)
        graph = helper.make_graph(
            nodes, self.label or self.op,
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(self.input_shape))],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(self.output_shape))],
            initializer=inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION,
                                 producer_name="lab.bench.ops")


def make_case(op: str, input_shape: Sequence[int], *, depth: int = 1, study: str = "", label: str = "",
              coords: Mapping[str, Any] | None = None, **params: Any) -> OpCase:
    """An :class:`OpCase`, checked, with the op's defaults filled in.

    Parameters per op: ``conv2d``: ``out_channels`` (default: in), ``kernel`` (3), ``padding`` (0),
    ``stride`` (1); ``linear``: ``out_features`` (default: in); ``upsample_*``: ``scale`` (2);
    ``transpose``: ``perm`` ((0, 3, 1, 2)); ``reshape``: ``shape`` ((-1, 1)); ``pixel_shuffle``:
    ``factor`` (2); the others take none.

    Raises:
        ConfigError: unknown op or parameter, a bad depth, or shapes that do not fit.
    """
    if op not in _KINDS:
        raise ConfigError(f"unknown op {op!r}: expected one of {list(OPS)}")
    kind = _KINDS[op]
    unknown = sorted(set(params) - set(kind.defaults))
    if unknown:
        raise ConfigError(f"{op}: unknown parameter(s) {unknown}; it takes {sorted(kind.defaults) or 'none'}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ConfigError(f"{op}: expected depth >= 1, received {depth!r}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"{op}: expected a non-empty input shape of positive sizes, received {tuple(input_shape)}")
    p = {**kind.defaults, **params}
    for key in ("perm", "shape"):
        if key in p:
            p[key] = tuple(int(v) for v in p[key])
    s = shape
    for _ in range(depth):
        kind.check(s, p)
        s = kind.out_shape(s, p)
    if not label:
        extras = "".join(f" {k}={v}" for k, v in params.items())
        label = f"{op} {_fmt_shape(shape)}{extras}" + (f" x{depth}" if depth > 1 else "")
    return OpCase(op=op, input_shape=shape, params=tuple(sorted(p.items())), depth=depth, study=study, label=label,
                  coords=tuple((coords or {}).items()))


def seed_op_cases(*, depth: int = SEED_DEPTH, conv_kernel: int = 3) -> list[OpCase]:
    """The seed's op table: each of :data:`SEED_OPS`, ``depth`` layers deep, at the seed's shapes.

    Args:
        depth: layers per model (the seed's 3).
        conv_kernel: the conv's kernel (the seed does not say; 3 with "same" padding by default).
    """
    t = SEED_TENSOR_SHAPE
    nhwc = (t[0], t[2], t[3], t[1])
    specs: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
        ("conv2d", t, {"kernel": conv_kernel, "padding": conv_kernel // 2}),
        ("relu", t, {}),
        ("linear", SEED_LINEAR_SHAPE, {}),
        ("batchnorm", t, {}),
        ("layernorm", nhwc, {}),
        ("upsample_bilinear", t, {}),
        ("upsample_nearest", t, {}),
        ("transpose", nhwc, {}),
    ]
    return [make_case(op, shape, depth=depth, study="seed_ops", label=op, **params)
            for op, shape, params in specs]


def linear_cases(sizes: Sequence[int] = (256, 512, 1024, 2048, 4096, 8192), *, fixed: int = 1024, m: int = 1,
                 batch_sizes: Sequence[int] = (1, 4, 16, 64, 256)) -> list[OpCase]:
    """Linear ``(M, K) x (K, N)`` sweeps: K with N fixed, N with K fixed (M = ``m``), and M with N = K = ``fixed``.

    The seed fixes M (its batch) at 1 and grows N or K alone; it names them batch, input
    and output dimension. Here K is the input (reduced) dimension and N the output one.
    """
    cases = []
    for v in sizes:
        cases.append(make_case("linear", (m, v), out_features=fixed, study="linear", label=f"K={v}",
                               coords={"sweep": "K", "m": m, "k": v, "n": fixed, "size": v}))
    for v in sizes:
        cases.append(make_case("linear", (m, fixed), out_features=v, study="linear", label=f"N={v}",
                               coords={"sweep": "N", "m": m, "k": fixed, "n": v, "size": v}))
    for b in batch_sizes:
        cases.append(make_case("linear", (b, fixed), out_features=fixed, study="linear", label=f"M={b}",
                               coords={"sweep": "M", "m": b, "k": fixed, "n": fixed, "size": b}))
    return cases


def dim_quantization_cases(values: Iterable[int] = range(248, 257), *, fixed: int = 4096, m: int = 1
                           ) -> list[OpCase]:
    """Dimension quantisation: N (then K) swept one by one over ``values`` with the other at ``fixed``."""
    cases = []
    for v in values:
        cases.append(make_case("linear", (m, fixed), out_features=v, study="dim_quantization", label=f"N={v}",
                               coords={"sweep": "N", "m": m, "k": fixed, "n": v, "size": v}))
    for v in values:
        cases.append(make_case("linear", (m, v), out_features=fixed, study="dim_quantization", label=f"K={v}",
                               coords={"sweep": "K", "m": m, "k": v, "n": fixed, "size": v}))
    return cases


def conv_cases(*, hw: int = 32, channels: int = 64, factors: Sequence[int] = (1, 2, 4, 8, 16), kernel: int = 3,
               dims: Sequence[str] = ("h", "w", "in", "out")) -> list[OpCase]:
    """Conv2d sweeps (kernel 3, padding 0, stride 1, as the seed): H, W, in or out channels times each factor.

    Every sweep starts at ``hw x hw`` with ``channels`` in and out; multiplying one of them
    by a factor multiplies the FLOPs by about the same factor, so the sweeps can be compared
    at equal FLOPs.
    """
    cases = []
    for dim in dims:
        if dim not in ("h", "w", "in", "out"):
            raise ConfigError(f"conv_cases: expected dims among h, w, in, out; received {dim!r}")
        for f in factors:
            h = hw * f if dim == "h" else hw
            w = hw * f if dim == "w" else hw
            cin = channels * f if dim == "in" else channels
            cout = channels * f if dim == "out" else channels
            cases.append(make_case("conv2d", (1, cin, h, w), out_channels=cout, kernel=kernel, padding=0,
                                   study="conv", label=f"{dim} x{f}",
                                   coords={"sweep": dim, "factor": f, "h": h, "w": w, "in_channels": cin,
                                           "out_channels": cout, "kernel": kernel}))
    return cases


def kernel_size_cases(*, channels: int = 512, kernels: Sequence[int] = (1, 3, 5, 7),
                      sizes: Sequence[int] = (128, 44, 26, 18)) -> list[OpCase]:
    """Kernel size at about equal FLOPs: the seed's k = 1/3/5/7 at H = W = 128/44/26/18, "same" padding."""
    if len(kernels) != len(sizes):
        raise ConfigError(f"kernel_size_cases: {len(kernels)} kernels but {len(sizes)} sizes")
    return [make_case("conv2d", (1, channels, s, s), out_channels=channels, kernel=k, padding=k // 2,
                      study="kernel_size", label=f"k={k}",
                      coords={"kernel": k, "hw": s, "channels": channels})
            for k, s in zip(kernels, sizes, strict=True)]


def padding_cases(*, sizes: Mapping[str, tuple[int, int]] | None = None, kernels: Sequence[int] = (1, 3, 5, 7)
                  ) -> list[OpCase]:
    """Padding on/off: "same" padding vs none, per kernel, for a small op and one twice as large.

    Args:
        sizes: name -> (H = W, channels in = out); default the seed's small (32, 64) and large (64, 128).
        kernels: kernel sizes.
    """
    sizes = dict(sizes or {"small": (32, 64), "large": (64, 128)})
    cases = []
    for name, (hw, c) in sizes.items():
        for k in kernels:
            for padded in (False, True):
                pad = k // 2 if padded else 0
                cases.append(make_case("conv2d", (1, c, hw, hw), out_channels=c, kernel=k, padding=pad,
                                       study="padding", label=f"{name} k={k} {'pad' if padded else 'no pad'}",
                                       coords={"size": name, "hw": hw, "channels": c, "kernel": k,
                                               "padded": padded}))
    return cases


def channel_ratio_cases(*, hw: int = 64, pairs: Sequence[tuple[int, int]] = ((128, 128), (90, 180), (52, 312),
                                                                              (36, 432)),
                        kernel: int = 3) -> list[OpCase]:
    """In:out channel ratio at about equal FLOPs: the seed's pairs, one 3x3 conv ("same" padding) at 64x64."""
    return [make_case("conv2d", (1, cin, hw, hw), out_channels=cout, kernel=kernel, padding=kernel // 2,
                      study="channel_ratio", label=f"{cin}:{cout}",
                      coords={"hw": hw, "in_channels": cin, "out_channels": cout, "ratio": round(cout / cin, 2)})
            for cin, cout in pairs]


def layout_cases(*, channels: Sequence[int] = (16, 32, 64, 128, 256, 512), hw: int = 64) -> list[OpCase]:
    """Layout changes at the seed's shapes, with a ReLU on the same tensor as the elementwise baseline.

    For ``(1, hw, hw, C)`` (the seed's NHWC tensor): transpose to ``(1, C, hw, hw)``; reshape to
    ``(C * hw * hw, 1)``; pixel shuffle by 2 (on the NCHW ``(1, C, hw, hw)``: PyTorch's layout)
    to ``(1, C / 4, 2 hw, 2 hw)``; and a ReLU.
    """
    cases = []
    for c in channels:
        nhwc, nchw = (1, hw, hw, c), (1, c, hw, hw)
        coords = {"channels": c, "hw": hw, "elements": hw * hw * c}
        cases.append(make_case("transpose", nhwc, perm=(0, 3, 1, 2), study="layout", label=f"transpose C={c}",
                               coords={"layout_op": "transpose", **coords}))
        cases.append(make_case("reshape", nhwc, shape=(-1, 1), study="layout", label=f"reshape C={c}",
                               coords={"layout_op": "reshape", **coords}))
        if c % 4 == 0:
            cases.append(make_case("pixel_shuffle", nchw, factor=2, study="layout", label=f"pixel_shuffle C={c}",
                                   coords={"layout_op": "pixel_shuffle", **coords}))
        cases.append(make_case("relu", nhwc, study="layout", label=f"relu C={c}",
                               coords={"layout_op": "relu (baseline)", **coords}))
    return cases


#: study name -> (case builder, the builder's options for ``quick`` runs).
STUDIES: dict[str, tuple[Callable[..., list[OpCase]], dict[str, Any]]] = {
    "seed_ops": (seed_op_cases, {}),
    "linear": (linear_cases, {"sizes": (128, 512, 2048), "batch_sizes": (1, 16)}),
    "dim_quantization": (dim_quantization_cases, {"values": (248, 250, 253, 256), "fixed": 2048}),
    "conv": (conv_cases, {"hw": 16, "channels": 32, "factors": (1, 2, 4)}),
    "kernel_size": (kernel_size_cases, {"channels": 64}),
    "padding": (padding_cases, {"kernels": (1, 3, 7), "sizes": {"small": (16, 32), "large": (32, 64)}}),
    "channel_ratio": (channel_ratio_cases, {"hw": 32}),
    "layout": (layout_cases, {"channels": (16, 64, 256)}),
}


def study_cases(study: str, *, quick: bool = False, **options: Any) -> list[OpCase]:
    """The cases of a study in :data:`STUDIES` (``quick``: the small CI sizes; ``options`` override either).

    Raises:
        ConfigError: unknown study.
    """
    try:
        builder, quick_options = STUDIES[study]
    except KeyError:
        raise ConfigError(f"unknown op study {study!r}: expected one of {sorted(STUDIES)}") from None
    return builder(**{**(quick_options if quick else {}), **options})


# --------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class MeasureOptions:
    """How every latency of a study is measured (:func:`lab.measure`'s options plus threads).

    Attributes:
        warmup: calls after the first one, before calibration.
        min_run_time_s: measure at least this long per case and backend.
        max_run_time_s: and at most this long.
        target_rel_iqr: stop early once IQR / median is at most this.
        threads: intra-op threads for both runtimes (None: each runtime's default).
        seed: weights and inputs seed.
    """

    warmup: int = 3
    min_run_time_s: float = 0.1
    max_run_time_s: float = 1.0
    target_rel_iqr: float = 0.05
    threads: int | None = None
    seed: int = 0

    @classmethod
    def preset(cls, quick: bool, **overrides: Any) -> MeasureOptions:
        """Full-run defaults, or the CI preset (1 warm-up call, 20..200 ms per measurement); ``overrides`` win."""
        base = {"warmup": 1, "min_run_time_s": 0.02, "max_run_time_s": 0.2} if quick else {}
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})

    def timing(self) -> dict[str, Any]:
        """The keyword arguments for :func:`lab.measure`."""
        return {"warmup": self.warmup, "min_run_time_s": self.min_run_time_s, "max_run_time_s": self.max_run_time_s,
                "target_rel_iqr": self.target_rel_iqr}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends() -> tuple[str, ...]:
    """The :data:`BACKENDS` installed here (found without importing them)."""
    found = {"torch": _has("torch"), "onnx": _has("onnxruntime") and _has("onnx")}
    return tuple(b for b in BACKENDS if found[b])


def default_backends(backends: Sequence[str] | None = None) -> tuple[str, ...]:
    """``backends`` checked, or every available one (PyTorch first).

    Raises:
        ConfigError: an unknown backend.
        RuntimeUnavailable: a requested backend is not installed, or none is.
    """
    have = available_backends()
    if backends is None:
        if not have:
            raise RuntimeUnavailable("neither PyTorch nor ONNX Runtime is installed: pip install "
                                     "'inference-lab[torch]' or 'inference-lab[onnx]'")
        return have
    out = tuple(backends)
    for b in out:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r}: expected one of {list(BACKENDS)}")
        if b not in have:
            raise RuntimeUnavailable(f"backend {b!r} is not installed here (available: {list(have)})")
    return out


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeUnavailable("building ONNX graphs needs the `onnx` package: pip install "
                                 "'inference-lab[onnx]'") from exc
    return onnx


def _ort_level(ort: Any, name: str) -> Any:
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    if name not in levels:
        raise ConfigError(f"graph_optimization must be one of {sorted(levels)}, got {name!r}")
    return levels[name]


def _ort_session(model: Any, *, threads: int | None, graph_optimization: str) -> Any:
    from lab.runtimes.onnx import _LOAD_ERRORS, _import_ort, map_ort_exceptions

    ort = _import_ort()
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 (or None for the default), got {threads}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _ort_level(ort, graph_optimization)
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
    source = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    with map_ort_exceptions(_LOAD_ERRORS, "ONNX Runtime cannot load the study's graph"):
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _ort_callable(session: Any, x: np.ndarray) -> tuple[Callable[[], Any], list[np.ndarray]]:
    """A zero-argument call of ``session`` on ``x`` with input and outputs bound once (IO binding).

    Returns:
        ``(fn, outputs)``: ``fn()`` runs the graph; ``outputs`` are the bound arrays it writes.
    """
    from lab.runtimes.onnx import _RUN_ERRORS, _import_ort, map_ort_exceptions

    ort = _import_ort()
    in_name = session.get_inputs()[0].name
    out_names = [o.name for o in session.get_outputs()]
    with map_ort_exceptions(_RUN_ERRORS, "ONNX Runtime failed on the study's input"):
        first = session.run(out_names, {in_name: x})  # output shapes (and a first, cold call)
    outputs = [np.empty_like(np.asarray(o)) for o in first]
    binding = session.io_binding()
    binding.bind_cpu_input(in_name, x)
    for name, buf in zip(out_names, outputs, strict=True):
        binding.bind_output(name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
    # as lab.runtimes.onnx: the C++ session skips the Python wrapper's per-call checks (~3 us)
    # the binding holds raw pointers: the closure keeps the input and output arrays alive
    keep = (x, outputs, binding, session)
    c_sess, run_options = getattr(session, "_sess", None), ort.RunOptions()
    if c_sess is not None and hasattr(c_sess, "run_with_iobinding"):
        raw = binding._iobinding

        def fn() -> None:
            c_sess.run_with_iobinding(raw, run_options)
    else:
        def fn() -> None:
            keep[3].run_with_iobinding(keep[2])
    fn.keep = keep  # type: ignore[attr-defined]
    return fn, outputs


def measure_torch(fn: Callable[[], Any], *, options: MeasureOptions, label: str = "") -> tuple[Measurement, int]:
    """Time a PyTorch eager call under ``torch.inference_mode()`` with ``options.threads`` intra-op threads.

    Returns:
        ``(measurement, threads used)``.

    Raises:
        DeviceError: PyTorch failed.
        RuntimeUnavailable: PyTorch is not installed.
    """
    from lab.runtimes.torch import import_torch, map_torch_exceptions, set_torch_threads

    torch = import_torch()
    with set_torch_threads(options.threads), torch.inference_mode(), \
            map_torch_exceptions(f"PyTorch failed on {label or 'the study'}"):
        threads = torch.get_num_threads()
        m = measure(fn, label=label, **options.timing())
    return m, threads


def measure_onnx(model: Any, x: np.ndarray, *, options: MeasureOptions, graph_optimization: str = "all",
                 label: str = "") -> Measurement:
    """Time one ONNX Runtime call of ``model`` (a path, bytes or ``ModelProto``) on ``x``, IO-bound.

    The session lives only for the measurement, so its threads never compete with the next one.

    Raises:
        ModelLoadError: ONNX Runtime cannot load the model.
        DeviceError / InputError: ONNX Runtime failed on the input.
        RuntimeUnavailable: ONNX Runtime is not installed.
    """
    from lab.runtimes.onnx import _RUN_ERRORS, map_ort_exceptions

    session = _ort_session(model, threads=options.threads, graph_optimization=graph_optimization)
    try:
        fn, _ = _ort_callable(session, x)
        with map_ort_exceptions(_RUN_ERRORS, f"ONNX Runtime failed on {label or 'the study'}"):
            return measure(fn, label=label, **options.timing())
    finally:
        del session


def case_output(case: OpCase, backend: str, *, seed: int = 0) -> np.ndarray:
    """The case's output on one backend (float32), to check that both backends compute the same thing."""
    default_backends([backend])
    if backend == "torch":
        from lab.runtimes.torch import import_torch

        torch = import_torch()
        fn, _ = case.torch_callable(seed)
        with torch.inference_mode():
            return np.array(fn().contiguous().numpy(), copy=True)
    session = _ort_session(case.onnx_model(seed), threads=None, graph_optimization=case.ort_optimization)
    fn, outputs = _ort_callable(session, case.example_input(seed))
    fn()
    return outputs[0].copy()


def ort_executed_ops(case: OpCase, *, graph_optimization: str | None = None) -> list[str]:
    """The op types ONNX Runtime runs for ``case`` after its graph optimisations (in graph order).

    Writes the optimised graph to a temporary file (ONNX Runtime's only way to show it).
    """
    import os
    import tempfile

    onnx = _import_onnx()
    from lab.runtimes.onnx import _LOAD_ERRORS, _import_ort, map_ort_exceptions

    ort = _import_ort()
    level = graph_optimization or case.ort_optimization
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _ort_level(ort, level)
        opts.optimized_model_filepath = path
        opts.log_severity_level = 3
        with map_ort_exceptions(_LOAD_ERRORS, f"ONNX Runtime cannot load {case.label}"):
            ort.InferenceSession(case.onnx_model().SerializeToString(), sess_options=opts,
                                 providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(path).graph.node]


def measurement_row(m: Measurement, *, flops: int, nbytes: int, start_ns: int, end_ns: int) -> dict[str, Any]:
    """The latency and rate columns every study table shares, from one measurement.

    Columns: ``flops, bytes, intensity`` (FLOP per byte), ``latency_ns`` (the median) and ``iqr_ns``
    (integer ns), ``latency_ms`` (for display), ``min_ns`` (the fastest sample), ``gflop_per_s``
    and ``gb_per_s`` (achieved rates at the median; NaN when the count is 0), ``rel_iqr``,
    ``block_size``, ``num_blocks``, ``num_warnings``, ``warning`` (the first one), ``start_ns`` /
    ``end_ns`` (host clock around the whole measurement).
    """
    median = int(round(m.median_ns))  # integer ns; the rates below use this same value
    secs = median / 1e9
    return {
        "flops": int(flops),
        "bytes": int(nbytes),
        "intensity": flops / nbytes if nbytes else math.nan,
        "latency_ns": median,
        "iqr_ns": int(round(m.iqr_ns)),
        "latency_ms": median / 1e6,
        "min_ns": int(round(m.min_ns)),
        "gflop_per_s": flops / secs / 1e9 if flops and secs > 0 else math.nan,
        "gb_per_s": nbytes / secs / 1e9 if nbytes and secs > 0 else math.nan,
        "rel_iqr": m.rel_iqr,
        "block_size": m.block_size,
        "num_blocks": m.num_blocks,
        "num_warnings": len(m.warnings),
        "warning": m.warnings[0] if m.warnings else "",
        "start_ns": int(start_ns),
        "end_ns": int(end_ns),
    }


def _measure_case(case: OpCase, backend: str, options: MeasureOptions) -> dict[str, Any]:
    t0 = host_clock()
    ort_level = None
    if backend == "torch":
        fn, _ = case.torch_callable(options.seed)
        m, threads = measure_torch(fn, options=options, label=case.label)
    else:
        ort_level = case.ort_optimization
        m = measure_onnx(case.onnx_model(options.seed), case.example_input(options.seed), options=options,
                         graph_optimization=ort_level, label=case.label)
        threads = options.threads
    t1 = host_clock()
    row: dict[str, Any] = {"study": case.study, "case": case.label, "op": case.op, "backend": backend,
                           "depth": case.depth, "input_shape": _fmt_shape(case.input_shape),
                           "output_shape": _fmt_shape(case.output_shape), **dict(case.coords)}
    row.update(measurement_row(m, flops=case.flops, nbytes=case.bytes, start_ns=t0, end_ns=t1))
    row["threads"] = threads
    row["ort_optimization"] = ort_level
    return row


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def run_cases(cases: Sequence[OpCase], *, backends: Sequence[str] | None = None,
              options: MeasureOptions | None = None, progress: bool = True, desc: str = "ops") -> pd.DataFrame:
    """Measure every case on every backend; one row per (case, backend).

    Cases run one after another, each backend in turn, with a fresh ONNX Runtime session per
    case (closed before the next measurement starts).

    Args:
        cases: the cases.
        backends: runtimes to measure on (default: every available one, :func:`default_backends`).
        options: how to measure (default :class:`MeasureOptions`).
        progress: show a progress bar (``tqdm.auto``).
        desc: the bar's label.

    Returns:
        Columns ``study, case, op, backend, depth, input_shape, output_shape``, the cases'
        coordinates, then :func:`measurement_row`'s columns, ``threads`` and ``ort_optimization``.

    Raises:
        ConfigError: an unknown backend or bad options.
        RuntimeUnavailable: a backend is not installed.
    """
    backends = default_backends(backends)
    options = options or MeasureOptions()
    rows = []
    with _progress(len(cases) * len(backends), desc, progress) as bar:
        for case in cases:
            for backend in backends:
                rows.append(_measure_case(case, backend, options))
                bar.update(1)
    return pd.DataFrame(rows)


def run_study(study: str, *, quick: bool = False, backends: Sequence[str] | None = None, progress: bool = True,
              options: MeasureOptions | None = None, **case_options: Any) -> pd.DataFrame:
    """Run one study of :data:`STUDIES` (its cases from :func:`study_cases`) and return its tidy table.

    Args:
        study: ``"seed_ops"``, ``"linear"``, ``"dim_quantization"``, ``"conv"``, ``"kernel_size"``,
            ``"padding"``, ``"channel_ratio"`` or ``"layout"``.
        quick: the small CI sizes and :meth:`MeasureOptions.preset` for CI.
        backends: runtimes (default every available one).
        progress: show a progress bar.
        options: how to measure (default: the preset for ``quick``).
        **case_options: the case builder's options (sizes, channels ...).
    """
    cases = study_cases(study, quick=quick, **case_options)
    return run_cases(cases, backends=backends, options=options or MeasureOptions.preset(quick), progress=progress,
                     desc=study)


def op_table(**kwargs: Any) -> pd.DataFrame:
    """The seed's op table measured here: :func:`run_study` of ``"seed_ops"`` (same arguments)."""
    return run_study("seed_ops", **kwargs)


def linear_sweep(**kwargs: Any) -> pd.DataFrame:
    """Linear M/N/K sweeps (:func:`linear_cases`): :func:`run_study` of ``"linear"``."""
    return run_study("linear", **kwargs)


def dim_quantization_sweep(**kwargs: Any) -> pd.DataFrame:
    """N and K swept 248..256 (:func:`dim_quantization_cases`): :func:`run_study` of ``"dim_quantization"``."""
    return run_study("dim_quantization", **kwargs)


def conv_sweep(**kwargs: Any) -> pd.DataFrame:
    """Conv H / W / in / out sweeps (:func:`conv_cases`): :func:`run_study` of ``"conv"``."""
    return run_study("conv", **kwargs)


def kernel_size_sweep(**kwargs: Any) -> pd.DataFrame:
    """Kernel 1/3/5/7 at about equal FLOPs (:func:`kernel_size_cases`): :func:`run_study` of ``"kernel_size"``."""
    return run_study("kernel_size", **kwargs)


def padding_sweep(**kwargs: Any) -> pd.DataFrame:
    """Padding on/off per kernel, small and large op (:func:`padding_cases`): :func:`run_study` of ``"padding"``."""
    return run_study("padding", **kwargs)


def channel_ratio_sweep(**kwargs: Any) -> pd.DataFrame:
    """In:out channel ratio at equal FLOPs (:func:`channel_ratio_cases`): :func:`run_study` of ``"channel_ratio"``."""
    return run_study("channel_ratio", **kwargs)


def layout_sweep(**kwargs: Any) -> pd.DataFrame:
    """Transpose / reshape / pixel shuffle vs a ReLU (:func:`layout_cases`): :func:`run_study` of ``"layout"``."""
    return run_study("layout", **kwargs)


# --------------------------------------------------------------------------- beside the seed
def _wide(df: pd.DataFrame, index: str | list[str], value: str = "latency_ms") -> pd.DataFrame:
    wide = df.pivot_table(index=index, columns="backend", values=value, aggfunc="first")
    wide.columns = [f"{b} {value.replace('_', ' ')}" for b in wide.columns]
    return wide


def compare_op_table(results: pd.DataFrame) -> pd.DataFrame:
    """Our op table (latency ms per backend, FLOPs) beside the seed's (RTX3090 / A13 TFLite / A13 CoreML).

    Adds ``<backend> / seed RTX3090``: our latency over the seed's desktop-GPU latency.
    """
    ours = _wide(results, "op").join(results.groupby("op")[["flops", "bytes"]].first())
    table = ours.join(seed003.seed_op_table(), how="outer")
    rtx = f"seed {seed003.SEED_DEVICES[0]} ms"
    for b in dict.fromkeys(results["backend"]):
        table[f"{b} / seed RTX3090"] = table[f"{b} latency ms"] / table[rtx]
    return table.reindex([op for op in SEED_OPS if op in table.index])


def padding_overhead(results: pd.DataFrame) -> pd.DataFrame:
    """The padding study side by side: latency without and with "same" padding, and their ratios.

    Returns:
        One row per (backend, size, kernel): ``no_pad_ms``, ``pad_ms``, ``latency_ratio``
        (padded / unpadded) and ``flops_ratio`` (padding enlarges the output, so the FLOPs grow too).
    """
    rows = []
    for (backend, size, kernel), g in results.groupby(["backend", "size", "kernel"], sort=False):
        plain, padded = g[~g["padded"].astype(bool)], g[g["padded"].astype(bool)]
        if plain.empty or padded.empty:
            continue
        a, b = plain.iloc[0], padded.iloc[0]
        rows.append({"backend": backend, "size": size, "kernel": kernel, "hw": a["hw"], "channels": a["channels"],
                     "no_pad_ms": a["latency_ms"], "pad_ms": b["latency_ms"],
                     "latency_ratio": b["latency_ns"] / a["latency_ns"], "flops_ratio": b["flops"] / a["flops"]})
    return pd.DataFrame(rows)


def layout_table(results: pd.DataFrame) -> pd.DataFrame:
    """The layout study side by side: latency (ms) of each layout op and of the ReLU, per backend and size.

    Returns:
        Index ``(backend, channels)``; columns ``<op> ms`` and ``<op> / relu`` per layout op.
    """
    wide = results.pivot_table(index=["backend", "channels"], columns="layout_op", values="latency_ms")
    out = pd.DataFrame(index=wide.index)
    base = wide.get("relu (baseline)")
    for op in wide.columns:
        out[f"{op} ms"] = wide[op]
    if base is not None:
        for op in ("transpose", "reshape", "pixel_shuffle"):
            if op in wide.columns:
                out[f"{op} / relu"] = wide[op] / base
    return out


def compare_kernel_size(results: pd.DataFrame) -> pd.DataFrame:
    """Our kernel-size table beside the seed's (A13 TFLite / CoreML), by kernel."""
    ours = _wide(results, "kernel").join(_wide(results, "kernel", "gflop_per_s"))
    ours = ours.join(results.groupby("kernel")[["hw", "channels", "flops"]].first())
    seed = seed003.seed_kernel_size_table().drop(columns=["hw", "channels"])
    return ours.join(seed, how="left")


def compare_channel_ratio(results: pd.DataFrame) -> pd.DataFrame:
    """Our channel-ratio table beside the seed's (A13 TFLite / RTX3090), by (in, out) channels."""
    idx = ["in_channels", "out_channels"]
    ours = _wide(results, idx).join(results.groupby(idx)[["hw", "flops"]].first())
    seed = seed003.seed_channel_ratio_table().drop(columns=["hw"]).set_index(idx)
    return ours.join(seed, how="left")


# --------------------------------------------------------------------------- verdicts
#: Thresholds of the rule checks (see :data:`lab.bench.seed003.RULES`).
RATE_GAIN_MIN = 2.0
DIM_QUANT_MAX_PENALTY = 1.10
RATIO_PENALTY_MIN = 1.10


def _by_backend(df: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if df is None or df.empty:
        return {}
    return {str(b): g for b, g in df.groupby("backend", sort=False)}


def _linear_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        kn = g[g["sweep"].isin(["K", "N"])]
        small, big = kn.loc[kn["flops"].idxmin()], kn.loc[kn["flops"].idxmax()]
        gain = big["gflop_per_s"] / small["gflop_per_s"]
        out.append(seed003.verdict(
            "bigger_ops_higher_rate", bool(gain >= RATE_GAIN_MIN), value=float(gain), backend=backend,
            limit=RATE_GAIN_MIN,
            detail=f"{big['case']}: {big['gflop_per_s']:.2f} GFLOP/s vs {small['case']}: "
                   f"{small['gflop_per_s']:.2f} GFLOP/s ({gain:.1f}x)"))
        k = g[g["sweep"] == "K"].set_index("size")["gflop_per_s"]
        n = g[g["sweep"] == "N"].set_index("size")["gflop_per_s"]
        common = k.index.intersection(n.index)
        ratio = float(n[common].mean() / k[common].mean()) if len(common) else math.nan
        out.append(seed003.verdict(
            "grow_n_over_k", bool(ratio > 1) if len(common) else None, value=ratio, backend=backend, limit=1.0,
            detail=f"mean {n[common].mean():.2f} GFLOP/s growing N vs {k[common].mean():.2f} growing K "
                   f"over sizes {list(common)}"))
    return out


def _dim_quant_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        per_flop = g["latency_ns"] / g["flops"]
        aligned = g["size"] % 8 == 0
        if not aligned.any() or aligned.all():
            out.append(seed003.verdict("no_dim_quantization", None, value=None, backend=backend))
            continue
        penalty = float(per_flop[~aligned].median() / per_flop[aligned].mean())
        out.append(seed003.verdict(
            "no_dim_quantization", bool(penalty <= DIM_QUANT_MAX_PENALTY), value=penalty, backend=backend,
            limit=DIM_QUANT_MAX_PENALTY,
            detail=f"time per FLOP at sizes not divisible by 8 is {penalty:.2f}x that at "
                   f"{sorted(set(g.loc[aligned, 'size']))}"))
    return out


def _conv_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        grown = g[g["factor"] > 1]
        chan = grown[grown["sweep"].isin(["in", "out"])]
        spatial = grown[grown["sweep"].isin(["h", "w"])]
        if chan.empty or spatial.empty:
            out.append(seed003.verdict("channels_beat_spatial", None, value=None, backend=backend))
            continue
        ratio = float(chan["gflop_per_s"].mean() / spatial["gflop_per_s"].mean())
        out.append(seed003.verdict(
            "channels_beat_spatial", bool(ratio > 1), value=ratio, backend=backend, limit=1.0,
            detail=f"mean {chan['gflop_per_s'].mean():.2f} GFLOP/s growing channels vs "
                   f"{spatial['gflop_per_s'].mean():.2f} growing H or W (factors {sorted(set(grown['factor']))})"))
    return out


def _kernel_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        rates = g.set_index("kernel")["gflop_per_s"]
        if 3 not in rates.index or len(rates) < 2:
            out.append(seed003.verdict("kernel3_fastest", None, value=None, backend=backend))
            continue
        best = int(rates.idxmax())
        others = rates.drop(3)
        out.append(seed003.verdict(
            "kernel3_fastest", best == 3, value=float(rates[3] / others.max()), backend=backend, limit=1.0,
            threshold="k = 3 has the highest achieved FLOP/s (value: its rate / the best other kernel's)",
            detail="GFLOP/s by kernel: " + ", ".join(f"k={k}: {r:.1f}" for k, r in rates.items())))
    return out


def _padding_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        wide = g.pivot_table(index=["size", "kernel"], columns="padded", values="latency_ns")
        if True not in wide.columns or False not in wide.columns or "small" not in wide.index.get_level_values(0):
            out.append(seed003.verdict("padding_hurts_small_big_kernels", None, value=None, backend=backend))
            continue
        ratio = wide[True] / wide[False]
        kmax = int(max(wide.index.get_level_values("kernel")))
        at = ratio.loc[("small", kmax)]
        others = ratio.drop(("small", kmax))
        out.append(seed003.verdict(
            "padding_hurts_small_big_kernels", bool(at >= ratio.max()), value=float(at), backend=backend,
            limit=float(others.max()) if len(others) else None,
            threshold="latency(padded) / latency(unpadded) is largest for the small op at the largest kernel "
                      "(limit: the largest other ratio)",
            detail="padded / unpadded latency: " + ", ".join(f"{s} k={k}: {r:.2f}" for (s, k), r in ratio.items())))
    return out


def _ratio_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        g = g.assign(skew=(g["out_channels"] / g["in_channels"]))
        balanced, skewed = g.loc[g["skew"].idxmin()], g.loc[g["skew"].idxmax()]
        ratio = float(skewed["latency_ns"] / balanced["latency_ns"])
        fastest = g.loc[g["latency_ns"].idxmin(), "case"]
        out.append(seed003.verdict(
            "balanced_channels", bool(ratio > RATIO_PENALTY_MIN), value=ratio, backend=backend,
            limit=RATIO_PENALTY_MIN,
            detail=f"{skewed['case']} takes {skewed['latency_ms']:.3f} ms vs {balanced['case']} "
                   f"{balanced['latency_ms']:.3f} ms ({ratio:.2f}x); fastest here: {fastest}"))
    return out


def _layout_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        wide = g.pivot_table(index="channels", columns="layout_op", values="latency_ns")
        base = wide.get("relu (baseline)")
        means = {}
        for op in ("transpose", "reshape", "pixel_shuffle"):
            if op not in wide.columns or base is None:
                continue
            rel = (wide[op] / base).dropna()
            means[op] = float(wide[op].mean())
            med = float(rel.median())
            out.append(seed003.verdict(
                "layout_ops_slow", bool(med > 1), value=med, backend=backend, subject=op, limit=1.0,
                threshold=f"median over sizes of latency({op}) / latency(ReLU, same tensor) > 1",
                detail=f"{op}: " + ", ".join(f"C={c}: {r:.2f}x" for c, r in rel.items()) + " of a ReLU"))
        if "reshape" in means and len(means) == 3:
            slowest = max(means, key=lambda k: means[k])
            out.append(seed003.verdict(
                "reshape_slowest", slowest == "reshape",
                value=means["reshape"] / max(v for k, v in means.items() if k != "reshape"), backend=backend,
                limit=1.0,
                detail="mean latency: " + ", ".join(f"{k} {v / 1e6:.4f} ms" for k, v in means.items())))
    return out


def op_verdicts(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The seed's op rules (:data:`lab.bench.seed003.RULES`) decided from this machine's study tables.

    Args:
        results: study name (as in :data:`STUDIES`) -> its table from :func:`run_study`;
            missing studies simply give no verdict.

    Returns:
        One row per (rule, backend), as :func:`lab.bench.seed003.verdict` builds them, with
        ``noise`` and ``close_call`` from :func:`lab.bench.seed003.with_noise`.
    """
    rows = (_linear_verdicts(results.get("linear")) + _dim_quant_verdicts(results.get("dim_quantization"))
            + _conv_verdicts(results.get("conv")) + _kernel_verdicts(results.get("kernel_size"))
            + _padding_verdicts(results.get("padding")) + _ratio_verdicts(results.get("channel_ratio"))
            + _layout_verdicts(results.get("layout")))
    return seed003.with_noise(pd.DataFrame(rows, columns=list(seed003.VERDICT_COLUMNS)), results)


# --------------------------------------------------------------------------- trace
def measurement_trace(*tables: pd.DataFrame, name: str = "seed 003 studies") -> Trace:
    """The measurements as a :class:`lab.Trace`: one span per (case, backend) on lane ``device/<backend>``.

    Each span covers the whole measurement on the host clock (warm-up and calibration included);
    its attributes hold the study, the median and IQR (ns), FLOPs and bytes.
    """
    spans = []
    rid = 0
    for df in tables:
        for r in df.itertuples(index=False):
            row = r._asdict()
            name = row.get("case") or row.get("method") or row.get("backbone") or row.get("block") or "measurement"
            spans.append(Span(f"device/{row['backend']}", str(name), rid,
                              int(row["start_ns"]), int(row["end_ns"]),
                              {"study": row.get("study", ""), "latency_ns": int(row["latency_ns"]),
                               "iqr_ns": int(row["iqr_ns"]), "flops": int(row.get("flops", 0) or 0),
                               "bytes": int(row.get("bytes", 0) or 0)}))
            rid += 1
    return Trace(spans=spans, metadata={"name": name})
