"""ONNX export, FLOPs, parameter and graph-node counts for the zoo's models.

* :func:`export_onnx` writes one self-contained ``.onnx`` file (weights inline, no external
  data) with a dynamic batch axis, using torch's dynamo exporter (``torch.export`` +
  onnxscript) and falling back to the TorchScript exporter when that fails; the file's
  metadata says which one made it (``lab.exporter``).
* :func:`export_backbone` / :func:`export_block` / :func:`cached_export` keep exports in a
  cache directory (:func:`default_cache_dir`), keyed by name, shape, seed and torch version,
  so notebooks export each model once (the dynamo exporter takes ~10 s for a MobileNet
  and longer for a ResNet-101 on a laptop).
* :func:`count_flops` counts FLOPs with ``torch.utils.flop_counter.FlopCounterMode``: a
  multiply-add is 2 FLOPs, and only matmul-like ops (convolutions, linear layers, matmuls)
  are counted, not BatchNorm, activations or pooling, the usual convention ("ResNet-50 is
  4.1 GMACs"). The seed reports multiply-adds as "FLOPs": compare it with ``flops / 2``.
* :func:`onnx_node_count` / :func:`onnx_op_histogram` count graph nodes (``Constant`` nodes
  are left out by default, as TFLite's node counts leave out tensors).

torch, onnx and onnxruntime are imported inside the functions that use them.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError, ModelLoadError, RuntimeUnavailable
from lab.zoo.blocks import require_torch

if TYPE_CHECKING:  # torch is imported lazily: ``import lab.zoo`` must never import it
    import torch
    from torch import nn

__all__ = [
    "CACHE_ENV",
    "backbone_flops",
    "cached_export",
    "count_flops",
    "count_params",
    "default_cache_dir",
    "export_backbone",
    "export_block",
    "export_onnx",
    "onnx_exporter",
    "onnx_node_count",
    "onnx_op_histogram",
]

#: Environment variable naming the cache root (default ``$XDG_CACHE_HOME/inference-lab`` or
#: ``~/.cache/inference-lab``); exports go to its ``onnx/`` folder.
CACHE_ENV = "INFERENCE_LAB_CACHE"

# Bump when the zoo's architectures or the export recipe change: old cache entries are then ignored.
_CACHE_VERSION = 1

_log = logging.getLogger(__name__)

# Harmless warnings the exporters emit on this torch (checked on 2.13): filtered by message only.
_DYNAMO_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
_TORCHSCRIPT_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"You are using the legacy TorchScript-based ONNX export", DeprecationWarning),
    (r"The feature will be removed\. Please remove usage of this function", DeprecationWarning),
)
# The dynamo exporter logs one WARNING per torchvision op it cannot register; we never use them.
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


class _DropTorchvisionNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def _quiet_exporter(patterns: Sequence[tuple[str, type[Warning]]]) -> Iterator[None]:
    logger = logging.getLogger(_REGISTRATION_LOGGER)
    notice_filter = _DropTorchvisionNotice()
    logger.addFilter(notice_filter)
    try:
        with warnings.catch_warnings():
            for message, category in patterns:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        logger.removeFilter(notice_filter)


def _as_args(example_input: Any) -> tuple[Any, ...]:
    return example_input if isinstance(example_input, tuple) else (example_input,)


def _default_names(prefix: str, count: int) -> list[str]:
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def export_onnx(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...], path: str | Path, *,
                dynamic_batch: bool = True, opset: int | None = None, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None) -> Path:
    """Export ``model`` to a single ONNX file (weights inline, no external data).

    Tries torch's dynamo exporter first (``torch.onnx.export(..., dynamo=True)``, which needs
    onnxscript) and falls back to the TorchScript exporter (``dynamo=False``) if it raises;
    the fallback is logged and the file's metadata records which exporter made it
    (:func:`onnx_exporter`). The model is exported in eval mode (its mode is restored
    afterwards). The file is written atomically (a temporary file, then a rename).

    Args:
        model: the network.
        example_input: one tensor or a tuple of tensors, as the model's ``forward`` takes them.
        path: the ``.onnx`` file to write; parent folders are created.
        dynamic_batch: make axis 0 of every input and output a symbolic ``batch`` dimension.
        opset: ONNX opset; default the exporter's own.
        input_names: graph input names; default ``input`` (``input_0``, ``input_1``, ... for several).
        output_names: graph output names; default ``output``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``example_input`` is not a tensor or a tuple of tensors.
        ModelLoadError: both exporters failed (the message holds both reasons).
    """
    import torch

    args = _as_args(example_input)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise ConfigError("export_onnx: expected a tensor or a tuple of tensors as example_input, "
                          f"received {type(example_input).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    in_names = list(input_names) if input_names is not None else _default_names("input", len(args))
    out_names = list(output_names) if output_names is not None else ["output"]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.onnx")  # same folder: atomic rename
    was_training = model.training
    model.eval()
    try:
        dynamo_error: BaseException | None = None
        try:
            _export_dynamo(model, args, tmp, dynamic_batch, opset, in_names, out_names)
            exporter = "dynamo"
        except Exception as exc:  # noqa: BLE001 - any failure of the new exporter: try the old one
            dynamo_error = exc
            _log.warning("dynamo ONNX export of %s failed (%s: %s); falling back to the TorchScript exporter",
                         type(model).__name__, type(exc).__name__, _first_line(exc))
            try:
                _export_torchscript(model, args, tmp, dynamic_batch, opset, in_names, out_names)
                exporter = "torchscript"
            except Exception as exc2:
                raise ModelLoadError(
                    f"export_onnx: cannot export {type(model).__name__} to ONNX: dynamo exporter: "
                    f"{type(exc).__name__}: {_first_line(exc)}; TorchScript exporter: "
                    f"{type(exc2).__name__}: {_first_line(exc2)}") from exc2
        metadata = {"lab.exporter": exporter, "lab.torch_version": torch.__version__}
        if dynamo_error is not None:
            metadata["lab.dynamo_error"] = f"{type(dynamo_error).__name__}: {_first_line(dynamo_error)}"
        _stamp(tmp, metadata)
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _export_dynamo(model: nn.Module, args: tuple[Any, ...], path: Path, dynamic_batch: bool, opset: int | None,
                   in_names: list[str], out_names: list[str]) -> None:
    import torch

    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        kwargs["dynamic_shapes"] = tuple({0: batch} for _ in args)
    if opset is not None:
        kwargs["opset_version"] = opset
    with _quiet_exporter(_DYNAMO_WARNINGS):
        torch.onnx.export(model, args, str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=in_names, output_names=out_names, **kwargs)


def _export_torchscript(model: nn.Module, args: tuple[Any, ...], path: Path, dynamic_batch: bool,
                        opset: int | None, in_names: list[str], out_names: list[str]) -> None:
    import torch

    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in in_names + out_names}
    if opset is not None:
        kwargs["opset_version"] = opset
    with _quiet_exporter(_TORCHSCRIPT_WARNINGS), torch.no_grad():
        torch.onnx.export(model, args, str(path), dynamo=False, verbose=False, input_names=in_names,
                          output_names=out_names, **kwargs)


def _stamp(path: Path, metadata: dict[str, str]) -> None:
    """Add ``metadata`` to the model's ``metadata_props``, check it, and save it as one file."""
    onnx = _import_onnx()

    model = onnx.load(str(path))
    if model.functions:  # keep node counts honest: one flat graph
        model = onnx.inliner.inline_local_functions(model)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=False)


