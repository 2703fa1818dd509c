"""The linear probe's levers, out of fold on a Kaggle-form photo folder: the backbone, its input size,
the input normalisation, float32 or bf16 features, and the test-time mirror.

    python -m benchmarks.probe_levers --data DIR --weights-dir DIR [--levers base "imagenet mean" ...]

Each lever is the harness's own probe (`probe.extract_features` + `probe.fit_linear_head`, C chosen
inside each fold) on 4 stratified folds of the folder's labelled images, prepared as `run` prepares
them; the table gives each lever's OOF accuracy with and without the mirror view, its features'
rate and its time. No test answer is read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from competition.config import RunConfig
from competition.fitting.data import load_public
from competition.fitting.device import training_device
from competition.fitting.models import input_side
from competition.fitting.policy import resolve_for
from competition.fitting.predict import MIRROR_VIEWS
from competition.fitting.probe import backbone_net, extract_features, fit_linear_head
from competition.grading.metrics import accuracy_of
from competition.preparing.images import SizeRequest
from competition.preparing.prepare import prepare_kaggle_folder
from competition.preparing.splits import validation_folds

from .common import add_output_flag, command, write_result

BASE = {"backbone": "timm/efficientnet_lite0", "normalise": "auto", "bf16": True, "size": None, "scale": 1.0}
LEVERS = {
    "base": {},
    "float32 features": {"bf16": False},
    "imagenet mean and std": {"normalise": "backbone"},
    "160 px": {"size": 160},
    "128 px": {"size": 128},
    # above the backbone's own size: trained on random-resized crops, a net sees objects larger in
    # training than at its test size (Touvron et al. 2019, "Fixing the train-test resolution discrepancy")
    "x1.15 size": {"scale": 1.15},
    "x1.3 size": {"scale": 1.3},
    "lite1 (240 px)": {"backbone": "timm/efficientnet_lite1"},
    "lite2 (260 px)": {"backbone": "timm/efficientnet_lite2"},
}


def measure(folder: Path, weights_dir: str, lever: dict, workspace: Path, backbone: str) -> dict:
    settings = {**BASE, "backbone": backbone, **lever}
    own = input_side(settings["backbone"])
    size = settings["size"] or (own if settings["scale"] == 1 else 8 * round(settings["scale"] * own / 8))
    paths = prepare_kaggle_folder(folder, workspace / f"data-{size}", log=lambda s: None,
                                  sizes=SizeRequest(limit=size, colour_limit=size))
    public = load_public(paths.public)
    cfg = resolve_for(RunConfig(models=(settings["backbone"],), weights_dir=weights_dir, input_size=size,
                                normalise=settings["normalise"]), public)
    device = training_device()
    net, mean, std = backbone_net(settings["backbone"], cfg, public.image_shape[0])
    start = time.perf_counter()
    features = extract_features(net, public.train_images, MIRROR_VIEWS, size, mean, std, device,
                                bf16=settings["bf16"])
    features_s = time.perf_counter() - start
    labels = public.train_labels
    logits = torch.zeros(2, len(labels), public.num_classes)
    for val in validation_folds(labels.numpy(), 4, 0.1, 0):
        train = np.setdiff1d(np.arange(len(labels)), val)
        head = fit_linear_head(features[:, train], labels[train], public.num_classes)
        logits[:, val] = head.logits(features[:, val])
    plain = accuracy_of((logits[0].argmax(1) == labels).numpy())
    mirrored = accuracy_of((logits.mean(0).argmax(1) == labels).numpy())
    return {"backbone": settings["backbone"], "size": size, "normalise": cfg.normalise,
            "features": "bf16" if settings["bf16"] else "float32", "oof": plain.value, "oof_low": plain.low,
            "oof_high": plain.high, "oof_with_mirror": mirrored.value,
            "features_img_s": 2 * len(labels) / features_s, "wall_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights-dir", required=True, help="<timm-name>.pth files for every backbone levered")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--backbone", default=BASE["backbone"], help="the base lever's timm backbone")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    workspace = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    rows = []
    for name in args.levers:
        rows.append({"lever": name, **measure(args.data, args.weights_dir, LEVERS[name], workspace, args.backbone)})
        print(rows[-1], flush=True)
    write_result(f"probe_levers_{args.data.name}", rows, {"command": command("probe_levers", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
