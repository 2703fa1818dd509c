"""Write a small real-photo colour competition in Kaggle's CIFAR-10 form, offline, for timing colour runs.

    python -m benchmarks.colour_folder DIR [--train 2000] [--test 1000] [--size 32]
    python -m competition run --data DIR

No CIFAR-10 can be downloaded on these machines, so this takes the two colour photographs that ship
inside scikit-learn (`load_sample_images`: china.jpg, flower.jpg, 427x640) and cuts random
size x size crops from them; the class is the photo and the half it came from (4 classes:
china-left, china-right, flower-left, flower-right). Train and test crops come from the same
photos and may overlap, so the accuracy shows that the colour path learns, not what a model
would score on CIFAR-10; the wall time is what a colour run of this size costs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_sample_images

CLASSES = ("china-left", "china-right", "flower-left", "flower-right")


def crops(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random crops (N, size, size, 3) uint8 and their classes, balanced."""
    photos = load_sample_images().images
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, k in enumerate(labels):
        photo = photos[k // 2]
        height, width = photo.shape[:2]
        half = width // 2
        top = rng.integers(0, height - size)
        left = rng.integers(0, half - size) + (k % 2) * half
        out[i] = photo[top:top + size, left:left + size]
    return out, labels


def write(folder: Path, n_train: int, n_test: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images, labels = crops(n_train + n_test, size, rng)
    ids = np.arange(1, n_train + n_test + 1)
    for part in ("train", "test"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    for i, image, part in zip(ids, images, ["train"] * n_train + ["test"] * n_test):
        Image.fromarray(image).save(folder / part / f"{i}.png")
    names = np.array(CLASSES)
    pd.DataFrame({"id": ids[:n_train], "label": names[labels[:n_train]]}).to_csv(folder / "trainLabels.csv",
                                                                                 index=False)
    pd.DataFrame({"id": ids[n_train:], "label": CLASSES[0]}).to_csv(folder / "sampleSubmission.csv", index=False)
    usage = np.where(rng.random(n_test) < 0.3, "Public", "Private")
    pd.DataFrame({"id": ids[n_train:], "label": names[labels[n_train:]], "Usage": usage}).to_csv(
        folder / "solution.csv", index=False)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    print(f"wrote {write(args.folder, args.train, args.test, args.size)}")


if __name__ == "__main__":
    main()
