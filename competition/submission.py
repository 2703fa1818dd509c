"""A competition's submission form, and the files in it: writing, validating, the answer file.

`SubmissionForm` is what the sample submission says: the id column, the label column and the
label values (class names or integers, as the training labels spell them), or, for a
probability competition (log-loss), one column per class. Test ids are kept as text in test
order. Participant faults raise `InvalidSubmissionError` naming the first offending line; a
broken answer file is the harness's fault and fails an assertion instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InvalidSubmissionError
from .metrics import one_hot
from .sources import atomic_write_text

PROBABILITY_TOLERANCE = 1e-3    # a probability row may sum to 1 +- this


@dataclass(frozen=True)
class SubmissionForm:
    id_column: str = "ImageId"
    label_column: str = "Label"
    labels: tuple[str, ...] = tuple(str(d) for d in range(10))   # submission spelling of class k
    probabilities: bool = False     # one column per class (log-loss), instead of the label column

    @property
    def header(self) -> list[str]:
        return [self.id_column, *(self.labels if self.probabilities else (self.label_column,))]

    @property
    def integer_labels(self) -> bool:
        return all(_is_integer(v) for v in self.labels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SubmissionForm":
        return cls(**{**values, "labels": tuple(values["labels"])})


def _is_integer(text: str) -> bool:
    text = text.strip()
    return text.lstrip("-").isdigit() and text.isascii()


def _key(text: str, integer: bool) -> str | None:
    """How a cell is looked up: integers by value ('07' is 7), text as written (spaces stripped)."""
    text = text.strip()
    if integer:
        return str(int(text)) if _is_integer(text) else None
    return text


def max_submission_bytes(num_rows: int, form: SubmissionForm = SubmissionForm()) -> int:
    """Generous for the form's rows (an id and a label, or K probabilities), far below anything pathological."""
    per_row = 64 + (24 * len(form.labels) if form.probabilities else max(len(v) for v in form.labels))
    return per_row * (num_rows + 1) + 4096


def write_submission(path: Path, form: SubmissionForm, ids: np.ndarray, probabilities: np.ndarray) -> None:
    """Write predictions (N, K class probabilities, in test-id order) in the competition's form:
    the most probable class's label, or every probability for a probability competition."""
    if form.probabilities:
        frame = pd.DataFrame(np.round(probabilities, 6), columns=list(form.labels))
        frame.insert(0, form.id_column, ids)
        text = frame.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    else:
        labels = np.asarray(form.labels, dtype=object)[probabilities.argmax(1)]
        text = pd.DataFrame({form.id_column: ids, form.label_column: labels}).to_csv(index=False, lineterminator="\n")
    atomic_write_text(path, text)


def validate_submission(path: Path, form: SubmissionForm, ids: np.ndarray) -> np.ndarray:
    """Check a submission file and return its class probabilities (N, K) in test-id order
    (one-hot rows for a label submission).

    Rules: the header exactly as the sample submission's; every test id exactly once; labels among
    the competition's, or K probabilities per row that are numbers >= 0 summing to 1; no other rows.
    """
    path = Path(path)
    lines = _read_lines(path, len(ids), form)
    if lines[0].strip() != ",".join(form.header):
        raise InvalidSubmissionError(f"{path}: line 1: header must be exactly {','.join(form.header)!r}, "
                                     f"found {lines[0]!r}")
    integer_ids = all(_is_integer(str(i)) for i in ids)
    row_of = {_key(str(i), integer_ids): row for row, i in enumerate(ids)}
    label_of = {_key(v, form.integer_labels): k for k, v in enumerate(form.labels)}
    out = np.full((len(ids), len(form.labels)), np.nan)
    width = len(form.header)
    for line_number, line in enumerate(lines[1:], start=2):
        where = f"{path}: line {line_number}"
        fields = line.split(",")
        if len(fields) != width:
            raise InvalidSubmissionError(f"{where}: expected {width} fields ({','.join(form.header)[:60]}), "
                                         f"found {len(fields)}: {line[:80]!r}")
        key = _key(fields[0], integer_ids)
        if key is None:
            raise InvalidSubmissionError(f"{where}: {form.id_column} {fields[0]!r} is not an integer")
        if key not in row_of:
            expected = f"1..{len(ids)}" if integer_ids and _is_sequence(ids) else f"one of the {len(ids):,} test ids"
            raise InvalidSubmissionError(f"{where}: {form.id_column} {key} is not a test image (expected {expected})")
        row = row_of[key]
        if not np.isnan(out[row, 0]):
            raise InvalidSubmissionError(f"{where}: {form.id_column} {key} appears twice")
        out[row] = _probability_row(fields[1:], form, where) if form.probabilities else \
            _label_row(fields[1], form, label_of, where)
    missing = np.flatnonzero(np.isnan(out[:, 0]))
    if len(missing):
        raise InvalidSubmissionError(f"{path}: {len(missing):,} {form.id_column}s missing, "
                                     f"the first is {ids[missing[0]]}")
    return out


