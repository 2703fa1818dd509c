"""A member is one training job, the unit of work: (round, fold, seed, model) of a run.

`MemberSpec` is small, frozen and round-trips through JSON, so any executor (this process,
a Ray worker, another machine) can run it. `train_member(spec)` reads its inputs from disk:
the competition's public folder and, in pseudo-label rounds, the pseudo-label file the run
wrote. It writes into `spec.out_dir`:

  best.ckpt     the best validation epoch (EMA weights when averaging)
  logits.pt     {"val_index": (V,) rows of train.csv it validated, "views": {split: {view: (n, K)}}}
  result.json   accuracy, epochs, wall time, device, per-epoch history; written last

A member whose result.json exists is loaded, not retrained: that is how `--resume` works.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig
from ..cpus import torch_threads
from .data import PublicData, load_public, pixel_stats, placement, to_placement
from ..errors import HarnessError, RunStateError
from .models import model_slug
from .module import hit_rate
from .predict import IDENTITY, View, load_classifier, predict, tta_views
from .probe import (C_CANDIDATES, LinearHead, backbone_of, fit_linear_head, is_probe, load_features,
                    probe_of)
from ..workspace import atomic_write_text
from ..preparing.splits import training_rows, validation_folds
from .train import TrainingData, train_model
from .device import precision_for, training_device


@dataclass(frozen=True, kw_only=True)
class MemberSpec:
    round: int
    fold: int
    seed: int
    model: str
    config: RunConfig
    public_dir: str                     # the competition's public/ folder: all the data it may read
    out_dir: str
    pseudo_labels: str | None = None    # CSV (ImageId,Label) of pseudo-labelled test rows, rounds >= 1
    deadline: float | None = None       # time.time() its training must end by (the run's time limit)
    warm_from: str | None = None        # a warm round's member: the checkpoint its weights start from
    features: str | None = None         # a probe member: its backbone's cached features (probe.py)
    head_from: str | None = None        # a fine-tune beside a probe: the fold's fitted head it starts from

    @property
    def name(self) -> str:
        return f"round {self.round} fold {self.fold} seed {self.seed} {self.model}"

    @property
    def rng_seed(self) -> int:
        """Every random stream of the member derives from this: the same spec, the same model."""
        return zlib.crc32(f"{self.round}/{self.fold}/{self.seed}/{self.model}".encode()) % (2 ** 31)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "MemberSpec":
        values = json.loads(text)
        values["config"] = RunConfig.from_dict(values["config"], source="member spec")
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class MemberResult:
    name: str
    round: int
    fold: int
    seed: int
    model: str
    val_acc: float                      # plain view, best checkpoint
    val_size: int
    best_epoch: int
    epochs_run: int
    wall_s: float
    device: str
    out_dir: str
    pseudo_labels_sha: str | None = None    # of the pseudo-label file it trained on, checked when loaded
    precision: str = "32-true"          # Lightning's precision it trained in
    history: list[dict[str, float]] = field(default_factory=list)
    resumed: bool = False               # loaded from an earlier run, not trained now
    out_of_time: bool = False           # stopped early by the run's time limit
    probe_C: float | None = None        # a probe member: its head's regularisation, chosen inside the fold

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("history", "resumed")}


def member_dir(run_dir: Path, round_number: int, fold: int, seed: int, model: str) -> Path:
    return Path(run_dir) / f"round{round_number}" / f"fold{fold}-seed{seed}-{model_slug(model)}"


def feature_path(run_dir: Path, backbone: str) -> Path:
    """Where a run caches a backbone's features (every fold and round of its probe reads them)."""
    return Path(run_dir) / "features" / f"{model_slug(backbone)}.pt"


