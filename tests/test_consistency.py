"""Consistency training on the unlabelled test images: FixMatch and a mean teacher."""

from __future__ import annotations

import pytest
import torch

from competition.config import Augmentation, RunConfig
from competition.fitting.data import cutout, load_public, strong
from competition.errors import ConfigError
from competition.fitting.members import fold_data
from competition.fitting.policy import resolve
from competition.fitting.predict import IDENTITY, load_classifier, predict
from competition.fitting.train import train_model
from competition.fitting.device import training_device


def test_cutout_zeroes_one_square_of_the_side_share_in_each_image():
    torch.manual_seed(0)
    images = torch.ones(64, 1, 28, 28)
    erased = (cutout(images, side=0.25) == 0).sum(dim=(1, 2, 3))
    # a 7x7 square (fewer pixels where it overhangs the border), never more
    assert erased.max() <= 49 and erased.min() > 0 and (erased == 49).any()


def test_the_strong_view_doubles_every_warp_of_the_weak_one():
    weak = Augmentation(rotation=10, shift=0.08, zoom=0.1, shear=0.1, hflip="off", crop=0.0)
    assert (strong(weak).rotation, strong(weak).shift, strong(weak).zoom, strong(weak).shear) == (20, 0.16, 0.2, 0.2)


@pytest.fixture
def digits_fold(tmp_path, tiny_config, prepared_digits):
    paths = prepared_digits
    public = load_public(paths.public)
    return public, tiny_config, paths


@pytest.mark.parametrize("method", ["fixmatch", "mean-teacher"])
def test_a_consistency_member_trains_on_the_test_images_and_reloads_to_the_same_logits(tmp_path, digits_fold,
                                                                                     method):
    public, tiny_config, _ = digits_fold
    cfg = resolve(tiny_config.replace(consistency=method, epochs=2), stored_size=8, channels=1, labelled=len(public.train_labels),
                  hflip=False)
    data, _ = fold_data(public, cfg, 0, training_device())
    trained = train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "m", unlabelled=public.test_images)
    plain = train_model(data, cfg.replace(consistency="none"), "fastnet", seed=0, out_dir=tmp_path / "p")
    # the same seed and labelled batches: only the unlabelled images' loss can make them differ
    assert not torch.equal(predict(plain.module, data.val_images, IDENTITY),
                           predict(trained.module, data.val_images, IDENTITY))
    reloaded = load_classifier(tmp_path / "m" / "best.ckpt", training_device())
    assert torch.equal(predict(reloaded, data.val_images, IDENTITY), predict(trained.module, data.val_images, IDENTITY))
    saved = torch.load(tmp_path / "m" / "best.ckpt", weights_only=False)["state_dict"]
    teacher = [k for k in saved if k.startswith("teacher.")]
    if method == "mean-teacher":    # the teacher is saved, and is an average: not the student's weights
        assert teacher and any(not torch.equal(saved[k], saved[k.replace("teacher.module.", "net.")])
                               for k in teacher if k.startswith("teacher.module.") and "num_batches" not in k)
    else:
        assert not teacher


def test_consistency_without_unlabelled_images_is_refused(tmp_path, digits_fold):
    public, tiny_config, _ = digits_fold
    cfg = resolve(tiny_config.replace(consistency="fixmatch", epochs=1), stored_size=8, channels=1,
                  labelled=len(public.train_labels), hflip=False)
    data, _ = fold_data(public, cfg, 0, training_device())
    with pytest.raises(ConfigError, match="trains on unlabelled images; none were given"):
        train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "m")


def test_consistency_is_refused_for_several_labels_an_image():
    with pytest.raises(ConfigError, match="consistency = fixmatch is written for one class an image"):
        resolve(RunConfig(consistency="fixmatch"), stored_size=28, channels=1, labelled=100, hflip=False, multi_label=True)
