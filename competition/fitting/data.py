"""What training code sees: the public folder as tensors, one preprocessing path, batched augmentation.

`load_public` is the only reader training code has. It reads the prepared image arrays
(`train_images.npy`, `test_images.npy`: (N, H, W, C) uint8, memory-mapped, so a set larger than
memory is read as batches need it), `labels.npz` and `competition.json`, from a folder named
`public` and nothing else; `PublicData` has no field for test labels, so there is nowhere for
held-out answers to go.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..config import WARPS, Augmentation
from ..errors import ConfigError, DataSourceError
from ..prepared import PreparedCompetition, read_labels, read_prepared


@dataclass(frozen=True, kw_only=True)
class PublicData:
    """Everything an entrant gets: labelled training images and unlabelled test images."""
    train_images: torch.Tensor      # (N, C, H, W) uint8, a view of the (N, H, W, C) memory map
    train_labels: torch.Tensor      # (N,) int64 class indices
    test_images: torch.Tensor       # (M, C, H, W) uint8, in the submission's id order
    competition: PreparedCompetition

    @property
    def name(self) -> str:
        return self.competition.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.competition.classes

    @property
    def hflip(self) -> bool:
        """The competition says mirrored images keep their class."""
        return self.competition.hflip

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width)"""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_public(public_dir: Path) -> PublicData:
    """Read a prepared competition's public folder: its image arrays, labels and competition.json."""
    public_dir = Path(public_dir)
    if public_dir.name != "public":
        raise DataSourceError(f"{public_dir}: training code reads only a competition's public/ folder")
    competition = read_prepared(public_dir)
    labels = read_labels(public_dir, ("train_labels",))
    return PublicData(train_images=read_image_array(public_dir / "train_images.npy"),
                      train_labels=torch.from_numpy(labels["train_labels"]),
                      test_images=read_image_array(public_dir / "test_images.npy"), competition=competition)


def read_image_array(path: Path) -> torch.Tensor:
    """(N, H, W, C) uint8 on disk -> an (N, C, H, W) view, without reading it: copy-on-write
    mapped, so nothing can write the file and torch gets the writable array it asks for."""
    try:
        images = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise DataSourceError(f"{path}: unreadable ({e}); run `python -m competition prepare` again") from e
    return torch.from_numpy(images).permute(0, 3, 1, 2)


# ---------------------------------------------------------------- one preprocessing path


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel standardisation with the training set's statistics."""
    shape = (1, -1, 1, 1)
    return (images - images.new_tensor(mean).view(shape)) / images.new_tensor(std).view(shape)


def pixel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the [0, 1] pixels of (N, C, H, W) training images (never of
    val or test), accumulated in chunks so a large set needs no float copy of itself."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(8192):
        unit = to_unit(chunk).double()
        total += unit.sum(dim=(0, 2, 3))
        squares += unit.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


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


