"""Read a Kaggle-form competition folder (`run --data DIR`) in any of the forms Kaggle ships images in.

1. pixel CSVs, as the Digit Recognizer: `train.csv` (label,pixel0..), `test.csv`;
2. images with a labels CSV, as most of Kaggle's image competitions: a CSV (`trainLabels.csv`,
   `train_labels.csv`, `labels.csv`, `train.csv` or the one other CSV) whose id column names images
   in some folder (`train/`, `train_images/`, `images/`, `jpeg/train/`, ...; ids with or without
   the suffix), the test images named by the sample submission's ids in another folder or the same;
3. class subfolders, as torchvision's ImageFolder: `train/<class>/*.png`, `test/*.png`;
4. labels in the file names, as Kaggle's Dogs vs. Cats: `train/cat.0.jpg`, `train/dog.0.jpg`, `test/1.jpg`.

In form 2 the label is found from the sample submission: its value column by name (`diagnosis`,
`target`, `has_cactus`), or, where it has one column per class, the labels CSV's column whose
values are those classes (`breed`, `species`) or the labels CSV's own one-hot columns (plant
pathology's `healthy,multiple_diseases,rust,scab`); without a sample submission, the column after
the id. Other tabular columns are ignored, and the log says which.

Images may be in any format, mode and size Pillow reads (see `images.py` for the rules); the forms
here only find the files, `prepare` decodes them. The answers, where the folder has them, are
`solution.csv`: the sample submission's columns (a label, or one-hot class columns) and `Usage`.
"""

from __future__ import annotations

import logging

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .competitions import RawData
from ..errors import DataSourceError
from .sources import read_pixel_csv

LOG = logging.getLogger("competition")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SAMPLE_NAMES = ("sampleSubmission.csv", "sample_submission.csv")
LABELS_CSV_NAMES = ("trainLabels.csv", "train_labels.csv", "labels.csv", "train.csv")
NAMED_FILE = re.compile(r"^(?P<label>[^.]+)\.(?P<number>[^.]+)\.[A-Za-z]+$")     # cat.0.jpg


@dataclass
class KaggleFolder:
    form: str                       # pixel-csv | image-folder | class-folders | named-files
    raw: RawData
    classes: tuple[str, ...]        # class k's name (the label as the training labels spell it)
    id_column: str
    label_column: str
    usage: np.ndarray | None        # Public/Private per test row, when solution.csv says


