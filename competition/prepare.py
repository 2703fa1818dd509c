"""Turn a source into Kaggle form: data/NAME/public/ for entrants, data/NAME/private/ for the grader.

public/  train.csv (label,pixel0..), test.csv (pixel0.. in ImageId order 1..N),
         sample_submission.csv, competition.json (classes, image size, split options)
private/ solution.csv (ImageId,Label,Usage) with Usage Public or Private, as Kaggle's answer files.

The folder is built under a temporary name and renamed into place, so an interrupted
prepare never leaves a half-written competition.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .competitions import RawData, get_competition
from .errors import ConfigError, DataSourceError, WriteError
from .sources import atomic_write_text, read_pixel_csv, write_pixel_csv
from .splits import public_private_usage, stratified_split


@dataclass(frozen=True)
class CompetitionPaths:
    """Where a prepared competition lives. Only `public` is ever handed to training code."""
    root: Path

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def solution(self) -> Path:
        return self.private / "solution.csv"

    @property
    def metadata(self) -> Path:
        return self.public / "competition.json"

    def is_prepared(self) -> bool:
        return self.metadata.is_file() and (self.public / "train.csv").is_file()

    def has_answers(self) -> bool:
        return self.solution.is_file()


@dataclass(frozen=True)
class SplitOptions:
    split_seed: int = 0
    test_fraction: float = 0.2      # share held out as the hidden test, for sources without one
    public_fraction: float = 0.3    # share of the hidden test scored on the public leaderboard

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 < self.public_fraction < 1):
            raise ConfigError(f"test_fraction ({self.test_fraction}) and public_fraction ({self.public_fraction}) "
                              "must lie strictly between 0 and 1")


@contextmanager
def competition_lock(root: Path) -> Iterator[None]:
    """One prepare of a competition at a time, across processes (released if the holder dies)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".prepare.lock", "a")
    except OSError as e:
        raise WriteError(f"{root}: cannot make the competition folder here ({e.strerror})") from e
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(name: str, data_dir: Path, options: SplitOptions = SplitOptions(),
            allow_download: bool = True, log: Callable[[str], None] = print) -> CompetitionPaths:
    """Prepare a registered competition under data_dir/NAME and return its paths."""
    competition = get_competition(name)
    paths = CompetitionPaths(Path(data_dir) / name)
    raw = competition.load(paths.raw, allow_download)
    write_competition(paths, competition.name, competition.classes, raw, None, options,
                      competition.description, log)
    return paths


