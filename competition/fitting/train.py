"""Train one model with the Lightning Trainer on device-resident tensors.

`train_model` is the loop every member (and every benchmark) uses: data already on the
training device, batched augmentation inside the module, the best checkpoint on validation
accuracy (early stopping where `patience` asks for it), optional EMA weights through Lightning's callback.
It knows nothing of folds, rounds or files beyond its own checkpoint folder: that is `members.py`.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint

from . import stopping
from ..config import RunConfig
from .data import DeviceBatches
from .device import precision_for
from .module import Classifier, ema_decay
from .probe import LinearHead, load_head_into
from ..errors import ConfigError

# The run prints its own line per member; Lightning's banners (devices, tips) would drown it.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
# a member's folder holds its log (and, resumed, its last checkpoint) before the checkpoint callback starts
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# a resumed member's earlier CSV log is set aside first (`experiment_logger`), so nothing is lost
warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    """One fold of the public data (uint8 images), on the training device or pinned in host memory
    when too big for it (`placement`); batches always reach the model on `device`."""
    train_images: torch.Tensor      # (N, C, H, W)
    train_labels: torch.Tensor      # (N,)
    val_images: torch.Tensor        # (V, C, H, W)
    val_labels: torch.Tensor        # (V,)
    num_classes: int
    mean: tuple[float, ...]         # per-channel pixel statistics of train_images, in [0, 1] units
    std: tuple[float, ...]
    device: torch.device = torch.device("cpu")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True, kw_only=True)
class TrainedModel:
    module: Classifier              # the best checkpoint's weights (EMA weights when averaging)
    best_epoch: int
    epochs_run: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    out_of_time: bool = False       # stopped at an epoch boundary by the run's time limit


class EpochHistory(L.Callback):
    """Per-epoch training loss, validation loss and accuracy, learning rate, elapsed time and the
    process's CPU time (all its threads: how much of the cores it asked for it got). Its rows travel
    in the checkpoint, so a resumed fit keeps the epochs run before the stop."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])
        # elapsed time goes on from where the stopped fit left it
        self.start = time.perf_counter() - (self.rows[-1]["elapsed_s"] if self.rows else 0.0)
        self.cpu_start = time.process_time() - (self.rows[-1].get("cpu_s", 0.0) if self.rows else 0.0)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "train_loss": float(metrics.get("train_loss", float("nan"))),
            "val_loss": float(metrics.get("val_loss", float("nan"))),
            "val_acc": float(metrics.get("val_acc", float("nan"))),
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            "elapsed_s": time.perf_counter() - self.start,
            "cpu_s": time.process_time() - self.cpu_start,
        })


class StopOnSignal(L.Callback):
    """Ends the fit at the next batch once SIGINT or SIGTERM asked the run to stop (see stopping.py):
    last.ckpt then holds the last finished epoch, where `--resume` picks the member up."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        stopping.check()

    def on_validation_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        stopping.check()


class Deadline(L.Callback):
    """Ends the fit at an epoch boundary when another epoch as long as the last would end after
    `deadline` (a `time.time()`): the best checkpoint so far is the member's (plan.py)."""

    def __init__(self, deadline: float) -> None:
        self.deadline, self.epoch_start, self.stopped = deadline, time.time(), False

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_start = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        now = time.time()
        if now + (now - self.epoch_start) > self.deadline and trainer.current_epoch + 1 < trainer.max_epochs:
            trainer.should_stop = self.stopped = True


class EpochOrder(L.Callback):
    """Tells the batch iterator which epoch is starting, so each epoch's order is a function of
    (seed, epoch number) and a fit resumed from last.ckpt sees the same batches as one never stopped."""

    def __init__(self, batches: DeviceBatches) -> None:
        self.batches = batches

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.batches.set_epoch(trainer.current_epoch)


LOG_FOLDER = "logs"         # a member's training log, under its folder


def experiment_logger(kind: str, out_dir: Path, name: str = "member"):
    """Lightning's logger of `kind` writing into the member's folder (False for none): the CSV of
    every epoch's metrics, TensorBoard's event files, or a local MLflow store."""
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger
        earlier = Path(out_dir) / LOG_FOLDER / "metrics.csv"
        if earlier.is_file():       # a resumed fit: Lightning's CSVLogger starts a new file, so keep the old one
            earlier.replace(earlier.with_name(f"metrics.{len(list(earlier.parent.glob('metrics.*.csv'))) + 1}.csv"))
        return CSVLogger(save_dir=out_dir, name="", version=LOG_FOLDER)
    if kind == "tensorboard":
        try:
            from lightning.pytorch.loggers import TensorBoardLogger
            return TensorBoardLogger(save_dir=out_dir, name="", version=LOG_FOLDER, default_hp_metric=False)
        except ModuleNotFoundError as e:
            raise ConfigError("logger = tensorboard needs the tensorboard package: pip install tensorboard") from e
    from lightning.pytorch.loggers import MLFlowLogger
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError as e:
        raise ConfigError("logger = mlflow needs the mlflow package: pip install mlflow") from e
    return MLFlowLogger(experiment_name="competition", run_name=name,
                        tracking_uri=(Path(out_dir).resolve() / "mlruns").as_uri())


