"""Seed 004's layout study: NCHW vs NHWC input, the transpose it costs, and the runtime's own layout work.

An image loader gives ``H x W x C`` pixels (``cv2.imread``, PIL); most models take ``N x C x H x W``.
Someone has to transpose (seed 004, "input tensor axis order"):

* the host, before the model (``np.ascontiguousarray(x.transpose(0, 3, 1, 2))``), or
* the model, when its graph starts with the permute (:func:`nhwc_input_model`: the same model
  with a ``Transpose`` node in front, what ``x.permute(0, 3, 1, 2)`` at the top of ``forward``
  exports to; the seed's ``permute_input`` compiler option does the same on the NPU), or
* nobody, when the loader already gives the model's layout.

The CPU runtime has a "lower/unlower" of its own: ONNX Runtime converts float convolutions to a
blocked ``NCHWc`` layout (``ReorderInput`` / ``ReorderOutput`` nodes) and runs int8 convolutions in
NHWC (``Transpose`` nodes it inserts), and it cancels a model's leading NHWC->NCHW ``Transpose``
against its own NCHW->NHWC one. :func:`layout_study` measures all of it from ONNX Runtime's profile
and the host clock, with the outputs compared. :func:`pad_slice_cost` times the host-side ``Pad`` to
a width multiple of 32 and the ``Slice`` back that the seed's NPU compiler adds when the width is not
a multiple of 32; :func:`transpose_cost` times the host transpose alone by image size.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.bench.quantization import (
    LAYOUT_OPS,
    RECIPE_VERSION,
    _graph_inputs,
    _import_onnx,
    _save_atomic,
    _session,
    _set_metadata,
    _sha256_file,
    cache_dir_for,
    measure_interleaved,
    predict_top1,
    profile_onnx,
)
from lab.errors import ConfigError, InputError, ModelLoadError
from lab.timing import measure

__all__ = [
    "CASE_HOST_TRANSPOSE",
    "CASE_MATCHED",
    "CASE_NHWC_MODEL",
    "CASES",
    "layout_study",
    "layout_summary",
    "nhwc_input_model",
    "pad_slice_cost",
    "transpose_cost",
]

#: The loader already gives NCHW: no transpose anywhere (the baseline).
CASE_MATCHED = "loader NCHW -> NCHW model"
#: The loader gives NHWC and the host transposes for an NCHW model.
CASE_HOST_TRANSPOSE = "loader NHWC -> host transpose -> NCHW model"
#: The loader gives NHWC and the model takes it (the transpose is a node of the graph).
CASE_NHWC_MODEL = "loader NHWC -> NHWC model"
CASES: tuple[str, ...] = (CASE_MATCHED, CASE_HOST_TRANSPOSE, CASE_NHWC_MODEL)

_TRANSPOSE_NODE = "lab_input_nhwc_to_nchw"


def nhwc_input_model(model_path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                     force: bool = False) -> Path:
    """The same model taking NHWC input: a ``Transpose(perm=[0, 3, 1, 2])`` node in front of the graph.

    The new input keeps the name and dtype, with dimensions ``[N, H, W, C]``; everything after
    the ``Transpose`` is unchanged, so the outputs are the original model's on the transposed
    input. Cached by the source file's content.

    Raises:
        ModelLoadError: the file is missing or not an ONNX model.
        ConfigError: the model does not have exactly one rank-4 input.
    """
    onnx = _import_onnx()
    from onnx import helper

    src = Path(model_path)
    if not src.is_file():
        raise ModelLoadError(f"nhwc_input_model: no ONNX file at {src}")
    key = hashlib.sha256(f"{_sha256_file(src)}|nhwc|v{RECIPE_VERSION}".encode()).hexdigest()[:16]
    dst = cache_dir_for("layout", cache_dir) / f"{src.stem[:60]}-{key}-nhwc.onnx"
    if dst.is_file() and not force:
        return dst
    model = onnx.load(str(src))
    inputs = _graph_inputs(model)
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        dims = [len(i.type.tensor_type.shape.dim) for i in inputs]
        raise ConfigError(f"nhwc_input_model: expected one rank-4 NCHW input, got {len(inputs)} input(s) "
                          f"of rank {dims}")
    inp = inputs[0]
    inner = f"{inp.name}_nchw"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == inp.name:
                node.input[i] = inner
    model.graph.node.insert(0, helper.make_node("Transpose", [inp.name], [inner], perm=[0, 3, 1, 2],
                                                name=_TRANSPOSE_NODE))
    dims = inp.type.tensor_type.shape.dim
    old = [(d.dim_param, d.dim_value) for d in dims]
    for d, (param, value) in zip(dims, [old[0], old[2], old[3], old[1]], strict=True):
        d.Clear()
        if param:
            d.dim_param = param
        else:
            d.dim_value = value
    _set_metadata(model, {"lab.layout": "NHWC input: Transpose(perm=[0, 3, 1, 2]) in front of the NCHW graph"})
    onnx.checker.check_model(model)
    _save_atomic(model, dst)
    return dst


def _median_us(fn: Callable[[], Any], max_run_time_s: float, label: str) -> float:
    m = measure(fn, warmup=3, min_run_time_s=min(0.1, max_run_time_s), max_run_time_s=max_run_time_s, label=label)
    return m.median_ns / 1e3


def transpose_cost(sizes: Sequence[int], *, channels: int = 3, dtypes: Sequence[str] = ("uint8", "float32"),
                   max_run_time_s: float = 0.3) -> pd.DataFrame:
    """The host's HWC -> CHW transpose (a contiguous copy, as a model input needs) by image size and dtype.

    Returns:
        One row per (size, dtype): ``size``, ``dtype``, ``bytes``, ``transpose_us`` (median,
        :func:`lab.timing.measure`), ``gb_s`` (bytes moved per second).
    """
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"transpose_cost: expected image sizes >= 1, got {size!r}")
        for dtype in dtypes:
            img = rng.integers(0, 256, size=(size, size, channels)).astype(dtype)
            us = _median_us(lambda img=img: np.ascontiguousarray(img.transpose(2, 0, 1)), max_run_time_s,
                            f"transpose {size}x{size}x{channels} {dtype}")
            rows.append({"size": size, "dtype": dtype, "bytes": int(img.nbytes), "transpose_us": us,
                         "gb_s": img.nbytes / us / 1e3 if us > 0 else None})
    return pd.DataFrame(rows)


def _to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def layout_study(model_path: str | os.PathLike[str], images_nhwc: np.ndarray, *,
                 prepare: Callable[[np.ndarray], np.ndarray], labels: np.ndarray | None = None,
                 model_label: str = "", profile_runs: int = 20, max_run_time_s: float = 0.5,
                 threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The three layout cases (:data:`CASES`) for an NCHW model and NHWC loader images.

    ``prepare`` turns uint8 pixels into the model's input dtype elementwise (it must not care
    about the layout: e.g. ``InputFold.to_float``, or nothing for a uint8-input model); the
    host transposes the uint8 pixels, before ``prepare`` (the cheaper order: a quarter of the
    bytes of float32).

    Per case, one image per request:

    * host clock, all cases interleaved (:func:`~lab.bench.quantization.measure_interleaved`,
      medians): ``host_transpose_us`` (the host transpose alone; 0 where there is none),
      ``host_prepare_us``, ``model_us`` (``session.run``), ``e2e_us`` (loader pixels ->
      [transpose] -> prepare -> run -> top-1) and its ``e2e_iqr_us``;
    * ONNX Runtime's profile: ``graph_layout_us`` and ``graph_layout_ops`` (calls per run of
      ``Transpose`` / ``ReorderInput`` / ``ReorderOutput``: the layout work inside the runtime,
      the model's own ``Transpose`` included), ``profile_run_us``; ``layout_work_us`` = host
      transpose + graph layout ops;
    * outputs on every image: ``max_abs_diff`` and ``agreement`` (top-1) against
      :data:`CASE_MATCHED`, ``accuracy`` on labelled images (label -1: unknown).

    Raises:
        InputError: ``images_nhwc`` is not uint8 ``(n, H, W, C)``.
        ConfigError: labels of the wrong length.
    """
    imgs = np.ascontiguousarray(images_nhwc)
    if imgs.ndim != 4 or imgs.dtype != np.uint8 or len(imgs) == 0:
        raise InputError(f"layout_study: expected uint8 images shaped (n, H, W, C), got {imgs.dtype} {imgs.shape}")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (len(imgs),):
            raise ConfigError(f"layout_study: expected {len(imgs)} labels (-1: unknown), got shape {labels.shape}")
    nchw_path = Path(model_path)
    nhwc_path = nhwc_input_model(nchw_path, cache_dir=cache_dir)
    nchw_imgs = _to_nchw(imgs)
    one_nhwc, one_nchw = imgs[:1], nchw_imgs[:1]
    cases: list[tuple[str, Path, str, str, np.ndarray, bool]] = [
        (CASE_MATCHED, nchw_path, "NCHW", "NCHW", nchw_imgs, False),
        (CASE_HOST_TRANSPOSE, nchw_path, "NHWC", "NCHW", imgs, True),
        (CASE_NHWC_MODEL, nhwc_path, "NHWC", "NHWC", imgs, False),
    ]
    rows, outputs = [], {}
    fns: dict[str, Callable[[], Any]] = {}
    for case, path, loader, layout, data, host_transpose in cases:
        sess = _session(path, threads=threads)
        name = sess.get_inputs()[0].name

        def pipeline(x: np.ndarray, sess: Any = sess, name: str = name, host_transpose: bool = host_transpose
                     ) -> np.ndarray:
            return sess.run(None, {name: prepare(_to_nchw(x) if host_transpose else x)})[0]

        outputs[case] = np.concatenate([np.asarray(pipeline(data[i:i + 16]), dtype=np.float32)
                                        for i in range(0, len(data), 16)])
        one = one_nhwc if loader == "NHWC" else one_nchw
        src = _to_nchw(one) if host_transpose else one
        feed = prepare(src)
        prof = profile_onnx(path, {name: feed}, runs=profile_runs, threads=threads)
        if host_transpose:
            fns[f"{case}|transpose"] = lambda one=one: _to_nchw(one)
        fns[f"{case}|prepare"] = lambda src=src: prepare(src)
        fns[f"{case}|model"] = lambda s=sess, n=name, f=feed: s.run(None, {n: f})
        fns[f"{case}|e2e"] = lambda p=pipeline, one=one: predict_top1(p(one))
        rows.append({
            "model": model_label, "case": case, "loader": loader, "model_layout": layout,
            "graph_layout_us": prof.op_us(*LAYOUT_OPS),
            "graph_layout_ops": ", ".join(f"{op} x{n:g}" for op, n in sorted(prof.op_counts(*LAYOUT_OPS).items()))
            or "none",
            "profile_run_us": prof.run_us,
        })
    timed = measure_interleaved(fns, max_run_time_s=max_run_time_s)
    for row in rows:
        case = row["case"]
        tr = timed.get(f"{case}|transpose")
        row["host_transpose_us"] = tr.median_ns / 1e3 if tr is not None else 0.0
        row["host_prepare_us"] = timed[f"{case}|prepare"].median_ns / 1e3
        row["model_us"] = timed[f"{case}|model"].median_ns / 1e3
        row["e2e_us"] = timed[f"{case}|e2e"].median_ns / 1e3
        row["e2e_iqr_us"] = timed[f"{case}|e2e"].iqr_ns / 1e3
    ref = outputs[CASE_MATCHED]
    ref_top1 = predict_top1(ref)
    labelled = labels >= 0 if labels is not None else None
    for row in rows:
        out = outputs[row["case"]]
        top1 = predict_top1(out)
        row["max_abs_diff"] = float(np.max(np.abs(out - ref)))
        row["agreement"] = float(np.mean(top1 == ref_top1))
        row["accuracy"] = float(np.mean(top1[labelled] == labels[labelled])) if (
            labels is not None and labelled is not None and labelled.any()) else None
    table = pd.DataFrame(rows)
    table["layout_work_us"] = table["host_transpose_us"] + table["graph_layout_us"]
    base = table.loc[table["case"] == CASE_MATCHED, "e2e_us"].iloc[0]
    table["e2e_vs_matched"] = table["e2e_us"] / base
    return table