def kaggle_folder_name(folder: Path) -> str:
    """A competition name for a Kaggle-form folder: its lower-cased, slugged directory name."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(folder).resolve().name.lower()).strip("-")
    return slug or "kaggle"


def prepare_kaggle_folder(folder: Path, data_dir: Path, options: SplitOptions = SplitOptions(),
                          log: Callable[[str], None] = print) -> CompetitionPaths:
    """Prepare a Digit-Recognizer-form folder (train.csv, test.csv, optional solution.csv)."""
    folder = Path(folder)
    for required in ("train.csv", "test.csv"):
        if not (folder / required).is_file():
            raise DataSourceError(f"{folder}: no {required} (a Kaggle folder holds train.csv and test.csv)")
    train_images, train_labels = read_pixel_csv(folder / "train.csv", with_labels=True)
    test_images, _ = read_pixel_csv(folder / "test.csv", with_labels=False)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataSourceError(f"{folder}: train images are {train_images.shape[1:]}, "
                              f"test images {test_images.shape[1:]}")
    if train_labels.min() < 0:
        raise DataSourceError(f"{folder / 'train.csv'}: negative label {train_labels.min()}")
    classes = tuple(str(c) for c in range(int(train_labels.max()) + 1))
    solution = None
    if (folder / "solution.csv").is_file():
        solution = read_kaggle_solution(folder / "solution.csv", len(test_images), len(classes))
    else:
        log(f"{folder}: no solution.csv, so submissions can be written but not scored")
    raw = RawData(train_images, train_labels, test_images,
                  None if solution is None else solution["Label"].to_numpy(np.int64),
                  notes=[f"Kaggle folder {folder}"])
    usage = None if solution is None or "Usage" not in solution else solution["Usage"].to_numpy()
    name = kaggle_folder_name(folder)
    paths = CompetitionPaths(Path(data_dir) / name)
    write_competition(paths, name, classes, raw, usage, options, f"Kaggle folder {folder.resolve()}", log)
    return paths


def read_kaggle_solution(path: Path, num_test: int, num_classes: int) -> pd.DataFrame:
    """Read a Kaggle answer file (ImageId,Label[,Usage]) and check it covers test.csv exactly."""
    frame = pd.read_csv(path)
    if list(frame.columns[:2]) != ["ImageId", "Label"]:
        raise DataSourceError(f"{path}: header must start with ImageId,Label; found {list(frame.columns)}")
    frame = frame.sort_values("ImageId").reset_index(drop=True)
    if not np.array_equal(frame["ImageId"].to_numpy(), np.arange(1, num_test + 1)):
        raise DataSourceError(f"{path}: ImageId must be exactly 1..{num_test}, one row each")
    labels = frame["Label"].to_numpy()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataSourceError(f"{path}: labels must lie in 0..{num_classes - 1}")
    if "Usage" in frame and not frame["Usage"].isin(["Public", "Private"]).all():
        raise DataSourceError(f"{path}: Usage must be Public or Private")
    return frame


def write_competition(paths: CompetitionPaths, name: str, classes: tuple[str, ...], raw: RawData,
                      usage: np.ndarray | None, options: SplitOptions, source: str,
                      log: Callable[[str], None] = print) -> None:
    """Split (where the source has no test set), then write public/ and private/ atomically."""
    train_images, train_labels = raw.train_images, raw.train_labels
    test_images, test_labels = raw.test_images, raw.test_labels
    if test_images is None:
        kept, held = stratified_split(train_labels, options.test_fraction, options.split_seed)
        test_images, test_labels = train_images[held], train_labels[held]
        train_images, train_labels = train_images[kept], train_labels[kept]
        split = f"stratified split, seed {options.split_seed}, test fraction {options.test_fraction}"
    else:
        split = "official test set"
    if test_labels is not None and usage is None:
        usage = public_private_usage(len(test_labels), options.public_fraction, options.split_seed)

    _check_split(name, classes, train_images, train_labels, test_images, test_labels, usage)
    image_ids = np.arange(1, len(test_images) + 1)
    metadata = {
        "name": name, "source": source, "classes": list(classes), "image_size": int(train_images.shape[1]),
        "train_size": int(len(train_images)), "test_size": int(len(test_images)), "split": split,
        "split_seed": options.split_seed, "test_fraction": options.test_fraction,
        "public_fraction": options.public_fraction, "notes": raw.notes,
    }

    paths.root.mkdir(parents=True, exist_ok=True)
    for stale in paths.root.glob(".prepare-*"):      # left by a prepare that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=paths.root, prefix=".prepare-"))
    try:
        public, private = staging / "public", staging / "private"
        write_pixel_csv(public / "train.csv", train_images, train_labels)
        write_pixel_csv(public / "test.csv", test_images, None)
        metadata["fingerprint"] = split_fingerprint(public)
        sample = pd.DataFrame({"ImageId": image_ids, "Label": 0})
        atomic_write_text(public / "sample_submission.csv", sample.to_csv(index=False, lineterminator="\n"))
        atomic_write_text(public / "competition.json", json.dumps(metadata, indent=2) + "\n")
        if test_labels is not None:
            solution = pd.DataFrame({"ImageId": image_ids, "Label": test_labels, "Usage": usage})
            atomic_write_text(private / "solution.csv", solution.to_csv(index=False, lineterminator="\n"))
        # Unmark the old copy first (no competition.json: not prepared), then swap in the answers,
        # then the public files with their competition.json: a kill at any point leaves either
        # the old competition, or none (prepared again next time), never new files with old answers.
        paths.metadata.unlink(missing_ok=True)
        for part in ("private", "public"):
            old = paths.root / part
            if old.exists():
                shutil.rmtree(old)
            if (staging / part).exists():
                (staging / part).replace(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    log(f"prepared {name}: {len(train_images):,} train, {len(test_images):,} test ({split}) in {paths.root}")
    if test_labels is not None:
        log(f"  answers: {int((usage == 'Public').sum()):,} Public, {int((usage == 'Private').sum()):,} Private rows "
            f"in {paths.solution}")
    for note in raw.notes:
        log(f"  {note}")


def split_fingerprint(public_dir: Path) -> str:
    """A short hash of what training sees (train.csv and test.csv): a run records it, and
    `--resume` and `report` refuse a competition that was prepared again with another split."""
    digest = hashlib.sha256()
    for name in ("train.csv", "test.csv"):
        with open(Path(public_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _check_split(name: str, classes: tuple[str, ...], train_images: np.ndarray, train_labels: np.ndarray,
                 test_images: np.ndarray, test_labels: np.ndarray | None, usage: np.ndarray | None) -> None:
    """Assertions about the split, as mle-bench's prepare steps end with."""
    assert len(train_images) == len(train_labels) > 0, f"{name}: empty training set"
    assert len(test_images) > 0, f"{name}: empty test set"
    assert train_images.shape[1:] == test_images.shape[1:], f"{name}: train and test image sizes differ"
    assert train_labels.min() >= 0 and train_labels.max() < len(classes), f"{name}: label outside the classes"
    if test_labels is not None:
        assert len(test_labels) == len(test_images) == len(usage), f"{name}: answers do not cover the test set"
        assert set(np.unique(usage)) <= {"Public", "Private"}, f"{name}: bad Usage values"
