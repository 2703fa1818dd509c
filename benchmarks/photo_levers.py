"""Photo-competition levers on one validation fold (never on test answers): size, resize, fine-tuning.

    python -m benchmarks.photo_levers DATA_DIR [--weights FILE] [--fold 0] [--levers ...]

DATA_DIR is a Kaggle-form photo folder (e.g. made by `benchmarks.photo_folders`); `--weights` a
timm-keyed EfficientNet-Lite0 state dict (`python -m benchmarks.photo_folders efficientnet-lite0 OUT`).
Each lever prepares the folder at its image size and resize policy (into a temporary workspace),
trains one member on fold `--fold` of the default 4 folds with one seed, and reports the fold's
validation accuracy (exact 95% interval), its best epoch and wall time, with the precision used.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from competition.fitting import policy
from competition.config import WARPS, Augmentation, RunConfig
from competition.fitting.data import load_public
from competition.fitting.members import fold_data
from competition.grading.metrics import accuracy_of
from competition.fitting.predict import IDENTITY, predict
from competition.preparing.prepare import prepare_kaggle_folder
from competition.fitting.train import train_model
from competition.fitting.device import precision_for, training_device

from .common import add_output_flag, command, write_result

# Each lever is a change to the fine-tuning default (FINE_TUNE in config.py: 3 epochs, batch 32, head LR
# 3e-3, backbone at 0.1 of it, ImageNet batch-norm statistics kept, crops) or a from-scratch setting.
LITE0 = {"models": ("timm/efficientnet_lite0",)}
SHIFTS = Augmentation(rotation=0.0, zoom=0.0, shear=0.0)
LEVERS: dict[str, dict] = {
    "lite0 160 (default)": {**LITE0, "image_size": 160},
    "lite0 128": {**LITE0, "image_size": 128},
    "lite0 96": {**LITE0, "image_size": 96},
    "lite0 160 pad": {**LITE0, "image_size": 160, "resize": "pad"},
    "lite0 96 lr 1e-3, 4 epochs": {**LITE0, "image_size": 96, "lr": 1e-3, "epochs": 4},
    "lite0 96 lr 1e-2, backbone 0.03, 4 epochs": {**LITE0, "image_size": 96, "lr": 1e-2, "backbone_lr": 0.03,
                                                  "epochs": 4},
    "lite0 96 no warps, crop 0.6, 4 epochs": {**LITE0, "image_size": 96, "epochs": 4, "augment": Augmentation(
        rotation=0, shift=0, zoom=0, shear=0, crop=0.6)},
    "lite0 160 shift only": {**LITE0, "image_size": 160, "augment": SHIFTS},
    # from scratch: seed 001's warps (the default before §17) against shifts alone (the default since)
    "scratch warps": {"augment": Augmentation(**WARPS)},
    "scratch shift only": {"augment": SHIFTS},
    "scratch 64 crop": {"image_size": 64},
    "scratch 64 warps": {"image_size": 64, "augment": Augmentation(**WARPS)},
    "scratch 64 pad": {"image_size": 64, "resize": "pad"},
    # resnet-small's stages pool after their batch norm (before §19), against the default
    "scratch pool after batch norm": {"model_kwargs": {"pool_first": False}},
    "scratch 64 pool after batch norm": {"image_size": 64, "model_kwargs": {"pool_first": False}},
}


def measure(folder: Path, cfg: RunConfig, fold: int, workspace: Path) -> dict:
    sizes = policy.size_request(cfg, training_device().type)
    paths = prepare_kaggle_folder(folder, workspace / sizes.key.replace(" ", "_"), log=lambda s: None, sizes=sizes)
    public = load_public(paths.public)
    cfg = policy.resolve_for(cfg, public)
    data, _ = fold_data(public, cfg, fold, training_device())
    start = time.perf_counter()
    trained = train_model(data, cfg, cfg.models[0], seed=7, out_dir=Path(tempfile.mkdtemp(prefix="bench-photo-")))
    wall = time.perf_counter() - start
    logits = predict(trained.module, data.val_images, IDENTITY)
    plain = accuracy_of(logits[0].argmax(1).numpy() == data.val_labels.cpu().numpy())
    return {"model": cfg.models[0], "size": public.image_shape[1], "resize": cfg.resize,
            "precision": precision_for(cfg, training_device()), "val_acc": plain.value,
            "val_ci": [plain.low, plain.high], "val_rows": plain.total, "best_epoch": trained.best_epoch,
            "epochs_run": trained.epochs_run, "wall_s": wall}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights", default="")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    add_output_flag(parser)
    args = parser.parse_args(argv)
    workspace = Path(tempfile.mkdtemp(prefix="bench-photo-levers-"))
    rows = []
    for name in args.levers:
        changes = dict(LEVERS[name])
        if changes.get("models", ("",))[0].startswith("timm/"):
            changes["weights"] = args.weights
        rows.append({"lever": name, **measure(args.data, RunConfig(**changes), args.fold, workspace)})
        print(rows[-1], flush=True)
    write_result(f"photo_levers_{args.data.name}", rows, {"command": command("photo_levers", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
