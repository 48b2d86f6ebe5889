"""The simulated NPU's cost model: pure functions from bytes and FLOPs to integer nanoseconds.

Per request (one batch), five stages, each with its own engine or thread::

    quantize    host, caller's thread   quantize_ns(float input bytes)      int8-only devices, float inputs
    upload      DMA host -> device      dma_ns(bytes sent)  = setup + bytes / link bandwidth
    compute     one PE (or fused PEs)   compute_ns(flops)   = launch + flops / (peak x efficiency)
    download    DMA device -> host      dma_ns(bytes sent back)
    dequantize  host, caller's thread   dequantize_ns(float output bytes)   int8-only devices, float outputs

An int8-only device receives quantized inputs, so a float input is sent as one byte per
element after the host has quantized it, and a float output comes back as one byte per
element for the host to dequantize. Integer inputs (uint8 images) are sent as they are and
cost the host nothing here (seed 004 measured 0.277 ms for YOLOX-L's uint8 input against
60.639 ms for float32: under 0.5%, left out).

All results are integer nanoseconds, rounded to nearest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError

if TYPE_CHECKING:
    from lab.sim.presets import NpuPreset
    from lab.zoo.onnx_cost import ModelCost

__all__ = [
    "PCIE_GENERATIONS",
    "PE_MODES",
    "PRECISIONS",
    "StageTimes",
    "compute_ns",
    "compute_precision",
    "dequantize_ns",
    "dma_ns",
    "engine_ops_per_s",
    "pcie_bytes_per_s",
    "quantize_ns",
    "stage_times",
]

NS_PER_S = 1_000_000_000

#: ``single``: each PE is its own engine with its share of the peak; ``fused``: one engine with all PEs' peak.
PE_MODES = ("single", "fused")
#: What the device computes in: ``int8`` (quantized) or ``fp16``.
PRECISIONS = ("int8", "fp16")

#: PCIe generation -> (transfer rate per lane in GT/s, encoding efficiency). Gen 1-2 use 8b/10b
#: encoding, gen 3-5 128b/130b (PCI-SIG base specifications).
PCIE_GENERATIONS: dict[int, tuple[float, float]] = {
    1: (2.5, 8 / 10), 2: (5.0, 8 / 10), 3: (8.0, 128 / 130), 4: (16.0, 128 / 130), 5: (32.0, 128 / 130),
}


def pcie_bytes_per_s(gen: int, lanes: int) -> int:
    """One direction's PCIe bandwidth after line encoding, bytes/s (before packet overheads).

    ``GT/s per lane x lanes x encoding / 8 bits``: Gen4 x8 is 15,753,846,153 B/s (15.75 GB/s),
    Gen5 x16 63,015,384,615 B/s.

    Raises:
        ConfigError: unknown generation or a lane count PCIe does not have.
    """
    if gen not in PCIE_GENERATIONS:
        raise ConfigError(f"PCIe generation must be one of {sorted(PCIE_GENERATIONS)}, got {gen!r}")
    if lanes not in (1, 2, 4, 8, 16, 32):
        raise ConfigError(f"PCIe lanes must be one of [1, 2, 4, 8, 16, 32], got {lanes!r}")
    gts, encoding = PCIE_GENERATIONS[gen]
    return int(gts * 1e9 * lanes * encoding / 8)


def _ns(amount: int, rate_per_s: int) -> int:
    """``amount / rate`` in integer ns, rounded to nearest, in exact integer arithmetic."""
    return (amount * NS_PER_S + rate_per_s // 2) // rate_per_s


def dma_ns(num_bytes: int, preset: NpuPreset) -> int:
    """One DMA transfer of ``num_bytes``: ``dma_setup_ns + bytes / link_bytes_per_s``."""
    return preset.dma_setup_ns + _ns(num_bytes, preset.link_bytes_per_s)


def _check_pe_mode(pe_mode: str) -> None:
    if pe_mode not in PE_MODES:
        raise ConfigError(f"pe_mode must be one of {list(PE_MODES)}, got {pe_mode!r}")


def engine_ops_per_s(preset: NpuPreset, *, pe_mode: str = "single", precision: str = "int8") -> float:
    """Peak rate of one compute engine (ops/s): one PE's share in ``single`` mode, all PEs' peak fused."""
    _check_pe_mode(pe_mode)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    peak = preset.peak_int8_ops_per_s if precision == "int8" else preset.peak_fp16_flops_per_s
    if peak <= 0:
        raise ConfigError(f"preset {preset.name!r} cannot compute in {precision} (its peak is 0)")
    return peak / preset.num_pes if pe_mode == "single" else float(peak)


def compute_ns(flops: int, preset: NpuPreset, *, pe_mode: str = "single", precision: str = "int8") -> int:
    """One compute job: ``launch_ns + flops / (engine peak x efficiency)``.

    Args:
        flops: operations of the request (a multiply-add is 2).
        preset: the device.
        pe_mode: ``single`` (one PE's share of the peak) or ``fused`` (one engine with every PE's peak).
        precision: ``int8`` (``peak_int8_ops_per_s``) or ``fp16`` (``peak_fp16_flops_per_s``).
    """
    rate = engine_ops_per_s(preset, pe_mode=pe_mode, precision=precision) * preset.efficiency
    return preset.launch_ns + round(flops * NS_PER_S / rate)


def quantize_ns(num_bytes: int, preset: NpuPreset) -> int:
    """Host time to quantize ``num_bytes`` of float input: ``bytes / host_quantize_bytes_per_s``."""
    return _ns(num_bytes, preset.host_quantize_bytes_per_s)


def dequantize_ns(num_bytes: int, preset: NpuPreset) -> int:
    """Host time to dequantize into ``num_bytes`` of float output: ``bytes / host_dequantize_bytes_per_s``."""
    return _ns(num_bytes, preset.host_dequantize_bytes_per_s)


def compute_precision(cost: ModelCost, preset: NpuPreset) -> str:
    """What the device computes the model in.

    ``int8`` on an int8-only device (the SDK quantizes float models) or for a model that is
    already quantized (QLinear* / *Integer / Quantize/DequantizeLinear ops); otherwise ``fp16``,
    the precision float models are compiled to on devices that have it (ATOM-like).
    """
    if preset.int8_only or cost.is_quantized:
        return "int8"
    return "fp16"


@dataclass(frozen=True)
class StageTimes:
    """Modelled durations (ns) and sizes of one request's five stages.

    Attributes:
        quantize_ns, upload_ns, compute_ns, download_ns, dequantize_ns: stage durations
            (0 for a stage that does not happen).
        upload_bytes, download_bytes: bytes each DMA moves.
        quantize_bytes, dequantize_bytes: float bytes the host converts.
        flops: operations of the compute stage.
        precision: ``int8`` or ``fp16``.
    """

    quantize_ns: int
    upload_ns: int
    compute_ns: int
    download_ns: int
    dequantize_ns: int
    upload_bytes: int
    download_bytes: int
    quantize_bytes: int
    dequantize_bytes: int
    flops: int
    precision: str

    def as_dict(self) -> dict[str, int]:
        """``{"quantize": ns, "upload": ns, "compute": ns, "download": ns, "dequantize": ns}``."""
        return {"quantize": self.quantize_ns, "upload": self.upload_ns, "compute": self.compute_ns,
                "download": self.download_ns, "dequantize": self.dequantize_ns}

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return asdict(self)


def stage_times(cost: ModelCost, preset: NpuPreset, *, pe_mode: str = "single", batch: int = 1) -> StageTimes:
    """The five stages of one request of ``batch`` samples.

    ``cost`` is the model at batch 1 (:func:`lab.zoo.onnx_cost.model_cost`); FLOPs and the
    bytes of tensors whose leading dimension is dynamic scale linearly with ``batch`` (tensors
    with a fixed leading dimension do not).

    Raises:
        ConfigError: bad ``pe_mode`` or ``batch``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
    _check_pe_mode(pe_mode)
    int8 = preset.int8_only

    def scale(t: Any) -> int:
        return batch if t.declared_shape and t.declared_shape[0] is None else 1

    q_bytes = dq_bytes = up = down = 0
    for t in cost.inputs:
        n = scale(t)
        if int8 and t.is_float:
            q_bytes += t.nbytes * n
            up += t.num_elements * n  # one int8 byte per element after quantization
        else:
            up += t.nbytes * n
    for t in cost.outputs:
        n = scale(t)
        if int8 and t.is_float:
            dq_bytes += t.nbytes * n
            down += t.num_elements * n
        else:
            down += t.nbytes * n
    precision = compute_precision(cost, preset)
    flops = cost.flops * batch
    return StageTimes(
        quantize_ns=quantize_ns(q_bytes, preset) if q_bytes else 0,
        upload_ns=dma_ns(up, preset),
        compute_ns=compute_ns(flops, preset, pe_mode=pe_mode, precision=precision),
        download_ns=dma_ns(down, preset),
        dequantize_ns=dequantize_ns(dq_bytes, preset) if dq_bytes else 0,
        upload_bytes=up, download_bytes=down, quantize_bytes=q_bytes, dequantize_bytes=dq_bytes,
        flops=flops, precision=precision,
    )