def _read_lines(path: Path, num_rows: int, form: SubmissionForm) -> list[str]:
    if not path.is_file():
        raise InvalidSubmissionError(f"{path}: no such file")
    size, limit = path.stat().st_size, max_submission_bytes(num_rows, form)
    if size > limit:
        raise InvalidSubmissionError(f"{path}: {size:,} bytes is over the {limit:,}-byte limit for {num_rows:,} rows")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidSubmissionError(f"{path}: not UTF-8 text (byte {e.start})") from e
    lines = text.splitlines()
    if not lines:
        raise InvalidSubmissionError(f"{path}: empty file; expected the header {','.join(form.header)!r}")
    return lines


def _is_sequence(ids: np.ndarray) -> bool:
    return [str(i) for i in ids] == [str(i) for i in range(1, len(ids) + 1)]


def _label_row(cell: str, form: SubmissionForm, label_of: dict, where: str) -> np.ndarray:
    key = _key(cell, form.integer_labels)
    if key is None:
        raise InvalidSubmissionError(f"{where}: {form.label_column} {cell!r} is not an integer")
    if key not in label_of:
        allowed = f"0..{len(form.labels) - 1}" if form.integer_labels and \
            list(form.labels) == [str(k) for k in range(len(form.labels))] else \
            "one of " + ", ".join(form.labels[:12]) + (" ..." if len(form.labels) > 12 else "")
        shown = key if form.integer_labels else repr(key)
        raise InvalidSubmissionError(f"{where}: {form.label_column} {shown} is not a class (expected {allowed})")
    return one_hot(np.array([label_of[key]]), len(form.labels))[0]


def _probability_row(cells: list[str], form: SubmissionForm, where: str) -> np.ndarray:
    try:
        row = np.array([float(c) for c in cells])
    except ValueError:
        bad = next(c for c in cells if not _is_float(c))
        raise InvalidSubmissionError(f"{where}: probability {bad!r} is not a number") from None
    if not np.isfinite(row).all() or (row < 0).any():
        column = form.labels[int(np.flatnonzero(~np.isfinite(row) | (row < 0))[0])]
        raise InvalidSubmissionError(f"{where}: probability of {column!r} must be a number >= 0")
    if abs(row.sum() - 1) > PROBABILITY_TOLERANCE:
        raise InvalidSubmissionError(f"{where}: probabilities sum to {row.sum():.6g}, not 1 "
                                     f"(tolerance {PROBABILITY_TOLERANCE})")
    return row


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- the answer file


@dataclass(frozen=True)
class Solution:
    """The held-out answers, in test-id order."""
    labels: np.ndarray      # (N,) int64 class indices
    public: np.ndarray      # (N,) bool, True where Usage is Public

    @property
    def size(self) -> int:
        return len(self.labels)


def write_solution(path: Path, form: SubmissionForm, ids: np.ndarray, labels: np.ndarray, usage: np.ndarray) -> None:
    """private/solution.csv: id, label (as the submission spells it), Usage (Public or Private)."""
    frame = pd.DataFrame({form.id_column: ids, form.label_column: np.asarray(form.labels, dtype=object)[labels],
                          "Usage": usage})
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def read_solution(path: Path, form: SubmissionForm, ids: np.ndarray) -> Solution:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == [form.id_column, form.label_column, "Usage"], f"{path}: bad answer-file header"
    assert frame[form.id_column].tolist() == [str(i) for i in ids], f"{path}: ids are not the test ids in order"
    assert frame["Usage"].isin(["Public", "Private"]).all(), f"{path}: Usage must be Public or Private"
    index = {v: k for k, v in enumerate(form.labels)}
    assert frame[form.label_column].isin(list(index)).all(), f"{path}: a label outside the competition's classes"
    return Solution(frame[form.label_column].map(index).to_numpy(np.int64), (frame["Usage"] == "Public").to_numpy())
