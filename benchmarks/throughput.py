"""Figure 1: training images/s, the harness vs the usual way, same model and augmentation, one process.

    python -m benchmarks.throughput [--competition mnist-5k] [--model fastnet] [--epochs 2]

Harness: uint8 data resident on the device, randperm batches, one batched grid_sample per batch.
Reference: DataLoader over a dataset augmenting one image per __getitem__, default Lightning loop.
Both: the same model, Adam-family optimiser, run's batch size, no validation, timed over whole epochs.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch

from competition.config import RunConfig
from competition.config import Augmentation
from competition.fitting.data import DeviceBatches
from competition.fitting.module import Classifier
from competition.fitting.device import precision_for, training_device

from .common import add_output_flag, command, training_data, write_result
from .reference import ReferenceModule, loaders

AUG = Augmentation(rotation=10, shift=0.08, zoom=0.1, shear=0.1, hflip="off", crop=0.0)


def _trainer(epochs: int, device: torch.device, precision: str) -> L.Trainer:
    return L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=epochs,
                     precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)


def harness_rate(data, cfg: RunConfig, epochs: int) -> float:
    device = data.train_images.device
    batches = DeviceBatches(data.train_images, data.train_labels, cfg.batch_size, shuffle=True)
    module = Classifier.from_config(cfg.replace(augment=AUG, epochs=epochs), model=cfg.models[0],
                                    num_classes=data.num_classes, image_shape=data.image_shape, mean=data.mean,
                                    std=data.std, steps_per_epoch=len(batches))
    start = time.perf_counter()
    _trainer(epochs, device, precision_for(cfg, device)).fit(module, batches)
    return epochs * len(data.train_images) / (time.perf_counter() - start)


def reference_rate(data, cfg: RunConfig, epochs: int) -> float:
    device = data.train_images.device
    train, _ = loaders(data.train_images.cpu(), data.train_labels.cpu(), data.val_images.cpu(),
                       data.val_labels.cpu(), AUG, data.mean, data.std, cfg.batch_size)
    module = ReferenceModule(cfg.models[0], data.num_classes, data.image_shape[1])
    start = time.perf_counter()
    _trainer(epochs, device, precision_for(cfg, device)).fit(module, train)
    return epochs * len(data.train_images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--model", default="fastnet")
    parser.add_argument("--epochs", type=int, default=2)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition, model=args.model)
    L.seed_everything(0, verbose=False)
    harness = harness_rate(data, cfg, args.epochs)
    reference = reference_rate(data, cfg, args.epochs)
    rows = [{"device": training_device().type, "model": args.model, "harness_img_s": harness,
             "reference_img_s": reference, "ratio": harness / reference}]
    write_result("throughput", rows, {"command": command("throughput", argv)}, args.out)
    return rows[0]


if __name__ == "__main__":
    main()