def layout_summary(table: pd.DataFrame) -> list[str]:
    """One verdict per model in a :func:`layout_study` table (several models may be concatenated).

    The verdict compares the layout work each case does (host transpose + layout nodes in ONNX
    Runtime's profile), measured precisely, as a share of the host-transpose case's end to end.
    """
    out = []
    for model, t in table.groupby("model", sort=False):
        t = t.set_index("case")
        work = t["host_transpose_us"] + t["graph_layout_us"]
        host, nhwc = t.loc[CASE_HOST_TRANSPOSE], t.loc[CASE_NHWC_MODEL]
        saved = work[CASE_HOST_TRANSPOSE] - work[CASE_NHWC_MODEL]
        share = saved / host.e2e_us
        if share > 0.01:
            verdict = "take the loader's layout in the model (or make the loader give the model's)."
        elif share < -0.01:
            verdict = "the host transpose is cheaper than the model's: keep transposing on the host."
        else:
            verdict = "the layout choice changes less than 1% of the request here."
        out.append(
            f"{model}: layout work per image: host transpose {host.host_transpose_us:.1f} us + "
            f"{host.graph_layout_us:.1f} us in ONNX Runtime ({host.graph_layout_ops}) = "
            f"{work[CASE_HOST_TRANSPOSE]:.1f} us; "
            f"NHWC model {nhwc.graph_layout_us:.1f} us ({nhwc.graph_layout_ops}); matched loader "
            f"{work[CASE_MATCHED]:.1f} us. Taking NHWC in the model saves {saved:.1f} us, {share:.1%} of the request "
            f"(end to end {host.e2e_us:.0f} +- {host.e2e_iqr_us:.0f} -> {nhwc.e2e_us:.0f} +- {nhwc.e2e_iqr_us:.0f} "
            "us). "
            f"Outputs: max |diff| {t['max_abs_diff'].max():.2g}, top-1 agreement {t['agreement'].min():.0%}. -> "
            + verdict)
    return out


