"""Seed 003's backbone and block studies: rate per backbone, deep vs wide, blocks, and stacking blocks one by one.

* :func:`backbone_table`: latency, FLOPs, parameters, ONNX graph nodes and achieved FLOP/s of
  each zoo backbone (:data:`lab.zoo.backbones.BACKBONES`), on PyTorch eager and ONNX Runtime.
* :func:`deep_vs_wide`: ``L`` stacked 3x3 convs whose channels shrink as ``1 / sqrt(L)``, so
  every stack has about the same FLOPs (the seed's "one big layer vs many small ones").
* :func:`block_table`: MBConv, inverted residual and residual blocks at the seed's
  ``(1, 112, 112, 24)`` (NCHW ``(1, 24, 112, 112)``).
* :func:`stacking_study`: a backbone cut into the seed's pieces (MobileNetV2: stem, 17 inverted
  residuals, head conv, classifier = 20; EfficientNet-B0: stem, 16 MBConvs, head conv,
  classifier = 19), the first ``n`` pieces timed for every ``n``, optionally with a pooled
  FC head on each prefix (the seed's CoreML follow-up). :func:`startup_cost` reads the fixed
  cost off it.

Latencies are :func:`lab.measure` medians (PyTorch under ``torch.inference_mode()``, ONNX
Runtime through a bare IO-bound session, see :mod:`lab.bench.ops`). FLOPs follow
:func:`lab.zoo.export.count_flops` (a multiply-add is 2 FLOPs; the seed's backbone and block
"FLOPs" are multiply-adds, so the tables show ``macs`` beside the seed's). ONNX node counts
come from the exported graph (the zoo's dynamo export, cached), the lab's stand-in for the
seed's TFLite node counts. torch and onnx are imported inside the functions.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.bench import seed003
from lab.bench.ops import (
    MeasureOptions,
    OpCase,
    _progress,
    default_backends,
    make_case,
    measure_onnx,
    measure_torch,
    measurement_row,
    run_cases,
)
from lab.clock import host_clock
from lab.errors import ConfigError

__all__ = [
    "DEPTH_PENALTY_MIN",
    "QUICK_BACKBONES",
    "SEED_BACKBONES",
    "SEED_BLOCKS",
    "STACK_BACKBONES",
    "STARTUP_SHARE_RATIO_MIN",
    "backbone_pieces",
    "backbone_table",
    "backbone_verdicts",
    "block_table",
    "compare_backbones",
    "compare_blocks",
    "deep_vs_wide",
    "deep_vs_wide_cases",
    "stacking_study",
    "startup_cost",
]

#: The seed's ten backbones, in its table's order.
SEED_BACKBONES: tuple[str, ...] = ("resnet34", "resnet50", "resnet101", "mobilenet_v2", "mobilenet_v3_large",
                                   "mobilenet_v3_small", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
                                   "efficientnet_b3")
#: A CI-sized pair: one plain ResNet, one mobile network.
QUICK_BACKBONES: tuple[str, ...] = ("resnet34", "mobilenet_v3_small")
#: The seed's three blocks, in its table's order.
SEED_BLOCKS: tuple[str, ...] = ("mbconv", "inverted_residual", "residual")
#: The backbones the seed stacked block by block.
STACK_BACKBONES: tuple[str, ...] = ("mobilenet_v2", "efficientnet_b0")

#: Thresholds of the rule checks (see :data:`lab.bench.seed003.RULES`).
DEPTH_PENALTY_MIN = 1.10
STARTUP_SHARE_RATIO_MIN = 2.0


def _options(options: MeasureOptions | None, quick: bool) -> MeasureOptions:
    return options or MeasureOptions.preset(quick)


def _measure_model(model: Any, x: np.ndarray, backend: str, *, onnx_model: Any, options: MeasureOptions,
                   label: str) -> tuple[Any, int | None, str | None]:
    """``(measurement, threads, ort level)`` of one model on one backend."""
    if backend == "torch":
        import torch

        xt = torch.from_numpy(x)
        m, threads = measure_torch(lambda: model(xt), options=options, label=label)
        return m, threads, None
    return measure_onnx(onnx_model, x, options=options, graph_optimization="all", label=label), options.threads, "all"


def _row(m: Any, *, flops: int, nbytes: int, t0: int, t1: int, threads: int | None, level: str | None
         ) -> dict[str, Any]:
    row = measurement_row(m, flops=flops, nbytes=nbytes, start_ns=t0, end_ns=t1)
    row["threads"] = threads
    row["ort_optimization"] = level
    return row


# --------------------------------------------------------------------------- backbones
def backbone_table(names: Sequence[str] = SEED_BACKBONES, *, backends: Sequence[str] | None = None,
                   input_size: int | None = None, quick: bool = False, options: MeasureOptions | None = None,
                   count_nodes: bool = True, progress: bool = True, cache_dir: str | Path | None = None
                   ) -> pd.DataFrame:
    """Latency, FLOPs, parameters, ONNX nodes and achieved FLOP/s of each backbone, per backend.

    Args:
        names: keys of :data:`lab.zoo.backbones.BACKBONES`.
        backends: runtimes (default every available one; ``"onnx"`` exports each backbone once, cached).
        input_size: square input side for every backbone; default each one's own (224 ... 300),
            which is what the seed used.
        quick: the CI measurement preset.
        options: how to measure (default the preset for ``quick``).
        count_nodes: export to ONNX for the node count even when ``"onnx"`` is not measured.
        progress: show a progress bar.
        cache_dir: the export cache (default :func:`lab.zoo.export.default_cache_dir`).

    Returns:
        One row per (backbone, backend): ``backbone, family, backend, input_size, params, flops``
        (at ``input_size``), ``macs_native`` (multiply-adds at the backbone's own size, the seed's
        column), ``onnx_nodes``, ``nodes_per_gflop``, then :func:`lab.bench.ops.measurement_row`'s
        columns (``bytes``: weights + input + output, the least traffic), ``threads``, ``ort_optimization``.

    Raises:
        ConfigError: an unknown backbone or size.
        RuntimeUnavailable: PyTorch is not installed (it builds the models).
    """
    from lab.zoo.backbones import BACKBONES, build_backbone
    from lab.zoo.export import backbone_flops, count_params, export_backbone, onnx_node_count

    backends = default_backends(backends)
    options = _options(options, quick)
    unknown = [n for n in names if n not in BACKBONES]
    if unknown:
        raise ConfigError(f"unknown backbone(s) {unknown}: expected some of {sorted(BACKBONES)}")
    rows = []
    with _progress(len(names) * len(backends), "backbones", progress) as bar:
        for name in names:
            spec = BACKBONES[name]
            size = input_size or spec.input_size
            model = build_backbone(name, seed=options.seed)
            flops = backbone_flops(name, input_size=size)
            native = flops if size == spec.input_size else backbone_flops(name)
            params = count_params(model)
            path = export_backbone(name, input_size=size, seed=options.seed, cache_dir=cache_dir) \
                if ("onnx" in backends or count_nodes) else None
            nodes = onnx_node_count(path) if path is not None else None
            x = np.random.default_rng(options.seed).standard_normal((1, 3, size, size)).astype(np.float32)
            nbytes = (params + x.size + 1000) * 4
            for backend in backends:
                t0 = host_clock()
                m, threads, level = _measure_model(model, x, backend, onnx_model=str(path) if path else None,
                                                   options=options, label=f"{name} {size}px")
                t1 = host_clock()
                row = {"backbone": name, "family": spec.family, "backend": backend, "study": "backbones",
                       "case": name, "input_size": size, "params": params, "flops": flops,
                       "macs_native": native // 2, "onnx_nodes": nodes,
                       "nodes_per_gflop": nodes / (flops / 1e9) if nodes is not None else math.nan}
                row.update(_row(m, flops=flops, nbytes=nbytes, t0=t0, t1=t1, threads=threads, level=level))
                rows.append(row)
                bar.update(1)
            del model
    return pd.DataFrame(rows)


def compare_backbones(results: pd.DataFrame) -> pd.DataFrame:
    """Our backbone table (latency and GFLOP/s per backend, MACs, ONNX nodes) beside the seed's."""
    lat = results.pivot_table(index="backbone", columns="backend", values="latency_ms", aggfunc="first")
    lat.columns = [f"{b} latency ms" for b in lat.columns]
    rate = results.pivot_table(index="backbone", columns="backend", values="gflop_per_s", aggfunc="first")
    rate.columns = [f"{b} gflop/s" for b in rate.columns]
    facts = results.groupby("backbone")[["input_size", "params", "macs_native", "onnx_nodes"]].first()
    ours = facts.join(lat).join(rate)
    seed = seed003.seed_backbone_table()
    table = ours.join(seed, how="left")
    order = [n for n in SEED_BACKBONES if n in table.index] + [n for n in table.index if n not in SEED_BACKBONES]
    return table.reindex(order)


