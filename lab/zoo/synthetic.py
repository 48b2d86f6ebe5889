"""Seed 002's two shapes of workload, with random weights (latency work needs no training).

* ``unet_depth``: a UNet-like depth-estimation network on ``1x512x512x3`` NHWC float32 images
  with a same-size output: large input *and* output tensors, so DMA is a big share of
  each request (the seed's Keras depth-estimation example at 512x512).
* ``small_detector``: a YOLO-like detector on ``1x3x640x640`` with a small output
  (``1x100x6``: 100 boxes of x, y, w, h, score, class): large input, tiny output.

Both are built with ``torch.nn`` and exported to ONNX on first use into a cache folder; on
the simulated NPU they run in timing-only mode (their FLOPs and bytes drive the model), so
no real inference of them is needed on a laptop.

Their samples are seeded random uint8 camera frames (480x640x3, the NYU Depth V2 / COCO
size class) and their preprocessing is real host work, as in the seed: resize to the model's
size, convert to float32 in [0, 1] (and to NCHW for the detector).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lab.zoo import Workload, register_workload

__all__ = ["CACHE_DIR", "FRAME_SHAPE", "build_small_detector", "build_unet_depth", "preprocess_detector",
           "preprocess_unet", "synthetic_workload"]

#: Where exported models are cached (override with ``INFERENCE_LAB_CACHE``).
CACHE_DIR = Path(os.environ.get("INFERENCE_LAB_CACHE", Path.home() / ".cache" / "inference-lab")) / "onnx"


def build_unet_depth(size: int = 512, base: int = 16) -> Any:
    """UNet-like encoder/decoder: NHWC ``(1, size, size, 3)`` -> NHWC ``(1, size, size, 3)``."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

    class UNetDepth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = [base, base * 2, base * 4, base * 8]
            self.enc = nn.ModuleList([block(3, c[0]), block(c[0], c[1]), block(c[1], c[2]), block(c[2], c[3])])
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in range(3)])
            self.dec = nn.ModuleList([block(c[i] * 2, c[i]) for i in range(3)])
            self.head = nn.Conv2d(c[0], 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2)  # the loader's NHWC to the convolutions' NCHW
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x)
                if i < 3:
                    skips.append(x)
                    x = self.pool(x)
            for i in reversed(range(3)):
                x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
            return torch.sigmoid(self.head(x)).permute(0, 2, 3, 1)

    return UNetDepth().eval()


def build_small_detector(size: int = 640, boxes: int = 100) -> Any:
    """YOLO-like backbone with a pooled head: ``(1, 3, size, size)`` -> ``(1, boxes, 6)``."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.SiLU())

    class SmallDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(conv(3, 16, 2), conv(16, 32, 2), conv(32, 32), conv(32, 64, 2), conv(64, 64),
                                          conv(64, 128, 2), conv(128, 128), conv(128, 256, 2))
            self.pool = nn.AdaptiveAvgPool2d((10, 10))
            self.head = nn.Conv2d(256, 6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.head(self.pool(self.backbone(x)))  # (1, 6, 10, 10)
            return y.flatten(2).transpose(1, 2)  # (1, 100, 6)

    return SmallDetector().eval()


_SPECS = {
    "unet_depth": (build_unet_depth, (1, 512, 512, 3), "UNet-like depth estimation, 1x512x512x3 NHWC in and out"),
    "small_detector": (build_small_detector, (1, 3, 640, 640), "YOLO-like detector, 1x3x640x640 in, 1x100x6 out"),
}


def _export(name: str) -> Path:
    """Export ``name`` to ONNX once (cached by name); later calls reuse the file."""
    import torch

    builder, shape, _ = _SPECS[name]
    path = CACHE_DIR / f"{name}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = builder()
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(shape),), str(tmp), input_names=["input"], output_names=["output"],
                          dynamo=False, opset_version=17)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


#: Camera frames the synthetic workloads start from (height, width, channels), uint8.
FRAME_SHAPE = (480, 640, 3)


def _resize_nearest(frames: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(n, h, w, c)`` frames to ``(n, size, size, c)``."""
    _, h, w, _ = frames.shape
    rows = (np.arange(size) * h // size).astype(np.intp)
    cols = (np.arange(size) * w // size).astype(np.intp)
    return frames[:, rows][:, :, cols]


def preprocess_unet(frames: np.ndarray) -> np.ndarray:
    """uint8 ``(n, 480, 640, 3)`` frames -> float32 NHWC ``(n, 512, 512, 3)`` in [0, 1] (resize, convert)."""
    out = _resize_nearest(np.asarray(frames), 512).astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def preprocess_detector(frames: np.ndarray) -> np.ndarray:
    """uint8 ``(n, 480, 640, 3)`` -> float32 NCHW ``(n, 3, 640, 640)``: letterbox (pad), transpose, scale."""
    frames = np.asarray(frames)
    n, h, w, c = frames.shape
    box = np.full((n, 640, 640, c), 114, dtype=np.uint8)  # YOLO's grey letterbox padding
    top = (640 - h) // 2
    box[:, top:top + h, :w] = frames[:, :, :640]
    out = np.ascontiguousarray(box.transpose(0, 3, 1, 2), dtype=np.float32)
    out *= np.float32(1 / 255)
    return out


_PREPROCESS = {"unet_depth": preprocess_unet, "small_detector": preprocess_detector}


def synthetic_workload(name: str, *, num_samples: int = 4, seed: int = 0) -> Workload:
    """A seed-002 workload: seeded random uint8 frames, real preprocessing, no labels (latency only)."""
    _, shape, description = _SPECS[name]
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, 256, size=(num_samples, *FRAME_SHAPE), dtype=np.uint8)
    return Workload(name=name, model_path=_export(name), samples=samples, labels=None, preprocess=_PREPROCESS[name],
                    postprocess=_no_prediction, description=description + " (random weights)",
                    info={"random_weights": True, "input_shape": shape, "frame_shape": FRAME_SHAPE})


def _no_prediction(outputs: Any) -> None:
    """Latency-only workloads predict nothing (their weights are random)."""
    return None


for _name in _SPECS:
    register_workload(_name, lambda _n=_name: synthetic_workload(_n))
