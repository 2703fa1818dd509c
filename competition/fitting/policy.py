"""Every `auto` of a run made concrete, in one place: the model, its weights and recipe, the probe,
the pseudo-label rounds, the image and input sizes, the normalisation, the ensemble.

`resolve` runs once, before the run folder is named (and again, changing nothing, when `fit` is
called on a resolved config); the run's config.json holds what it chose, so `run --config
submissions/RUN/config.json` repeats it with nothing left to choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import FINE_TUNE, RECIPE_FIELDS, SCRATCH, RunConfig
from ..errors import ConfigError
from ..preparing.images import SizeRequest
from .models import (AUTO, TIMM_PREFIX, check_model_name, find_weights, input_side, resolve_weights,
                     stem_normalisation, timm_installed, weights_folder)

# From this many labelled images a run's `auto` settings spend the time on capacity instead of a
# pseudo-label round: on fashion-mnist (60,000) the round added +0.03 pp out of fold for 55% of the
# run's time, while a 2x wider fastnet gained +1.4 pp on a validation fold.
# Below it (mnist-5k, digits) the round paid +0.23 pp and the wider net nothing clear.
LARGE_DATA = 20_000

# The largest side `image_size = auto` stores photos of varied sizes at for a from-scratch net:
# resnet-small trains at 250 images/s at 64 px on a 2-core CPU, 115 at 96 px. A pretrained
# backbone's photos are stored at its own input size on any device: its frozen features there beat
# 160 px by 1.3 pp on Dogs vs. Cats (0.990 against 0.977 out of fold), and the probe computes them
# once a run.
SCRATCH_LIMIT = {"cpu": 64, "cuda": 128}

# The pretrained backbones `auto` may take for colour photos, best first. Out of fold, the probe of
# Lite2 (260 px) beat Lite0's (224 px) by 0.5 pp on Dogs vs. Cats and 0.9 pp on Natural Images, Lite1
# (240 px) fell between; on a 2-core CPU Lite2's features cost 1.9x Lite0's (108 against 202
# images/s in bf16). So a time-limited run measures the best at hand first and takes the first whose
# probe fits the limit at full folds (`pipeline.plan_to_time_limit`): on a GPU, or with few photos,
# that is Lite2; on a CPU with many, a cheaper one. Without a time limit, the best.
BACKBONES = ("timm/efficientnet_lite2", "timm/efficientnet_lite1", "timm/efficientnet_lite0")


@dataclass(frozen=True, kw_only=True)
class Backbone:
    """A pretrained backbone whose weights are at hand."""
    model: str                  # timm/<name>
    weights: str                # the file its weights load from
    input_size: int             # the side it was trained at


def colour_backbones(cfg: RunConfig) -> tuple[tuple[Backbone, ...], str]:
    """The pretrained backbones a colour competition's `auto` model may be (those of `BACKBONES` whose
    weights are at hand, best first), and one line saying which (or, with none, why it trains from
    scratch and how to have weights found)."""
    if not timm_installed():
        return (), ("no pretrained backbone: timm is not installed (pip install 'competition[timm]'), so "
                    "colour photos train resnet-small from scratch")
    found = tuple(Backbone(model=model, weights=weights, input_size=input_side(model))
                  for model in BACKBONES if (weights := find_weights(model, cfg.weights_dir)))
    if found:
        names = ", ".join(f"{b.model} ({b.input_size} px)" for b in found)
        choice = "" if len(found) == 1 else \
            "; a time limit takes the first whose probe fits it, no limit the first"
        return found, f"pretrained backbone(s) for colour photos, best first: {names}{choice}; weights in " \
            f"{', '.join(dict.fromkeys(str(Path(b.weights).parent) for b in found))}"
    folder = weights_folder(cfg.weights_dir)
    looked = f"{folder}" if folder else "no weights folder (--weights-dir DIR or $COMPETITION_WEIGHTS)"
    name = BACKBONES[0][len(TIMM_PREFIX):]
    return (), (f"no ImageNet weights at hand for {', '.join(BACKBONES)} (looked in {looked} and timm's cache), "
                f"so colour photos train resnet-small from scratch; to fine-tune {BACKBONES[0]}, put {name}.pth "
                f"(timm's key names) in a folder named by --weights-dir or $COMPETITION_WEIGHTS, or fill timm's "
                f"cache on a connected machine: python -c \"import timm; timm.create_model('{name}', "
                f"pretrained=True)\"")


def default_model(channels: int, labelled: int = 0, backbone: Backbone | None = None) -> str:
    """`auto`: the small conv net for grey digits and letters (twice as wide from `LARGE_DATA`
    labelled images, where it stops underfitting); for colour, a pretrained backbone whose weights
    are at hand, else the residual net from scratch."""
    if channels != 1:
        return backbone.model if backbone is not None else "resnet-small"
    return "fastnet-wide" if labelled >= LARGE_DATA else "fastnet"


# The wider sibling a time limit may train instead when the model was left to `auto`: at equal or
# less time than more seeds of the narrow net it scored higher out of fold.
WIDER = {"fastnet": "fastnet-wide"}


def wider_models(models: tuple[str, ...]) -> tuple[str, ...] | None:
    """The models with each swapped for its wider sibling; None when none has one."""
    if not any(m in WIDER for m in models):
        return None
    return tuple(dict.fromkeys(WIDER.get(m, m) for m in models))


def check_models(cfg: RunConfig) -> None:
    """Every model name is `auto`, in the registry, or timm's (with timm installed): checked before
    anything is prepared or trained, the error naming the field."""
    for name in cfg.models:
        try:
            check_model_name(name)
        except ConfigError as e:
            raise ConfigError(f"models: {e}") from None


def resolve(cfg: RunConfig, *, channels: int, labelled: int, stored_size: int, hflip: bool,
            multi_label: bool = False, sample_images: torch.Tensor | None = None, backbone: Backbone | None = None
            ) -> RunConfig:
    """Every `auto` of `cfg` for one prepared competition: `channels`, `labelled` images stored at
    `stored_size`; `hflip`: a mirrored image keeps its class; `sample_images` (uint8, a few
    dozen training images): what a pretrained backbone's normalisation is chosen on (its stem's
    batch-norm statistics; no labels read); `backbone`: the one a colour competition's `auto` model
    takes (default: the best at hand, `colour_backbones`). Every later stage reads these values, never `auto`.
    A multi-label competition averages logits: probability averaging and greedy weights are
    written for one class an image."""
    check_models(cfg)
    if cfg.is_resolved:
        return cfg
    if multi_label and cfg.ensemble in ("probs", "greedy"):
        raise ConfigError(f"ensemble = {cfg.ensemble}: a multi-label competition averages logits; use logits")
    if multi_label and cfg.consistency != "none":
        raise ConfigError(f"consistency = {cfg.consistency} is written for one class an image; use none")
    if AUTO not in cfg.models or channels == 1:
        backbone = None
    elif backbone is None:
        backbone = next(iter(colour_backbones(cfg)[0]), None)
    models = tuple(dict.fromkeys(default_model(channels, labelled, backbone) if m == AUTO else m
                                 for m in cfg.models))
    weights = pretrained_weights(cfg, models, backbone)
    recipe = FINE_TUNE if weights else SCRATCH
    probe = cfg.probe
    if probe == "auto":
        probe = "on" if weights else "off"
    elif probe != "off" and not weights:
        raise ConfigError(f"probe = {probe}: no pretrained weights at hand for {'+'.join(models)}; give --weights "
                          f"FILE, --weights-dir DIR or --pretrained")
    rounds = cfg.pseudo_rounds if cfg.pseudo_rounds != "auto" else (0 if labelled >= LARGE_DATA else 1)
    input_size = cfg.input_size
    if input_size == "auto":
        input_size = min(input_side(m) for m in models) if weights else stored_size
    normalise = cfg.normalise
    if normalise == "auto":
        normalise = "data" if not weights else \
            stem_normalisation(models[0], weights, sample_images) if sample_images is not None else "backbone"
    resolved = cfg.replace(
        models=models, weights=weights, pretrained=False, probe=probe, pseudo_rounds=rounds, input_size=input_size,
        normalise=normalise, augment=cfg.augment.resolved(hflip, fine_tuning=bool(weights)),
        **{name: recipe[name] for name in RECIPE_FIELDS if getattr(cfg, name) == "auto"})
    ensemble = cfg.ensemble
    if ensemble == "auto":
        ensemble = "greedy" if len(resolved.member_models) > 1 and not multi_label else "logits"
    return resolved.replace(ensemble=ensemble)


def resolve_for(cfg: RunConfig, public) -> RunConfig:
    """`resolve` for a loaded public folder (data.PublicData): what `fit` and a benchmark that trains
    members itself call."""
    channels, height, _ = public.image_shape
    return resolve(cfg, channels=channels, labelled=len(public.train_labels), stored_size=height,
                   hflip=public.hflip, multi_label=public.competition.multi_label,
                   sample_images=public.train_images[:64])


def pretrained_weights(cfg: RunConfig, models: tuple[str, ...], backbone: Backbone | None = None) -> str:
    """The one file the models' pretrained weights load from, "" to train from scratch: `weights` as
    given; the colour default's `backbone`; a timm model's own file where it is at hand (the weights
    folder, timm's cache), else, with `pretrained`, fetched or refused naming where it looked."""
    if cfg.weights or (backbone is not None and backbone.model in models):
        weights = cfg.weights or backbone.weights
        if not all(m.startswith(TIMM_PREFIX) for m in models):
            raise ConfigError(f"pretrained weights are for timm models; models = {list(models)}")
        return resolve_weights(models[0], pretrained=False, weights=weights)
    timm_models = [m for m in models if m.startswith(TIMM_PREFIX)]
    if not timm_models:
        if cfg.pretrained:
            raise ConfigError(f"pretrained weights are for timm models (--model timm/<name>); models = {list(models)}")
        return ""
    if len(models) > 1:
        if cfg.pretrained:
            raise ConfigError(f"--pretrained with several models ({', '.join(models)}): give one timm model, or "
                              f"one --weights file for all")
        return ""
    return resolve_weights(models[0], pretrained=True, weights="", weights_dir=cfg.weights_dir) if cfg.pretrained \
        else find_weights(models[0], cfg.weights_dir)


def size_request(cfg: RunConfig, device_type: str, backbone: Backbone | None = None) -> SizeRequest:
    """What `image_size` asks of prepare. auto: a set sharing one size keeps it; photos of varied
    sizes go to their median shorter side, at most a pretrained model's own input size, or the
    from-scratch limit of the device; with the model left to `auto`, colour photos go to the
    `backbone`'s size where one is at hand (grey ones train from scratch)."""
    size = None if cfg.image_size == "auto" else int(cfg.image_size)
    scratch = SCRATCH_LIMIT.get(device_type, SCRATCH_LIMIT["cpu"])
    scratch_reason = f"a from-scratch model on a {device_type.upper()}"
    pretrained = [m for m in cfg.models if m.startswith(TIMM_PREFIX)]
    if pretrained and cfg.weights:
        own = min(input_side(m) for m in pretrained)
        return SizeRequest(size=size, limit=own, limit_reason=f"{'+'.join(cfg.models)} ({own} px pretrained)",
                           resize=cfg.resize)
    colour = {}
    if AUTO in cfg.models and backbone is not None:
        colour = dict(colour_limit=backbone.input_size,
                      colour_reason=f"{backbone.model} ({backbone.input_size} px pretrained)")
    return SizeRequest(size=size, limit=scratch, limit_reason=scratch_reason, resize=cfg.resize, **colour)
