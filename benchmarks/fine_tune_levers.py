"""A pretrained backbone on few labels: its linear probe against fine-tunes, from a fresh head or from the
probe's (linear probe, then fine-tune), by optimiser steps, on one split of a Kaggle-form photo folder.

    python -m benchmarks.fine_tune_levers --data DIR --weights-dir DIR [--train 200] [--val 600] [--size 160]
                                          [--steps 21 60 120]

The folder is prepared as `run` prepares it (at `--size`); `--train` labelled images are sampled per
class in proportion, and `--val` other labelled images validate every lever alike (no test answer is
read). Each fine-tune is `run`'s fine-tuning recipe (one-cycle AdamW at batch 32, the head at 3e-3,
the backbone at a tenth, ImageNet batch-norm statistics kept, random resized crops and mirrors) for
the given number of optimiser steps; `fresh head` starts timm's new classifier, `from the probe` the
head the probe fitted on the same training images. The probe's row is its head alone.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from competition.config import RunConfig
from competition.fitting.data import pixel_stats
from competition.fitting.device import training_device
from competition.fitting.module import hit_rate
from competition.fitting.policy import resolve_for
from competition.fitting.predict import IDENTITY, MIRROR_VIEWS, predict
from competition.fitting.probe import backbone_net, extract_features, feature_bf16, fit_linear_head
from competition.fitting.train import TrainingData, train_model
from competition.preparing.images import SizeRequest
from competition.preparing.prepare import prepare_kaggle_folder
from competition.fitting.data import load_public

from .common import add_output_flag, command, write_result


def sample(labels: np.ndarray, train: int, val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified disjoint (train rows, validation rows)."""
    rng = np.random.default_rng(seed)
    share_train, share_val = train / len(labels), val / len(labels)
    train_rows, val_rows = [], []
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        a, b = round(share_train * len(rows)), round(share_val * len(rows))
        train_rows += list(rows[:a])
        val_rows += list(rows[a:a + b])
    return np.sort(train_rows), np.sort(val_rows)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--backbone", default="timm/efficientnet_lite0")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, nargs="+", default=[21, 60, 120])
    add_output_flag(parser)
    args = parser.parse_args(argv)
    device = training_device()
    workspace = Path(tempfile.mkdtemp(prefix="bench-ft-"))
    paths = prepare_kaggle_folder(args.data, workspace / "data", log=lambda s: None,
                                  sizes=SizeRequest(size=args.size))
    public = load_public(paths.public)
    cfg = resolve_for(RunConfig(models=(args.backbone,), weights_dir=args.weights_dir, input_size=args.size), public)
    train_rows, val_rows = sample(public.train_labels.numpy(), args.train, args.val)
    labels = public.train_labels
    rows = []
    start = time.perf_counter()
    net, mean, std = backbone_net(args.backbone, cfg)
    views = MIRROR_VIEWS
    features = extract_features(net, public.train_images[np.concatenate([train_rows, val_rows])], views, args.size,
                                mean, std, device, bf16=feature_bf16(cfg, device))
    head = fit_linear_head(features[:, :len(train_rows)], labels[train_rows], public.num_classes)
    probe_acc = float(hit_rate(head.logits(features[:, len(train_rows):]).mean(0), labels[val_rows]))
    rows.append({"lever": "linear probe", "steps": 0, "val_acc": probe_acc, "wall_s": time.perf_counter() - start})
    print(rows[-1], flush=True)
    head_file = workspace / "probe.pt"
    torch.save(head.state_dict(), head_file)
    mean_px, std_px = pixel_stats(public.train_images[train_rows])
    data = TrainingData(train_images=public.train_images[train_rows], train_labels=labels[train_rows],
                        val_images=public.train_images[val_rows], val_labels=labels[val_rows],
                        num_classes=public.num_classes, mean=mean_px, std=std_px, device=device)
    steps_per_epoch = math.ceil(len(train_rows) / int(cfg.batch_size))
    for steps in args.steps:
        for lever, head_from in (("fresh head", None), ("from the probe", head_file)):
            epochs = max(1, math.ceil(steps / steps_per_epoch))
            run_cfg = cfg.replace(epochs=epochs, min_steps=0, patience=epochs)
            start = time.perf_counter()
            trained = train_model(data, run_cfg, args.backbone, seed=0,
                                  out_dir=Path(tempfile.mkdtemp(prefix="ft-", dir=workspace)), head_from=head_from)
            logits = predict(trained.module, data.val_images, IDENTITY)[0]
            rows.append({"lever": lever, "steps": epochs * steps_per_epoch,
                         "val_acc": float(hit_rate(logits, labels[val_rows])),
                         "best_epoch": trained.best_epoch, "epochs": epochs, "wall_s": time.perf_counter() - start})
            print(rows[-1], flush=True)
    write_result(f"fine_tune_levers_{args.data.name}", rows,
                 {"command": command("fine_tune_levers", argv), "train": len(train_rows), "val": len(val_rows)},
                 args.out)
    return rows


if __name__ == "__main__":
    main()
