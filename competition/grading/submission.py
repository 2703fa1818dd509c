"""A competition's submission form, and the files in it: writing, validating, the answer file.

`SubmissionForm` is what the sample submission and the metric say: the id column, then one of
  label           the label column: each image's class (class names or integers, as the training
                  labels spell them; `3.0` counts as 3)
  probabilities   one column per class, each row summing to 1 (log-loss, mean column-wise AUC)
  probability     one column: the probability of the second class in the competition's class
                  order (a binary competition: Dogs vs. Cats' `id,label` = P(dog), aerial-cactus)
  top-k           the label column: up to k space-separated labels, most likely first (MAP@k)
  labels          the label column: every label the image has, space-separated, perhaps none
                  (a multi-label competition scored by F1: imet, plant-pathology-2021)
In a multi-label competition `probabilities` holds each label's own probability (ranzcr-clip),
so a row need not sum to 1.
Test ids are kept as text in test order. Probabilities are written as shortest round-trip floats,
so a file scores exactly as the arrays behind it. Participant faults raise
`InvalidSubmissionError` naming the first offending line; a broken answer file is the harness's
fault and fails an assertion instead.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import ConfigError, InvalidSubmissionError
from .metrics import Metric, one_hot
from ..workspace import atomic_write_text

# A probability row must sum to 1 as `np.isclose` says (atol 1e-6 + rtol 1e-5): the reference graders'
# check (mle-bench's); float32 softmax rows are within ~1e-7.
ROW_SUM_ATOL, ROW_SUM_RTOL = 1e-6, 1e-5
# Ids and integer labels: at most this many digits. Python refuses to read integers of more than 4,300
# digits; anything past 64 bits names no row of any competition.
MAX_DIGITS = 18

Values = Literal["label", "probabilities", "probability", "top-k", "labels"]


@dataclass(frozen=True)
class SubmissionForm:
    id_column: str = "ImageId"
    label_column: str = "Label"     # the one value column (label, probability and top-k forms)
    labels: tuple[str, ...] = tuple(str(d) for d in range(10))   # submission spelling of class k
    values: Values = "label"        # what a row holds after its id (see the module's docstring)
    k: int = 1                      # top-k: at most this many labels a row
    multi_label: bool = False       # several labels an image: `labels` are label names, not classes
    # probabilities: whether each row must sum to 1 (log-loss) or each cell is a score in [0, 1] the
    # metric only ranks column by column (mean column-wise ROC AUC: per-class sigmoid outputs)
    rows_sum_to_one: bool = True

    def __post_init__(self) -> None:
        if self.values == "probability" and len(self.labels) != 2:
            raise ValueError(f"a one-column probability submission needs 2 classes, not {len(self.labels)}")

    @property
    def probabilities(self) -> bool:
        """One column per class."""
        return self.values == "probabilities"

    @property
    def header(self) -> list[str]:
        return [self.id_column, *(self.labels if self.probabilities else (self.label_column,))]

    @cached_property            # asked once a row by the grader
    def integer_labels(self) -> bool:
        return all(_is_integer(v) for v in self.labels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SubmissionForm":
        return cls(**{**values, "labels": tuple(values["labels"])})

    def as_submitted(self, probabilities: np.ndarray) -> np.ndarray:
        """What a file of this form, written from `probabilities` (N, K), reads back as: one-hot
        rows for labels, the ranks of the k listed labels for top-k (k, k-1, ..., 0 elsewhere),
        the probabilities themselves otherwise. Scores of a run's members and rounds use this,
        so they are the scores their files would get."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.values == "label":
            return one_hot(probabilities.argmax(1), probabilities.shape[1])
        if self.values == "top-k":
            return top_k_ranks(probabilities, self.k)
        if self.values == "labels":
            return (probabilities >= 0.5).astype(np.float64)
        return probabilities