def folder_signature(folder: Path) -> str:
    """A short hash of every file's relative path, size and modification time under `folder`: a
    folder changed since it was prepared (a file added, replaced or edited) gets another one."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_kaggle_folder(folder: Path, log: Callable[[str], None] = LOG.info) -> KaggleFolder:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataSourceError(f"{folder}: no such folder")
    directories = image_directories(folder)
    if (folder / "train.csv").is_file() and not directories:
        if not (folder / "test.csv").is_file():
            raise DataSourceError(f"{folder}: no test.csv (a pixel-CSV Kaggle folder holds train.csv and test.csv)")
        return read_pixel_folder(folder, log)
    train = folder / "train"
    if train.is_dir() and (folder / "test").is_dir() and not labels_csv_candidates(folder):
        if any(p.is_dir() for p in train.iterdir()):
            return read_class_folders(folder, log)
        if image_files(train) and all(NAMED_FILE.match(p.name) for p in image_files(train).values()):
            return read_named_files(folder, log)
    if directories and labels_csv_candidates(folder):
        return read_image_folder(folder, directories, log)
    raise DataSourceError(
        f"{folder}: not a Kaggle-form folder; expected one of\n"
        f"  train.csv + test.csv (pixel columns, as the Digit Recognizer)\n"
        f"  train/<id>.png + a labels CSV (id,label) + test/<id>.png [+ sampleSubmission.csv], as CIFAR-10\n"
        f"  train/<class>/*.png + test/*.png (class subfolders)\n"
        f"  train/<label>.<n>.jpg + test/<id>.jpg (labels in the file names, as Dogs vs. Cats)")


# ---------------------------------------------------------------- form 1: pixel CSVs


def read_pixel_folder(folder: Path, log: Callable[[str], None]) -> KaggleFolder:
    train_images, train_labels = read_pixel_csv(folder / "train.csv", with_labels=True)
    test_images, _ = read_pixel_csv(folder / "test.csv", with_labels=False)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataSourceError(f"{folder}: train images are {train_images.shape[1:]}, "
                              f"test images {test_images.shape[1:]}")
    if train_labels.min() < 0:
        raise DataSourceError(f"{folder / 'train.csv'}: negative label {train_labels.min()}")
    classes = tuple(str(c) for c in range(int(train_labels.max()) + 1))
    test_ids = np.arange(1, len(test_images) + 1).astype(str)
    test_labels, usage = read_answers(folder, "ImageId", "Label", test_ids, classes, log)
    return KaggleFolder("pixel-csv", RawData(train_images=train_images, train_labels=train_labels,
                                             test_images=test_images, test_labels=test_labels,
                                             notes=[f"Kaggle folder {folder} (pixel CSVs)"], test_ids=test_ids,
                                             test_source="the folder's test.csv"),
                        classes, "ImageId", "Label", usage)


# ---------------------------------------------------------------- form 2: image folder + labels CSV


def read_image_folder(folder: Path, directories: dict[Path, dict[str, Path]],
                      log: Callable[[str], None]) -> KaggleFolder:
    labels_csv = find_labels_csv(folder)
    frame = read_text_csv(labels_csv, min_columns=2)
    id_column, train_dir = find_id_column(labels_csv, frame, directories)
    sample = sample_header(folder)
    label_columns, classes = find_labels(labels_csv, frame, id_column, sample)
    ignored = [c for c in frame.columns if c not in (id_column, *label_columns)]
    if ignored:
        log(f"{labels_csv}: columns {', '.join(ignored[:8])}{' ...' if len(ignored) > 8 else ''} are not "
            f"images or labels; ignored")
    ids = frame[id_column].str.strip().to_numpy()
    duplicated = pd.Series(ids).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataSourceError(f"{labels_csv}: row {row + 2}: id {ids[row]!r} appears twice")
    train_labels = label_indices(labels_csv, frame, label_columns, classes)
    train_files = directories[train_dir]
    missing = [i for i in ids if image_for(train_files, i) is None]
    if missing:
        row = int(np.flatnonzero(ids == missing[0])[0])
        raise DataSourceError(f"{labels_csv}: row {row + 2}: no image for id {missing[0]!r} in {train_dir} "
                              f"({len(missing):,} ids have none)")
    train_paths = [image_for(train_files, i) for i in ids]
    id_out = sample[0] if sample else id_column
    label_out = sample[1] if sample and len(sample) == 2 else ("label" if len(label_columns) > 1 else label_columns[0])
    test_ids, test_dir = find_test_images(folder, directories, set(train_paths))
    test_files = directories[test_dir]
    unlabelled = len(set(train_files.values()) - set(train_paths) - {image_for(test_files, i) for i in test_ids})
    if unlabelled:
        log(f"{train_dir}: {unlabelled:,} images have no row in {labels_csv.name} and are not test images; left out")
    test_labels, usage = read_answers(folder, id_out, label_out, test_ids, classes, log,
                                      multi_label=train_labels.ndim == 2)
    notes = [f"Kaggle folder {folder} (images in {train_dir.relative_to(folder)}/ and {test_dir.relative_to(folder)}/, "
             f"labels in {labels_csv.name}: {', '.join(label_columns[:5])}{' ...' if len(label_columns) > 5 else ''})"]
    raw = RawData(train_images=train_paths, train_labels=train_labels,
                  test_images=[image_for(test_files, i) for i in test_ids], test_labels=test_labels, notes=notes,
                  train_ids=ids, test_ids=test_ids, test_source=f"the folder's {test_dir.relative_to(folder)}/ images")
    return KaggleFolder("image-folder", raw, classes, id_out, label_out, usage)


def image_directories(folder: Path, depth: int = 2) -> dict[Path, dict[str, Path]]:
    """Every folder under `folder` (itself excluded, `depth` levels down) that holds images, with
    its images by id (`image_files`)."""
    found: dict[Path, dict[str, Path]] = {}
    level = [p for p in sorted(folder.iterdir()) if p.is_dir()]
    for _ in range(depth):
        for directory in level:
            files = image_files(directory)
            if files:
                found[directory] = files
        level = [p for d in level for p in sorted(d.iterdir()) if p.is_dir()]
    return found


def find_id_column(labels_csv: Path, frame: pd.DataFrame, directories: dict[Path, dict[str, Path]]
                   ) -> tuple[str, Path]:
    """The labels CSV's id column and the image folder it names: the column whose distinct values
    name the most images of one folder (a label column of 0/1 names two images at most)."""
    best: tuple[int, str, Path] | None = None
    for column in frame.columns:
        values = set(frame[column].str.strip())
        for directory, files in directories.items():
            hits = sum(image_for(files, v) is not None for v in values)
            if hits and (best is None or hits > best[0]):
                best = (hits, column, directory)
    if best is None:
        folders = ", ".join(str(d.relative_to(labels_csv.parent)) + "/" for d in directories) or "none"
        raise DataSourceError(f"{labels_csv}: no column names the images of a folder (image folders: {folders}); "
                              f"the id column's values must be image file names, with or without the suffix")
    return best[1], best[2]


def find_labels(labels_csv: Path, frame: pd.DataFrame, id_column: str, sample: tuple[str, ...] | None
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the label column, or one-hot class columns; the classes in the submission's order)."""
    others = [c for c in frame.columns if c != id_column]
    values = sample[1:] if sample else ()
    if len(values) > 1 and all(v in frame.columns for v in values):
        return tuple(values), tuple(values)                     # one-hot label columns, as the submission
    if len(values) == 1 and values[0] in frame.columns:
        column = values[0]                                      # the submission's column by name
    elif len(values) > 1:
        # one submission column per class: the labels CSV's column whose values are those classes
        matching = [c for c in others if set(" ".join(frame[c]).split()) <= set(values)]
        if not matching:
            raise DataSourceError(f"{labels_csv}: no column holds the classes the sample submission names "
                                  f"({', '.join(values[:5])} ...)")
        return (matching[0],), tuple(values)
    else:
        column = frame.columns[frame.columns.get_loc(id_column) + 1] if \
            frame.columns.get_loc(id_column) + 1 < len(frame.columns) else others[0]
    if frame[column].str.strip().str.contains(r"\s").any():
        # space-separated labels, several an image (imet's attribute_ids, plant-pathology-2021's labels)
        return (column,), class_order(set(" ".join(frame[column]).split()))
    blank = np.flatnonzero((frame[column].str.strip() == "").to_numpy())
    if len(blank):
        raise DataSourceError(f"{labels_csv}: row {blank[0] + 2}: empty {column!r}")
    return (column,), class_order(frame[column].str.strip().unique())


