"""What a model costs to run, read from its ONNX graph: FLOPs, I/O bytes, parameters, nodes.

``model_cost(path, batch=8)`` fixes the graph's dynamic dimensions (the leading one takes
``batch``), runs ONNX shape inference, and counts per node:

* **Conv**, **ConvInteger**, **QLinearConv** (groups included): ``2 * prod(output shape) *
  prod(weight shape[1:])`` -- one multiply-add per output element per weight of its group;
* **ConvTranspose**: ``2 * prod(input shape) * prod(weight shape[1:])``;
* **Gemm**: ``2 * M * N * K``; **MatMul**, **MatMulInteger**, **QLinearMatMul**:
  ``2 * prod(output shape) * K`` (batched and broadcast dimensions included);
* every other computing op (elementwise, activations, pooling, normalisation, softmax,
  reductions, resizing, ...) as **1 FLOP per output element** -- an approximation: a 3x3
  max-pool makes 8 comparisons per output, a LayerNorm a handful of operations per element;
* layout and bookkeeping ops (Reshape, Transpose, Concat, Slice, Gather, Cast, Shape,
  Constant, Identity, ...) as 0 FLOPs: they move data, they do not compute.

A multiply-add counts as 2 FLOPs (MLPerf and most papers; ``fvcore`` counts 1). Bias
additions of Conv / Gemm are not counted (they are folded into the accumulator). Parameters are
the graph's initializers except int64 ones (shapes, axes and indices, not weights).
"""

from __future__ import annotations

import math
import os
from collections import Counter as _Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError, ModelLoadError, RuntimeUnavailable

__all__ = [
    "LAYOUT_OPS",
    "MAC_OPS",
    "ModelCost",
    "TensorCost",
    "model_cost",
]

#: Ops whose FLOPs are counted as multiply-adds (x2), by the rules in the module docstring.
MAC_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger",
                     "QLinearMatMul"})

#: Ops counted as 0 FLOPs: they reshape, copy, select or describe data without arithmetic.
LAYOUT_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather",
    "GatherElements", "GatherND", "ScatterElements", "ScatterND", "Expand", "Tile", "Pad", "Identity",
    "Shape", "Size", "Constant", "ConstantOfShape", "Cast", "CastLike", "DepthToSpace", "SpaceToDepth",
    "Dropout", "Range", "NonZero", "OneHot", "Optional", "OptionalGetElement", "SequenceConstruct",
    "SequenceAt", "If", "Loop", "Scan",
})

# ONNX TensorProto element types -> (numpy dtype name, bytes per element).
_ONNX_TYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 4), 2: ("uint8", 1), 3: ("int8", 1), 4: ("uint16", 2), 5: ("int16", 2), 6: ("int32", 4),
    7: ("int64", 8), 9: ("bool", 1), 10: ("float16", 2), 11: ("float64", 8), 12: ("uint32", 4),
    13: ("uint64", 8), 16: ("bfloat16", 2),
}
_INT64 = 7


@dataclass(frozen=True)
class TensorCost:
    """A model input or output at a fixed batch.

    Attributes:
        name: the graph's tensor name.
        shape: concrete shape (dynamic dimensions resolved).
        declared_shape: the shape as the graph declares it, None for each dynamic dimension.
        dtype: numpy dtype name (``"float32"``, ``"uint8"``, ...).
        nbytes: ``prod(shape) * itemsize``.
    """

    name: str
    shape: tuple[int, ...]
    declared_shape: tuple[int | None, ...]
    dtype: str
    nbytes: int

    @property
    def num_elements(self) -> int:
        """``prod(shape)``."""
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        """True for floating-point tensors (what an int8-only device must quantize)."""
        return self.dtype in ("float16", "float32", "float64", "bfloat16")


