"""Notebook 05 (seed 003): the op table, the sweeps and the roofline on PyTorch eager and ONNX Runtime."""

from __future__ import annotations

from typing import Any

# one intra-op thread: on a loaded 2-core CI machine two threads wait on each other at every op
QUICK: dict[str, Any] = {"threads": 1, "progress": False}

SEED_OPS = ("conv2d", "relu", "linear", "batchnorm", "layernorm", "upsample_bilinear", "upsample_nearest",
            "transpose")
STUDIES = ("seed_ops", "linear", "dim_quantization", "conv", "kernel_size", "padding", "channel_ratio", "layout")
RULES = ("bigger_ops_higher_rate", "grow_n_over_k", "no_dim_quantization", "channels_beat_spatial",
         "kernel3_fastest", "padding_hurts_small_big_kernels", "balanced_channels", "layout_ops_slow",
         "reshape_slowest")
VERDICTS = ("holds here", "does not hold here")


def check(doc: dict[str, Any]) -> None:
    m, h = doc["metrics"], doc["metrics"]["headline"]
    backends = doc["parameters"]["backends"]
    assert backends and set(backends) <= {"torch", "onnx"}

    # the roof: measured, positive, consistent
    roof = m["roofline"]
    assert roof["peak_gflop_per_s"] > 0.5 and roof["peak_gb_per_s"] > 0.1
    assert abs(roof["ridge_flop_per_byte"] - roof["peak_gflop_per_s"] / roof["peak_gb_per_s"]) < 1e-6
    assert {p["kind"] for p in m["peaks"]} == {"compute", "memory", "cache"}

    # the seed's op table: every op on every backend, beside the seed's transcribed numbers
    table = {r["op"]: r for r in m["seed_op_table"]}
    assert tuple(table) == SEED_OPS
    assert table["conv2d"]["flops"] == 3 * 2 * 128 * 32 * 32 * 128 * 9
    assert table["conv2d"]["seed RTX3090 PyTorch ms"] == 0.1678 and table["transpose"]["seed A13 CoreML ms"] == 2.401145
    for op in SEED_OPS:
        for b in backends:
            assert h[f"{op}_ms.{b}"] > 0
            assert abs(table[op][f"{b} / seed RTX3090"] - h[f"{op}_ms.{b}"] / table[op]["seed RTX3090 PyTorch ms"]) \
                < 1e-6 * table[op][f"{b} / seed RTX3090"]

    # every study measured on every backend, with consistent rates
    tables = m["tables"]
    assert set(tables) == set(STUDIES)
    for name, rows in tables.items():
        assert rows and {r["backend"] for r in rows} == set(backends), name
        for r in rows:
            assert r["latency_ns"] > 0 and r["iqr_ns"] >= 0 and 0 < r["min_ns"] <= r["latency_ns"], (name, r["case"])
            if r["flops"]:
                assert abs(r["gflop_per_s"] - r["flops"] / r["latency_ns"]) < 1e-6 * r["gflop_per_s"], r["case"]
    assert len(doc["metrics"]["placed"]) == h["measurements"] == sum(len(rows) for rows in tables.values())

    # a PyTorch reshape of a contiguous tensor is a view; the transpose copies every element
    if "torch" in backends:
        layout = [r for r in tables["layout"] if r["backend"] == "torch"]
        biggest = max(r["channels"] for r in layout)
        ms = {r["layout_op"]: r["latency_ns"] for r in layout if r["channels"] == biggest}
        assert ms["reshape"] * 10 < ms["transpose"], ms

    # the roofline placement follows from intensity and the ridge
    for p in m["placed"]:
        if p["bound"] == "data movement":
            assert p["roof_fraction"] is None
        else:
            assert (p["bound"] == "compute") == (p["intensity"] >= roof["ridge_flop_per_byte"]), p
    assert all(p["bound"] == "data movement" for p in m["placed"] if p["study"] == "layout"
               and not p["case"].startswith("relu"))

    # every rule has a verdict on every backend, and the verdicts follow from the saved tables
    verdicts = m["verdicts"]
    assert {(v["rule"], v["backend"]) for v in verdicts} == {(r, b) for r in RULES for b in backends}
    assert all(v["verdict"] in VERDICTS for v in verdicts), [v for v in verdicts if v["verdict"] not in VERDICTS]
    for b in backends:
        rates = {r["kernel"]: r["gflop_per_s"] for r in tables["kernel_size"] if r["backend"] == b}
        expected = "holds here" if max(rates, key=lambda k: rates[k]) == 3 else "does not hold here"
        assert h[f"rule.kernel3_fastest.{b}"] == expected
        ratio = {(r["in_channels"], r["out_channels"]): r["latency_ns"] for r in tables["channel_ratio"]
                 if r["backend"] == b}
        expected = "holds here" if ratio[(36, 432)] / ratio[(128, 128)] > 1.10 else "does not hold here"
        assert h[f"rule.balanced_channels.{b}"] == expected
    assert h["rules_checked"] == len(verdicts) and 0 <= h["rules_holding"] <= h["rules_checked"]
    # a close call is a value within the measurements' relative spread of its limit
    for v in verdicts:
        if v["close_call"] is not None:
            assert v["noise"] is not None
            assert v["close_call"] == (abs(v["value"] - v["limit"]) <= v["noise"] * v["limit"]), v
    assert h["close_calls"] == sum(1 for v in verdicts if v["close_call"])
    assert 0 <= h["measurements_with_warnings"] <= h["measurements"]
