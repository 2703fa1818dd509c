"""Batched augmentation on the device, and the device-resident batch iterator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from competition.config import Augmentation
from competition.fitting.data import (DeviceBatches, augment, normalize, pixel_stats, placement, to_normalised, to_placement,
                              to_unit)
from competition.fitting.predict import IDENTITY, TTA_VIEWS, View, shift, tta_views


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
    warps = Augmentation().resolved(hflip=False, fine_tuning=True)
    a = augment(x, warps, torch.Generator().manual_seed(1))
    b = augment(x, warps, torch.Generator().manual_seed(1))
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


# ---------------------------------------------------------------- colour, rectangles, mirrors, statistics


def test_colour_rectangles_keep_their_shape_and_channels_stay_apart():
    x = torch.zeros(8, 3, 12, 20)
    x[:, 0, 4:8, 8:12] = 1.0                        # a red square; green and blue empty
    y = augment(x, Augmentation(rotation=15, shift=0.1, zoom=0.1, shear=0.1, elastic=0.05))
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert y[:, 1:].abs().max() == 0                # warping never moves ink between channels


def test_a_rotation_of_a_rectangle_is_a_rotation_not_a_shear():
    """A 90-degree turn of a wide 10x30 image makes its horizontal bar vertical: thin in x, the image's
    height in y. Uncorrected, grid_sample's coordinates would make it a 5x5 smear."""
    quarter_turn = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    wide = torch.zeros(1, 1, 10, 30)
    wide[0, 0, 4:6, 5:25] = 1.0
    grid = F.affine_grid(to_normalised(quarter_turn, 10, 30), [1, 1, 10, 30], align_corners=False)
    turned = F.grid_sample(wide, grid, align_corners=False)[0, 0]
    rows, cols = torch.nonzero(turned > 0.5, as_tuple=True)
    assert cols.max() - cols.min() <= 2             # what is left of the bar is vertical: thin in x ...
    assert rows.max() - rows.min() >= 8             # ... and spans the image's height
    assert torch.equal(to_normalised(quarter_turn, 30, 30), quarter_turn)     # a square needs no correction


def test_hflip_on_mirrors_about_half_of_a_batch_exactly():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 6, 10)
    y = augment(x, Augmentation(rotation=0, shift=0, zoom=0, shear=0, hflip="on"))
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 16 < int(mirrored.sum()) < 48


def test_hflip_auto_follows_the_competition():
    assert Augmentation().resolved(hflip=True).hflip == "on"
    assert Augmentation().resolved(hflip=False).hflip == "off"
    assert Augmentation(hflip="off").resolved(hflip=True).hflip == "off"


def test_pixel_statistics_are_per_channel():
    images = torch.zeros(4, 3, 5, 5, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 2] = 255
    mean, std = pixel_stats(images)
    assert mean == pytest.approx((0.0, 1.0, 0.5)) and std == pytest.approx((0.0, 0.0, 0.5), abs=1e-6)
    x = normalize(to_unit(images), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-2.0, 1.0, 0.5]))


def test_on_a_cpu_images_stay_where_they_are_however_large():
    """On the CPU "device" and host memory are one memory: nothing is copied batch by batch (the
    host-batched GPU path is tests/test_gpu.py's)."""
    images = torch.zeros(8, 1, 2, 2, dtype=torch.uint8)
    assert placement(images, torch.device("cpu")) == placement(images, torch.device("cpu"), 0.0) == "device"
    assert to_placement(images, torch.device("cpu"), "host").data_ptr() == images.data_ptr()


def test_mirrored_views_exist_only_where_the_competition_allows_mirrors():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)
    assert torch.equal(shift(x, View(mirror=True)), x.flip(-1))
    assert torch.equal(shift(x, View(1, 0, mirror=True)), shift(x.flip(-1), View(1, 0)))
    plain, photos = tta_views(False), tta_views(True)
    assert plain == TTA_VIEWS and not any(v.mirror for v in plain) and len({v.name for v in plain}) == 9
    # photos: the image and its mirror, no zero-filled shifts
    assert photos == (View(), View(mirror=True)) and photos[0] == IDENTITY[0]


def test_random_resized_crops_stay_inside_the_image_and_keep_at_least_their_share_of_it():
    from competition.fitting.data import random_crop
    crop = random_crop(4096, 0.35, torch.device("cpu"), torch.Generator().manual_seed(0))
    width, height = crop[:, 0, 0], crop[:, 1, 1]
    assert (width * height >= 0.35 - 1e-6).all() and (width <= 1).all() and (height <= 1).all()
    assert (crop[:, 0, 2].abs() + width <= 1 + 1e-6).all() and (crop[:, 1, 2].abs() + height <= 1 + 1e-6).all()
    assert width.min() < 0.65 and (width * height).max() > 0.95             # the whole range is drawn


def test_crops_are_on_when_fine_tuning_and_off_from_scratch_unless_set():
    from competition.config import FINE_TUNE_CROP
    assert Augmentation().resolved(hflip=True, fine_tuning=True).crop == FINE_TUNE_CROP
    assert Augmentation().resolved(hflip=True).crop == 0.0
    assert Augmentation(crop=0.5).resolved(hflip=False).crop == 0.5


def test_rotation_zoom_and_shear_are_on_when_fine_tuning_and_off_from_scratch_unless_set():
    from competition.config import WARPS, ConfigError

    def warps(aug: Augmentation, fine_tuning: bool) -> dict:
        resolved = aug.resolved(hflip=True, fine_tuning=fine_tuning)
        return {name: getattr(resolved, name) for name in WARPS}

    assert warps(Augmentation(), fine_tuning=True) == WARPS == {"rotation": 10.0, "zoom": 0.1, "shear": 0.1}
    assert warps(Augmentation(), fine_tuning=False) == {"rotation": 0.0, "zoom": 0.0, "shear": 0.0}
    assert warps(Augmentation(rotation=4.0), fine_tuning=False)["rotation"] == 4.0
    assert Augmentation().resolved(hflip=False).shift == 0.08              # shifts stay on from scratch
    with pytest.raises(ConfigError, match="augment.rotation, zoom, shear = auto: policy.resolve"):
        augment(_batch(size=8), Augmentation())             # unresolved warps are refused, not guessed
