"""Architectures in a registry by name: `create_model(name, num_classes, image_size, **kw)`.

Each seed write-up's model (see ../shared/seeds/) plus the project's default, `fastnet`.
Every model takes (B, 1, S, S) normalised images, for S = 28 and S = 8 alike, and returns
(B, num_classes) logits.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = builder
        return builder
    return add


def list_models(pattern: str = "*") -> list[str]:
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, num_classes: int = 10, image_size: int = 28, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name](num_classes=num_classes, image_size=image_size, **kwargs)


def _pool(size: int, kind: type[nn.Module] = nn.MaxPool2d, ceil: bool = False) -> tuple[nn.Module, int]:
    """2x2 pooling and the side it leaves; a 1-pixel map (8x8 inputs, deep nets) is passed through."""
    if size < 2:
        return nn.Identity(), size
    if ceil:
        return kind(2, ceil_mode=True), (size + 1) // 2
    return kind(2), size // 2


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


# ---------------------------------------------------------------- seed 001 models 1-4, seed 004


@register_model("logreg")
def logreg(num_classes: int, image_size: int) -> nn.Module:
    """Multinomial logistic regression on the pixels (seed 001 model 2, seed 004's baseline)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, num_classes))


@register_model("mlp")
def mlp(num_classes: int, image_size: int, hidden: tuple[int, ...] = (200, 200, 200),
        dropout: float = 0.0) -> nn.Module:
    """Fully connected ReLU layers (seed 001 model 4: 3 x 200; seed 004: one layer of 1024)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = image_size * image_size
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- seed 003


@register_model("udacity-cnn")
def udacity_cnn(num_classes: int, image_size: int, depth: int = 16, hidden: int = 64) -> nn.Module:
    """Two 5x5 stride-2 'same' convolutions, then FC 64 (seed 003's first convnet)."""
    side = -(-(-(-image_size // 2)) // 2)       # ceil(ceil(S / 2) / 2)
    return nn.Sequential(
        nn.Conv2d(1, depth, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        nn.Conv2d(depth, depth, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(side * side * depth, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes))


@register_model("lenet5")
def lenet5(num_classes: int, image_size: int, depth: int = 32, hidden: int = 64, dropout: float = 0.5
           ) -> nn.Module:
    """LeNet-5 as in seed 003 problem 2: 5x5 valid convs, average pooling, two FC 64, dropout.

    Inputs under 16 px are too small for two valid 5x5 convolutions, so there they pad ('same').
    """
    padding = 2 if image_size < 16 else 0
    side = image_size - 4 + 2 * padding
    pool1, side = _pool(side, nn.AvgPool2d)
    side = side - 4 + 2 * padding
    pool2, side = _pool(side, nn.AvgPool2d)
    return nn.Sequential(
        nn.Conv2d(1, depth, 5, padding=padding), nn.ReLU(inplace=True), pool1,
        nn.Conv2d(depth, depth, 5, padding=padding), nn.ReLU(inplace=True), pool2,
        nn.Flatten(), nn.Linear(side * side * depth, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes))


# ---------------------------------------------------------------- seed 001 model 9


@register_model("vgg-bn")
def vgg_bn(num_classes: int, image_size: int, widths: tuple[int, ...] = (7, 14, 28, 56),
           convs: tuple[int, ...] = (2, 2, 3, 3), dropouts: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4),
           hidden: int = 100) -> nn.Module:
    """VGG blocks (conv-relu x n, max-pool, batch norm, rising dropout), Dense 100 sigmoid, dropout 0.5."""
    layers: list[nn.Module] = []
    c_in, side = 1, image_size
    for width, n_convs, drop in zip(widths, convs, dropouts):
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        pool, side = _pool(side)
        layers += [pool, nn.BatchNorm2d(width), nn.Dropout(drop)]
    layers += [nn.Flatten(), nn.Linear(side * side * c_in, hidden), nn.Sigmoid(), nn.Dropout(0.5),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- seed 000


@register_model("notmnist-winner")
def notmnist_winner(num_classes: int, image_size: int, dropout: float = 0.5, hidden: int = 1024) -> nn.Module:
    """Conv5(32)-Conv5(64)-Pool-Drop-Conv3(64)-Conv3(64)-Pool-Drop-FC1024-Drop-FC1024, BN + ReLU."""
    pool1, side = _pool(image_size, ceil=True)      # TensorFlow 'SAME' pooling
    pool2, side = _pool(side, ceil=True)
    return nn.Sequential(
        conv_bn(1, 32, 5), conv_bn(32, 64, 5), pool1, nn.Dropout(dropout),
        conv_bn(64, 64, 3), conv_bn(64, 64, 3), pool2, nn.Dropout(dropout),
        nn.Flatten(), nn.Linear(side * side * 64, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes))


# ---------------------------------------------------------------- the project's default


class FastNet(nn.Module):
    """A small BN conv net, cheap on 2 CPU cores: the convs run on pooled maps where it is wide.

    28 px: conv 1->c1 at 28x28, pool, conv c1->c2 at 14x14, pool, conv c2->c3 and c3->c3 at
    7x7, then global max+mean pooling and one linear layer. The pooling adapts, so 8 px works too.
    Widths 16-32-64: in a quick check on 2 cores, 24-48-96 and 32-64-128 trained at 0.55x and 0.37x
    the speed with no clear accuracy gain on mnist-5k.
    """

    def __init__(self, num_classes: int, image_size: int, widths: tuple[int, int, int] = (16, 32, 64),
                 dropout: float = 0.1) -> None:
        super().__init__()
        c1, c2, c3 = widths
        pool1, side = _pool(image_size)
        pool2, _ = _pool(side)
        self.features = nn.Sequential(
            conv_bn(1, c1), pool1,
            conv_bn(c1, c2), pool2,
            conv_bn(c2, c3), conv_bn(c3, c3))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)                                 # (B, c3, s, s)
        pooled = torch.cat([features.amax(dim=(2, 3)), features.mean(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


@register_model("fastnet")
def fastnet(num_classes: int, image_size: int, **kwargs) -> nn.Module:
    return FastNet(num_classes, image_size, **kwargs)
