"""Seed 003's published numbers (RTX3090 PyTorch, A13 TFLite / CoreML), transcribed, and its design rules.

The seed (LINE Camera AI team's study of ops and backbones on a mobile GPU) prints six tables
and several graphs. The tables are transcribed here verbatim (latencies in milliseconds as
printed; "억" = 1e8); the graphs carry no numbers in the text, so for those studies only the
seed's stated finding is kept (:data:`RULES`). Every function returns a new ``DataFrame``
labelled with the seed's device and framework, for display *beside* the lab's own numbers:
they are reference values from other hardware, never measurements of this machine.

Units as the seed uses them:

* the op table and the kernel-size / channel-ratio tables: milliseconds per inference of the
  model (the op table's models are three stacked layers of the op);
* the kernel-size table's "FLOPs" are 2 x multiply-adds (k=1: 128 * 128 * 512 * 512 * 2 =
  8.6e9, "about 85억"), with "same" padding;
* the backbone and block tables' "FLOPs" are multiply-adds (ResNet-50 "about 41억" = 4.1e9 MACs).

:data:`RULES` states each rule the seed draws and how the lab decides, from its own data,
whether the rule holds on this machine; :func:`verdict` builds one row of a verdict table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lab.errors import ConfigError

__all__ = [
    "DOES_NOT_HOLD",
    "HOLDS",
    "NOT_MEASURED",
    "RULES",
    "SEED_DEVICES",
    "SEED_NAME",
    "VERDICT_COLUMNS",
    "Rule",
    "flat_verdicts",
    "seed_backbone_table",
    "seed_block_table",
    "seed_channel_ratio_table",
    "seed_device_table",
    "seed_kernel_size_table",
    "seed_op_table",
    "seed_stacking_notes",
    "verdict",
    "with_noise",
]

SEED_NAME = "seed 003 (LINE Camera AI: ops and backbones on a mobile GPU)"

#: Verdict values: computed from this machine's data, never typed in.
HOLDS = "holds here"
DOES_NOT_HOLD = "does not hold here"
NOT_MEASURED = "not measured"

#: The seed's three setups, as its tables label them.
SEED_DEVICES: tuple[str, ...] = ("RTX3090 PyTorch", "A13 TFLite", "A13 CoreML")


def seed_device_table() -> pd.DataFrame:
    """The seed's spec comparison of the RTX3090 and the A13 Bionic (iPhone SE2), as printed."""
    rows = [
        ("GPU base clock", "1.40 - 1.70 GHz", "1.35 GHz"),
        ("shading units (CUDA cores)", "10,496", "256"),
        ("transistors", "28.3 billion", "8.5 billion"),
        ("NPU", "328 Tensor Cores", "8-core Neural Engine (not used by TFLite)"),
        ("memory", "24 GB", "shared system memory"),
        ("FP32 performance", "35.5 TFLOPS (about 51x the A13)", "691.2 GFLOPS"),
    ]
    return pd.DataFrame(rows, columns=["spec", "RTX3090", "A13 Bionic"]).set_index("spec")


# -- the op table: three stacked layers, (4, 4096) for Linear, (1, 32, 32, 128) for the rest ------------
_SEED_OPS: dict[str, tuple[float, float, float]] = {
    # op: (RTX3090 PyTorch ms, A13 TFLite ms, A13 CoreML ms)
    "conv2d": (0.1678, 3.75897, 3.0794),
    "relu": (0.0171, 1.94035, 1.3940),
    "linear": (0.2775, 6.89408, 6.218),
    "batchnorm": (0.04438, 1.97055, 1.402174),
    "layernorm": (0.4516, 7.28187, 3.21639),
    "upsample_bilinear": (0.1403, 29.4306, 11.3971),
    "upsample_nearest": (0.0731, 29.7508, 7.16235),
    "transpose": (0.00579, 2.21463, 2.401145),
}