# --------------------------------------------------------------------------- deep vs wide
def deep_vs_wide_cases(depths: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16), *, hw: int = 32, channels: int = 256,
                       kernel: int = 3) -> list[OpCase]:
    """``L`` stacked convs ("same" padding) with ``round(channels / sqrt(L))`` channels: about equal FLOPs.

    The seed kept the total FLOPs about equal while adding layers (adjusting channels and H, W);
    here only the channels shrink, so every layer keeps the ``hw x hw`` map.
    """
    cases = []
    for depth in depths:
        c = max(1, round(channels / math.sqrt(depth)))
        cases.append(make_case("conv2d", (1, c, hw, hw), out_channels=c, kernel=kernel, padding=kernel // 2,
                               depth=depth, study="deep_vs_wide", label=f"{depth} x {c}ch",
                               coords={"layers": depth, "channels": c, "hw": hw}))
    return cases


def deep_vs_wide(*, quick: bool = False, backends: Sequence[str] | None = None, options: MeasureOptions | None = None,
                 progress: bool = True, **case_options: Any) -> pd.DataFrame:
    """Run :func:`deep_vs_wide_cases` (``quick``: depths 1, 2, 4, 8 at 128 channels) and return the table.

    Adds ``flops_vs_first`` (each stack's FLOPs over the one-layer model's).
    """
    if quick:
        case_options = {"depths": (1, 2, 4, 8), "channels": 128, **case_options}
    df = run_cases(deep_vs_wide_cases(**case_options), backends=backends, options=_options(options, quick),
                   progress=progress, desc="deep vs wide")
    first = df.loc[df["layers"] == df["layers"].min(), "flops"].iloc[0]
    return df.assign(flops_vs_first=df["flops"] / first)


