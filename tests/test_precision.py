"""Lower precision where the hardware multiplies it natively, and never for the augmentation's geometry."""

from __future__ import annotations

import torch

from competition.config import Augmentation, RunConfig
from competition.fitting.module import Classifier
from competition.fitting.device import precision_for
from conftest import resolved

CPU = torch.device("cpu")


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_hardware(monkeypatch):
    cfg = RunConfig()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert precision_for(cfg, CPU) == "32-true"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision_for(cfg, CPU) == "bf16-mixed"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert precision_for(cfg, CPU) == "bf16-mixed"
    assert precision_for(cfg.replace(precision="32-true"), CPU) == "32-true"
    assert precision_for(cfg, torch.device("cuda")) == "bf16-mixed"


def test_augmentation_and_normalisation_stay_float32_under_bf16_autocast():
    cfg = resolved(RunConfig(augment=Augmentation(rotation=10.0, zoom=0.1, shear=0.1, hflip="off", crop=0.0)))
    module = Classifier.from_config(cfg, model="fastnet", num_classes=10, image_shape=(1, 28, 28),
                                    mean=(0.13,), std=(0.31,), steps_per_epoch=10)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(3)
    plain = module.preprocess(images, train=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        autocast = module.preprocess(images, train=True)
    assert autocast.dtype == torch.float32
    assert torch.equal(plain, autocast)