def top_k_ranks(probabilities: np.ndarray, k: int) -> np.ndarray:
    """(N, K): k for each row's most probable class, k - 1 for the next, ..., 0 beyond the k-th."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    out = np.zeros(probabilities.shape)
    np.put_along_axis(out, top, np.arange(k, 0, -1, dtype=np.float64)[None, :top.shape[1]], axis=1)
    return out


def form_for(metric: Metric, *, id_column: str, label_column: str, labels: tuple[str, ...],
             sample_header: tuple[str, ...] | None = None, multi_label: bool = False) -> SubmissionForm:
    """The submission form the metric and the sample submission ask for. Class probabilities for
    log-loss and mean column-wise AUC, but one column (the second class's probability) for binary
    ROC AUC and for a binary log-loss competition whose sample submission has one value column
    (Dogs vs. Cats); up to k labels for MAP@k; the label otherwise. Multi-label: each label's
    probability for mean column-wise AUC, else the space-separated labels."""
    if multi_label:
        if not metric.scores_multi_label:
            raise ConfigError(f"{metric.name} does not score a multi-label competition (several labels an "
                              f"image); choose one of mean-roc-auc, micro-f1, macro-f1, accuracy")
        values = "probabilities" if metric.name == "mean-roc-auc" else "labels"
        return SubmissionForm(id_column, label_column, tuple(labels), values=values, multi_label=True,
                              rows_sum_to_one=False)
    if metric.binary_only and len(labels) != 2:
        raise ConfigError(f"{metric.name} scores a binary competition; this one has {len(labels)} classes "
                          f"({', '.join(labels[:6])}{' ...' if len(labels) > 6 else ''})")
    one_column = sample_header is not None and len(sample_header) == 2
    if metric.submits == "label":
        values = "label"
    elif metric.submits == "top-k":
        values = "top-k"
    elif metric.name == "roc-auc" or (len(labels) == 2 and one_column):
        values = "probability"
    else:
        values = "probabilities"
    return SubmissionForm(id_column, label_column, tuple(labels), values=values, k=metric.k,
                          rows_sum_to_one=metric.name != "mean-roc-auc")


def _is_integer(text: str) -> bool:
    """An optional minus and 1 to `MAX_DIGITS` ASCII digits: nothing `int()` could refuse."""
    return re.fullmatch(rf"-?[0-9]{{1,{MAX_DIGITS}}}", text.strip()) is not None


def _integer_value(text: str) -> int | None:
    """'7', '07', '7.0', '7.' as 7 (a spreadsheet or pandas writes integer labels as floats); None otherwise."""
    text = text.strip()
    if _is_integer(text):
        return int(text)
    whole, dot, fraction = text.partition(".")
    if dot and _is_integer(whole) and (fraction == "" or set(fraction) == {"0"}):
        return int(whole)
    return None


def _key(text: str, integer: bool) -> str | None:
    """How a cell is looked up: integers by value ('07' and '7.0' are 7), text as written (spaces stripped)."""
    text = text.strip()
    if integer:
        value = _integer_value(text)
        return None if value is None else str(value)
    return text


def max_submission_bytes(num_rows: int, form: SubmissionForm = SubmissionForm()) -> int:
    """Generous for the form's rows (an id and a label, or K probabilities), far below anything pathological."""
    longest = max(len(v) for v in form.labels)
    per_row = 64 + {"probabilities": 26 * len(form.labels), "probability": 26, "top-k": (longest + 1) * form.k,
                    "labels": (longest + 1) * len(form.labels)}.get(form.values, longest)
    return per_row * (num_rows + 1) + 4096


def write_submission(path: Path, form: SubmissionForm, ids: np.ndarray, probabilities: np.ndarray) -> None:
    """Write predictions (N, K class probabilities, in test-id order) in the competition's form:
    the most probable class's label, every probability, the second class's probability, or the k
    most probable labels. Floats are written shortest round-trip (repr): a tiny probability stays
    itself, not 0, so the file scores as the arrays do."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    names = np.asarray(form.labels, dtype=object)
    if form.values == "probabilities":
        columns = {name: probabilities[:, k] for k, name in enumerate(form.labels)}
    elif form.values == "probability":
        columns = {form.label_column: probabilities[:, 1]}
    elif form.values == "top-k":
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :form.k]
        columns = {form.label_column: [" ".join(row) for row in names[top]]}
    elif form.values == "labels":
        columns = {form.label_column: [" ".join(names[row >= 0.5]) for row in probabilities]}
    else:
        columns = {form.label_column: names[probabilities.argmax(1)]}
    frame = pd.DataFrame({form.id_column: ids, **columns})
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))     # floats: shortest round-trip


def validate_submission(path: Path, form: SubmissionForm, ids: np.ndarray) -> np.ndarray:
    """Check a submission file and return its class probabilities (N, K) in test-id order
    (one-hot rows for a label submission).

    Rules (the reference graders'): a CSV (quoted cells read as the `csv` module reads them) whose
    header holds the sample submission's columns, in any order, and no others; every test id exactly
    once; labels among the competition's; K probabilities per row that are numbers >= 0 summing to 1
    (any score in [0, 1] a cell where the metric only ranks columns), one probability in [0, 1], or 1
    to k distinct space-separated labels; no other rows. Every fault names its line.
    """
    path = Path(path)
    rows = _read_rows(path, len(ids), form)
    order = _column_order(rows[0][1], form, path)
    integer_ids = all(_is_integer(str(i)) for i in ids)
    row_of = {_key(str(i), integer_ids): row for row, i in enumerate(ids)}
    label_of = {_key(v, form.integer_labels): k for k, v in enumerate(form.labels)}
    out = np.full((len(ids), len(form.labels)), np.nan)
    width = len(form.header)
    for line_number, cells in rows[1:]:
        where = f"{path}: line {line_number}"
        if len(cells) != width:
            raise InvalidSubmissionError(f"{where}: expected {width} fields ({','.join(form.header)[:60]}), "
                                         f"found {len(cells)}: {','.join(cells)[:80]!r}")
        fields = [cells[i] for i in order]          # in the sample submission's column order
        key = _key(fields[0], integer_ids)
        if key is None:
            raise InvalidSubmissionError(f"{where}: {form.id_column} {fields[0][:40]!r} is not an integer "
                                         f"(at most {MAX_DIGITS} digits)")
        if key not in row_of:
            expected = f"1..{len(ids)}" if integer_ids and _is_sequence(ids) else f"one of the {len(ids):,} test ids"
            raise InvalidSubmissionError(f"{where}: {form.id_column} {key[:40]} is not a test image "
                                         f"(expected {expected})")
        row = row_of[key]
        if not np.isnan(out[row, 0]):
            raise InvalidSubmissionError(f"{where}: {form.id_column} {key} appears twice")
        if form.values == "probabilities":
            out[row] = _probability_row(fields[1:], form, where)
        elif form.values == "probability":
            out[row] = _positive_probability_row(fields[1], form, where)
        elif form.values == "top-k":
            out[row] = _top_k_row(fields[1], form, label_of, where)
        elif form.values == "labels":
            out[row] = _labels_row(fields[1], form, label_of, where)
        else:
            out[row] = _label_row(fields[1], form, label_of, where)
    missing = np.flatnonzero(np.isnan(out[:, 0]))
    if len(missing):
        raise InvalidSubmissionError(f"{path}: {len(missing):,} {form.id_column}s missing, "
                                     f"the first is {ids[missing[0]]}")
    return out


def _column_order(header: list[str], form: SubmissionForm, path: Path) -> list[int]:
    """Where each of the sample submission's columns is in the file's header: in any order, the same
    set (Kaggle and the reference graders match columns by name)."""
    names = [c.strip() for c in header]
    expected = form.header
    if sorted(names) != sorted(expected):
        extra = [n[:40] for n in names if n not in expected][:5]
        missing = [n for n in expected if n not in names][:5]
        twice = sorted({n[:40] for n in names if names.count(n) > 1})[:5]
        detail = "; ".join(part for part in (f"not a column: {extra}" if extra else "",
                                             f"missing: {missing}" if missing else "",
                                             f"twice: {twice}" if twice else "") if part)
        raise InvalidSubmissionError(f"{path}: line 1: the header must hold the columns {','.join(expected)!r} "
                                     f"(in any order), found {','.join(names)[:120]!r} ({detail})")
    return [names.index(column) for column in expected]


def _read_rows(path: Path, num_rows: int, form: SubmissionForm) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-empty row, the header first, quoted cells read as a
    spreadsheet or R writes them."""
    if not path.is_file():
        raise InvalidSubmissionError(f"{path}: no such file")
    size, limit = path.stat().st_size, max_submission_bytes(num_rows, form)
    if size > limit:
        raise InvalidSubmissionError(f"{path}: {size:,} bytes is over the {limit:,}-byte limit for {num_rows:,} rows")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidSubmissionError(f"{path}: not UTF-8 text (byte {e.start})") from e
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        for cells in reader:
            if cells:
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        raise InvalidSubmissionError(f"{path}: line {reader.line_num}: not a CSV row ({e})") from None
    if not rows:
        raise InvalidSubmissionError(f"{path}: empty file; expected the header {','.join(form.header)!r}")
    return rows


def _is_sequence(ids: np.ndarray) -> bool:
    return [str(i) for i in ids] == [str(i) for i in range(1, len(ids) + 1)]


def _label_index(cell: str, form: SubmissionForm, label_of: dict, where: str) -> int:
    key = _key(cell, form.integer_labels)
    if key is None:
        raise InvalidSubmissionError(f"{where}: {form.label_column} {cell!r} is not an integer")
    if key not in label_of:
        allowed = f"0..{len(form.labels) - 1}" if form.integer_labels and \
            list(form.labels) == [str(k) for k in range(len(form.labels))] else \
            "one of " + ", ".join(form.labels[:12]) + (" ..." if len(form.labels) > 12 else "")
        shown = key if form.integer_labels else repr(key)
        raise InvalidSubmissionError(f"{where}: {form.label_column} {shown} is not a class (expected {allowed})")
    return label_of[key]


def _label_row(cell: str, form: SubmissionForm, label_of: dict, where: str) -> np.ndarray:
    return one_hot(np.array([_label_index(cell, form, label_of, where)]), len(form.labels))[0]


def _top_k_row(cell: str, form: SubmissionForm, label_of: dict, where: str) -> np.ndarray:
    """Ranks as `top_k_ranks` gives them: k for the first label listed, k - 1 for the next, ..."""
    cells = cell.split()
    if not 1 <= len(cells) <= form.k:
        raise InvalidSubmissionError(f"{where}: {form.label_column} must list 1 to {form.k} space-separated "
                                     f"labels, found {len(cells)}")
    row = np.zeros(len(form.labels))
    for rank, text in enumerate(cells):
        k = _label_index(text, form, label_of, where)
        if row[k]:
            raise InvalidSubmissionError(f"{where}: {form.label_column} lists {text!r} twice")
        row[k] = form.k - rank
    return row


def _labels_row(cell: str, form: SubmissionForm, label_of: dict, where: str) -> np.ndarray:
    """Every label listed, as 1 (the rest 0): a multi-label row."""
    row = np.zeros(len(form.labels))
    for text in cell.split():
        k = _label_index(text, form, label_of, where)
        if row[k]:
            raise InvalidSubmissionError(f"{where}: {form.label_column} lists {text!r} twice")
        row[k] = 1.0
    return row


def _positive_probability_row(cell: str, form: SubmissionForm, where: str) -> np.ndarray:
    if not _is_float(cell):
        raise InvalidSubmissionError(f"{where}: {form.label_column} {cell!r} is not a number")
    p = float(cell)
    if not 0 <= p <= 1:
        raise InvalidSubmissionError(f"{where}: {form.label_column} {cell.strip()} is not a probability "
                                     f"(of {form.labels[1]!r}, between 0 and 1)")
    return np.array([1 - p, p])


def _probability_row(cells: list[str], form: SubmissionForm, where: str) -> np.ndarray:
    try:
        row = np.array([float(c) for c in cells])
    except ValueError:
        bad = next(c for c in cells if not _is_float(c))
        raise InvalidSubmissionError(f"{where}: probability {bad!r} is not a number") from None
    if not np.isfinite(row).all() or (row < 0).any():
        column = form.labels[int(np.flatnonzero(~np.isfinite(row) | (row < 0))[0])]
        raise InvalidSubmissionError(f"{where}: probability of {column!r} must be a number >= 0")
    if form.multi_label or not form.rows_sum_to_one:    # each cell a score of its own
        if (row > 1).any():
            column = form.labels[int(np.flatnonzero(row > 1)[0])]
            raise InvalidSubmissionError(f"{where}: probability of {column!r} must be between 0 and 1")
        return row
    if not np.isclose(row.sum(), 1.0, rtol=ROW_SUM_RTOL, atol=ROW_SUM_ATOL):
        raise InvalidSubmissionError(f"{where}: probabilities sum to {row.sum():.6g}, not 1 "
                                     f"(np.isclose: atol {ROW_SUM_ATOL}, rtol {ROW_SUM_RTOL})")
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
    labels: np.ndarray      # (N,) int64 class indices; (N, L) 0/1 in a multi-label competition
    public: np.ndarray      # (N,) bool, True where Usage is Public

    @property
    def size(self) -> int:
        return len(self.labels)


def write_solution(path: Path, form: SubmissionForm, ids: np.ndarray, labels: np.ndarray, usage: np.ndarray) -> None:
    """private/solution.csv: id, label (as the submission spells it), Usage (Public or Private); in a
    multi-label competition id, one 0/1 column per label, Usage."""
    if form.multi_label:
        frame = pd.DataFrame({form.id_column: ids, **{name: labels[:, k].astype(np.int64)
                                                      for k, name in enumerate(form.labels)}, "Usage": usage})
        atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
        return
    frame = pd.DataFrame({form.id_column: ids, form.label_column: np.asarray(form.labels, dtype=object)[labels],
                          "Usage": usage})
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def read_solution(path: Path, form: SubmissionForm, ids: np.ndarray) -> Solution:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    values = list(form.labels) if form.multi_label else [form.label_column]
    assert list(frame.columns) == [form.id_column, *values, "Usage"], f"{path}: bad answer-file header"
    assert frame[form.id_column].tolist() == [str(i) for i in ids], f"{path}: ids are not the test ids in order"
    assert frame["Usage"].isin(["Public", "Private"]).all(), f"{path}: Usage must be Public or Private"
    if form.multi_label:
        return Solution(frame[values].astype(np.int64).to_numpy(), (frame["Usage"] == "Public").to_numpy())
    index = {v: k for k, v in enumerate(form.labels)}
    assert frame[form.label_column].isin(list(index)).all(), f"{path}: a label outside the competition's classes"
    return Solution(frame[form.label_column].map(index).to_numpy(np.int64), (frame["Usage"] == "Public").to_numpy())
