"""Seed 004's patching study: a fully-convolutional image-to-image model run whole vs in tiles with a halo.

Denoising and super-resolution models see only a neighbourhood of each output pixel (their
*receptive field*), so a large image can be cut into patches, each run on its own and the
results stitched (seed 004, "models with very large tensors"). To be exact, each patch is run
with a *halo*: the pixels around it, up to the receptive field's radius, clipped at the image
border (where the model's own zero padding then does what it does on the whole image); only
the patch's core is kept. With a halo at least the radius, tiled equals whole up to float
rounding; :func:`tiling_sweep` checks it for every patch size.

A patch size trades the halo's recomputed pixels (small patches) against the memory and cache
footprint of large activations (big patches). The sweep measures latency (interleaved, host
clock), peak memory from ONNX Runtime's own allocator statistics in its profile (``tracemalloc``
cannot see ONNX Runtime's allocations) and, optionally, the peak RSS of a fresh subprocess per
patch size during the inference (Linux ``/proc/self/status``, :func:`rss_peak`).

The model (:func:`build_denoiser`) is a residual stack of 3x3 convolutions built in torch with
seeded random weights: it is timed and compared with itself, not used to denoise anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lab.bench.quantization import (
    RECIPE_VERSION,
    _graph_inputs,
    _import_onnx,
    _save_atomic,
    _session,
    _set_metadata,
    cache_dir_for,
    measure_interleaved,
    ort_memory,
)
from lab.errors import ConfigError, InputError, ModelLoadError
from lab.trace import Trace

if TYPE_CHECKING:  # torch is imported lazily
    from torch import nn

__all__ = [
    "WHOLE",
    "DenoiserSpec",
    "Tile",
    "best_patch",
    "build_denoiser",
    "export_denoiser",
    "noisy_photo",
    "rss_peak",
    "run_tiled",
    "tile_plan",
    "tiling_summary",
    "tiling_sweep",
]

#: The ``patch`` label of the untiled run in :func:`tiling_sweep`'s table.
WHOLE = "whole"


@dataclass(frozen=True)
class DenoiserSpec:
    """A residual stack of ``layers`` same-padded ``kernel_size`` convolutions, RGB in and out.

    Attributes:
        channels: width of the hidden layers.
        layers: convolutions (ReLU between them); the output is ``x + stack(x)``.
        kernel_size: odd kernel side.
        seed: seeds the weights.
    """

    channels: int = 16
    layers: int = 4
    kernel_size: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("channels", "layers", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DenoiserSpec.{name}: expected an integer >= 1, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"DenoiserSpec.kernel_size: expected an odd size (same padding), got {self.kernel_size}")

    @property
    def receptive_field(self) -> int:
        """Side of the input window one output pixel depends on: ``1 + layers * (kernel_size - 1)``."""
        return 1 + self.layers * (self.kernel_size - 1)

    @property
    def radius(self) -> int:
        """Pixels of context needed on each side: ``(receptive_field - 1) / 2``; the smallest exact halo."""
        return (self.receptive_field - 1) // 2

    def flops_per_pixel(self) -> int:
        """Multiply-adds x 2 per output pixel."""
        k2 = self.kernel_size ** 2
        chans = [3] + [self.channels] * (self.layers - 1) + [3]
        return 2 * k2 * sum(a * b for a, b in zip(chans[:-1], chans[1:], strict=True))


def build_denoiser(spec: DenoiserSpec | None = None) -> nn.Module:
    """The torch module of ``spec`` (default :class:`DenoiserSpec`) in eval mode: ``(n, 3, H, W)`` -> same shape."""
    from lab.zoo.blocks import require_torch

    spec = spec if spec is not None else DenoiserSpec()
    torch = require_torch()
    from torch import nn

    torch.manual_seed(spec.seed)
    chans = [3] + [spec.channels] * (spec.layers - 1) + [3]
    layers: list[nn.Module] = []
    for i in range(spec.layers):
        layers.append(nn.Conv2d(chans[i], chans[i + 1], spec.kernel_size, padding=spec.kernel_size // 2))
        if i < spec.layers - 1:
            layers.append(nn.ReLU())

    class Denoiser(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.body(x)

    return Denoiser().eval()


def export_denoiser(spec: DenoiserSpec | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
                    force: bool = False) -> Path:
    """``spec``'s model (default :class:`DenoiserSpec`) as ONNX with dynamic batch, height and width; cached.

    The cache key is ``spec`` and the torch version.

    Exported by :func:`lab.zoo.export.export_onnx` at 64x64, then the input's and output's height
    and width become symbolic (``height``, ``width``) and intermediate shape annotations are
    dropped: the graph (convolutions, ReLU, Add) has no shape-dependent constant.

    Raises:
        ModelLoadError: the export failed.
        RuntimeUnavailable: torch or onnx is missing.
    """
    from lab.zoo.blocks import require_torch

    spec = spec if spec is not None else DenoiserSpec()
    torch = require_torch()
    onnx = _import_onnx()
    from lab.zoo.export import export_onnx

    ident = f"{spec}|torch={torch.__version__}|v{RECIPE_VERSION}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    dst = cache_dir_for("tiling", cache_dir) / (f"denoiser-c{spec.channels}-l{spec.layers}-k{spec.kernel_size}-"
                                                f"s{spec.seed}-{key}.onnx")
    if dst.is_file() and not force:
        return dst
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(build_denoiser(spec), torch.zeros(1, 3, 64, 64), Path(tmp) / "denoiser.onnx",
                          input_names=["image"], output_names=["output"])
        model = onnx.load(str(raw))
    for vi in (*_graph_inputs(model), *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise ModelLoadError(f"export_denoiser: expected rank-4 input and output, got {vi.name} "
                                 f"of rank {len(dims)}")
        for d, param in zip(dims[2:], ("height", "width"), strict=True):
            d.Clear()
            d.dim_param = param
    del model.graph.value_info[:]
    _set_metadata(model, {"lab.receptive_field": str(spec.receptive_field), "lab.spec": repr(spec)})
    onnx.checker.check_model(model)
    _save_atomic(model, dst)
    return dst


def noisy_photo(size: int, *, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    """A real photo (scikit-learn's ``china.jpg``, center square, bicubic resize) in [0, 1] plus Gaussian noise.

    Returns:
        float32 ``(1, 3, size, size)``.

    Raises:
        ConfigError: ``size`` < 8 or a negative ``sigma``.
    """
    from lab.zoo.pretrained import load_sample_images, resize_bicubic

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"noisy_photo: expected size >= 8, got {size!r}")
    if not sigma >= 0:
        raise ConfigError(f"noisy_photo: expected sigma >= 0, got {sigma!r}")
    _, photos = load_sample_images()
    photo = photos[0]
    side = min(photo.shape[:2])
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    img = resize_bicubic(photo[top:top + side, left:left + side], size, size) / np.float32(255)
    img += np.random.default_rng(seed).normal(0.0, sigma, img.shape).astype(np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


@dataclass(frozen=True)
class Tile:
    """One patch: the ``core`` it writes and the ``source`` window it reads (core + halo, clipped).

    Boxes are ``(top, bottom, left, right)``, end-exclusive.
    """

    core: tuple[int, int, int, int]
    source: tuple[int, int, int, int]

    @property
    def source_pixels(self) -> int:
        """Pixels the model computes for this tile."""
        t, b, left, r = self.source
        return (b - t) * (r - left)


def tile_plan(height: int, width: int, patch: int, halo: int) -> list[Tile]:
    """Cover an image with ``patch`` x ``patch`` cores (smaller at the right and bottom edges) plus halos.

    Raises:
        ConfigError: a size < 1 or a negative halo.
    """
    for name, value, low in (("height", height, 1), ("width", width, 1), ("patch", patch, 1), ("halo", halo, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"tile_plan: expected {name} >= {low}, got {value!r}")
    tiles = []
    for top in range(0, height, patch):
        bottom = min(top + patch, height)
        for left in range(0, width, patch):
            right = min(left + patch, width)
            tiles.append(Tile((top, bottom, left, right),
                              (max(0, top - halo), min(height, bottom + halo), max(0, left - halo),
                               min(width, right + halo))))
    return tiles


def run_tiled(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, patch: int, halo: int) -> np.ndarray:
    """Run ``run`` on each tile of ``image`` (``(n, C, H, W)``) and stitch the cores.

    ``run`` maps ``(n, C, h, w)`` to an output of the same spatial size (channels may differ).

    Raises:
        InputError: ``image`` is not rank 4, or ``run`` changed a tile's spatial size.
        ConfigError: bad ``patch`` or ``halo``.
    """
    img = np.asarray(image)
    if img.ndim != 4:
        raise InputError(f"run_tiled: expected an image shaped (n, C, H, W), got shape {img.shape}")
    h, w = img.shape[2:]
    out: np.ndarray | None = None
    for tile in tile_plan(h, w, patch, halo):
        st, sb, sl, sr = tile.source
        y = run(np.ascontiguousarray(img[:, :, st:sb, sl:sr]))
        if y.shape[2:] != (sb - st, sr - sl):
            raise InputError(f"run_tiled: expected the model to keep a tile's size {(sb - st, sr - sl)}, "
                             f"got {tuple(y.shape[2:])}")
        if out is None:
            out = np.empty((img.shape[0], y.shape[1], h, w), dtype=y.dtype)
        t, b, left, r = tile.core
        out[:, :, t:b, left:r] = y[:, :, t - st:b - st, left - sl:r - sl]
    assert out is not None
    return out


def _runner(sess: Any) -> Callable[[np.ndarray], np.ndarray]:
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _ort_peak(model_path: Path, image: np.ndarray, patch: int, halo: int, threads: int | None) -> dict[str, int | None]:
    """ONNX Runtime's allocator statistics over one tiled inference in a fresh profiled session."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(model_path, threads=threads, profile_prefix=os.path.join(tmp, "ort"))
        try:
            run_tiled(_runner(sess), image, patch, halo)
        finally:
            path = sess.end_profiling()
        return ort_memory(Trace.from_chrome(path))


def _proc_status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        return None
    return None


def _rss_child() -> None:  # pragma: no cover - runs in a subprocess
    args = json.loads(sys.argv[1])
    image = np.load(args["image"])
    sess = _session(args["model"], threads=args["threads"])
    run = _runner(sess)
    before = _proc_status_bytes("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current RSS: the peak then belongs to the inference
        reset = True
    except OSError:
        reset = False
    run_tiled(run, image, args["patch"], args["halo"])
    peak = _proc_status_bytes("VmHWM") if reset else None
    print(json.dumps({"before": before, "peak": peak}))


def rss_peak(model_path: str | os.PathLike[str], image: np.ndarray, patch: int, halo: int, *,
             threads: int | None = None, timeout_s: float = 300.0) -> dict[str, int | None]:
    """The peak RSS of a fresh process during one tiled inference (Linux; None values elsewhere).

    The subprocess loads the model and the image, reads its RSS (``before``), resets the kernel's
    peak-RSS mark (``/proc/self/clear_refs``), runs the tiled inference and reads the peak
    (``VmHWM``). ``getrusage``'s ``ru_maxrss`` is not used: a child inherits its parent's peak
    across ``fork`` and ``exec``, so it would report the notebook's memory.

    Returns:
        ``{"before": bytes, "peak": bytes}``.

    Raises:
        ModelLoadError: the subprocess failed (its stderr is in the message).
    """
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "image.npy")
        np.save(npy, np.asarray(image))
        arg = json.dumps({"model": os.fspath(model_path), "image": npy, "patch": int(patch), "halo": int(halo),
                          "threads": threads})
        proc = subprocess.run([sys.executable, "-c", "from lab.bench.tiling import _rss_child; _rss_child()", arg],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise ModelLoadError(f"rss_peak: the measuring subprocess failed ({proc.returncode}): "
                             f"{proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tiling_sweep(model_path: str | os.PathLike[str], image: np.ndarray, patch_sizes: Sequence[int], *, halo: int,
                 tolerance: float = 1e-4, max_run_time_s: float = 2.0, threads: int | None = None,
                 rss: bool = False) -> pd.DataFrame:
    """The whole image and each patch size: latency, peak memory, and whether tiled equals whole.

    Latency is the host clock around the whole tiled inference, every patch size (and the whole
    image) interleaved (:func:`~lab.bench.quantization.measure_interleaved`). Memory is ONNX
    Runtime's own (``peak_in_use_mib``: its allocator's peak during one inference in a fresh
    session; ``arena_mib``: what its CPU arena held), and with ``rss`` a fresh subprocess's peak
    RSS during the inference (:func:`rss_peak`; ``rss_delta_mib``: above the RSS after loading;
    ``rss_peak_mib``: the whole process).

    Args:
        model_path: a fully-convolutional ONNX model with dynamic height and width.
        image: float32 ``(1, C, H, W)``.
        patch_sizes: core sides to try (sizes >= the image's are skipped: that is the whole run).
        halo: context pixels around each core.
        tolerance: largest ``|tiled - whole|`` that counts as equal.
        max_run_time_s: time budget of the interleaved latency measurement.
        threads: ONNX Runtime intra-op threads.
        rss: also measure the RSS high-water mark in a subprocess per row.

    Returns:
        One row per run: ``patch`` (:data:`WHOLE` or the side), ``tiles``, ``computed_ratio``
        (pixels computed / pixels output: the halo's overhead), ``latency_ms``, ``latency_iqr_ms``,
        ``peak_in_use_mib``, ``arena_mib``, [``rss_peak_mib``, ``rss_delta_mib``], ``max_abs_diff``,
        ``equal``.

    Raises:
        InputError: ``image`` is not ``(1, C, H, W)``.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim != 4 or img.shape[0] != 1:
        raise InputError(f"tiling_sweep: expected one image shaped (1, C, H, W), got shape {img.shape}")
    h, w = img.shape[2:]
    model_path = Path(model_path)
    sizes = sorted({int(p) for p in patch_sizes if int(p) < max(h, w)})
    configs: list[tuple[str, int]] = [(WHOLE, max(h, w)), *[(str(p), p) for p in sizes]]
    sess = _session(model_path, threads=threads)
    run = _runner(sess)
    whole = run(img)
    rows, fns = [], {}
    for label, patch in configs:
        tiles = tile_plan(h, w, patch, halo if label != WHOLE else 0)
        out = run_tiled(run, img, patch, halo) if label != WHOLE else whole
        diff = float(np.max(np.abs(out - whole)))
        mem = _ort_peak(model_path, img, patch, halo, threads)
        row: dict[str, Any] = {
            "patch": label, "tiles": len(tiles),
            "computed_ratio": sum(t.source_pixels for t in tiles) / (h * w),
            "peak_in_use_mib": mem["peak_in_use_bytes"] / 2**20 if mem["peak_in_use_bytes"] is not None else None,
            "arena_mib": mem["arena_held_bytes"] / 2**20 if mem["arena_held_bytes"] is not None else None,
            "max_abs_diff": diff, "equal": diff <= tolerance,
        }
        if rss:
            r = rss_peak(model_path, img, patch, halo, threads=threads)
            ok = r["before"] is not None and r["peak"] is not None
            row["rss_peak_mib"] = r["peak"] / 2**20 if ok else None
            row["rss_delta_mib"] = (r["peak"] - r["before"]) / 2**20 if ok else None
        rows.append(row)
        fns[label] = (lambda p=patch: run(img)) if label == WHOLE else (lambda p=patch: run_tiled(run, img, p, halo))
    timed = measure_interleaved(fns, max_run_time_s=max_run_time_s, min_rounds=5, warmup=1)
    for row in rows:
        m = timed[row["patch"]]
        row["latency_ms"] = m.median_ns / 1e6
        row["latency_iqr_ms"] = m.iqr_ns / 1e6
    return pd.DataFrame(rows)


def best_patch(table: pd.DataFrame) -> pd.Series:
    """The fastest tiled run whose output equals the whole image's (ties: the least memory).

    Raises:
        ConfigError: no tiled row is equal to the whole run.
    """
    tiled = table[(table["patch"] != WHOLE) & table["equal"]]
    if tiled.empty:
        raise ConfigError("best_patch: no patch size gave the whole image's output within tolerance; "
                          "the halo is smaller than the receptive field's radius")
    return tiled.sort_values(["latency_ms", "peak_in_use_mib"]).iloc[0]


def tiling_summary(table: pd.DataFrame, *, halo: int, receptive_field: int) -> list[str]:
    """The sweep's verdict, computed from a :func:`tiling_sweep` table."""
    whole = table[table["patch"] == WHOLE].iloc[0]
    best = best_patch(table)
    unequal = table[(table["patch"] != WHOLE) & ~table["equal"]]
    mem = "peak_in_use_mib"
    lines = [
        f"Receptive field {receptive_field}x{receptive_field}, halo {halo}: "
        + (f"every patch size gives the whole image's output (max |diff| {table['max_abs_diff'].max():.2g})."
           if unequal.empty else f"{len(unequal)} patch size(s) differ from the whole image."),
        f"Whole image: {whole.latency_ms:.1f} ms, ONNX Runtime peak {whole[mem]:.1f} MiB. Best patch {best.patch}: "
        f"{best.latency_ms:.1f} ms ({best.tiles} tiles, {best.computed_ratio:.2f}x the pixels computed), peak "
        f"{best[mem]:.1f} MiB ({whole[mem] / best[mem]:.1f}x less memory).",
    ]
    equal = table[(table["patch"] != WHOLE) & table["equal"]]
    leanest = equal.sort_values([mem, "latency_ms"]).iloc[0]
    if leanest.patch != best.patch:
        lines.append(f"Least memory: patch {leanest.patch}, {leanest[mem]:.1f} MiB ({whole[mem] / leanest[mem]:.0f}x "
                     f"less than whole) at {leanest.latency_ms:.1f} ms ({leanest.latency_ms / whole.latency_ms:.2f}x "
                     f"the whole image's time, {leanest.computed_ratio:.2f}x the pixels computed).")
    if best.latency_ms < whole.latency_ms * 0.95:
        lines.append(f"-> tiling at {best.patch} pays: {whole.latency_ms / best.latency_ms:.2f}x faster and "
                     "smaller activations.")
    elif best.latency_ms <= whole.latency_ms * 1.05:
        lines.append(f"-> tiling at {best.patch} costs no time here and saves memory: use it when memory is the limit.")
    else:
        lines.append(f"-> the whole image is fastest ({best.latency_ms / whole.latency_ms:.2f}x slower tiled); tile "
                     "only to fit a memory limit.")
    return lines
