"""Every default of a run in one screen, plus file and flag overrides.

A `RunConfig` is frozen and checked as a whole when it is made: a bad value raises
`ConfigError` naming the field and what it allows, before anything is prepared or written.
What trained a result is exactly what is dumped beside it (`submissions/<run-id>/config.json`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .workspace import parse_duration

Schedule = Literal["onecycle", "cosine", "constant"]
# greedy: Caruana forward selection on OOF logits; auto: greedy where members of several kinds (models, or a
# probe beside a fine-tune) are combined, so the weights that score best out of fold decide, else logits
EnsembleMethod = Literal["auto", "logits", "probs", "greedy"]
Averaging = Literal["ema", "none"]
TestTimeAugmentation = Literal["auto", "on", "off"]     # auto: on when it raises out-of-fold accuracy significantly
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
Switch = Literal["auto", "on", "off"]
Resize = Literal["crop", "pad"]
# training on the unlabelled test images every step (module.Classifier.consistency_loss):
# fixmatch: hard targets from a weak view where confident, learnt on a strong view (Sohn et al. 2020);
# mean-teacher: soft targets from an EMA of the student's weights (Tarvainen & Valpola 2017)
Consistency = Literal["none", "fixmatch", "mean-teacher"]
# where a pseudo-label round's members start: from scratch, or from the previous round's member of
# their fold, seed and model (its best checkpoint), for a share of the epochs (`warm_epochs`)
PseudoStart = Literal["scratch", "warm"]
# a pretrained backbone's linear probe (probe.py): beside the fine-tune, which then starts from its head
# (on), alone (only), or not at all (off); auto: on, unless a time limit affords the probe alone
Probe = Literal["auto", "on", "only", "off"]
# how images are normalised for a network: by the training set's per-channel statistics (from scratch),
# by a pretrained backbone's own mean and std (timm's pretrained_cfg), or to [-1, 1] (0.5 and 0.5: the
# TensorFlow ports' convention); auto: data from scratch, else the one a backbone's stem statistics fit
Normalise = Literal["auto", "data", "backbone", "inception"]
# where each member's per-epoch metrics go (Lightning's loggers), in its folder: logs/metrics.csv,
# TensorBoard event files under logs/, or an MLflow store under mlruns/; none: no log (the report
# then has no training curves). tensorboard and mlflow need their own package.
ExperimentLogger = Literal["csv", "tensorboard", "mlflow", "none"]


def setting(default: Any, help: str, flag: str | bool = True, metavar: str | None = None) -> Any:
    """A RunConfig field: its default and the help of its command-line flag (`flag`: the flag's name
    where it is not `--field-name`; False for none)."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar})


@dataclass(frozen=True)
class Augmentation:
    """Random warps of whole training batches on the device (see `data.augment`)."""
    enabled: bool = True
    rotation: float | Literal["auto"] = "auto"  # degrees, +-; auto: see WARPS
    shift: float = 0.08                 # fraction of the image side, +- (2.2 px at 28 px)
    zoom: float | Literal["auto"] = "auto"      # scale in [1 - zoom, 1 + zoom]; auto: see WARPS
    shear: float | Literal["auto"] = "auto"     # shear factor, +-; auto: see WARPS
    elastic: float = 0.0                # elastic displacement, fraction of the side; 0 = off
    elastic_sigma: float = 0.12         # smoothness of the elastic field, fraction of the side
    hflip: Switch = "auto"              # mirror half of each batch; auto: where the competition says
                                        # mirrored images keep their class (photos; never digits or letters)
    crop: float | Literal["auto"] = "auto"  # random resized crop: least share of the area kept; 0 = off;
                                        # auto: FINE_TUNE_CROP when fine-tuning a pretrained backbone (the
                                        # recipe measured), else off (not measured to pay from scratch)

    @property
    def is_identity(self) -> bool:
        return not self.enabled or not (self.rotation or self.shift or self.zoom or self.shear or self.elastic
                                        or self.hflip == "on" or self.crop not in (0, "auto"))

    @property
    def is_resolved(self) -> bool:
        return "auto" not in (self.hflip, self.crop, *(getattr(self, name) for name in WARPS))

    def resolved(self, hflip: bool, fine_tuning: bool = False) -> "Augmentation":
        """`auto` made concrete for one competition: mirrors for photos (a mirrored image keeps its
        class), never for digits and letters; random resized crops, rotation, zoom and shear when
        fine-tuning; shifts alone from scratch."""
        mirror = self.hflip if self.hflip != "auto" else ("on" if hflip else "off")
        crop = self.crop if self.crop != "auto" else (FINE_TUNE_CROP if fine_tuning else 0.0)
        warps = {name: (value if fine_tuning else 0.0) if getattr(self, name) == "auto" else getattr(self, name)
                 for name, value in WARPS.items()}
        return dataclasses.replace(self, hflip=mirror, crop=crop, **warps)


