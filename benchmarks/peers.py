"""The harness against what a user would pick instead, side by side on one machine at equal wall time.

    python -m benchmarks.peers --data DIR [--weights-dir DIR] [--peers fastai features]
    python -m benchmarks.peers --competition mnist-5k

1. The harness: `python -m competition run` with its defaults and its auto budget, a fresh process
   timed from its start (its wall time, W, is what the peers get).
2. fastai's documented recipe (fastai is in the `bench` extra), on the harness's prepared images:
   - photos, with ImageNet weights at hand: `vision_learner(dls, "<timm-name>", pretrained=True)`
     (the weights file given to timm through `pretrained_cfg_overlay`, timm's normalisation added
     by fastai, as for any timm model) at the backbone's own input size, and `fine_tune`: one
     frozen epoch, then as many unfrozen epochs as W leaves (an unfrozen epoch costed at three
     frozen ones; none where W leaves less than one: `fine_tune(0)`, the frozen epoch alone, is
     what fits a minute on a CPU), `Resize` and `aug_transforms()`; 20% of the labelled images
     validate.
   - grey images (digits, letters), from scratch: the fastai book's MNIST CNN (chapter 13: five
     stride-2 convolutions with ReLU and batch norm, batch 512, `Normalize`) and
     `fit_one_cycle(E, 0.06)`, E the epochs W leaves (one epoch timed first).
3. Frozen features + logistic regression (photos with weights): timm's own eval transform for the
   backbone (`resolve_data_config` + `create_transform`: its normalisation, its crop), pooled
   features of every image, scikit-learn's `LogisticRegressionCV` on the labelled ones. It takes
   what it takes (a minute or less), not W.

Every method's predictions of the held-out test images are scored against the answers; each peer's
accuracy minus the harness's is printed with a 95% paired bootstrap interval over the test images.
The answers are read here, by the benchmark, after every method has predicted; none of them sees
the answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from competition.fitting.models import input_side
from competition.prepared import read_prepared

from .common import add_output_flag, command, write_result
from competition.record import RunRecord

REPO = Path(__file__).resolve().parents[1]


def run_harness(workspace: Path, target: list[str], weights_dir: str | None, threads: int) -> dict:
    """The harness's default run in a fresh process: its wall time, scores and predicted labels."""
    env = dict(os.environ)
    if weights_dir:
        env["COMPETITION_WEIGHTS"] = weights_dir
    argv = [sys.executable, "-m", "competition", "--root", str(workspace), "run", *target] + \
        (["--threads", str(threads)] if threads else [])
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the harness failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    [run_dir] = [p for p in (workspace / "submissions").iterdir() if p.is_dir()]
    record = RunRecord.read(run_dir)
    plan = next((line for line in done.stdout.splitlines() if line.startswith("plan:")), "")
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str, keep_default_na=False)
    return {"wall_s": wall, "oof": record.cv.value, "plan": plan, "run_dir": str(run_dir),
            "labels": submission.iloc[:, 1].to_numpy()}


