"""Batched augmentation on the device, and the device-resident batch iterator."""

from __future__ import annotations

import torch

from competition.config import Augmentation
from competition.data import DeviceBatches, augment, to_unit


def _batch(n=16, size=28):
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 4: 3 * size // 4, size // 2 - 1: size // 2 + 1] = 1.0
    return x


def test_augmentation_keeps_shape_range_and_changes_images():
    x = _batch()
    y = augment(x, Augmentation(rotation=15, shift=0.08, zoom=0.1, shear=0.1, elastic=0.05))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(x, y)


def test_disabled_augmentation_is_the_identity():
    x = _batch()
    assert augment(x, Augmentation(rotation=0, shift=0, zoom=0, shear=0, elastic=0)) is x
    assert augment(x, Augmentation(enabled=False)) is x


def _centre_of_mass(x):
    weights = x.sum(dim=(1, 2))                                     # (B, W) ink per column
    columns = torch.arange(x.shape[-1], dtype=x.dtype)
    return (weights * columns).sum(-1) / weights.sum(-1)


def test_pure_shift_moves_the_ink_without_losing_it():
    x = _batch(n=64)
    y = augment(x, Augmentation(rotation=0, shift=0.07, zoom=0, shear=0), torch.Generator().manual_seed(0))
    # the ink is kept (bilinear resampling of a shift loses none inside the frame) ...
    assert torch.allclose(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.05)
    # ... and moved: sideways by up to 0.07 x 28 = 2 px, differently per image
    moved = (_centre_of_mass(y) - _centre_of_mass(x)).abs()
    assert moved.max() > 0.5 and moved.max() <= 0.07 * 28 + 0.1
    assert len(set(moved.round(decimals=2).tolist())) > 10


def test_augmentation_with_a_seeded_generator_is_reproducible_and_works_on_8px():
    x = _batch(size=8)
    a = augment(x, Augmentation(), torch.Generator().manual_seed(1))
    b = augment(x, Augmentation(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (16, 1, 8, 8)


def test_batches_cover_every_row_once_per_epoch_and_reshuffle():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10)
    batches = DeviceBatches(images, labels, batch_size=4, shuffle=True, seed=0)
    first = torch.cat([y for _, y in batches])
    second = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, second)


def test_pseudo_rows_fill_the_requested_share_of_each_batch():
    images, labels = torch.zeros(12, 1, 2, 2, dtype=torch.uint8), torch.zeros(12, dtype=torch.long)
    extra, extra_labels = torch.ones(5, 1, 2, 2, dtype=torch.uint8), torch.ones(5, dtype=torch.long)
    batches = DeviceBatches(images, labels, batch_size=8, shuffle=True, extra_images=extra,
                            extra_labels=extra_labels, extra_share=0.25)
    for x, y in batches:
        assert len(y) == 8 and int(y.sum()) == 2
        assert torch.equal(x.flatten(1)[:, 0].long(), y)
    assert len(batches) == 2


def test_to_unit_scales_uint8_to_the_unit_interval():
    assert to_unit(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]
