"""Every metric against scikit-learn (or, for MAP@k, against its definition) on the same arrays,
its bootstrap against the metric recomputed per resample, and every submission form: written,
read back and scored exactly as the arrays behind it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score, f1_score, log_loss, roc_auc_score

from competition.config import RunConfig
from competition.fitting.ensemble import OutOfFold, greedy_weights
from competition.errors import ConfigError, InvalidSubmissionError
from competition.grading.metrics import METRICS, get_metric
from competition.fitting.policy import resolve
from competition.fitting.pseudo_label import select_pseudo_labels
from competition.preparing.splits import validation_folds
from competition.grading.submission import SubmissionForm, form_for, validate_submission, write_submission

N, K = 240, 5


@pytest.fixture(scope="module")
def predictions():
    """Truth and peaked, partly wrong probabilities: every class occurs, a few rows near 0 and 1."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, K, N)
    logits = rng.normal(size=(N, K)) * 3
    logits[np.arange(N), truth] += 2.5
    logits[:5] *= 12                                   # probabilities below 1e-15 and above 1 - 1e-15
    p = np.exp(logits - logits.max(1, keepdims=True))
    return truth, p / p.sum(1, keepdims=True)


def binary(truth, p):
    return (truth >= 2).astype(np.int64), np.stack([p[:, :2].sum(1), p[:, 2:].sum(1)], 1)


def reference(name: str, truth: np.ndarray, p: np.ndarray) -> float:
    """The reference graders' value (scikit-learn; MAP@k by its definition)."""
    predicted = p.argmax(1)
    if name == "accuracy":
        return float((predicted == truth).mean())
    if name in ("macro-f1", "micro-f1"):
        return f1_score(truth, predicted, average=name.split("-")[0])
    if name == "log-loss":       # Kaggle's clipping, then scikit-learn's formula
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        return log_loss(truth, clipped / clipped.sum(1, keepdims=True), labels=range(p.shape[1]))
    if name == "roc-auc":
        return roc_auc_score(truth, p[:, 1])
    if name == "mean-roc-auc":
        return float(np.mean([roc_auc_score(truth == c, p[:, c]) for c in range(p.shape[1])]))
    if name == "qwk":
        return cohen_kappa_score(truth, predicted, weights="quadratic")
    if name == "map@5":
        scores = []
        for t, row in zip(truth, p):
            ranked = list(np.argsort(-row, kind="stable")[:5])
            scores.append(1 / (ranked.index(t) + 1) if t in ranked else 0.0)
        return float(np.mean(scores))
    raise AssertionError(name)


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_agrees_with_the_reference_grader_to_1e_9(name, predictions):
    truth, p = binary(*predictions) if name == "roc-auc" else predictions
    metric = get_metric(name)
    assert metric.value(truth, p) == pytest.approx(reference(name, truth, p), abs=1e-9)
    estimate = metric.estimate(truth, p)
    assert estimate.low <= estimate.value <= estimate.high and estimate.total == len(truth)
    assert estimate.interval == ("exact binomial" if name in ("accuracy", "micro-f1") else "bootstrap")
    rows = np.random.default_rng(3).integers(0, len(truth), size=(4, len(truth)))
    per_resample = [reference(name, truth[r], p[r]) for r in rows]
    assert metric.resampled(truth, p, rows) == pytest.approx(per_resample, abs=1e-9)


def test_auc_counts_tied_scores_as_half_a_win_as_scikit_learn_does():
    truth = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    scores = np.array([0.2, 0.2, 0.5, 0.5, 0.9, 0.1, 0.9, 0.7])
    p = np.stack([1 - scores, scores], 1)
    assert get_metric("roc-auc").value(truth, p) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    rows = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [1, 1, 3, 0, 0, 6, 7, 2]])
    expected = [roc_auc_score(truth[r], scores[r]) for r in rows]
    assert get_metric("roc-auc").resampled(truth, p, rows) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_leaves_out_a_class_in_neither_truth_nor_prediction_as_scikit_learn_does():
    truth, predicted = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 2])   # class 3 never occurs
    p = np.eye(4)[predicted]
    assert get_metric("macro-f1").value(truth, p) == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_directions_are_known_and_map_at_k_takes_any_k():
    assert [m for m, metric in METRICS.items() if not metric.higher_is_better] == ["log-loss"]
    assert get_metric("map@3").k == 3 and get_metric("map@3").submits == "top-k"
    with pytest.raises(ConfigError, match="unknown metric 'auc'; choose one of accuracy, .*map@k for any k"):
        get_metric("auc")