def pad_slice_cost(shapes: Mapping[str, Sequence[int]], *, multiple: int = 32, dtype: str = "uint8",
                   max_run_time_s: float = 0.3) -> pd.DataFrame:
    """The host's ``Pad`` of the last axis (width) to a multiple of ``multiple`` and the ``Slice`` back.

    Seed 004: the NPU accelerates its lower/unlower only for a width that is a multiple of 32;
    otherwise the compiler adds a ``Pad`` before and a ``Slice`` after, both on the host CPU.
    This times both with numpy on this CPU (the slice as the contiguous copy a caller needs).
    Shapes already a multiple have nothing to pad: their times are 0.

    Returns:
        One row per shape: ``shape``, ``width``, ``padded_width``, ``extra_bytes_pct``,
        ``pad_us``, ``slice_us`` (medians, :func:`lab.timing.measure`).

    Raises:
        ConfigError: ``multiple`` < 1 or an empty shape.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"pad_slice_cost: expected multiple >= 1, got {multiple!r}")
    rng = np.random.default_rng(0)
    rows = []
    for label, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        if not shape:
            raise ConfigError(f"pad_slice_cost: expected a non-empty shape for {label!r}")
        width = shape[-1]
        padded = math.ceil(width / multiple) * multiple
        x = rng.integers(0, 256, size=shape).astype(dtype)
        pad_us = slice_us = 0.0
        if padded != width:
            widths = [(0, 0)] * (len(shape) - 1) + [(0, padded - width)]
            pad_us = _median_us(lambda x=x, widths=widths: np.pad(x, widths), max_run_time_s, f"pad {label}")
            y = np.pad(x, widths)
            slice_us = _median_us(lambda y=y, w=width: np.ascontiguousarray(y[..., :w]), max_run_time_s,
                                  f"slice {label}")
        rows.append({"tensor": label, "shape": "x".join(map(str, shape)), "width": width, "padded_width": padded,
                     "extra_bytes_pct": 100.0 * (padded - width) / width, "pad_us": pad_us, "slice_us": slice_us})
    return pd.DataFrame(rows)
