"""Turn a source into Kaggle form: data/NAME/public/ for entrants, data/NAME/private/ for the grader.

public/  train_images.npy (N, H, W, C) and test_images.npy (M, H, W, C) uint8, memory-mappable,
         at the stored size (see images.py), and labels.npz: train_labels (class indices) and
         test_ids (as the submission names them): what training code reads;
         the Kaggle-form labels: train.csv + test.csv (label,pixel0..) for a grey Digit-Recognizer
         competition, or train_labels.csv (id,label) for image competitions;
         sample_submission.csv in the competition's own form; competition.json, the
         `PreparedCompetition` (prepared.py) every later stage reads
private/ solution.csv (id,label,Usage) with Usage Public or Private, as Kaggle's answer files.

The folder is built under a temporary name and renamed into place, so an interrupted
prepare never leaves a half-written competition.
"""

from __future__ import annotations

import logging

import hashlib
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .competitions import Competition, Images, RawData, get_competition
from ..errors import ConfigError, DataSourceError, WriteError
from .folders import folder_signature, read_kaggle_folder, sample_header
from .images import SizeRequest, decode_into, describe_sizes, fit_to_size, read_headers
from ..grading.metrics import get_metric, one_hot
from ..prepared import PreparedCompetition, is_prepared, read_prepared
from .sources import write_pixel_csv
from ..workspace import (LABELS, TEST_IMAGES, TRAIN_IMAGES, CompetitionPaths, Workspace, atomic_write_text,
                         file_lock)
from .splits import public_private_usage, stratified_split
from ..grading.submission import SubmissionForm, form_for, write_solution, write_submission

LOG = logging.getLogger("competition")



@dataclass(frozen=True)
class SplitOptions:
    split_seed: int = 0
    test_fraction: float = 0.2      # share held out as the hidden test, for sources without one
    public_fraction: float = 0.3    # share of the hidden test scored on the public leaderboard

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 < self.public_fraction < 1):
            raise ConfigError(f"test_fraction ({self.test_fraction}) and public_fraction ({self.public_fraction}) "
                              "must lie strictly between 0 and 1")


def prepare(name: str, data_dir: Path, options: SplitOptions = SplitOptions(),
            allow_download: bool = True, log: Callable[[str], None] = LOG.info,
            sizes: SizeRequest = SizeRequest()) -> CompetitionPaths:
    """Prepare a registered competition under data_dir/NAME and return its paths."""
    competition = get_competition(name)
    paths = CompetitionPaths(Path(data_dir) / name)
    raw = competition.load(paths.raw, allow_download)
    write_competition(paths, name=competition.name, classes=competition.classes, raw=raw, usage=None,
                      options=options, source=competition.description, layout=layout_of(competition),
                      sizes=sizes, log=log)
    return paths


@dataclass(frozen=True)
class Layout:
    """How a competition presents itself: its files' form, its submission, its metric."""
    form: str = "pixel-csv"             # pixel-csv | image-folder | class-folders
    submission: SubmissionForm = SubmissionForm()
    metric: str = "accuracy"
    hflip: bool = False                 # mirror images are still their class (photos: yes; digits: no)


def layout_of(competition: Competition) -> Layout:
    labels = competition.labels or tuple(str(k) for k in range(len(competition.classes)))
    form = form_for(get_metric(competition.metric), id_column=competition.id_column,
                    label_column=competition.label_column, labels=labels)
    return Layout(competition.form, form, competition.metric, competition.hflip)


