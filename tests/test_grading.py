"""The grader: perfect and partial submissions, every kind of malformed file, intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.grading import (InvalidSubmissionError, clopper_pearson, max_submission_bytes,
                                 score_submission, validate_submission)

LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
USAGE = ["Public", "Private"] * 5


@pytest.fixture
def solution(tmp_path):
    path = tmp_path / "solution.csv"
    pd.DataFrame({"ImageId": range(1, 11), "Label": LABELS, "Usage": USAGE}).to_csv(path, index=False)
    return path


def _submission(tmp_path, text, name="submission.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _csv(labels, ids=None):
    ids = range(1, len(labels) + 1) if ids is None else ids
    return "ImageId,Label\n" + "".join(f"{i},{k}\n" for i, k in zip(ids, labels))


def test_perfect_submission_scores_one_on_both_splits(tmp_path, solution):
    _, score = score_submission(_submission(tmp_path, _csv(LABELS)), solution, 10)
    assert score.public.value == score.private.value == 1.0
    assert score.confusion.trace() == 10 and score.confusion.sum() == 10


def test_partial_submission_scores_public_and_private_separately(tmp_path, solution):
    wrong = LABELS.copy()
    wrong[[0, 2]] = 0           # two Public rows wrong
    wrong[1] = 0                # one Private row wrong
    _, score = score_submission(_submission(tmp_path, _csv(wrong)), solution, 10)
    assert (score.public.correct, score.public.total) == (3, 5)
    assert (score.private.correct, score.private.total) == (4, 5)
    assert score.public.low < 0.6 < score.public.high
    assert score.confusion[3, 0] == 1 and score.confusion[1, 0] == 1


def test_rows_in_any_order_are_accepted(tmp_path, solution):
    order = np.arange(10)[::-1]
    labels = validate_submission(_submission(tmp_path, _csv(LABELS[order], order + 1)), 10, 10)
    assert np.array_equal(labels, LABELS)


MALFORMED = {
    "empty file": ("", "empty file"),
    "wrong header": ("Id,Label\n" + _csv(LABELS).split("\n", 1)[1], "line 1: header must be exactly"),
    "header in other case": ("imageid,label\n" + _csv(LABELS).split("\n", 1)[1], "line 1: header"),
    "extra column": ("ImageId,Label\n1,3,7\n", "line 2: expected 2 fields"),
    "missing label": ("ImageId,Label\n1,\n", "line 2: Label '' is not an integer"),
    "non-integer label": (_csv(["3.5"] + list(LABELS[1:])), "line 2: Label '3.5' is not an integer"),
    "label out of range": (_csv([10] + list(LABELS[1:])), "line 2: Label 10 is not a class"),
    "negative label": (_csv([-1] + list(LABELS[1:])), "line 2: Label -1 is not a class"),
    "non-integer id": ("ImageId,Label\nabc,3\n", "line 2: ImageId 'abc' is not an integer"),
    "duplicate id": (_csv(list(LABELS) + [3], list(range(1, 11)) + [4]), "line 12: ImageId 4 appears twice"),
    "missing rows": (_csv(LABELS[:8]), "2 ImageIds missing, the first is 9"),
    "extra row": (_csv(list(LABELS) + [3]), "line 12: ImageId 11 is not a test image"),
    "blank line inside": (_csv(LABELS[:5]) + "\n" + _csv(LABELS[5:], range(6, 11)).split("\n", 1)[1],
                          "line 7: expected 2 fields"),
    "semicolon separated": ("ImageId;Label\n1;3\n", "line 1: header"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_submission_is_rejected_naming_the_first_offending_line(tmp_path, solution, kind):
    text, message = MALFORMED[kind]
    with pytest.raises(InvalidSubmissionError, match=message):
        score_submission(_submission(tmp_path, text), solution, 10)


def test_oversized_submission_is_rejected_before_reading(tmp_path, solution):
    path = _submission(tmp_path, _csv(LABELS) + "#" * max_submission_bytes(10))
    with pytest.raises(InvalidSubmissionError, match="over the .*-byte limit"):
        score_submission(path, solution, 10)


def test_binary_file_is_rejected_as_not_text(tmp_path, solution):
    path = tmp_path / "submission.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidSubmissionError, match="not UTF-8"):
        score_submission(path, solution, 10)


def test_clopper_pearson_matches_known_values():
    low, high = clopper_pearson(95, 100)
    assert low == pytest.approx(0.88716, abs=1e-4) and high == pytest.approx(0.98357, abs=1e-4)
    assert clopper_pearson(10, 10)[1] == 1.0 and clopper_pearson(0, 10)[0] == 0.0
