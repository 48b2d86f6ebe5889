"""Seed 004's model-side studies: quantization variants, ORT profiles, layout, tiling, batching, PE mode.

Everything runs on the shipped digits model (quantized into a temporary cache) or on numpy
stand-ins; timing logic is checked on a fake clock, the simulator on a virtual clock. Only the
denoiser export (torch's exporter) is marked slow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab.bench import batching, layout, tiling
from lab.bench import quantization as quant
from lab.clock import FakeClock
from lab.errors import ConfigError, InputError
from lab.sim.cost import dequantize_ns, quantize_ns
from lab.sim.presets import get_preset
from lab.trace import Span, Trace
from lab.zoo import Workload, load_workload

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def digits() -> Workload:
    return load_workload("digits")


@pytest.fixture(scope="module")
def variants(digits: Workload, tmp_path_factory: pytest.TempPathFactory) -> dict[str, quant.QuantVariant]:
    pytest.importorskip("sklearn")
    cal = quant.digits_calibration_set()[:400]
    return quant.quantize_variants(digits.model_path, cal, quant.DIGITS_FOLD,
                                   cache_dir=tmp_path_factory.mktemp("quantized"))


def _raw(digits: Workload, n: int | None = None) -> np.ndarray:
    s = digits.samples if n is None else digits.samples[:n]
    return np.ascontiguousarray(s.reshape(-1, 1, 8, 8))


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- the input fold ------------------------------------------------------------------------------
def test_fold_gives_the_loader_integers_back() -> None:
    u = np.arange(256, dtype=np.uint8)
    for fold in (quant.DIGITS_FOLD, quant.EFFICIENTNET_FOLD, quant.InputFold(3, 58.395)):
        assert fold.is_exact()
        assert np.array_equal(fold.quantize(fold.to_float(u)), u)
    assert quant.DIGITS_FOLD.scale == np.float32(1 / 16)
    # the digits preprocessing, exactly
    raw = np.array([[0, 8, 16]], dtype=np.uint8)
    assert np.array_equal(quant.DIGITS_FOLD.to_float(raw), raw.astype(np.float32) / 16)
    assert np.array_equal(quant.EFFICIENTNET_FOLD.to_float(raw), (raw.astype(np.float32) - 127) / 128)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mean": 256, "std": 1.0}, r"expected an integer 0..255 .*got 256"),
    ({"mean": 0, "std": 0.0}, r"expected a finite number > 0, got 0.0"),
    ({"mean": 1.5, "std": 1.0}, r"expected an integer 0..255 .*got 1.5"),
])
def test_fold_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        quant.InputFold(**kwargs)


def test_fold_takes_uint8_pixels_only() -> None:
    with pytest.raises(InputError, match="expected uint8 pixels, got dtype float32"):
        quant.DIGITS_FOLD.to_float(np.zeros(3, dtype=np.float32))


def test_calibration_set_never_contains_a_test_image(digits: Workload) -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    cal = quant.digits_calibration_set()
    assert cal.dtype == np.uint8 and cal.shape == (1797 - 450, 1, 8, 8) and cal.max() == 16
    with np.load(Path(digits.model_path).parent / "digits_test.npz") as npz:
        test_idx = set(npz["indices"].tolist())
    images = load_digits().images.astype(np.uint8)
    train = [i for i in range(len(images)) if i not in test_idx]
    assert np.array_equal(cal[:, 0], images[train])


# -- the variants ----------------------------------------------------------------------------------
def test_variants_have_the_promised_dtypes_and_nodes(variants: dict[str, quant.QuantVariant]) -> None:
    import onnx

    assert list(variants) == list(quant.VARIANTS)
    want = {quant.FLOAT32: ("float32", "float32"), quant.INT8_FLOAT_IO: ("float32", "float32"),
            quant.INT8_UINT8_IN: ("uint8", "float32"), quant.INT8_INT_OUT: ("float32", "uint8"),
            quant.INT8_UINT8_IO: ("uint8", "uint8")}
    for name, v in variants.items():
        assert (v.input_dtype, v.output_dtype) == want[name], name
        nodes = {n.name: n.op_type for n in onnx.load(str(v.path)).graph.node}
        assert (quant.INPUT_QUANTIZE_NODE in nodes) == (v.quantized and v.input_dtype == "float32"), name
        assert (quant.OUTPUT_DEQUANTIZE_NODE in nodes) == (v.quantized and v.output_dtype == "float32"), name
    # the folded input: scale 1/16, zero point 0; the calibrated one: the range 0..1 over 255 steps
    assert variants[quant.INT8_UINT8_IN].input_quant == (0.0625, 0)
    assert variants[quant.INT8_FLOAT_IO].input_quant == pytest.approx((1 / 255, 0))
    scale, zp = variants[quant.INT8_INT_OUT].output_quant
    assert scale > 0 and 0 <= zp <= 255
    assert float(variants[quant.INT8_UINT8_IN].info["fold_max_abs_diff"]) == 0.0


def test_uint8_input_computes_exactly_what_the_folded_float_input_would(
        digits: Workload, variants: dict[str, quant.QuantVariant]) -> None:
    raw = _raw(digits)
    u8 = _session(variants[quant.INT8_UINT8_IN].path).run(None, {"image": raw})[0]
    u8_io = _session(variants[quant.INT8_UINT8_IO].path).run(None, {"image": raw})[0]
    # the integer output is the same logits before their Dequantize
    assert u8_io.dtype == np.uint8
    assert np.array_equal(variants[quant.INT8_UINT8_IO].dequantize(u8_io), u8)


def test_every_variant_is_measured_accurate_and_the_integer_input_stays_fused(
        digits: Workload, variants: dict[str, quant.QuantVariant]) -> None:
    raw = _raw(digits)
    for name, v in variants.items():
        out = _session(v.path).run(None, {"image": v.prepare(raw, quant.DIGITS_FOLD)})[0]
        assert np.mean(quant.predict_top1(out) == digits.labels) >= 0.95, name
    one = raw[:1]
    ops = {n: set(quant.profile_onnx(variants[n].path, variants[n].prepare(one, quant.DIGITS_FOLD), runs=2,
                                     warmup=1).nodes["op"]) for n in (quant.INT8_FLOAT_IO, quant.INT8_UINT8_IN)}
    # removing the input Quantize must not cost the first layer its integer kernel
    assert ops[quant.INT8_UINT8_IN] == ops[quant.INT8_FLOAT_IO] - {"QuantizeLinear"}
    assert "Conv" not in ops[quant.INT8_UINT8_IN]


def test_variants_are_cached_by_content(digits: Workload, variants: dict[str, quant.QuantVariant]) -> None:
    folder = variants[quant.INT8_FLOAT_IO].path.parent
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}
    again = quant.quantize_variants(digits.model_path, quant.digits_calibration_set()[:400], quant.DIGITS_FOLD,
                                    cache_dir=folder)
    assert {v.path for v in again.values()} == {v.path for v in variants.values()}
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} == before


def test_quantize_variants_errors(digits: Workload, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a non-empty uint8 calibration set, got float32"):
        quant.quantize_variants(digits.model_path, np.zeros((2, 1, 8, 8), np.float32), quant.DIGITS_FOLD,
                                cache_dir=tmp_path)
    with pytest.raises(Exception, match="no ONNX file at"):
        quant.quantize_variants(tmp_path / "missing.onnx", np.zeros((2, 1, 8, 8), np.uint8), quant.DIGITS_FOLD)


# -- ONNX Runtime's profile ------------------------------------------------------------------------
def _node(name: str, op: str, start_us: int, dur_us: int, peak: int = 0) -> Span:
    return Span("Node", f"{name}_kernel_time", -1, start_us * 1000, (start_us + dur_us) * 1000,
                {"op_name": op, "mem_in_use_peak": str(peak), "mem_arena_held": str(2 * peak)})


def test_parse_ort_profile_keeps_the_last_runs_and_takes_medians() -> None:
    spans = [Span("Session", "session_initialization", -1, 0, 1_000, None)]
    durations = {0: (50, 9), 1: (10, 2), 2: (12, 3), 3: (11, 40)}  # run 0 is warm-up; run 3 has an outlier
    for run, (q, conv) in durations.items():
        t0 = 1_000 * (run + 1)
        spans.append(Span("Session", "model_run", -1, t0 * 1000, (t0 + 100) * 1000, None))
        spans.append(_node("lab_input_quantize", "QuantizeLinear", t0 + 1, q, peak=100 * (run + 1)))
        spans.append(_node("conv", "QLinearConv", t0 + 60, conv))
    prof = quant.parse_ort_profile(Trace(spans=spans), runs=3)
    assert prof.runs == 3 and prof.run_us == 100.0
    assert prof.node_us("lab_input_quantize") == 11.0  # median of 10, 12, 11 (the warm-up's 50 dropped)
    assert prof.op_us("QLinearConv") == 3.0  # median of 2, 3, 40: the outlier does not move it
    assert prof.op_counts() == {"QLinearConv": 1.0, "QuantizeLinear": 1.0}
    assert prof.memory == {"peak_in_use_bytes": 400, "arena_held_bytes": 800}
    assert {s.lane for s in prof.trace.spans} == {"host/run", "host/ops"}
    assert [s.name for s in prof.trace.spans if s.lane == "host/ops"] == ["QuantizeLinear", "QLinearConv"]
    with pytest.raises(ConfigError, match="expected at least 5 model_run spans in the profile, got 4"):
        quant.parse_ort_profile(Trace(spans=spans), runs=5)


def test_profile_onnx_reads_the_runtime_profile(digits: Workload) -> None:
    prof = quant.profile_onnx(digits.model_path, digits.inputs(1), runs=3, warmup=1, threads=1)
    assert prof.runs == 3 and prof.run_us > 0
    assert set(prof.nodes["op"]) >= {"Gemm", "Relu"} or "Conv" in set(prof.nodes["op"])
    assert (prof.nodes["calls_per_run"] >= 1).all()
    with pytest.raises(ConfigError, match="expected runs >= 1"):
        quant.profile_onnx(digits.model_path, digits.inputs(1), runs=0)


# -- interleaved timing -----------------------------------------------------------------------------
def test_measure_interleaved_times_each_callable_in_blocks_in_rotating_order() -> None:
    clk = FakeClock()
    order: list[str] = []

    def work(name: str, ns: int):
        def fn() -> None:
            order.append(name)
            clk.advance(ns)
        return fn

    out = quant.measure_interleaved({"a": work("a", 1_000), "b": work("b", 4_000)}, max_run_time_s=0.05,
                                    min_rounds=3, block_s=0.002, warmup=1, clock=clk)
    assert out["a"].block_size == 2_000 and out["b"].block_size == 500
    assert out["a"].median_ns == 1_000 and out["b"].median_ns == 4_000 and out["a"].iqr_ns == 0
    assert out["a"].first_call_ns == 1_000
    # rounds: each 2 ms + 2 ms of fake time; the budget of 50 ms stops it after 13 rounds
    assert out["a"].num_blocks == out["b"].num_blocks == 13
    runs: list[list] = []  # run-length encoding of the timed calls (after 2 cold + 2 warm-up calls)
    for name in order[4:]:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    # rounds a|b, b|a, a|b, ...: the order rotates, so blocks meet back to back at round boundaries
    assert runs[:4] == [["a", 2_000], ["b", 1_000], ["a", 4_000], ["b", 1_000]]
    with pytest.raises(ConfigError, match="expected at least one callable"):
        quant.measure_interleaved({})


# -- the study --------------------------------------------------------------------------------------
def test_quantization_study_table(digits: Workload, variants: dict[str, quant.QuantVariant]) -> None:
    raw = _raw(digits, 120)
    labels = digits.labels[:120].copy()
    labels[100:] = -1  # unknown labels are left out of the accuracy
    study = quant.quantization_study(variants, raw, quant.DIGITS_FOLD, labels=labels, profile_runs=3,
                                     max_run_time_s=0.02, threads=1)
    t = study.table.set_index("variant")
    assert list(t.index) == list(quant.VARIANTS)
    assert t.loc[quant.INT8_FLOAT_IO, "input_quantize_calls"] == 1.0
    assert t.loc[quant.INT8_UINT8_IN, "input_quantize_calls"] == 0.0
    assert t.loc[quant.INT8_UINT8_IN, "input_quantize_us"] == 0.0
    assert t.loc[quant.INT8_INT_OUT, "output_dequantize_calls"] == 0.0
    assert (t["labelled"] == 100).all() and (t["samples"] == 120).all()
    for name, p in study.predictions.items():
        assert t.loc[name, "accuracy"] == pytest.approx(np.mean(p[:100] == labels[:100]))
        assert t.loc[name, "disagreements"] == int(np.sum(p != study.predictions[quant.FLOAT32]))
    assert (np.diag(study.pairwise.to_numpy()) == 0).all()
    assert (study.pairwise.to_numpy() == study.pairwise.to_numpy().T).all()
    assert set(study.examples["sample"]) == set(np.flatnonzero(
        np.any([p != study.predictions[quant.FLOAT32] for p in study.predictions.values()], axis=0)))
    assert len(quant.variant_summary(study, "digits")) == 3
    with pytest.raises(ConfigError, match="reference 'nope' is not among the variants"):
        quant.quantization_study(variants, raw, quant.DIGITS_FOLD, reference="nope")
    with pytest.raises(ConfigError, match=r"expected 1 <= batch <= 120 \(the samples\), got 0"):
        quant.quantization_study(variants, raw, quant.DIGITS_FOLD, batch=0)
    with pytest.raises(ConfigError, match=r"expected 120 labels \(-1: unknown\), got shape \(3,\)"):
        quant.quantization_study(variants, raw, quant.DIGITS_FOLD, labels=np.zeros(3))


def test_simulated_variants_charge_host_conversion_for_float_io_only(
        variants: dict[str, quant.QuantVariant]) -> None:
    warboy = get_preset("warboy")
    t = quant.simulated_variants(variants, preset="warboy").set_index("variant")
    assert t.loc[quant.INT8_FLOAT_IO, "quantize_us"] == quantize_ns(256, warboy) / 1e3  # 1x1x8x8 float32
    assert t.loc[quant.INT8_FLOAT_IO, "dequantize_us"] == dequantize_ns(40, warboy) / 1e3  # 10 float32 logits
    assert t.loc[quant.INT8_UINT8_IN, "quantize_us"] == 0 and t.loc[quant.INT8_INT_OUT, "dequantize_us"] == 0
    assert t.loc[quant.INT8_UINT8_IO, "host_share"] == 0
    assert (t["precision"] == "int8").all() and t["device"].str.contains("simulated NPU \\(simulator\\)").all()


def test_host_conversion_cost_puts_the_cpu_next_to_the_simulator() -> None:
    t = quant.host_conversion_cost({"seed": quant.SEED_YOLOX_SHAPE, "small": (1, 3, 8, 8)}, runs=2)
    seed = t.set_index("tensor").loc["seed"]
    assert seed.float_bytes == 4_915_200
    assert seed.sim_quantize_us == quantize_ns(4_915_200, get_preset("warboy")) / 1e3
    assert seed.sim_quantize_us == pytest.approx(quant.SEED_QUANTIZE_MS["float32"] * 1e3, rel=0.01)
    assert seed.seed_quantize_us == 60_639.0 and seed.cpu_quantize_us > 0
    assert pd.isna(t.set_index("tensor").loc["small", "seed_quantize_us"])


# -- layout ------------------------------------------------------------------------------------------
def test_nhwc_model_is_the_same_model_on_transposed_input(digits: Workload, tmp_path: Path) -> None:
    nhwc = layout.nhwc_input_model(digits.model_path, cache_dir=tmp_path)
    assert layout.nhwc_input_model(digits.model_path, cache_dir=tmp_path) == nhwc  # cached
    x = digits.inputs(16)
    a = _session(digits.model_path).run(None, {"image": x})[0]
    sess = _session(nhwc)
    assert [d if isinstance(d, int) else None for d in sess.get_inputs()[0].shape] == [None, 8, 8, 1]
    b = sess.run(None, {"image": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0]
    assert np.array_equal(a, b)


def test_nhwc_model_needs_one_rank_4_input(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ConfigError, match=r"expected one rank-4 NCHW input, got 1 input\(s\) of rank \[2\]"):
        layout.nhwc_input_model(path, cache_dir=tmp_path)


def test_layout_study_on_digits(digits: Workload, tmp_path: Path) -> None:
    images = np.ascontiguousarray(digits.samples[:20, :, :, None])  # NHWC, as a loader gives them
    t = layout.layout_study(digits.model_path, images, prepare=quant.DIGITS_FOLD.to_float,
                            labels=digits.labels[:20], model_label="digits", profile_runs=2, max_run_time_s=0.02,
                            threads=1, cache_dir=tmp_path).set_index("case")
    assert list(t.index) == list(layout.CASES)
    assert (t["max_abs_diff"] == 0).all() and (t["agreement"] == 1).all()
    assert t.loc[layout.CASE_HOST_TRANSPOSE, "host_transpose_us"] > 0
    assert t.loc[layout.CASE_MATCHED, "host_transpose_us"] == t.loc[layout.CASE_NHWC_MODEL, "host_transpose_us"] == 0
    assert t["accuracy"].iloc[0] == pytest.approx(np.mean(
        quant.predict_top1(_session(digits.model_path).run(None, {"image": digits.inputs(20)})[0])
        == digits.labels[:20]))
    assert len(layout.layout_summary(t.reset_index())) == 1
    with pytest.raises(InputError, match=r"expected uint8 images shaped \(n, H, W, C\), got float32"):
        layout.layout_study(digits.model_path, images.astype(np.float32), prepare=np.asarray)


def test_pad_slice_and_transpose_costs() -> None:
    t = layout.pad_slice_cost({"aligned": (1, 3, 4, 64), "odd": (1, 3, 4, 33)}, max_run_time_s=0.01)
    t = t.set_index("tensor")
    assert t.loc["aligned", "padded_width"] == 64 and t.loc["aligned", "pad_us"] == 0
    assert t.loc["odd", "padded_width"] == 64 and t.loc["odd", "pad_us"] > 0 and t.loc["odd", "slice_us"] > 0
    assert t.loc["odd", "extra_bytes_pct"] == pytest.approx(100 * 31 / 33)
    with pytest.raises(ConfigError, match="expected multiple >= 1, got 0"):
        layout.pad_slice_cost({"x": (4,)}, multiple=0)
    tc = layout.transpose_cost([16], max_run_time_s=0.01)
    assert list(tc["dtype"]) == ["uint8", "float32"] and list(tc["bytes"]) == [768, 3072]


# -- tiling --------------------------------------------------------------------------------------------
def _box3(x: np.ndarray) -> np.ndarray:
    """A 3x3 box filter with zero padding (receptive field 3, radius 1): a numpy stand-in for a conv."""
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, w = x.shape[2:]
    return sum(p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3))


def test_tile_plan_covers_every_pixel_once() -> None:
    tiles = tiling.tile_plan(10, 7, 4, 2)
    cover = np.zeros((10, 7), dtype=int)
    for t in tiles:
        top, bottom, left, right = t.core
        cover[top:bottom, left:right] += 1
        st, sb, sl, sr = t.source
        assert 0 <= st <= top and bottom <= sb <= 10 and 0 <= sl <= left and right <= sr <= 7
        assert top - st == min(2, top) and sb - bottom == min(2, 10 - bottom)
    assert (cover == 1).all() and len(tiles) == 3 * 2
    with pytest.raises(ConfigError, match="expected halo >= 0, got -1"):
        tiling.tile_plan(4, 4, 2, -1)


def test_tiled_equals_whole_with_a_halo_at_least_the_radius() -> None:
    img = np.random.default_rng(0).random((1, 2, 23, 17)).astype(np.float32)
    whole = _box3(img)
    assert np.allclose(tiling.run_tiled(_box3, img, 5, 1), whole, atol=1e-6)
    assert np.allclose(tiling.run_tiled(_box3, img, 5, 3), whole, atol=1e-6)
    assert not np.allclose(tiling.run_tiled(_box3, img, 5, 0), whole, atol=1e-3)  # too small a halo
    with pytest.raises(InputError, match="expected the model to keep a tile's size"):
        tiling.run_tiled(lambda x: x[:, :, 1:], img, 5, 1)


def test_best_patch_and_summary_from_a_table() -> None:
    table = pd.DataFrame([
        {"patch": "whole", "tiles": 1, "computed_ratio": 1.0, "latency_ms": 10.0, "peak_in_use_mib": 64.0,
         "max_abs_diff": 0.0, "equal": True},
        {"patch": "64", "tiles": 16, "computed_ratio": 1.3, "latency_ms": 12.0, "peak_in_use_mib": 4.0,
         "max_abs_diff": 0.0, "equal": True},
        {"patch": "128", "tiles": 4, "computed_ratio": 1.1, "latency_ms": 9.0, "peak_in_use_mib": 16.0,
         "max_abs_diff": 0.0, "equal": True},
        {"patch": "32", "tiles": 64, "computed_ratio": 1.7, "latency_ms": 1.0, "peak_in_use_mib": 1.0,
         "max_abs_diff": 0.5, "equal": False},
    ])
    assert tiling.best_patch(table).patch == "128"  # the unequal 32 is never "best"
    lines = tiling.tiling_summary(table, halo=4, receptive_field=9)
    assert "1 patch size(s) differ" in lines[0] and "4.0x less memory" in lines[1]
    with pytest.raises(ConfigError, match="no patch size gave the whole image's output"):
        tiling.best_patch(table[table["patch"].isin(["whole", "32"])])


def test_denoiser_spec() -> None:
    spec = tiling.DenoiserSpec(channels=8, layers=5, kernel_size=3)
    assert spec.receptive_field == 11 and spec.radius == 5
    assert spec.flops_per_pixel() == 2 * 9 * (3 * 8 + 8 * 8 * 3 + 8 * 3)
    with pytest.raises(ConfigError, match="expected an odd size"):
        tiling.DenoiserSpec(kernel_size=4)


@pytest.mark.slow  # torch's dynamo exporter: a few seconds
def test_exported_denoiser_tiles_exactly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    spec = tiling.DenoiserSpec(channels=4, layers=3)
    path = tiling.export_denoiser(spec, cache_dir=tmp_path)
    img = np.random.default_rng(1).random((1, 3, 40, 56)).astype(np.float32)  # not the exported 64x64
    with torch.no_grad():
        ref = tiling.build_denoiser(spec)(torch.from_numpy(img)).numpy()
    assert np.allclose(_session(path).run(None, {"image": img})[0], ref, atol=1e-5)
    table = tiling.tiling_sweep(path, img, [16, 32, 999], halo=spec.radius, max_run_time_s=0.02, threads=1)
    assert list(table["patch"]) == ["whole", "16", "32"] and table["equal"].all()
    rows = table.set_index("patch")
    assert rows.loc["16", "tiles"] == 3 * 4 and rows.loc["16", "computed_ratio"] > rows.loc["32", "computed_ratio"]
    assert rows.loc["16", "peak_in_use_mib"] < rows.loc["whole", "peak_in_use_mib"]


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 3x3 convolutions (receptive field 5, radius 2) with dynamic N, H, W, written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32), f"w{i}") for i in (1, 2)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])]
    dims = ["n", 3, "h", "w"]
    graph = helper.make_graph(nodes, "conv2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("conv") / "conv2.onnx"
    onnx.save(model, str(path))
    return path


def test_tiling_sweep_on_a_conv_model(conv_model: Path) -> None:
    img = np.random.default_rng(2).random((1, 3, 48, 40)).astype(np.float32)
    t = tiling.tiling_sweep(conv_model, img, [8, 16, 64], halo=2, max_run_time_s=0.02, threads=1)
    assert list(t["patch"]) == ["whole", "8", "16"] and t["equal"].all() and (t["max_abs_diff"] < 1e-5).all()
    rows = t.set_index("patch")
    assert rows.loc["8", "tiles"] == 6 * 5 and rows.loc["whole", "computed_ratio"] == 1.0
    assert rows.loc["8", "computed_ratio"] > rows.loc["16", "computed_ratio"] > 1.0
    assert rows.loc["8", "peak_in_use_mib"] < rows.loc["whole", "peak_in_use_mib"]  # ONNX Runtime's own numbers
    short = tiling.tiling_sweep(conv_model, img, [8], halo=1, max_run_time_s=0.01, threads=1)
    assert not short.set_index("patch").loc["8", "equal"]  # a halo short of the radius is caught
    with pytest.raises(InputError, match=r"expected one image shaped \(1, C, H, W\), got shape \(3, 48, 40\)"):
        tiling.tiling_sweep(conv_model, img[0], [8], halo=2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_rss_peak_runs_in_a_fresh_process(conv_model: Path) -> None:
    img = np.zeros((1, 3, 256, 256), dtype=np.float32)
    whole = tiling.rss_peak(conv_model, img, 256, 0, threads=1)
    # the parent's peak is not inherited: a fresh interpreter with numpy and ONNX Runtime, well under a GiB
    assert 10 * 2**20 < whole["before"] < 2**30 and whole["peak"] >= whole["before"]
    with pytest.raises(Exception, match="the measuring subprocess failed"):
        tiling.rss_peak(conv_model, img[0], 16, 2)


# -- batching and PE modes ---------------------------------------------------------------------------
def test_batching_knee_is_the_smallest_batch_near_the_best() -> None:
    t = pd.DataFrame({"batch": [1, 2, 4, 8, 16], "throughput_sps": [10.0, 18.0, 30.0, 33.0, 34.0]})
    assert batching.batching_knee(t) == 8  # 33 x 1.1 >= 34; 30 x 1.1 < 34
    assert batching.batching_knee(t, min_gain=1.0) == 16
    assert batching.batching_knee(t, min_gain=4.0) == 1
    noisy = pd.DataFrame({"batch": [1, 2, 4], "throughput_sps": [10.0, 30.0, 29.0]})
    assert batching.batching_knee(noisy) == 2
    with pytest.raises(ConfigError, match="expected min_gain >= 1, got 0.5"):
        batching.batching_knee(t, min_gain=0.5)


def test_batch_sweep_on_digits(digits: Workload) -> None:
    t = batching.batch_sweep(digits.model_path, digits.inputs(), [8, 1, 8], labels=digits.labels, threads=1,
                             max_run_time_s=0.02)
    assert list(t["batch"]) == [1, 8]
    assert (t["accuracy"] == digits.info["test_accuracy"]).all() or t["accuracy"].nunique() == 1
    assert (t["throughput_sps"] > 0).all() and t["speedup"].iloc[0] == 1.0
    assert t["throughput_sps"].iloc[1] == pytest.approx(8 / (t["latency_ms"].iloc[1] / 1e3))
    assert "Batching stops paying at batch" in batching.batch_summary(t, where="cpu")
    with pytest.raises(ConfigError, match=r"expected batch sizes >= 1, got \[0\]"):
        batching.batch_sweep(digits.model_path, digits.inputs(), [0])


def test_simulated_batch_sweep_is_the_model_exactly(variants: dict[str, quant.QuantVariant]) -> None:
    from lab.runtimes.simnpu import SimNpuRuntime

    path = variants[quant.INT8_UINT8_IN].path
    t = batching.simulated_batch_sweep(path, [1, 16], preset="warboy", requests=8).set_index("batch")
    with SimNpuRuntime(path, preset="warboy", mode="timing") as rt:
        for b in (1, 16):
            st = rt.modelled_stage_ns(b)
            assert t.loc[b, "latency_us"] == pytest.approx(sum(st.values()) / 1e3)
    assert t.loc[16, "throughput_sps"] > 8 * t.loc[1, "throughput_sps"]  # launch and DMA setup amortised
    assert t.loc[1, "quantize_us"] == 0  # uint8 input


def test_pe_modes_fused_for_latency_single_for_throughput(variants: dict[str, quant.QuantVariant]) -> None:
    from lab.sim.cost import compute_ns
    from lab.zoo.onnx_cost import model_cost

    path = variants[quant.INT8_UINT8_IO].path
    # a 1 TOPS device: compute (1.4 us fused, 2.7 us single) is visible next to the 50 us launch
    t = batching.pe_mode_study({"digits": path}, preset="warboy", requests=16, peak_int8_ops_per_s=10**12)
    t = t.set_index("pe_mode")
    p = get_preset("warboy").with_overrides(peak_int8_ops_per_s=10**12)
    flops = model_cost(path, batch=1).flops
    for mode in ("single", "fused"):
        assert t.loc[mode, "compute_us"] == compute_ns(flops, p, pe_mode=mode) / 1e3
    assert t.loc["fused", "latency_us"] < t.loc["single", "latency_us"]
    # two engines paying the launch in parallel vs one paying it in turn
    assert t.loc["single", "throughput_rps"] > 1.5 * t.loc["fused", "throughput_rps"]
    lines = batching.pe_summary(t.reset_index())
    assert "-> fused PE; throughput" in lines[0] and "-> single PE. " in lines[0] and "confirmed" in lines[0]


def test_core_split_runs_both_layouts(digits: Workload) -> None:
    t = batching.core_split_study(digits.model_path, digits.inputs(32), requests=20, cores=2)
    assert list(t["threads_per_request"]) == [2, 1] and list(t["concurrent"]) == [1, 2]
    assert (t["errors"] == 0).all() and (t["throughput_rps"] > 0).all()


def test_studies_do_not_import_backends() -> None:
    code = ("import sys, lab.bench.quantization, lab.bench.layout, lab.bench.tiling, lab.bench.batching; "
            "bad = [m for m in ('torch', 'onnxruntime', 'onnx', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