def kaggle_folder_name(folder: Path) -> str:
    """A competition name for a Kaggle-form folder: its lower-cased, slugged directory name."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(folder).resolve().name.lower()).strip("-")
    return slug or "kaggle"


def prepare_kaggle_folder(folder: Path, data_dir: Path, options: SplitOptions = SplitOptions(),
                          metric: str | None = None, log: Callable[[str], None] = LOG.info,
                          sizes: SizeRequest = SizeRequest()) -> CompetitionPaths:
    """Prepare a Kaggle-form folder in any of the forms `folders.py` reads, scored by `metric`
    (default: accuracy)."""
    folder = Path(folder)
    signature = folder_signature(folder)        # before reading: a change made while reading shows next time
    read = read_kaggle_folder(folder, log)
    metric_name = metric or "accuracy"
    # a folder's submissions spell each class as its training labels do
    multi_label = read.raw.train_labels.ndim == 2
    if multi_label and metric is None:
        metric_name = "mean-roc-auc"        # accuracy of several labels is all-or-nothing: not a default
    submission = form_for(get_metric(metric_name), id_column=read.id_column, label_column=read.label_column,
                          labels=read.classes, sample_header=sample_header(folder), multi_label=multi_label)
    name = kaggle_folder_name(folder)
    paths = CompetitionPaths(Path(data_dir) / name)
    # Kaggle's photo competitions (cats, cactus, leaves, cells, skin) keep their class in a mirror;
    # grey folders are digits and letters, which do not
    layout = Layout(read.form, submission, metric_name, hflip=not is_grey(read.raw))
    write_competition(paths, name=name, classes=read.classes, raw=read.raw, usage=read.usage, options=options,
                      source=f"Kaggle folder {folder.resolve()}", layout=layout, sizes=sizes, log=log,
                      source_signature=signature)
    return paths


def is_grey(raw: RawData) -> bool:
    images = raw.train_images
    if isinstance(images, np.ndarray):
        return images.ndim == 3 or images.shape[-1] == 1
    return all(h.grey for h in read_headers(list(images) + list(raw.test_images or [])))


def take(images: Images, rows: np.ndarray) -> Images:
    return images[rows] if isinstance(images, np.ndarray) else [images[i] for i in rows]


def write_competition(paths: CompetitionPaths, *, name: str, classes: tuple[str, ...], raw: RawData,
                      usage: np.ndarray | None, options: SplitOptions, source: str, layout: Layout = Layout(),
                      sizes: SizeRequest = SizeRequest(), log: Callable[[str], None] = LOG.info,
                      source_signature: str | None = None) -> None:
    """Split (where the source has no test set), bring the images to one size, then write public/
    and private/ atomically."""
    train_images, train_labels = raw.train_images, raw.train_labels
    test_images, test_labels = raw.test_images, raw.test_labels
    train_ids, test_ids = raw.train_ids, raw.test_ids
    if test_images is None:
        kept, held = stratified_split(train_labels, options.test_fraction, options.split_seed)
        test_images, test_labels = take(train_images, held), train_labels[held]
        train_images, train_labels = take(train_images, kept), train_labels[kept]
        train_ids = test_ids = None     # the source's ids named rows of the unsplit set
        split = f"stratified split, seed {options.split_seed}, test fraction {options.test_fraction}"
    else:
        split = raw.test_source
    train_ids = np.arange(1, len(train_labels) + 1).astype(str) if train_ids is None else np.asarray(train_ids, str)
    test_ids = np.arange(1, len(test_images) + 1).astype(str) if test_ids is None else np.asarray(test_ids, str)
    if test_labels is not None and usage is None:
        usage = public_private_usage(len(test_labels), options.public_fraction, options.split_seed)

    paths.root.mkdir(parents=True, exist_ok=True)
    for stale in paths.root.glob(".prepare-*"):      # left by a prepare that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=paths.root, prefix=".prepare-"))
    try:
        public, private = staging / "public", staging / "private"
        public.mkdir()
        (height, width), why, original, resized = write_image_arrays(public, train_images, test_images, sizes, log)
        stored_train = np.load(public / TRAIN_IMAGES, mmap_mode="r")
        stored_test = np.load(public / TEST_IMAGES, mmap_mode="r")
        channels = stored_train.shape[3]
        _check_split(name, classes, stored_train, train_labels, stored_test, test_labels, usage)
        pixel_csv = layout.form == "pixel-csv" and channels == 1 and height == width
        info = PreparedCompetition(
            name=name, source=source, form=layout.form if pixel_csv or layout.form != "pixel-csv" else "image-folder",
            classes=tuple(classes), stored_shape=(height, width, channels),
            resize=sizes.resize if resized else "none", original_sizes=original, size_request=sizes.key,
            metric=layout.metric, submission=layout.submission, hflip=layout.hflip,
            train_size=int(len(train_labels)), test_size=int(len(test_ids)), split=split,
            split_seed=options.split_seed, test_fraction=options.test_fraction,
            public_fraction=options.public_fraction,
            fingerprint=array_fingerprint(stored_train, train_labels, stored_test, test_ids),
            source_signature=source_signature, notes=tuple(raw.notes))
        form = layout.submission
        if pixel_csv:
            write_pixel_csv(public / "train.csv", stored_train[..., 0], train_labels)
            write_pixel_csv(public / "test.csv", stored_test[..., 0], None)
        else:
            names = np.asarray(form.labels, dtype=object)
            spelled = [" ".join(names[row == 1]) for row in train_labels] if form.multi_label else names[train_labels]
            labels = pd.DataFrame({form.id_column: train_ids, form.label_column: spelled})
            atomic_write_text(public / "train_labels.csv", labels.to_csv(index=False, lineterminator="\n"))
        del stored_train, stored_test           # the memory maps close before the folder moves
        np.savez(public / LABELS, train_labels=train_labels.astype(np.int64), test_ids=np.asarray(test_ids, str))
        # Kaggle's sample submissions: a uniform guess where the form holds probabilities, else the first class
        sample = one_hot(np.zeros(len(test_ids), np.int64), len(classes)) if form.values in ("label", "top-k") \
            else np.full((len(test_ids), len(classes)), 1.0 / len(classes))
        write_submission(public / "sample_submission.csv", form, test_ids, sample)
        atomic_write_text(public / "competition.json", info.to_json())
        if test_labels is not None:
            write_solution(private / "solution.csv", form, test_ids, test_labels, usage)
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
    except OSError as e:
        raise WriteError(f"{paths.root}: cannot write the prepared competition ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    shape = f"{height}x{width}" + ("" if channels == 1 else f"x{channels}")
    log(f"prepared {name}: {info.train_size:,} train, {info.test_size:,} test {shape} images ({split}), "
        f"{len(classes)} classes, scored by {layout.metric}, in {paths.root}")
    log(f"  image size {height}x{width}: {why}" + (f" ({original}; {sizes.resize}: "
                                                   f"{RESIZE_WORDS[sizes.resize]})" if resized else ""))
    if test_labels is not None:
        log(f"  answers: {int((usage == 'Public').sum()):,} Public, {int((usage == 'Private').sum()):,} Private rows "
            f"in {paths.solution}")
    for note in raw.notes:
        log(f"  {note}")


RESIZE_WORDS = {"crop": "shorter side to the size, centre crop", "pad": "longer side to the size, padded"}


def write_image_arrays(public: Path, train_images: Images, test_images: Images, sizes: SizeRequest,
                       log: Callable[[str], None]) -> tuple[tuple[int, int], str, str, bool]:
    """train_images.npy and test_images.npy at one size; returns (size, why, the originals' sizes,
    whether any image was resized)."""
    if isinstance(train_images, np.ndarray):
        train, test = with_channels(train_images), with_channels(test_images)
        originals = [train.shape[1:3], test.shape[1:3]]
        size, why = sizes.choose(originals, grey=train.shape[3] == 1)
        for array, out in ((train, TRAIN_IMAGES), (test, TEST_IMAGES)):
            if array.shape[1:3] != size:
                array = np.stack([fit_to_size(image[..., 0] if image.shape[2] == 1 else image, size, sizes.resize)
                                  for image in array]).reshape(len(array), *size, array.shape[3])
            np.save(public / out, np.ascontiguousarray(array, dtype=np.uint8))
        resized = any(tuple(s) != size for s in originals)
        return size, why, f"all {originals[0][0]}x{originals[0][1]}" if not resized else "", resized
    files = list(train_images) + list(test_images)
    headers = read_headers(files)
    dims = [(h.height, h.width) for h in headers]
    grey = all(h.grey for h in headers)
    size, why = sizes.choose(dims, grey)
    decode_into(list(train_images), public / TRAIN_IMAGES, size, sizes.resize, grey, log=log)
    decode_into(list(test_images), public / TEST_IMAGES, size, sizes.resize, grey, log=log)
    return size, why, describe_sizes(headers), any(d != size for d in dims)


def with_channels(images: np.ndarray) -> np.ndarray:
    """(N, H, W) grey images as (N, H, W, 1); (N, H, W, C) unchanged."""
    images = np.asarray(images)
    return images[..., None] if images.ndim == 3 else images


def array_fingerprint(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                      test_ids: np.ndarray) -> str:
    """A short hash of what training sees: a run records it, and `--resume` and `report` refuse a
    competition that was prepared again with another split."""
    digest = hashlib.sha256()
    for array in (train_images, train_labels.astype(np.int64), test_images):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    digest.update("\n".join(map(str, test_ids)).encode())
    return digest.hexdigest()[:16]


def _check_split(name: str, classes: tuple[str, ...], train_images: np.ndarray, train_labels: np.ndarray,
                 test_images: np.ndarray, test_labels: np.ndarray | None, usage: np.ndarray | None) -> None:
    """Assertions about the split, as mle-bench's prepare steps end with."""
    assert len(train_images) == len(train_labels) > 0, f"{name}: empty training set"
    assert len(test_images) > 0, f"{name}: empty test set"
    assert train_images.shape[1:] == test_images.shape[1:], f"{name}: train and test image sizes differ"
    assert train_images.ndim == 4 and train_images.dtype == np.uint8, f"{name}: images must be (N, H, W, C) uint8"
    assert train_labels.min() >= 0 and train_labels.max() < len(classes), f"{name}: label outside the classes"
    if test_labels is not None:
        assert len(test_labels) == len(test_images) == len(usage), f"{name}: answers do not cover the test set"
        assert set(np.unique(usage)) <= {"Public", "Private"}, f"{name}: bad Usage values"


