"""The building blocks of the seed-003 block study, and the layers the backbones share.

Three block families, as in the seed's "block test" on a ``(1, 112, 112, 24)`` NHWC tensor
(``(1, 24, 112, 112)`` in PyTorch's NCHW, :data:`BLOCK_INPUT_SHAPE`):

* ``"mbconv"``: EfficientNet's MBConv: 1x1 expand, depthwise kxk, squeeze-excitation,
  1x1 project, SiLU activations, identity shortcut when shapes allow;
* ``"inverted_residual"``: MobileNetV2's inverted residual: the same without
  squeeze-excitation, with ReLU6;
* ``"residual"`` (ResNet's basic block: two 3x3 convs) and ``"bottleneck"`` (ResNet-50's
  1x1 reduce, 3x3, 1x1 expand).

With the defaults (24 channels, expansion 6, 3x3 kernel, stride 1) the multiply-adds at
``(1, 24, 112, 112)`` are 1.03e8 (MBConv, inverted residual) and 1.30e8 (residual),
the seed's "about 1.1e8 / 1.1e8 / 1.3e8 FLOPs" (the seed counts multiply-adds).

:func:`stacked` puts ``n`` blocks one after another (the "stack blocks one by one" study);
:func:`backbone_prefix` cuts a backbone after its first ``n`` stages (the seed's MobileNetV2
split into 20 pieces).

torch is imported lazily: the ``nn.Module`` classes are created on first use and served as
attributes of this module (``lab.zoo.blocks.MBConv``), so ``import lab.zoo.blocks`` is cheap
and never imports torch.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError, RuntimeUnavailable

if TYPE_CHECKING:  # torch is imported lazily: ``import lab.zoo`` must never import it
    from torch import nn

__all__ = [
    "BLOCKS",
    "BLOCK_INPUT_SHAPE",
    "BlockSpec",
    "backbone_prefix",
    "bottleneck",
    "build_block",
    "calibrate_batchnorm",
    "init_weights",
    "inverted_residual",
    "make_divisible",
    "mbconv",
    "require_torch",
    "residual",
    "seeded",
    "stacked",
]

#: The seed's block input ``(1, 112, 112, 24)`` NHWC as PyTorch's NCHW.
BLOCK_INPUT_SHAPE: tuple[int, int, int, int] = (1, 24, 112, 112)

# Classes created by _torch_classes() and served through the module's __getattr__.
_LAZY_CLASSES = (
    "BasicBlock",
    "Bottleneck",
    "ConvNormActivation",
    "InvertedResidual",
    "InvertedResidualV3",
    "MBConv",
    "SqueezeExcitation",
    "StochasticDepth",
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% down.

    The rule of the TensorFlow reference implementations (MobileNet, EfficientNet), as
    torchvision's ``_make_divisible``.

    Args:
        value: the unrounded channel count (e.g. ``32 * width_multiplier``).
        divisor: the multiple to round to.
        min_value: the smallest result; default ``divisor``.

    Returns:
        The rounded channel count.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # never round down by more than 10%
        new_value += divisor
    return int(new_value)


def require_torch() -> ModuleType:
    """Import and return ``torch``.

    Raises:
        RuntimeUnavailable: PyTorch is not installed.
    """
    try:
        import torch
    except ImportError as exc:
        raise RuntimeUnavailable("the model zoo needs PyTorch: install the lab's `torch` extra "
                                 "(`pip install -e .[torch]` with constraints.txt for the CPU build)") from exc
    return torch


@functools.cache
def _torch_classes() -> dict[str, type]:
    """Create the block classes (imports torch); cached, so each class exists once."""
    torch = require_torch()
    from torch import nn

    class ConvNormActivation(nn.Sequential):
        """Conv2d (no bias) + BatchNorm2d + optional activation, as torchvision's ``Conv2dNormActivation``.

        Children are ``0`` (conv), ``1`` (norm) and ``2`` (activation, when given).
        """

        def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                     groups: int = 1, activation: Callable[[], nn.Module] | None = nn.ReLU,
                     bn_eps: float = 1e-5, bn_momentum: float = 0.1, padding: int | None = None) -> None:
            if padding is None:
                padding = (kernel_size - 1) // 2
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
                nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
            ]
            if activation is not None:
                layers.append(activation())
            super().__init__(*layers)
            self.out_channels = out_channels

    class SqueezeExcitation(nn.Module):
        """Squeeze-excitation: global average pool, 1x1 conv down, activation, 1x1 conv up, gate.

        As torchvision's ``SqueezeExcitation`` (children ``avgpool``, ``fc1``, ``fc2``,
        ``activation``, ``scale_activation``).
        """

        def __init__(self, channels: int, squeeze_channels: int,
                     activation: Callable[[], nn.Module] = nn.ReLU,
                     scale_activation: Callable[[], nn.Module] = nn.Sigmoid) -> None:
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
            self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
            self.activation = activation()
            self.scale_activation = scale_activation()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return scale * x

    class StochasticDepth(nn.Module):
        """Drop the residual branch per sample while training ("row" mode); identity in eval."""

        def __init__(self, p: float) -> None:
            super().__init__()
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"stochastic depth: expected a drop probability in [0, 1), received {p}")
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0.0:
                return x
            keep = 1.0 - self.p
            mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
            return x * mask.bernoulli_(keep).div_(keep)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    class BasicBlock(nn.Module):
        """ResNet's basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, add shortcut, ReLU (expansion 1)."""

        expansion = 1

        def __init__(self, in_channels: int, channels: int, stride: int = 1,
                     downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        """ResNet's bottleneck (v1.5, stride on the 3x3): 1x1 reduce, 3x3, 1x1 expand x4, add, ReLU."""

        expansion = 4

        def __init__(self, in_channels: int, channels: int, stride: int = 1,
                     downsample: nn.Module | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(channels * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class InvertedResidual(nn.Module):
        """MobileNetV2's inverted residual: 1x1 expand (ReLU6), depthwise kxk (ReLU6), linear 1x1 project."""

        def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                     kernel_size: int = 3) -> None:
            super().__init__()
            if stride not in (1, 2):
                raise ConfigError(f"inverted residual: expected stride 1 or 2, received {stride}")
            hidden = int(round(in_channels * expand_ratio))
            self.use_res_connect = stride == 1 and in_channels == out_channels
            layers: list[nn.Module] = []
            if expand_ratio != 1:
                layers.append(ConvNormActivation(in_channels, hidden, 1, activation=nn.ReLU6))
            layers += [
                ConvNormActivation(hidden, hidden, kernel_size, stride, groups=hidden, activation=nn.ReLU6),
                nn.Conv2d(hidden, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            ]
            self.conv = nn.Sequential(*layers)
            self.out_channels = out_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class InvertedResidualV3(nn.Module):
        """MobileNetV3's bneck: optional 1x1 expand, depthwise kxk, optional SE (hard-sigmoid gate), project."""

        def __init__(self, in_channels: int, kernel_size: int, expanded_channels: int, out_channels: int,
                     use_se: bool, activation: str, stride: int) -> None:
            super().__init__()
            if activation not in ("RE", "HS"):
                raise ConfigError(f"MobileNetV3 block: expected activation 'RE' or 'HS', received {activation!r}")
            act: Callable[[], nn.Module] = nn.Hardswish if activation == "HS" else nn.ReLU
            bn = {"bn_eps": 0.001, "bn_momentum": 0.01}
            self.use_res_connect = stride == 1 and in_channels == out_channels
            layers: list[nn.Module] = []
            if expanded_channels != in_channels:
                layers.append(ConvNormActivation(in_channels, expanded_channels, 1, activation=act, **bn))
            layers.append(ConvNormActivation(expanded_channels, expanded_channels, kernel_size, stride,
                                             groups=expanded_channels, activation=act, **bn))
            if use_se:
                layers.append(SqueezeExcitation(expanded_channels, make_divisible(expanded_channels // 4, 8),
                                                scale_activation=nn.Hardsigmoid))
            layers.append(ConvNormActivation(expanded_channels, out_channels, 1, activation=None, **bn))
            self.block = nn.Sequential(*layers)
            self.out_channels = out_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.block(x)
            return out + x if self.use_res_connect else out

    class MBConv(nn.Module):
        """EfficientNet's MBConv: 1x1 expand, depthwise kxk, SE (squeeze = in/4), 1x1 project; SiLU."""

        def __init__(self, in_channels: int, out_channels: int, expand_ratio: float, kernel_size: int,
                     stride: int, stochastic_depth_prob: float = 0.0, se_ratio: float = 0.25,
                     bn_eps: float = 1e-5) -> None:
            super().__init__()
            if stride not in (1, 2):
                raise ConfigError(f"MBConv: expected stride 1 or 2, received {stride}")
            self.use_res_connect = stride == 1 and in_channels == out_channels
            expanded = make_divisible(in_channels * expand_ratio, 8)
            bn = {"bn_eps": bn_eps}
            layers: list[nn.Module] = []
            if expanded != in_channels:
                layers.append(ConvNormActivation(in_channels, expanded, 1, activation=nn.SiLU, **bn))
            layers.append(ConvNormActivation(expanded, expanded, kernel_size, stride, groups=expanded,
                                             activation=nn.SiLU, **bn))
            if se_ratio > 0:
                squeeze = max(1, int(in_channels * se_ratio))
                layers.append(SqueezeExcitation(expanded, squeeze, activation=nn.SiLU))
            layers.append(ConvNormActivation(expanded, out_channels, 1, activation=None, **bn))
            self.block = nn.Sequential(*layers)
            self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
            self.out_channels = out_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.block(x)
            if self.use_res_connect:
                out = self.stochastic_depth(out) + x
            return out

    return publish_classes(__name__, (ConvNormActivation, SqueezeExcitation, StochasticDepth, BasicBlock,
                                      Bottleneck, InvertedResidual, InvertedResidualV3, MBConv))


def publish_classes(module: str, classes: Sequence[type]) -> dict[str, type]:
    """Name classes built inside a function as ``<module>.<Name>`` (so they pickle, served by the
    module's ``__getattr__``) and return them by name."""
    published: dict[str, type] = {}
    for cls in classes:
        cls.__module__ = module
        cls.__qualname__ = cls.__name__
        published[cls.__name__] = cls
    return published


def __getattr__(name: str) -> Any:
    """Serve the lazily created ``nn.Module`` classes (``lab.zoo.blocks.MBConv``); imports torch."""
    if name in _LAZY_CLASSES:
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_positive(what: str, **values: float) -> None:
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{what}: expected {key} > 0, received {value!r}")


def _check_stride(what: str, stride: int) -> None:
    if stride not in (1, 2):
        raise ConfigError(f"{what}: expected stride 1 or 2, received {stride!r}")


def _check_kernel(what: str, kernel_size: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"{what}: expected an odd kernel size >= 1, received {kernel_size!r}")


def mbconv(channels: int = 24, out_channels: int | None = None, *, expansion: float = 6, kernel_size: int = 3,
           stride: int = 1, se_ratio: float = 0.25) -> nn.Module:
    """EfficientNet's MBConv block with squeeze-excitation (SiLU activations).

    Args:
        channels: input channels.
        out_channels: output channels; default ``channels`` (then, at stride 1, an identity shortcut).
        expansion: expand ratio of the 1x1 expand conv (hidden = ``make_divisible(channels * expansion)``).
        kernel_size: depthwise kernel (3 or 5 in EfficientNet).
        stride: depthwise stride, 1 or 2.
        se_ratio: squeeze channels = ``int(channels * se_ratio)``; 0 drops squeeze-excitation.

    Returns:
        A fresh, randomly initialised ``MBConv`` in eval mode; BatchNorm is
        not calibrated (:func:`build_block` does that).

    Raises:
        ConfigError: a parameter is out of range.
    """
    out = channels if out_channels is None else out_channels
    _check_positive("mbconv", channels=channels, out_channels=out, expansion=expansion)
    _check_kernel("mbconv", kernel_size)
    _check_stride("mbconv", stride)
    if not 0 <= se_ratio <= 1:
        raise ConfigError(f"mbconv: expected se_ratio in [0, 1], received {se_ratio!r}")
    block = _torch_classes()["MBConv"](channels, out, expansion, kernel_size, stride, se_ratio=se_ratio)
    return init_weights(block).eval()


def inverted_residual(channels: int = 24, out_channels: int | None = None, *, expansion: float = 6,
                      kernel_size: int = 3, stride: int = 1) -> nn.Module:
    """MobileNetV2's inverted residual block (ReLU6, linear bottleneck, no squeeze-excitation).

    Args:
        channels: input channels.
        out_channels: output channels; default ``channels`` (then, at stride 1, an identity shortcut).
        expansion: expand ratio (hidden = ``round(channels * expansion)``; 1 drops the expand conv).
        kernel_size: depthwise kernel (3 in MobileNetV2).
        stride: depthwise stride, 1 or 2.

    Returns:
        A fresh, randomly initialised ``InvertedResidual`` in eval mode; BatchNorm is
        not calibrated (:func:`build_block` does that).

    Raises:
        ConfigError: a parameter is out of range.
    """
    out = channels if out_channels is None else out_channels
    _check_positive("inverted_residual", channels=channels, out_channels=out, expansion=expansion)
    _check_kernel("inverted_residual", kernel_size)
    _check_stride("inverted_residual", stride)
    block = _torch_classes()["InvertedResidual"](channels, out, stride, expansion, kernel_size)
    return init_weights(block).eval()


def _resnet_block(kind: str, channels: int, out_channels: int, stride: int) -> nn.Module:
    from torch import nn

    cls = _torch_classes()["BasicBlock" if kind == "residual" else "Bottleneck"]
    if out_channels % cls.expansion:
        raise ConfigError(f"{kind}: expected out_channels divisible by {cls.expansion}, received {out_channels}")
    width = out_channels // cls.expansion
    downsample = None
    if stride != 1 or channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(channels, out_channels, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return init_weights(cls(channels, width, stride, downsample)).eval()


def residual(channels: int = 24, out_channels: int | None = None, *, stride: int = 1) -> nn.Module:
    """ResNet's basic residual block (two 3x3 convs; ResNet-18/34).

    Args:
        channels: input channels.
        out_channels: output channels; default ``channels``. A 1x1 conv + BN shortcut is added
            when ``stride != 1`` or the channel count changes (as in ResNet).
        stride: stride of the first 3x3 conv, 1 or 2.

    Returns:
        A fresh, randomly initialised ``BasicBlock`` in eval mode; BatchNorm is
        not calibrated (:func:`build_block` does that).

    Raises:
        ConfigError: a parameter is out of range.
    """
    out = channels if out_channels is None else out_channels
    _check_positive("residual", channels=channels, out_channels=out)
    _check_stride("residual", stride)
    return _resnet_block("residual", channels, out, stride)


def bottleneck(channels: int = 24, out_channels: int | None = None, *, stride: int = 1) -> nn.Module:
    """ResNet's bottleneck block (1x1 reduce to ``out_channels / 4``, 3x3, 1x1 expand; ResNet-50/101).

    Args:
        channels: input channels.
        out_channels: output channels (a multiple of 4); default ``channels``.
        stride: stride of the 3x3 conv, 1 or 2.

    Returns:
        A fresh, randomly initialised ``Bottleneck`` in eval mode; BatchNorm is
        not calibrated (:func:`build_block` does that).

    Raises:
        ConfigError: a parameter is out of range.
    """
    out = channels if out_channels is None else out_channels
    _check_positive("bottleneck", channels=channels, out_channels=out)
    _check_stride("bottleneck", stride)
    return _resnet_block("bottleneck", channels, out, stride)


@dataclass(frozen=True)
class BlockSpec:
    """A registered block.

    Attributes:
        builder: ``builder(channels, out_channels=None, **options) -> nn.Module``.
        family: the backbone family it comes from.
        options: the keyword options the builder takes besides the channel counts.
        description: one line for tables.
    """

    builder: Callable[..., nn.Module]
    family: str
    options: tuple[str, ...]
    description: str


#: name -> spec of the seed's blocks.
BLOCKS: dict[str, BlockSpec] = {
    "mbconv": BlockSpec(mbconv, "EfficientNet", ("expansion", "kernel_size", "stride", "se_ratio"),
                        "MBConv: 1x1 expand, depthwise, squeeze-excitation, 1x1 project (SiLU)"),
    "inverted_residual": BlockSpec(inverted_residual, "MobileNetV2", ("expansion", "kernel_size", "stride"),
                                   "inverted residual: 1x1 expand, depthwise, linear 1x1 project (ReLU6)"),
    "residual": BlockSpec(residual, "ResNet", ("stride",), "basic residual block: two 3x3 convs (ReLU)"),
    "bottleneck": BlockSpec(bottleneck, "ResNet", ("stride",), "bottleneck: 1x1 reduce, 3x3, 1x1 expand (ReLU)"),
}


def _spec(name: str) -> BlockSpec:
    try:
        return BLOCKS[name]
    except KeyError:
        raise ConfigError(f"unknown block {name!r}: expected one of {sorted(BLOCKS)}") from None


def build_block(name: str, channels: int = 24, out_channels: int | None = None, *, input_size: int = 112,
                calibrate: bool = True, seed: int | None = None, **options: Any) -> nn.Module:
    """One block by name (see :data:`BLOCKS`), randomly initialised, in eval mode.

    Args:
        name: ``"mbconv"``, ``"inverted_residual"``, ``"residual"`` or ``"bottleneck"``.
        channels: input channels.
        out_channels: output channels; default ``channels``.
        input_size: spatial size of the (square) input, used for calibration (the seed's 112).
        calibrate: set BatchNorm statistics from one pass on ``torch.randn(1, channels, input_size,
            input_size)`` (:func:`calibrate_batchnorm`), so activations keep realistic magnitudes.
        seed: when given, weights (and the calibration input) come from ``torch.manual_seed(seed)``;
            the caller's RNG state is restored.
        **options: the block's options (``BLOCKS[name].options``), e.g. ``expansion=4``.

    Raises:
        ConfigError: unknown name, an option the block does not take, or a value out of range.
    """
    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ConfigError(f"block {name!r}: unknown option(s) {unknown}; it takes {list(spec.options)}")
    _check_positive(name, input_size=input_size)
    with seeded(seed):
        block = spec.builder(channels, out_channels, **options)
        if calibrate:
            _calibrate_on_noise(block, (1, channels, input_size, input_size))
    return block


def stacked(block_name: str, n: int, channels: int = 24, *, input_size: int = 112, calibrate: bool = True,
            seed: int | None = None, **options: Any) -> nn.Module:
    """``n`` blocks of one kind one after another, shape-preserving (stride 1, same channels).

    For the seed's study of how latency grows as blocks are stacked one by one; the input
    is :data:`BLOCK_INPUT_SHAPE` (with ``channels`` and ``input_size`` in place of 24 and 112).

    Args:
        block_name: a key of :data:`BLOCKS`.
        n: number of blocks, >= 1.
        channels: channels in and out of every block.
        input_size: spatial size of the (square) input, used for calibration.
        calibrate: set BatchNorm statistics of the whole stack from one pass on noise.
        seed: when given, weights come from ``torch.manual_seed(seed)`` (RNG state restored).
        **options: block options (``expansion``, ``kernel_size``, ``se_ratio``); ``stride`` must be 1.

    Returns:
        ``nn.Sequential`` of ``n`` fresh blocks, in eval mode.

    Raises:
        ConfigError: unknown block, ``n < 1``, ``stride != 1``, or an option the block does not take.
    """
    from torch import nn

    _spec(block_name)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"stacked: expected n >= 1 blocks, received {n!r}")
    if options.get("stride", 1) != 1:
        raise ConfigError(f"stacked: blocks must keep the shape (stride 1), received stride={options['stride']!r}")
    _check_positive("stacked", input_size=input_size)
    with seeded(seed):
        stack = nn.Sequential(*(build_block(block_name, channels, calibrate=False, **options) for _ in range(n)))
        if calibrate:
            _calibrate_on_noise(stack, (1, channels, input_size, input_size))
    return stack.eval()


def backbone_prefix(name: str, n: int, num_classes: int = 1000, *, calibrate: bool = True,
                    seed: int | None = None) -> nn.Module:
    """The first ``n`` pieces of a backbone that has ``features`` (MobileNets, EfficientNets).

    The pieces are the entries of ``model.features`` (for MobileNetV2: stem conv, 17
    inverted residuals, final 1x1 conv = 19) followed by the pooled classifier head as the
    last piece (20 for MobileNetV2, the seed's split). ``n == len(features) + 1`` returns
    the whole model. The input is the backbone's own, ``BACKBONES[name].input_shape``.

    Args:
        name: a backbone from :data:`lab.zoo.backbones.BACKBONES` with a ``features`` stack.
        n: number of pieces, ``1 <= n <= len(features) + 1``.
        num_classes: classifier width.
        calibrate: calibrate BatchNorm on the whole backbone first (see ``build_backbone``).
        seed: weights from ``torch.manual_seed(seed)``, so prefixes of one seed share weights.

    Returns:
        ``nn.Sequential`` of the first ``n`` pieces (or the whole model), in eval mode.

    Raises:
        ConfigError: unknown backbone, one without ``features``, or ``n`` out of range.
    """
    from torch import nn

    from lab.zoo.backbones import build_backbone

    model = build_backbone(name, num_classes=num_classes, calibrate=calibrate, seed=seed)
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise ConfigError(f"backbone_prefix: {name!r} has no `features` stack; use a MobileNet or EfficientNet")
    total = len(features) + 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= total:
        raise ConfigError(f"backbone_prefix: expected 1 <= n <= {total} for {name!r}, received {n!r}")
    if n == total:
        return model
    return nn.Sequential(*list(features)[:n]).eval()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's RNG state after it.

    Args:
        seed: the seed; None leaves the generator alone (the block draws from the global state).
    """
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _calibrate_on_noise(module: nn.Module, shape: tuple[int, ...]) -> None:
    import torch

    calibrate_batchnorm(module, torch.randn(shape))


def init_weights(module: nn.Module) -> nn.Module:
    """Initialise ``module`` in place, as torchvision initialises its classification backbones.

    Kaiming-normal conv weights (fan-out), BatchNorm weight 1 and bias 0, Linear weights
    uniform in ``+-1/sqrt(out_features)``, zero biases. Seed torch first for reproducible weights.

    Returns:
        ``module`` itself.
    """
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_range = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -init_range, init_range)
            nn.init.zeros_(m.bias)
    return module


def calibrate_batchnorm(module: nn.Module, example_input: Any) -> nn.Module:
    """Set every BatchNorm's running statistics from one forward pass on ``example_input``.

    A randomly initialised network in eval mode has BatchNorm statistics (mean 0, variance
    1) that do not match its activations: torchvision's fan-out initialisation shrinks
    depthwise convs' outputs by ``sqrt(channels)``, so MobileNet/EfficientNet activations
    fall to 1e-15..1e-21 (near float32 denormals, which are many times slower on CPUs)
    while ResNet-101's grow to 1e5. This data-dependent step makes each BatchNorm
    normalise what it actually sees, as a trained network's do, so timings and numeric
    comparisons run on realistic magnitudes. Only BatchNorm layers switch to training
    mode for the pass (dropout and stochastic depth stay off); ``module`` ends in eval mode.

    Args:
        module: the network, modified in place.
        example_input: a tensor (or tuple of tensors) shaped like a real input, e.g. ``torch.randn``.

    Returns:
        ``module``, in eval mode.
    """
    import torch
    from torch import nn

    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    module.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
            m.train()
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        with torch.no_grad():
            module(*args)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        module.eval()
    return module