def label_indices(labels_csv: Path, frame: pd.DataFrame, label_columns: tuple[str, ...],
                  classes: tuple[str, ...]) -> np.ndarray:
    """Each row's class index (N,), from its label or its one-hot columns; or, where a row may have
    several labels (space-separated, or several 1s in the class columns), each row's 0/1 labels (N, L)."""
    if len(label_columns) == 1 and frame[label_columns[0]].str.strip().str.contains(r"\s").any():
        return listed_labels(labels_csv, frame[label_columns[0]], classes)
    if len(label_columns) == 1:
        index = {c: k for k, c in enumerate(classes)}
        labels = frame[label_columns[0]].str.strip()
        unknown = ~labels.isin(list(index))
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataSourceError(f"{labels_csv}: row {row + 2}: label {labels.iloc[row]!r} is not a class")
        return labels.map(index).to_numpy(np.int64)
    try:
        hot = frame[list(label_columns)].astype(float).to_numpy()
    except ValueError as e:
        raise DataSourceError(f"{labels_csv}: the class columns {', '.join(label_columns)} must hold 0 or 1 ({e})")
    if not np.isin(hot, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(hot, (0, 1)).all(1))[0])
        raise DataSourceError(f"{labels_csv}: row {row + 2}: the class columns must hold 0 or 1 (found "
                              f"{hot[row].tolist()})")
    if ((hot == 1).sum(1) == 1).all():
        return hot.argmax(1).astype(np.int64)           # one class an image, one-hot (plant-pathology-2020)
    return hot.astype(np.int64)                         # several labels an image (ranzcr-clip)


