"""The simulated NPU's parts: presets (documented device numbers), the cost model, device engines.

The runtime that puts them together is :class:`lab.runtimes.simnpu.SimNpuRuntime`. Nothing here
imports onnx or onnxruntime at import time.
"""

from __future__ import annotations

from lab.sim.cost import (
    PE_MODES,
    StageTimes,
    compute_ns,
    compute_precision,
    dequantize_ns,
    dma_ns,
    pcie_bytes_per_s,
    quantize_ns,
    stage_times,
)
from lab.sim.presets import PRESETS, NpuPreset, get_preset

__all__ = [
    "PE_MODES",
    "PRESETS",
    "NpuPreset",
    "StageTimes",
    "compute_ns",
    "compute_precision",
    "dequantize_ns",
    "dma_ns",
    "get_preset",
    "pcie_bytes_per_s",
    "quantize_ns",
    "stage_times",
]
