"""FLOPs, bytes and structure of ONNX graphs: hand-built graphs with known counts, and the digits CNN."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lab.errors import ConfigError, ModelLoadError
from lab.zoo.digits import DATA_DIR, MODEL_FILE
from lab.zoo.onnx_cost import ModelCost, model_cost

DIGITS = DATA_DIR / MODEL_FILE


def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _weights(name: str, shape: tuple[int, ...], dtype: int = TensorProto.FLOAT) -> onnx.TensorProto:
    n = int(np.prod(shape))
    return helper.make_tensor(name, dtype, shape, [0] * n)


def _io(name: str, shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_grouped_conv_counts_each_output_against_its_group() -> None:
    # x (1, 8, 16, 16), 16 filters of 4 channels (2 groups), 3x3, pad 1 -> y (1, 16, 16, 16)
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1], kernel_shape=[3, 3])],
               [_io("x", [1, 8, 16, 16])], [_io("y", None)], [_weights("w", (16, 4, 3, 3))])
    c = model_cost(m)
    macs = (16 * 16 * 16) * (4 * 3 * 3)
    assert c.flops == 2 * macs == 294_912
    assert c.macs == macs
    assert c.outputs[0].shape == (1, 16, 16, 16)
    assert c.params == 16 * 4 * 9 and c.params_bytes == 16 * 4 * 9 * 4


def test_conv_transpose_counts_each_input_element_against_its_kernel() -> None:
    # x (1, 4, 8, 8), W (4, 2, 2, 2), stride 2 -> y (1, 2, 16, 16)
    m = _model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], kernel_shape=[2, 2])],
               [_io("x", [1, 4, 8, 8])], [_io("y", None)], [_weights("w", (4, 2, 2, 2))])
    c = model_cost(m)
    assert c.outputs[0].shape == (1, 2, 16, 16)
    assert c.flops == 2 * (4 * 8 * 8) * (2 * 2 * 2)


def test_gemm_with_transposes_and_batched_matmul() -> None:
    # Gemm: A (K=32, M=8) transA, B (N=16, K=32) transB -> (8, 16); MatMul: (b, 3, 4, 16) x (16, 6)
    nodes = [
        helper.make_node("Gemm", ["a", "b"], ["g"], transA=1, transB=1),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y"]),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 2, 4, 16])
    m = _model(nodes, [_io("a", [32, 8])], [_io("y", None)],
               [_weights("b", (16, 32)), shape, _weights("w", (16, 6))])
    c = model_cost(m)
    assert c.flops_by_op == {"Gemm": 2 * 8 * 16 * 32, "Reshape": 0, "MatMul": 2 * (1 * 2 * 4 * 6) * 16}
    assert c.outputs[0].shape == (1, 2, 4, 6)
    assert c.params == 16 * 32 + 16 * 6  # the int64 shape tensor is not a weight
    assert c.ops == {"Gemm": 1, "Reshape": 1, "MatMul": 1} and c.num_nodes == 3


def test_elementwise_pooling_and_normalisation_are_one_flop_per_output_element() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Add", ["a", "bias"], ["b"]),  # broadcast (4,) over (2, 4, 6, 6)
        helper.make_node("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),  # (2, 4, 3, 3)
        helper.make_node("BatchNormalization", ["p", "s", "bb", "mu", "var"], ["n"]),
        helper.make_node("Transpose", ["n"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Softmax", ["t"], ["y"], axis=-1),
    ]
    inits = [_weights("bias", (4, 1, 1)), *(_weights(k, (4,)) for k in ("s", "bb", "mu", "var"))]
    c = model_cost(_model(nodes, [_io("x", ["n", 4, 6, 6])], [_io("y", None)], inits), batch=2)
    big, small = 2 * 4 * 6 * 6, 2 * 4 * 3 * 3
    assert c.flops_by_op == {"Relu": big, "Add": big, "MaxPool": small, "BatchNormalization": small,
                             "Transpose": 0, "Softmax": small}
    assert c.flops == 2 * big + 3 * small


def test_dynamic_batch_takes_batch_and_scales_bytes_and_flops() -> None:
    one, four = model_cost(DIGITS, batch=1), model_cost(DIGITS, batch=4)
    assert four.inputs[0].shape == (4, 1, 8, 8) and four.inputs[0].declared_shape == (None, 1, 8, 8)
    assert four.input_bytes == 4 * one.input_bytes and four.output_bytes == 4 * one.output_bytes
    assert four.flops == 4 * one.flops
    assert four.params == one.params


def test_other_dynamic_dims_need_a_size_by_name() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_io("x", ["batch", "seq", 8])], [_io("y", None)])
    with pytest.raises(ConfigError, match=r"dimension 1 \('seq'\) is dynamic.*expected dims=\{'seq': size\}"):
        model_cost(m)
    c = model_cost(m, batch=2, dims={"seq": 5})
    assert c.inputs[0].shape == (2, 5, 8) and c.flops == 80 and c.input_bytes == 320


def test_the_callers_model_is_not_modified() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_io("x", ["batch", 3])], [_io("y", ["batch", 3])])
    before = m.SerializeToString()
    model_cost(m, batch=7)
    assert m.SerializeToString() == before


def test_quantized_graphs_are_recognised() -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"])]
    inits = [helper.make_tensor("sc", TensorProto.FLOAT, [], [0.1]),
             helper.make_tensor("zp", TensorProto.INT8, [], [0])]
    c = model_cost(_model(nodes, [_io("x", [1, 4])], [_io("y", None)], inits))
    assert c.is_quantized
    assert not model_cost(DIGITS).is_quantized


def test_digits_cnn_by_hand() -> None:
    """conv1 1->16 3x3 and conv2 16->32 3x3 on 8x8 (pad 1), fc 512->64, fc 64->10."""
    c = model_cost(DIGITS)
    conv1 = (16 * 8 * 8) * (1 * 3 * 3)  # 9,216 multiply-adds: each output against 9 weights
    conv2 = (32 * 8 * 8) * (16 * 3 * 3)  # 294,912
    fc1 = 512 * 64  # 32,768
    fc2 = 64 * 10  # 640
    macs = conv1 + conv2 + fc1 + fc2
    assert c.macs == macs == 337_536
    relu = 16 * 64 + 32 * 64 + 64  # three ReLUs, one FLOP per output element
    maxpool = 32 * 4 * 4
    assert c.flops == 2 * macs + relu + maxpool == 678_720
    assert c.flops_by_op["Conv"] == 2 * (conv1 + conv2) and c.flops_by_op["Gemm"] == 2 * (fc1 + fc2)
    assert c.input_bytes == 1 * 8 * 8 * 4 and c.output_bytes == 10 * 4
    assert [(t.name, t.shape, t.dtype) for t in c.inputs] == [("image", (1, 1, 8, 8), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in c.outputs] == [("logits", (1, 10), "float32")]
    assert c.params == 38_282 and c.params_bytes == 38_282 * 4  # data/README.md: 38,282 parameters
    assert c.num_nodes == 9
    assert c.ops == {"Conv": 2, "Relu": 3, "MaxPool": 1, "Reshape": 1, "Gemm": 2}
    assert c.warnings == ()
    assert c.to_dict()["flops"] == 678_720 and isinstance(c, ModelCost)


def test_errors_name_what_was_expected(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        model_cost(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot read"):
        model_cost(bad)
    with pytest.raises(ConfigError, match="expected a path to an .onnx file or an onnx.ModelProto, got int"):
        model_cost(3)
    with pytest.raises(ConfigError, match="batch must be an integer >= 1, got 0"):
        model_cost(DIGITS, batch=0)