def plan_members(cfg: RunConfig, round_number: int, public_dir: Path, run_dir: Path,
                 pseudo_labels: Path | None = None, deadline: float | None = None) -> list[MemberSpec]:
    """Every member of one round: folds x seeds x models, a probe's first (one a fold: its fit has no
    randomness); beside a probe, a fine-tune starts from the head the probe fitted on its fold. In a
    warm round each trained member starts from the best checkpoint of the previous round's member of
    its fold, seed and model: that member never saw the fold's validation rows either."""
    warm = round_number > 0 and cfg.pseudo_start == "warm"
    specs = []
    for model in cfg.member_models:
        probe = is_probe(model)
        for fold in range(cfg.folds):
            for seed in range(1 if probe else cfg.seeds):
                head = member_dir(run_dir, round_number, fold, 0, probe_of(model)) / PROBE_HEAD \
                    if not probe and probe_of(model) in cfg.member_models else None
                specs.append(MemberSpec(
                    round=round_number, fold=fold, seed=seed, model=model, config=cfg, public_dir=str(public_dir),
                    out_dir=str(member_dir(run_dir, round_number, fold, seed, model)),
                    pseudo_labels=None if pseudo_labels is None else str(pseudo_labels), deadline=deadline,
                    warm_from=str(member_dir(run_dir, round_number - 1, fold, seed, model) / "best.ckpt")
                    if warm and not probe else None,
                    features=str(feature_path(run_dir, backbone_of(model))) if probe else None,
                    head_from=None if head is None else str(head)))
    return specs


