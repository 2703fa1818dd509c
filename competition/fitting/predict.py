"""Prediction as its own stage: logits of a saved checkpoint over deterministic views.

Test-time augmentation (TTA) averages the logits of a few fixed views of each image: the
image itself and its one-pixel shifts. Each view's logits are kept apart, so a caller can average
them or take the plain view alone without predicting again, and every cached file names the
views that made it.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import stopping
from ..errors import DataSourceError
from .module import Classifier


@dataclass(frozen=True)
class View:
    """A deterministic view: a shift of whole pixels (right, down), zero-padded, optionally mirrored."""
    dx: int = 0
    dy: int = 0
    mirror: bool = False

    @property
    def name(self) -> str:
        moved = "identity" if not (self.dx or self.dy) else f"shift({self.dx},{self.dy})"
        return f"mirror+{moved}" if self.mirror else moved


IDENTITY = (View(),)
# Digits and letters: the plain image first (TTA off is view 0 alone), then every one-pixel shift,
# the diagonals too (the 3x3 neighbourhood). Against the four straight shifts alone, the diagonals
# raised out-of-fold accuracy by 0.07 pp on fashion-mnist and 0.08 pp on mnist-5k.
TTA_VIEWS = (View(), View(1, 0), View(-1, 0), View(0, 1), View(0, -1),
             View(1, 1), View(1, -1), View(-1, 1), View(-1, -1))
# Photos (training mirrored them): the image and its mirror. Zero-filled shifts cost photos out-of-
# fold accuracy (natural-images: 0.8712 plain, 0.8720 with the mirror, 0.8563 with the 18 shifted
# and mirrored views), and at 160 px a one-pixel shift is nearly the image again.
MIRROR_VIEWS = (View(), View(mirror=True))


def tta_views(mirror: bool) -> tuple[View, ...]:
    """The test-time views of a competition: its mirror where training mirrored images (the run's
    resolved `augment.hflip`, on where the competition says a mirror keeps its class), else shifts."""
    return MIRROR_VIEWS if mirror else TTA_VIEWS


def shift(images: torch.Tensor, view: View) -> torch.Tensor:
    """Shift (B, C, H, W) images by whole pixels with zero fill (the background); mirror them first
    if the view says so."""
    if view.mirror:
        images = images.flip(-1)
    if not (view.dx or view.dy):
        return images
    pad = (max(view.dx, 0), max(-view.dx, 0), max(view.dy, 0), max(-view.dy, 0))   # left right top bottom
    padded = F.pad(images, pad)
    height, width = images.shape[-2:]
    top, left = max(-view.dy, 0), max(-view.dx, 0)
    return padded[..., top:top + height, left:left + width]


# A quarter of a megapixel a batch: 334 digits of 28 px, 16 photos of 160 px (the floor). On 2 CPU
# cores, unfolded, `fastnet` predicted 1.3x faster in batches of 334 than of 668 and `fastnet-wide`
# about the same, folded 1.0x and 1.2x; EfficientNet-Lite0 at 160 px
# predicted 27 images/s in batches of 256, 48 in batches of 16.
PIXELS_PER_BATCH = 2 ** 18


def prediction_batch(height: int, width: int) -> int:
    """Images a prediction batch holds: bounded in pixels, as larger activations outgrow the CPU's caches."""
    return max(16, min(1024, PIXELS_PER_BATCH // (height * width)))


def fold_batch_norms(net: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """An evaluation copy of `net` in which each batch norm that follows a convolution in an
    `nn.Sequential`, directly or through a max-pool, is folded into that convolution's weights and
    bias: the same function to float rounding, one pass over the activations fewer (at equal batches
    `fastnet` predicted 1.2-1.5x faster on 2 CPU cores, `resnet-small` 1.3x). Folded weights take `memory_format`, the net's. Only `nn.BatchNorm2d` itself is folded: a
    subclass may do more (timm's `BatchNormAct2d` applies its activation too), so it is left as it is."""
    folded = copy.deepcopy(net).eval()
    for sequence in folded.modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        for i in range(len(sequence) - 1):
            conv, norm = sequence[i], sequence[i + 1]
            pooled = type(norm) is nn.MaxPool2d and i + 2 < len(sequence)
            if pooled:
                # conv, max-pool, norm: the norm moves before the pool where it keeps the order of
                # values (no channel scaled by a negative factor), and folds there
                norm = sequence[i + 2]
            if type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d and norm.track_running_stats and \
                    (not pooled or norm.weight is None or bool((norm.weight >= 0).all())):
                sequence[i] = fuse_conv_bn_eval(conv, norm).to(memory_format=memory_format)
                sequence[i + 2 if pooled else i + 1] = nn.Identity()
    return folded


@torch.inference_mode()
def predict(module: Classifier, images: torch.Tensor, views: tuple[View, ...] = IDENTITY,
            batch_size: int | None = None, fold: bool = True) -> torch.Tensor:
    """Logits (V, N, K), float32 on the CPU, one slice per view, evaluation mode; with the batch
    norms folded into the convolutions unless `fold` is False (for checking the fold)."""
    module.eval()
    net = fold_batch_norms(module.net, module.memory_format) if fold else module.net
    batch_size = batch_size or prediction_batch(*images.shape[-2:])
    device = next(module.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    out = []
    bar = progress(len(images) * len(views), "predicting")
    for view in views:
        chunks = []
        for i in range(0, len(images), batch_size):
            stopping.check()
            bar.update(min(batch_size, len(images) - i))
            batch = shift(images[i:i + batch_size].to(device, non_blocking=True), view)
            with autocast:
                chunks.append(net(module.preprocess(batch, train=False)).float().cpu())
        out.append(torch.cat(chunks) if chunks else torch.zeros(0, module.spec.num_classes))
    bar.close()
    return torch.stack(out)


PROGRESS_FROM = 20_000     # images x views: a prediction this large shows a progress bar on a terminal


def progress(total: int, what: str, least: int = PROGRESS_FROM):
    """A tqdm bar for a long pass over `total` images (a large test set, its views), on a terminal only."""
    from tqdm import tqdm
    return tqdm(total=total, unit="img", desc=what, leave=False, disable=total < least or not sys.stderr.isatty())


def load_classifier(checkpoint: Path, device: torch.device) -> Classifier:
    """A Classifier rebuilt from a checkpoint's saved keyword arguments and weights."""
    try:
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        # the checkpoint holds the trained weights: the pretrained file is not read again
        specs = dict(saved["hyper_parameters"])
        module = Classifier(**{**specs, "net": {**specs["net"], "weights": ""}})
        module.load_state_dict(saved["state_dict"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataSourceError(f"{checkpoint}: not a readable checkpoint ({type(e).__name__}: {e}); "
                              f"delete the member's folder to train it again") from e
    return module.to(device).eval()
