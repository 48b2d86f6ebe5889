"""Notebook 06 (seed 003): backbones, deep vs wide, blocks and block stacking on PyTorch eager and ONNX Runtime."""

from __future__ import annotations

from typing import Any

# few, small models; one intra-op thread (a loaded 2-core CI machine makes two threads wait on each other)
QUICK: dict[str, Any] = {
    "backbones": ["resnet34", "mobilenet_v3_small"],
    "input_size": 96,
    "deep_depths": [1, 2, 4, 8],
    "deep_channels": 128,
    "stack_backbones": ["mobilenet_v2"],
    "stack_input_size": 96,
    "threads": 1,
    "progress": False,
}

PUBLISHED_PARAMS = {"resnet34": 21_797_672, "mobilenet_v3_small": 2_542_856}
RULES = ("resnet_higher_rate", "nodes_per_flop_slow", "fewer_bigger_layers", "mbconv_slowest",
         "fixed_startup_cost", "fc_head_lowers_latency")
VERDICTS = ("holds here", "does not hold here")


def check(doc: dict[str, Any]) -> None:
    m, h = doc["metrics"], doc["metrics"]["headline"]
    backends = doc["parameters"]["backends"]
    assert backends and set(backends) <= {"torch", "onnx"}

    # backbones: the zoo's exact parameter counts, FLOPs, ONNX nodes, a latency per backend
    rows = m["backbones"]
    assert {(r["backbone"], r["backend"]) for r in rows} == {(n, b) for n in QUICK["backbones"] for b in backends}
    for r in rows:
        assert r["params"] == PUBLISHED_PARAMS[r["backbone"]]
        assert r["input_size"] == QUICK["input_size"] and r["onnx_nodes"] > 20 and r["latency_ns"] > 0
        assert abs(r["gflop_per_s"] - r["flops"] / r["latency_ns"]) < 1e-6 * r["gflop_per_s"]
    by_name = {r["backbone"]: r for r in rows}
    # a MobileNetV3-small has far more graph nodes per FLOP than a ResNet-34 (the seed's argument)
    assert by_name["mobilenet_v3_small"]["nodes_per_gflop"] > 10 * by_name["resnet34"]["nodes_per_gflop"]
    assert abs(by_name["resnet34"]["macs_native"] / 3.6e9 - 1) < 0.05  # the seed's "about 36억" at 224
    table = {r["backbone"]: r for r in m["backbone_table"]}
    assert table["resnet34"]["seed A13 TFLite ms"] == 31.8827
    assert table["mobilenet_v3_small"]["seed tflite nodes"] == 147

    # deep vs wide: about equal FLOPs at every depth
    deep = m["deep_vs_wide"]
    assert sorted({r["layers"] for r in deep}) == QUICK["deep_depths"]
    assert all(0.93 < r["flops_vs_first"] < 1.07 for r in deep)

    # blocks at (1, 24, 112, 112): the seed's multiply-adds, MBConv the branchiest
    blocks = {(r["block"], r["backend"]): r for r in m["blocks"]}
    assert {k[0] for k in blocks} == {"mbconv", "inverted_residual", "residual"}
    for (name, _), r in blocks.items():
        seed_macs = {"mbconv": 1.1e8, "inverted_residual": 1.1e8, "residual": 1.3e8}[name]
        assert abs(r["macs"] / seed_macs - 1) < 0.08, name
    b0 = backends[0]
    assert blocks[("mbconv", b0)]["onnx_nodes"] > 2 * blocks[("residual", b0)]["onnx_nodes"]

    # stacking: the first piece and the whole model always timed, FLOPs growing to the whole model's
    stacking = [r for r in m["stacking"] if r["backbone"] == "mobilenet_v2"]
    for b in backends:
        plain = sorted((r for r in stacking if r["backend"] == b and not r["with_head"]), key=lambda r: r["n"])
        assert plain[0]["n"] == 1 and plain[-1]["n"] == 20 and plain[-1]["flops_share"] == 1.0
        assert all(a["flops"] < c["flops"] for a, c in zip(plain, plain[1:], strict=False))
        heads = [r for r in stacking if r["backend"] == b and r["with_head"]]
        assert heads and all(r["output_shape"] == "1x1000" and r["n"] < 20 for r in heads)
    assert {(r["backbone"], r["backend"]) for r in m["startup_cost"]} == {("mobilenet_v2", b) for b in backends}

    # every rule has a verdict on every backend, and the verdicts follow from the saved tables
    verdicts = m["verdicts"]
    assert {(v["rule"], v["backend"]) for v in verdicts} == {(r, b) for r in RULES for b in backends}
    assert all(v["verdict"] in VERDICTS for v in verdicts)
    for b in backends:
        lat = {name: r["latency_ns"] for (name, bb), r in blocks.items() if bb == b}
        expected = "holds here" if max(lat, key=lambda k: lat[k]) == "mbconv" else "does not hold here"
        assert h[f"rule.mbconv_slowest.{b}"] == expected
        layers = {r["layers"]: r["latency_ns"] for r in deep if r["backend"] == b}
        expected = "holds here" if layers[max(layers)] / layers[min(layers)] > 1.10 else "does not hold here"
        assert h[f"rule.fewer_bigger_layers.{b}"] == expected
    assert h["rules_checked"] == len(verdicts) and 0 <= h["rules_holding"] <= h["rules_checked"]
    # a close call is a value within the measurements' relative spread of its limit
    for v in verdicts:
        if v["close_call"] is not None:
            assert v["noise"] is not None
            assert v["close_call"] == (abs(v["value"] - v["limit"]) <= v["noise"] * v["limit"]), v
    assert h["close_calls"] == sum(1 for v in verdicts if v["close_call"])
