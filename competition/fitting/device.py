"""The training device and the precision a member trains in on it."""

from __future__ import annotations

import torch

from ..config import RunConfig


def training_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 in hardware: a CUDA GPU, or a CPU with AVX512-BF16 or AMX
    (emulated bfloat16 on other CPUs is slower than float32)."""
    if device.type == "cuda":
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")     # private, hence the getattr
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def precision_for(cfg: RunConfig, device: torch.device) -> str:
    """`auto`: bf16 autocast where the hardware has it, float32 elsewhere; and float32 for timm
    models on a CPU. The project's own dense-conv nets train 1.3-2x faster in bf16 on a Zen 4 CPU
    (accuracy within noise), but timm's depthwise-conv backbones train 1.7x slower there
    (EfficientNet-Lite0 at 96 px: 63 against 106 images/s)."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cpu" and any(m.startswith("timm/") for m in cfg.models):
        return "32-true"
    return "bf16-mixed" if native_bf16(device) else "32-true"
