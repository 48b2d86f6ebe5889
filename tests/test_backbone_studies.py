"""Seed 003's backbone, block, deep-vs-wide and stacking studies (lab.bench.backbones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab.bench import backbones as bb
from lab.bench import ops, seed003
from lab.errors import ConfigError

torch = pytest.importorskip("torch")
TINY = ops.MeasureOptions(warmup=0, min_run_time_s=0.001, max_run_time_s=0.01, threads=1)


def test_deep_vs_wide_keeps_the_flops() -> None:
    cases = bb.deep_vs_wide_cases()
    first = cases[0].flops
    assert [dict(c.coords)["layers"] for c in cases] == [c.depth for c in cases] == [1, 2, 3, 4, 6, 8, 12, 16]
    for c in cases:
        assert c.flops == pytest.approx(first, rel=0.05), c.label
        assert c.output_shape == c.input_shape  # "same" padding, channels in = out
    df = bb.deep_vs_wide(quick=True, backends=["torch"], depths=(1, 4), channels=16, hw=8, options=TINY,
                         progress=False)
    assert list(df["layers"]) == [1, 4] and df["flops_vs_first"].iloc[0] == 1.0
    assert (df["latency_ns"] > 0).all()


@pytest.mark.parametrize(("name", "count"), [("mobilenet_v2", 20), ("efficientnet_b0", 19),
                                             ("mobilenet_v3_small", 14)])
def test_backbone_pieces_are_the_whole_model(name: str, count: int) -> None:
    from lab.zoo.backbones import build_backbone

    pieces = bb.backbone_pieces(name, seed=0)
    assert len(pieces) == count
    assert pieces[0][0] == "stem" and pieces[-2][0] == "head conv" and pieces[-1][0] == "classifier"
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        y = x
        for _, piece in pieces:
            y = piece(y)
        ref = build_backbone(name, seed=0)(x)
    torch.testing.assert_close(y, ref)


def test_backbone_pieces_refuse_resnets() -> None:
    with pytest.raises(ConfigError, match="no `features`"):
        bb.backbone_pieces("resnet34")
    with pytest.raises(ConfigError, match="unknown backbone"):
        bb.backbone_pieces("vgg16")


def test_stacking_study_on_torch() -> None:
    df = bb.stacking_study("mobilenet_v2", backends=["torch"], input_size=32, prefixes=[10], options=TINY,
                           progress=False)
    plain = df[~df["with_head"]].set_index("n")
    assert list(plain.index) == [1, 10, 20]  # the first and the whole model are always timed
    assert plain.loc[20, "flops_share"] == 1.0 and plain.loc[1, "flops_share"] < 0.1
    assert plain["flops"].is_monotonic_increasing
    assert plain.loc[1, "output_shape"] == "1x32x16x16" and plain.loc[20, "output_shape"] == "1x1000"
    head = df[df["with_head"]].set_index("n")
    assert list(head.index) == [1, 10]  # the whole model already ends in its classifier
    assert (head["output_shape"] == "1x1000").all() and (head["flops"] > plain.loc[[1, 10], "flops"]).all()
    cost = bb.startup_cost(df)
    assert len(cost) == 1 and cost.loc[0, "pieces"] == 3
    with pytest.raises(ConfigError, match="within 1..20"):
        bb.stacking_study("mobilenet_v2", backends=["torch"], input_size=32, prefixes=[21], options=TINY)


@pytest.mark.slow
def test_stacking_study_onnx_subgraphs_match_torch(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    df = bb.stacking_study("mobilenet_v3_small", backends=["onnx"], input_size=32, prefixes=[3], options=TINY,
                           progress=False, cache_dir=tmp_path)
    assert set(df["backend"]) == {"onnx"} and len(df) == 3 + 2
    assert set(df["ort_optimization"]) == {"all"}
    (path,) = tmp_path.glob("*.onnx")  # one export serves every prefix
    graph = onnx.load(str(path))
    assert len(graph.graph.output) == 14 + 13  # every prefix's output, then every head's
    pieces = bb.backbone_pieces("mobilenet_v3_small", seed=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sub = onnx.utils.Extractor(graph).extract_model([graph.graph.input[0].name], [graph.graph.output[2].name])
    sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.inference_mode():
        want = torch.nn.Sequential(*(m for _, m in pieces[:3]))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_backbone_table_on_torch() -> None:
    from lab.zoo.backbones import BACKBONES
    from lab.zoo.export import backbone_flops

    df = bb.backbone_table(["mobilenet_v3_small"], backends=["torch"], input_size=32, count_nodes=False,
                           options=TINY, progress=False)
    row = df.iloc[0]
    assert row["backbone"] == "mobilenet_v3_small" and row["family"] == "mobilenet" and row["input_size"] == 32
    assert row["params"] == BACKBONES["mobilenet_v3_small"].published_params
    assert row["flops"] == backbone_flops("mobilenet_v3_small", input_size=32)
    assert row["macs_native"] == backbone_flops("mobilenet_v3_small") // 2
    assert row["onnx_nodes"] is None and np.isnan(row["nodes_per_gflop"])
    assert row["latency_ns"] > 0 and row["threads"] == 1
    with pytest.raises(ConfigError, match="unknown backbone"):
        bb.backbone_table(["vgg16"], backends=["torch"], options=TINY)


def test_block_table_on_torch_matches_the_seed_flops() -> None:
    df = bb.block_table(backends=["torch"], count_nodes=False, options=TINY, progress=False).set_index("block")
    assert list(df.index) == list(bb.SEED_BLOCKS)
    seed = seed003.seed_block_table()
    for block in bb.SEED_BLOCKS:  # the seed's "about 1.1e8 / 1.1e8 / 1.3e8" multiply-adds
        assert df.loc[block, "macs"] == pytest.approx(seed.loc[block, "seed macs"], rel=0.08), block
    table = bb.compare_blocks(df.reset_index())
    assert table.loc["mbconv", "seed tflite nodes"] == 16 and "torch latency ms" in table.columns


def test_compare_backbones_joins_the_seed() -> None:
    rows = [{"backbone": n, "backend": b, "latency_ms": 1.0, "gflop_per_s": 2.0, "input_size": 224, "params": 1,
             "macs_native": 5, "onnx_nodes": 7} for n in ("mobilenet_v2", "resnet34") for b in ("torch", "onnx")]
    table = bb.compare_backbones(pd.DataFrame(rows))
    assert list(table.index) == ["resnet34", "mobilenet_v2"]  # the seed's order
    assert table.loc["resnet34", "seed A13 TFLite ms"] == 31.8827 and table.loc["mobilenet_v2", "seed macs"] == 3.2e8
    assert {"torch latency ms", "onnx gflop/s"} <= set(table.columns)


def test_startup_cost_fit() -> None:
    flops = np.array([1e6, 5e6, 1e7, 2e7])
    df = pd.DataFrame({"backbone": "m", "backend": "torch", "with_head": False, "n": [1, 2, 3, 4], "flops": flops,
                       "latency_ns": 2e6 + 0.1 * flops})
    row = bb.startup_cost(df).iloc[0]
    assert row["intercept_ns"] == 2_000_000 and row["ns_per_mflop"] == pytest.approx(1e5)
    assert row["r2"] == pytest.approx(1.0)
    assert row["first_latency_share"] == pytest.approx(2.1e6 / 4e6)
    assert row["share_ratio"] == pytest.approx((2.1e6 / 4e6) / (1e6 / 2e7))


def _verdict_map(results: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {r.rule: r.verdict for r in bb.backbone_verdicts(results).itertuples()}


def test_backbone_verdicts_from_data() -> None:
    backbones = pd.DataFrame({"backend": "torch", "backbone": ["resnet34", "mobilenet_v2", "efficientnet_b0"],
                              "family": ["resnet", "mobilenet", "efficientnet"], "gflop_per_s": [50.0, 10.0, 5.0],
                              "nodes_per_gflop": [12.0, 300.0, 800.0]})
    deep = pd.DataFrame({"backend": "torch", "layers": [1, 8], "case": ["1", "8"], "latency_ns": [100, 150],
                         "latency_ms": [1e-4, 1.5e-4], "flops": [10, 10]})
    blocks = pd.DataFrame({"backend": "torch", "block": list(bb.SEED_BLOCKS), "latency_ns": [3, 2, 1]})
    n = np.arange(1, 5)
    plain = pd.DataFrame({"backbone": "m", "backend": "torch", "with_head": False, "n": n, "flops": n * 100.0,
                          "latency_ns": 1000 + n * 10.0})
    head = plain[plain["n"] < 4].assign(with_head=True, latency_ns=lambda d: d["latency_ns"] - 5)
    stacking = pd.concat([plain, head], ignore_index=True)
    got = _verdict_map({"backbones": backbones, "deep_vs_wide": deep, "blocks": blocks, "stacking": stacking})
    assert got == {r: seed003.HOLDS for r in ("resnet_higher_rate", "nodes_per_flop_slow", "fewer_bigger_layers",
                                              "mbconv_slowest", "fixed_startup_cost", "fc_head_lowers_latency")}
    flipped = _verdict_map({
        "backbones": backbones.assign(gflop_per_s=[5.0, 10.0, 50.0]),
        "deep_vs_wide": deep.assign(latency_ns=[100, 101]),
        "blocks": blocks.assign(latency_ns=[1, 2, 3]),
        "stacking": pd.concat([plain.assign(latency_ns=n * 10.0), head.assign(latency_ns=1e9)], ignore_index=True),
    })
    assert set(flipped.values()) == {seed003.DOES_NOT_HOLD}
    missing = bb.backbone_verdicts({"backbones": backbones[backbones["family"] != "resnet"]})
    assert seed003.NOT_MEASURED in set(missing["verdict"])