def random_crop(batch: int, least_area: float, device: torch.device, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """(B, 3, 3) sampling matrices of random resized crops: each keeps an area share in
    [least_area, 1] at an aspect ratio in [3/4, 4/3], anywhere inside the image, resized to the whole."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + torch.rand(batch, device=device, generator=generator) * (high - low)

    area = uniform(least_area, 1.0)
    ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    crop = torch.zeros(batch, 3, 3, device=device)
    crop[:, 0, 0], crop[:, 1, 1], crop[:, 2, 2] = width, height, 1.0
    crop[:, 0, 2] = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - width)
    crop[:, 1, 2] = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - height)
    return crop


def to_normalised(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A pixel-space warp in grid_sample's coordinates, which span 2 across either side: without
    this a rotation of a non-square image would shear it."""
    theta = theta.clone()
    theta[:, 0, 1] *= height / width
    theta[:, 1, 0] *= width / height
    return theta


def elastic_field(batch: int, height: int, width: int, aug: Augmentation, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W, 2) smooth random displacements (Simard et al. 2003), in normalised coordinates."""
    noise = torch.rand(batch, 2, height, width, device=device, generator=generator) * 2 - 1
    sigma = max(aug.elastic_sigma * min(height, width), 0.5)
    radius = max(1, int(2 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    # separable Gaussian blur, each displacement channel on its own
    smooth = F.conv2d(noise.reshape(-1, 1, height, width), kernel.view(1, 1, 1, -1), padding=(0, radius))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(batch, 2, height, width)
    smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return smooth.permute(0, 2, 3, 1) * (aug.elastic * 2)


def augment(images: torch.Tensor, aug: Augmentation, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation, shift, zoom, shear (and elastic, and mirror) of a whole (B, C, H, W) float batch.

    Grey digits and letters have a zero background, which the zero padding of grid_sample
    matches; photos are padded with their border pixels instead. One `grid_sample` call warps
    the whole batch on its device.
    """
    if aug.is_identity:
        return images
    unresolved = [name for name in WARPS if getattr(aug, name) == "auto"]
    if unresolved:
        raise ConfigError(f"augment.{', '.join(unresolved)} = auto: policy.resolve makes them concrete "
                          f"(they depend on whether a backbone is fine-tuned) before a batch is warped")
    batch, channels, height, width = images.shape
    if aug.hflip == "on":
        # mirror a random half of the batch: the flip is a sign on the x axis of the warp
        mirror = torch.rand(batch, device=images.device, generator=generator) < 0.5
    theta = to_normalised(random_affine(batch, aug, images.device, generator), height, width)
    if aug.hflip == "on":
        theta[:, :, 0] = torch.where(mirror[:, None], -theta[:, :, 0], theta[:, :, 0])
    if aug.crop not in (0, "auto"):      # auto is resolved per competition; unresolved, it is off
        # sample the warped image inside a random crop: crop(warp(output coordinates))
        homogeneous = torch.cat([theta, theta.new_tensor([0.0, 0.0, 1.0]).expand(batch, 1, 3)], dim=1)
        theta = (random_crop(batch, float(aug.crop), images.device, generator) @ homogeneous)[:, :2]
    grid = F.affine_grid(theta, [batch, channels, height, width], align_corners=False)
    if aug.elastic:
        grid = grid + elastic_field(batch, height, width, aug, images.device, generator)
    padding = "zeros" if channels == 1 else "border"
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def strong(aug: Augmentation) -> Augmentation:
    """The strong view of consistency training: the same warps at twice their ranges."""
    return dataclasses.replace(aug, enabled=True, rotation=2 * aug.rotation, shift=2 * aug.shift,
                               zoom=2 * aug.zoom, shear=2 * aug.shear)


def cutout(images: torch.Tensor, side: float = 0.25) -> torch.Tensor:
    """Zero one random square of `side` x the image's side in each image of a (B, C, H, W) batch
    (DeVries & Taylor 2017; FixMatch's strong view ends with it), anywhere its centre falls. Squares
    of half the side (FixMatch's) erase whole strokes of a digit: on an mnist-5k fold FixMatch then
    validated at 0.972 against 0.985 with a quarter and 0.986 without consistency training."""
    batch, _, height, width = images.shape
    centre_y = torch.rand(batch, 1, 1, device=images.device) * height
    centre_x = torch.rand(batch, 1, 1, device=images.device) * width
    ys = torch.arange(height, device=images.device).view(1, -1, 1)
    xs = torch.arange(width, device=images.device).view(1, 1, -1)
    inside = ((ys - centre_y).abs() < side * height / 2) & ((xs - centre_x).abs() < side * width / 2)
    return images.masked_fill(inside[:, None], 0.0)


# ---------------------------------------------------------------- device-resident batches


class DeviceBatches:
    """An epoch iterator over image tensors: resident on the training device, or in host memory
    (pinned on a GPU) with each batch copied over as it is drawn, when the set is too big.

    Each epoch is a fresh `randperm` (seeded by seed and epoch number, so a run is
    reproducible). With `extra_images`, every batch takes `extra_share` of its rows from them
    (pseudo-labels) and the rest from the main set; an epoch is one pass over the main set.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, extra_images: torch.Tensor | None = None,
                 extra_labels: torch.Tensor | None = None, extra_share: float = 0.0,
                 device: torch.device | None = None) -> None:
        self.images, self.labels = images, labels
        self.device = images.device if device is None else torch.device(device)
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
        return torch.randperm(n, generator=generator).to(self.images.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # drawn on the CPU whatever the device: the same order for images resident on a GPU, batched
        # from host memory, or on the CPU (a GPU's generator would give another)
        generator = torch.Generator()
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
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def placement(images: torch.Tensor, device: torch.device, share: float = 0.4) -> str:
    """"device" when the images (uint8) fit in `share` of the device's free memory, else "host"
    (batched from pinned host memory). On the CPU the two are the same memory: "device"."""
    if device.type != "cuda":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    return "device" if images.numel() * images.element_size() <= share * free else "host"


def to_placement(images: torch.Tensor, device: torch.device, where: str) -> torch.Tensor:
    """Images moved to the training device, or pinned in host memory for batch-by-batch copies."""
    if where == "device":
        return images.to(device)
    return images.pin_memory() if device.type == "cuda" else images