def onnx_exporter(path: str | Path) -> str | None:
    """Which exporter wrote a file made by :func:`export_onnx`: ``"dynamo"``, ``"torchscript"``, or None."""
    return _metadata(_load(path)).get("lab.exporter")


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeUnavailable("reading ONNX files needs the `onnx` package (the lab's `onnx` extra)") from exc
    return onnx


def _load(path: str | Path) -> Any:
    onnx = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"no ONNX file at {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelLoadError(f"cannot read {path} as an ONNX model: {type(exc).__name__}: {exc}") from exc


def onnx_op_histogram(path: str | Path, *, include_constants: bool = False) -> dict[str, int]:
    """How many nodes of each op type the ONNX file's graph has (local functions inlined).

    Args:
        path: an ONNX file.
        include_constants: count ``Constant`` nodes too (left out by default).

    Returns:
        ``{op_type: count}``, most frequent first (ties by name).

    Raises:
        ModelLoadError: the file is missing or not an ONNX model.
    """
    onnx = _import_onnx()
    model = _load(path)
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    counts = collections.Counter(n.op_type for n in model.graph.node)
    if not include_constants:
        counts.pop("Constant", None)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def onnx_node_count(path: str | Path, *, include_constants: bool = False) -> int:
    """Number of nodes in the ONNX file's graph (local functions inlined; ``Constant`` left out by default).

    Raises:
        ModelLoadError: the file is missing or not an ONNX model.
    """
    return sum(onnx_op_histogram(path, include_constants=include_constants).values())


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once; buffers such as BatchNorm statistics not counted).

    Args:
        model: the network.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def count_flops(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass on ``example_input`` (a multiply-add counts 2).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` under ``torch.no_grad()``: matmul-like
    ops only (convolutions, linear, matmul, attention), the usual convention. Runs the
    model once; tensors on the ``meta`` device work and cost nothing (see :func:`backbone_flops`).

    Args:
        model: the network.
        example_input: one tensor or a tuple of tensors, as ``forward`` takes them.

    Returns:
        Total FLOPs for the whole input (scales with its batch size).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*_as_args(example_input))
    return int(counter.get_total_flops())


def backbone_flops(name: str, *, batch_size: int = 1, input_size: int | None = None) -> int:
    """FLOPs of a registered backbone (see :func:`count_flops`), built on torch's ``meta`` device.

    Nothing is allocated or computed, so even ResNet-101 takes a fraction of a second.

    Args:
        name: a key of :data:`lab.zoo.backbones.BACKBONES`.
        batch_size: images per forward pass.
        input_size: square input side; default the backbone's own (224, 240, 260, 300).

    Raises:
        ConfigError: unknown backbone or a size below 1.
        RuntimeUnavailable: PyTorch is not installed.
    """
    torch = require_torch()
    from lab.zoo.backbones import build_backbone

    size = _backbone_size(name, input_size)
    _check_batch(batch_size)
    with torch.device("meta"):
        model = build_backbone(name, calibrate=False)
        x = torch.empty(batch_size, 3, size, size)
    return count_flops(model, x)


def _backbone_size(name: str, input_size: int | None) -> int:
    from lab.zoo.backbones import BACKBONES

    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}: expected one of {sorted(BACKBONES)}")
    size = BACKBONES[name].input_size if input_size is None else input_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 32:
        raise ConfigError(f"{name}: expected an input size >= 32, received {size!r}")
    return size


def _check_batch(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"expected batch_size >= 1, received {batch_size!r}")


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """Where exports are cached: ``$INFERENCE_LAB_CACHE/onnx``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "inference-lab" / "onnx"


def _cache_path(key: str, cache_dir: str | Path | None, dynamic_batch: bool, opset: int | None) -> Path:
    torch = require_torch()

    ident = f"{key}|dynamic_batch={dynamic_batch}|opset={opset}|torch={torch.__version__}|v={_CACHE_VERSION}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._")[:80] or "model"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{slug}-{digest}.onnx"


def cached_export(key: str, build: Callable[[], tuple[nn.Module, Any]], *, cache_dir: str | Path | None = None,
                  dynamic_batch: bool = True, opset: int | None = None, force: bool = False) -> Path:
    """The cached ONNX export for ``key``, exporting ``build()``'s model on a miss.

    The file name is ``key`` (made filesystem-safe) plus a hash of the key, the export
    options and the torch version, so a torch upgrade re-exports. ``key`` must name
    everything that changes the graph or its weights (model, input shape, seed, options):
    the weights in the file are those of the first build.

    Args:
        key: what is exported, e.g. ``"resnet50-bN-3x224x224-c1000-s0"``.
        build: zero-argument callable returning ``(model, example_input)``; called only on a miss.
        cache_dir: folder for the files; default :func:`default_cache_dir`.
        dynamic_batch: passed to :func:`export_onnx`.
        opset: passed to :func:`export_onnx`.
        force: export again even when the file exists.

    Returns:
        Path of the ``.onnx`` file.

    Raises:
        ConfigError: an empty key.
        ModelLoadError: the export failed.
    """
    if not key:
        raise ConfigError("cached_export: expected a non-empty key")
    path = _cache_path(key, cache_dir, dynamic_batch, opset)
    if path.is_file() and not force:
        return path
    model, example_input = build()
    return export_onnx(model, example_input, path, dynamic_batch=dynamic_batch, opset=opset)


def export_backbone(name: str, *, batch_size: int = 1, input_size: int | None = None, num_classes: int = 1000,
                    seed: int = 0, dynamic_batch: bool = True, cache_dir: str | Path | None = None,
                    force: bool = False) -> Path:
    """A registered backbone as a cached ONNX file (seeded random weights, calibrated BatchNorm).

    Args:
        name: a key of :data:`lab.zoo.backbones.BACKBONES`.
        batch_size: example batch (with ``dynamic_batch`` the file accepts any batch and one file serves all).
        input_size: square input side; default the backbone's own.
        num_classes: classifier width.
        seed: weight seed (the same seed gives the same weights, so a cached file matches a rebuild).
        dynamic_batch: symbolic batch axis.
        cache_dir: default :func:`default_cache_dir`.
        force: re-export even if cached.

    Returns:
        Path of the ``.onnx`` file; input ``input`` ``(batch, 3, size, size)`` float32, output ``output`` logits.

    Raises:
        ConfigError: unknown backbone or bad sizes.
        ModelLoadError: the export failed.
    """
    size = _backbone_size(name, input_size)
    _check_batch(batch_size)
    batch = "N" if dynamic_batch else str(batch_size)
    key = f"{name}-b{batch}-3x{size}x{size}-c{num_classes}-s{seed}"

    def build() -> tuple[nn.Module, Any]:
        import torch

        from lab.zoo.backbones import build_backbone

        model = build_backbone(name, num_classes=num_classes, seed=seed)
        return model, torch.randn(batch_size, 3, size, size)

    return cached_export(key, build, cache_dir=cache_dir, dynamic_batch=dynamic_batch, force=force)


def export_block(block_name: str, n: int = 1, *, channels: int = 24, input_size: int = 112, batch_size: int = 1,
                 seed: int = 0, dynamic_batch: bool = True, cache_dir: str | Path | None = None, force: bool = False,
                 **options: Any) -> Path:
    """``n`` stacked blocks (:func:`lab.zoo.blocks.stacked`) as a cached ONNX file.

    Args:
        block_name: a key of :data:`lab.zoo.blocks.BLOCKS`.
        n: number of blocks.
        channels: channels in and out (the seed's 24).
        input_size: spatial side (the seed's 112).
        batch_size: example batch.
        seed: weight seed.
        dynamic_batch: symbolic batch axis.
        cache_dir: default :func:`default_cache_dir`.
        force: re-export even if cached.
        **options: block options (``expansion``, ``kernel_size``, ``se_ratio``).

    Returns:
        Path of the ``.onnx`` file; input ``(batch, channels, input_size, input_size)``.

    Raises:
        ConfigError: unknown block or bad options.
        ModelLoadError: the export failed.
    """
    from lab.zoo.blocks import BLOCKS, stacked

    _check_batch(batch_size)
    batch = "N" if dynamic_batch else str(batch_size)
    opts = "".join(f"-{k}{options[k]}" for k in sorted(options))
    if block_name not in BLOCKS:
        raise ConfigError(f"unknown block {block_name!r}: expected one of {sorted(BLOCKS)}")
    key = f"{block_name}x{n}-b{batch}-{channels}x{input_size}x{input_size}{opts}-s{seed}"

    def build() -> tuple[nn.Module, Any]:  # stacked() validates n, channels and options
        import torch

        model = stacked(block_name, n, channels, input_size=input_size, seed=seed, **options)
        return model, torch.randn(batch_size, channels, input_size, input_size)

    return cached_export(key, build, cache_dir=cache_dir, dynamic_batch=dynamic_batch, force=force)