def prepared(workspace: Path) -> tuple[Path, object, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """The competition the harness prepared: (public folder, its description, train images, labels,
    test images, the answers)."""
    [root] = [p for p in (workspace / "data").iterdir() if (p / "public" / "competition.json").is_file()]
    public = root / "public"
    info = read_prepared(public)
    labels = np.load(public / "labels.npz")["train_labels"]
    answers = pd.read_csv(root / "private" / "solution.csv", dtype=str, keep_default_na=False)
    return public, info, np.load(public / "train_images.npy"), labels, np.load(public / "test_images.npy"), answers


def fastai_photos(train: np.ndarray, labels: np.ndarray, test: np.ndarray, backbone: str, weights: str,
                  wall_s: float, size: int) -> dict:
    """vision_learner + fine_tune, as fastai documents it, for about `wall_s` seconds."""
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, PILImage, RandomSplitter, Resize,
                                   accuracy, aug_transforms, vision_learner)
    start = time.perf_counter()
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: list(range(len(train))),
                      get_x=lambda i: PILImage.create(train[i]), get_y=lambda i: str(labels[i]),
                      splitter=RandomSplitter(0.2, seed=0), item_tfms=Resize(size), batch_tfms=aug_transforms())
    dls = block.dataloaders(None, bs=32, num_workers=0)
    learn = vision_learner(dls, backbone, pretrained=True, metrics=accuracy,
                           pretrained_cfg_overlay={"file": weights})
    # fine_tune(epochs) by hand, to time its frozen epoch and give the unfrozen ones the time left
    base_lr = 2e-3
    learn.freeze()
    frozen_start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, slice(base_lr), pct_start=0.99)
    frozen_s = time.perf_counter() - frozen_start
    epochs = max(0, int((wall_s - (time.perf_counter() - start)) / (3 * frozen_s)))
    if epochs:
        learn.unfreeze()
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, slice(base_lr / 2 / 100, base_lr / 2))
    return finish_fastai(learn, test, start, f"fine_tune({epochs}) at {size} px")


def book_cnn(classes: int):
    """The fastai book's `simple_cnn` (chapter 13): 28 -> 14 -> 7 -> 4 -> 2 -> 1 px, then the logits."""
    from fastai.vision.all import Flatten, nn, sequential

    def conv(ni: int, nf: int, ks: int = 3, act: bool = True):
        layers = [nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2)]
        if act:
            layers.append(nn.ReLU())
        layers.append(nn.BatchNorm2d(nf))
        return nn.Sequential(*layers)
    return sequential(conv(1, 8, ks=5), conv(8, 16), conv(16, 32), conv(32, 64), conv(64, classes, act=False),
                      Flatten())


def fastai_grey(train: np.ndarray, labels: np.ndarray, test: np.ndarray, wall_s: float) -> dict:
    """The book's CNN + fit_one_cycle from scratch, epochs to fill about `wall_s` seconds."""
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, Learner, Normalize, PILImageBW,
                                   RandomSplitter, accuracy)
    start = time.perf_counter()
    block = DataBlock(blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
                      get_items=lambda _: list(range(len(train))), get_x=lambda i: PILImageBW.create(train[i, ..., 0]),
                      get_y=lambda i: str(labels[i]), splitter=RandomSplitter(0.2, seed=0), batch_tfms=Normalize())
    dls = block.dataloaders(None, bs=512, num_workers=0)
    learn = Learner(dls, book_cnn(dls.c), metrics=accuracy)
    epoch_start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 0.06)
    epoch_s = time.perf_counter() - epoch_start
    epochs = max(1, int((wall_s - (time.perf_counter() - start)) / epoch_s))
    # a fresh net for the timed schedule: one cycle over all its epochs
    learn = Learner(dls, book_cnn(dls.c), metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 0.06)
    return finish_fastai(learn, test, start, f"the book's CNN, fit_one_cycle({epochs}, 0.06)")


def finish_fastai(learn, test: np.ndarray, start: float, recipe: str) -> dict:
    with learn.no_bar():
        valid = float(learn.validate()[1])
    items = [test[i] if test.shape[-1] == 3 else test[i, ..., 0] for i in range(len(test))]
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(items))
    vocab = list(learn.dls.vocab)
    return {"wall_s": time.perf_counter() - start, "validation": valid, "recipe": recipe,
            "predicted": np.array([vocab[k] for k in probs.argmax(1).numpy()])}