def ensure_prepared(workspace: Workspace, competition: str, kaggle_dir: Path | None,
                    options: SplitOptions, log: Callable[[str], None], metric: str | None = None,
                    sizes: SizeRequest | None = None) -> CompetitionPaths:
    """The prepared competition, (re)preparing it if it is missing or was split with other options
    or its images stored at another size request than `sizes` (None: any size will do; for a
    Kaggle folder, also if its files changed or it is scored by another metric than `metric` asks)."""
    name = kaggle_folder_name(kaggle_dir) if kaggle_dir is not None else competition
    paths = workspace.competition(name)
    if kaggle_dir is None:
        check_fixed_metric(get_competition(name), metric)
    # under the lock, so two runs starting together prepare it once and the second reuses it
    with file_lock(paths.lock):
        if is_prepared(paths):
            info = read_prepared(paths.public)
            same_split = info.split_options == asdict(options)
            same_source = kaggle_dir is None or info.source_signature == folder_signature(kaggle_dir)
            same_size = sizes is None or sizes.accepts(info.size_request, info.stored_shape, info.resize)
            if same_split and same_source and same_size and metric in (None, info.metric):
                return paths
            why = "other split options" if not same_split else \
                f"files that changed in {kaggle_dir} since" if not same_source else \
                f"another image size request ({info.size_request}; now {sizes.key})" if not same_size else \
                f"another metric than {metric}"
            log(f"{paths.root} was prepared from {why}; preparing it again")
            metric = metric or info.metric       # a new split keeps the folder's metric
        sizes = sizes or SizeRequest()
        if kaggle_dir is not None:
            return prepare_kaggle_folder(kaggle_dir, workspace.data, options, metric, log, sizes)
        return prepare(name, workspace.data, options, log=log, sizes=sizes)


def check_fixed_metric(competition: Competition, metric: str | None) -> None:
    """A registered competition's metric is part of it; `--metric` is for Kaggle folders."""
    if metric is not None and metric != competition.metric:
        raise ConfigError(f"--metric: {competition.name} is scored by {competition.metric}; "
                          f"--metric picks the metric of a --data folder")
