"""The ONNX Runtime CPU runtime: spans, errors translated at the boundary, usable after errors."""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lab.errors import ConfigError, DeviceError, InputError, LabError, ModelLoadError, RunnerClosed
from lab.profiler import Profiler
from lab.runtimes import create_runtime
from lab.runtimes.onnx import _LOAD_ERRORS, _RUN_ERRORS, OnnxRuntime


@pytest.fixture(scope="module")
def double_model(tmp_path_factory) -> str:
    """y = 2 * x with x float32 [batch, 4] (dynamic batch)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "double.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_specs_and_outputs(double_model: str) -> None:
    with OnnxRuntime(double_model) as rt:
        assert rt.inputs[0].describe() == "x: float32[batch, 4]"
        assert rt.load_ns > 0
        out = rt.infer(np.arange(8, dtype=np.float32).reshape(2, 4))
        assert out[0].tolist() == (np.arange(8).reshape(2, 4) * 2).tolist()


def test_three_spans_per_request_on_slot_lanes(double_model: str) -> None:
    prof = Profiler()
    with OnnxRuntime(double_model) as rt:
        rt.infer(np.ones((1, 4), np.float32), request_id=5, slot=1, profiler=prof)
    spans = prof.spans()
    assert [(s.lane, s.name, s.request_id) for s in spans] == [
        ("h2d/1", "upload", 5), ("device/1", "compute", 5), ("d2h/1", "download", 5)]
    assert spans[0].end_ns == spans[1].start_ns and spans[1].end_ns == spans[2].start_ns


def test_outputs_are_owned_by_the_caller(double_model: str) -> None:
    with OnnxRuntime(double_model) as rt:
        a = rt.infer(np.ones((1, 4), np.float32))[0]
        rt.infer(np.full((1, 4), 3, np.float32))
        assert a.tolist() == [[2, 2, 2, 2]]  # not overwritten by the next request


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.ones((1, 5), np.float32), r"expected shape x: float32\[batch, 4\], got \(1, 5\)"),
        (np.ones((1, 4), np.float64), "expected dtype float32, got float64"),
        (np.ones((4,), np.float32), r"expected rank 2 .* got rank 1"),
        ({"z": np.ones((1, 4), np.float32)}, r"expected inputs named \['x'\], got \['z'\]"),
        ([1, 2, 3, 4], "expected a numpy array or a mapping"),
    ],
)
def test_bad_inputs_name_expected_and_received_and_runtime_survives(double_model: str, bad, match: str) -> None:
    with OnnxRuntime(double_model) as rt:
        with pytest.raises(InputError, match=match):
            rt.infer(bad)
        assert rt.infer(np.ones((3, 4), np.float32))[0].shape == (3, 4)


def test_not_an_onnx_file(tmp_path) -> None:
    p = tmp_path / "model.onnx"
    p.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        OnnxRuntime(p)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxRuntime(tmp_path / "nope.onnx")


def test_backend_run_error_becomes_device_error(tmp_path) -> None:
    # Reshape to an impossible shape fails inside ONNX Runtime at run time
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 3])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "r", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "reshape.onnx"
    onnx.save(model, str(p))
    with OnnxRuntime(p) as rt:
        with pytest.raises(LabError, match="onnxruntime failed on request 9") as info:
            rt.infer(np.ones(4, np.float32), request_id=9)
        assert isinstance(info.value, (DeviceError, InputError))
        assert rt.infer(np.ones(9, np.float32))[0].shape == (3, 3)


def test_every_backend_exception_is_mapped() -> None:
    import onnxruntime.capi.onnxruntime_pybind11_state as state

    backend = {n for n, c in vars(state).items() if inspect.isclass(c) and issubclass(c, BaseException)}
    assert backend, "found no ONNX Runtime exception classes to check"
    assert backend <= set(_LOAD_ERRORS), f"unmapped at load: {backend - set(_LOAD_ERRORS)}"
    assert backend <= set(_RUN_ERRORS), f"unmapped at run: {backend - set(_RUN_ERRORS)}"


def test_closed_runtime_refuses(double_model: str) -> None:
    rt = OnnxRuntime(double_model)
    rt.close()
    with pytest.raises(RunnerClosed):
        rt.infer(np.ones((1, 4), np.float32))


def test_registry(double_model: str) -> None:
    with pytest.raises(ConfigError, match="unknown runtime 'tpu'"):
        create_runtime("tpu", double_model)
    rt = create_runtime("onnx", double_model, threads=1)
    assert rt.describe()["threads"] == 1
    rt.close()
    with pytest.raises(ConfigError):
        OnnxRuntime(double_model, threads=0)


def test_every_runtime_answers_rbln_style_run_and_async_run(double_model: str) -> None:
    import asyncio

    with OnnxRuntime(double_model) as rt:
        task = rt.run(np.ones((1, 4), np.float32))
        assert task.wait(5)[0].tolist() == [[2, 2, 2, 2]]
        rt.parallel = 2  # double buffering: the helper is rebuilt with two workers

        async def main() -> list[float]:
            outs = await asyncio.gather(*(rt.async_run(np.full((1, 4), i, np.float32)) for i in range(4)))
            return [o[0][0, 0].item() for o in outs]

        assert asyncio.run(main()) == [0, 2, 4, 6]
        helper = rt._async
        assert helper.parallel == 2
    assert helper.is_closed  # closing the runtime joined the helper's threads