def listed_labels(path: Path, cells: pd.Series, classes: tuple[str, ...]) -> np.ndarray:
    """Space-separated labels, several (or none) a row, as 0/1 rows (N, L)."""
    index = {c: k for k, c in enumerate(classes)}
    hot = np.zeros((len(cells), len(classes)), np.int64)
    for row, cell in enumerate(cells):
        unknown = [t for t in cell.split() if t not in index]
        if unknown:
            raise DataSourceError(f"{path}: row {row + 2}: label {unknown[0]!r} is not a label of the training "
                                  f"labels ({', '.join(classes[:8])}{' ...' if len(classes) > 8 else ''})")
        hot[row, [index[t] for t in cell.split()]] = 1
    return hot


def find_test_images(folder: Path, directories: dict[Path, dict[str, Path]], train_paths: set[Path]
                     ) -> tuple[np.ndarray, Path]:
    """(test ids in submission order, the folder holding them): the sample submission's ids, or
    test.csv's first column, in the folder that names them all; without either, every image of a
    `test`-named folder."""
    sample = next((folder / n for n in SAMPLE_NAMES if (folder / n).is_file()), None)
    source = sample if sample is not None else (folder / "test.csv" if (folder / "test.csv").is_file() else None)
    if source is None:
        named = [d for d in directories if "test" in d.name.lower()]
        if not named:
            raise DataSourceError(f"{folder}: no test images (no sample submission, test.csv or test/ folder)")
        return np.array(sorted(directories[named[0]], key=natural_key)), named[0]
    frame = read_text_csv(source, min_columns=1)
    ids = frame[frame.columns[0]].str.strip().to_numpy()
    for directory, files in directories.items():
        found = [image_for(files, i) for i in ids]
        if all(p is not None and p not in train_paths for p in found):
            return ids, directory
    counts = {d: sum(image_for(files, i) is not None for i in ids) for d, files in directories.items()}
    directory = max(counts, key=counts.get)
    missing = next(i for i in ids if image_for(directories[directory], i) is None or
                   image_for(directories[directory], i) in train_paths)
    row = int(np.flatnonzero(ids == missing)[0])
    raise DataSourceError(f"{source}: row {row + 2}: no test image for id {missing!r} in {directory}")


def labels_csv_candidates(folder: Path) -> list[Path]:
    """The CSVs that could hold the training labels: by a known name, else every CSV but the
    sample submission and the answers."""
    named = [folder / n for n in LABELS_CSV_NAMES if (folder / n).is_file()]
    return named[:1] or [p for p in sorted(folder.glob("*.csv")) if p.name not in (*SAMPLE_NAMES, "solution.csv")]


def find_labels_csv(folder: Path) -> Path:
    """The training labels: trainLabels.csv / train_labels.csv / labels.csv / train.csv, or the one
    other CSV in the folder."""
    others = labels_csv_candidates(folder)
    if len(others) != 1:
        raise DataSourceError(f"{folder}: cannot tell which CSV holds the training labels "
                              f"(found {[p.name for p in others] or 'none'}); name it trainLabels.csv")
    return others[0]


# ---------------------------------------------------------------- form 3: class subfolders


