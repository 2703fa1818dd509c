"""The one description of a prepared competition: written once by prepare, read once by `read_prepared`.

`public/competition.json` holds a `PreparedCompetition` as JSON, with a format number. Every
stage downstream (fit, publish, score, report, rules) takes this object, never the raw dict:
the name, the classes and their spellings, the images' stored size and how the originals
reached it, the metric, the submission form, the split and its fingerprint, and whether a
mirrored image keeps its class. A file of another format is not trusted: the competition
counts as not prepared and is prepared again.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataSourceError
from .grading.submission import SubmissionForm
from .workspace import CompetitionPaths

FORMAT = 3          # 3: submission forms by value kind; 2: image size policy, .npy arrays; 1: images.npz


@dataclass(frozen=True, kw_only=True)
class PreparedCompetition:
    name: str
    source: str                         # where the data came from, for people
    form: str                           # the Kaggle form of its public files: pixel-csv | image-folder | ...
    classes: tuple[str, ...]            # class k's name
    stored_shape: tuple[int, int, int]  # (height, width, channels) of the stored uint8 images (tensors are CHW)
    resize: str = "none"                # how the originals reached stored_shape: none | crop | pad
    original_sizes: str = ""            # the originals' sizes (e.g. "min 120x98, median 375x499, max ..."), for people
    size_request: str = ""              # what chose stored_shape (images.SizeRequest.key): another is prepared again
    metric: str = "accuracy"
    submission: SubmissionForm = field(default_factory=SubmissionForm)
    hflip: bool = False                 # a mirrored image keeps its class (photos; never digits or letters)
    train_size: int
    test_size: int
    split: str                          # what the hidden test set is (official, a stratified split, ...)
    split_seed: int
    test_fraction: float
    public_fraction: float
    fingerprint: str                    # of the arrays training reads: runs record it, --resume checks it
    source_signature: str | None = None  # of a --data folder's files: a changed folder is prepared again
    notes: tuple[str, ...] = ()         # curation counts, printed by prepare
    format: int = FORMAT

    @property
    def multi_label(self) -> bool:
        """Several labels an image: the labels are 0/1 rows (N, L) and `classes` name the labels."""
        return self.submission.multi_label

    @property
    def height(self) -> int:
        return self.stored_shape[0]

    @property
    def width(self) -> int:
        return self.stored_shape[1]

    @property
    def channels(self) -> int:
        return self.stored_shape[2]

    @property
    def split_options(self) -> dict[str, float | int]:
        return {"split_seed": self.split_seed, "test_fraction": self.test_fraction,
                "public_fraction": self.public_fraction}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "competition.json") -> "PreparedCompetition":
        try:
            values = json.loads(text)
            if values.get("format") != FORMAT:
                raise DataSourceError(f"{source}: prepared by another version of the harness (format "
                                      f"{values.get('format', 1)}, this one reads {FORMAT}); prepare it again")
            # a description written before the field: mean column-wise AUC only ranks each column
            values["submission"].setdefault("rows_sum_to_one", values.get("metric") != "mean-roc-auc")
            values["submission"] = SubmissionForm.from_dict(values["submission"])
            if "image_shape" in values:         # a description written before the name said HWC
                values["stored_shape"] = values.pop("image_shape")
            for name in ("classes", "stored_shape", "notes"):
                values[name] = tuple(values[name])
            return cls(**values)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise DataSourceError(f"{source}: not a competition description ({type(e).__name__}: {e}); "
                                  f"prepare it again") from e


def read_prepared(public_dir: Path) -> PreparedCompetition:
    """The competition.json of a prepared competition's public folder."""
    path = Path(public_dir) / "competition.json"
    if not path.is_file():
        raise DataSourceError(f"{public_dir}: not a prepared competition (no competition.json); run prepare first")
    return PreparedCompetition.from_json(path.read_text(), source=str(path))


def read_labels(public_dir: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = Path(public_dir) / "labels.npz"
    try:
        with np.load(path) as saved:
            return {k: saved[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataSourceError(f"{path}: unreadable ({e}); run `python -m competition prepare` again") from e


def load_test_ids(public_dir: Path) -> np.ndarray:
    """The test rows' ids, as the submission names them, in test order."""
    return read_labels(public_dir, ("test_ids",))["test_ids"]


def is_prepared(paths: CompetitionPaths) -> bool:
    """A competition.json of this format and readable arrays of the sizes it names: a truncated
    or corrupt file (a disk fault, a copy cut short) is not trusted, and it is prepared again."""
    try:
        info = read_prepared(paths.public)
        train = np.load(paths.train_images, mmap_mode="r")
        test = np.load(paths.test_images, mmap_mode="r")
        with np.load(paths.labels) as arrays:
            labels_ok = len(arrays["train_labels"]) == info.train_size and len(arrays["test_ids"]) == info.test_size
    except (DataSourceError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
    shape = tuple(info.stored_shape)
    return labels_ok and train.shape == (info.train_size, *shape) and test.shape == (info.test_size, *shape)
