"""Every registry model builds and runs on 28x28 and 8x8 inputs."""

from __future__ import annotations

import pytest
import torch

from competition.errors import ConfigError
from competition.models import create_model, list_models


def test_registry_holds_every_seed_model_and_the_default():
    assert {"logreg", "mlp", "udacity-cnn", "lenet5", "vgg-bn", "notmnist-winner", "fastnet"} <= set(list_models())
    assert list_models("vgg*") == ["vgg-bn"]


@pytest.mark.parametrize("size", [28, 8])
@pytest.mark.parametrize("name", list_models())
def test_model_maps_a_batch_to_finite_logits(name, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=size)
    model.train()
    logits = model(torch.randn(4, 1, size, size))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.sum().backward()


def test_unknown_model_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet-9000'; known: .*fastnet"):
        create_model("resnet-9000")