def seed_op_table() -> pd.DataFrame:
    """The seed's per-op latency (ms) of three stacked layers; index ``op`` as :mod:`lab.bench.ops` names them."""
    df = pd.DataFrame.from_dict(_SEED_OPS, orient="index", columns=[f"seed {d} ms" for d in SEED_DEVICES])
    df.index.name = "op"
    return df


# -- kernel size at about equal FLOPs: 512 channels in and out, "same" padding ------------------------
_SEED_KERNEL = [
    # kernel, H=W, channels, A13 TFLite ms, A13 CoreML ms, seed FLOPs (2 x MACs)
    (1, 128, 512, 53.3681, 13.8979, 85e8),
    (3, 44, 512, 15.0811, 8.4727, 91e8),
    (5, 26, 512, 18.9144, 10.3622, 88e8),
    (7, 18, 512, 16.678, 9.9478, 83e8),
]


def seed_kernel_size_table() -> pd.DataFrame:
    """The seed's kernel-size table: k, H=W, channels, A13 latencies (ms) and the seed's FLOPs (2 x MACs)."""
    df = pd.DataFrame(_SEED_KERNEL, columns=["kernel", "hw", "channels", "seed A13 TFLite ms", "seed A13 CoreML ms",
                                             "seed flops"])
    return df.set_index("kernel")


# -- channel ratio at about equal FLOPs: H=W=64, kernel 3 -----------------------------------------------
_SEED_RATIO = [
    # H=W, in, out, A13 TFLite ms, RTX3090 ms
    (64, 128, 128, 6.376, 0.0612),
    (64, 90, 180, 5.446, 0.0884),
    (64, 52, 312, 6.519, 0.1246),
    (64, 36, 432, 7.828, 0.1280),
]


def seed_channel_ratio_table() -> pd.DataFrame:
    """The seed's channel-ratio table (one 3x3 conv at 64x64): in/out channels and latencies (ms)."""
    df = pd.DataFrame(_SEED_RATIO, columns=["hw", "in_channels", "out_channels", "seed A13 TFLite ms",
                                            "seed RTX3090 PyTorch ms"])
    return df


# -- backbones: batch 1; latencies (ms), TFLite graph nodes, FLOPs (multiply-adds) ----------------------
_SEED_BACKBONES: dict[str, tuple[float, float, float, int, float]] = {
    # name: (RTX3090 PyTorch ms, A13 TFLite ms, A13 CoreML ms, TFLite nodes, MACs)
    "resnet34": (3.497, 31.8827, 8.413, 90, 36e8),
    "resnet50": (4.767, 32.4437, 9.882, 91, 41e8),
    "resnet101": (9.398, 50.1975, 12.5296, 202, 78e8),
    "mobilenet_v2": (3.775, 9.43992, 2.542, 83, 3.2e8),
    "mobilenet_v3_large": (4.444, 10.1454, 18.184, 161, 2.2e8),
    "mobilenet_v3_small": (3.538, 5.805, 6.494, 147, 0.6e8),
    "efficientnet_b0": (5.798, 24.1116, 21.496, 320, 4e8),
    "efficientnet_b1": (8.264, 34.5493, 24.560, 457, 7.1e8),
    "efficientnet_b2": (8.366, 49.2367, 37.799, 457, 10e8),
    "efficientnet_b3": (9.546, 60.753, 49.358, 517, 19e8),
}


def seed_backbone_table() -> pd.DataFrame:
    """The seed's backbone table: latency (ms) per setup, TFLite node count, multiply-adds, and GMAC/s per setup."""
    cols = [f"seed {d} ms" for d in SEED_DEVICES] + ["seed tflite nodes", "seed macs"]
    df = pd.DataFrame.from_dict(_SEED_BACKBONES, orient="index", columns=cols)
    df.index.name = "backbone"
    df["seed tflite nodes"] = df["seed tflite nodes"].astype(int)
    for d in SEED_DEVICES:  # the rate the seed's numbers imply (its "GFLOPS" argument)
        df[f"seed {d} gmac/s"] = df["seed macs"] / (df[f"seed {d} ms"] * 1e-3) / 1e9
    return df


