"""Prediction folds each convolution's batch norm into its weights: the same logits, to float rounding."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from competition.fitting.models import create_model, list_models
from competition.fitting.module import Classifier, InputSpec, NetSpec, Optimisation
from competition.fitting.predict import TTA_VIEWS, fold_batch_norms, predict

TIMM = ["timm/test_efficientnet", "timm/resnet10t"] if importlib.util.find_spec("timm") else []


def with_learnt_statistics(net: nn.Module, seed: int = 0, positive_scales: bool = False) -> nn.Module:
    """Batch norms whose statistics and affine parameters are far from the identity a fresh net has,
    so a fold that dropped or misapplied one would change the logits; scales of either sign unless
    `positive_scales` (a trained net's are mostly positive)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in net.modules():
        if isinstance(layer, nn.BatchNorm2d):
            shape = layer.running_mean.shape
            layer.running_mean.copy_(torch.randn(shape, generator=generator) * 0.5)
            layer.running_var.copy_(torch.rand(shape, generator=generator) * 2 + 0.2)
            scale = torch.randn(shape, generator=generator)
            layer.weight.data.copy_(scale.abs() + 0.1 if positive_scales else scale)
            layer.bias.data.copy_(torch.randn(shape, generator=generator))
    return net.eval()


def plain_batch_norms(net: nn.Module) -> int:
    return sum(type(layer) is nn.BatchNorm2d for layer in net.modules())


@pytest.mark.parametrize("positive_scales", [False, True], ids=["scales of either sign", "positive scales"])
@pytest.mark.parametrize("name", list_models() + TIMM)
def test_folded_batch_norms_give_every_models_logits_and_leave_the_model_alone(name, positive_scales):
    channels = 3 if name.startswith("timm/") or name == "resnet-small" else 1
    net = with_learnt_statistics(create_model(name, num_classes=5, in_chans=channels, image_size=(28, 28)),
                                 positive_scales=positive_scales)
    net = net.to(memory_format=torch.channels_last)
    images = torch.randn(6, channels, 28, 28).contiguous(memory_format=torch.channels_last)
    before = plain_batch_norms(net)
    with torch.inference_mode():
        expected = net(images)
        folded = fold_batch_norms(net, torch.channels_last)
        got = folded(images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert plain_batch_norms(net) == before                    # the original keeps its layers
    pooling_first = name.startswith("fastnet") or name == "resnet-small"
    if name == "notmnist-winner" or pooling_first and positive_scales:
        assert before and plain_batch_norms(folded) == 0     # conv(-pool)-bn-relu everywhere: all folded
    if pooling_first and not positive_scales:
        # at 28 px two stages (28 and 14 px maps) pool before the norm: a negative scale keeps those two
        assert plain_batch_norms(folded) == 2
    if name == "vgg-bn":
        assert plain_batch_norms(folded) == before           # its batch norms follow ReLU and pooling: none foldable
    if name == "timm/test_efficientnet":
        # timm's BatchNormAct2d applies its activation too: left unfolded, and the logits still match
        assert any(type(m).__name__ == "BatchNormAct2d" for m in folded.modules())


def test_predict_gives_the_same_logits_folded_or_not_in_every_view():
    torch.manual_seed(0)
    module = Classifier(net=NetSpec(model="fastnet", num_classes=4, in_chans=1, image_size=(12, 12)),
                        inputs=InputSpec(mean=(0.3,), std=(0.2,)),
                        optimisation=Optimisation(lr=1e-3, weight_decay=0.0, label_smoothing=0.0, schedule="constant",
                                                  epochs=1, steps_per_epoch=1))
    with_learnt_statistics(module.net)
    images = torch.randint(0, 256, (50, 1, 12, 12), dtype=torch.uint8)
    folded = predict(module, images, TTA_VIEWS, batch_size=16)
    plain = predict(module, images, TTA_VIEWS, batch_size=16, fold=False)
    assert folded.shape == (len(TTA_VIEWS), 50, 4)
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-4)
    assert plain_batch_norms(module.net) == 4                 # predicting changed nothing in the module


@pytest.mark.parametrize("negative_channel", [False, True], ids=["scales all positive", "one scale negative"])
def test_a_batch_norm_after_a_max_pool_folds_through_it_unless_a_channel_is_scaled_negative(negative_channel):
    """conv, max-pool, norm: the norm moves before the pool (and folds) only where it keeps the order
    of values, so the pool still picks the same pixel; a negative scale would turn the max into a min."""
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(6), nn.ReLU())
    with_learnt_statistics(net)
    norm = net[2]
    norm.weight.data.abs_().add_(0.1)
    if negative_channel:
        norm.weight.data[3] = -0.5
    images = torch.randn(5, 1, 10, 10)
    with torch.inference_mode():
        folded = fold_batch_norms(net)
        torch.testing.assert_close(folded(images), net(images), rtol=1e-4, atol=1e-4)
    assert plain_batch_norms(folded) == (1 if negative_channel else 0)
