"""Notebook 07 (seed 004, model side): quantize/dequantize, layout, tiling, batch, PE mode."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, Any] = {"tile_size": 256, "rss": False}

_VARIANTS = {"float32", "int8 / float in / float out", "int8 / uint8 in / float out", "int8 / float in / uint8 out",
             "int8 / uint8 in / uint8 out"}
_TECHNIQUES = {"quantize input type (uint8 input)", "dequantize output type (integer output)",
               "lower / unlower (layout changes around the device)", "pad / slice (width to a multiple of 32)",
               "permute input (NHWC vs NCHW)", "patching (tiling large images)", "batch size for small models",
               "single vs fused PE"}


def _check_variants(rows: list[dict[str, Any]], *, min_accuracy: float) -> None:
    by = {r["variant"]: r for r in rows}
    assert set(by) == _VARIANTS
    for name, r in by.items():
        float_in = r["input"] == "float32"
        quantized = name != "float32"
        # the input QuantizeLinear runs once per request exactly where the input is float and the model int8
        assert r["input_quantize_calls"] == (1.0 if float_in and quantized else 0.0), (name, r["input_quantize_calls"])
        assert r["output_dequantize_calls"] == (1.0 if quantized and r["output"] == "float32" else 0.0), name
        if not (float_in and quantized):
            assert r["input_quantize_us"] == 0.0, name
        assert r["accuracy"] >= min_accuracy, (name, r["accuracy"])
        assert 0.0 <= r["agreement"] <= 1.0 and r["e2e_us"] > 0 and r["model_us"] > 0
        # the uint8 input is handed over as it is: no conversion on the host
        if not float_in:
            assert r["host_convert_us"] < by["float32"]["host_convert_us"], name
    assert by["float32"]["agreement"] == 1.0 and by["float32"]["disagreements"] == 0


def check(doc: dict[str, Any]) -> None:
    m = doc["metrics"]
    q = m["quantization"]
    _check_variants(q["digits"], min_accuracy=0.95)
    _check_variants(q["efficientnet_lite0"], min_accuracy=1.0)  # the two labelled photos
    assert all(r["labelled"] == 450 for r in q["digits"])
    assert all(r["labelled"] == 2 and r["samples"] > 2 for r in q["efficientnet_lite0"])
    # the real cost at a real size: quantizing a 3x224x224 float input takes measurable time
    effnet = {r["variant"]: r for r in q["efficientnet_lite0"]}
    assert effnet["int8 / float in / float out"]["input_quantize_us"] > 0
    # folding the preprocessing into the input quantization is exact
    assert float(m["fold_check"]["digits"]) == 0.0 and float(m["fold_check"]["efficientnet_lite0"]) == 0.0
    pairwise = m["pairwise_disagreements"]["efficientnet_lite0"]
    assert pairwise["float32"]["float32"] == 0

    layout = m["layout"]
    assert len(layout) == 6
    for r in layout:
        assert r["max_abs_diff"] < 1e-4 and r["agreement"] == 1.0 and r["accuracy"] == 1.0, r["case"]
        host = r["case"].startswith("loader NHWC -> host")
        assert (r["host_transpose_us"] > 0) == host, r["case"]
    assert any(r["padded_width"] != r["width"] and r["pad_us"] > 0 for r in m["pad_slice"])
    assert all(r["transpose_us"] > 0 for r in m["transpose_cost"])

    t = m["tiling"]
    assert t["halo"] >= (t["receptive_field"] - 1) // 2
    rows = {r["patch"]: r for r in t["sweep"]}
    assert "whole" in rows and len(rows) >= 3
    assert all(r["equal"] for r in rows.values())
    assert not t["short_halo"]["equal"]  # a halo one pixel short must break equality
    smallest = min((p for p in rows if p != "whole"), key=int)
    assert rows[smallest]["peak_in_use_mib"] < rows["whole"]["peak_in_use_mib"]
    assert m["headline"]["best_patch"] in rows

    cpu, sim = m["batch"]["cpu"], m["batch"]["simulator"]
    assert len({r["accuracy"] for r in cpu}) == 1 and cpu[0]["accuracy"] >= 0.95
    assert m["headline"]["cpu_batch_knee"] in {r["batch"] for r in cpu}
    assert sim[-1]["throughput_sps"] > 2 * sim[0]["throughput_sps"]  # modelled: launch and DMA setup amortised

    sims = m["simulator_variants"]
    assert all("simulated NPU (simulator)" in r["device"] for r in sims)
    for r in sims:
        float_in = r["variant"] == "float32" or r["variant"].startswith("int8 / float in")
        float_out = r["variant"] == "float32" or r["variant"].endswith("float out")
        assert (r["quantize_us"] > 0) == float_in and (r["dequantize_us"] > 0) == float_out, r["variant"]
    yolox = m["host_conversion"][-1]
    assert abs(yolox["sim_quantize_us"] - yolox["seed_quantize_us"]) < 0.01 * yolox["seed_quantize_us"]
    assert yolox["cpu_quantize_us"] > 0

    pe = {(r["model"], r["pe_mode"]): r for r in m["pe_modes"]}
    for model in {k[0] for k in pe}:
        single, fused = pe[(model, "single")], pe[(model, "fused")]
        assert fused["latency_us"] <= single["latency_us"] and single["throughput_rps"] >= fused["throughput_rps"]
    assert all(r["errors"] == 0 for r in m["core_split"])

    assert {r["technique"] for r in m["coverage"]} == _TECHNIQUES
    assert all(r["result"] and r["simulator"] for r in m["coverage"])
    assert all(m["verdicts"][k] for k in ("quantization", "layout", "tiling", "batch", "npu"))
