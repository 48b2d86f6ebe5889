"""Device runtimes behind one protocol; ``create_runtime(name, model_path)`` picks one by name."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lab.errors import ConfigError
from lab.runtimes.base import BaseRuntime, Runtime, TensorSpec, check_inputs

__all__ = ["RUNTIMES", "BaseRuntime", "Runtime", "TensorSpec", "check_inputs", "create_runtime", "register_runtime"]


def _onnx(model_path: str | os.PathLike[str], **options: Any) -> Runtime:
    from lab.runtimes.onnx import OnnxRuntime  # lazy: importing lab must not import onnxruntime

    return OnnxRuntime(model_path, **options)


def _simnpu(model_path: str | os.PathLike[str], **options: Any) -> Runtime:
    from lab.runtimes.simnpu import SimNpuRuntime  # lazy: reads the model with onnx

    return SimNpuRuntime(model_path, **options)


def _torch(model_path: str | os.PathLike[str], **options: Any) -> Runtime:
    from lab.runtimes.torch import create_torch_runtime  # lazy: importing lab must not import torch

    return create_torch_runtime(model_path, **options)


def _torch_cuda(model_path: str | os.PathLike[str], **options: Any) -> Runtime:
    from lab.runtimes.torch import create_torch_runtime  # lazy

    return create_torch_runtime(model_path, cuda=True, **options)


#: name -> factory(model_path, **options).
RUNTIMES: dict[str, Callable[..., Runtime]] = {
    "onnx": _onnx, "simnpu": _simnpu, "torch": _torch, "torch-cuda": _torch_cuda}


def register_runtime(name: str, factory: Callable[..., Runtime]) -> None:
    """Make ``create_runtime(name, ...)`` call ``factory(model_path, **options)``."""
    RUNTIMES[name] = factory


def create_runtime(name: str, model_path: str | os.PathLike[str], **options: Any) -> Runtime:
    """Create the runtime registered as ``name`` for ``model_path``.

    Raises:
        ConfigError: unknown runtime name.
        ModelLoadError: the model cannot be loaded.
        RuntimeUnavailable: the backend is not installed.
    """
    try:
        factory = RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}: expected one of {sorted(RUNTIMES)}") from None
    return factory(model_path, **options)
