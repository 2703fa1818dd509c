"""Every `auto` of a run made concrete, in one place: the model, the pseudo-label rounds, the image size.

`resolve` runs once, before the run folder is named; the run's config.json holds what it chose,
so `run --config submissions/RUN/config.json` repeats it with nothing left to choose.
"""

from __future__ import annotations

from .config import RunConfig
from .errors import ConfigError
from .images import SizeRequest
from .models import AUTO, TIMM_PREFIX, pretrained_config

# From this many labelled images a run's `auto` settings spend the time on capacity instead of a
# pseudo-label round: on fashion-mnist (60,000) the round added +0.03 pp out of fold for 55% of the
# run's time, while a 2x wider fastnet gained +1.4 pp on a validation fold (benchmarks/README.md §9).
# Below it (mnist-5k, digits) the round paid +0.23 pp and the wider net nothing clear.
LARGE_DATA = 20_000

# The largest side `image_size = auto` stores photos of varied sizes at (benchmarks/README.md §11).
# A from-scratch net on a CPU: 64 px (resnet-small trains at 250 images/s there, 115 at 96 px). A
# pretrained backbone on a CPU: 160 px, where fine-tuned EfficientNet-Lite0 scored 0.955 on a Dogs vs.
# Cats fold against 0.923 at 128 and 0.84 at 96; its own 224 px trains ~2.5x slower than 160.
SCRATCH_LIMIT = {"cpu": 64, "cuda": 128}
PRETRAINED_CPU_LIMIT = 160


def default_model(channels: int, labelled: int = 0) -> str:
    """`auto`: the small conv net for grey digits and letters (twice as wide from `LARGE_DATA`
    labelled images, where it stops underfitting), the residual net for colour."""
    if channels != 1:
        return "resnet-small"
    return "fastnet-wide" if labelled >= LARGE_DATA else "fastnet"


# The wider sibling a time limit may train instead when the model was left to `auto`: at equal or
# less time than more seeds of the narrow net it scored higher out of fold (benchmarks/README.md §14).
WIDER = {"fastnet": "fastnet-wide"}


def wider_models(models: tuple[str, ...]) -> tuple[str, ...] | None:
    """The models with each swapped for its wider sibling; None when none has one."""
    if not any(m in WIDER for m in models):
        return None
    return tuple(dict.fromkeys(WIDER.get(m, m) for m in models))


def resolve_models(models: tuple[str, ...], channels: int, labelled: int = 0) -> tuple[str, ...]:
    return tuple(dict.fromkeys(default_model(channels, labelled) if m == AUTO else m for m in models))


def resolve(cfg: RunConfig, *, channels: int, labelled: int, hflip_safe: bool,
            multi_label: bool = False) -> RunConfig:
    """The model by channels and the labelled count, the pseudo-label rounds by the count, the
    augmentation by the competition (`hflip_safe`: a mirrored image keeps its class) and by whether
    a pretrained backbone is fine-tuned. Every later stage reads these values, never `auto`.
    A multi-label competition (several labels an image) averages logits: probability averaging and
    greedy weights are written for one class an image."""
    rounds = cfg.pseudo_rounds
    if multi_label and cfg.ensemble != "logits":
        raise ConfigError(f"ensemble = {cfg.ensemble}: a multi-label competition averages logits; use logits")
    if multi_label and cfg.consistency != "none":
        raise ConfigError(f"consistency = {cfg.consistency} is written for one class an image; use none")
    if rounds == "auto":
        rounds = 0 if labelled >= LARGE_DATA else 1
    return cfg.replace(models=resolve_models(cfg.models, channels, labelled), pseudo_rounds=rounds,
                       augment=cfg.augment.resolved(hflip_safe, fine_tuning=bool(cfg.weights)))


def size_request(cfg: RunConfig, device_type: str) -> SizeRequest:
    """What `image_size` asks of prepare. auto: a set sharing one size keeps it; photos of varied
    sizes go to their median shorter side, at most a pretrained model's own input size (capped on a
    CPU) or the from-scratch limit of the device."""
    size = None if cfg.image_size == "auto" else int(cfg.image_size)
    pretrained = [pretrained_config(m) for m in cfg.models if m.startswith(TIMM_PREFIX)]
    if pretrained and (cfg.pretrained or cfg.weights):
        own = min(int(p["input_size"][-1]) for p in pretrained)
        limit = own if device_type == "cuda" else min(own, PRETRAINED_CPU_LIMIT)
        reason = f"{'+'.join(cfg.models)} ({own} px pretrained" + \
            ("" if limit == own else f", {limit} on a {device_type.upper()}") + ")"
    else:
        limit = SCRATCH_LIMIT.get(device_type, SCRATCH_LIMIT["cpu"])
        reason = f"a from-scratch model on a {device_type.upper()}"
    return SizeRequest(size=size, limit=limit, limit_reason=reason, resize=cfg.resize)