IDS = np.array([f"img_{i}" for i in range(N)])
NAMES = ("cat", "dog", "fox", "owl", "yak")


@pytest.mark.parametrize("name", METRICS)
def test_a_file_the_harness_writes_scores_exactly_as_the_arrays_behind_it(name, predictions, tmp_path):
    truth, p = binary(*predictions) if name == "roc-auc" else predictions
    metric = get_metric(name)
    form = form_for(metric, id_column="id", label_column="label", labels=NAMES[:p.shape[1]])
    path = tmp_path / "submission.csv"
    write_submission(path, form, IDS, p)
    read = validate_submission(path, form, IDS)
    assert metric.value(truth, read) == metric.value(truth, form.as_submitted(p))
    if metric.submits == "probabilities":        # no rounding at all: tiny probabilities survive
        assert metric.value(truth, read) == metric.value(truth, p)


def test_the_form_follows_the_metric_and_the_sample_submission():
    two = ("cat", "dog")
    form = form_for(get_metric("roc-auc"), id_column="id", label_column="has_cactus", labels=two)
    assert (form.values, form.header) == ("probability", ["id", "has_cactus"])
    dogs = form_for(get_metric("log-loss"), id_column="id", label_column="label", labels=two,
                    sample_header=("id", "label"))
    assert dogs.values == "probability"         # Dogs vs. Cats: id,label = P(dog)
    assert form_for(get_metric("log-loss"), id_column="id", label_column="label", labels=two).header == ["id", *two]
    assert form_for(get_metric("map@5"), id_column="Image", label_column="Id", labels=NAMES).values == "top-k"
    assert form_for(get_metric("qwk"), id_column="id_code", label_column="diagnosis", labels=NAMES).values == "label"
    with pytest.raises(ConfigError, match="roc-auc scores a binary competition; this one has 5 classes"):
        form_for(get_metric("roc-auc"), id_column="id", label_column="label", labels=NAMES)


def _file(tmp_path, text):
    path = tmp_path / "s.csv"
    path.write_text(text)
    return path


def test_one_column_probabilities_are_the_second_class_and_must_lie_in_0_1(tmp_path):
    form = SubmissionForm("id", "label", ("cat", "dog"), values="probability")
    read = validate_submission(_file(tmp_path, "id,label\n1,0.25\n2,1e-20\n"), form, np.array(["1", "2"]))
    assert read.tolist() == [[0.75, 0.25], [1.0, 1e-20]]
    with pytest.raises(InvalidSubmissionError, match=r"line 3: label 1.5 is not a probability \(of 'dog'"):
        validate_submission(_file(tmp_path, "id,label\n1,0.25\n2,1.5\n"), form, np.array(["1", "2"]))


def test_top_k_rows_list_distinct_known_labels_most_likely_first(tmp_path):
    form = SubmissionForm("Image", "Id", NAMES, values="top-k", k=3)
    ids = np.array(["a.jpg", "b.jpg"])
    read = validate_submission(_file(tmp_path, "Image,Id\na.jpg,dog cat\nb.jpg,yak\n"), form, ids)
    assert read.tolist() == [[2, 3, 0, 0, 0], [0, 0, 0, 0, 3]]
    assert get_metric("map@3").value(np.array([0, 1]), read) == pytest.approx((1 / 2 + 0) / 2)
    for body, message in (("a.jpg,dog cat fox owl\n", "must list 1 to 3 space-separated labels, found 4"),
                          ("a.jpg,dog dog\n", "lists 'dog' twice"), ("a.jpg,emu\n", "'emu' is not a class")):
        with pytest.raises(InvalidSubmissionError, match=message):
            validate_submission(_file(tmp_path, "Image,Id\n" + body + "b.jpg,yak\n"), form, ids)


def test_integer_labels_written_as_floats_are_read_as_integers(tmp_path):
    form = SubmissionForm("id_code", "diagnosis", ("0", "1", "2", "3", "4"))
    read = validate_submission(_file(tmp_path, "id_code,diagnosis\na,3.0\nb,4.\nc,02\n"), form, np.array(list("abc")))
    assert read.argmax(1).tolist() == [3, 4, 2]
    with pytest.raises(InvalidSubmissionError, match="'3.5' is not an integer"):
        validate_submission(_file(tmp_path, "id_code,diagnosis\na,3.5\nb,4\nc,2\n"), form, np.array(list("abc")))


