"""Train one seed (or N) with the Lightning Trainer and return its validation and test logits.

Per seed, under `<out_dir>/`: best.ckpt (the best validation epoch), logits.pt (val and
test logits of that checkpoint), result.json (accuracy, epochs, wall time, per-epoch history).
A seed whose result.json exists is loaded instead of retrained: that is how --resume works.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from .config import RunConfig
from .data import DeviceBatches, PublicData, pixel_stats, validation_split
from .module import Classifier
from .sources import atomic_write_text

# The run prints its own one line per seed; Lightning's banners (devices, tips) would drown it.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


@dataclass(frozen=True)
class TrainingData:
    """Public data split for training, resident on the training device (uint8 images)."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    num_classes: int
    image_size: int
    mean: float
    std: float


def training_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def split_public(public: PublicData, cfg: RunConfig, device: torch.device | None = None) -> TrainingData:
    """Hold out the stratified validation split and move everything to the device once."""
    device = device or training_device()
    train_idx, val_idx = validation_split(public.train_labels, cfg.val_fraction, cfg.split_seed)
    train_images = public.train_images[train_idx]
    mean, std = pixel_stats(train_images)
    return TrainingData(train_images.to(device), public.train_labels[train_idx].to(device),
                        public.train_images[val_idx].to(device), public.train_labels[val_idx].to(device),
                        public.test_images.to(device), public.num_classes, public.image_size, mean, std)


@dataclass
class SeedResult:
    seed: int
    val_acc: float
    best_epoch: int
    epochs_run: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    val_logits: torch.Tensor | None = field(default=None, repr=False)   # (N_val, K)
    test_logits: torch.Tensor | None = field(default=None, repr=False)  # (N_test, K)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("val_logits", "test_logits")}


class EpochHistory(L.Callback):
    """Per-epoch training loss, validation loss and accuracy, learning rate and elapsed time."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "train_loss": float(metrics.get("train_loss", float("nan"))),
            "val_loss": float(metrics.get("val_loss", float("nan"))),
            "val_acc": float(metrics.get("val_acc", float("nan"))),
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            "elapsed_s": time.perf_counter() - self.start,
        })


def precision_for(cfg: RunConfig, device: torch.device) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if device.type == "cuda" else "32-true"


@torch.inference_mode()
def predict_logits(module: Classifier, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, K) in float32 on the CPU, evaluation mode, no augmentation."""
    module.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=images.is_cuda)
    with autocast:
        chunks = [module(images[i:i + batch_size]).float() for i in range(0, len(images), batch_size)]
    return torch.cat(chunks).cpu()


def train_seed(data: TrainingData, cfg: RunConfig, seed: int, out_dir: Path,
               pseudo_images: torch.Tensor | None = None, pseudo_labels: torch.Tensor | None = None
               ) -> SeedResult:
    """Train one model from scratch (optionally with pseudo-labelled test rows mixed in)."""
    out_dir = Path(out_dir)
    if (out_dir / "result.json").is_file() and (out_dir / "logits.pt").is_file():
        return load_seed_result(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    L.seed_everything(seed, workers=False, verbose=False)
    device = data.train_images.device
    train_batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True, seed=seed,
                                  extra_images=pseudo_images, extra_labels=pseudo_labels,
                                  extra_share=cfg.pseudo_share)
    val_batches = DeviceBatches(data.val_images, data.val_labels, 1024, shuffle=False)
    augmentation = dict(rotation=cfg.rotation, shift=cfg.shift, zoom=cfg.zoom, shear=cfg.shear,
                        elastic=cfg.elastic) if cfg.augment else None
    module = Classifier(cfg.model, data.num_classes, data.image_size, data.mean, data.std, cfg.lr,
                        cfg.weight_decay, cfg.label_smoothing, cfg.schedule, cfg.epochs, len(train_batches),
                        augmentation, cfg.model_kwargs)
    history = EpochHistory()
    checkpoint = ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val_acc", mode="max",
                                 save_top_k=1, save_weights_only=True, enable_version_counter=False)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision=precision_for(cfg, device), max_epochs=cfg.epochs,
        callbacks=[checkpoint, EarlyStopping("val_acc", mode="max", patience=cfg.patience), history],
        logger=False, enable_model_summary=False, num_sanity_val_steps=0,
        enable_progress_bar=sys.stderr.isatty(), default_root_dir=out_dir)
    trainer.fit(module, train_batches, val_batches)

    best = torch.load(checkpoint.best_model_path, map_location=device, weights_only=True)
    module.load_state_dict(best["state_dict"])
    module.to(device)
    val_logits = predict_logits(module, data.val_images)
    result = SeedResult(
        seed=seed, val_acc=float((val_logits.argmax(1) == data.val_labels.cpu()).float().mean()),
        best_epoch=int(max(history.rows, key=lambda r: r["val_acc"])["epoch"]), epochs_run=len(history.rows),
        wall_s=time.perf_counter() - start, history=history.rows,
        val_logits=val_logits, test_logits=predict_logits(module, data.test_images))
    save_seed_result(result, out_dir)
    return result


def save_seed_result(result: SeedResult, out_dir: Path) -> None:
    """Logits first, result.json last: a seed counts as finished only once both exist."""
    tmp = out_dir / "logits.pt.tmp"
    torch.save({"val_logits": result.val_logits, "test_logits": result.test_logits}, tmp)
    tmp.replace(out_dir / "logits.pt")
    atomic_write_text(out_dir / "result.json", json.dumps(result.summary(), indent=2) + "\n")


def load_seed_result(out_dir: Path) -> SeedResult:
    summary = json.loads((out_dir / "result.json").read_text())
    logits = torch.load(out_dir / "logits.pt", weights_only=True)
    return SeedResult(**summary, **logits)


def train_seeds(data: TrainingData, cfg: RunConfig, out_dir: Path, seeds: list[int],
                pseudo_images: torch.Tensor | None = None, pseudo_labels: torch.Tensor | None = None,
                log: Callable[[str], None] = print) -> list[SeedResult]:
    """Train (or load, if finished earlier) each seed under out_dir/seed<k>, one summary line each."""
    results = []
    for seed in seeds:
        seed_dir = Path(out_dir) / f"seed{seed}"
        resumed = (seed_dir / "result.json").is_file()
        result = train_seed(data, cfg, seed, seed_dir, pseudo_images, pseudo_labels)
        status = "loaded from an earlier run" if resumed else f"{result.wall_s:.1f}s"
        log(f"  seed {seed}: val acc {result.val_acc:.4f} (best epoch {result.best_epoch}/{result.epochs_run}), "
            f"{status}")
        results.append(result)
    return results
