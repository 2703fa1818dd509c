"""Every registry model builds and runs on grey and colour inputs of every size a competition may have."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from competition.errors import ConfigError
from competition.fitting.models import create_model, list_models
from competition.fitting.policy import default_model


def test_registry_holds_every_seed_model_and_both_defaults():
    assert {"logreg", "mlp", "udacity-cnn", "lenet5", "vgg-bn", "notmnist-winner", "fastnet", "fastnet-wide",
            "resnet-small"} <= set(list_models())
    assert list_models("vgg*") == ["vgg-bn"]


@pytest.mark.parametrize("size", [(28, 28), (8, 8), (32, 32), (12, 20)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list_models())
def test_model_maps_a_batch_to_finite_logits(name, channels, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=channels, image_size=size)
    model.train()
    logits = model(torch.randn(4, channels, *size))
    assert logits.shape == (4, 7) and torch.isfinite(logits).all()
    logits.sum().backward()


def test_auto_is_the_grey_or_the_colour_default_and_wider_for_large_grey_sets():
    assert default_model(1) == "fastnet" and default_model(3) == "resnet-small"
    assert default_model(1, labelled=60_000) == "fastnet-wide"
    assert default_model(3, labelled=60_000) == "resnet-small"


def test_timm_models_need_timm_and_say_so():
    if importlib.util.find_spec("timm") is not None:
        model = create_model("timm/resnet18", num_classes=5, in_chans=3, image_size=32)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    else:
        with pytest.raises(ConfigError, match=r"needs timm: pip install timm"):
            create_model("timm/resnet18")


def test_unknown_model_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'resnet-9000'; known: .*fastnet"):
        create_model("resnet-9000")


def test_fastnet_wide_is_fastnet_at_twice_the_width():
    narrow, wide = create_model("fastnet"), create_model("fastnet-wide")
    assert type(narrow) is type(wide)
    widths = [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [2 * m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in create_model("fastnet-wide", widths=(8, 8, 8)).modules()
            if isinstance(m, torch.nn.Conv2d)] == [8, 8, 8, 8]


@pytest.mark.parametrize("name", ["fastnet", "fastnet-wide"])
def test_fastnet_pools_before_its_batch_norms_on_maps_of_14_px_or_more_and_after_them_below(name):
    from torch import nn

    def order(image_size: int, **kwargs) -> list[str]:
        net = create_model(name, num_classes=10, in_chans=1, image_size=image_size, **kwargs)
        return [type(layer).__name__ for layer in net.features.modules()
                if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))]

    pool_first = ["Conv2d", "MaxPool2d", "BatchNorm2d"]
    pool_after = ["Conv2d", "BatchNorm2d", "MaxPool2d"]
    tail = ["Conv2d", "BatchNorm2d"] * 2
    assert order(28) == pool_first * 2 + tail                     # maps of 28 and 14 px
    assert order(20) == pool_first + pool_after + tail            # 20 px, then 10
    assert order(8) == pool_after * 2 + tail                      # digits: 8 and 4 px
    assert order(8, pool_first=True) == pool_first * 2 + tail
    assert order(28, pool_first=False) == pool_after * 2 + tail


def test_resnet_small_pools_before_the_norm_of_each_stage_whose_map_is_14_px_or_more():
    from torch import nn
    net = create_model("resnet-small", num_classes=8, in_chans=3, image_size=30)      # stage maps 30, 15, 7
    stages = [m for m in net.features if isinstance(m, nn.Sequential) and any(isinstance(x, nn.Conv2d) for x in m)]
    kinds = [[type(x).__name__ for x in stage] for stage in stages]
    assert kinds[0] == ["Conv2d", "BatchNorm2d", "ReLU"]                               # the stem, at full size
    assert kinds[1] == kinds[2] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]      # 30 and 15 px
    assert kinds[3] == ["Conv2d", "BatchNorm2d", "ReLU"]                               # 7 px: pooled after
    assert isinstance(net.features[6], nn.MaxPool2d)
