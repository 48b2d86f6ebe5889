"""Seed 004's quantize/dequantize study: int8 variants with float or uint8 input and float or integer output.

An int8 model that takes float32 input starts with a ``QuantizeLinear`` (float -> 8-bit) and one
that returns float32 ends with a ``DequantizeLinear``; on an NPU both run on the host CPU (seed
004: 60.6 ms for YOLOX-L's float input, 0.28 ms with uint8 input). ONNX Runtime runs them on the
CPU too, as nodes of the graph, so their cost is in its own profile. This module:

* quantizes a float ONNX model with ONNX Runtime's tools (``quantize_static``, QDQ format, MinMax
  calibration on real samples, uint8 activations with per-channel int8 weights: the "U8S8"
  layout ONNX Runtime's x86 kernels run fastest) into four variants (:func:`quantize_variants`):
  float or uint8 input x float or uint8 (integer) output;
* makes the uint8-input variant real by **folding the preprocessing into the quantization**: a
  loader's pixels ``u`` become ``x = (u - mean) / std`` (:class:`InputFold`); quantizing ``x``
  with scale ``1/std`` and zero point ``mean`` gives back ``u`` exactly, so the first
  ``QuantizeLinear`` is removed and the graph takes the image's own integers (what the seed's
  ``ModelEditor.convert_input_type(..., UINT8)`` does). The integer-output variant drops the
  last ``DequantizeLinear`` (``convert_output_type``); its scale and zero point are kept in the
  file's metadata;
* profiles every variant with ONNX Runtime's profiler (:func:`profile_onnx`, parsed with
  :meth:`lab.trace.Trace.from_chrome`) for the time of the input Quantize and output Dequantize
  nodes, times it end to end on the host clock with every variant interleaved
  (:func:`measure_interleaved`, so a busy machine slows them alike), and measures the accuracy
  and the top-1 agreement of every variant: variants can disagree, as the seed warns
  (:func:`quantization_study`);
* sets the same variants on the simulated NPU (simulator), whose int8-only presets charge
  host quantize/dequantize for float I/O (:func:`simulated_variants`), and times ONNX Runtime's
  Quantize/Dequantize kernels at the seed's tensor size (:func:`host_conversion_cost`).

onnx, onnxruntime and scikit-learn are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.clock import Clock, host_clock
from lab.errors import ConfigError, InputError, ModelLoadError, RuntimeUnavailable
from lab.timing import Measurement, probe_clock
from lab.trace import Span, Trace

__all__ = [
    "DIGITS_FOLD",
    "EFFICIENTNET_FOLD",
    "FLOAT32",
    "INPUT_QUANTIZE_NODE",
    "INT8_FLOAT_IO",
    "INT8_INT_OUT",
    "INT8_UINT8_IN",
    "INT8_UINT8_IO",
    "LAYOUT_OPS",
    "OUTPUT_DEQUANTIZE_NODE",
    "RECIPE_VERSION",
    "SEED_QUANTIZE_MS",
    "SEED_YOLOX_SHAPE",
    "VARIANTS",
    "InputFold",
    "OrtProfile",
    "QuantStudy",
    "QuantVariant",
    "cache_dir_for",
    "digits_calibration_set",
    "eval_photos",
    "host_conversion_cost",
    "measure_interleaved",
    "ort_memory",
    "parse_ort_profile",
    "photo_crops",
    "predict_top1",
    "profile_onnx",
    "quantization_study",
    "quantize_variants",
    "simulated_variants",
    "variant_summary",
]

#: Bump when the quantization recipe or the graph edits change: older cached variants are then ignored.
RECIPE_VERSION = 3

#: The variants :func:`quantize_variants` returns, in this order.
FLOAT32 = "float32"
INT8_FLOAT_IO = "int8 / float in / float out"
INT8_UINT8_IN = "int8 / uint8 in / float out"
INT8_INT_OUT = "int8 / float in / uint8 out"
INT8_UINT8_IO = "int8 / uint8 in / uint8 out"
VARIANTS: tuple[str, ...] = (FLOAT32, INT8_FLOAT_IO, INT8_UINT8_IN, INT8_INT_OUT, INT8_UINT8_IO)

#: Names given to the boundary nodes, so the profile tells them from Quantize/Dequantize nodes inside the graph.
INPUT_QUANTIZE_NODE = "lab_input_quantize"
OUTPUT_DEQUANTIZE_NODE = "lab_output_dequantize"

#: Ops that only change a tensor's layout: the CPU runtime's own "lower/unlower" (seed 004).
LAYOUT_OPS = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})

#: YOLOX-L's input as the seed's preset assumes it (1x3x640x640 float32: 4,915,200 bytes).
SEED_YOLOX_SHAPE: tuple[int, ...] = (1, 3, 640, 640)
#: The seed's measured host Quantize times for YOLOX-L (float32 input, uint8 input), ms.
SEED_QUANTIZE_MS = {"float32": 60.639, "uint8": 0.277}

_PROFILE_SUFFIX = "_kernel_time"


# --------------------------------------------------------------------------- the input fold


@dataclass(frozen=True)
class InputFold:
    """Preprocessing ``x = (u - mean) / std`` of uint8 pixels ``u``, folded into the input quantization.

    ONNX's ``QuantizeLinear`` computes ``q = saturate(round(x / scale) + zero_point)``. With
    ``scale = 1/std`` and ``zero_point = mean`` that is ``round(u - mean) + mean = u``: the
    loader's integers *are* the quantized input, so the model can take them as they are. The
    digits model divides pixels 0..16 by 16 (mean 0, std 16); EfficientNet-Lite0 computes
    ``(u - 127) / 128`` (mean 127, std 128). :meth:`is_exact` checks the identity for every
    value 0..255 in float32.

    Attributes:
        mean: the integer subtracted from the pixels (the zero point), 0..255.
        std: the divisor (the scale is its inverse), > 0.
    """

    mean: int
    std: float

    def __post_init__(self) -> None:
        if isinstance(self.mean, bool) or not isinstance(self.mean, (int, np.integer)) or not 0 <= self.mean <= 255:
            raise ConfigError(f"InputFold.mean: expected an integer 0..255 (a uint8 zero point), got {self.mean!r}")
        if isinstance(self.std, bool) or not isinstance(self.std, (int, float)) or not (
                math.isfinite(self.std) and self.std > 0):
            raise ConfigError(f"InputFold.std: expected a finite number > 0, got {self.std!r}")

    @property
    def scale(self) -> np.float32:
        """The input's quantization scale, ``1 / std`` in float32."""
        return np.float32(1.0 / self.std)

    def to_float(self, raw: np.ndarray) -> np.ndarray:
        """The float32 model input for uint8 ``raw`` pixels (any layout): ``(raw - mean) / std``.

        Raises:
            InputError: ``raw`` is not a uint8 array.
        """
        arr = np.asarray(raw)
        if arr.dtype != np.uint8:
            raise InputError(f"InputFold.to_float: expected uint8 pixels, got dtype {arr.dtype}")
        out = arr.astype(np.float32)
        if self.mean:
            out -= np.float32(self.mean)
        out /= np.float32(self.std)
        return out

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX ``QuantizeLinear`` of float ``x`` with this fold's scale and zero point (numpy reference).

        Round half to even, as the ONNX specification says, then saturate to 0..255.
        """
        q = np.rint(np.asarray(x, dtype=np.float32) / self.scale) + self.mean
        return np.clip(q, 0, 255).astype(np.uint8)

    def is_exact(self) -> bool:
        """True when quantizing ``to_float(u)`` gives back ``u`` for every uint8 value ``u``."""
        u = np.arange(256, dtype=np.uint8)
        return bool(np.array_equal(self.quantize(self.to_float(u)), u))


#: The digits workload's preprocessing: pixels 0..16 divided by 16.
DIGITS_FOLD = InputFold(0, 16.0)
#: EfficientNet-Lite0's preprocessing: ``(u - 127) / 128`` (lab.zoo.pretrained INPUT_MEAN / INPUT_STD).
EFFICIENTNET_FOLD = InputFold(127, 128.0)


# --------------------------------------------------------------------------- data


def digits_calibration_set() -> np.ndarray:
    """Calibration images for the digits model: scikit-learn's digits *not* in the shipped test split.

    ``data/digits_test.npz`` holds each test image's index in ``sklearn.datasets.load_digits()``;
    every other image (the training images, 1,347) is used, so calibration never sees a test image.

    Returns:
        uint8 ``(n, 1, 8, 8)`` raw pixels 0..16 in the model's layout.

    Raises:
        ModelLoadError: scikit-learn is missing or the test split cannot be read.
    """
    from lab.zoo.digits import DATA_DIR, TEST_FILE

    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ModelLoadError("digits calibration set: scikit-learn is not installed (the lab's `data` extra)") from exc
    try:
        with np.load(DATA_DIR / TEST_FILE, allow_pickle=False) as npz:
            test_indices = np.asarray(npz["indices"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"digits calibration set: cannot read {DATA_DIR / TEST_FILE}: {exc}") from exc
    images = load_digits().images
    keep = np.ones(len(images), dtype=bool)
    keep[test_indices] = False
    return np.ascontiguousarray(images[keep].astype(np.uint8).reshape(-1, 1, 8, 8))


def photo_crops(images: np.ndarray, count: int, *, seed: int, size: int = 224,
                min_fraction: float = 0.4) -> np.ndarray:
    """Random square crops of real photos, resized to ``size`` and rounded to uint8 (a loader's output).

    Each crop's side is a uniform fraction in ``[min_fraction, 1]`` of the photo's shorter side,
    at a uniform position; photos are used in turn. The resize is
    :func:`lab.zoo.pretrained.resize_bicubic` (PIL's bicubic).

    Args:
        images: uint8 ``(n, H, W, 3)`` photos.
        count: crops to make.
        seed: seeds the crop positions and sizes.

    Returns:
        uint8 ``(count, size, size, 3)`` (NHWC, as an image loader returns).

    Raises:
        ConfigError: bad count, size or fraction.
        InputError: ``images`` is not uint8 ``(n, H, W, 3)``.
    """
    from lab.zoo.pretrained import resize_bicubic

    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"photo_crops: expected count >= 0, got {count!r}")
    if not 0 < min_fraction <= 1:
        raise ConfigError(f"photo_crops: expected 0 < min_fraction <= 1, got {min_fraction!r}")
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"photo_crops: expected uint8 photos shaped (n, H, W, 3), got {arr.dtype} {arr.shape}")
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        photo = arr[i % len(arr)]
        h, w = photo.shape[:2]
        side = max(8, int(rng.uniform(min_fraction, 1.0) * min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out[i] = np.rint(resize_bicubic(photo[top:top + side, left:left + side], size, size))
    return out


def eval_photos(images: np.ndarray, size: int = 224) -> np.ndarray:
    """The photos as EfficientNet's evaluation sees them (TensorFlow's center crop, bicubic resize), as uint8.

    The same crop and resize as :func:`lab.zoo.pretrained.preprocess`, rounded to integers as an
    image loader would return them: uint8 ``(n, size, size, 3)``.
    """
    from lab.zoo.pretrained import center_crop_box, resize_bicubic

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"eval_photos: expected uint8 photos shaped (n, H, W, 3), got {arr.dtype} {arr.shape}")
    top, left, side = center_crop_box(arr.shape[1], arr.shape[2], size)
    return np.stack([np.rint(resize_bicubic(p[top:top + side, left:left + side], size, size)).astype(np.uint8)
                     for p in arr])


# --------------------------------------------------------------------------- ONNX helpers


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeUnavailable("the quantization study needs the `onnx` package (the lab's `onnx` extra)") from exc
    return onnx


def _import_ort() -> Any:
    from lab.runtimes.onnx import _import_ort as imp

    return imp()


def _session(model: str | os.PathLike[str] | bytes, *, threads: int | None = None,
             profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session (errors become :class:`~lab.errors.ModelLoadError`)."""
    from lab.runtimes.onnx import _LOAD_ERRORS, map_ort_exceptions

    ort = _import_ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    what = "an in-memory model" if isinstance(model, bytes) else repr(os.fspath(model))
    with map_ort_exceptions(_LOAD_ERRORS, f"cannot load {what} as an ONNX model", ModelLoadError):
        return ort.InferenceSession(model if isinstance(model, bytes) else os.fspath(model), sess_options=opts,
                                    providers=["CPUExecutionProvider"])


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir_for(kind: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder for generated models of ``kind``: ``cache_dir`` or ``<lab cache>/model_opt/<kind>``.

    The lab cache is ``$INFERENCE_LAB_CACHE`` (else ``~/.cache/inference-lab``), as for exports.
    """
    if cache_dir is not None:
        return Path(cache_dir)
    from lab.zoo.export import default_cache_dir

    return default_cache_dir().parent / "model_opt" / kind


def _save_atomic(model: Any, path: Path) -> None:
    onnx = _import_onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.onnx")
    try:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _graph_inputs(model: Any) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _initializer(model: Any, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise ModelLoadError(f"quantized model: expected an initializer named {name!r}, found none")


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_metadata(model: Any, values: Mapping[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def _name_boundary_nodes(model: Any) -> None:
    """Name the QuantizeLinear reading the graph input and the DequantizeLinear writing the graph output."""
    inputs, outputs = _graph_inputs(model), list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelLoadError(f"quantization study: expected a model with one input and one output, got "
                             f"{len(inputs)} inputs and {len(outputs)} outputs")
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == inputs[0].name]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == outputs[0].name]
    if len(q) != 1 or len(dq) != 1:
        raise ModelLoadError(
            f"quantized model: expected one QuantizeLinear on input {inputs[0].name!r} and one DequantizeLinear "
            f"on output {outputs[0].name!r}, found {len(q)} and {len(dq)}")
    q[0].name = INPUT_QUANTIZE_NODE
    dq[0].name = OUTPUT_DEQUANTIZE_NODE


def _drop_input_quantize(model: Any) -> tuple[float, int]:
    """Remove the input's QuantizeLinear: the graph input becomes its quantized (uint8) self.

    Returns:
        The removed node's ``(scale, zero_point)``.
    """
    onnx = _import_onnx()
    graph = model.graph
    node = next(n for n in graph.node if n.name == INPUT_QUANTIZE_NODE)
    inp = _graph_inputs(model)[0]
    scale = float(_initializer(model, node.input[1]))
    zp_arr = _initializer(model, node.input[2])
    if zp_arr.dtype != np.uint8:
        raise ModelLoadError(f"quantized model: expected a uint8 input zero point, got {zp_arr.dtype}")
    old = node.output[0]
    graph.node.remove(node)
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = inp.name
    inp.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    for vi in list(graph.value_info):
        if vi.name == old:
            graph.value_info.remove(vi)
    return scale, int(zp_arr)


def _drop_output_dequantize(model: Any) -> tuple[float, int]:
    """Remove the output's DequantizeLinear: the graph returns the quantized (uint8) tensor.

    Returns:
        The removed node's ``(scale, zero_point)`` (also written to the model's metadata).
    """
    onnx = _import_onnx()
    graph = model.graph
    node = next(n for n in graph.node if n.name == OUTPUT_DEQUANTIZE_NODE)
    out = graph.output[0]
    scale = float(_initializer(model, node.input[1]))
    zp_arr = _initializer(model, node.input[2])
    quantized = node.input[0]
    graph.node.remove(node)
    for n in graph.node:  # the tensor before the Dequantize takes the output's name
        for i, name in enumerate(n.output):
            if name == quantized:
                n.output[i] = out.name
        for i, name in enumerate(n.input):
            if name == quantized:
                n.input[i] = out.name
    out.type.tensor_type.elem_type = {np.dtype(np.uint8): onnx.TensorProto.UINT8,
                                      np.dtype(np.int8): onnx.TensorProto.INT8}[zp_arr.dtype]
    for vi in list(graph.value_info):
        if vi.name == quantized:
            graph.value_info.remove(vi)
    _set_metadata(model, {"lab.output_scale": repr(scale), "lab.output_zero_point": str(int(zp_arr)),
                          "lab.output_dtype": str(zp_arr.dtype)})
    return scale, int(zp_arr)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Drop the quantizer's advice to run its pre-processing (logged on the root logger at each call).

    The models here come from torch's exporter with constants folded and shapes known; the
    advice does not apply, and a notebook should not print it.
    """

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _reader(name: str, inputs: np.ndarray, batch: int) -> Any:
    """A ``CalibrationDataReader`` feeding ``inputs`` to input ``name`` in batches of ``batch``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= len(inputs):
                return None
            chunk = inputs[self._next:self._next + batch]
            self._next += batch
            return {name: chunk}

        def rewind(self) -> None:
            self._next = 0

    return _Reader()


def _quantize(src: Path, calibration: np.ndarray, dst: Path, *, fold: InputFold | None, per_channel: bool,
              batch: int, ranges: Path) -> None:
    """``quantize_static`` of ``src`` (QDQ, MinMax, uint8 activations, int8 weights) into ``dst``.

    With ``fold``, the input's scale and zero point are set to the fold's through the quantizer's
    ``TensorQuantOverrides``, so everything derived from them (the biases of the first layer,
    quantized with scale ``input_scale x weight_scale``) is consistent and ONNX Runtime still
    fuses the first layer into an integer kernel. The calibration's tensor ranges are written
    to (or, on the second call, read from) ``ranges``: one calibration pass serves both calls
    (where this ONNX Runtime's ``quantize_static`` has ``calibration_cache_path``; else each call
    calibrates, with the same result).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    onnx = _import_onnx()
    name = _graph_inputs(onnx.load(str(src)))[0].name
    extra: dict[str, Any] = {}
    if fold is not None:
        extra["TensorQuantOverrides"] = {name: [{"scale": np.array(fold.scale, dtype=np.float32),
                                                 "zero_point": np.array(fold.mean, dtype=np.uint8)}]}
    cache: dict[str, Any] = {}
    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:  # newer ONNX Runtime only
        cache["calibration_cache_path"] = str(ranges)
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        out = Path(tmp) / "quantized.onnx"
        quantize_static(str(src), str(out), _reader(name, calibration, batch), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra, **cache)
        model = onnx.load(str(out))
    _name_boundary_nodes(model)
    _set_metadata(model, {"lab.recipe": f"quantize_static QDQ MinMax, uint8 activations, int8 weights "
                                        f"{'per channel' if per_channel else 'per tensor'}, "
                                        f"{len(calibration)} calibration samples, recipe v{RECIPE_VERSION}"})
    _save_atomic(model, dst)


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class QuantVariant:
    """One model variant of the study.

    Attributes:
        name: one of :data:`VARIANTS`.
        path: its ONNX file.
        input_dtype: ``float32`` or ``uint8`` (the loader's integers, scale folded).
        output_dtype: ``float32`` or ``uint8`` (quantized logits).
        quantized: False for the float32 original.
        input_quant: ``(scale, zero_point)`` the model quantizes its input with (None: float model).
        output_quant: ``(scale, zero_point)`` of an integer output (None: float output).
        info: facts from the file's metadata (recipe, fold check).
    """

    name: str
    path: Path
    input_dtype: str
    output_dtype: str
    quantized: bool
    input_quant: tuple[float, int] | None = None
    output_quant: tuple[float, int] | None = None
    info: dict[str, str] = field(default_factory=dict)

    def prepare(self, raw: np.ndarray, fold: InputFold) -> np.ndarray:
        """The model input for uint8 ``raw`` pixels in the model's layout: as they are, or ``fold.to_float``."""
        if self.input_dtype == "uint8":
            arr = np.asarray(raw)
            if arr.dtype != np.uint8:
                raise InputError(f"{self.name}: expected uint8 pixels, got dtype {arr.dtype}")
            return arr
        return fold.to_float(raw)

    def dequantize(self, output: np.ndarray) -> np.ndarray:
        """An integer output as the float values it stands for (a float output unchanged)."""
        if self.output_quant is None:
            return np.asarray(output, dtype=np.float32)
        scale, zp = self.output_quant
        return (np.asarray(output, dtype=np.float32) - zp) * np.float32(scale)


def _variant_from_file(name: str, path: Path, quantized: bool) -> QuantVariant:
    onnx = _import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    types = {1: "float32", 2: "uint8", 3: "int8"}
    in_t = types.get(_graph_inputs(model)[0].type.tensor_type.elem_type, "other")
    out_t = types.get(model.graph.output[0].type.tensor_type.elem_type, "other")
    meta = _metadata(model)
    input_quant = None
    if quantized:
        q_scale = meta.get("lab.input_scale")
        q_zp = meta.get("lab.input_zero_point")
        if q_scale is not None and q_zp is not None:
            input_quant = (float(q_scale), int(q_zp))
    output_quant = None
    if "lab.output_scale" in meta:
        output_quant = (float(meta["lab.output_scale"]), int(meta["lab.output_zero_point"]))
    info = {k[4:]: v for k, v in meta.items() if k.startswith("lab.")}
    return QuantVariant(name, path, in_t, out_t, quantized, input_quant, output_quant, info)


def _record_input_quant(model: Any) -> None:
    node = next(n for n in model.graph.node if n.name == INPUT_QUANTIZE_NODE)
    _set_metadata(model, {"lab.input_scale": repr(float(_initializer(model, node.input[1]))),
                          "lab.input_zero_point": str(int(_initializer(model, node.input[2])))})


def quantize_variants(model_path: str | os.PathLike[str], calibration: np.ndarray, fold: InputFold, *,
                      cache_dir: str | os.PathLike[str] | None = None, per_channel: bool = True,
                      calibration_batch: int = 8, force: bool = False) -> dict[str, QuantVariant]:
    """The float model and its four int8 variants, made once and cached by content.

    Two ``quantize_static`` calls share one calibration of every activation's range on
    ``calibration``: the float-input variants keep the input's *calibrated* scale and zero point
    (what ``quantize_static`` does on its own), the uint8-input variants get them *folded* from
    ``fold`` (scale ``1/std``, zero point ``mean``) and lose their input ``QuantizeLinear``. Before
    saving, the uint8-input model's outputs are checked to be bit-identical to the folded
    float-input model's on calibration samples (``info["fold_check"]``). When the calibrated
    scale happens to equal the folded one (images that span 0..255 with ``(u - 127) / 128``),
    the float- and uint8-input variants compute the same thing.

    Args:
        model_path: a float32 ONNX model with one input (the fold's float input) and one output.
        calibration: uint8 raw samples in the model's layout (``fold.to_float`` makes the float input).
        fold: how the raw pixels become the model's float input.
        cache_dir: where the variants go; default :func:`cache_dir_for` ``("quantized")``.
        per_channel: per-channel int8 weights.
        calibration_batch: samples per calibration batch.
        force: quantize again even when cached.

    Returns:
        ``{name: QuantVariant}`` in :data:`VARIANTS` order (``float32`` is ``model_path`` itself).

    Raises:
        ConfigError: an empty calibration set or a fold that is not exact.
        ModelLoadError: the model cannot be read or quantized.
        RuntimeUnavailable: onnx or onnxruntime is missing.
    """
    onnx = _import_onnx()
    src = Path(model_path)
    if not src.is_file():
        raise ModelLoadError(f"quantize_variants: no ONNX file at {src}")
    cal = np.ascontiguousarray(calibration)
    if cal.dtype != np.uint8 or len(cal) == 0:
        raise ConfigError(f"quantize_variants: expected a non-empty uint8 calibration set, got {cal.dtype} {cal.shape}")
    if not fold.is_exact():
        raise ConfigError(f"quantize_variants: {fold} is not exact in float32: quantizing (u - mean) / std with "
                          "scale 1/std does not give every u back, so a uint8-input variant would change the input")
    ort = _import_ort()
    ident = "|".join([_sha256_file(src), hashlib.sha256(cal.tobytes() + str(cal.shape).encode()).hexdigest(),
                      f"mean={fold.mean}", f"std={fold.std!r}", f"per_channel={per_channel}",
                      f"batch={calibration_batch}", f"ort={ort.__version__}", f"recipe={RECIPE_VERSION}"])
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    folder = cache_dir_for("quantized", cache_dir)
    stem = f"{src.stem[:40]}-{key}"
    paths = {INT8_FLOAT_IO: folder / f"{stem}-f32in-f32out.onnx", INT8_UINT8_IN: folder / f"{stem}-u8in-f32out.onnx",
             INT8_INT_OUT: folder / f"{stem}-f32in-u8out.onnx", INT8_UINT8_IO: folder / f"{stem}-u8in-u8out.onnx"}
    if force or not all(p.is_file() for p in paths.values()):
        floats = fold.to_float(cal)
        with tempfile.TemporaryDirectory() as tmp:
            calibrated, folded = Path(tmp) / "calibrated.onnx", Path(tmp) / "folded.onnx"
            ranges = Path(tmp) / "ranges.json"
            _quantize(src, floats, calibrated, fold=None, per_channel=per_channel, batch=calibration_batch,
                      ranges=ranges)
            _quantize(src, floats, folded, fold=fold, per_channel=per_channel, batch=calibration_batch,
                      ranges=ranges)
            a, b = onnx.load(str(calibrated)), onnx.load(str(folded))
            _record_input_quant(a)
            _record_input_quant(b)
            check = floats[:64]
            b_float = _session(b.SerializeToString()).run(None, {_graph_inputs(b)[0].name: check})[0]
            variants = {INT8_FLOAT_IO: a}
            for name, base, drop_in, drop_out in ((INT8_UINT8_IN, b, True, False), (INT8_INT_OUT, a, False, True),
                                                  (INT8_UINT8_IO, b, True, True)):
                m = onnx.ModelProto()
                m.CopyFrom(base)
                if drop_in:
                    _drop_input_quantize(m)
                if drop_out:
                    _drop_output_dequantize(m)
                onnx.checker.check_model(m)
                if drop_in and not drop_out:
                    got = _session(m.SerializeToString()).run(None, {_graph_inputs(m)[0].name: cal[:64]})[0]
                    diff = float(np.max(np.abs(got - b_float)))
                    _set_metadata(m, {"lab.fold_check": f"max |uint8-input - folded float-input| = {diff:.3g} "
                                                        f"over {len(check)} calibration samples",
                                      "lab.fold_max_abs_diff": repr(diff)})
                variants[name] = m
            for name, m in variants.items():
                _save_atomic(m, paths[name])
    out = {FLOAT32: _variant_from_file(FLOAT32, src, quantized=False)}
    for name in VARIANTS[1:]:
        out[name] = _variant_from_file(name, paths[name], quantized=True)
    return out


# --------------------------------------------------------------------------- ONNX Runtime's profile


@dataclass
class OrtProfile:
    """ONNX Runtime's own profile of ``runs`` runs of one model (warm-up runs dropped).

    Attributes:
        model: the model file.
        runs: measured runs.
        run_us: median ``model_run`` time (ONNX Runtime's span around a whole run), microseconds.
        nodes: one row per graph node as ONNX Runtime ran it (after its graph optimizations):
            ``node``, ``op``, ``calls_per_run`` (mean), ``us_per_run`` (median over the measured runs:
            robust to the outliers of a busy machine).
        memory: ``peak_in_use_bytes`` and ``arena_held_bytes``: the largest values of ONNX Runtime's
            own allocator statistics in the profile (None when this ONNX Runtime does not record them).
        trace: the last measured run as a lab trace: lane ``host/run`` (the whole run) and
            ``host/ops`` (one span per node, named by op type).
    """

    model: str
    runs: int
    run_us: float
    nodes: pd.DataFrame
    memory: dict[str, int | None]
    trace: Trace

    def op_us(self, *ops: str) -> float:
        """Microseconds per run spent in nodes of the given op types."""
        return float(self.nodes.loc[self.nodes["op"].isin(ops), "us_per_run"].sum())

    def node_us(self, name: str) -> float:
        """Microseconds per run of the node called ``name`` (0.0 when the optimized graph has none)."""
        return float(self.nodes.loc[self.nodes["node"] == name, "us_per_run"].sum())

    def op_counts(self, *ops: str) -> dict[str, float]:
        """Calls per run of each of the given op types that ran (all op types when none are given)."""
        sel = self.nodes if not ops else self.nodes[self.nodes["op"].isin(ops)]
        return {str(k): float(v) for k, v in sel.groupby("op")["calls_per_run"].sum().items()}


def _int_attr(attrs: Mapping[str, Any] | None, key: str) -> int | None:
    if not attrs or key not in attrs:
        return None
    try:
        return int(attrs[key])
    except (TypeError, ValueError):
        return None


def ort_memory(trace: Trace) -> dict[str, int | None]:
    """ONNX Runtime's own allocator statistics in an imported profile: the largest values seen.

    Recent ONNX Runtime versions attach ``mem_in_use_peak`` (bytes allocated at the peak) and
    ``mem_arena_held`` (bytes its CPU arena holds) to every node span; ``tracemalloc`` cannot
    see this memory. Returns ``{"peak_in_use_bytes", "arena_held_bytes"}``, None where absent.
    """
    out: dict[str, int | None] = {"peak_in_use_bytes": None, "arena_held_bytes": None}
    for s in trace.spans:
        if not s.name.endswith(_PROFILE_SUFFIX):
            continue
        for key, attr in (("peak_in_use_bytes", "mem_in_use_peak"), ("arena_held_bytes", "mem_arena_held")):
            value = _int_attr(s.attrs, attr)
            current = out[key]
            if value is not None and (current is None or value > current):
                out[key] = value
    return out


def parse_ort_profile(trace: Trace, *, runs: int, model: str = "") -> OrtProfile:
    """Per-node time of the last ``runs`` runs in an imported ONNX Runtime profile.

    Args:
        trace: ``Trace.from_chrome(<onnxruntime profile JSON>)``: ``model_run`` spans on lane
            ``Session`` and ``*_kernel_time`` spans on lane ``Node`` with ``op_name`` attributes.
        runs: how many of the last runs to keep (earlier ones are warm-up).

    Raises:
        ConfigError: ``runs`` < 1 or the profile holds fewer runs.
    """
    all_runs = sorted((s for s in trace.spans if s.name == "model_run"), key=lambda s: s.start_ns)
    if runs < 1 or len(all_runs) < runs:
        raise ConfigError(f"parse_ort_profile: expected at least {max(runs, 1)} model_run spans in the profile, "
                          f"got {len(all_runs)}")
    kept = all_runs[-runs:]
    starts = np.array([s.start_ns for s in kept])
    ends = np.array([s.end_ns for s in kept])
    rows: list[tuple[str, str, int, int]] = []
    last_spans: list[Span] = []
    for s in trace.spans:
        if not s.name.endswith(_PROFILE_SUFFIX):
            continue
        k = int(np.searchsorted(starts, s.start_ns, side="right")) - 1
        if k < 0 or s.start_ns > ends[k]:
            continue  # a warm-up run or session initialisation
        node = s.name[:-len(_PROFILE_SUFFIX)]
        op = str((s.attrs or {}).get("op_name", node))
        rows.append((node, op, k, s.end_ns - s.start_ns))
        if k == runs - 1:
            last_spans.append(Span("host/ops", op, runs - 1, s.start_ns, s.end_ns, {"node": node}))
    frame = pd.DataFrame(rows, columns=["node", "op", "run", "ns"])
    if frame.empty:
        nodes = pd.DataFrame(columns=["node", "op", "calls_per_run", "us_per_run"])
    else:
        per_run = frame.groupby(["node", "op", "run"], sort=False)["ns"].agg(["size", "sum"])
        # a node that did not run in some run counts 0 there; the median resists a noisy machine's outliers
        sums = per_run["sum"].unstack("run", fill_value=0).reindex(columns=range(runs), fill_value=0)
        calls = per_run["size"].unstack("run", fill_value=0).reindex(columns=range(runs), fill_value=0)
        nodes = pd.DataFrame({"calls_per_run": calls.mean(axis=1), "us_per_run": sums.median(axis=1) / 1e3})
        nodes = nodes.reset_index().sort_values("us_per_run", ascending=False, ignore_index=True)
    last = kept[-1]
    spans = [Span("host/run", "model_run", runs - 1, last.start_ns, last.end_ns, None), *last_spans]
    run_trace = Trace(spans=spans, metadata={"device": "cpu (onnxruntime profiler)", "model": model,
                                             "source": "onnxruntime profiler, imported with Trace.from_chrome"},
                      origin_ns=last.start_ns)
    run_us = float(np.median(ends - starts)) / 1e3
    return OrtProfile(model=model, runs=runs, run_us=run_us, nodes=nodes, memory=ort_memory(trace), trace=run_trace)


def profile_onnx(model: str | os.PathLike[str], feed: Mapping[str, np.ndarray] | np.ndarray, *, runs: int = 20,
                 warmup: int = 3, threads: int | None = None) -> OrtProfile:
    """Run ``model`` ``warmup + runs`` times with ONNX Runtime's profiler on and parse its JSON.

    The profile is ONNX Runtime's own (``SessionOptions.enable_profiling``): one span per node
    per run, in whole microseconds, with the node's op type after graph optimization (fused
    ``QLinearConv``, inserted ``Transpose`` / ``ReorderOutput``). Profiling adds a little time
    per node; compare node times with each other, and time the model without the profiler.

    Args:
        model: an ONNX file.
        feed: the inputs (an array for a single-input model).
        runs: measured runs (after ``warmup``).
        threads: intra-op threads (None: ONNX Runtime's default).

    Raises:
        ConfigError: ``runs`` < 1 or ``warmup`` < 0.
        ModelLoadError: the model cannot be loaded.
        InputError: the feed does not fit the model.
    """
    from lab.runtimes.onnx import _RUN_ERRORS, map_ort_exceptions

    if runs < 1 or warmup < 0:
        raise ConfigError(f"profile_onnx: expected runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(model, threads=threads, profile_prefix=os.path.join(tmp, "ort"))
        if isinstance(feed, np.ndarray):
            feed = {sess.get_inputs()[0].name: feed}
        try:
            with map_ort_exceptions(_RUN_ERRORS, f"onnxruntime failed to run {os.fspath(model)!r}"):
                for _ in range(warmup + runs):
                    sess.run(None, dict(feed))
        finally:
            path = sess.end_profiling()
        trace = Trace.from_chrome(path)
    return parse_ort_profile(trace, runs=runs, model=os.fspath(model))


# --------------------------------------------------------------------------- interleaved timing


def measure_interleaved(fns: Mapping[str, Callable[[], Any]], *, max_run_time_s: float = 1.0, min_rounds: int = 5,
                        block_s: float = 0.005, warmup: int = 2, clock: Clock = host_clock) -> dict[str, Measurement]:
    """Time several callables *interleaved*, so a noisy machine slows all of them alike.

    Timing A for a second and then B for a second compares two different moments of a shared
    machine; here every round times one block of each callable in turn (the order rotates from
    round to round), and each callable's samples are its per-call block times. Blocks hold
    enough calls to last about ``block_s`` (at least one call), sized from the warm-up calls:
    a few milliseconds, so the OS's time slices on a busy machine average out within a block.

    Args:
        fns: name -> zero-argument callable.
        max_run_time_s: stop after the round that passes this much time (all callables together) ...
        min_rounds: ... but never before this many rounds.
        block_s: target duration of one block.
        warmup: untimed calls of each callable after its first (cold) call.
        clock: integer-ns clock.

    Returns:
        name -> :class:`~lab.timing.Measurement` (median, IQR and warnings as for :func:`lab.measure`;
        ``first_call_ns`` is each callable's cold first call).

    Raises:
        ConfigError: no callables, or an option out of range.
    """
    if not fns:
        raise ConfigError("measure_interleaved: expected at least one callable")
    if min_rounds < 1 or warmup < 0 or not max_run_time_s > 0 or not block_s > 0:
        raise ConfigError(f"measure_interleaved: expected min_rounds >= 1, warmup >= 0, max_run_time_s > 0 and "
                          f"block_s > 0, got {min_rounds}, {warmup}, {max_run_time_s}, {block_s}")
    names = list(fns)
    first: dict[str, int] = {}
    warm: dict[str, list[int]] = {n: [] for n in names}
    for n in names:
        t0 = clock()
        fns[n]()
        first[n] = clock() - t0
    for _ in range(warmup):
        for n in names:
            t0 = clock()
            fns[n]()
            warm[n].append(clock() - t0)
    calls = {}
    for n in names:
        est = float(np.median(warm[n])) if warm[n] else float(first[n])
        calls[n] = int(min(10_000, max(1, math.ceil(block_s * 1e9 / max(est, 1.0)))))
    overhead, resolution = probe_clock(clock)
    samples: dict[str, list[float]] = {n: [] for n in names}
    start = clock()
    rounds = 0
    while True:
        k = rounds % len(names)
        for n in names[k:] + names[:k]:
            fn, reps = fns[n], calls[n]
            t0 = clock()
            for _ in range(reps):
                fn()
            samples[n].append((clock() - t0) / reps)
        rounds += 1
        if rounds >= min_rounds and clock() - start >= max_run_time_s * 1e9:
            break
    name = str(getattr(clock, "__qualname__", None) or type(clock).__name__)
    return {n: Measurement(samples_ns=tuple(samples[n]), block_size=calls[n], first_call_ns=float(first[n]),
                           warmup_ns=tuple(float(w) for w in warm[n]), clock_overhead_ns=overhead,
                           clock_resolution_ns=resolution, label=f"{n} (interleaved with {len(names) - 1} others)",
                           clock_name=name)
            for n in names}


# --------------------------------------------------------------------------- the study


def predict_top1(output: np.ndarray) -> np.ndarray:
    """Top-1 class per sample: argmax of ``output`` flattened per sample (ties: the lowest index)."""
    arr = np.asarray(output)
    return np.argmax(arr.reshape(arr.shape[0], -1), axis=1).astype(np.int64)


@dataclass
class QuantStudy:
    """What :func:`quantization_study` measured.

    Attributes:
        table: one row per variant (see :func:`quantization_study`).
        ops: ONNX Runtime's per-op time per run of every variant (``variant``, ``op``, ``calls_per_run``,
            ``us_per_run``).
        pairwise: how many samples each pair of variants classifies differently.
        examples: the samples where some variant's top-1 differs from the reference's: label and
            each variant's prediction.
        predictions: variant -> top-1 per sample.
        profiles: variant -> :class:`OrtProfile`.
    """

    table: pd.DataFrame
    ops: pd.DataFrame
    pairwise: pd.DataFrame
    examples: pd.DataFrame
    predictions: dict[str, np.ndarray]
    profiles: dict[str, OrtProfile]


def quantization_study(variants: Mapping[str, QuantVariant], raw: np.ndarray, fold: InputFold, *,
                       labels: np.ndarray | None = None, reference: str = FLOAT32, batch: int = 1,
                       profile_runs: int = 30, max_run_time_s: float = 1.0,
                       threads: int | None = None) -> QuantStudy:
    """Accuracy, agreement, ONNX Runtime's Quantize/Dequantize time and end-to-end time of every variant.

    Per variant:

    * predictions on every sample of ``raw`` (batches of 64) -> ``accuracy`` on the labelled
      samples and ``agreement`` (same top-1) with ``reference``;
    * ONNX Runtime's profile of ``profile_runs`` runs on ``batch`` samples: ``input_quantize_us``
      and ``input_quantize_calls`` (the node that quantizes the graph input: its median time and
      calls per run), ``output_dequantize_us`` and ``output_dequantize_calls`` (the node that
      dequantizes the graph output), ``inner_qdq_us`` (Quantize/Dequantize nodes inside the
      graph), ``layout_us`` (Transpose / Reorder nodes ONNX Runtime runs to change layouts),
      ``profile_run_us`` (the whole run, profiled);
    * host clock, every variant's calls interleaved (:func:`measure_interleaved`, medians):
      ``host_convert_us`` (uint8 pixels to the model's input dtype on the host), ``model_us``
      (``session.run`` alone) and ``e2e_us`` (uint8 pixels -> input -> run -> top-1), with
      ``model_iqr_us`` and ``e2e_iqr_us``; ``e2e_speedup`` is the reference's ``e2e_us`` over each.

    Also per variant: ``agreement`` / ``disagreements`` with ``reference``, ``accuracy`` on the
    ``labelled`` samples, ``samples``.

    Args:
        variants: from :func:`quantize_variants`.
        raw: uint8 samples in the model's layout (what the loader gives).
        fold: how pixels become the float input.
        labels: int class per sample, -1 where unknown (None: no accuracy).
        reference: the variant agreement is measured against.
        batch: samples per profiled and timed request.
        profile_runs: profiled runs per variant.
        max_run_time_s: time budget of the interleaved timing (all variants together).
        threads: ONNX Runtime intra-op threads (None: its default).

    Raises:
        ConfigError: unknown reference, bad batch, or labels of the wrong length.
    """
    if reference not in variants:
        raise ConfigError(f"quantization_study: reference {reference!r} is not among the variants {list(variants)}")
    raw = np.ascontiguousarray(raw)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= len(raw):
        raise ConfigError(f"quantization_study: expected 1 <= batch <= {len(raw)} (the samples), got {batch!r}")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (len(raw),):
            raise ConfigError(f"quantization_study: expected {len(raw)} labels (-1: unknown), got shape {labels.shape}")
    predictions: dict[str, np.ndarray] = {}
    profiles: dict[str, OrtProfile] = {}
    rows: list[dict[str, Any]] = []
    op_rows: list[pd.DataFrame] = []
    fns: dict[str, Callable[[], Any]] = {}
    one = raw[:batch]
    for name, v in variants.items():
        sess = _session(v.path, threads=threads)
        in_name = sess.get_inputs()[0].name
        preds = []
        for i in range(0, len(raw), 64):
            preds.append(predict_top1(sess.run(None, {in_name: v.prepare(raw[i:i + 64], fold)})[0]))
        predictions[name] = np.concatenate(preds)
        x = v.prepare(one, fold)
        prof = profile_onnx(v.path, {in_name: x}, runs=profile_runs, threads=threads)
        profiles[name] = prof
        fns[f"{name}|convert"] = lambda v=v: v.prepare(one, fold)
        fns[f"{name}|model"] = lambda s=sess, x=x, n=in_name: s.run(None, {n: x})
        fns[f"{name}|e2e"] = lambda s=sess, v=v, n=in_name: predict_top1(s.run(None, {n: v.prepare(one, fold)})[0])
        q_in = prof.node_us(INPUT_QUANTIZE_NODE)
        dq_out = prof.node_us(OUTPUT_DEQUANTIZE_NODE)
        qdq_all = prof.op_us("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
        calls = prof.nodes.set_index("node")["calls_per_run"]
        rows.append({
            "variant": name, "input": v.input_dtype, "output": v.output_dtype,
            "input_bytes": int(x.nbytes),
            "input_quantize_calls": float(calls.get(INPUT_QUANTIZE_NODE, 0.0)),
            "output_dequantize_calls": float(calls.get(OUTPUT_DEQUANTIZE_NODE, 0.0)),
            "input_quantize_us": q_in, "output_dequantize_us": dq_out, "inner_qdq_us": qdq_all - q_in - dq_out,
            "layout_us": prof.op_us(*LAYOUT_OPS), "profile_run_us": prof.run_us,
        })
        ops = prof.nodes.groupby("op", as_index=False)[["calls_per_run", "us_per_run"]].sum()
        ops.insert(0, "variant", name)
        op_rows.append(ops)
    timed = measure_interleaved(fns, max_run_time_s=max_run_time_s)
    for row in rows:
        for what in ("convert", "model", "e2e"):
            m = timed[f"{row['variant']}|{what}"]
            col = "host_convert" if what == "convert" else what
            row[f"{col}_us"] = m.median_ns / 1e3
            if what != "convert":
                row[f"{col}_iqr_us"] = m.iqr_ns / 1e3
    ref = predictions[reference]
    labelled = labels >= 0 if labels is not None else None
    for row in rows:
        p = predictions[row["variant"]]
        row["agreement"] = float(np.mean(p == ref))
        row["disagreements"] = int(np.sum(p != ref))
        row["accuracy"] = float(np.mean(p[labelled] == labels[labelled])) if (
            labels is not None and labelled is not None and labelled.any()) else None
        row["labelled"] = int(labelled.sum()) if labelled is not None else 0
        row["samples"] = len(p)
    table = pd.DataFrame(rows)
    base = table.loc[table["variant"] == reference, "e2e_us"].iloc[0]
    table["e2e_speedup"] = base / table["e2e_us"]
    names = list(variants)
    pairwise = pd.DataFrame([[int(np.sum(predictions[a] != predictions[b])) for b in names] for a in names],
                            index=names, columns=names)
    differ = np.zeros(len(ref), dtype=bool)
    for p in predictions.values():
        differ |= p != ref
    idx = np.flatnonzero(differ)
    examples = pd.DataFrame({"sample": idx, **({"label": labels[idx]} if labels is not None else {}),
                             **{n: predictions[n][idx] for n in names}})
    return QuantStudy(table=table, ops=pd.concat(op_rows, ignore_index=True), pairwise=pairwise, examples=examples,
                      predictions=predictions, profiles=profiles)


def _worth(share: float) -> str:
    if share > 0.05:
        return "worth it"
    return "a small saving" if share > 0.01 else "negligible here"


def variant_summary(study: QuantStudy, model: str) -> list[str]:
    """One verdict sentence per effect, computed from a :class:`QuantStudy` (``model`` names the model).

    The savings are computed from the parts that were measured precisely (ONNX Runtime's node
    times and the host conversion's median), as a share of the float-input variant's end-to-end
    median; the end-to-end medians themselves (with their IQR) are quoted for context.
    """
    t = study.table.set_index("variant")
    f, u, o, io = (t.loc[n] for n in (INT8_FLOAT_IO, INT8_UINT8_IN, INT8_INT_OUT, INT8_UINT8_IO))
    out = []
    host_f = f.host_convert_us + f.input_quantize_us
    host_u = u.host_convert_us + u.input_quantize_us
    share = (host_f - host_u) / f.e2e_us
    out.append(
        f"{model}, uint8 input: the host converts pixels to float ({f.host_convert_us:.1f} us) and ONNX Runtime's "
        f"input Quantize node takes {f.input_quantize_us:.1f} us; with uint8 input the node is gone "
        f"({u.input_quantize_us:.1f} us) and the host hands the pixels over as they are ({u.host_convert_us:.1f} us): "
        f"{host_f - host_u:.1f} us saved, {share:.1%} of the float-input request "
        f"(end to end {f.e2e_us:.1f} +- {f.e2e_iqr_us:.1f} -> {u.e2e_us:.1f} +- {u.e2e_iqr_us:.1f} us median +- IQR) "
        f"-> {_worth(share)}.")
    share_o = (f.output_dequantize_us - o.output_dequantize_us) / f.e2e_us
    out.append(
        f"{model}, integer output: the output Dequantize node takes {f.output_dequantize_us:.1f} us, "
        f"{share_o:.1%} of the request (end to end {f.e2e_us:.1f} -> {o.e2e_us:.1f} us; uint8 in and out "
        f"{io.e2e_us:.1f} us, {io.e2e_speedup:.2f}x the float32 model) -> {_worth(share_o)}.")
    ref = t.index[0]
    dis = {n: int(r.disagreements) for n, r in t.iterrows() if n != ref}
    acc = "; ".join(f"{n}: {r.accuracy:.1%}" for n, r in t.iterrows()
                    if r.accuracy is not None and not pd.isna(r.accuracy))
    worst = max(dis, key=lambda n: dis[n])
    between = int(study.pairwise.drop(index=ref, columns=ref).to_numpy().max())
    out.append(
        f"{model}, agreement: {worst} gives a different top-1 than {ref} on {dis[worst]} of "
        f"{int(t.loc[worst, 'samples'])} samples; int8 variants differ among themselves on up to {between}"
        + (f"; accuracy {acc}" if acc else "") + ". "
        + ("Variants disagree: check accuracy before switching, as the seed warns."
           if any(dis.values()) or between else
           "No variant disagrees on these samples; the seed's warning still stands for other data."))
    return out


# --------------------------------------------------------------------------- the simulated NPU, side by side


def simulated_variants(variants: Mapping[str, QuantVariant], *, preset: str = "warboy",
                       pe_mode: str | None = None, batch: int = 1) -> pd.DataFrame:
    """The simulated NPU (simulator): modelled stages for each variant's file.

    An int8-only preset quantizes float inputs and dequantizes float outputs on the host at its
    ``host_quantize_bytes_per_s``; uint8 inputs and outputs cost the host nothing. The files are
    read for their I/O dtypes and FLOPs (``mode="timing"``: nothing is computed).

    Returns:
        One row per variant: ``quantize_us``, ``upload_us``, ``compute_us``, ``download_us``,
        ``dequantize_us``, ``total_us`` (one request alone), ``host_share`` (quantize + dequantize
        over the total), ``bound_rps`` (the pipeline's throughput bound: 1 / the slowest of host conversion
        on one host thread, DMA in, compute per PE engine, DMA out).
    """
    from lab.runtimes.simnpu import SimNpuRuntime

    rows = []
    for name, v in variants.items():
        with SimNpuRuntime(v.path, preset=preset, pe_mode=pe_mode, mode="timing") as rt:
            st = rt.stages(batch)
            device = rt.device
            engines = rt.preset.num_pes if rt.pe_mode == "single" else 1
        stages = st.as_dict()
        total = sum(stages.values())
        slowest = max(st.quantize_ns + st.dequantize_ns, st.upload_ns, st.compute_ns / engines, st.download_ns)
        rows.append({"variant": name, "device": device, "precision": st.precision,
                     **{f"{k}_us": ns / 1e3 for k, ns in stages.items()}, "total_us": total / 1e3,
                     "host_share": (st.quantize_ns + st.dequantize_ns) / total if total else 0.0,
                     "bound_rps": 1e9 / slowest * batch})
    return pd.DataFrame(rows)


def _one_node_model(op: str, shape: Sequence[int], scale: float, zero_point: int) -> bytes:
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    float_t, int_t = TensorProto.FLOAT, TensorProto.UINT8
    src_t, dst_t = (float_t, int_t) if op == "QuantizeLinear" else (int_t, float_t)
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "scale", "zero_point"], ["y"], name=op.lower())], op.lower(),
        [helper.make_tensor_value_info("x", src_t, list(shape))],
        [helper.make_tensor_value_info("y", dst_t, list(shape))],
        initializer=[numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
                     numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), "zero_point")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def host_conversion_cost(shapes: Mapping[str, Sequence[int]], *, preset: str = "warboy", runs: int = 20,
                         threads: int | None = None) -> pd.DataFrame:
    """ONNX Runtime's Quantize / Dequantize kernels on this CPU vs the simulated NPU's host charge.

    For each shape, a one-node ONNX model (``QuantizeLinear`` float32 -> uint8, and
    ``DequantizeLinear`` back) is profiled with :func:`profile_onnx`: the kernel's own time per
    run. The simulator's charge is the preset's host rate (``host_quantize_bytes_per_s``) on the
    float bytes (:func:`lab.sim.cost.quantize_ns`).

    Returns:
        One row per shape: ``float_bytes``, ``cpu_quantize_us``, ``cpu_dequantize_us``,
        ``cpu_quantize_gb_s``, ``sim_quantize_us``, ``sim_dequantize_us``, ``seed_quantize_us``
        (the seed's measurement where the shape is :data:`SEED_YOLOX_SHAPE`, else None).
    """
    from lab.sim.cost import dequantize_ns, quantize_ns
    from lab.sim.presets import get_preset

    p = get_preset(preset)
    rng = np.random.default_rng(0)
    rows = []
    for label, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        x = rng.random(shape, dtype=np.float32)
        q = profile_onnx(_one_node_model("QuantizeLinear", shape, 1 / 255, 0), x, runs=runs, threads=threads)
        u = rng.integers(0, 256, size=shape, dtype=np.uint8)
        dq = profile_onnx(_one_node_model("DequantizeLinear", shape, 1 / 255, 0), u, runs=runs, threads=threads)
        nbytes = int(x.nbytes)
        q_us = q.op_us("QuantizeLinear")
        rows.append({
            "tensor": label, "shape": "x".join(map(str, shape)), "float_bytes": nbytes,
            "cpu_quantize_us": q_us, "cpu_dequantize_us": dq.op_us("DequantizeLinear"),
            "cpu_quantize_gb_s": nbytes / q_us / 1e3 if q_us > 0 else None,
            "sim_quantize_us": quantize_ns(nbytes, p) / 1e3, "sim_dequantize_us": dequantize_ns(nbytes, p) / 1e3,
            "seed_quantize_us": SEED_QUANTIZE_MS["float32"] * 1e3 if shape == SEED_YOLOX_SHAPE else None,
        })
    return pd.DataFrame(rows)
