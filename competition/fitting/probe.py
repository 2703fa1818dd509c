"""The frozen-feature member: a pretrained backbone's pooled features, computed once per run, and a
linear head fitted on them per fold (a linear probe).

A probe member is named `probe:<backbone>` (`probe:timm/efficientnet_lite0`). Its features are the
backbone's pooled pre-logit features (what its classifier reads) of every training and test image
in each of the probe's views (the image, and its mirror where the competition allows one), at the
backbone's own input size: `extract_features` runs once per run and `save_features` caches them in
the run folder, so every fold, every pseudo-label round and a resumed run read them again for free.

The head is scikit-learn's `LogisticRegression` on features standardised with the fold's training
rows' statistics, both views of each image as training rows (the mirror is the augmentation). Its
inverse regularisation C is chosen inside the fold, on a stratified quarter of the fold's training
images held out by image (both views on one side), by log-loss, then the head is refitted on all of
them. Out of fold on Dogs vs. Cats and Natural Images the accuracy is flat over C from 0.003 to 1
and the log-loss lowest near 0.03-0.1, so three candidates a decade apart cover it.

The head is kept in the features' own units (`LinearHead`), so it is also the starting classifier of
a fine-tune of the same backbone on the same fold (linear probe, then fine-tune: Kumar et al. 2022).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import stopping
from ..config import PROBE_PREFIX, RunConfig
from ..errors import DataSourceError
from .models import create_model, normalisation
from .predict import View, progress, shift
from .device import native_bf16

C_CANDIDATES = (0.01, 0.1, 1.0)     # inverse L2 strength of the head, chosen inside each fold
INNER_HOLDOUT = 0.25                # the share of a fold's training images C is chosen on
FEATURE_BATCH = 32                  # images a forward pass: batch 32 ran as fast as larger ones at 224 px


def is_probe(model: str) -> bool:
    return model.startswith(PROBE_PREFIX)


def backbone_of(model: str) -> str:
    """`probe:timm/x` -> `timm/x`; any other name is its own backbone."""
    return model[len(PROBE_PREFIX):] if is_probe(model) else model


def probe_of(backbone: str) -> str:
    return PROBE_PREFIX + backbone


# ---------------------------------------------------------------- features


def backbone_net(model: str, cfg: RunConfig, channels: int = 3
                 ) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """A resolved config's pretrained backbone without its classifier (it returns pooled features),
    and the (mean, std) its inputs are normalised with."""
    net = create_model(model, num_classes=0, in_chans=channels, weights=cfg.weights)
    return (net, *normalisation(model, cfg.normalise, channels))


def feature_bf16(cfg: RunConfig, device: torch.device) -> bool:
    """Features in bf16 autocast where the hardware multiplies bfloat16 (a GPU; a CPU with AVX512-BF16
    or AMX) and float32 is not forced: on a Zen 5 CPU EfficientNet-Lite0 gave 202 images/s at 224 px
    against float32's 81, with the same out-of-fold accuracy of its probe on Natural Images and Dogs vs.
    Cats (within 0.2 pp, both ways)."""
    return cfg.precision != "32-true" and native_bf16(device)


@torch.inference_mode()
def extract_features(net: nn.Module, images: torch.Tensor, views: tuple[View, ...], size: int,
                     mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                     bf16: bool = False) -> torch.Tensor:
    """Pooled features (V, N, D), float32 on the CPU, of uint8 images (N, C, H, W) in each view,
    resized to `size` x `size` on the way in (bilinear, antialiased) where they are stored at
    another size. `net` returns pooled features (a timm model made with num_classes=0)."""
    net = net.eval().to(device, memory_format=torch.channels_last)
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, device=device).view(shape)
    std_t = torch.tensor(std, device=device).view(shape)
    out = []
    bar = progress(len(images) * len(views), "features", least=1000)    # a pretrained backbone: seconds a batch
    for view in views:
        chunks = []
        for i in range(0, len(images), FEATURE_BATCH):
            stopping.check()
            bar.update(min(FEATURE_BATCH, len(images) - i))
            x = shift(images[i:i + FEATURE_BATCH].to(device, non_blocking=True), view).float().div_(255.0)
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                chunks.append(net(x).float().cpu())
        out.append(torch.cat(chunks) if chunks else torch.zeros(0, getattr(net, "num_features", 0)))
    bar.close()
    return torch.stack(out)


@dataclass(frozen=True, kw_only=True)
class Features:
    """A backbone's features of a competition's images, as `save_features` caches them."""
    train: torch.Tensor             # (V, N_train, D)
    test: torch.Tensor              # (V, N_test, D)
    views: tuple[str, ...]          # the view names, in order
    backbone: str
    size: int                       # the side the backbone saw
    fingerprint: str                # of the prepared split they were computed from
    seconds: float = 0.0            # what computing them took


def save_features(path: Path, features: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"train": features.train, "test": features.test, "views": list(features.views),
                "backbone": features.backbone, "size": features.size, "fingerprint": features.fingerprint,
                "seconds": features.seconds}, tmp)
    tmp.replace(path)


def load_features(path: Path) -> Features:
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return Features(train=saved["train"], test=saved["test"], views=tuple(saved["views"]),
                        backbone=saved["backbone"], size=int(saved["size"]), fingerprint=saved["fingerprint"],
                        seconds=float(saved.get("seconds", 0.0)))
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataSourceError(f"{path}: unreadable cached features ({type(e).__name__}: {e}); delete the file "
                              f"to compute them again") from e


# ---------------------------------------------------------------- the linear head


@dataclass(frozen=True, kw_only=True)
class LinearHead:
    """Logits = features @ weight.T + bias, in the features' own units (standardisation folded in)."""
    weight: torch.Tensor            # (K, D) float32
    bias: torch.Tensor              # (K,)
    C: float                        # the regularisation chosen inside the fold

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K)"""
        return features.float() @ self.weight.T + self.bias

    def state_dict(self) -> dict:
        return {"weight": self.weight, "bias": self.bias, "C": self.C}

    @classmethod
    def from_state_dict(cls, saved: dict) -> "LinearHead":
        return cls(weight=saved["weight"], bias=saved["bias"], C=float(saved["C"]))


# A class or label absent from a fold's training rows can never be predicted there: its logit sits
# this far below (single-label; multi-label: a label never seen is never on).
ABSENT_LOGIT = -30.0


def _fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    """One multinomial logistic regression on standardised rows -> (weight (K, D), bias (K,)); a
    binary task's one decision d is spread as logits (-d/2, d/2), whose softmax is its sigmoid."""
    from sklearn.linear_model import LogisticRegression
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, ABSENT_LOGIT)
    present = np.unique(y)
    if len(present) == 1:
        bias[present[0]] = 0.0
        return weight, bias
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # an unconverged lbfgs at max_iter is still a usable head
        model = LogisticRegression(C=C, max_iter=1000).fit(x, y)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight[present], bias[present] = coef, intercept
    return weight, bias