# --------------------------------------------------------------------------- blocks
def block_table(blocks: Sequence[str] = SEED_BLOCKS, *, backends: Sequence[str] | None = None, channels: int = 24,
                input_size: int = 112, quick: bool = False, options: MeasureOptions | None = None,
                count_nodes: bool = True, progress: bool = True, cache_dir: str | Path | None = None
                ) -> pd.DataFrame:
    """The seed's block test: each block at ``(1, channels, input_size, input_size)``, per backend.

    Arguments as :func:`backbone_table`'s (the blocks' ONNX exports are cached the same way).

    Returns:
        One row per (block, backend): ``block, family, backend, params, flops, macs, onnx_nodes``,
        then :func:`lab.bench.ops.measurement_row`'s columns.
    """
    import torch

    from lab.zoo.blocks import BLOCKS, build_block
    from lab.zoo.export import count_flops, count_params, export_block, onnx_node_count

    backends = default_backends(backends)
    options = _options(options, quick)
    rows = []
    with _progress(len(blocks) * len(backends), "blocks", progress) as bar:
        for name in blocks:
            if name not in BLOCKS:
                raise ConfigError(f"unknown block {name!r}: expected one of {sorted(BLOCKS)}")
            block = build_block(name, channels, input_size=input_size, seed=options.seed)
            x = np.random.default_rng(options.seed).standard_normal((1, channels, input_size, input_size)
                                                                    ).astype(np.float32)
            flops = count_flops(block, torch.from_numpy(x))
            params = count_params(block)
            path = export_block(name, channels=channels, input_size=input_size, seed=options.seed,
                                cache_dir=cache_dir) \
                if ("onnx" in backends or count_nodes) else None
            nodes = onnx_node_count(path) if path is not None else None
            nbytes = (params + 2 * x.size) * 4
            for backend in backends:
                t0 = host_clock()
                m, threads, level = _measure_model(block, x, backend, onnx_model=str(path) if path else None,
                                                   options=options, label=f"{name} block")
                t1 = host_clock()
                row = {"block": name, "family": BLOCKS[name].family, "backend": backend, "study": "blocks",
                       "case": name, "params": params, "flops": flops, "macs": flops // 2, "onnx_nodes": nodes}
                row.update(_row(m, flops=flops, nbytes=nbytes, t0=t0, t1=t1, threads=threads, level=level))
                rows.append(row)
                bar.update(1)
    return pd.DataFrame(rows)


def compare_blocks(results: pd.DataFrame) -> pd.DataFrame:
    """Our block table (latency per backend, MACs, ONNX nodes) beside the seed's."""
    lat = results.pivot_table(index="block", columns="backend", values="latency_ms", aggfunc="first")
    lat.columns = [f"{b} latency ms" for b in lat.columns]
    ours = results.groupby("block")[["macs", "onnx_nodes"]].first().join(lat)
    table = ours.join(seed003.seed_block_table(), how="left")
    return table.reindex([b for b in SEED_BLOCKS if b in table.index]
                         + [b for b in table.index if b not in SEED_BLOCKS])


# --------------------------------------------------------------------------- stacking
@functools.cache
def _tap_class() -> type:
    """An ``nn.Module`` returning every prefix's output (and each prefix's head output): one ONNX export for all."""
    from torch import nn

    class PrefixTaps(nn.Module):
        """Runs the pieces in order and returns each piece's output, then each head's output."""

        def __init__(self, pieces: Sequence[nn.Module], heads: Sequence[nn.Module]) -> None:
            super().__init__()
            self.pieces = nn.ModuleList(pieces)
            self.heads = nn.ModuleList(heads)

        def forward(self, x: Any) -> tuple[Any, ...]:
            outs = []
            for piece in self.pieces:
                x = piece(x)
                outs.append(x)
            return (*outs, *(head(o) for head, o in zip(self.heads, outs, strict=False)))

    PrefixTaps.__module__ = __name__
    PrefixTaps.__qualname__ = "PrefixTaps"
    return PrefixTaps


def backbone_pieces(name: str, *, seed: int = 0) -> list[tuple[str, Any]]:
    """A backbone cut into the seed's pieces, as ``(piece name, module)`` pairs.

    MobileNets: every entry of ``features`` (stem, blocks, head conv), then the pooled
    classifier. EfficientNets: the stem, every MBConv of every stage, the head conv, then the
    pooled classifier (B0: 19 pieces, the seed's split). The modules are the backbone's own
    (seeded weights, calibrated BatchNorm), so running all pieces in order is the whole model.

    Raises:
        ConfigError: unknown backbone, or one without a ``features`` stack (ResNets).
    """
    from torch import nn

    from lab.zoo.backbones import BACKBONES, build_backbone

    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}: expected one of {sorted(BACKBONES)}")
    model = build_backbone(name, seed=seed)
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ConfigError(f"backbone_pieces: {name!r} has no `features` stack; use a MobileNet or EfficientNet")
    entries = list(features)
    pieces: list[tuple[str, Any]] = [("stem", entries[0])]
    blocks: list[Any] = []
    for entry in entries[1:-1]:
        if BACKBONES[name].family == "efficientnet" and isinstance(entry, nn.Sequential):
            blocks.extend(entry)  # a stage: its MBConv blocks are the pieces
        else:
            blocks.append(entry)
    pieces += [(f"block {i + 1}", b) for i, b in enumerate(blocks)]
    pieces.append(("head conv", entries[-1]))
    pool = getattr(model, "avgpool", None)
    if pool is None:  # MobileNetV2 pools functionally in forward()
        pool = nn.AdaptiveAvgPool2d(1)
    pieces.append(("classifier", nn.Sequential(pool, nn.Flatten(1), model.classifier).eval()))
    return pieces


