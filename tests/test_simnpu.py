"""The simulated NPU: presets, cost model, engines on a virtual clock, the runtime, faults, close.

Timing checks run on a :class:`~lab.clock.VirtualClock` (exact, sleep-free); a few real-time
checks use the teaching preset scaled down and assert loosely.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lab.clock import RealTimeClock, VirtualClock
from lab.errors import ConfigError, DeviceError, InputError, RequestTimeout, RunnerClosed
from lab.profiler import Profiler
from lab.runtimes.base import Runtime
from lab.runtimes.simnpu import AUTO_FUNCTIONAL_MAX_FLOPS, AbsentOutput, AbsentOutputError, SimFuture, SimNpuRuntime
from lab.sim import (
    PRESETS,
    NpuPreset,
    compute_ns,
    compute_precision,
    dequantize_ns,
    dma_ns,
    get_preset,
    pcie_bytes_per_s,
    quantize_ns,
    stage_times,
)
from lab.sim.engine import Engine, SimJob
from lab.trace import Span, lane_kind
from lab.zoo.digits import DATA_DIR, MODEL_FILE
from lab.zoo.onnx_cost import model_cost

DIGITS = str(DATA_DIR / MODEL_FILE)

# The digits CNN on the teaching preset, batch 1 (derived in test_teaching_stages_for_digits).
Q, UP, C1, C2, DOWN, DQ = 500_000, 1_000_640, 2_857_440, 2_178_720, 1_000_100, 78_125

#: Real-time runs: the teaching preset scaled down (stages of a few hundred microseconds).
FAST = {"dma_setup_ns": 200_000, "launch_ns": 400_000, "peak_int8_ops_per_s": 4_000_000_000,
        "peak_fp16_flops_per_s": 4_000_000_000, "host_quantize_bytes_per_s": 2_560_000,
        "host_dequantize_bytes_per_s": 2_560_000}


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def _by(spans: list[Span], name: str) -> dict[int, Span]:
    out: dict[int, Span] = {}
    for s in spans:
        if s.name == name:
            assert s.request_id not in out, f"two {name} spans for request {s.request_id}"
            out[s.request_id] = s
    return out


def _tiny_preset(**kw: object) -> NpuPreset:
    base = dict(name="tiny", description="round numbers", num_pes=2, peak_int8_ops_per_s=4_000_000_000,
                peak_fp16_flops_per_s=2_000_000_000, int8_only=True, efficiency=0.5, link_bytes_per_s=1_000_000_000,
                dma_setup_ns=1_000, launch_ns=10_000, host_quantize_bytes_per_s=100_000_000,
                host_dequantize_bytes_per_s=200_000_000)
    base.update(kw)
    return NpuPreset(**base)  # type: ignore[arg-type]


# -- clocks -------------------------------------------------------------------------------
def test_virtual_clock_sleeps_instantly_and_never_goes_back() -> None:
    clk = VirtualClock(100)
    assert clk() == clk.now() == 100
    clk.sleep_until(5_000)
    assert clk() == 5_000
    clk.sleep_until(10)  # the past: no change
    assert clk() == 5_000
    clk.advance(5)
    assert clk() == 5_005
    with pytest.raises(ValueError, match="expected ns >= 0"):
        clk.advance(-1)
    clk = VirtualClock()
    threads = [threading.Thread(target=lambda k=k: [clk.sleep_until(k * 1000 + i) for i in range(1000)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clk() == 3999  # the latest deadline wins, whatever the interleaving


def test_real_time_clock_sleeps_until_the_deadline() -> None:
    clk = RealTimeClock()
    deadline = clk() + 2_000_000
    clk.sleep_until(deadline)
    assert clk() >= deadline
    t0 = clk()
    clk.sleep_until(t0 - 1)  # the past: returns at once
    assert clk() - t0 < 5_000_000
    with pytest.raises(ValueError, match="spin_ns"):
        RealTimeClock(spin_ns=-1)


# -- presets ------------------------------------------------------------------------------
def test_presets_by_name_and_unknown_names_list_the_valid_ones() -> None:
    assert set(PRESETS) >= {"teaching", "warboy", "atom"}
    assert get_preset("warboy") is PRESETS["warboy"]
    assert get_preset(PRESETS["atom"]) is PRESETS["atom"]
    with pytest.raises(ConfigError, match=r"unknown simulated NPU preset 'tpu': expected one of \['atom', "):
        get_preset("tpu")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_documents_sources_assumptions_and_fields(name: str) -> None:
    p = PRESETS[name]
    assert p.sources and p.assumptions and p.description
    doc = NpuPreset.__doc__ or ""
    for f in dataclasses.fields(NpuPreset):
        assert f"{f.name}:" in doc, f"field {f.name} is not documented"
    assert p.to_dict()["name"] == name


def test_spec_sheet_numbers() -> None:
    assert pcie_bytes_per_s(4, 8) == 15_753_846_153  # 16 GT/s x 8 x 128/130 / 8
    assert pcie_bytes_per_s(5, 16) == 63_015_384_615
    assert pcie_bytes_per_s(3, 16) == 15_753_846_153
    with pytest.raises(ConfigError, match=r"PCIe generation must be one of \[1, 2, 3, 4, 5\], got 7"):
        pcie_bytes_per_s(7, 8)
    w, a = PRESETS["warboy"], PRESETS["atom"]
    assert (w.num_pes, w.peak_int8_ops_per_s, w.int8_only) == (2, 64 * 10**12, True)
    assert w.link_bytes_per_s == int(15_753_846_153 * 0.8)
    assert (a.peak_int8_ops_per_s, a.peak_fp16_flops_per_s, a.int8_only) == (128 * 10**12, 32 * 10**12, False)
    assert a.link_bytes_per_s == int(63_015_384_615 * 0.8)


def test_with_overrides_copies_and_validates() -> None:
    base = PRESETS["teaching"]
    p = base.with_overrides(launch_ns=7, efficiency=0.25, link_bytes_per_s=2e9)
    assert (p.launch_ns, p.efficiency, p.link_bytes_per_s) == (7, 0.25, 2_000_000_000)
    assert isinstance(p.link_bytes_per_s, int)
    assert base.launch_ns == 1_500_000  # the original is unchanged
    assert base.with_overrides() is base
    with pytest.raises(ConfigError, match=r"unknown preset field 'lanch_ns': expected one of \['name', .*got"):
        base.with_overrides(lanch_ns=1)


@pytest.mark.parametrize("field,value,match", [
    ("efficiency", 1.5, r"'efficiency': expected a number in \(0, 1\], got 1.5"),
    ("efficiency", 0, r"'efficiency': expected a number in \(0, 1\], got 0"),
    ("launch_ns", -1, r"'launch_ns': expected an integer >= 0 \(ns\), got -1"),
    ("launch_ns", 1.5, r"'launch_ns': expected an integer >= 0 \(ns\), got 1.5"),
    ("num_pes", True, r"'num_pes': expected an integer >= 1 \(PEs\), got True"),
    ("link_bytes_per_s", "fast", r"'link_bytes_per_s': expected an integer >= 1 \(bytes/s\), got 'fast'"),
    ("int8_only", "yes", r"'int8_only': expected True or False, got 'yes'"),
    ("default_pe_mode", "dual", r"'default_pe_mode': expected one of \['single', 'fused'\], got 'dual'"),
    ("sources", "one string", r"'sources': expected a tuple of strings"),
])
def test_bad_preset_values_name_expected_and_received(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PRESETS["teaching"].with_overrides(**{field: value})


def test_a_float_capable_preset_needs_a_float_peak() -> None:
    with pytest.raises(ConfigError, match="peak_fp16_flops_per_s.*expected > 0 when int8_only is False"):
        PRESETS["warboy"].with_overrides(int8_only=False)


# -- cost model ---------------------------------------------------------------------------
def test_cost_functions_are_exact() -> None:
    p = _tiny_preset()
    assert dma_ns(0, p) == 1_000
    assert dma_ns(500, p) == 1_000 + 500  # 1 GB/s: one byte per ns
    assert dma_ns(3, p.with_overrides(link_bytes_per_s=2_000_000_000)) == 1_000 + 2  # 1.5 rounds to 2
    # single: one PE's share (2 GOPS) x 0.5 = 1 op/ns; fused: 4 GOPS x 0.5 = 2 ops/ns
    assert compute_ns(1_000_000, p, pe_mode="single") == 10_000 + 1_000_000
    assert compute_ns(1_000_000, p, pe_mode="fused") == 10_000 + 500_000
    assert compute_ns(1_000_000, p, pe_mode="fused", precision="fp16") == 10_000 + 1_000_000
    assert quantize_ns(1_000, p) == 10_000  # 100 MB/s
    assert dequantize_ns(1_000, p) == 5_000  # 200 MB/s
    with pytest.raises(ConfigError, match=r"pe_mode must be one of \['single', 'fused'\], got 'dual'"):
        compute_ns(1, p, pe_mode="dual")
    with pytest.raises(ConfigError, match="cannot compute in fp16"):
        compute_ns(1, PRESETS["warboy"], precision="fp16")


def test_precision_follows_the_device_and_the_model() -> None:
    cost = model_cost(DIGITS)
    assert compute_precision(cost, PRESETS["warboy"]) == "int8"  # int8-only: the SDK quantizes
    assert compute_precision(cost, PRESETS["atom"]) == "fp16"  # a float model on a float-capable device
    quantized = dataclasses.replace(cost, ops={**cost.ops, "QLinearConv": 1})
    assert compute_precision(quantized, PRESETS["atom"]) == "int8"


def test_teaching_stages_for_digits() -> None:
    cost = model_cost(DIGITS)
    p = PRESETS["teaching"]
    st = stage_times(cost, p, pe_mode="single")
    assert st.quantize_bytes == 256 and st.quantize_ns == 256 * 10**9 // 512_000 == Q
    assert st.upload_bytes == 64 and st.upload_ns == 1_000_000 + 640 == UP  # int8 after quantize
    assert st.compute_ns == 1_500_000 + round(678_720 * 1e9 / 0.5e9) == C1
    assert stage_times(cost, p, pe_mode="fused").compute_ns == 1_500_000 + 678_720 == C2
    assert st.download_bytes == 10 and st.download_ns == DOWN
    assert st.dequantize_bytes == 40 and st.dequantize_ns == DQ
    assert st.as_dict() == {"quantize": Q, "upload": UP, "compute": C1, "download": DOWN, "dequantize": DQ}
    four = stage_times(cost, p, batch=4)
    assert (four.quantize_bytes, four.upload_bytes, four.flops) == (1024, 256, 4 * 678_720)
    atom = stage_times(cost, PRESETS["atom"], pe_mode="fused")
    assert (atom.quantize_ns, atom.dequantize_ns, atom.upload_bytes, atom.precision) == (0, 0, 256, "fp16")
    assert atom.compute_ns == 50_000 + round(678_720 * 1e9 / (32e12 * 0.5))


# -- engines on a virtual clock -----------------------------------------------------------
def test_engine_starts_each_job_at_max_of_arrival_and_previous_end() -> None:
    clk = VirtualClock()
    done: list[tuple[int, int]] = []
    prof = Profiler(clock=clk)
    eng = Engine("device/0", "compute", clock=clk, duration=lambda j: 1_000, forward=lambda j: done.append(
        (j.request_id, j.ready_ns))).start()
    for rid, ready in enumerate([0, 0, 5_000, 5_500]):
        eng.put(SimJob(rid, rid, ready_ns=ready, profiler=prof))
    eng.stop()
    assert done == [(0, 1_000), (1, 2_000), (2, 6_000), (3, 7_000)]
    assert [(s.start_ns, s.end_ns) for s in prof.spans()] == [(0, 1_000), (1_000, 2_000), (5_000, 6_000),
                                                              (6_000, 7_000)]
    assert eng.stats()["busy_ns"] == 4_000 and eng.stats()["late_jobs"] == 0


def test_in_order_engine_processes_by_sequence_whatever_the_arrival_order() -> None:
    clk = VirtualClock()
    done: list[int] = []
    gate = threading.Event()
    eng = Engine("d2h/0", "download", clock=clk, duration=lambda j: 10, forward=lambda j: done.append(j.seq),
                 work=lambda j: gate.wait(5) and None, in_order=True)
    jobs = [SimJob(n, n, ready_ns=0) for n in range(4)]
    for j, seq in zip(jobs, [2, 0, 3, 1], strict=True):
        j.seq = seq
        eng.put(j)
    eng.start()
    gate.set()
    eng.stop()
    assert done == [0, 1, 2, 3]


def test_real_time_overshoot_does_not_accumulate() -> None:
    """20 back-to-back 1 ms jobs: modelled ends are exact; the real run takes ~20 ms, not 20 x (1 ms + overshoot)."""
    clk = RealTimeClock()
    ends: list[int] = []
    eng = Engine("device/0", "compute", clock=clk, duration=lambda j: 1_000_000,
                 forward=lambda j: ends.append(j.ready_ns), lag_tolerance_ns=50_000_000).start()
    t0 = clk() + 1_000_000
    for n in range(20):
        eng.put(SimJob(n, n, ready_ns=t0))
    eng.stop()
    elapsed = clk() - t0
    assert ends == [t0 + (k + 1) * 1_000_000 for k in range(20)]
    assert 20_000_000 <= elapsed < 20_000_000 + 15_000_000  # loose: a noisy machine, one overshoot at the end


# -- the runtime on a virtual clock: exact spans ------------------------------------------
def _run_virtual(n: int, **kw: object) -> tuple[SimNpuRuntime, Profiler, list[SimFuture]]:
    clk = VirtualClock()
    prof = Profiler(clock=clk)
    rt = SimNpuRuntime(DIGITS, clock=clk, **kw)  # type: ignore[arg-type]
    x = _images(1)
    futures = [rt.submit(x, request_id=rid, profiler=prof, arrival_ns=0) for rid in range(1, n + 1)]
    rt.synchronize()
    for f in futures:
        f.result()
    return rt, prof, futures


def test_three_requests_pipeline_exactly() -> None:
    rt, prof, _ = _run_virtual(3)
    with rt:
        assert rt.modelled_stage_ns() == {"quantize": Q, "upload": UP, "compute": C1, "download": DOWN,
                                          "dequantize": DQ}
        spans = prof.spans()
    up, comp, down = _by(spans, "upload"), _by(spans, "compute"), _by(spans, "download")
    quant, deq = _by(spans, "quantize"), _by(spans, "dequantize")
    # the caller's thread quantizes one request after the other
    assert [(quant[r].lane, quant[r].start_ns, quant[r].end_ns) for r in (1, 2, 3)] == [
        ("host/0", 0, Q), ("host/0", Q, 2 * Q), ("host/0", 2 * Q, 3 * Q)]
    # one DMA-in engine: back to back from the first arrival
    assert [(up[r].lane, up[r].start_ns, up[r].end_ns) for r in (1, 2, 3)] == [
        ("h2d/0", Q, Q + UP), ("h2d/0", Q + UP, Q + 2 * UP), ("h2d/0", Q + 2 * UP, Q + 3 * UP)]
    # request 1 on PE 0, request 2 on PE 1 (free first), request 3 waits for PE 0 to free
    assert [(comp[r].lane, comp[r].start_ns, comp[r].end_ns) for r in (1, 2, 3)] == [
        ("device/0", Q + UP, Q + UP + C1), ("device/1", Q + 2 * UP, Q + 2 * UP + C1),
        ("device/0", Q + UP + C1, Q + UP + 2 * C1)]
    assert [(down[r].lane, down[r].start_ns, down[r].end_ns) for r in (1, 2, 3)] == [
        ("d2h/0", Q + UP + C1, Q + UP + C1 + DOWN), ("d2h/0", Q + 2 * UP + C1, Q + 2 * UP + C1 + DOWN),
        ("d2h/0", Q + UP + 2 * C1, Q + UP + 2 * C1 + DOWN)]
    assert [(deq[r].lane, deq[r].start_ns, deq[r].duration_ns) for r in (1, 2, 3)] == [
        ("host/0", down[r].end_ns, DQ) for r in (1, 2, 3)]
    # the point of a pipeline: DMA-in of request 2 overlaps compute of request 1
    assert up[2].start_ns < comp[1].end_ns and comp[1].start_ns < up[2].end_ns
    assert all(lane_kind(s.lane) in ("host", "h2d", "device", "d2h") for s in spans)


def test_fused_pe_is_one_faster_engine() -> None:
    rt, prof, _ = _run_virtual(3, pe_mode="fused")
    rt.close()
    comp = _by(prof.spans(), "compute")
    assert {s.lane for s in comp.values()} == {"device/0"}
    assert [(comp[r].start_ns, comp[r].end_ns) for r in (1, 2, 3)] == [
        (Q + UP, Q + UP + C2), (Q + UP + C2, Q + UP + 2 * C2), (Q + UP + 2 * C2, Q + UP + 3 * C2)]
    assert rt.device == "simulated NPU (simulator): teaching preset, 2 PEs fused"


def test_single_pes_win_throughput_and_fused_wins_latency() -> None:
    last = {}
    for pe_mode in ("single", "fused"):
        rt, prof, _ = _run_virtual(8, pe_mode=pe_mode, int8_only=False)
        rt.close()
        st = rt.modelled_stage_ns()
        assert st["quantize"] == st["dequantize"] == 0  # int8_only=False: no host conversion, float32 DMA
        assert (st["upload"], st["download"]) == (1_000_000 + 2_560, 1_000_000 + 400)
        down = _by(prof.spans(), "download")
        last[pe_mode] = max(s.end_ns for s in down.values())
        assert down[1].end_ns == st["upload"] + (C1 if pe_mode == "single" else C2) + st["download"]
    assert last["single"] < last["fused"]


def test_two_devices_spread_least_loaded_and_by_slot() -> None:
    rt, prof, _ = _run_virtual(4, devices=2)
    with rt:
        assert rt.lanes == ["h2d/0", "device/0", "device/1", "d2h/0", "h2d/1", "device/2", "device/3", "d2h/1"]
        assert rt.device == "simulated NPU (simulator): teaching preset, 2 devices x 2 PEs single"
    spans = prof.spans()
    assert {r: s.lane for r, s in _by(spans, "upload").items()} == {1: "h2d/0", 2: "h2d/1", 3: "h2d/0", 4: "h2d/1"}
    assert {r: s.lane for r, s in _by(spans, "compute").items()} == {
        1: "device/0", 2: "device/2", 3: "device/1", 4: "device/3"}
    assert {r: s.lane for r, s in _by(spans, "download").items()} == {1: "d2h/0", 2: "d2h/1", 3: "d2h/0", 4: "d2h/1"}

    clk = VirtualClock()
    prof = Profiler(clock=clk)
    with SimNpuRuntime(DIGITS, clock=clk, devices=2, spread="slot", mode="timing") as rt:
        for rid, slot in enumerate([0, 1, 2, 3]):
            rt.submit(_images(1), request_id=rid, slot=slot, profiler=prof, arrival_ns=0)
        rt.synchronize()
    assert {r: s.lane for r, s in _by(prof.spans(), "upload").items()} == {0: "h2d/0", 1: "h2d/1", 2: "h2d/0",
                                                                           3: "h2d/1"}


def test_host_quantize_only_on_int8_only_devices() -> None:
    clk = VirtualClock()
    for preset, overrides, expect in [("teaching", {}, True), ("warboy", {}, True), ("atom", {}, False),
                                      ("teaching", {"int8_only": False}, False)]:
        prof = Profiler(clock=clk)
        with SimNpuRuntime(DIGITS, preset=preset, clock=clk, **overrides) as rt:
            rt.infer(_images(2), request_id=0, slot=3, profiler=prof)
            stages = rt.modelled_stage_ns(2)
        names = {(s.lane, s.name) for s in prof.spans()}
        assert (("host/3", "quantize") in names) is expect, preset
        assert (("host/3", "dequantize") in names) is expect, preset
        assert (stages["quantize"] > 0) is expect
        up = _by(prof.spans(), "upload")[0]
        assert up.attrs == {"bytes": 2 * 64 if expect else 2 * 256}


def test_timing_only_outputs_are_absent_never_fake() -> None:
    clk = VirtualClock()
    with SimNpuRuntime(DIGITS, mode="timing", clock=clk) as rt:
        assert rt.mode == "timing" and rt.device.endswith("timing-only")
        out = rt.infer(_images(3))
    assert out == [AbsentOutput("logits", (3, 10), "float32")]
    a = out[0]
    assert (a.shape, a.dtype, a.ndim, a.nbytes) == ((3, 10), np.dtype("float32"), 2, 120)
    assert "AbsentOutput('logits'" in repr(a)
    for use in (lambda: np.asarray(a), lambda: np.argmax(a, axis=1), lambda: a + 1, lambda: a[0],
                lambda: a.argmax(), lambda: float(a), lambda: np.exp(a), lambda: bool(a)):
        with pytest.raises(AbsentOutputError, match=r"'logits' .* is absent: .*timing-only.*mode='functional'"):
            use()
    with pytest.raises(AttributeError):
        a.no_such_attribute  # noqa: B018


def test_functional_outputs_equal_onnxruntime() -> None:
    x = _images(7, seed=3)
    expected = ort.InferenceSession(DIGITS, providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with SimNpuRuntime(DIGITS, clock=VirtualClock()) as rt:
        assert rt.mode == "functional" and rt.requested_mode == "auto"
        out = rt.infer(x)
        batch1 = rt.infer(x[:1])
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch1[0], expected[0][:1], rtol=1e-5, atol=1e-5)


def test_mode_auto_is_timing_only_for_expensive_models(tmp_path) -> None:
    n = 4096  # 2 * 4096^2 = 33.5 MFLOP per sample
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big", [x, w], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    with SimNpuRuntime(path, clock=VirtualClock()) as rt:
        assert rt.cost.flops == 2 * n * n > AUTO_FUNCTIONAL_MAX_FLOPS
        assert rt.mode == "timing"


def test_input_errors_name_expected_and_received_and_the_runtime_goes_on() -> None:
    with SimNpuRuntime(DIGITS, clock=VirtualClock()) as rt:
        with pytest.raises(InputError, match=r"expected dtype float32, got float64"):
            rt.submit(np.zeros((1, 1, 8, 8)))
        with pytest.raises(InputError, match=r"expected shape image: float32\[batch, 1, 8, 8\], got \(1, 1, 8, 9\)"):
            rt.infer(np.zeros((1, 1, 8, 9), np.float32))
        with pytest.raises(InputError, match=r"expected inputs named \['image'\], got \['x'\]"):
            rt.infer({"x": _images(1)})
        with pytest.raises(InputError, match="at least 1 sample, got 0"):
            rt.infer(np.zeros((0, 1, 8, 8), np.float32))
        assert rt.stats()["submitted"] == 0
        assert rt.infer(_images(1))[0].shape == (1, 10)


@pytest.mark.parametrize("kw,match", [
    ({"pe_mode": "dual"}, r"pe_mode: expected one of \['single', 'fused'\] \(or None\), got 'dual'"),
    ({"devices": 0}, r"devices: expected an integer >= 1, got 0"),
    ({"mode": "fast"}, r"mode: expected one of \['auto', 'functional', 'timing'\], got 'fast'"),
    ({"fail_rate": 1.0}, r"fail_rate: expected a number in \[0, 1\), got 1.0"),
    ({"queue_size": 0}, r"queue_size: expected an integer >= 1, got 0"),
    ({"spread": "random"}, r"spread: expected one of \['least-loaded', 'slot'\], got 'random'"),
    ({"clock": time.perf_counter_ns}, r"clock: expected a clock with sleep_until"),
    ({"launch": 5}, r"unknown preset field 'launch'"),
    ({"preset": "tpu"}, r"unknown simulated NPU preset 'tpu'"),
])
def test_bad_options_name_expected_and_received(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SimNpuRuntime(DIGITS, **kw)


def test_describe_says_simulator_and_prints_its_model() -> None:
    with SimNpuRuntime(DIGITS, clock=VirtualClock(), launch_ns=1_000_000) as rt:
        assert isinstance(rt, Runtime)
        d = rt.describe()
    assert d["simulator"] is True and d["runtime"] == "simnpu"
    assert d["device"] == "simulated NPU (simulator): teaching preset, 2 PEs single"
    assert d["preset"]["name"] == "teaching" and d["preset"]["launch_ns"] == 1_000_000
    assert d["preset"]["sources"] and d["preset"]["assumptions"]
    assert (d["pe_mode"], d["devices"], d["mode"], d["precision"]) == ("single", 1, "functional", "int8")
    assert d["model_cost"]["flops"] == 678_720 and d["model_cost"]["input_bytes"] == 256
    assert d["stages_ns"]["compute"] == 1_000_000 + 1_357_440
    assert d["inputs"] == ["image: float32[batch, 1, 8, 8]"]


def test_queue_occupancy_counters() -> None:
    rt, prof, _ = _run_virtual(3)
    rt.close()
    trace = prof.trace()
    names = {c.name for c in trace.counters}
    assert names == {"queue:h2d/0", "queue:device/0", "queue:device/1", "queue:d2h/0"}
    for name in names:
        samples = sorted((c for c in trace.counters if c.name == name), key=lambda c: c.t_ns)
        assert all(c.value >= 0 for c in samples)
        assert samples[-1].value == 0  # every job left every queue
    assert max(c.value for c in trace.counters if c.name == "queue:h2d/0") >= 1


# -- faults, exactly once, close ------------------------------------------------------------
def test_fault_injection_resolves_every_request_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved: Counter[int] = Counter()
    original = SimFuture._set

    def counting_set(self: SimFuture, outputs: object, error: object) -> bool:
        ok = original(self, outputs, error)  # type: ignore[arg-type]
        if ok:
            resolved[self.request_id] += 1
        return ok

    monkeypatch.setattr(SimFuture, "_set", counting_set)
    n, threads_n, rate = 2000, 4, 0.01
    clk = VirtualClock()
    prof = Profiler(clock=clk)
    results: dict[int, object] = {}
    lock = threading.Lock()
    rt = SimNpuRuntime(DIGITS, clock=clk, fail_rate=rate, seed=7, queue_size=8, mode="timing")

    def client(k: int) -> None:
        x = _images(1)
        futures = [(rid, rt.submit(x, request_id=rid, slot=k, profiler=prof)) for rid in range(k, n, threads_n)]
        for rid, f in futures:
            try:
                out: object = f.result(timeout=30)
            except DeviceError as exc:
                out = exc
            with lock:
                assert rid not in results
                results[rid] = out

    threads = [threading.Thread(target=client, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rng = random.Random(7)
    expected_failures = sum(rng.random() < rate for _ in range(n))  # one seeded draw per submitted request
    errors = {rid: e for rid, e in results.items() if isinstance(e, DeviceError)}
    assert sorted(results) == list(range(n))  # 0 lost
    assert set(resolved) == set(range(n)) and set(resolved.values()) == {1}  # 0 duplicated
    assert len(errors) == expected_failures > 0
    for rid, e in errors.items():
        assert f"request {rid} " in str(e) and "fail_rate=0.01" in str(e)
    st = rt.stats()
    assert (st["submitted"], st["completed"], st["failed"], st["inflight"]) == (n, n - len(errors), len(errors), 0)
    assert all(e["occupancy"] == 0 for e in st["engines"].values())
    spans = prof.spans()
    assert len(_by(spans, "compute")) == n  # a failed request was held by its PE too
    assert len(_by(spans, "download")) == n - len(errors)
    assert all((s.attrs or {}).get("error") == "DeviceError" for s in spans
               if s.name == "compute" and s.request_id in errors)
    # still usable: more requests, then close
    rt.reset_stats()
    assert rt.infer(_images(1))[0].shape == (1, 10)
    rt.synchronize()
    st = rt.stats()
    assert (st["submitted"], st["completed"], st["failed"]) == (1, 1, 0)
    assert st["engines"]["h2d/0"]["jobs"] == 1
    rt.close()


def test_close_fails_unfinished_requests_and_joins_every_thread() -> None:
    rt = SimNpuRuntime(DIGITS, launch_ns=100_000_000, queue_size=2, mode="timing")  # real time, slow compute
    engines = [e for dev in rt._devices for e in dev.engines]
    assert all(e.thread.is_alive() for e in engines)
    x = _images(1)
    futures = [rt.submit(x, request_id=r) for r in range(4)]
    blocked: list[object] = []

    def submit_more() -> None:  # the DMA-in queue fills up: submit blocks
        try:
            for r in range(4, 40):
                rt.submit(x, request_id=r)
        except RunnerClosed as exc:
            blocked.append(exc)

    t = threading.Thread(target=submit_more)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()  # blocked on the full queue
    t0 = time.perf_counter()
    rt.close()
    t.join(5)
    assert not t.is_alive() and len(blocked) == 1
    assert time.perf_counter() - t0 < 2
    assert not any(e.thread.is_alive() for e in engines)
    outcomes = []
    for f in futures:
        assert f.done()
        try:
            f.result(0)
            outcomes.append("ok")
        except RunnerClosed as exc:
            outcomes.append("closed")
            assert "was not finished when the simulated NPU was closed" in str(exc)
    assert outcomes == ["closed"] * 4  # 100 ms compute: none had finished
    assert rt.stats()["inflight"] == 0
    rt.close()  # idempotent
    for call in (lambda: rt.infer(x), lambda: rt.submit(x), rt.synchronize):
        with pytest.raises(RunnerClosed):
            call()


def test_result_timeout_and_synchronize_timeout() -> None:
    with SimNpuRuntime(DIGITS, dma_setup_ns=200_000_000, mode="timing") as rt:
        f = rt.submit(_images(1), request_id=9)
        assert not f.done()
        with pytest.raises(RequestTimeout, match="request 9 not done after 0.01 s"):
            f.result(timeout=0.01)
        with pytest.raises(RequestTimeout, match="1 requests still on the simulated NPU"):
            rt.synchronize(timeout=0.01)


# -- real time, scaled down ---------------------------------------------------------------
def test_submit_returns_before_the_device_finishes() -> None:
    """Naive host timing of async work is wrong: submit() returns after the host part only."""
    with SimNpuRuntime(DIGITS, **{**FAST, "dma_setup_ns": 15_000_000}) as rt:  # ~30 ms of DMA
        st = rt.modelled_stage_ns()
        rt.infer(_images(1))  # warm up
        t0 = time.perf_counter_ns()
        f = rt.submit(_images(1))
        t_submit = time.perf_counter_ns() - t0
        rt.synchronize()
        t_sync = time.perf_counter_ns() - t0
        assert f.done()
    device = st["upload"] + st["compute"] + st["download"]
    assert t_submit < device / 2
    assert t_sync >= st["quantize"] + device


def test_real_time_async_runner_overlaps_and_keeps_up() -> None:
    from lab.runners import AsyncRunner
    from lab.zoo.digits import load_digits_workload

    wl = load_digits_workload()
    with SimNpuRuntime(DIGITS, **FAST) as rt:
        st = rt.modelled_stage_ns()
        runner = AsyncRunner(rt, workers=4, workload=wl)
        try:
            t0 = time.perf_counter_ns()
            result = runner.run_all(wl.samples[:40], warmup=0)
            wall = time.perf_counter_ns() - t0
        finally:
            runner.close()
        stats = rt.stats()
    assert not result.errors and stats["completed"] == 40
    preds = ort.InferenceSession(DIGITS, providers=["CPUExecutionProvider"]).run(
        None, {"image": wl.preprocess(wl.samples[:40])})[0].argmax(1)
    assert result.predictions is not None and result.predictions.tolist() == preds.tolist()
    spans = result.trace.spans
    assert {lane_kind(s.lane) for s in spans} >= {"host", "h2d", "device", "d2h"}
    up, comp = _by(spans, "upload"), _by(spans, "compute")
    assert any(up[b].start_ns < comp[a].end_ns and comp[a].start_ns < up[b].end_ns
               for a in comp for b in up if a != b)  # DMA-in overlaps compute
    for lane in {s.lane for s in spans if lane_kind(s.lane) in ("h2d", "device", "d2h")}:
        on_lane = sorted((s for s in spans if s.lane == lane), key=lambda s: s.start_ns)
        assert all(a.end_ns <= b.start_ns for a, b in zip(on_lane, on_lane[1:], strict=False))  # one job at a time
    bound = 40 * max(st["upload"], st["compute"] / 2, st["download"])
    assert wall >= bound * 0.9  # a simulator cannot beat its own model
    assert {c.name.split(":")[0] for c in result.trace.counters} >= {"queue"}


def test_importing_the_simulator_imports_no_backend() -> None:
    code = ("import sys, lab, lab.sim, lab.runtimes.simnpu, lab.zoo.onnx_cost; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lab_run_drives_the_simulator_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lab.run(RunConfig(runtime="simnpu", ...))`` with the options RunConfig passes (preset, pe_mode, ...)."""
    import lab
    from lab.runtimes import RUNTIMES

    monkeypatch.setitem(RUNTIMES, "simnpu", lambda path, **options: SimNpuRuntime(path, **options))
    config = lab.RunConfig(runtime="simnpu", preset="teaching", mode=lab.Mode.ASYNC, workers=4, requests=24,
                           warmup=2)
    result = lab.run(config)
    assert not result.errors
    assert result.metrics.extra["accuracy"] > 0.8
    assert {lane_kind(s.lane) for s in result.trace.spans} >= {"host", "h2d", "device", "d2h"}
    assert {s.name for s in result.trace.spans} >= {"quantize", "upload", "compute", "download", "dequantize"}
