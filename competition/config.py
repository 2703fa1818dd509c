"""Every default of a run in one screen, plus file and flag overrides.

A `RunConfig` is frozen: what trained a result is exactly what is dumped beside it
(`submissions/<run-id>/config.json`).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunConfig:
    # what to play
    competition: str = "mnist-5k"
    model: str = "fastnet"              # see `competition.models.list_models()`
    seeds: int = 3                      # models in the ensemble
    # optimisation
    epochs: int = 15                    # upper bound; early stopping may end a seed sooner
    batch_size: int = 256               # sooner to a given accuracy than 128 (benchmarks/README.md)
    lr: float = 6e-3                    # peak learning rate of AdamW
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"          # "onecycle" | "cosine" | "constant"
    patience: int = 6                   # epochs without a better val accuracy before stopping
    val_fraction: float = 0.1           # stratified share of train.csv held out for validation
    split_seed: int = 0                 # the validation split is shared by every seed
    # augmentation, applied to whole batches on the training device
    augment: bool = True
    rotation: float = 10.0              # degrees, +-
    shift: float = 0.08                 # fraction of the image side, +- (2.2 px at 28 px)
    zoom: float = 0.1                   # scale in [1 - zoom, 1 + zoom]
    shear: float = 0.1                  # shear factor, +-
    elastic: float = 0.0                # elastic displacement, fraction of the side; 0 = off
    # ensemble and pseudo-labels
    ensemble: str = "logits"            # "logits" (mean of logits) | "probs" (mean of probabilities)
    pseudo_rounds: int = 1
    pseudo_threshold: float = 0.95      # share of the label-smoothing cap the confidence must reach
    pseudo_share: float = 0.25          # share of every training batch drawn from pseudo-labels
    # machine
    precision: str = "auto"             # "auto": bf16-mixed on a GPU, 32-true on the CPU
    threads: int = 0                    # torch CPU threads; 0 = leave torch's default
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {
            "seeds": self.seeds >= 1,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "val_fraction": 0.0 < self.val_fraction < 1.0,
            "pseudo_rounds": self.pseudo_rounds >= 0,
            "pseudo_threshold": 0.0 < self.pseudo_threshold <= 1.0,
            "pseudo_share": 0.0 < self.pseudo_share < 1.0,
            "label_smoothing": 0.0 <= self.label_smoothing < 1.0,
            "schedule": self.schedule in ("onecycle", "cosine", "constant"),
            "ensemble": self.ensemble in ("logits", "probs"),
            "precision": self.precision in ("auto", "32-true", "bf16-mixed", "16-mixed"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid config value for {', '.join(bad)}: {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read overrides from a TOML or JSON file; unknown keys are an error naming the key."""
    path = Path(path)
    text = path.read_text()
    values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown config key(s) {unknown}; known: {sorted(FIELDS)}")
    return values


def build_config(file: Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the file, then flags (flags left as None change nothing)."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(read_config_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**values)