def _fc_head(channels: int, num_classes: int, seed: int) -> Any:
    from torch import nn

    from lab.zoo.blocks import init_weights, seeded

    with seeded(seed):
        return init_weights(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                          nn.Linear(channels, num_classes))).eval()


def stacking_study(name: str = "mobilenet_v2", *, backends: Sequence[str] | None = None,
                   input_size: int | None = None, heads: bool = True, prefixes: Sequence[int] | None = None,
                   quick: bool = False, options: MeasureOptions | None = None, progress: bool = True,
                   seed: int = 0, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Time the first ``n`` pieces of a backbone for every ``n`` (the seed's block stacking).

    Args:
        name: a MobileNet or EfficientNet (the seed: ``mobilenet_v2`` and ``efficientnet_b0``).
        backends: runtimes (default every available one). ONNX Runtime runs sub-graphs cut out of
            one export that returns every prefix's output (``onnx.utils.Extractor``), so the
            backbone is exported once, not once per prefix.
        input_size: square input side; default the backbone's own.
        heads: also time every prefix (but the whole model) with a pooled FC head to 1000
            classes appended (the seed's CoreML follow-up); rows then have ``with_head`` True.
        prefixes: which ``n`` to time (1-based); default all of them, or with ``quick`` the first,
            the last and every fourth. The first and the whole model are always timed.
        quick: the CI measurement preset (and fewer prefixes, see ``prefixes``).
        options: how to measure (default the preset for ``quick``).
        progress: show a progress bar.
        seed: weights seed.
        cache_dir: the export cache (default :func:`lab.zoo.export.default_cache_dir`).

    Returns:
        One row per (prefix, with_head, backend): ``backbone, n, piece, with_head, backend, flops``
        (of the prefix), ``flops_share`` (of the whole model), ``output_shape``, ``output_elements``,
        then :func:`lab.bench.ops.measurement_row`'s columns.

    Raises:
        ConfigError: unknown backbone or one without ``features``.
    """
    import torch

    from lab.zoo.backbones import BACKBONES
    from lab.zoo.export import cached_export, count_flops

    backends = default_backends(backends)
    options = _options(options, quick)
    pieces = backbone_pieces(name, seed=seed)
    size = input_size or BACKBONES[name].input_size
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    total = len(pieces)
    models = [torch.nn.Sequential(*(m for _, m in pieces[:n])).eval() for n in range(1, total + 1)]
    # one pass through the pieces: each piece's FLOPs and output (a prefix's FLOPs are the running sum)
    piece_flops, piece_outs = [], []
    y = torch.from_numpy(x)
    for _, piece in pieces:
        piece_flops.append(count_flops(piece, y))
        with torch.inference_mode():
            y = piece(y)
        piece_outs.append(y)
    flops = list(itertools.accumulate(piece_flops))
    outs = [tuple(o.shape) for o in piece_outs]
    head_mods = [_fc_head(int(shape[1]), 1000, seed + n) for n, shape in enumerate(outs[:-1], start=1)] \
        if heads else []
    head_flops = [f + count_flops(h, o) for f, h, o in zip(flops, head_mods, piece_outs, strict=False)]
    del piece_outs

    onnx_outputs: list[str] = []
    onnx_graph = extractor = None
    if "onnx" in backends:
        import onnx

        taps = _tap_class()([m for _, m in pieces], head_mods).eval()
        path = cached_export(f"stack-{name}-{size}px-s{seed}-heads{int(heads)}",
                             lambda: (taps, torch.from_numpy(x)), dynamic_batch=False, cache_dir=cache_dir)
        onnx_graph = onnx.load(str(path))
        onnx_outputs = [o.name for o in onnx_graph.graph.output]
        if len(onnx_outputs) != total + len(head_mods):
            raise ConfigError(f"stacking export of {name} has {len(onnx_outputs)} outputs, expected "
                              f"{total + len(head_mods)}")
        extractor = onnx.utils.Extractor(onnx_graph)  # shape inference once; each prefix is cut from it

    if prefixes is None:
        prefixes = range(4, total, 4) if quick else range(1, total + 1)
    bad = [n for n in prefixes if not 1 <= n <= total]
    if bad:
        raise ConfigError(f"stacking {name}: prefixes must be within 1..{total}, received {bad}")
    chosen = sorted({1, total, *prefixes})
    variants = [(n, False) for n in chosen] + [(n, True) for n in chosen if n <= len(head_mods)]
    rows = []
    with _progress(len(variants) * len(backends), f"stacking {name}", progress) as bar:
        for n, with_head in variants:
            module = torch.nn.Sequential(models[n - 1], head_mods[n - 1]).eval() if with_head else models[n - 1]
            f = head_flops[n - 1] if with_head else flops[n - 1]
            out_shape = (1, 1000) if with_head else outs[n - 1]
            sub = None
            if onnx_graph is not None and extractor is not None:
                out_name = onnx_outputs[total + n - 1] if with_head else onnx_outputs[n - 1]
                sub = extractor.extract_model([onnx_graph.graph.input[0].name], [out_name])
            for backend in backends:
                t0 = host_clock()
                m, threads, level = _measure_model(module, x, backend, onnx_model=sub, options=options,
                                                   label=f"{name} pieces 1..{n}{' + FC head' if with_head else ''}")
                t1 = host_clock()
                row = {"backbone": name, "n": n, "piece": pieces[n - 1][0], "with_head": with_head,
                       "backend": backend, "study": "stacking",
                       "case": f"{name} 1..{n}{' +head' if with_head else ''}", "input_size": size,
                       "flops": f, "flops_share": f / flops[-1], "output_shape": "x".join(map(str, out_shape)),
                       "output_elements": int(math.prod(out_shape))}
                nbytes = (sum(p.numel() for p in module.parameters()) + x.size + row["output_elements"]) * 4
                row.update(_row(m, flops=f, nbytes=nbytes, t0=t0, t1=t1, threads=threads, level=level))
                rows.append(row)
                bar.update(1)
    return pd.DataFrame(rows)


def startup_cost(stacking: pd.DataFrame) -> pd.DataFrame:
    """The fixed start-up cost read off a :func:`stacking_study` table (prefixes without a head).

    Returns:
        One row per (backbone, backend): ``first_latency_share`` (first prefix / whole model),
        ``first_flops_share``, ``share_ratio`` (the first over the second: > 1 means the first
        block costs more than its FLOPs), ``intercept_ns`` and ``ns_per_mflop`` (least-squares
        fit of latency on FLOPs over all prefixes: the intercept is the fixed cost), and ``r2``.
    """
    rows = []
    plain = stacking[~stacking["with_head"]]
    for (name, backend), g in plain.groupby(["backbone", "backend"], sort=False):
        g = g.sort_values("n")
        first, last = g.iloc[0], g.iloc[-1]
        lat_share = first["latency_ns"] / last["latency_ns"]
        flop_share = first["flops"] / last["flops"]
        xs, ys = g["flops"].to_numpy(float), g["latency_ns"].to_numpy(float)
        slope, intercept = np.polyfit(xs, ys, 1)
        fit = slope * xs + intercept
        ss_res, ss_tot = float(((ys - fit) ** 2).sum()), float(((ys - ys.mean()) ** 2).sum())
        rows.append({"backbone": name, "backend": backend, "pieces": len(g),
                     "first_latency_share": lat_share, "first_flops_share": flop_share,
                     "share_ratio": lat_share / flop_share, "intercept_ns": int(round(intercept)),
                     "ns_per_mflop": slope * 1e6, "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- verdicts
def _by_backend(df: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if df is None or df.empty:
        return {}
    return {str(b): g for b, g in df.groupby("backend", sort=False)}


def _backbone_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        res, other = g[g["family"] == "resnet"], g[g["family"] != "resnet"]
        if res.empty or other.empty:
            out.append(seed003.verdict("resnet_higher_rate", None, value=None, backend=backend))
        else:
            ratio = float(res["gflop_per_s"].median() / other["gflop_per_s"].median())
            out.append(seed003.verdict(
                "resnet_higher_rate", bool(ratio > 1), value=ratio, backend=backend, limit=1.0,
                detail=f"median {res['gflop_per_s'].median():.1f} GFLOP/s for ResNets vs "
                       f"{other['gflop_per_s'].median():.1f} for {', '.join(other['backbone'])}"))
        known = g.dropna(subset=["nodes_per_gflop"])
        if len(known) < 2:
            out.append(seed003.verdict("nodes_per_flop_slow", None, value=None, backend=backend))
        else:
            rho = float(known["nodes_per_gflop"].corr(known["gflop_per_s"], method="spearman"))
            out.append(seed003.verdict(
                "nodes_per_flop_slow", bool(rho < 0), value=rho, backend=backend,
                detail="nodes per GFLOP -> GFLOP/s: " + ", ".join(
                    f"{r.backbone} {r.nodes_per_gflop:.0f} -> {r.gflop_per_s:.1f}" for r in known.itertuples())))
    return out


def _deep_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        one, deep = g.loc[g["layers"].idxmin()], g.loc[g["layers"].idxmax()]
        ratio = float(deep["latency_ns"] / one["latency_ns"])
        out.append(seed003.verdict(
            "fewer_bigger_layers", bool(ratio > DEPTH_PENALTY_MIN), value=ratio, backend=backend,
            limit=DEPTH_PENALTY_MIN,
            detail=f"{deep['case']}: {deep['latency_ms']:.3f} ms vs {one['case']}: {one['latency_ms']:.3f} ms "
                   f"at {deep['flops'] / one['flops']:.2f}x the FLOPs"))
    return out


def _block_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for backend, g in _by_backend(df).items():
        lat = g.set_index("block")["latency_ns"]
        if "mbconv" not in lat.index or len(lat) < 2:
            out.append(seed003.verdict("mbconv_slowest", None, value=None, backend=backend))
            continue
        ratio = float(lat["mbconv"] / lat.drop("mbconv").max())
        out.append(seed003.verdict(
            "mbconv_slowest", bool(lat.idxmax() == "mbconv"), value=ratio, backend=backend, limit=1.0,
            threshold="MBConv has the highest latency (value: MBConv / the slowest other block)",
            detail=", ".join(f"{b} {v / 1e6:.3f} ms" for b, v in lat.items())))
    return out


def _stacking_verdicts(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    if df is None or df.empty:
        return out
    cost = startup_cost(df)
    for backend, g in cost.groupby("backend", sort=False):
        ratio = float(g["share_ratio"].min())
        out.append(seed003.verdict(
            "fixed_startup_cost", bool(ratio > STARTUP_SHARE_RATIO_MIN), value=ratio, backend=str(backend),
            limit=STARTUP_SHARE_RATIO_MIN,
            threshold=f"(first prefix / full) latency share over FLOPs share > {STARTUP_SHARE_RATIO_MIN:g} "
                      "for every backbone (value: the smallest)",
            detail="; ".join(f"{r.backbone}: first piece {r.first_latency_share:.1%} of the latency for "
                             f"{r.first_flops_share:.1%} of the FLOPs, fitted fixed cost {r.intercept_ns / 1e6:.3f} ms"
                             for r in g.itertuples())))
    for backend, g in df.groupby("backend", sort=False):
        plain = g[~g["with_head"]].set_index(["backbone", "n"])["latency_ns"]
        head = g[g["with_head"]].set_index(["backbone", "n"])["latency_ns"]
        common = head.index.intersection(plain.index)
        if not len(common):
            out.append(seed003.verdict("fc_head_lowers_latency", None, value=None, backend=str(backend)))
            continue
        faster = float((head[common] < plain[common]).mean())
        diff_ms = float((head[common] - plain[common]).median() / 1e6)
        out.append(seed003.verdict(
            "fc_head_lowers_latency", bool(faster > 0.5), value=faster, backend=str(backend), limit=0.5,
            threshold="share of prefixes faster with a pooled FC head > 0.5",
            detail=f"{faster:.0%} of {len(common)} prefixes faster with the head; median change {diff_ms:+.3f} ms"))
    return out


def backbone_verdicts(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The seed's backbone rules decided from this machine's tables.

    Args:
        results: ``"backbones"`` (:func:`backbone_table`), ``"deep_vs_wide"`` (:func:`deep_vs_wide`),
            ``"blocks"`` (:func:`block_table`), ``"stacking"`` (:func:`stacking_study`, several
            backbones concatenated); missing ones give no verdict.

    Returns:
        One row per (rule, backend), as :func:`lab.bench.seed003.verdict` builds them, with
        ``noise`` and ``close_call`` from :func:`lab.bench.seed003.with_noise`.
    """
    rows = (_backbone_verdicts(results.get("backbones")) + _deep_verdicts(results.get("deep_vs_wide"))
            + _block_verdicts(results.get("blocks")) + _stacking_verdicts(results.get("stacking")))
    return seed003.with_noise(pd.DataFrame(rows, columns=list(seed003.VERDICT_COLUMNS)), results)
