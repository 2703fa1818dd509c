"""The competition metrics and the choices made for them on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from competition.fitting.ensemble import OutOfFold


def fit_temperature(logits, labels) -> float:
    return OutOfFold(logits=logits, labels=labels).fit_temperature()


def oof_score(logits, labels, metric, temperature):
    return OutOfFold(logits=logits, labels=labels).score(metric, temperature)
from competition.grading.metrics import get_metric, macro_f1_values, one_hot


def test_every_metric_has_an_interval_around_its_value_and_a_direction():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 300)
    probabilities = rng.dirichlet(np.ones(4), 300)
    probabilities[np.arange(300), truth] += 1.0
    probabilities /= probabilities.sum(1, keepdims=True)
    for name, higher in (("accuracy", True), ("macro-f1", True), ("log-loss", False)):
        metric = get_metric(name)
        estimate = metric.estimate(truth, probabilities)
        assert estimate.low <= estimate.value <= estimate.high and estimate.total == 300
        assert metric.higher_is_better == higher
        assert metric.estimate(truth, probabilities) == estimate        # the bootstrap is seeded
    assert get_metric("accuracy").estimate(truth, probabilities).interval == "exact binomial"


def test_macro_f1_of_many_resamples_matches_scikit_learn_on_each():
    rng = np.random.default_rng(1)
    truth, predicted = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    rows = rng.integers(0, 200, size=(3, 200))
    expected = [f1_score(truth[r], predicted[r], average="macro") for r in rows]
    assert macro_f1_values(truth, predicted, 5, rows) == pytest.approx(expected)


def test_the_temperature_fitted_on_oof_undoes_over_and_under_confidence():
    torch.manual_seed(0)
    clean = torch.randn(4000, 3) * 2
    labels = torch.multinomial(clean.softmax(-1), 1).squeeze(1)     # calibrated by construction: T = 1 is best
    assert 0.8 < fit_temperature(clean, labels) < 1.25
    assert 3.0 < fit_temperature(clean * 4, labels) < 5.0         # over-confident: soften
    assert 0.18 < fit_temperature(clean / 4, labels) < 0.35       # under-confident (label smoothing): sharpen
    metric = get_metric("log-loss")
    raw = oof_score(clean / 4, labels, metric, 1.0).value
    assert oof_score(clean / 4, labels, metric, fit_temperature(clean / 4, labels)).value < raw


def test_rows_never_validated_are_left_out_of_the_oof_score():
    labels = torch.tensor([0, 1, 2, 0])
    logits = torch.tensor(one_hot(np.array([0, 1, 2, 1]), 3), dtype=torch.float32) * 5
    logits[3] = float("nan")
    assert oof_score(logits, labels, get_metric("accuracy"), 1.0).total == 3
    assert oof_score(logits, labels, get_metric("accuracy"), 1.0).value == 1.0