@dataclass(frozen=True)
class ModelCost:
    """FLOPs, bytes and structure of one model at one batch size (see the module docstring).

    Attributes:
        batch: the batch size dynamic leading dimensions took.
        flops: floating-point (or integer) operations per inference of the batch; a
            multiply-add counts 2.
        input_bytes: bytes of every input together.
        output_bytes: bytes of every output together.
        inputs: each input's name, shape, dtype and bytes.
        outputs: each output's name, shape, dtype and bytes.
        params: weight elements (initializers except int64 ones).
        params_bytes: bytes of those weights.
        num_nodes: nodes in the main graph.
        ops: op type -> number of nodes.
        flops_by_op: op type -> FLOPs of all its nodes.
        warnings: nodes that could not be counted (unknown shapes), subgraphs not counted.
    """

    batch: int
    flops: int
    input_bytes: int
    output_bytes: int
    inputs: tuple[TensorCost, ...]
    outputs: tuple[TensorCost, ...]
    params: int
    params_bytes: int
    num_nodes: int
    ops: dict[str, int] = field(default_factory=dict)
    flops_by_op: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def macs(self) -> int:
        """Multiply-adds of the MAC ops (``flops_by_op`` of :data:`MAC_OPS` halved)."""
        return sum(f for op, f in self.flops_by_op.items() if op in MAC_OPS) // 2

    @property
    def is_quantized(self) -> bool:
        """True when the graph computes in integers (QLinear*/ *Integer ops or Quantize/DequantizeLinear)."""
        return any(op.startswith("QLinear") or op.endswith("Integer") or op in ("QuantizeLinear", "DequantizeLinear")
                   for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (tensor shapes as lists)."""
        def tensors(ts: tuple[TensorCost, ...]) -> list[dict[str, Any]]:
            return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes} for t in ts]

        return {"batch": self.batch, "flops": self.flops, "macs": self.macs, "input_bytes": self.input_bytes,
                "output_bytes": self.output_bytes, "inputs": tensors(self.inputs), "outputs": tensors(self.outputs),
                "params": self.params, "params_bytes": self.params_bytes, "num_nodes": self.num_nodes,
                "ops": dict(self.ops), "flops_by_op": dict(self.flops_by_op), "warnings": list(self.warnings)}


def _import_onnx() -> Any:
    try:
        import onnx  # lazy: `import lab` must not import onnx
    except ImportError as exc:
        raise RuntimeUnavailable("the onnx package is not installed: pip install 'inference-lab[onnx]'") from exc
    return onnx


def _dtype(elem_type: int, onnx: Any) -> tuple[str, int]:
    known = _ONNX_TYPES.get(elem_type)
    if known is not None:
        return known
    try:
        import numpy as np

        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
        return dt.name, dt.itemsize
    except Exception as exc:  # noqa: BLE001 - any failure means: a type we cannot size
        raise ModelLoadError(f"tensor element type {elem_type} is not supported by model_cost") from exc


def _load(model: Any, onnx: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path!r}")
        try:
            return onnx.load(path)
        except Exception as exc:  # noqa: BLE001 - translate the parser's errors at the boundary
            raise ModelLoadError(f"cannot read {path!r} as an ONNX model: {type(exc).__name__}: {exc}") from exc
    if isinstance(model, onnx.ModelProto):
        return model
    raise ConfigError(f"expected a path to an .onnx file or an onnx.ModelProto, got {type(model).__name__}")


def _declared(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)


def _resolve(value_info: Any, batch: int, dims: Mapping[str, int]) -> tuple[int, ...]:
    """Concrete dims of a graph input: dim 0 dynamic -> ``batch``; others from ``dims`` by name."""
    out = []
    for i, d in enumerate(value_info.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param in dims:
            out.append(int(dims[d.dim_param]))
        elif i == 0:
            out.append(batch)
        else:
            label = f" ({d.dim_param!r})" if d.HasField("dim_param") else ""
            raise ConfigError(
                f"input {value_info.name!r}: dimension {i}{label} is dynamic and is not the batch; "
                f"expected dims={{{d.dim_param or 'name'!r}: size}}, got dims={dict(dims)!r}"
            )
    return tuple(out)


def model_cost(model: str | os.PathLike[str] | Any, batch: int = 1, *, dims: Mapping[str, int] | None = None
               ) -> ModelCost:
    """Count an ONNX model's FLOPs, I/O bytes, parameters and nodes at a batch size.

    Args:
        model: path to an ``.onnx`` file, or an ``onnx.ModelProto`` (not modified).
        batch: size given to each input's dynamic leading dimension.
        dims: sizes for other dynamic dimensions, by their ``dim_param`` name (e.g. ``{"seq": 128}``).

    Returns:
        A :class:`ModelCost`; FLOP rules are in the module docstring.

    Raises:
        ConfigError: ``batch`` < 1, or a dynamic non-batch dimension without a size in ``dims``.
        ModelLoadError: the file is missing or not an ONNX model.
        RuntimeUnavailable: the ``onnx`` package is not installed.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    dims = dict(dims or {})
    onnx = _import_onnx()
    proto = _load(model, onnx)
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    init_names = {t.name for t in g.initializer}
    graph_inputs = [vi for vi in g.input if vi.name not in init_names]  # IR < 4 lists initializers as inputs

    # Fix every input's shape, forget shapes the exporter wrote (they may be symbolic), re-infer.
    declared_in = {vi.name: _declared(vi) for vi in graph_inputs}
    declared_out = {vi.name: _declared(vi) for vi in g.output}
    for vi in graph_inputs:
        shape = _resolve(vi, batch, dims)
        tshape = vi.type.tensor_type.shape
        for d, size in zip(tshape.dim, shape, strict=True):
            d.Clear()
            d.dim_value = size
    del g.value_info[:]
    for vi in g.output:
        vi.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - the inferencer's own error classes vary by version
        raise ModelLoadError(f"ONNX shape inference failed: {type(exc).__name__}: {exc}") from exc
    g = m.graph

    shapes: dict[str, tuple[int, ...] | None] = {}
    elem: dict[str, int] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        elem[vi.name] = tt.elem_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
        else:
            shapes.setdefault(vi.name, None)
    params = params_bytes = 0
    for t in g.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
        elem[t.name] = t.data_type
        if t.data_type != _INT64:
            n = math.prod(t.dims)
            params += n
            params_bytes += n * _dtype(t.data_type, onnx)[1]

    warnings: list[str] = []
    ops: _Counter[str] = _Counter()
    flops_by_op: _Counter[str] = _Counter()
    for node in g.node:
        ops[node.op_type] += 1
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            warnings.append(f"node {node.name or node.op_type!r} ({node.op_type}) has subgraphs; not counted")
        flops = _node_flops(node, shapes, onnx)
        if flops is None:
            warnings.append(f"node {node.name or node.op_type!r} ({node.op_type}): unknown shapes; counted as 0")
            flops = 0
        flops_by_op[node.op_type] += flops

    def tensors(vis: list[Any], declared: dict[str, tuple[int | None, ...]]) -> tuple[TensorCost, ...]:
        out = []
        for vi in vis:
            shape = shapes.get(vi.name)
            if shape is None:
                raise ModelLoadError(f"shape inference could not determine the shape of {vi.name!r}")
            dtype, size = _dtype(elem.get(vi.name, vi.type.tensor_type.elem_type), onnx)
            out.append(TensorCost(vi.name, shape, declared[vi.name], dtype, math.prod(shape) * size))
        return tuple(out)

    inputs = tensors([vi for vi in g.input if vi.name not in init_names], declared_in)
    outputs = tensors(list(g.output), declared_out)
    return ModelCost(
        batch=batch, flops=sum(flops_by_op.values()),
        input_bytes=sum(t.nbytes for t in inputs), output_bytes=sum(t.nbytes for t in outputs),
        inputs=inputs, outputs=outputs, params=params, params_bytes=params_bytes, num_nodes=len(g.node),
        ops=dict(ops), flops_by_op=dict(flops_by_op), warnings=tuple(warnings),
    )


def _attr(node: Any, name: str, default: int, onnx: Any) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


def _node_flops(node: Any, shapes: Mapping[str, tuple[int, ...] | None], onnx: Any) -> int | None:
    """FLOPs of one node by the module docstring's rules; None when a needed shape is unknown."""
    op = node.op_type
    if op in LAYOUT_OPS or not node.output:
        return 0

    def shape(i: int, io: Any) -> tuple[int, ...] | None:
        return shapes.get(io[i]) if i < len(io) and io[i] else None

    y = shape(0, node.output)
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape(3 if op == "QLinearConv" else 1, node.input)
        return None if y is None or w is None else 2 * math.prod(y) * math.prod(w[1:])
    if op == "ConvTranspose":
        x, w = shape(0, node.input), shape(1, node.input)
        return None if x is None or w is None else 2 * math.prod(x) * math.prod(w[1:])
    if op == "Gemm":
        a = shape(0, node.input)
        if y is None or a is None:
            return None
        k = a[0] if _attr(node, "transA", 0, onnx) else a[1]
        return 2 * math.prod(y) * k
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shape(0, node.input)
        if y is None or a is None:
            return None
        return 2 * math.prod(y) * a[-1]
    return None if y is None else math.prod(y)
