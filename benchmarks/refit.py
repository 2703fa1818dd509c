"""Refit on all labelled data at the epoch count CV chose, against the K fold models: which predicts better?

    python -m benchmarks.refit [--competition mnist-5k] [--repeats 3]

Measured without test answers, on a nested holdout of the public labelled images: each repeat
holds out a stratified 20% of them (`outer` rows, seed = repeat), and on the other 80% trains
- the K fold members exactly as `run` does (round 0: early stopping and the best checkpoint on each fold), and
- one refit model on all of the 80% for the median best epoch of the fold members, no validation,
then scores on the outer 20%: the fold ensemble (logit mean), the refit alone, and refit + folds.
Wall time of each arm is reported beside it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from competition.config import RunConfig
from competition.fitting.data import PublicData, pixel_stats
from competition.grading.grader import accuracy_of
from competition.fitting.policy import resolve_for
from competition.fitting.predict import predict
from competition.preparing.splits import stratified_split, training_rows, validation_folds
from competition.fitting.train import TrainingData, train_model
from competition.fitting.device import training_device

from .common import add_output_flag, command, public_data, write_result

OUTER_FRACTION = 0.2


def subset_data(public: PublicData, train: np.ndarray, val: np.ndarray, device: torch.device) -> TrainingData:
    images = public.train_images[train]
    mean, std = pixel_stats(images)
    return TrainingData(train_images=images.to(device), train_labels=public.train_labels[train].to(device),
                        val_images=public.train_images[val].to(device), val_labels=public.train_labels[val].to(device),
                        num_classes=public.num_classes, mean=mean, std=std, device=device)


def one_repeat(public: PublicData, cfg: RunConfig, repeat: int, work: Path) -> dict:
    device = training_device()
    labels = public.train_labels.numpy()
    inner, outer = stratified_split(labels, OUTER_FRACTION, seed=repeat)
    outer_images, outer_labels = public.train_images[outer], public.train_labels[outer]
    fold_logits, best_epochs, fold_wall = [], [], 0.0
    for fold, val in enumerate(validation_folds(labels[inner], cfg.folds, cfg.val_fraction, cfg.split_seed)):
        data = subset_data(public, inner[training_rows(len(inner), val)], inner[val], device)
        trained = train_model(data, cfg, cfg.models[0], seed=1000 * repeat + fold, out_dir=work / f"fold{fold}")
        fold_logits.append(predict(trained.module, outer_images)[0])
        best_epochs.append(trained.best_epoch)
        fold_wall += trained.wall_s
    refit_epochs = int(round(statistics.median(best_epochs)))
    data = subset_data(public, inner, inner[:0], device)
    refit = train_model(data, cfg.replace(epochs=refit_epochs), cfg.models[0], seed=1000 * repeat + 99,
                        out_dir=work / "refit", fixed_epochs=True)
    refit_logits = predict(refit.module, outer_images)[0]
    folds_mean = torch.stack(fold_logits).mean(0)
    arms = {"fold ensemble": folds_mean, "refit": refit_logits,
            "refit + folds": (folds_mean * len(fold_logits) + refit_logits) / (len(fold_logits) + 1)}
    scores = {name: accuracy_of((logits.argmax(1) == outer_labels).numpy()) for name, logits in arms.items()}
    return {"repeat": repeat, "best_epochs": best_epochs, "refit_epochs": refit_epochs,
            "fold_wall_s": fold_wall, "refit_wall_s": refit.wall_s,
            "scores": {k: {"acc": s.value, "low": s.low, "high": s.high, "n": s.total} for k, s in scores.items()}}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="instead of run's default (for quick checks)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, _ = public_data(args.competition)
    cfg = RunConfig(competition=args.competition, pseudo_rounds=0, **({"epochs": args.epochs} if args.epochs else {}))
    cfg = resolve_for(cfg, public)
    work = Path(tempfile.mkdtemp(prefix="bench-refit-"))
    runs = []
    for r in range(args.repeats):
        runs.append(one_repeat(public, cfg, r, work / f"repeat{r}"))
        print(runs[-1])
    rows = []
    for arm in ("fold ensemble", "refit", "refit + folds"):
        values = [run["scores"][arm]["acc"] for run in runs]
        wall = [run["fold_wall_s"] * (arm != "refit") + run["refit_wall_s"] * (arm != "fold ensemble")
                for run in runs]
        rows.append({"arm": arm, "holdout_acc_mean": statistics.mean(values), "min": min(values), "max": max(values),
                     "holdout_n": runs[0]["scores"][arm]["n"], "train_wall_s_mean": statistics.mean(wall)})
    write_result(f"refit_{args.competition}", rows,
                 {"command": command("refit", argv), "config": cfg.to_dict(), "runs": runs}, args.out)
    return rows


if __name__ == "__main__":
    main()
