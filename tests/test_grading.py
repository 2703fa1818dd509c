"""The grader: perfect and partial submissions, every kind of malformed file (label and probability
forms), the three metrics against scikit-learn, intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sklearn.metrics import f1_score, log_loss

from competition.grading.grader import InvalidSubmissionError, clopper_pearson
from competition.grading.grader import score_submission as grade
from competition.grading.metrics import get_metric
from competition.grading.submission import SubmissionForm, max_submission_bytes, validate_submission

LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
USAGE = ["Public", "Private"] * 5
DIGITS = SubmissionForm()                       # ImageId,Label with labels 0..9, the Digit Recognizer's
IDS = np.arange(1, 11).astype(str)


def score_submission(path, solution, num_classes=10):
    """The Digit Recognizer form, as every test below the metric section uses."""
    return grade(path, solution, DIGITS, IDS)


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
    probabilities = validate_submission(_submission(tmp_path, _csv(LABELS[order], order + 1)), DIGITS, IDS)
    assert np.array_equal(probabilities.argmax(1), LABELS) and (probabilities.sum(1) == 1).all()


MALFORMED = {
    "empty file": ("", "empty file"),
    "wrong header": ("Id,Label\n" + _csv(LABELS).split("\n", 1)[1],
                     r"line 1: the header must hold the columns 'ImageId,Label' \(in any order\), found 'Id,Label' "
                     r"\(not a column: \['Id'\]; missing: \['ImageId'\]\)"),
    "header in other case": ("imageid,label\n" + _csv(LABELS).split("\n", 1)[1], "line 1: the header must hold"),
    "a column twice": ("ImageId,Label,Label\n1,3,3\n", r"line 1: .*twice: \['Label'\]"),
    "extra column": ("ImageId,Label\n1,3,7\n", "line 2: expected 2 fields"),
    "missing label": ("ImageId,Label\n1,\n", "line 2: Label '' is not an integer"),
    "non-integer label": (_csv(["3.5"] + list(LABELS[1:])), "line 2: Label '3.5' is not an integer"),
    "label out of range": (_csv([10] + list(LABELS[1:])), "line 2: Label 10 is not a class"),
    "negative label": (_csv([-1] + list(LABELS[1:])), "line 2: Label -1 is not a class"),
    "non-integer id": ("ImageId,Label\nabc,3\n", "line 2: ImageId 'abc' is not an integer"),
    "duplicate id": (_csv(list(LABELS) + [3], list(range(1, 11)) + [4]), "line 12: ImageId 4 appears twice"),
    "missing rows": (_csv(LABELS[:8]), "2 ImageIds missing, the first is 9"),
    "extra row": (_csv(list(LABELS) + [3]), "line 12: ImageId 11 is not a test image"),
    "semicolon separated": ("ImageId;Label\n1;3\n", "line 1: the header must hold"),
    "an id past 64 bits": ("ImageId,Label\n" + "9" * 4400 + ",3\n", "line 2: ImageId '9{40}' is not an integer"),
    "a doubled minus": ("ImageId,Label\n--1,3\n", "line 2: ImageId '--1' is not an integer"),
    "an unclosed quote": ('ImageId,Label\n1,"3\n', "line 2: not a CSV row"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_submission_is_rejected_naming_the_first_offending_line(tmp_path, solution, kind):
    text, message = MALFORMED[kind]
    with pytest.raises(InvalidSubmissionError, match=message):
        score_submission(_submission(tmp_path, text), solution, 10)


def test_oversized_submission_is_rejected_before_reading(tmp_path, solution):
    path = _submission(tmp_path, _csv(LABELS) + "#" * max_submission_bytes(10, DIGITS))
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


# ---------------------------------------------------------------- string labels, probabilities, metrics

FRUITS = SubmissionForm("id", "label", ("apple", "banana", "cherry"))
FRUIT_IDS = np.array(["a7", "b2", "c9", "d4", "e5", "f6"])
FRUIT_TRUTH = np.array([0, 1, 2, 0, 1, 2])


@pytest.fixture
def fruit_solution(tmp_path):
    path = tmp_path / "fruit_solution.csv"
    pd.DataFrame({"id": FRUIT_IDS, "label": np.array(FRUITS.labels)[FRUIT_TRUTH],
                  "Usage": ["Public", "Private"] * 3}).to_csv(path, index=False)
    return path


def _fruit_labels(tmp_path, labels):
    return _submission(tmp_path, "id,label\n" + "".join(f"{i},{k}\n" for i, k in zip(FRUIT_IDS, labels)))


def test_class_name_labels_are_graded_by_name(tmp_path, fruit_solution):
    _, score = grade(_fruit_labels(tmp_path, ["apple", "banana", "cherry", "apple", "banana", "apple"]),
                     fruit_solution, FRUITS, FRUIT_IDS)
    assert (score.public.correct, score.private.correct) == (3, 2)


def test_an_unknown_class_name_is_named_with_the_allowed_ones(tmp_path, fruit_solution):
    with pytest.raises(InvalidSubmissionError, match=r"line 3: label 'pear' is not a class \(expected one of "
                                                     r"apple, banana, cherry\)"):
        grade(_fruit_labels(tmp_path, ["apple", "pear"] + ["apple"] * 4), fruit_solution, FRUITS, FRUIT_IDS)


def test_macro_f1_matches_scikit_learn_with_a_bootstrap_interval(tmp_path, fruit_solution):
    predicted = np.array([0, 1, 2, 0, 0, 1])
    _, score = grade(_fruit_labels(tmp_path, np.array(FRUITS.labels)[predicted]), fruit_solution, FRUITS,
                     FRUIT_IDS, metric="macro-f1")
    assert score.overall.value == pytest.approx(f1_score(FRUIT_TRUTH, predicted, average="macro"))
    assert score.overall.interval == "bootstrap" and score.overall.low <= score.overall.value <= score.overall.high


PROBABILITIES = SubmissionForm("id", "label", FRUITS.labels, values="probabilities")


def _probability_file(tmp_path, rows, header="id,apple,banana,cherry"):
    body = "".join(f"{i}," + ",".join(str(v) for v in row) + "\n" for i, row in zip(FRUIT_IDS, rows))
    return _submission(tmp_path, header + "\n" + body, name="probabilities.csv")


def test_log_loss_is_kaggles_clipped_mean_and_lower_is_better(tmp_path, fruit_solution):
    rows = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4],
                     [1.0, 0.0, 0.0]])
    _, score = grade(_probability_file(tmp_path, rows), fruit_solution, PROBABILITIES, FRUIT_IDS, metric="log-loss")
    clipped = np.clip(rows, 1e-15, 1 - 1e-15)
    expected = log_loss(FRUIT_TRUTH, clipped / clipped.sum(1, keepdims=True), labels=[0, 1, 2])
    assert score.overall.value == pytest.approx(expected)        # the certain wrong answer costs -log(1e-15)
    assert not get_metric("log-loss").higher_is_better and get_metric("log-loss").better(0.1, 0.2)


MALFORMED_PROBABILITIES = {
    "label column instead of probabilities": ("id,label", [["apple"]] * 6, "line 1: the header must hold the "
                                                                           "columns 'id,apple,banana,cherry'"),
    "negative probability": (None, [[1.2, -0.2, 0.0]] + [[1, 0, 0]] * 5, "line 2: probability of 'banana' must "
                                                                         "be a number >= 0"),
    "row not summing to one": (None, [[0.5, 0.2, 0.2]] + [[1, 0, 0]] * 5, "line 2: probabilities sum to 0.9, not 1"),
    "text in a cell": (None, [[1, 0, 0], ["x", 0, 1]] + [[1, 0, 0]] * 4, "line 3: probability 'x' is not a number"),
    "missing column": (None, [[0.5, 0.5]] + [[1, 0, 0]] * 5, "line 2: expected 4 fields"),
    "nan probability": (None, [["nan", 0.5, 0.5]] + [[1, 0, 0]] * 5, "line 2: probability of 'apple' must be"),
}


@pytest.mark.parametrize("kind", MALFORMED_PROBABILITIES)
def test_malformed_probability_file_is_rejected_with_its_reason(tmp_path, fruit_solution, kind):
    header, rows, message = MALFORMED_PROBABILITIES[kind]
    path = _probability_file(tmp_path, rows, header or "id,apple,banana,cherry")
    with pytest.raises(InvalidSubmissionError, match=message):
        grade(path, fruit_solution, PROBABILITIES, FRUIT_IDS, metric="log-loss")


def test_a_header_quoted_as_r_writes_it_and_a_blank_line_are_read_as_the_reference_graders_read_them(tmp_path,
                                                                                                    solution):
    text = '"ImageId","Label"\n' + "\n".join(f'"{i}","{k}"' for i, k in zip(IDS, LABELS)) + "\n\n"
    probabilities = validate_submission(_submission(tmp_path, text), DIGITS, IDS)
    assert np.array_equal(probabilities.argmax(1), LABELS)


def test_columns_in_another_order_are_matched_by_name(tmp_path, solution):
    text = "Label,ImageId\n" + "\n".join(f"{k},{i}" for i, k in zip(IDS, LABELS)) + "\n"
    probabilities = validate_submission(_submission(tmp_path, text), DIGITS, IDS)
    assert np.array_equal(probabilities.argmax(1), LABELS)
