"""MobileNetV2 (Sandler et al. 2018) for 28x28 grayscale images, in plain torch, and its ImageNet weights.

The layers and their names are torchvision's (`features.0.0.weight` … `features.18.1.bias`,
`classifier.1.weight`), so torchvision's ImageNet state dict loads into it; only the strides differ.
ImageNet's network shrinks 224x224 by 32 to 7x7; Fashion-MNIST's 28x28 would end at 1x1 before the
last stages. As the usual CIFAR adaptation does, the stem and the first stride-2 stage (24 channels)
keep stride 1, so the total stride is 8: 28 → 14 → 7 → 4 at the last 1x1 convolution. Changing a
stride changes no weight's shape. Only the functions of `fashion_mobilenet` that build the network
import this module, so torch loads only in those tasks.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from mlops_onnx.models.fashion_net import PIXEL_MEAN, PIXEL_STD

# (expansion t, output channels c, repeats n, first stride s), as in the paper and torchvision; the 28x28
# adaptation sets the first stride-2 row (24 channels) to stride 1.
INVERTED_RESIDUALS = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
STEM_STRIDE = 1  # ImageNet: 2
TOTAL_STRIDE = STEM_STRIDE * math.prod(stride for *_, stride in INVERTED_RESIDUALS)  # 8 (ImageNet: 32)
IMAGENET_CLASSES = 1000
FIRST_CONV, CLASSIFIER = "features.0.0.weight", ("classifier.1.weight", "classifier.1.bias")


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: the nearest multiple of `divisor`, never more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    def __init__(self, inputs: int, outputs: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise 3x3 → project (1x1, linear); a shortcut when the shape is unchanged."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(inputs * expansion)
        self.use_shortcut = stride == 1 and inputs == outputs
        layers: list[nn.Module] = [ConvBNReLU6(inputs, hidden, kernel=1)] if expansion != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_shortcut else self.conv(x)


class FashionMobileNetV2(nn.Module):
    """MobileNetV2 over raw pixels (0..255, [batch, channels, 28, 28]); normalises inside `forward`, as the CNN.

    `width_mult` scales every layer's channels (torchvision's rounding); ImageNet weights exist for 1.0 only.
    `channels=3, classes=1000` gives the ImageNet shape of every weight (tests write such files)."""

    def __init__(self, classes: int = 10, width_mult: float = 1.0, channels: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        width = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(channels, width, stride=STEM_STRIDE)]
        for expansion, outputs, repeats, stride in INVERTED_RESIDUALS:
            outputs = make_divisible(outputs * width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(width, outputs, stride if i == 0 else 1, expansion))
                width = outputs
        layers.append(ConvBNReLU6(width, self.last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, classes))
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features((image / 255.0 - PIXEL_MEAN) / PIXEL_STD)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def read_state_dict(source: str, cache_dir: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file, or from a URL (http(s):// or file://) through torch.hub's download cache."""
    if "://" in source:
        return torch.hub.load_state_dict_from_url(
            source, model_dir=str(cache_dir), map_location="cpu", progress=False, check_hash=True
        )
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained MobileNetV2 weights {path}: no such file")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_imagenet_weights(model: FashionMobileNetV2, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy torchvision-layout ImageNet weights into `model`: the first convolution summed over RGB (a gray
    pixel is R = G = B, so the sum is what the RGB filter computes on it), every other weight as it is, and
    the 1000-class classifier left out (the model keeps its freshly initialised 10-class one)."""
    state = dict(state)
    if state.get(FIRST_CONV) is not None and state[FIRST_CONV].shape[1] == 3:
        state[FIRST_CONV] = state[FIRST_CONV].sum(1, keepdim=True)
    for key in CLASSIFIER:
        state.pop(key, None)
    own = model.state_dict()
    # Files saved before torch 0.4.1 have no BatchNorm step counters; the model keeps its own.
    missing = sorted(k for k in set(own) - set(state) - set(CLASSIFIER) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in sorted(state.keys() & own.keys())
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"pretrained weights {source} do not fit a width-1.0 torchvision MobileNetV2: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {wrong[:5]} "
            f"({len(missing)}, {len(unexpected)} and {len(wrong)} in all)"
        )
    model.load_state_dict(state, strict=False)
