"""Levers measured on one validation fold (never on test answers): for data sets where a full fit is long.

    python -m benchmarks.fold_levers [--competition fashion-mnist] [--fold 0] [--levers base hflip ...]

Each lever is a change to `run`'s default config; each trains the default model on fold `--fold` of
the default 4 folds with the same seed, and reports the fold's validation accuracy (exact 95%
interval) from the plain view and with the test-time views (their mirrors too where flips are on),
its best epoch and its wall time. One fold is a quarter of a round: a lever that wins here by more
than its interval is worth a full `fit`; one that does not is not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from competition.config import WARPS, Augmentation, RunConfig
from competition.fitting.members import fold_data
from competition.grading.metrics import accuracy_of
from competition.fitting.policy import resolve_for
from competition.fitting.predict import predict, tta_views
from competition.fitting.train import train_model
from competition.fitting.device import precision_for, training_device

from .common import add_output_flag, command, public_data, write_result

# name -> changes to the default config. The named rows pin the model and precision they were
# measured with, so they keep their meaning when `auto` changes (from 20,000 labelled images
# `auto` is fastnet-wide; on a CPU with bf16 hardware the precision is bf16-mixed).
FASTNET_FP32 = {"models": ("fastnet",), "precision": "32-true"}
FASTNET_BF16 = {"models": ("fastnet",), "precision": "bf16-mixed"}
LEVERS: dict[str, dict] = {
    "base": {},
    "fastnet float32": FASTNET_FP32,
    "hflip": {**FASTNET_FP32, "augment": Augmentation(hflip="on")},
    "fastnet 24-48-96": {**FASTNET_FP32, "model_kwargs": {"widths": (24, 48, 96)}},
    "20 epochs": {**FASTNET_FP32, "epochs": 20},
    "bf16": FASTNET_BF16,
    "fastnet 24-48-96 bf16": {**FASTNET_BF16, "model_kwargs": {"widths": (24, 48, 96)}},
    "fastnet 32-64-128 bf16": {**FASTNET_BF16, "model_kwargs": {"widths": (32, 64, 128)}},
    "fastnet 24-48-96 bf16 20 epochs": {**FASTNET_BF16, "model_kwargs": {"widths": (24, 48, 96)}, "epochs": 20},
    # the default model and precision with seed 001's warps (the default before §17), or parts of them
    "warps": {"augment": Augmentation(**WARPS)},
    "shift and zoom only": {"augment": Augmentation(rotation=0.0, zoom=WARPS["zoom"], shear=0.0)},
    "shift only": {"augment": Augmentation(rotation=0.0, zoom=0.0, shear=0.0)},
    "shift and hflip": {"augment": Augmentation(rotation=0.0, zoom=0.0, shear=0.0, hflip="on")},
    # fastnet's first two stages pool after their batch norm and activation (before §19), or before
    # them at any map size (the default: from 14 px across)
    "pool after batch norm": {"model_kwargs": {"pool_first": False}},
    "pool before batch norm": {"model_kwargs": {"pool_first": True}},
}


def measure(public, cfg: RunConfig, fold: int) -> dict:
    cfg = resolve_for(cfg, public)
    model = cfg.models[0]
    data, _ = fold_data(public, cfg, fold, training_device())
    start = time.perf_counter()
    trained = train_model(data, cfg, model, seed=7, out_dir=Path(tempfile.mkdtemp(prefix="bench-fold-")))
    wall = time.perf_counter() - start
    views = tta_views(cfg.augment.hflip == "on")
    logits = predict(trained.module, data.val_images, views)
    labels = data.val_labels.cpu().numpy()
    plain = accuracy_of(logits[0].argmax(1).numpy() == labels)
    tta = accuracy_of(logits.mean(0).argmax(1).numpy() == labels)
    return {"model": model, "precision": precision_for(cfg, training_device()), "val_acc": plain.value,
            "val_ci": [plain.low, plain.high], "val_acc_tta": tta.value,
            "tta_views": len(views), "val_rows": plain.total, "best_epoch": trained.best_epoch,
            "epochs_run": trained.epochs_run, "wall_s": wall}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="fashion-mnist")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--epochs", type=int, default=None, help="instead of run's default (for quick checks)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, _ = public_data(args.competition)
    base = RunConfig(competition=args.competition, **({"epochs": args.epochs} if args.epochs else {}))
    rows = []
    for name in args.levers:
        rows.append({"lever": name, **measure(public, base.replace(**LEVERS[name]), args.fold)})
        print(rows[-1], flush=True)
    write_result(f"fold_levers_{args.competition}", rows,
                 {"command": command("fold_levers", argv), "base_config": base.to_dict()}, args.out)
    return rows


if __name__ == "__main__":
    main()
