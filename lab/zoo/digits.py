"""The shipped ``digits`` workload: a small CNN on scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lab.errors import InputError, ModelLoadError
from lab.zoo import Workload, register_workload

if TYPE_CHECKING:  # torch is imported lazily: ``import lab`` must never import it
    import torch

__all__ = [
    "DATA_DIR",
    "IMAGE_SHAPE",
    "MAX_PIXEL",
    "MODEL_FILE",
    "META_FILE",
    "NUM_CLASSES",
    "STATE_FILE",
    "TEST_FILE",
    "build_digits_cnn",
    "load_digits_workload",
    "postprocess",
    "preprocess",
]

#: The repository's ``data/`` folder, where ``python data/make_digits.py`` writes its files.
DATA_DIR: Path = Path(__file__).resolve().parents[2] / "data"

MODEL_FILE = "digits_cnn.onnx"
STATE_FILE = "digits_cnn.pt"
TEST_FILE = "digits_test.npz"
META_FILE = "digits_cnn.json"

#: One raw sample: 8x8 pixels, each an integer 0..16 (the UCI optical digits encoding).
IMAGE_SHAPE: tuple[int, int] = (8, 8)
MAX_PIXEL = 16
NUM_CLASSES = 10

_REGENERATE = "run `python data/make_digits.py` (or `make data`) to regenerate it"


def build_digits_cnn() -> torch.nn.Module:
    """The digits CNN, untrained: ``(n, 1, 8, 8)`` float32 in ``[0, 1]`` -> ``(n, 10)`` logits.

    conv 1->16 (3x3, pad 1), ReLU, conv 16->32 (3x3, pad 1), ReLU, max-pool 2,
    flatten, linear 512->64, ReLU, linear 64->10. 38,282 parameters.

    Returns:
        A freshly initialised ``torch.nn.Sequential`` (seed torch first for reproducible weights).
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )


def preprocess(samples: np.ndarray) -> np.ndarray:
    """Raw images to model input: ``(n, 8, 8)`` pixels 0..16 -> ``(n, 1, 8, 8)`` float32 in ``[0, 1]``.

    Args:
        samples: ``n`` raw images (uint8, or any real dtype holding the same 0..16 values).

    Returns:
        A new C-contiguous float32 array ``samples / 16`` with a channel axis.

    Raises:
        InputError: ``samples`` is not shaped ``(n, 8, 8)`` or is not numeric.
    """
    arr = np.asarray(samples)
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"digits preprocess: expected raw images shaped (n, 8, 8), received shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise InputError(f"digits preprocess: expected numeric pixels 0..16 (uint8), received dtype {arr.dtype}")
    out = arr.astype(np.float32).reshape(arr.shape[0], 1, *IMAGE_SHAPE)  # astype copies: safe to scale in place
    out /= np.float32(MAX_PIXEL)
    return out


def postprocess(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Model outputs to predicted classes: argmax over the logits of ``outputs[0]``.

    Args:
        outputs: the model's outputs for ``n`` samples; ``outputs[0]`` holds logits ``(n, 10)``.

    Returns:
        int64 ``(n,)``: the predicted digit per sample.

    Raises:
        InputError: there is no output, or ``outputs[0]`` is not shaped ``(n, 10)``.
    """
    if len(outputs) == 0:
        raise InputError("digits postprocess: expected the model's outputs (logits first), received none")
    logits = np.asarray(outputs[0])
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise InputError(f"digits postprocess: expected logits shaped (n, {NUM_CLASSES}), "
                         f"received shape {logits.shape}")
    return np.argmax(logits, axis=1).astype(np.int64, copy=False)


@lru_cache(maxsize=4)
def load_digits_workload(data_dir: Path | None = None) -> Workload:
    """The digits workload: the shipped ONNX model and its held-out test split (cached, read-only).

    Args:
        data_dir: where the files are; default :data:`DATA_DIR`.

    Returns:
        A :class:`~lab.zoo.Workload` whose samples are uint8 ``(N, 8, 8)`` images (0..16)
        and labels int64 ``(N,)``; ``info`` holds the generator's metadata (test accuracy,
        parameter count, versions, sha256 of the model).

    Raises:
        ModelLoadError: a file is missing or unreadable.
    """
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    model_path, test_path, meta_path = root / MODEL_FILE, root / TEST_FILE, root / META_FILE
    missing = [p.name for p in (model_path, test_path, meta_path) if not p.is_file()]
    if missing:
        raise ModelLoadError(f"digits workload: missing {', '.join(missing)} in {root}; {_REGENERATE}")
    try:
        with np.load(test_path, allow_pickle=False) as npz:
            images = np.ascontiguousarray(npz["images"], dtype=np.uint8)
            labels = np.ascontiguousarray(npz["labels"], dtype=np.int64)
            indices = np.asarray(npz["indices"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"digits workload: cannot read {test_path}: {exc}; {_REGENERATE}") from exc
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or labels.shape != (len(images),) \
            or indices.shape != labels.shape:
        raise ModelLoadError(f"digits workload: {test_path} holds images {images.shape}, labels {labels.shape}, "
                             f"indices {indices.shape}; expected (N, 8, 8), (N,), (N,); {_REGENERATE}")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"digits workload: cannot read {meta_path}: {exc}; {_REGENERATE}") from exc
    if not isinstance(meta, dict):
        raise ModelLoadError(f"digits workload: {meta_path} holds a {type(meta).__name__}, expected a JSON object; "
                             f"{_REGENERATE}")
    for arr in (images, labels):
        arr.setflags(write=False)  # shared by every caller of the cached loader
    info = {"source": "scikit-learn load_digits (UCI optical recognition of handwritten digits)", **meta}
    acc = meta.get("test_accuracy")
    acc_text = f", test accuracy {acc:.1%}" if isinstance(acc, (int, float)) else ""
    return Workload(
        name="digits",
        model_path=model_path,
        samples=images,
        labels=labels,
        preprocess=preprocess,
        postprocess=postprocess,
        description=f"8x8 handwritten digits (UCI via scikit-learn), small CNN; {len(images)} test images{acc_text}",
        info=info,
    )


register_workload("digits", load_digits_workload)