CURVES = ("train_loss", "val_loss", "val_acc", "lr")


def read_training_log(out_dir: Path) -> list[dict[str, float]]:
    """A member's per-epoch metrics as its logger wrote them (`experiment_logger`): rows of `epoch` and
    whichever of `CURVES` were logged; [] where there is no log (logger none, a probe member)."""
    out_dir = Path(out_dir)
    by_epoch: dict[int, dict[str, float]] = {}

    def put(epoch: int, name: str, value: float) -> None:
        name = "lr" if name.startswith("lr-") else name        # LearningRateMonitor's "lr-AdamW" (the head's group)
        if name in CURVES:
            by_epoch.setdefault(epoch, {"epoch": epoch + 1})[name] = float(value)
    csv_logs = sorted((out_dir / LOG_FOLDER).glob("metrics.*.csv"), key=lambda p: int(p.name.split(".")[1])) + \
        [p for p in [out_dir / LOG_FOLDER / "metrics.csv"] if p.is_file()]    # a resumed fit's earlier parts first
    events = sorted((out_dir / LOG_FOLDER).glob("events.out.tfevents.*"))
    if csv_logs:
        import pandas as pd
        parts = [pd.read_csv(p) for p in csv_logs if p.stat().st_size]    # a fit killed at once left an empty file
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["epoch", "step"])
        ends = frame[frame["epoch"].notna()].groupby("epoch")["step"].max()      # each epoch's last step
        for _, row in frame.iterrows():
            # LearningRateMonitor logs at an epoch's first step, without the epoch: the first epoch ending at or after it
            epoch = int(row["epoch"]) if row["epoch"] == row["epoch"] else \
                int(ends.index[ends >= row["step"]].min()) if (ends >= row["step"]).any() else None
            for name, value in row.items():
                if name not in ("epoch", "step") and value == value and epoch is not None:
                    put(epoch, name.split("/")[0], value)
    elif events:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        accumulator = EventAccumulator(str(out_dir / LOG_FOLDER))
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        ends: dict[int, int] = {}           # epoch -> its last step
        for event in accumulator.Scalars("epoch") if "epoch" in tags else []:
            ends[int(event.value)] = max(ends.get(int(event.value), -1), event.step)
        for tag in tags:
            for event in accumulator.Scalars(tag) if tag != "epoch" else []:
                # a metric logged at an epoch's first step (the learning rate): the first epoch ending at or after it
                epoch = min((e for e, end in ends.items() if end >= event.step), default=None)
                if epoch is not None:
                    put(epoch, tag, event.value)
    elif (out_dir / "mlruns").is_dir():
        epochs: dict[int, int] = {}
        files = list((out_dir / "mlruns").glob("*/*/metrics/*"))
        for path in files:          # each line: timestamp value step
            if path.name == "epoch":
                epochs |= {int(step): int(float(value)) for _, value, step in
                           (line.split() for line in path.read_text().splitlines())}
        for path in files:
            if path.name != "epoch":
                for _, value, step in (line.split() for line in path.read_text().splitlines()):
                    put(epochs.get(int(step), int(step)), path.name, float(value))
    return [by_epoch[e] for e in sorted(by_epoch)]


