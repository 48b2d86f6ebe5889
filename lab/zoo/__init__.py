"""Workloads: a model file plus everything needed to feed it and read its answers.

A :class:`Workload` bundles the model, a preprocessing function (raw samples to model
input, batched), a postprocessing function (model outputs to predictions, batched),
samples and, when known, labels. ``load_workload(name)`` returns one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import ConfigError

__all__ = ["WORKLOADS", "Workload", "load_workload", "random_workload", "register_workload"]


@dataclass(frozen=True)
class Workload:
    """A model and its data.

    Attributes:
        name: registry name (``"digits"``).
        model_path: the ONNX file a runtime loads.
        samples: raw samples, shape ``(N, ...)`` in the loader's own format and dtype.
        labels: ground-truth class per sample, shape ``(N,)``, or None when unknown.
        preprocess: raw samples ``(n, ...)`` -> model input ``(n, ...)`` (batched; runs on the host).
        postprocess: list of model outputs for ``n`` samples -> predictions ``(n,)``.
        description: one line for tables and reports.
        info: extra facts (training accuracy, parameter count, source).
    """

    name: str
    model_path: Path
    samples: np.ndarray
    labels: np.ndarray | None
    preprocess: Callable[[np.ndarray], np.ndarray]
    postprocess: Callable[[Sequence[np.ndarray]], np.ndarray]
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Number of samples."""
        return int(len(self.samples))

    def inputs(self, count: int | None = None) -> np.ndarray:
        """The first ``count`` samples preprocessed (all when None), cycling if ``count > N``."""
        idx = np.arange(self.num_samples if count is None else count) % self.num_samples
        return self.preprocess(self.samples[idx])

    def accuracy(self, predictions: np.ndarray, indices: np.ndarray | None = None) -> float | None:
        """Fraction of ``predictions`` equal to the labels of ``indices`` (default: 0..n-1, cycling)."""
        if self.labels is None:
            return None
        predictions = np.asarray(predictions).reshape(-1)
        if indices is None:
            indices = np.arange(len(predictions)) % self.num_samples
        return float(np.mean(predictions == self.labels[indices]))


#: name -> zero-argument loader; later issues register more (zoo backbones, pretrained models).
WORKLOADS: dict[str, Callable[[], Workload]] = {}


def register_workload(name: str, loader: Callable[[], Workload]) -> None:
    """Make ``load_workload(name)`` call ``loader``."""
    WORKLOADS[name] = loader


def load_workload(name: str) -> Workload:
    """The workload registered as ``name`` (e.g. ``"digits"``).

    Raises:
        ConfigError: no workload of that name.
    """
    try:
        loader = WORKLOADS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: expected one of {sorted(WORKLOADS)}") from None
    return loader()


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def random_workload(name: str, model_path: str | Path, inputs: Sequence[Any], *, num_samples: int = 64,
                    seed: int = 0) -> Workload:
    """A workload for a bare model file: seeded random samples shaped like its (single) input.

    Dynamic dimensions other than the batch axis become 1; there are no labels. Good
    for timing any ONNX file; say so wherever its numbers appear (no accuracy exists).

    Args:
        inputs: the runtime's input specs (``runtime.inputs``); exactly one is supported.
    """
    if len(inputs) != 1:
        raise ConfigError(f"random samples need a single-input model; {model_path} has {len(inputs)} inputs")
    spec = inputs[0]
    shape = tuple(num_samples if i == 0 else (d or 1) for i, d in enumerate(spec.shape)) or (num_samples,)
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        samples = rng.standard_normal(shape).astype(dtype)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        samples = rng.integers(max(info.min, -128), min(info.max, 127), size=shape, endpoint=True).astype(dtype)
    else:
        samples = rng.integers(0, 2, size=shape).astype(dtype)
    return Workload(name=name, model_path=Path(model_path), samples=samples, labels=None, preprocess=_identity,
                    postprocess=_first_output, description=f"{model_path} with seeded random inputs",
                    info={"random_inputs": True, "seed": seed})


def _first_output(outputs: Sequence[np.ndarray]) -> np.ndarray:
    return outputs[0]


def _register_builtin() -> None:
    # register "digits", "unet_depth", "small_detector", "efficientnet_lite0" (none imports torch)
    from lab.zoo import digits, pretrained, synthetic  # noqa: F401


_register_builtin()