def _fit_per_label(x: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Several labels an image: one binary logistic regression a label (its logit a sigmoid's)."""
    from sklearn.linear_model import LogisticRegression
    weight, bias = np.zeros((y.shape[1], x.shape[1])), np.zeros(y.shape[1])
    for label in range(y.shape[1]):
        column = y[:, label]
        if column.min() == column.max():
            bias[label] = -ABSENT_LOGIT if column[0] else ABSENT_LOGIT
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=C, max_iter=1000).fit(x, column)
        weight[label], bias[label] = model.coef_[0], model.intercept_[0]
    return weight, bias


def _held_out_loss(logits: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    t = torch.from_numpy(logits)
    if multi_label:
        return float(F.binary_cross_entropy_with_logits(t, torch.from_numpy(y).double()))
    return float(F.cross_entropy(t, torch.from_numpy(y)))


def inner_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows) of a fold's training images for choosing C: stratified where every
    class has two images or more."""
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
    stratify = labels.ndim == 1 and np.bincount(labels).min(initial=2) >= 2 and \
        len(np.unique(labels)) <= INNER_HOLDOUT * len(labels)
    splitter = (StratifiedShuffleSplit if stratify else ShuffleSplit)(1, test_size=INNER_HOLDOUT, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels if stratify else None))


def fit_linear_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    candidates: tuple[float, ...] = C_CANDIDATES, seed: int = 0) -> LinearHead:
    """The head for training features (V, n, D) of n images (every view a training row) and their
    labels, (n,) class indices or (n, L) 0/1 rows; C chosen on an inner holdout of the n images."""
    multi_label = labels.ndim == 2
    views, n, dims = features.shape
    x_all = features.double().numpy()
    y = labels.numpy()
    fit_one = (lambda x, t, C: _fit_per_label(x, t, C)) if multi_label else \
        (lambda x, t, C: _fit_logistic(x, t, num_classes, C))

    def train(rows: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = x_all[:, rows].reshape(-1, dims)
        mean, std = x.mean(0), x.std(0) + 1e-6
        weight, bias = fit_one((x - mean) / std, np.concatenate([y[rows]] * views), C)
        return weight, bias, mean, std

    C = candidates[0]
    if len(candidates) > 1 and n >= 8:
        fit_rows, held_rows = inner_split(y, seed)
        losses = []
        for candidate in candidates:
            stopping.check()
            weight, bias, mean, std = train(fit_rows, candidate)
            # the held-out images scored as test-time augmentation scores them: their views' mean logits
            logits = np.mean([((x_all[v, held_rows] - mean) / std) @ weight.T + bias for v in range(views)], axis=0)
            losses.append(_held_out_loss(logits, y[held_rows], multi_label))
        C = candidates[int(np.argmin(losses))]
    weight, bias, mean, std = train(np.arange(n), C)
    raw_weight = weight / std                      # standardisation folded into the head
    raw_bias = bias - raw_weight @ mean
    return LinearHead(weight=torch.from_numpy(raw_weight).float(), bias=torch.from_numpy(raw_bias).float(), C=C)


def load_head_into(net: nn.Module, head: LinearHead) -> None:
    """Start a timm model's classifier from a fitted probe's head (its shapes must match)."""
    classifier = net.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.weight.shape != head.weight.shape:
        raise DataSourceError(f"the probe's head {tuple(head.weight.shape)} does not fit the classifier "
                              f"{getattr(classifier, 'weight', None) is not None and tuple(classifier.weight.shape)}")
    with torch.no_grad():
        classifier.weight.copy_(head.weight)
        classifier.bias.copy_(head.bias)