def read_class_folders(folder: Path, log: Callable[[str], None]) -> KaggleFolder:
    train = folder / "train"
    stray = [p.name for p in train.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if stray:
        raise DataSourceError(f"{train}: images beside the class folders ({stray[0]}, ...); each image belongs "
                              f"in train/<class>/")
    classes = class_order([p.name for p in train.iterdir() if p.is_dir()])
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = image_files(train / name)
        if not files:
            raise DataSourceError(f"{train / name}: a class folder with no images")
        paths += [files[i] for i in sorted(files, key=natural_key)]
        labels += [k] * len(files)
    id_out, label_out, test_ids = submission_columns(folder, "id", "label", folder / "test")
    test_files = image_files(folder / "test")
    test_labels, usage = read_answers(folder, id_out, label_out, test_ids, classes, log)
    train_ids = np.array([f"{p.parent.name}/{p.stem}" for p in paths])
    raw = RawData(train_images=paths, train_labels=np.array(labels, np.int64),
                  test_images=[image_for(test_files, i) for i in test_ids], test_labels=test_labels,
                  notes=[f"Kaggle folder {folder} (class subfolders of train/)",
                         *skipped_note([train / name for name in classes], folder)], train_ids=train_ids,
                  test_ids=test_ids, test_source="the folder's test/ images")
    return KaggleFolder("class-folders", raw, classes, id_out, label_out, usage)


# ---------------------------------------------------------------- form 4: labels in the file names


def read_named_files(folder: Path, log: Callable[[str], None]) -> KaggleFolder:
    """Kaggle's Dogs vs. Cats: `train/<label>.<n>.<suffix>` (the label is the name before the first
    dot), `test/<id>.<suffix>`; the training ids are the file names without their suffix."""
    files = image_files(folder / "train")
    names = {stem: NAMED_FILE.match(path.name)["label"] for stem, path in files.items()}
    classes = class_order(set(names.values()))
    if len(classes) < 2:
        raise DataSourceError(f"{folder / 'train'}: every file name gives the label {classes[0]!r}; "
                              f"a competition needs two classes or more")
    stems = sorted(files, key=lambda stem: (names[stem], natural_key(stem.split(".", 1)[1])))
    index = {c: k for k, c in enumerate(classes)}
    id_out, label_out, test_ids = submission_columns(folder, "id", "label", folder / "test")
    test_files = image_files(folder / "test")
    test_labels, usage = read_answers(folder, id_out, label_out, test_ids, classes, log)
    raw = RawData(train_images=[files[s] for s in stems],
                  train_labels=np.array([index[names[s]] for s in stems], np.int64),
                  test_images=[image_for(test_files, i) for i in test_ids], test_labels=test_labels,
                  notes=[f"Kaggle folder {folder} (labels in the train/ file names: {', '.join(classes)})",
                         *skipped_note([folder / "train"], folder)],
                  train_ids=np.array(stems), test_ids=test_ids, test_source="the folder's test/ images")
    return KaggleFolder("named-files", raw, classes, id_out, label_out, usage)


# ---------------------------------------------------------------- shared


def read_text_csv(path: Path, min_columns: int) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataSourceError(f"{path}: cannot parse CSV ({e})") from e
    if len(frame.columns) < min_columns:
        raise DataSourceError(f"{path}: expected at least {min_columns} columns, found {list(frame.columns)}")
    if len(frame) == 0:
        raise DataSourceError(f"{path}: no rows")
    return frame


def natural_key(text: str) -> tuple:
    """Integers by value (2 before 10), then text."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def class_order(names) -> tuple[str, ...]:
    return tuple(sorted((str(n) for n in names), key=natural_key))


def image_files(folder: Path) -> dict[str, Path]:
    """id (file name without suffix) -> image file, for the images directly in `folder`."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise DataSourceError(f"{folder}: two images for id {path.stem!r} "
                                      f"({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


def skipped_note(folders: list[Path], root: Path) -> list[str]:
    """One line naming the files in `folders` that are not read as training images (their suffix is
    not an image's; hidden files such as .DS_Store aside), or none: a photo in a format outside
    `IMAGE_SUFFIXES` must not drop out of training unannounced."""
    skipped = [p.relative_to(root) for f in folders for p in sorted(f.iterdir())
               if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES]
    if not skipped:
        return []
    shown = ", ".join(str(p) for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return [f"skipped {len(skipped)} file(s) that are not images by their suffix ({shown}); images are read "
            f"from {' '.join(sorted(IMAGE_SUFFIXES))}"]


def image_for(files: dict[str, Path], image_id: str) -> Path | None:
    """The image an id names: by file name without suffix (CIFAR-10's `1`), or with it (`0a1b.jpg`,
    as Kaggle's Aerial Cactus names its rows)."""
    if image_id in files:
        return files[image_id]
    path = Path(image_id)
    return files.get(path.stem) if path.suffix.lower() in IMAGE_SUFFIXES else None


def sample_header(folder: Path) -> tuple[str, ...] | None:
    """The columns of the folder's sample submission, or None when it has none."""
    sample = next((Path(folder) / n for n in SAMPLE_NAMES if (Path(folder) / n).is_file()), None)
    return None if sample is None else tuple(read_text_csv(sample, min_columns=2).columns)


def submission_columns(folder: Path, id_column: str, label_column: str, test_dir: Path
                       ) -> tuple[str, str, np.ndarray]:
    """(id column, label column, test ids in submission order) from the sample submission, or
    from the training labels' header and the test images' names when there is none."""
    test_files = image_files(test_dir)
    if not test_files:
        raise DataSourceError(f"{test_dir}: no test images")
    sample = next((folder / n for n in SAMPLE_NAMES if (folder / n).is_file()), None)
    if sample is None:
        return id_column, label_column, np.array(sorted(test_files, key=natural_key))
    frame = read_text_csv(sample, min_columns=2)
    ids = frame[frame.columns[0]].str.strip().to_numpy()
    missing = [i for i in ids if image_for(test_files, i) is None]
    if missing:
        row = int(np.flatnonzero(ids == missing[0])[0])
        raise DataSourceError(f"{sample}: row {row + 2}: no image for id {missing[0]!r} in {test_dir}")
    return frame.columns[0], frame.columns[1], ids


def read_answers(folder: Path, id_column: str, label_column: str, test_ids: np.ndarray, classes: tuple[str, ...],
                 log: Callable[[str], None], multi_label: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The folder's solution.csv (id,label[,Usage]) as class indices in test-id order (0/1 rows (N, L)
    in a multi-label competition), checked to cover the test set exactly; (None, None) when the
    folder has none."""
    path = folder / "solution.csv"
    if not path.is_file():
        log(f"{folder}: no solution.csv, so submissions can be written but not scored")
        return None, None
    frame = read_text_csv(path, min_columns=2)
    one_hot = len(classes) > 1 and all(c in frame.columns for c in classes) and label_column not in frame.columns
    if frame.columns[0] != id_column or not (one_hot or frame.columns[1] == label_column):
        raise DataSourceError(f"{path}: header must start with {id_column},{label_column} (or {id_column} and one "
                              f"column per class); found {list(frame.columns)}")
    frame[id_column] = frame[id_column].str.strip()
    if sorted(frame[id_column], key=natural_key) != sorted(map(str, test_ids), key=natural_key):
        sequence = [str(i) for i in test_ids] == [str(i) for i in range(1, len(test_ids) + 1)]
        expected = f"1..{len(test_ids)}" if sequence else f"the {len(test_ids):,} test ids"
        raise DataSourceError(f"{path}: {id_column} must be exactly {expected}, one row each")
    frame = frame.set_index(id_column).loc[[str(i) for i in test_ids]]
    usage = None
    if "Usage" in frame:
        if not frame["Usage"].isin(["Public", "Private"]).all():
            raise DataSourceError(f"{path}: Usage must be Public or Private")
        usage = frame["Usage"].to_numpy()
    if multi_label:
        hot = frame[list(classes)].astype(np.int64).to_numpy() if one_hot else \
            listed_labels(path, frame[label_column], classes)
        return hot, usage
    if one_hot:
        frame[label_column] = np.asarray(classes, dtype=object)[label_indices(path, frame, classes, classes)]
    index = {c: k for k, c in enumerate(classes)}
    if all(c.isdigit() for c in classes):
        index.update({str(int(c)): k for k, c in enumerate(classes)})
    labels = frame[label_column].str.strip()
    if len(classes) == 2 and set(labels) <= {"0", "1"} and not set(labels) & set(classes):
        # a binary competition's answers as 0/1 (Dogs vs. Cats: 1 = dog), the classes in their order
        index = {"0": 0, "1": 1}
    unknown = ~labels.isin(list(index))
    if unknown.any():
        raise DataSourceError(f"{path}: label {labels[unknown].iloc[0]!r} is not a class of the training labels "
                              f"({', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})")
    return labels.map(index).to_numpy(np.int64), usage
