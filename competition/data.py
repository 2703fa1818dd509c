"""What training code sees: the public folder as tensors, one preprocessing path, batched augmentation.

`load_public` is the only reader training code has. It reads `train.csv`, `test.csv` and
`competition.json` from a folder named `public` and nothing else; `PublicData` has no field
for test labels, so there is nowhere for held-out answers to go.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .config import Augmentation
from .errors import DataSourceError
from .sources import read_pixel_csv


@dataclass(frozen=True)
class PublicData:
    """Everything an entrant gets: labelled training images and unlabelled test images."""
    train_images: torch.Tensor      # (N, 1, H, W) uint8
    train_labels: torch.Tensor      # (N,) int64
    test_images: torch.Tensor       # (M, 1, H, W) uint8, row i is ImageId i + 1
    classes: tuple[str, ...]
    name: str

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_public(public_dir: Path) -> PublicData:
    """Read a prepared competition's public folder (with a binary cache beside each CSV)."""
    public_dir = Path(public_dir)
    if public_dir.name != "public":
        raise DataSourceError(f"{public_dir}: training code reads only a competition's public/ folder")
    metadata = load_metadata(public_dir)
    train_images, train_labels = _cached_csv(public_dir / "train.csv", with_labels=True)
    test_images, _ = _cached_csv(public_dir / "test.csv", with_labels=False)
    return PublicData(torch.from_numpy(train_images).unsqueeze(1), torch.from_numpy(train_labels),
                      torch.from_numpy(test_images).unsqueeze(1), tuple(metadata["classes"]), metadata["name"])


def _cached_csv(csv_path: Path, with_labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV once; later reads use a .npz beside it, keyed on the CSV's size and mtime."""
    cache = csv_path.with_suffix(".cache.npz")
    stat = csv_path.stat()
    stamp = np.array([stat.st_size, stat.st_mtime_ns], dtype=np.int64)
    if cache.is_file():
        try:
            with np.load(cache) as saved:
                if np.array_equal(saved["stamp"], stamp):
                    return saved["images"], saved["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass    # a truncated or corrupt cache is not trusted: parse the CSV again and rewrite it
    images, labels = read_pixel_csv(csv_path, with_labels)
    labels = np.zeros(0, np.int64) if labels is None else labels
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, labels=labels, stamp=stamp)
    tmp.replace(cache)
    return images, labels


def load_metadata(public_dir: Path) -> dict:
    """The competition.json beside the public files: name, classes, image size, split, fingerprint."""
    path = Path(public_dir) / "competition.json"
    if not path.is_file():
        raise DataSourceError(f"{public_dir}: not a prepared competition (no competition.json); run prepare first")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- one preprocessing path


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (images - mean) / std


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and std of the [0, 1] pixels of the training images (never of val or test)."""
    unit = to_unit(images)
    return float(unit.mean()), float(unit.std())


# ---------------------------------------------------------------- batched augmentation


def random_affine(batch: int, aug: Augmentation, device: torch.device, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """(B, 2, 3) affine matrices in grid_sample's normalised coordinates, one per image."""
    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(batch, device=device, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(aug.rotation))
    scale = 1 + uniform(aug.zoom)
    shear = uniform(aug.shear)
    shift = uniform(aug.shift) * 2, uniform(aug.shift) * 2     # normalised coordinates span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # sample-grid matrix = rotation @ shear / zoom: the output image is zoomed by `scale`
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (cos * shear - sin) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (sin * shear + cos) / scale
    theta[:, 0, 2], theta[:, 1, 2] = shift
    return theta


def elastic_field(batch: int, size: int, aug: Augmentation, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W, 2) smooth random displacements (Simard et al. 2003), in normalised coordinates."""
    noise = torch.rand(batch, 2, size, size, device=device, generator=generator) * 2 - 1
    sigma = max(aug.elastic_sigma * size, 0.5)
    radius = max(1, int(2 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    # separable Gaussian blur, each displacement channel on its own
    smooth = F.conv2d(noise.reshape(-1, 1, size, size), kernel.view(1, 1, 1, -1), padding=(0, radius))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(batch, 2, size, size)
    smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return smooth.permute(0, 2, 3, 1) * (aug.elastic * 2)


def augment(images: torch.Tensor, aug: Augmentation, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation, shift, zoom, shear (and elastic) of a whole (B, 1, H, W) float batch.

    Pixels are in [0, 1] with a zero background, so the zero padding of grid_sample is the
    background. One `grid_sample` call warps the whole batch on its device.
    """
    if aug.is_identity:
        return images
    batch, _, height, width = images.shape
    theta = random_affine(batch, aug, images.device, generator)
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    if aug.elastic:
        grid = grid + elastic_field(batch, height, aug, images.device, generator)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------- device-resident batches


class DeviceBatches:
    """An epoch iterator over tensors that already sit on the training device.

    Each epoch is a fresh `randperm` (seeded by seed and epoch number, so a run is
    reproducible). With `extra_images`, every batch takes `extra_share` of its rows from them
    (pseudo-labels) and the rest from the main set; an epoch is one pass over the main set.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, extra_images: torch.Tensor | None = None,
                 extra_labels: torch.Tensor | None = None, extra_share: float = 0.0) -> None:
        self.images, self.labels = images, labels
        self.extra_images, self.extra_labels = extra_images, extra_labels
        has_extra = extra_images is not None and len(extra_images) > 0
        self.extra_per_batch = int(round(batch_size * extra_share)) if has_extra else 0
        self.main_per_batch = batch_size - self.extra_per_batch
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next epoch's order that of epoch `epoch` (a resumed fit starts mid-way)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.main_per_batch)

    def _order(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(n, device=self.images.device)
        return torch.randperm(n, device=self.images.device, generator=generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.images.device)
        generator.manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = self._order(len(self.images), generator)
        extra_order = None
        if self.extra_per_batch:
            # cycle through the pseudo-labelled rows as often as the epoch needs
            repeats = math.ceil(len(self) * self.extra_per_batch / len(self.extra_images))
            extra_order = torch.cat([self._order(len(self.extra_images), generator) for _ in range(repeats)])
        for step in range(len(self)):
            rows = order[step * self.main_per_batch:(step + 1) * self.main_per_batch]
            images, labels = self.images[rows], self.labels[rows]
            if extra_order is not None:
                extra_rows = extra_order[step * self.extra_per_batch:(step + 1) * self.extra_per_batch]
                images = torch.cat([images, self.extra_images[extra_rows]])
                labels = torch.cat([labels, self.extra_labels[extra_rows]])
            yield images, labels