# Rotation, zoom and shear (seed 001's digit recipe) on top of the shifts: kept when fine-tuning, the
# recipe measured there; from scratch off, where shifts alone validated higher on natural-images
# (+3.9 to +6.4 pp on each of 4 folds), fashion-mnist, fashion-5k and digits, and within the interval
# on mnist-5k and Dogs vs. Cats.
WARPS = {"rotation": 10.0, "zoom": 0.1, "shear": 0.1}


# The recipes `auto` takes (policy.resolve), by whether a pretrained backbone is fine-tuned.
# From scratch: 256 images a batch reach a given accuracy sooner than 128.
SCRATCH = {"epochs": 15, "batch_size": 256, "lr": 6e-3, "min_steps": 0}
# Fine-tuning a pretrained backbone (its batch-norm statistics kept, the backbone at `backbone_lr`
# of the head's rate): on a Dogs vs. Cats fold at 160 px the validation accuracy peaks at epoch 2-3
# of a one-cycle schedule; 3e-3 beat 1e-3 and 1e-2 at 96 px. A schedule of a few epochs is a few
# steps on a small competition (3 epochs of 180 photos at batch 32: 18 steps), so a member takes at
# least `min_steps` optimiser steps, in as many epochs as that needs.
FINE_TUNE = {"epochs": 3, "batch_size": 32, "lr": 3e-3, "min_steps": 120}
RECIPE_FIELDS = tuple(SCRATCH)
PROBE_PREFIX = "probe:"     # a member model `probe:timm/<name>`: that backbone's linear probe (probe.py)
FINE_TUNE_CROP = 0.35   # random resized crops keep 35-100% of a photo's area (timm's ImageNet recipe: 8-100%)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run. Each field's help is its command-line flag's (`--field-name`, derived
    by cli.py from this class: its type, its choices and this text)."""
    # what to play
    competition: str = setting("mnist-5k", "a registered competition (see `list`)", metavar="NAME")
    models: tuple[str, ...] = setting(("auto",), "registry models or timm/<name>; several make a mixed ensemble; "
                                      "auto: the grey default, or for colour a pretrained backbone at hand",
                                      flag="--model")
    pretrained: bool = setting(False, "timm models: ImageNet weights from the weights folder or timm's hub cache "
                                      "(fetched when connected)")
    weights: str = setting("", "timm models: a state dict file in timm's key names (offline weights)",
                           metavar="FILE")
    weights_dir: str = setting("", "a folder of <timm-name>.pth files (default $COMPETITION_WEIGHTS): colour photos "
                                   "with the model left to auto use the first backbone found there or in timm's cache",
                               metavar="DIR")
    probe: Probe = setting("auto", "a pretrained backbone's linear probe on its frozen features: beside the "
                                   "fine-tune, which starts from its head (on), alone (only), or not (off); auto: the "
                                   "plan's choice")
    normalise: Normalise = setting("auto", "pixels for the network: the data's statistics (from scratch), the "
                                           "backbone's pretrained_cfg, or [-1, 1] (inception); auto: from scratch "
                                           "data, else the one the backbone's stem statistics fit")
    backbone_lr: float = setting(0.1, "a pretrained backbone's peak LR, as a share of the new head's")
    image_size: int | Literal["auto"] = setting("auto", "side images are stored at (auto: their own size if they "
                                                        "share one, else the median shorter side within the model's "
                                                        "and device's limit)", metavar="S|auto")
    input_size: int | Literal["auto"] = setting("auto", "side the network sees, images resized on the way in "
                                                        "(auto: a pretrained backbone's own, else the stored size)",
                                                metavar="S|auto")
    resize: Resize = setting("crop", "images of another size: shorter side to S + centre crop, or longer side + pad")
    seeds: int = setting(1, "members per fold and model")
    folds: int = setting(4, "stratified K-fold cross-validation (every labelled image validated once); 1: one holdout")
    val_fraction: float = setting(0.1, "the holdout's share when folds = 1")
    split_seed: int = setting(0, "the folds' seed, shared by every member", flag=False)
    # optimisation; auto: the recipe, SCRATCH or FINE_TUNE (below), by policy.resolve
    epochs: int | Literal["auto"] = setting("auto", "epochs a member trains (fewer where --patience stops it)")
    batch_size: int | Literal["auto"] = setting("auto", "images a training batch")
    lr: float | Literal["auto"] = setting("auto", "peak learning rate of AdamW (a fine-tuned head's)")
    min_steps: int | Literal["auto"] = setting("auto", "a member's least optimiser steps (more epochs where needed)")
    weight_decay: float = setting(5e-4, "AdamW's weight decay (not on norms and biases)")
    label_smoothing: float = setting(0.1, "cross-entropy label smoothing")
    schedule: Schedule = setting("onecycle", "the learning-rate schedule")
    # 0: a member trains its whole schedule, which anneals to its last epoch, and keeps its best validated
    # epoch. Stopping after 6 stalled epochs ended members at the one-cycle's high rate: without it round 0's
    # OOF rose on four of nine paired runs and fell on none (benchmarks/README.md §32)
    patience: int = setting(0, "epochs without a better validation accuracy before a member stops; 0: never")
    averaging: Averaging = setting("none", "ema: validate, checkpoint and predict with EMA weights")
    ema_half_life: float = setting(0.5, "epochs after which an old weight counts half (averaging = ema)")
    augment: Augmentation = field(default_factory=Augmentation, metadata={"flag": False})
    # prediction, ensemble and pseudo-labels: every choice reads out-of-fold logits only
    tta: TestTimeAugmentation = setting("auto", "test-time views; auto: on where they win out of fold beyond chance")
    ensemble: EnsembleMethod = setting("auto", "how members combine (greedy: weights chosen out of fold; auto: "
                                               "greedy for several kinds of member, else logits)")
    pseudo_rounds: int | Literal["auto"] = setting("auto", "pseudo-label-and-retrain rounds, most (a round that "
                                                           "lowers the out-of-fold score ends them); auto: 1 under "
                                                           "20,000 labelled images, else 0", metavar="R|auto")
    pseudo_threshold: float = setting(0.95, "share of the label-smoothing cap a pseudo-label's confidence must reach")
    pseudo_share: float = setting(0.25, "share of every training batch drawn from pseudo-labels")
    pseudo_start: PseudoStart = setting("scratch", "a round's members from scratch, or warm from the last round's")
    warm_epochs: float = setting(0.5, "a warm round's epochs, as a share of epochs (at least one)")
    warm_lr: float = setting(1.0, "a warm round's peak learning rate, as a share of lr")
    consistency: Consistency = setting("none", "also train on the unlabelled test images every step")
    consistency_weight: float = setting(1.0, "the consistency loss's weight beside the labelled loss")
    # time: see fitting/plan.py
    time_limit: str = setting("auto", "90s, 3m, 1h30m: measure this machine, plan the recipe to finish inside it, "
                                      "and keep to it; none: a fixed recipe; auto: 3m per 10,000 labelled images, "
                                      "at least 3m", metavar="DURATION")
    # machine
    precision: Precision = setting("auto", "auto: bf16-mixed on a GPU or a CPU with bf16 hardware, else 32-true")
    logger: ExperimentLogger = setting("csv", "each member's training log, in its folder")
    threads: int = setting(0, "torch CPU threads (0: torch's default, capped at the usable CPUs)")
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_choices(self)
        check_choices(self.augment, prefix="augment.")

        def auto_or(name: str, ok) -> bool:
            value = getattr(self, name)
            return value == "auto" or (type(value) in (int, float) and ok(value))
        ranges = {
            "seeds": self.seeds >= 1, "folds": 1 <= self.folds <= 20, "epochs": auto_or("epochs", lambda v: v >= 1),
            "batch_size": auto_or("batch_size", lambda v: v >= 2), "lr": auto_or("lr", lambda v: v > 0),
            "min_steps": auto_or("min_steps", lambda v: v >= 0), "weight_decay": self.weight_decay >= 0,
            "val_fraction": 0.0 < self.val_fraction < 1.0, "patience": self.patience >= 0,
            "pseudo_rounds": self.pseudo_rounds == "auto" or (type(self.pseudo_rounds) is int
                                                              and self.pseudo_rounds >= 0),
            "pseudo_threshold": 0.0 < self.pseudo_threshold <= 1.0,
            "pseudo_share": 0.0 < self.pseudo_share < 1.0, "label_smoothing": 0.0 <= self.label_smoothing < 1.0,
            "warm_epochs": 0.0 < self.warm_epochs <= 1.0, "warm_lr": 0.0 < self.warm_lr <= 1.0,
            "ema_half_life": self.ema_half_life > 0, "threads": self.threads >= 0,
            "consistency_weight": self.consistency_weight > 0,
            "backbone_lr": 0 < self.backbone_lr <= 1,
            "augment.crop": self.augment.crop == "auto" or (type(self.augment.crop) in (int, float)
                                                            and 0 <= self.augment.crop < 1),
            **{f"augment.{name}": is_amount(getattr(self.augment, name), may_be_auto=name in WARPS)
               for name in AUGMENT_AMOUNTS},
            "augment.elastic_sigma": is_amount(self.augment.elastic_sigma) and self.augment.elastic_sigma > 0,
            "image_size": self.image_size == "auto" or (type(self.image_size) is int and 8 <= self.image_size <= 1024),
            "input_size": self.input_size == "auto" or (type(self.input_size) is int and 8 <= self.input_size <= 1024),
        }
        bad = [name for name, ok in ranges.items() if not ok]
        if bad:
            raise ConfigError("invalid config value: " + "; ".join(
                f"{name} = {self.value(name)!r} ({RANGES[name]})" for name in bad))
        if self.time_limit != "auto":
            parse_duration(self.time_limit)          # a bad duration is a ConfigError naming the field
        # each name is checked against the model registry by policy.check_models, before anything runs
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise ConfigError(f"models: give at least one model name, not {list(self.models)!r}")
        if (self.pretrained or self.weights) and not all(m.startswith("timm/") for m in self.models):
            raise ConfigError(f"pretrained weights are for timm models (--model timm/<name>); "
                              f"models = {list(self.models)}")
        if self.probe in ("on", "only") and not (self.pretrained or self.weights or self.weights_dir
                                                 or "auto" in self.models):
            raise ConfigError(f"probe = {self.probe}: a linear probe reads a pretrained backbone's features; give "
                              f"--weights FILE, --weights-dir DIR or --pretrained")

    @property
    def is_resolved(self) -> bool:
        """Whether policy.resolve made every `auto` concrete: what training reads."""
        return "auto" not in (*self.models, self.probe, self.input_size, self.ensemble, self.pseudo_rounds, self.normalise,
                              *(getattr(self, name) for name in RECIPE_FIELDS)) and self.augment.is_resolved

    @property
    def fine_tuning(self) -> bool:
        """A pretrained backbone's weights start the members (resolved: `weights` names their file)."""
        return bool(self.weights)

    def member_epochs(self, steps_per_epoch: int) -> int:
        """The epochs a member trains: `epochs`, or as many as `min_steps` optimiser steps take."""
        return max(int(self.epochs), math.ceil(int(self.min_steps) / max(1, steps_per_epoch)))

    def value(self, name: str) -> Any:
        """A field by name, `augment.<field>` for augmentation's."""
        return getattr(self.augment, name.removeprefix("augment.")) if name.startswith("augment.") \
            else getattr(self, name)

    def round_epochs(self, round_number: int) -> int:
        """The epochs a member of round `round_number` trains: a warm round's share of `epochs`."""
        if round_number and self.pseudo_start == "warm":
            return max(1, round(self.epochs * self.warm_epochs))
        return int(self.epochs)

    def for_round(self, round_number: int) -> "RunConfig":
        """What a member of round `round_number` trains with: a warm round's epochs and peak rate."""
        if round_number and self.pseudo_start == "warm":
            return self.replace(epochs=self.round_epochs(round_number), lr=self.lr * self.warm_lr)
        return self

    @property
    def member_models(self) -> tuple[str, ...]:
        """What a round's members are, one group of the ensemble each: every model, a pretrained
        backbone's probe (`probe:<model>`) beside it or instead of it."""
        kinds: list[str] = []
        for model in self.models:
            if self.probe in ("on", "only") and model.startswith("timm/"):
                kinds.append(PROBE_PREFIX + model)
            if self.probe != "only":
                kinds.append(model)
        return tuple(kinds)

    @property
    def members_per_round(self) -> int:
        """Folds x seeds a trained model, one member a fold for a probe (its fit has no randomness)."""
        return sum(self.folds * (1 if m.startswith(PROBE_PREFIX) else self.seeds) for m in self.member_models)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "RunConfig":
        """Build from plain values (JSON, TOML, flags): lists become tuples, `augment` a table."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{source}: unknown config key(s) {unknown}; known: {sorted(FIELDS)}")
        values = dict(values)
        if isinstance(values.get("models"), str):
            values["models"] = (values["models"],)
        if "models" in values:
            values["models"] = tuple(values["models"])
        if isinstance(values.get("augment"), dict):
            extra = sorted(set(values["augment"]) - set(AUGMENT_FIELDS))
            if extra:
                raise ConfigError(f"{source}: unknown augment key(s) {extra}; known: {sorted(AUGMENT_FIELDS)}")
            values["augment"] = Augmentation(**values["augment"])
        for name, value in list(values.items()):
            values[name] = check_type(name, value, source)
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


AUGMENT_AMOUNTS = ("rotation", "shift", "zoom", "shear", "elastic")     # each a number >= 0


def is_amount(value: Any, may_be_auto: bool = False) -> bool:
    """A number >= 0 (not a bool, not text from a file), or `auto` where the field takes it."""
    return (may_be_auto and value == "auto") or (type(value) in (int, float) and value >= 0)


RANGES = {
    "seeds": ">= 1", "folds": "1..20", "epochs": "auto or >= 1", "batch_size": "auto or >= 2", "lr": "auto or > 0",
    "min_steps": "auto or >= 0", "input_size": "auto or 8..1024",
    "weight_decay": ">= 0", "val_fraction": "strictly between 0 and 1", "patience": ">= 0 (0: never stop early)",
    "pseudo_rounds": "auto or >= 0", "pseudo_threshold": "in (0, 1]", "pseudo_share": "strictly between 0 and 1",
    "warm_epochs": "in (0, 1]", "warm_lr": "in (0, 1]",
    "label_smoothing": "in [0, 1)", "ema_half_life": "> 0", "threads": ">= 0", "backbone_lr": "in (0, 1]",
    "consistency_weight": "> 0",
    "image_size": "auto or 8..1024", "augment.crop": "auto or in [0, 1)", "augment.elastic_sigma": "a number > 0",
    **{f"augment.{name}": ("auto or " if name in WARPS else "") + "a number >= 0" for name in AUGMENT_AMOUNTS},
}
FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# fields that take `auto` or a number, and the kind of number
NUMBER_OR_AUTO = {"pseudo_rounds": 0, "image_size": 0, "input_size": 0, "epochs": 0, "batch_size": 0, "lr": 0.0,
                  "min_steps": 0}
AUGMENT_FIELDS = {f.name: f for f in dataclasses.fields(Augmentation)}


def check_choices(obj: Any, prefix: str = "") -> None:
    """Every field typed as a `Literal` holds one of its values; the error lists them."""
    for name, hint in typing.get_type_hints(type(obj)).items():
        if typing.get_origin(hint) is Literal and getattr(obj, name) not in typing.get_args(hint):
            allowed = ", ".join(map(repr, typing.get_args(hint)))
            raise ConfigError(f"{prefix}{name} = {getattr(obj, name)!r} is not allowed; choose one of {allowed}")


def check_type(name: str, value: Any, source: str) -> Any:
    """Catch `epochs = "ten"` in a file before it turns into a confusing failure later; 3.0 -> 3."""
    default = FIELDS[name].default
    if default is dataclasses.MISSING:
        return value
    if default == "auto" and name in NUMBER_OR_AUTO:
        if value == "auto":
            return value
        default = NUMBER_OR_AUTO[name]
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) \
            and not value.is_integer():
        raise ConfigError(f"{source}: {name} must be a whole number, got {value!r}")
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{source}: {name} must be text, got {value!r}")
    return int(value) if isinstance(default, int) and not isinstance(default, bool) else value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read overrides from a TOML or JSON file; a parse error names the file."""
    path = Path(path)
    try:
        text = path.read_text()
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from e


def build_config(file: Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the file, then flags (flags left as None change nothing)."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(read_config_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig.from_dict(values, source=str(file) if file else "flags")