# -- blocks at (1, 112, 112, 24) -------------------------------------------------------------------------
_SEED_BLOCKS: dict[str, tuple[float, int, float, float, float]] = {
    # block: (MACs, TFLite nodes, RTX3090 PyTorch ms, A13 TFLite ms, A13 CoreML ms)
    "mbconv": (1.1e8, 16, 0.3400, 5.8261, 9.4856),
    "inverted_residual": (1.1e8, 5, 0.2088, 4.27251, 2.53574),
    "residual": (1.3e8, 5, 0.1515, 4.10687, 1.87518),
}


def seed_block_table() -> pd.DataFrame:
    """The seed's block table at (1, 112, 112, 24): multiply-adds, TFLite nodes, latency (ms) per setup."""
    cols = ["seed macs", "seed tflite nodes"] + [f"seed {d} ms" for d in SEED_DEVICES]
    df = pd.DataFrame.from_dict(_SEED_BLOCKS, orient="index", columns=cols)
    df.index.name = "block"
    df["seed tflite nodes"] = df["seed tflite nodes"].astype(int)
    return df


def seed_stacking_notes() -> dict[str, Any]:
    """The numbers the seed gives in its block-stacking text (its figures carry the rest)."""
    return {
        "mobilenet_v2_pieces": 20,
        "efficientnet_b0_pieces": 19,
        "first_block_macs_share_below": 0.04,
        "efficientnet_b0_coreml_ms_before_last_block": 25.6,
        "efficientnet_b0_coreml_ms_with_last_block": 22.3,
        "fc_head_max_decrease_ms": 1.5,
        "text": ("MobileNetV2 cut into 20 blocks and EfficientNet-B0 into 19, stacked one by one (A13 CoreML and "
                 "TFLite GPU): latency grows block by block, but the first block, under 4% of the FLOPs, takes "
                 "far more than its share (a fixed start-up cost). On CoreML, EfficientNet-B0's last block "
                 "(adding the FC layer) lowered latency from 25.6 to 22.3 ms, and an FC head on every prefix "
                 "lowered latency by up to 1.5 ms."),
    }


