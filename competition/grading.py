"""The grader: validate a submission, then score it against the held-out answers.

Participant faults raise `InvalidSubmissionError` naming the first offending line or
column; a broken answer file is the harness's fault and fails an assertion instead.
Confidence intervals are exact binomial (Clopper-Pearson) 95% intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta

from .errors import InvalidSubmissionError

HEADER = "ImageId,Label"


@dataclass(frozen=True)
class Solution:
    """The held-out answers: row i is ImageId i + 1."""
    labels: np.ndarray      # (N,) int64
    public: np.ndarray      # (N,) bool, True where Usage is Public

    @property
    def size(self) -> int:
        return len(self.labels)


def read_solution(path: Path) -> Solution:
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["ImageId", "Label", "Usage"], f"{path}: bad answer-file header"
    assert np.array_equal(frame["ImageId"].to_numpy(), np.arange(1, len(frame) + 1)), f"{path}: ImageIds not 1..N"
    assert frame["Usage"].isin(["Public", "Private"]).all(), f"{path}: Usage must be Public or Private"
    return Solution(frame["Label"].to_numpy(np.int64), (frame["Usage"] == "Public").to_numpy())


def max_submission_bytes(num_rows: int) -> int:
    """Generous for `ImageId,Label` rows (about 10 bytes each), far below anything pathological."""
    return 64 * (num_rows + 1) + 4096


def _as_int(text: str) -> int | None:
    text = text.strip()
    if text.lstrip("-").isdigit() and text.isascii():
        return int(text)
    return None


def validate_submission(path: Path, num_rows: int, num_classes: int) -> np.ndarray:
    """Check a submission file and return its labels in ImageId order, (num_rows,) int64.

    Rules: header exactly `ImageId,Label`; every ImageId 1..num_rows exactly once; integer
    labels in 0..num_classes-1; no other rows; at most `max_submission_bytes` bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidSubmissionError(f"{path}: no such file")
    size = path.stat().st_size
    if size > max_submission_bytes(num_rows):
        raise InvalidSubmissionError(f"{path}: {size:,} bytes is over the {max_submission_bytes(num_rows):,}-byte "
                                     f"limit for {num_rows:,} rows")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidSubmissionError(f"{path}: not UTF-8 text (byte {e.start})") from e
    lines = text.splitlines()
    if not lines:
        raise InvalidSubmissionError(f"{path}: empty file; expected the header {HEADER!r}")
    if lines[0].strip() != HEADER:
        raise InvalidSubmissionError(f"{path}: line 1: header must be exactly {HEADER!r}, found {lines[0]!r}")

    labels = np.full(num_rows, -1, dtype=np.int64)
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != 2:
            raise InvalidSubmissionError(f"{path}: line {line_number}: expected 2 fields (ImageId,Label), "
                                         f"found {len(fields)}: {line!r}")
        image_id, label = _as_int(fields[0]), _as_int(fields[1])
        if image_id is None:
            raise InvalidSubmissionError(f"{path}: line {line_number}: ImageId {fields[0]!r} is not an integer")
        if not 1 <= image_id <= num_rows:
            raise InvalidSubmissionError(f"{path}: line {line_number}: ImageId {image_id} is not a test image "
                                         f"(expected 1..{num_rows})")
        if labels[image_id - 1] >= 0:
            raise InvalidSubmissionError(f"{path}: line {line_number}: ImageId {image_id} appears twice")
        if label is None:
            raise InvalidSubmissionError(f"{path}: line {line_number}: Label {fields[1]!r} is not an integer")
        if not 0 <= label < num_classes:
            raise InvalidSubmissionError(f"{path}: line {line_number}: Label {label} is not a class "
                                         f"(expected 0..{num_classes - 1})")
        labels[image_id - 1] = label
    missing = np.flatnonzero(labels < 0)
    if len(missing):
        raise InvalidSubmissionError(f"{path}: {len(missing):,} ImageIds missing, the first is {missing[0] + 1}")
    return labels


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int
    low: float      # 95% Clopper-Pearson interval
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def __str__(self) -> str:
        return (f"{self.value:.4f}  (95% CI {self.low:.4f}-{self.high:.4f}, "
                f"{self.correct:,}/{self.total:,})")


def clopper_pearson(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for a proportion."""
    if total == 0:
        return float("nan"), float("nan")
    alpha = 1 - level
    low = 0.0 if correct == 0 else float(beta.ppf(alpha / 2, correct, total - correct + 1))
    high = 1.0 if correct == total else float(beta.ppf(1 - alpha / 2, correct + 1, total - correct))
    return low, high


def accuracy_of(hits: np.ndarray) -> Accuracy:
    correct, total = int(hits.sum()), int(hits.size)
    return Accuracy(correct, total, *clopper_pearson(correct, total))


@dataclass(frozen=True)
class Score:
    public: Accuracy
    private: Accuracy
    overall: Accuracy
    per_class: list[Accuracy]
    confusion: np.ndarray     # (K, K): rows true class, columns predicted


def score_labels(predicted: np.ndarray, solution: Solution, num_classes: int) -> Score:
    hits = predicted == solution.labels
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (solution.labels, predicted), 1)
    per_class = [accuracy_of(hits[solution.labels == k]) for k in range(num_classes)]
    return Score(accuracy_of(hits[solution.public]), accuracy_of(hits[~solution.public]), accuracy_of(hits),
                 per_class, confusion)


def score_submission(path: Path, solution_path: Path, num_classes: int) -> tuple[np.ndarray, Score]:
    """Validate, then score. Returns the submission's labels and the score."""
    solution = read_solution(solution_path)
    labels = validate_submission(path, solution.size, num_classes)
    return labels, score_labels(labels, solution, num_classes)


def format_score(score: Score, classes: tuple[str, ...]) -> str:
    """Public/private accuracy with intervals, per-class accuracy and the confusion matrix."""
    width = max(5, *(len(c) for c in classes))
    lines = [f"public accuracy:  {score.public}", f"private accuracy: {score.private}",
             f"all test rows:    {score.overall}",
             "95% intervals are exact binomial (Clopper-Pearson).", "", "per-class accuracy (all test rows):"]
    lines += [f"  {name:>{width}}  {acc}" for name, acc in zip(classes, score.per_class)]
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * (width + 2) + "".join(f"{name[:6]:>7}" for name in classes)]
    for name, row in zip(classes, score.confusion):
        lines.append(f"  {name:>{width}}" + "".join(f"{v:>7}" for v in row))
    return "\n".join(lines)
