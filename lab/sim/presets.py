"""Simulated NPU presets: the numbers that define a device, each with where it comes from.

Every preset lists its ``sources`` (public spec-sheet facts: PCIe generation and lanes, TOPS,
PE count) and its ``assumptions`` (numbers no spec sheet gives: efficiency, DMA setup and
launch latency, host conversion rates). A simulator is only as good as these, so they are
printed with every result (``SimNpuRuntime.describe()``) and easy to change::

    preset = get_preset("warboy").with_overrides(efficiency=0.3, launch_ns=80_000)

==========  =====  ==================  ================  ==========  ===========  ==========  ======
preset      PEs    peak (all PEs)      link (per dir.)   efficiency  DMA setup    launch      int8
==========  =====  ==================  ================  ==========  ===========  ==========  ======
teaching    2      1 GOPS int8/fp16    100 MB/s          1.0         1 ms         1.5 ms      only
warboy      2      64 TOPS int8        12.6 GB/s (Gen4   0.5         10 us        50 us       only
                                       x8 x 0.8)
atom        8      128 TOPS int8,      50.4 GB/s (Gen5   0.5         10 us        50 us       no
                   32 TFLOPS fp16      x16 x 0.8)
==========  =====  ==================  ================  ==========  ===========  ==========  ======
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError
from lab.sim.cost import PE_MODES, pcie_bytes_per_s

__all__ = [
    "HOST_QUANTIZE_BYTES_PER_S",
    "LINK_EFFICIENCY",
    "PRESETS",
    "NpuPreset",
    "get_preset",
]

#: Host float32 -> int8 quantize rate measured in seed 004 (FuriosaAI SDK guide): YOLOX-L's
#: Quantize took 60.639 ms for its float32 input. The guide gives no shape; YOLOX-L's standard
#: input is 1x3x640x640, i.e. 4,915,200 bytes of float32, so 4,915,200 B / 60.639 ms = 81.06 MB/s
#: (rounded down to 81 MB/s). The guide gives no Dequantize time: the same rate is assumed.
HOST_QUANTIZE_BYTES_PER_S = 81_000_000

#: Share of the encoded PCIe rate a DMA engine achieves (TLP/DLLP headers, descriptor fetches,
#: completions): an assumption, typical of large DMA transfers on x8/x16 links.
LINK_EFFICIENCY = 0.8

_INT_FIELDS = {  # field -> (minimum, unit)
    "num_pes": (1, "PEs"),
    "peak_int8_ops_per_s": (1, "ops/s"),
    "peak_fp16_flops_per_s": (0, "FLOP/s"),
    "link_bytes_per_s": (1, "bytes/s"),
    "dma_setup_ns": (0, "ns"),
    "launch_ns": (0, "ns"),
    "host_quantize_bytes_per_s": (1, "bytes/s"),
    "host_dequantize_bytes_per_s": (1, "bytes/s"),
}


@dataclass(frozen=True)
class NpuPreset:
    """The numbers that define one simulated NPU (integers: ns, bytes, bytes/s, ops/s).

    Attributes:
        name: preset name (``get_preset(name)``).
        description: one line: what device it imitates.
        num_pes: processing elements (compute engines) per device.
        peak_int8_ops_per_s: peak int8 operations per second of all PEs together (a
            multiply-add is 2 ops; "64 TOPS" is 64e12).
        peak_fp16_flops_per_s: peak fp16 FLOP/s of all PEs together; 0 when the device has no
            float compute.
        int8_only: the device computes int8 only: float inputs are quantized and float
            outputs dequantized on the host (``host_*_bytes_per_s``), and travel as int8.
        efficiency: achieved fraction of the peak on real models, in (0, 1] (an assumption).
        link_bytes_per_s: effective host<->device DMA bandwidth, bytes/s, per direction
            (PCIe is full duplex: uploads and downloads do not share it).
        dma_setup_ns: fixed cost of one DMA transfer (descriptor, doorbell, completion
            interrupt), ns.
        launch_ns: fixed cost of one compute job (command submission, PE start, sync), ns.
        host_quantize_bytes_per_s: host float->int8 conversion rate, float bytes read per second.
        host_dequantize_bytes_per_s: host int8->float conversion rate, float bytes written per second.
        default_pe_mode: ``single`` or ``fused``: the PE mode when the runtime is not told.
        sources: public facts the numbers come from.
        assumptions: the numbers that are not from a spec sheet, and why they are what they are.
    """

    name: str
    description: str
    num_pes: int
    peak_int8_ops_per_s: int
    peak_fp16_flops_per_s: int
    int8_only: bool
    efficiency: float
    link_bytes_per_s: int
    dma_setup_ns: int
    launch_ns: int
    host_quantize_bytes_per_s: int
    host_dequantize_bytes_per_s: int
    default_pe_mode: str = "single"
    sources: tuple[str, ...] = field(default=())
    assumptions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name, (minimum, unit) in _INT_FIELDS.items():
            value = getattr(self, name)
            # integral floats (1e9) are accepted and stored as int; anything else is an error
            if isinstance(value, float) and math.isfinite(value) and value == int(value):
                value = int(value)
                object.__setattr__(self, name, value)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"preset field {name!r}: expected an integer >= {minimum} ({unit}), got {value!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"preset field 'name': expected a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"preset field 'description': expected a string, got {self.description!r}")
        if not isinstance(self.int8_only, bool):
            raise ConfigError(f"preset field 'int8_only': expected True or False, got {self.int8_only!r}")
        eff = self.efficiency
        if isinstance(eff, bool) or not isinstance(eff, (int, float)) or not 0 < eff <= 1:
            raise ConfigError(f"preset field 'efficiency': expected a number in (0, 1], got {eff!r}")
        object.__setattr__(self, "efficiency", float(eff))
        if self.default_pe_mode not in PE_MODES:
            raise ConfigError(
                f"preset field 'default_pe_mode': expected one of {list(PE_MODES)}, got {self.default_pe_mode!r}")
        if not self.int8_only and self.peak_fp16_flops_per_s == 0:
            raise ConfigError(
                "preset field 'peak_fp16_flops_per_s': expected > 0 when int8_only is False "
                "(a device without float compute is int8-only), got 0")
        for name in ("sources", "assumptions"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"preset field {name!r}: expected a tuple of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))

    def with_overrides(self, **fields: Any) -> NpuPreset:
        """A copy with ``fields`` replaced (validated like the original).

        Raises:
            ConfigError: an unknown field name, or a value of the wrong type or range.
        """
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ConfigError(f"unknown preset field {unknown[0]!r}: expected one of {known}, got {sorted(fields)}")
        return dataclasses.replace(self, **fields) if fields else self

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["sources"] = list(self.sources)
        d["assumptions"] = list(self.assumptions)
        return d


_GEN4_X8 = pcie_bytes_per_s(4, 8)  # 15,753,846,153 B/s
_GEN5_X16 = pcie_bytes_per_s(5, 16)  # 63,015,384,615 B/s

TEACHING = NpuPreset(
    name="teaching",
    description="a fictional, slow teaching NPU (Warboy-shaped: 2 PEs, int8-only) with millisecond stages",
    num_pes=2,
    peak_int8_ops_per_s=1_000_000_000,  # 1 GOPS: the digits CNN (678,720 FLOPs) computes in ~1.4 ms on one PE
    peak_fp16_flops_per_s=1_000_000_000,  # = int8, so toggling int8_only changes only the host cost
    int8_only=True,
    efficiency=1.0,
    link_bytes_per_s=100_000_000,  # 100 MB/s: a 3 MB image input takes 30 ms to upload
    dma_setup_ns=1_000_000,  # 1 ms per transfer: DMA in/out of the digits model is ~1 ms each
    launch_ns=1_500_000,  # 1.5 ms: compute of the digits model is ~2.9 ms single PE, ~2.2 ms fused
    host_quantize_bytes_per_s=512_000,  # the digits input (256 float32 bytes) quantizes in 0.5 ms
    host_dequantize_bytes_per_s=512_000,  # its logits (40 bytes) dequantize in 78 us
    default_pe_mode="single",
    sources=("none: a fictional device for teaching, shaped like Warboy (2 PEs, single or fused, int8-only)",),
    assumptions=(
        "every number is chosen, not measured: stages of about 1-3 ms for the digits CNN, so overlaps are "
        "easy to see on a timeline and sleep overshoot (about 0.1 ms per sleep) stays small against them",
        "per request of the digits CNN: quantize 0.50 ms (host), upload 1.00 ms, compute 2.86 ms single PE / "
        "2.18 ms fused, download 1.00 ms, dequantize 0.08 ms (host)",
    ),
)

WARBOY = NpuPreset(
    name="warboy",
    description="FuriosaAI Warboy-like: 2 PEs (single or fused), 64 TOPS int8, PCIe Gen4 x8, int8-only",
    num_pes=2,
    peak_int8_ops_per_s=64_000_000_000_000,
    peak_fp16_flops_per_s=0,
    int8_only=True,
    efficiency=0.5,
    link_bytes_per_s=int(_GEN4_X8 * LINK_EFFICIENCY),  # 12,603,076,922 B/s
    dma_setup_ns=10_000,
    launch_ns=50_000,
    host_quantize_bytes_per_s=HOST_QUANTIZE_BYTES_PER_S,
    host_dequantize_bytes_per_s=HOST_QUANTIZE_BYTES_PER_S,
    default_pe_mode="single",
    sources=(
        "FuriosaAI Warboy documentation (furiosa-ai.github.io/docs/latest/en/npu/warboy.html): 64 TOPS from two "
        "processing elements (PE) of 32 TOPS each, usable independently or fused into one larger PE; INT8 "
        "quantization, float models converted by post-training quantization",
        "Warboy PCIe card spec sheet: PCIe Gen4 x8 host interface (not re-checked against the datasheet here); "
        "16 GT/s x 8 lanes x 128/130 encoding / 8 bits = 15.75 GB/s per direction",
        "FuriosaAI SDK performance guide (seed 004): Warboy computes int8 only; the host's Quantize of YOLOX-L's "
        "float32 input took 60.639 ms (0.277 ms with uint8 input)",
    ),
    assumptions=(
        f"link efficiency {LINK_EFFICIENCY} of the encoded PCIe rate (packet headers, descriptors): 12.6 GB/s",
        "efficiency 0.5 of peak on real CNNs",
        "DMA setup 10 us per transfer; launch 50 us per compute job",
        "host quantize 81 MB/s: 4,915,200 float32 bytes (YOLOX-L input assumed 1x3x640x640) in 60.639 ms; "
        "dequantize assumed at the same rate",
        "fused mode: one engine with both PEs' 64 TOPS and the same launch cost (no fusion overhead)",
    ),
)

ATOM = NpuPreset(
    name="atom",
    description="Rebellions ATOM-like: 8 neural engines, 32 TFLOPS fp16 / 128 TOPS int8, PCIe Gen5 x16",
    num_pes=8,
    peak_int8_ops_per_s=128_000_000_000_000,
    peak_fp16_flops_per_s=32_000_000_000_000,
    int8_only=False,
    efficiency=0.5,
    link_bytes_per_s=int(_GEN5_X16 * LINK_EFFICIENCY),  # 50,412,307,692 B/s
    dma_setup_ns=10_000,
    launch_ns=50_000,
    host_quantize_bytes_per_s=HOST_QUANTIZE_BYTES_PER_S,  # used only if overridden to int8_only=True
    host_dequantize_bytes_per_s=HOST_QUANTIZE_BYTES_PER_S,
    default_pe_mode="fused",
    sources=(
        "Rebellions ATOM product brief: 32 TFLOPS FP16, 128 TOPS INT8, PCIe Gen5 x16 (not re-checked against the "
        "datasheet here)",
        "RBLN SDK documentation (docs.rbln.ai/software/profiler/architecture.html): a multi-core SoC of Neural "
        "Engines with 4 MB local SRAM each and 32 MB shared SRAM, PCIe 5.0 and GDDR6 interfaces",
        "PCIe Gen5 x16: 32 GT/s x 16 lanes x 128/130 encoding / 8 bits = 63.0 GB/s per direction",
    ),
    assumptions=(
        "8 neural engines: from the 64 MB total on-chip SRAM quoted for ATOM (8 x 4 MB local + 32 MB shared); "
        "not stated on the architecture page",
        "precision: float models run in fp16 (no host quantize), quantized models in int8",
        "fused (default): one engine with the whole chip's peak, as the RBLN runtime runs a model on the chip; "
        "single: each neural engine runs whole requests on its own (an idealisation)",
        f"link efficiency {LINK_EFFICIENCY} of the encoded PCIe rate: 50.4 GB/s",
        "efficiency 0.5 of peak; DMA setup 10 us per transfer; launch 50 us per compute job",
        "host quantize/dequantize rates as warboy's (used only when overridden to int8_only=True)",
    ),
)

#: name -> preset.
PRESETS: dict[str, NpuPreset] = {p.name: p for p in (TEACHING, WARBOY, ATOM)}


def get_preset(name: str | NpuPreset) -> NpuPreset:
    """The preset called ``name`` (a preset passes through unchanged).

    Raises:
        ConfigError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, NpuPreset):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown simulated NPU preset {name!r}: expected one of {sorted(PRESETS)}") from None