def frozen_features(train: np.ndarray, labels: np.ndarray, test: np.ndarray, backbone: str, weights: str) -> dict:
    """timm's eval transform and pooled features, then LogisticRegressionCV: the notebook route."""
    import timm
    from PIL import Image
    from sklearn.linear_model import LogisticRegressionCV
    start = time.perf_counter()
    model = timm.create_model(backbone, pretrained=True, num_classes=0,
                              pretrained_cfg_overlay={"file": weights}).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    @torch.inference_mode()
    def features(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), 32):
            batch = torch.stack([transform(Image.fromarray(image)) for image in images[i:i + 32]])
            out.append(model(batch).numpy())
        return np.concatenate(out)

    x_train, x_test = features(train), features(test)
    classifier = LogisticRegressionCV(max_iter=2000).fit(x_train, labels.astype(str))
    cv = float(np.max(np.mean(list(classifier.scores_.values())[0], axis=0)))
    return {"wall_s": time.perf_counter() - start, "validation": cv, "recipe": "LogisticRegressionCV",
            "predicted": classifier.predict(x_test)}


def paired_difference(peer_right: np.ndarray, harness_right: np.ndarray, resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Peer accuracy minus the harness's on the same images, with a 95% paired bootstrap interval."""
    diff = peer_right.astype(float) - harness_right.astype(float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--data", type=Path, help="a Kaggle-form folder with solution.csv")
    target.add_argument("--competition", help="a registered competition (mnist-5k, fashion-5k, ...)")
    parser.add_argument("--weights-dir", default=os.environ.get("COMPETITION_WEIGHTS"),
                        help="the folder of <timm-name>.pth files the harness and the peers use (photos)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="the peers' timm backbone (photos)")
    parser.add_argument("--peers", nargs="+", default=["fastai", "features"], choices=["fastai", "features"])
    parser.add_argument("--threads", type=int, default=0)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workspace = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    harness = run_harness(workspace, ["--data", str(args.data)] if args.data else ["--competition", args.competition],
                          args.weights_dir, args.threads)
    print(f"harness: {harness['wall_s']:.0f}s, OOF {harness['oof']:.4f}; {harness['plan']}", flush=True)
    _, info, train, labels, test, answers = prepared(workspace)
    names = np.asarray(info.submission.labels)          # as the submission spells each class
    train_labels, truth = names[labels], answers.iloc[:, 1].to_numpy()
    private = answers["Usage"].to_numpy() == "Private"
    colour = train.shape[-1] == 3
    backbone = args.backbone.removeprefix("timm/")
    weights = str(Path(args.weights_dir) / f"{backbone}.pth") if args.weights_dir else ""
    photo_peers = colour and bool(weights)
    if photo_peers and not Path(weights).is_file():
        raise SystemExit(f"{weights}: no such file, so the photo peers cannot use {backbone}'s weights "
                         f"(--weights-dir holds <timm-name>.pth files; --backbone names one)")
    results = {"harness": {"wall_s": harness["wall_s"], "validation": harness["oof"], "recipe": harness["plan"],
                           "predicted": harness["labels"]}}
    for peer in args.peers:
        if peer == "fastai":
            results["fastai"] = fastai_photos(train, train_labels, test, backbone, weights, harness["wall_s"],
                                              size=input_side(f"timm/{backbone}")) if photo_peers else \
                fastai_grey(train, train_labels, test, harness["wall_s"])
        elif photo_peers:
            results["frozen features + LR"] = frozen_features(train, train_labels, test, backbone, weights)
        print(f"{list(results)[-1]}: {results[list(results)[-1]]['wall_s']:.0f}s", flush=True)
    harness_right = harness["labels"] == truth
    rows = []
    for name, result in results.items():
        right = result["predicted"] == truth
        difference, low, high = paired_difference(right, harness_right)
        rows.append({"method": name, "recipe": result["recipe"][:90], "wall_s": result["wall_s"],
                     "validation": result["validation"], "test": float(right.mean()),
                     "private": float(right[private].mean()),
                     "minus_harness": difference, "low": low, "high": high})
    name = args.data.name if args.data else args.competition
    write_result(f"peers_{name}", rows, {"command": command("peers", argv), "competition": info.name,
                                         "test_images": len(truth)}, args.out)
    return rows


if __name__ == "__main__":
    main()