def test_probability_rows_must_sum_to_one_within_1e_5(tmp_path):
    form = SubmissionForm("id", "label", ("a", "b"), values="probabilities")
    ids = np.array(["1"])
    assert validate_submission(_file(tmp_path, "id,a,b\n1,0.400004,0.6\n"), form, ids).shape == (1, 2)
    with pytest.raises(InvalidSubmissionError, match="line 2: probabilities sum to 1.0001, not 1"):
        validate_submission(_file(tmp_path, "id,a,b\n1,0.4001,0.6\n"), form, ids)


def test_greedy_ensemble_weights_follow_the_competitions_metric():
    labels = torch.tensor([0] * 90 + [1] * 10)
    always_zero = torch.zeros(100, 2)
    always_zero[:, 0] = 3.0                              # accuracy 0.90, macro-F1 0.47
    finds_ones = always_zero.clone()
    finds_ones[75:, 0], finds_ones[75:, 1] = 0.0, 3.0    # accuracy 0.85, macro-F1 0.74
    logits = torch.stack([always_zero, finds_ones])
    by_accuracy = greedy_weights(logits, labels)
    by_macro_f1 = greedy_weights(logits, labels, metric=get_metric("macro-f1"))
    assert by_accuracy[0] > by_accuracy[1] and by_macro_f1[1] > by_macro_f1[0]


@pytest.fixture(scope="module")
def multi_label_predictions():
    """0/1 truth (N, 6), several labels an image, and each label's own probability."""
    rng = np.random.default_rng(5)
    truth = (rng.random((N, 6)) < np.linspace(0.1, 0.6, 6)).astype(np.int64)
    probabilities = 1 / (1 + np.exp(-(rng.normal(size=(N, 6)) * 1.5 + (truth * 2 - 1) * 1.2)))
    return truth, probabilities


@pytest.mark.parametrize("name", ["accuracy", "micro-f1", "macro-f1", "mean-roc-auc"])
def test_multi_label_metrics_agree_with_scikit_learn_to_1e_9(name, multi_label_predictions):
    truth, p = multi_label_predictions
    expected = {"accuracy": lambda t, q: float((t == (q >= 0.5)).all(1).mean()),     # = sklearn's subset accuracy
                "micro-f1": lambda t, q: f1_score(t, (q >= 0.5).astype(int), average="micro"),
                "macro-f1": lambda t, q: f1_score(t, (q >= 0.5).astype(int), average="macro", zero_division=0),
                "mean-roc-auc": lambda t, q: roc_auc_score(t, q, average="macro")}[name]
    metric = get_metric(name)
    assert metric.value(truth, p) == pytest.approx(expected(truth, p), abs=1e-9)
    rows = np.random.default_rng(9).integers(0, N, size=(4, N))
    assert metric.resampled(truth, p, rows) == pytest.approx([expected(truth[r], p[r]) for r in rows], abs=1e-9)
    estimate = metric.estimate(truth, p)
    assert estimate.low <= estimate.value <= estimate.high


def test_a_metric_for_one_class_an_image_is_refused_for_a_multi_label_competition():
    with pytest.raises(ConfigError, match="log-loss does not score a multi-label competition"):
        form_for(get_metric("log-loss"), id_column="id", label_column="labels", labels=NAMES, multi_label=True)
    form = form_for(get_metric("micro-f1"), id_column="id", label_column="labels", labels=NAMES, multi_label=True)
    assert (form.values, form.header) == ("labels", ["id", "labels"])


def test_multi_label_files_round_trip_and_need_not_sum_to_one(tmp_path, multi_label_predictions):
    truth, p = multi_label_predictions
    names = ("a", "b", "c", "d", "e", "f")
    for metric in ("mean-roc-auc", "micro-f1"):
        form = form_for(get_metric(metric), id_column="id", label_column="labels", labels=names, multi_label=True)
        path = tmp_path / f"{metric}.csv"
        write_submission(path, form, IDS, p)
        read = validate_submission(path, form, IDS)
        assert get_metric(metric).value(truth, read) == get_metric(metric).value(truth, form.as_submitted(p))
    empty = SubmissionForm("id", "labels", names, values="labels", multi_label=True)
    assert validate_submission(_file(tmp_path, "id,labels\n1,\n2,c a\n"), empty, np.array(["1", "2"])).tolist() == \
        [[0] * 6, [1, 0, 1, 0, 0, 0]]


def test_multi_label_folds_are_stratified_label_by_label():
    rng = np.random.default_rng(2)
    labels = (rng.random((400, 5)) < np.array([0.05, 0.1, 0.3, 0.5, 0.8])).astype(np.int64)
    folds = validation_folds(labels, 4, 0.2, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(400))          # every row validated once
    shares = np.array([labels[f].mean(0) for f in folds])
    assert np.abs(shares - labels.mean(0)).max() < 0.03                        # each label's share in every fold