# -- the rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A design rule the seed draws, and how the lab checks it on this machine.

    Attributes:
        id: short name, the key of :data:`RULES`.
        study: the study whose table decides it (``"linear"``, ``"kernel_size"``, ``"backbones"`` ...).
        claim: the rule in one sentence.
        seed_evidence: what the seed measured (device, numbers or the shape of its graph).
        check: how the lab decides from its own table: the metric and the threshold.
    """

    id: str
    study: str
    claim: str
    seed_evidence: str
    check: str


_RULE_LIST = [
    Rule("bigger_ops_higher_rate", "linear",
         "Bigger layers reach a higher FLOP rate; very small layers waste the device.",
         "A13 TFLite: FLOPS fell sharply as the Linear layer shrank (graph).",
         "achieved FLOP/s of the largest Linear over the smallest (M=1 sweeps) >= 2"),
    Rule("grow_n_over_k", "linear",
         "At the same size, growing N (output features) is a little faster than growing K (input features).",
         "A13 TFLite: when the op grew, growing N gave slightly better performance than growing K (graph).",
         "mean FLOP/s over the N sweep / mean FLOP/s over the K sweep (same sizes) > 1"),
    Rule("no_dim_quantization", "dim_quantization",
         "Dimensions that are not a multiple of 4 or 8 cost no visible extra time.",
         "A13 TFLite: N or K swept 248..256 with the other at 4096: no noticeable effect (graph).",
         "time per FLOP at non-multiples of 8 / time per FLOP at 248 and 256 <= 1.10"),
    Rule("channels_beat_spatial", "conv",
         "At equal FLOPs, more channels (in or out) run at a higher rate than a larger H or W.",
         "A13 TFLite: growing H and W slowed things down; large in/out channels were faster per FLOP (graph).",
         "mean FLOP/s of the in/out-channel sweeps / of the H/W sweeps, at the same FLOP multiples > 1"),
    Rule("kernel3_fastest", "kernel_size",
         "A 3x3 kernel is the fastest per FLOP (Winograd).",
         "A13 TFLite 53.4 / 15.1 / 18.9 / 16.7 ms and CoreML 13.9 / 8.5 / 10.4 / 9.9 ms for k = 1/3/5/7.",
         "k = 3 has the highest achieved FLOP/s of k in 1, 3, 5, 7"),
    Rule("padding_hurts_small_big_kernels", "padding",
         "Padding costs time, most on small inputs with large kernels.",
         "A13 TFLite: padded/unpadded latency gap largest for the small conv (32x32, 64 ch) at large k (graph).",
         "latency(padded) / latency(unpadded) is largest for the small op at the largest kernel"),
    Rule("balanced_channels", "channel_ratio",
         "At equal FLOPs, an in:out channel ratio far from 1:1 costs time.",
         "RTX3090 0.061 -> 0.128 ms from 128:128 to 36:432; A13 TFLite best at 1:2 (5.45 ms), worst at 36:432 "
         "(7.83 ms).",
         "latency(36:432) / latency(128:128) > 1.10"),
    Rule("layout_ops_slow", "layout",
         "Layout changes (transpose, reshape, pixel shuffle) are slow: slower than elementwise work on the "
         "same tensor.",
         "A13 TFLite: all three took 2 ms or more even on small tensors (graph); TFLite's guide says avoid them.",
         "median over sizes of latency(layout op) / latency(ReLU on the same tensor) > 1, per op"),
    Rule("reshape_slowest", "layout",
         "Reshape is the slowest of the three layout ops.",
         "A13 TFLite: reshape took much longer than transpose and pixel shuffle (graph).",
         "mean latency of reshape > mean latency of transpose and of pixel shuffle"),
    Rule("resnet_higher_rate", "backbones",
         "Plain ResNets reach a higher FLOP rate than MobileNets and EfficientNets.",
         "A13 TFLite: ResNet-34/50 ~32 ms for 3.6-4.1 GMACs vs EfficientNet-B0 24 ms for 0.4 GMACs.",
         "median FLOP/s of the ResNets > median FLOP/s of the other backbones"),
    Rule("nodes_per_flop_slow", "backbones",
         "More graph nodes per FLOP means a lower achieved rate.",
         "TFLite node counts: 90 (ResNet-34, 3.6 GMACs) vs 320 (EfficientNet-B0, 0.4 GMACs).",
         "Spearman correlation of nodes per GFLOP with achieved FLOP/s < 0"),
    Rule("fewer_bigger_layers", "deep_vs_wide",
         "At equal FLOPs, a few big layers beat many small ones.",
         "RTX3090: latency grew with the number of layers; A13 TFLite: from 3 layers on, with noise (graph).",
         "latency(deepest stack) / latency(one layer) > 1.10 at about equal FLOPs"),
    Rule("mbconv_slowest", "blocks",
         "The branchy MBConv block is the slowest of the three blocks at similar FLOPs.",
         "MBConv / inverted residual / residual: RTX3090 0.340 / 0.209 / 0.152 ms, A13 TFLite 5.83 / 4.27 / "
         "4.11 ms, CoreML 9.49 / 2.54 / 1.88 ms.",
         "MBConv has the highest latency of the three blocks"),
    Rule("fixed_startup_cost", "stacking",
         "There is a fixed start-up cost: the first block takes far more time than its share of the FLOPs.",
         "A13 CoreML and TFLite: MobileNetV2's first block (< 4% of the FLOPs) was slow for its FLOPs (graph).",
         "(latency of the first prefix / full model) / (FLOPs of the first prefix / full model) > 2"),
    Rule("fc_head_lowers_latency", "stacking",
         "Adding a pooled FC head to a prefix lowers its latency (less output to fetch).",
         "A13 CoreML, EfficientNet-B0: 25.6 -> 22.3 ms with the last block; FC heads on every prefix cut up to "
         "1.5 ms.",
         "the prefix with a pooled FC head is faster than without it for more than half of the prefixes"),
]

#: rule id -> :class:`Rule`, in the order of the seed's text.
RULES: dict[str, Rule] = {r.id: r for r in _RULE_LIST}


def verdict(rule_id: str, holds: bool | None, *, value: float | None, backend: str, detail: str = "",
            threshold: str | None = None, subject: str = "", limit: float | None = None) -> dict[str, Any]:
    """One verdict row: the rule, this machine's value, and ``holds here`` / ``does not hold here``.

    Args:
        rule_id: a key of :data:`RULES`.
        holds: the outcome of the rule's check on this machine's data; None when the data
            needed is missing (the verdict is then ``not measured``).
        value: the measured quantity the check compares (a ratio, a correlation ...).
        backend: which runtime measured it (``"torch"``, ``"onnx"``).
        detail: one sentence with the numbers behind the value.
        threshold: the comparison, default the rule's ``check``.
        subject: what the row is about when a rule is checked per item (the layout op), else "".
        limit: the number ``value`` is compared with (1 for "a ratio above 1"), when there is one;
            :func:`with_noise` uses it to flag close calls.

    Returns:
        A dict ready for ``pandas.DataFrame`` with the :data:`VERDICT_COLUMNS` (``noise`` and
        ``close_call`` empty until :func:`with_noise` fills them).

    Raises:
        ConfigError: unknown rule id.
    """
    try:
        rule = RULES[rule_id]
    except KeyError:
        raise ConfigError(f"unknown rule {rule_id!r}: expected one of {sorted(RULES)}") from None
    if value is not None and not math.isfinite(value):
        holds, value = None, None
    return {
        "rule": rule.id,
        "subject": subject,
        "study": rule.study,
        "backend": backend,
        "claim": rule.claim,
        "value": value,
        "limit": limit,
        "check": threshold or rule.check,
        "verdict": NOT_MEASURED if holds is None else (HOLDS if holds else DOES_NOT_HOLD),
        "detail": detail,
        "noise": None,
        "close_call": None,
        "seed_evidence": rule.seed_evidence,
    }


#: The columns of a verdict table, in order.
VERDICT_COLUMNS: tuple[str, ...] = ("rule", "subject", "study", "backend", "claim", "value", "limit", "check",
                                    "verdict", "detail", "noise", "close_call", "seed_evidence")


def with_noise(verdicts: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Fill ``noise`` and ``close_call``: is a verdict decided by less than the measurements' own spread?

    ``noise`` is the median relative IQR (IQR / median latency) of the measurements of the rule's
    study on that backend; ``close_call`` is True when the value lies within ``noise`` (relative) of
    its ``limit``, so another run on a noisy machine may well flip the verdict. Rules without a
    positive ``limit`` (a correlation's sign) get no ``close_call``.

    Args:
        verdicts: a verdict table (:data:`VERDICT_COLUMNS`).
        tables: study name -> the study's table (with ``backend`` and ``rel_iqr`` columns).

    Returns:
        A copy with the two columns filled.
    """
    out = verdicts.copy()
    noise, close = [], []
    for r in out.itertuples():
        table = tables.get(r.study)
        spread = None
        if table is not None and not table.empty and "rel_iqr" in table.columns:
            sel = table.loc[table["backend"] == r.backend, "rel_iqr"].dropna()
            spread = float(sel.median()) if len(sel) else None
        noise.append(spread)
        limit, value = r.limit, r.value
        if spread is None or limit is None or value is None or pd.isna(limit) or pd.isna(value) or not limit > 0:
            close.append(None)
        else:
            close.append(bool(abs(value - limit) <= spread * limit))
    out["noise"] = pd.Series(noise, index=out.index, dtype=object)
    out["close_call"] = pd.Series(close, index=out.index, dtype=object)
    return out


def flat_verdicts(verdicts: pd.DataFrame) -> Mapping[str, str]:
    """``{"<rule>[.<subject>].<backend>": verdict}``: a verdict table as a flat mapping, for findings headlines."""
    return {".".join(p for p in (r.rule, r.subject, r.backend) if p): r.verdict for r in verdicts.itertuples()}