def fold_rows(labels: np.ndarray, cfg: RunConfig, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of train.csv for one fold."""
    val = validation_folds(labels, cfg.folds, cfg.val_fraction, cfg.split_seed)[fold]
    return training_rows(len(labels), val), val


def read_pseudo_labels(path: Path, num_test: int, num_labels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(test rows, labels) from a pseudo-label CSV written by the run; with `num_labels` (several
    labels an image), each row's space-separated label indices as 0/1 rows (P, L)."""
    frame = pd.read_csv(path, dtype={"ImageId": np.int64, "Label": str}, keep_default_na=False)
    rows = frame["ImageId"].to_numpy() - 1
    assert rows.min(initial=0) >= 0 and rows.max(initial=-1) < num_test, f"{path}: ImageId outside the test set"
    if num_labels is None:
        labels = frame["Label"].astype(np.int64).to_numpy().copy()
    else:
        labels = np.zeros((len(frame), num_labels), np.int64)
        for row, cell in enumerate(frame["Label"]):
            labels[row, [int(k) for k in cell.split()]] = 1
    return torch.from_numpy(rows.copy()), torch.from_numpy(labels)


def fold_data(public: PublicData, cfg: RunConfig, fold: int, device: torch.device
              ) -> tuple[TrainingData, np.ndarray]:
    """One fold, with pixel statistics of its training rows only, and its val rows. The images sit
    on the device when they fit there, else in (pinned) host memory: see `data.placement`."""
    train, val = fold_rows(public.train_labels.numpy(), cfg, fold)
    train_images = public.train_images[train]
    mean, std = pixel_stats(train_images)
    where = placement(public.train_images, device)
    data = TrainingData(train_images=to_placement(train_images, device, where),
                        train_labels=public.train_labels[train].to(device),
                        val_images=to_placement(public.train_images[val], device, where),
                        val_labels=public.train_labels[val].to(device), num_classes=public.num_classes,
                        mean=mean, std=std, device=device)
    return data, val


def file_digest(path: str | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def is_finished(out_dir: Path) -> bool:
    return (Path(out_dir) / "result.json").is_file() and (Path(out_dir) / "logits.pt").is_file()


def make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(f"{out_dir}: this member cannot write its outputs here ({e.strerror}); on a multi-node "
                           f"Ray cluster the run folder (--root) must be on storage every node shares") from e


def pseudo_rows(spec: MemberSpec, public: PublicData) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(test rows, labels) of the pseudo-labels a round's member trains on; None in round 0."""
    if spec.pseudo_labels is None:
        return None
    return read_pseudo_labels(Path(spec.pseudo_labels), len(public.test_images),
                              public.num_classes if public.competition.multi_label else None)


def train_member(spec: MemberSpec, public: PublicData | None = None) -> MemberResult:
    """Train one member (or load it, if finished earlier) and write its outputs beside it."""
    out_dir = Path(spec.out_dir)
    if is_finished(out_dir):
        result = load_member_result(out_dir)
        if result.pseudo_labels_sha != file_digest(spec.pseudo_labels):
            raise RunStateError(f"{out_dir}: this member trained on other pseudo-labels than {spec.pseudo_labels} "
                                f"holds now; its logits would not match this round, so start a new run")
        return result
    cfg = spec.config
    torch.set_num_threads(torch_threads(cfg.threads))
    public = public if public is not None else load_public(Path(spec.public_dir))
    if is_probe(spec.model):
        return fit_probe_member(spec, public)
    device = training_device()
    data, val_rows = fold_data(public, cfg, spec.fold, device)
    pseudo_images = pseudo_targets = None
    pseudo = pseudo_rows(spec, public)
    if pseudo is not None:
        rows, labels = pseudo
        pseudo_images = to_placement(public.test_images[rows], device, placement(public.train_images, device))
        pseudo_targets = labels.to(device)
    make_out_dir(out_dir)
    # consistency training reads the test images without labels, as pseudo-labelling does
    unlabelled = None if cfg.consistency == "none" else \
        to_placement(public.test_images, device, placement(public.train_images, device))
    trained = train_model(data, cfg.for_round(spec.round), spec.model, spec.rng_seed,
                          out_dir, pseudo_images, pseudo_targets, unlabelled=unlabelled, deadline=spec.deadline,
                          warm_from=None if spec.warm_from is None else Path(spec.warm_from),
                          head_from=None if spec.head_from is None else Path(spec.head_from))
    # every test-time view of the validation rows (cheap), so TTA can be chosen on OOF without
    # predicting again; the test set only in the plain view until TTA is chosen
    val_view_set = tta_views(cfg.augment.hflip == "on")
    val_views = predict(trained.module, data.val_images, val_view_set)
    test_plain = predict(trained.module, public.test_images, IDENTITY)
    views = {"val": dict(zip((v.name for v in val_view_set), val_views)),
             "test": {IDENTITY[0].name: test_plain[0]}}
    save_logits(out_dir, torch.from_numpy(val_rows), views)
    val_acc = float(hit_rate(val_views[0], public.train_labels[val_rows]))
    result = MemberResult(name=spec.name, round=spec.round, fold=spec.fold, seed=spec.seed, model=spec.model,
                          val_acc=val_acc, val_size=len(val_rows), best_epoch=trained.best_epoch,
                          epochs_run=trained.epochs_run, wall_s=trained.wall_s, device=device.type,
                          out_dir=str(out_dir), pseudo_labels_sha=file_digest(spec.pseudo_labels),
                          precision=precision_for(cfg, device), history=trained.history,
                          out_of_time=trained.out_of_time)
    write_result(out_dir, spec, result)
    return result


def write_result(out_dir: Path, spec: MemberSpec, result: MemberResult) -> None:
    """spec.json, then result.json: the file whose presence marks the member finished."""
    atomic_write_text(out_dir / "spec.json", spec.to_json())
    atomic_write_text(out_dir / "result.json", json.dumps(asdict(result), indent=2) + "\n")


PROBE_HEAD = "probe.pt"     # a probe member's fitted head (weight, bias, C), in the features' units


def fit_probe_member(spec: MemberSpec, public: PublicData) -> MemberResult:
    """A probe member: a linear head on its fold's training images' cached features (with the round's
    pseudo-labelled test images' features added), its logits for every cached view of the fold's
    validation images and of the test images. C is chosen inside round 0's fold; a later round's
    member of the fold keeps that C."""
    start = time.perf_counter()
    out_dir = Path(spec.out_dir)
    features = load_features(Path(spec.features))
    if features.fingerprint != public.competition.fingerprint:
        raise RunStateError(f"{spec.features}: these features were computed from another prepared split; "
                            f"start a new run")
    train_rows, val_rows = fold_rows(public.train_labels.numpy(), spec.config, spec.fold)
    x, y = features.train[:, train_rows], public.train_labels[train_rows]
    pseudo = pseudo_rows(spec, public)
    if pseudo is not None:
        rows, labels = pseudo
        x, y = torch.cat([x, features.test[:, rows]], dim=1), torch.cat([y, labels])
    candidates = C_CANDIDATES
    if spec.round > 0:
        first = member_dir(Path(spec.out_dir).parents[1], 0, spec.fold, 0, spec.model) / PROBE_HEAD
        candidates = (LinearHead.from_state_dict(torch.load(first, weights_only=True)).C,)
    head = fit_linear_head(x, y, public.num_classes, candidates, seed=spec.rng_seed)
    make_out_dir(out_dir)
    torch.save(head.state_dict(), out_dir / (PROBE_HEAD + ".tmp"))
    (out_dir / (PROBE_HEAD + ".tmp")).replace(out_dir / PROBE_HEAD)
    val_logits = head.logits(features.train[:, val_rows])
    test_logits = head.logits(features.test)
    save_logits(out_dir, torch.from_numpy(val_rows), {
        "val": dict(zip(features.views, val_logits)), "test": dict(zip(features.views, test_logits))})
    result = MemberResult(name=spec.name, round=spec.round, fold=spec.fold, seed=spec.seed, model=spec.model,
                          val_acc=float(hit_rate(val_logits[0], public.train_labels[val_rows])),
                          val_size=len(val_rows), best_epoch=0, epochs_run=0, wall_s=time.perf_counter() - start,
                          device="cpu", out_dir=str(out_dir), pseudo_labels_sha=file_digest(spec.pseudo_labels),
                          precision="float64 head", probe_C=head.C)
    write_result(out_dir, spec, result)
    return result

def save_logits(out_dir: Path, val_index: torch.Tensor, views: dict[str, dict[str, torch.Tensor]]) -> None:
    tmp = Path(out_dir) / "logits.pt.tmp"
    torch.save({"val_index": val_index, "views": views}, tmp)
    tmp.replace(Path(out_dir) / "logits.pt")


def load_logits(out_dir: Path) -> dict:
    return torch.load(Path(out_dir) / "logits.pt", weights_only=True)


def load_member_result(out_dir: Path) -> MemberResult:
    values = json.loads((Path(out_dir) / "result.json").read_text())
    known = {f.name for f in fields(MemberResult)}
    return MemberResult(**{k: v for k, v in values.items() if k in known and k != "resumed"}, resumed=True)


def member_logits(out_dir: Path, split: str, views: tuple[View, ...]) -> torch.Tensor:
    """Cached logits (V, n, K) of one split for the given views; KeyError if a view is missing."""
    saved = load_logits(out_dir)["views"][split]
    return torch.stack([saved[v.name] for v in views])


def predict_member_views(out_dir: Path, views: tuple[View, ...], split: str = "test",
                         public: PublicData | None = None) -> str:
    """Add the logits of any missing views to a finished member's cache, from its checkpoint.

    This is how TTA is switched on after training: no member is retrained.
    """
    out_dir = Path(out_dir)
    saved = load_logits(out_dir)
    missing = tuple(v for v in views if v.name not in saved["views"][split])
    if missing:
        spec = MemberSpec.from_json((out_dir / "spec.json").read_text())
        public = public if public is not None else load_public(Path(spec.public_dir))
        module = load_classifier(out_dir / "best.ckpt", training_device())
        images = public.test_images if split == "test" else public.train_images[saved["val_index"]]
        for view, logits in zip(missing, predict(module, images, missing)):
            saved["views"][split][view.name] = logits
        save_logits(out_dir, saved["val_index"], saved["views"])
    return str(out_dir)

