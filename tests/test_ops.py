"""Seed 003's op suite (lab.bench.ops) and reference tables (lab.bench.seed003): shapes, counts, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lab.bench import ops, seed003
from lab.errors import ConfigError
from lab.trace import Trace

pytest.importorskip("onnx")
HAVE = ops.available_backends()
TINY = ops.MeasureOptions(warmup=0, min_run_time_s=0.001, max_run_time_s=0.01)


# -- cases: shapes, FLOPs, bytes -------------------------------------------------------------------
def test_seed_op_cases_use_the_seed_shapes() -> None:
    cases = {c.op: c for c in ops.seed_op_cases()}
    assert tuple(cases) == ops.SEED_OPS
    assert all(c.depth == 3 for c in cases.values())
    assert cases["linear"].input_shape == (4, 4096) and cases["linear"].output_shape == (4, 4096)
    assert cases["conv2d"].input_shape == (1, 128, 32, 32) and cases["conv2d"].output_shape == (1, 128, 32, 32)
    assert cases["layernorm"].input_shape == (1, 32, 32, 128)  # the seed's NHWC tensor, normalised over C
    assert cases["transpose"].layer_shapes[0] == ((1, 32, 32, 128), (1, 128, 32, 32))  # NHWC -> NCHW
    assert cases["upsample_bilinear"].output_shape == (1, 128, 256, 256)


def test_flops_and_bytes_by_hand() -> None:
    conv = ops.make_case("conv2d", (1, 128, 32, 32), kernel=3, padding=1, depth=3)
    assert conv.flops == 3 * 2 * 128 * 32 * 32 * 128 * 9
    assert conv.weight_elements == 3 * (128 * 128 * 9 + 128)
    lin = ops.make_case("linear", (4, 4096))
    assert lin.flops == 2 * 4 * 4096 * 4096
    relu = ops.make_case("relu", (1, 128, 32, 32), depth=3)
    assert relu.flops == 3 * 128 * 32 * 32
    assert relu.bytes == 3 * 2 * 128 * 32 * 32 * 4
    tr = ops.make_case("transpose", (1, 64, 64, 16))
    assert tr.flops == 0 and tr.bytes == 2 * 64 * 64 * 16 * 4 and tr.is_layout
    unpadded = ops.make_case("conv2d", (1, 64, 32, 32), kernel=7)
    assert unpadded.output_shape == (1, 64, 26, 26)


@pytest.mark.parametrize("case", [
    ops.make_case("conv2d", (1, 8, 10, 12), out_channels=6, kernel=3, padding=1, depth=2),
    ops.make_case("conv2d", (1, 8, 9, 9), out_channels=8, kernel=5, stride=2),
    ops.make_case("relu", (2, 3, 4, 5), depth=3),
    ops.make_case("linear", (3, 20), out_features=7),
    ops.make_case("batchnorm", (1, 6, 5, 5), depth=3),
    ops.make_case("layernorm", (1, 4, 4, 8), depth=3),
    ops.make_case("upsample_bilinear", (1, 3, 4, 5), depth=2),
    ops.make_case("upsample_nearest", (1, 3, 4, 5), scale=3),
    ops.make_case("transpose", (1, 4, 5, 6), depth=3),
    ops.make_case("reshape", (1, 4, 5, 6)),
    ops.make_case("pixel_shuffle", (1, 16, 3, 3), depth=2),
], ids=lambda c: c.label)
def test_flops_agree_with_the_onnx_cost_counter(case: ops.OpCase) -> None:
    from lab.zoo.onnx_cost import model_cost

    cost = model_cost(case.onnx_model())
    assert cost.flops == case.flops
    assert cost.outputs[0].shape == case.output_shape
    # the counter counts float initializers: weights plus Resize's scales (int64 shapes are not counted)
    scales = sum(a.size for shape, _ in case.layer_shapes for a in case.kind.constants(shape, case.p).values()
                 if a.dtype == np.float32)
    assert cost.params == case.weight_elements + scales
    assert cost.num_nodes == case.depth


def test_kernel_size_cases_reproduce_the_seed_flops() -> None:
    seed = seed003.seed_kernel_size_table()
    for case in ops.kernel_size_cases():
        k = dict(case.coords)["kernel"]
        assert case.flops == pytest.approx(seed.loc[k, "seed flops"], rel=0.03), k  # the seed's "about" figures
        assert case.output_shape[2:] == case.input_shape[2:]  # "same" padding


def test_equal_flops_sweeps() -> None:
    ratio = [c.flops for c in ops.channel_ratio_cases()]
    assert max(ratio) / min(ratio) < 1.06
    conv = ops.conv_cases(factors=(1, 2, 4))
    by_factor: dict[int, list[int]] = {}
    for c in conv:
        by_factor.setdefault(dict(c.coords)["factor"], []).append(c.flops)
    for f, flops in by_factor.items():
        assert max(flops) / min(flops) < 1.15, f  # growing H, W, in or out by f: about the same FLOPs
    assert [dict(c.coords)["sweep"] for c in ops.linear_cases(sizes=(8,), batch_sizes=(1,))] == ["K", "N", "M"]


@pytest.mark.parametrize(("op", "shape", "params", "message"), [
    ("softmax", (1, 2), {}, "unknown op"),
    ("relu", (1, 2), {"kernel": 3}, "unknown parameter"),
    ("conv2d", (1, 4, 4, 4), {"kernel": 7}, "does not fit"),
    ("conv2d", (4, 4), {}, "rank"),
    ("pixel_shuffle", (1, 6, 4, 4), {}, "multiple of factor"),
    ("reshape", (1, 2, 3), {"shape": (4, -1)}, "cannot reshape"),
    ("transpose", (1, 2, 3), {"perm": (0, 1, 1)}, "not a permutation"),
    ("upsample_nearest", (1, 2, 3, 3), {"scale": 0}, "scale"),
])
def test_bad_cases_are_refused(op: str, shape: tuple[int, ...], params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ops.make_case(op, shape, **params)


def test_bad_depth_and_study() -> None:
    with pytest.raises(ConfigError, match="depth"):
        ops.make_case("relu", (1, 2), depth=0)
    with pytest.raises(ConfigError, match="unknown op study"):
        ops.study_cases("nope")
    with pytest.raises(ConfigError, match="unknown backend"):
        ops.default_backends(["tpu"])


@pytest.mark.parametrize("study", sorted(ops.STUDIES))
def test_quick_studies_are_smaller(study: str) -> None:
    quick, full = ops.study_cases(study, quick=True), ops.study_cases(study)
    assert quick and all(c.study == study for c in quick)
    assert len(quick) <= len(full)
    assert sum(c.flops + c.bytes for c in quick) <= sum(c.flops + c.bytes for c in full)


# -- both backends compute the same function -------------------------------------------------------
SAME_CASES = [
    ops.make_case("conv2d", (1, 8, 10, 10), out_channels=12, kernel=3, padding=1, depth=2),
    ops.make_case("linear", (4, 64), out_features=32),
    ops.make_case("batchnorm", (1, 16, 8, 8), depth=3),
    ops.make_case("layernorm", (1, 8, 8, 16), depth=3),
    ops.make_case("upsample_bilinear", (1, 4, 8, 8), depth=2),
    ops.make_case("upsample_nearest", (1, 4, 8, 8), depth=2),
    ops.make_case("transpose", (1, 8, 8, 16), depth=3),
    ops.make_case("reshape", (1, 8, 8, 16)),
    ops.make_case("pixel_shuffle", (1, 16, 8, 8)),
    ops.make_case("relu", (1, 8, 8, 16), depth=3),
]


@pytest.mark.skipif(set(ops.BACKENDS) - set(HAVE), reason="needs PyTorch and ONNX Runtime")
@pytest.mark.parametrize("case", SAME_CASES, ids=lambda c: c.op)
def test_torch_and_onnx_compute_the_same(case: ops.OpCase) -> None:
    a, b = ops.case_output(case, "torch", seed=3), ops.case_output(case, "onnx", seed=3)
    assert a.shape == b.shape == case.output_shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.abs(a).max() > 0.1  # real activations, not zeros


@pytest.mark.skipif("onnx" not in HAVE, reason="needs ONNX Runtime")
def test_layout_ops_run_unfolded() -> None:
    case = ops.make_case("transpose", (1, 4, 4, 8), depth=3)
    assert case.ort_optimization == "disabled"
    assert ops.ort_executed_ops(case) == ["Transpose"] * 3
    # why: ONNX Runtime's optimiser folds the chain (three cyclic transposes are the identity)
    assert "Transpose" not in ops.ort_executed_ops(case, graph_optimization="all")
    conv = ops.make_case("conv2d", (1, 8, 8, 8), padding=1, depth=3)
    assert conv.ort_optimization == "all" and ops.ort_executed_ops(conv).count("Conv") == 3


# -- measuring -------------------------------------------------------------------------------------
def test_run_cases_returns_a_tidy_table() -> None:
    cases = ops.study_cases("channel_ratio", hw=8, pairs=((8, 8), (4, 16)))
    df = ops.run_cases(cases, options=TINY, progress=False)
    assert len(df) == len(cases) * len(HAVE)
    assert set(df["backend"]) == set(HAVE)
    assert {"study", "case", "in_channels", "out_channels", "flops", "bytes", "latency_ns", "iqr_ns", "min_ns",
            "gflop_per_s", "gb_per_s", "start_ns", "end_ns", "threads", "ort_optimization"} <= set(df.columns)
    assert (df["latency_ns"] > 0).all() and (df["min_ns"] <= df["latency_ns"]).all()
    assert (df["end_ns"] > df["start_ns"]).all()
    np.testing.assert_allclose(df["gflop_per_s"], df["flops"] / df["latency_ms"] / 1e6, rtol=1e-2)
    assert pd.api.types.is_integer_dtype(df["latency_ns"])


@pytest.mark.skipif("torch" not in HAVE, reason="needs PyTorch")
def test_threads_are_applied_and_restored() -> None:
    import torch

    before = torch.get_num_threads()
    df = ops.run_cases([ops.make_case("relu", (1, 4, 4, 4))], backends=["torch"], progress=False,
                       options=ops.MeasureOptions(warmup=0, min_run_time_s=0.001, max_run_time_s=0.01, threads=1))
    assert df["threads"].tolist() == [1]
    assert torch.get_num_threads() == before


def test_measure_options_preset() -> None:
    quick = ops.MeasureOptions.preset(True, threads=1, max_run_time_s=None)
    assert quick.warmup == 1 and quick.max_run_time_s == 0.2 and quick.threads == 1
    assert ops.MeasureOptions.preset(False) == ops.MeasureOptions()
    with pytest.raises(ConfigError):
        ops.run_cases([ops.make_case("relu", (1, 2))], options=ops.MeasureOptions(min_run_time_s=0), progress=False)


# -- beside the seed -------------------------------------------------------------------------------
def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_compare_op_table_sets_ours_beside_the_seed() -> None:
    rows = [{"op": op, "backend": b, "latency_ms": 1.0 + i, "flops": 10, "bytes": 20}
            for i, op in enumerate(ops.SEED_OPS) for b in ("torch", "onnx")]
    table = ops.compare_op_table(_table(rows))
    assert list(table.index) == list(ops.SEED_OPS)
    assert table.loc["conv2d", "seed RTX3090 PyTorch ms"] == 0.1678
    assert table.loc["layernorm", "seed A13 TFLite ms"] == 7.28187
    assert table.loc["relu", "torch / seed RTX3090"] == pytest.approx(2.0 / 0.0171)


def test_seed_tables_are_transcribed() -> None:
    from lab.zoo.backbones import BACKBONES

    backbones = seed003.seed_backbone_table()
    assert len(backbones) == 10 and backbones.loc["resnet50", "seed A13 TFLite ms"] == 32.4437
    for name, row in backbones.iterrows():  # the zoo carries the same seed numbers
        assert BACKBONES[name].seed_macs == row["seed macs"] and BACKBONES[name].seed_tflite_nodes == \
            row["seed tflite nodes"]
    assert backbones.loc["resnet34", "seed RTX3090 PyTorch gmac/s"] == pytest.approx(3.6e9 / 3.497e-3 / 1e9)
    ratio = seed003.seed_channel_ratio_table()
    assert ratio.iloc[-1][["in_channels", "out_channels", "seed A13 TFLite ms"]].tolist() == [36, 432, 7.828]
    blocks = seed003.seed_block_table()
    assert blocks.loc["mbconv", "seed tflite nodes"] == 16 and blocks.loc["residual", "seed A13 CoreML ms"] == 1.87518
    assert seed003.seed_kernel_size_table().loc[3, "seed A13 TFLite ms"] == 15.0811
    assert seed003.seed_stacking_notes()["efficientnet_b0_pieces"] == 19
    assert seed003.seed_device_table().loc["FP32 performance", "A13 Bionic"] == "691.2 GFLOPS"
    assert {r.study for r in seed003.RULES.values()} >= {"linear", "kernel_size", "layout", "backbones", "stacking"}


def test_verdict_rows() -> None:
    row = seed003.verdict("kernel3_fastest", True, value=1.2, backend="torch")
    assert row["verdict"] == seed003.HOLDS and row["claim"] == seed003.RULES["kernel3_fastest"].claim
    assert seed003.verdict("kernel3_fastest", False, value=0.9, backend="onnx")["verdict"] == seed003.DOES_NOT_HOLD
    assert seed003.verdict("kernel3_fastest", True, value=math.nan, backend="onnx")["verdict"] == seed003.NOT_MEASURED
    with pytest.raises(ConfigError, match="unknown rule"):
        seed003.verdict("nope", True, value=1.0, backend="torch")


# -- verdicts decided from the data ---------------------------------------------------------------
def _linear(rates_k: list[float], rates_n: list[float]) -> pd.DataFrame:
    rows = []
    for sweep, rates in (("K", rates_k), ("N", rates_n)):
        for size, rate in zip((256, 1024, 4096), rates, strict=True):
            flops = 2 * size * 1024
            rows.append({"backend": "torch", "sweep": sweep, "size": size, "case": f"{sweep}={size}",
                         "flops": flops, "gflop_per_s": rate, "latency_ns": flops / rate})
    return pd.DataFrame(rows)


def _verdicts(study: str, df: pd.DataFrame) -> dict[str, str]:
    v = ops.op_verdicts({study: df})
    assert list(v.columns) == list(seed003.VERDICT_COLUMNS)
    return {f"{r.rule}/{r.subject}" if r.subject else r.rule: r.verdict for r in v.itertuples()}


def test_linear_verdicts() -> None:
    assert _verdicts("linear", _linear([1, 2, 8], [1, 3, 9])) == {
        "bigger_ops_higher_rate": seed003.HOLDS, "grow_n_over_k": seed003.HOLDS}
    assert _verdicts("linear", _linear([5, 5, 5], [4, 4, 4])) == {
        "bigger_ops_higher_rate": seed003.DOES_NOT_HOLD, "grow_n_over_k": seed003.DOES_NOT_HOLD}


def test_dim_quantization_and_kernel_verdicts() -> None:
    dq = pd.DataFrame({"backend": "onnx", "size": [248, 250, 253, 256], "flops": [100] * 4,
                       "latency_ns": [100, 150, 150, 100]})
    assert _verdicts("dim_quantization", dq) == {"no_dim_quantization": seed003.DOES_NOT_HOLD}
    assert _verdicts("dim_quantization", dq.assign(latency_ns=[100, 101, 99, 100])) == {
        "no_dim_quantization": seed003.HOLDS}
    ks = pd.DataFrame({"backend": "torch", "kernel": [1, 3, 5, 7], "gflop_per_s": [5.0, 9.0, 6.0, 7.0]})
    assert _verdicts("kernel_size", ks) == {"kernel3_fastest": seed003.HOLDS}
    assert _verdicts("kernel_size", ks.assign(gflop_per_s=[5.0, 6.0, 9.0, 7.0])) == {
        "kernel3_fastest": seed003.DOES_NOT_HOLD}


def test_conv_padding_and_ratio_verdicts() -> None:
    conv = pd.DataFrame({"backend": "torch", "factor": [1, 2, 2, 2, 2], "sweep": ["h", "h", "w", "in", "out"],
                         "gflop_per_s": [1.0, 2.0, 2.0, 3.0, 3.0]})
    assert _verdicts("conv", conv) == {"channels_beat_spatial": seed003.HOLDS}
    pad = pd.DataFrame({"backend": "torch", "size": ["small"] * 4 + ["large"] * 4, "kernel": [3, 3, 7, 7] * 2,
                        "padded": [False, True] * 4, "latency_ns": [10, 11, 10, 20, 10, 11, 10, 12]})
    assert _verdicts("padding", pad) == {"padding_hurts_small_big_kernels": seed003.HOLDS}
    ratio = pd.DataFrame({"backend": "onnx", "in_channels": [128, 36], "out_channels": [128, 432],
                          "case": ["128:128", "36:432"], "latency_ns": [100, 130], "latency_ms": [0.1, 0.13]})
    assert _verdicts("channel_ratio", ratio) == {"balanced_channels": seed003.HOLDS}
    assert _verdicts("channel_ratio", ratio.assign(latency_ns=[100, 101])) == {
        "balanced_channels": seed003.DOES_NOT_HOLD}


def test_layout_verdicts() -> None:
    rows = []
    for c in (16, 64):
        for op, ns in (("transpose", 30), ("reshape", 1), ("pixel_shuffle", 50), ("relu (baseline)", 10)):
            rows.append({"backend": "torch", "channels": c, "layout_op": op, "latency_ns": ns * c})
    v = _verdicts("layout", pd.DataFrame(rows))
    assert v == {"layout_ops_slow/transpose": seed003.HOLDS, "layout_ops_slow/reshape": seed003.DOES_NOT_HOLD,
                 "layout_ops_slow/pixel_shuffle": seed003.HOLDS, "reshape_slowest": seed003.DOES_NOT_HOLD}
    flat = seed003.flat_verdicts(ops.op_verdicts({"layout": pd.DataFrame(rows)}))
    assert flat["layout_ops_slow.reshape.torch"] == seed003.DOES_NOT_HOLD and "reshape_slowest.torch" in flat
    table = ops.layout_table(pd.DataFrame(rows).assign(latency_ms=lambda d: d["latency_ns"] / 1e6))
    assert table.loc[("torch", 16), "transpose / relu"] == pytest.approx(3.0)


def test_padding_overhead_table() -> None:
    pad = pd.DataFrame({"backend": "torch", "size": "small", "hw": 32, "channels": 64, "kernel": [7, 7],
                        "padded": [False, True], "latency_ns": [10, 15], "latency_ms": [1e-5, 1.5e-5],
                        "flops": [100, 151]})
    row = ops.padding_overhead(pad).iloc[0]
    assert row["latency_ratio"] == pytest.approx(1.5) and row["flops_ratio"] == pytest.approx(1.51)


def test_measurement_trace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame({"backend": ["torch", "onnx"], "case": ["relu", "relu"], "study": "seed_ops",
                       "start_ns": [100, 300], "end_ns": [200, 450], "latency_ns": [5, 6], "iqr_ns": [1, 1],
                       "flops": [10, 10], "bytes": [80, 80]})
    trace = ops.measurement_trace(df)
    assert isinstance(trace, Trace) and trace.lanes == ["device/onnx", "device/torch"]
    assert [s.duration_ns for s in trace.spans] == [100, 150]
    back = Trace.from_chrome(trace.save_chrome(tmp_path / "t.json"))
    assert len(back.spans) == 2


@pytest.mark.skipif("onnx" not in HAVE, reason="needs ONNX Runtime")
def test_the_onnx_path_needs_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom lab.bench import ops, roofline\n"
            "o = ops.MeasureOptions(warmup=0, min_run_time_s=0.001, max_run_time_s=0.01)\n"
            "df = ops.run_cases(ops.study_cases('channel_ratio', hw=8, pairs=((8, 8),)), backends=['onnx'], "
            "options=o, progress=False)\n"
            "p = roofline.measure_peaks(backends=['onnx'], matmul_size=32, copy_bytes=2**20, options=o,\n"
            "                           progress=False)\n"
            "assert len(df) == 1 and set(p['backend']) == {'onnx', 'numpy'}, p\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_close_calls_are_flagged_against_the_noise() -> None:
    rows = [seed003.verdict("kernel3_fastest", True, value=1.02, backend="torch", limit=1.0),
            seed003.verdict("kernel3_fastest", True, value=1.50, backend="onnx", limit=1.0),
            seed003.verdict("nodes_per_flop_slow", True, value=-0.9, backend="torch", limit=0.0)]
    table = pd.DataFrame({"backend": ["torch", "torch", "onnx"], "rel_iqr": [0.04, 0.06, 0.05]})
    out = seed003.with_noise(pd.DataFrame(rows, columns=list(seed003.VERDICT_COLUMNS)),
                             {"kernel_size": table, "backbones": table})
    assert out["noise"].tolist() == [pytest.approx(0.05), pytest.approx(0.05), pytest.approx(0.05)]
    assert out["close_call"].tolist() == [True, False, None]
    assert out["verdict"].tolist() == [seed003.HOLDS] * 3  # the flag never changes the verdict