def test_a_multi_label_competition_averages_logits():
    assert resolve(RunConfig(), stored_size=28, channels=3, labelled=100, hflip=True, multi_label=True).pseudo_rounds == 1
    with pytest.raises(ConfigError, match="averages logits"):
        resolve(RunConfig(ensemble="probs"), stored_size=28, channels=3, labelled=100, hflip=True, multi_label=True)


def test_multi_label_pseudo_labels_need_every_label_confident_and_every_member_agreeing():
    teacher = torch.tensor([[4.0, -4.0, 4.0], [4.0, 0.1, -4.0], [-4.0, -4.0, -4.0], [4.0, 4.0, -4.0]])
    members = torch.stack([teacher, teacher.clone()])
    members[1, 3, 1] = -1.0                              # one member says row 3 lacks label 1
    pseudo = select_pseudo_labels(teacher, members, threshold=0.9, label_smoothing=0.1, multi_label=True)
    assert pseudo.indices.tolist() == [0, 2]             # row 1: label 1 unsure; row 3: members disagree
    assert pseudo.labels.tolist() == [[1, 0, 1], [0, 0, 0]] and pseudo.per_class(3) == [1, 0, 1]


def test_the_f1_thresholds_of_a_multi_label_competition_are_chosen_on_oof(multi_label_predictions):
    truth, p = multi_label_predictions
    metric = get_metric("micro-f1")
    logits = torch.logit(torch.tensor(p))
    under_confident = OutOfFold(logits=logits - 1.5, labels=torch.tensor(truth))   # every label too low
    decision = under_confident.best_decision(metric)
    assert np.mean([float(t) for t in decision.split()[1:]]) < 0.5
    assert under_confident.score(metric, decision=decision).value > under_confident.score(metric).value
    # labels mis-calibrated in opposite directions need a threshold each
    noise = torch.tensor(np.random.default_rng(4).normal(size=truth.shape))
    separable = torch.tensor(truth * 2 - 1) * 2.5 + noise
    skewed = OutOfFold(logits=separable + torch.tensor([-2.5, 2.5, -2.5, 2.5, -2.5, 2.5]), labels=torch.tensor(truth))
    decision = skewed.best_decision(metric)
    thresholds = [float(t) for t in decision.split()[1:]]
    assert decision.startswith("thresholds ") and thresholds[0] < 0.5 < thresholds[1]
    assert under_confident.best_decision(get_metric("mean-roc-auc")) == "argmax"     # AUC reads no threshold


def test_mean_column_wise_auc_takes_any_score_in_0_1_a_cell_as_its_reference_grader_does(tmp_path):
    """plant-pathology-2020: per-class sigmoid outputs whose rows do not sum to 1 only rank each column."""
    from competition.grading.submission import form_for, validate_submission
    from competition.grading.metrics import get_metric
    form = form_for(get_metric("mean-roc-auc"), id_column="image_id", label_column="label",
                    labels=("healthy", "multiple_diseases", "rust", "scab"), sample_header=None)
    assert form.values == "probabilities" and not form.rows_sum_to_one
    path = tmp_path / "s.csv"
    path.write_text("image_id,healthy,multiple_diseases,rust,scab\nTest_0,0.9,0.8,0.1,0.3\nTest_1,0.2,0.1,0.95,0.7\n")
    read = validate_submission(path, form, np.array(["Test_0", "Test_1"]))
    assert read[0].tolist() == [0.9, 0.8, 0.1, 0.3]
    path.write_text("image_id,healthy,multiple_diseases,rust,scab\nTest_0,1.2,0.8,0.1,0.3\nTest_1,0.2,0.1,0.95,0.7\n")
    with pytest.raises(InvalidSubmissionError, match="line 2: probability of 'healthy' must be between 0 and 1"):
        validate_submission(path, form, np.array(["Test_0", "Test_1"]))
    log_loss = form_for(get_metric("log-loss"), id_column="image_id", label_column="label",
                        labels=("a", "b", "c"), sample_header=None)
    path.write_text("image_id,a,b,c\nTest_0,0.5,0.5,0.0000105\n")
    validate_submission(path, log_loss, np.array(["Test_0"]))          # within np.isclose of 1
    path.write_text("image_id,a,b,c\nTest_0,0.5,0.5,0.00002\n")
    with pytest.raises(InvalidSubmissionError, match="line 2: probabilities sum to 1.00002, not 1"):
        validate_submission(path, log_loss, np.array(["Test_0"]))