def resumable_checkpoint(path: Path) -> Path | None:
    """last.ckpt if a stopped fit left a readable one; a truncated file (killed while saving) is
    removed, and the member starts again from its first epoch."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if "state_dict" in saved and "loops" in saved:
            return path
    except Exception:   # any unreadable file is treated alike: not trusted
        pass
    path.unlink()
    return None


def train_model(data: TrainingData, cfg: RunConfig, model: str, seed: int, out_dir: Path,
                pseudo_images: torch.Tensor | None = None, pseudo_labels: torch.Tensor | None = None,
                fixed_epochs: bool = False, unlabelled: torch.Tensor | None = None,
                deadline: float | None = None, warm_from: Path | None = None,
                head_from: Path | None = None) -> TrainedModel:
    """Train `model` from scratch (or from the weights of the checkpoint `warm_from`) on one fold (optionally with pseudo-labelled rows in every batch,
    and with consistency training on `unlabelled` images when the config asks for it) and return
    the module holding its best validation epoch's weights. `deadline` (a `time.time()`): stop at the
    epoch boundary before it (see `Deadline`). `head_from`: a fitted probe's head (probe.py) the
    classifier starts from (linear probe, then fine-tune). A member trains `cfg.member_epochs`: at
    least `min_steps` optimiser steps.

    `fixed_epochs`: a refit. Train exactly `cfg.epochs` epochs without validating (no early
    stopping, nothing chosen) and return the last epoch's weights; `data.val_*` are not read.
    """
    if fixed_epochs:
        return _train_fixed_epochs(data, cfg, model, seed, Path(out_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    L.seed_everything(seed, workers=False, verbose=False)
    device = data.device
    train_batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True, seed=seed,
                                  extra_images=pseudo_images, extra_labels=pseudo_labels,
                                  extra_share=cfg.pseudo_share, device=device)
    val_batches = DeviceBatches(data.val_images, data.val_labels, 1024, shuffle=False, device=device)
    cfg = cfg.replace(epochs=cfg.member_epochs(len(train_batches)))
    module = Classifier.from_config(cfg, model=model, num_classes=data.num_classes, image_shape=data.image_shape,
                                    mean=data.mean, std=data.std, steps_per_epoch=len(train_batches),
                                    seed=seed)
    if head_from is not None:
        load_head_into(module.net, LinearHead.from_state_dict(torch.load(head_from, weights_only=True)))
    if warm_from is not None:
        # the weights only: the optimiser and its schedule start afresh for this member's epochs
        module.load_state_dict(torch.load(warm_from, map_location=device, weights_only=False)["state_dict"])
    if cfg.consistency != "none":
        module.attach_unlabelled(unlabelled)
    history = EpochHistory()
    # best.ckpt: the best validation epoch; last.ckpt: every finished epoch, to resume a stopped fit
    checkpoint = ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val_acc", mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks: list[L.Callback] = [checkpoint, history, EpochOrder(train_batches), StopOnSignal()]
    if cfg.patience:
        callbacks.append(EarlyStopping("val_acc", mode="max", patience=cfg.patience))
    guard = Deadline(deadline) if deadline is not None else None
    if guard is not None:
        callbacks.append(guard)
    if cfg.averaging == "ema":
        # validation, the checkpoint and so prediction all see the averaged weights
        callbacks.append(EMAWeightAveraging(decay=ema_decay(cfg.ema_half_life, len(train_batches))))
    logger = experiment_logger(cfg.logger, out_dir, name=out_dir.name)
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))     # the head's rate, "lr-AdamW"
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision=precision_for(cfg, device), max_epochs=cfg.epochs, callbacks=callbacks,
        logger=logger, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
        enable_progress_bar=sys.stderr.isatty(), default_root_dir=out_dir)
    trainer.fit(module, train_batches, val_batches, ckpt_path=resumable_checkpoint(out_dir / "last.ckpt"))

    best = torch.load(checkpoint.best_model_path, map_location=device, weights_only=False)
    module.load_state_dict(best["state_dict"])
    module.to(device).eval()
    best_row = max(history.rows, key=lambda r: r["val_acc"])
    return TrainedModel(module=module, best_epoch=int(best_row["epoch"]), epochs_run=len(history.rows),
                        wall_s=time.perf_counter() - start, history=history.rows,
                        out_of_time=guard is not None and guard.stopped)


def _train_fixed_epochs(data: TrainingData, cfg: RunConfig, model: str, seed: int, out_dir: Path) -> TrainedModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    L.seed_everything(seed, workers=False, verbose=False)
    device = data.device
    batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True, seed=seed,
                            device=device)
    cfg = cfg.replace(epochs=cfg.member_epochs(len(batches)))
    module = Classifier.from_config(cfg, model=model, num_classes=data.num_classes, image_shape=data.image_shape,
                                    mean=data.mean, std=data.std, steps_per_epoch=len(batches),
                                    seed=seed)
    history = EpochHistory()
    callbacks: list[L.Callback] = [history, EpochOrder(batches), StopOnSignal()]
    if cfg.averaging == "ema":
        callbacks.append(EMAWeightAveraging(decay=ema_decay(cfg.ema_half_life, len(batches))))
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision=precision_for(cfg, device), max_epochs=cfg.epochs, callbacks=callbacks,
        logger=False, enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        enable_progress_bar=sys.stderr.isatty(), default_root_dir=out_dir)
    trainer.fit(module, batches)
    module.to(device).eval()
    return TrainedModel(module=module, best_epoch=len(history.rows), epochs_run=len(history.rows),
                        wall_s=time.perf_counter() - start, history=history.rows)
